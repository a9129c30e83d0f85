"""The compiled core's constants, its small stateless functions, and `raise_for`: the
one place a negative C return code becomes an exception (pyzmq's _check_rc). Sizes and
word indexes come from cffi (what shmbus.h declares), never from a copy."""
import os
from typing import Any, NoReturn, Optional, Sequence, Union

from .._errors import (BadRing, ClaimLockBusy, ClaimRevoked, CorruptFrame, Lapped, NotReady, OutOfRing,
                       RingDeleted, RingFull, RingMoved, ShmbusError, SlotBusy)
from .._native._core import ffi, lib

# cffi's handles on C memory (a struct, a pointer, a buffer): typed loosely on purpose.
CData = Any

FRAME_HEADER_BYTES: int = ffi.sizeof("sb_frame_header")
FRAME_DATA: int = lib.SB_FRAME_DATA
FRAME_PADDING: int = lib.SB_FRAME_PADDING
FRAME_ABORTED: int = lib.SB_FRAME_ABORTED
MAX_SLOTS: int = lib.SB_MAX_SLOTS
INDEX_STRIDE: int = lib.SB_INDEX_STRIDE
DESC_WORDS: int = lib.SB_DESC_WORDS
DESC_OFFSET: int = lib.SB_DESC_OFFSET
DESC_TIMESTAMP: int = lib.SB_DESC_TIMESTAMP
DESC_KEY_AT: int = lib.SB_DESC_KEY_AT
DESC_KEY_LEN: int = lib.SB_DESC_KEY_LEN
DESC_HEADERS_AT: int = lib.SB_DESC_HEADERS_AT
DESC_HEADERS_LEN: int = lib.SB_DESC_HEADERS_LEN
DESC_VALUE_AT: int = lib.SB_DESC_VALUE_AT
DESC_VALUE_LEN: int = lib.SB_DESC_VALUE_LEN
PLAIN_DESC_WORDS: int = lib.SB_PLAIN_DESC_WORDS
PLAIN_TIMESTAMP: int = lib.SB_PLAIN_TIMESTAMP
PLAIN_VALUE_LEN: int = lib.SB_PLAIN_VALUE_LEN
RING_DURABLE: int = lib.SB_RING_DURABLE
RING_DELETED: int = lib.SB_RING_DELETED
RING_ARCHIVE_ERROR: int = lib.SB_RING_ARCHIVE_ERROR
RING_RETIRING: int = lib.SB_RING_RETIRING
RING_RETIRED: int = lib.SB_RING_RETIRED
CONTROL_GROUPS: int = lib.SB_CTL_GROUPS
CONTROL_MEMBERS: int = lib.SB_CTL_MEMBERS

# Readers unpack descriptor words positionally, in the order shmbus.h gives them.
assert [lib.SB_DESC_OFFSET, lib.SB_DESC_TIMESTAMP, lib.SB_DESC_KEY_AT, lib.SB_DESC_KEY_LEN,
        lib.SB_DESC_HEADERS_AT, lib.SB_DESC_HEADERS_LEN, lib.SB_DESC_VALUE_AT,
        lib.SB_DESC_VALUE_LEN] == list(range(DESC_WORDS))
assert [lib.SB_PLAIN_TIMESTAMP, lib.SB_PLAIN_VALUE_LEN] == list(range(PLAIN_DESC_WORDS))

NULL = ffi.NULL


def raise_for(code: int, what: str) -> NoReturn:
    """The one place a negative C return code becomes an exception. `what` names the
    object the call was about (a ring's name, a file)."""
    if code == lib.SB_FULL:
        raise RingFull(f"{what}: the write limit is reached")
    if code == lib.SB_LOCK_BUSY:
        raise ClaimLockBusy(f"{what}: the claim lock stayed held")
    if code == lib.SB_SLOT_BUSY:
        raise SlotBusy(f"{what}: another thread is appending with this producer slot")
    if code == lib.SB_DELETED:
        raise RingDeleted(f"{what} was deleted")
    if code == lib.SB_MOVED:
        raise RingMoved(f"{what} was retired: the partition goes on in its next ring")
    if code == lib.SB_REVOKED:
        raise ClaimRevoked(f"{what}: the record was not sent: this producer stalled while writing it "
                           f"(stopped, traced or swapped out) for longer than the unblock timeout, and "
                           f"its place was revoked so the partition could go on; send it again")
    if code == lib.SB_LAPPED:
        raise Lapped(f"{what}: the position left the ring")
    if code == lib.SB_EMPTY:
        raise NotReady(f"{what}: a frame before the position is still being written")
    if code == lib.SB_OUT_OF_RANGE:
        raise OutOfRing(f"{what}: the offset is not in the ring")
    if code == lib.SB_CORRUPT:
        raise CorruptFrame(f"{what}: a frame failed its checks (CRC, offset or length)")
    if code == lib.SB_BAD_RING:
        raise BadRing(f"{what}: not a valid ring of version {lib.SB_VERSION}, or a bad argument")
    if code == lib.SB_SYSTEM:
        err = ffi.errno
        raise OSError(err, f"{what}: {os.strerror(err)}")
    raise ShmbusError(f"{what}: the C core returned unknown code {code}")


def c_buffer(obj: Any) -> CData:
    """A C view of a bytes-like object, without copying it; TypeError if it is not one."""
    return ffi.from_buffer(obj)


def int64_array(values: Sequence[int]) -> CData:
    return ffi.new("int64_t[]", values)


def int64_buffer(obj: Any) -> CData:
    """A C int64_t[] view of a buffer of int64s (a numpy int64 array), without copying."""
    return ffi.from_buffer("int64_t[]", obj)


def max_record_bytes(ring_bytes: int) -> int:
    """The largest record (key + headers + value) a ring of ring_bytes takes: half the
    ring (a frame that must wrap wastes at most the other half) minus a frame header."""
    return lib.sb_max_frame_bytes(ring_bytes) - FRAME_HEADER_BYTES


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of data, as a signed 32-bit int, bit for bit."""
    return lib.sb_murmur2(data, len(data))


def crc32c(data: Union[bytes, CData], length: Optional[int] = None, crc: int = 0) -> int:
    """CRC32C (Castagnoli) of data, continuing from crc."""
    return lib.sb_crc32c(crc, data, len(data) if length is None else length)


def keep_freed_heap() -> None:
    """See heap.c: keep freed heap, so large values do not page-fault on every batch."""
    lib.sb_keep_freed_heap()
