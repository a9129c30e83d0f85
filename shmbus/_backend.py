"""The C boundary: the only module that calls the compiled core (shmbus/_native).

Everything else works with the classes here -- Ring, Writer, Cursor, ReadBuffer,
WaitSet, ArchiveState, FrameParser, ControlPage -- and with exceptions, never with
return codes: `_raise_for` turns every negative code into its exception, in one
place (pyzmq's _check_rc). Sizes and word indexes come from cffi (what shmbus.h
declares), never from a copy.

Hot paths bind what they need once: `append_value` and `append_keyed` are the C
functions themselves, called with `Writer.ptr` (a Python wrapper would add ~30 ns
to every send, a sixth of it). They return the offset, or a negative code; the
caller then makes the same append through `Writer.append`, which raises.
"""
import os
from typing import Any, Callable, Iterator, List, NamedTuple, NoReturn, Optional, Sequence, Tuple, Union

from . import _shm
from ._errors import (BadControlPage, BadRing, ClaimLockBusy, CorruptFrame, Lapped, MessageTooLarge, NotReady,
                      OutOfRing, RingDeleted, RingFull, ShmbusError, SlotBusy)
from ._native._core import ffi, lib
from ._process import is_alive, my_identity

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
PLAIN_DESC_WORDS: int = lib.SB_PLAIN_DESC_WORDS
RING_DURABLE: int = lib.SB_RING_DURABLE
RING_DELETED: int = lib.SB_RING_DELETED
RING_ARCHIVE_ERROR: int = lib.SB_RING_ARCHIVE_ERROR
CONTROL_GROUPS: int = lib.SB_CTL_GROUPS
CONTROL_MEMBERS: int = lib.SB_CTL_MEMBERS

# Readers unpack descriptor words positionally, in the order shmbus.h gives them.
assert [lib.SB_DESC_OFFSET, lib.SB_DESC_TIMESTAMP, lib.SB_DESC_KEY_AT, lib.SB_DESC_KEY_LEN,
        lib.SB_DESC_HEADERS_AT, lib.SB_DESC_HEADERS_LEN, lib.SB_DESC_VALUE_AT,
        lib.SB_DESC_VALUE_LEN] == list(range(DESC_WORDS))
assert [lib.SB_PLAIN_TIMESTAMP, lib.SB_PLAIN_VALUE_LEN] == list(range(PLAIN_DESC_WORDS))

NULL = ffi.NULL
# The straight-line send paths (see the module docstring).
append_value: Callable[[CData, bytes, int], int] = lib.sb_append_value
append_keyed: Callable[[CData, bytes, int, bytes, int], int] = lib.sb_append_keyed


def _raise_for(code: int, what: str) -> NoReturn:
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


# ---------------------------------------------------------------------------
# Rings
# ---------------------------------------------------------------------------

class RingStats(NamedTuple):
    """A snapshot of a ring header (sb_stats)."""

    total_bytes: int
    data_bytes: int
    flags: int
    created_ns: int
    tail: int            # end of the last claimed frame
    next_offset: int     # offset the next claim gets
    head: int            # start of the oldest frame still in the ring
    head_offset: int     # offset of that frame
    published: int       # every frame before this position is complete
    archived: int        # every frame before this position is on disk
    synced: int          # every frame before this position is fsynced
    data_waiters: int
    space_waiters: int
    base_offset: int     # offset of the ring's first frame


class SlotInfo(NamedTuple):
    """One producer slot in use."""

    slot: int
    pid: int
    start_ms: int        # the owner's process create time, ms since the epoch
    claimed: bool        # a claim is between reservation and publication


class Ring:
    """One mapped partition ring. Close it explicitly; the mapping is never left to GC."""

    __slots__ = ("name", "ptr", "data_bytes", "durable", "max_record", "_closed")

    def __init__(self, name: str, ptr: CData):
        self.name = name
        self.ptr = ptr
        stats = self.stats()
        self.data_bytes = stats.data_bytes
        self.durable = bool(stats.flags & RING_DURABLE)
        self.max_record = max_record_bytes(self.data_bytes)
        self._closed = False

    # ---- lifetime ----

    @staticmethod
    def total_bytes(data_bytes: int) -> int:
        """What a ring of data_bytes takes in /dev/shm, header pages and index included."""
        return lib.sb_ring_total_bytes(data_bytes)

    @classmethod
    def create(cls, name: str, data_bytes: int, base_offset: int, durable: bool) -> "Ring":
        """Create the ring with all its memory reserved (OutOfSpace if /dev/shm is full)."""
        fd = _shm.create(name, cls.total_bytes(data_bytes), "ring")
        try:
            err = ffi.new("int *")
            ptr = lib.sb_ring_create(fd, data_bytes, base_offset, RING_DURABLE if durable else 0, err)
            if ptr == NULL:
                _shm.unlink(name)
                raise OSError(err[0], f"cannot map ring {name}: {os.strerror(err[0])}")
        finally:
            os.close(fd)
        return cls(name, ptr)

    @classmethod
    def attach(cls, name: str) -> "Ring":
        """Map an existing ring; BadRing if it is not one, FileNotFoundError if absent."""
        fd, size = _shm.open_existing(name, "ring")
        try:
            err = ffi.new("int *")
            ptr = lib.sb_ring_attach(fd, size, err)
            if ptr == NULL:
                raise BadRing(f"{name} is not a valid shmbus ring of version {lib.SB_VERSION}")
        finally:
            os.close(fd)
        return cls(name, ptr)

    unlink = staticmethod(_shm.unlink)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            lib.sb_ring_close(self.ptr)
            self.ptr = NULL

    @property
    def closed(self) -> bool:
        return self._closed

    # ---- header ----

    def stats(self) -> RingStats:
        out = ffi.new("sb_stats *")
        lib.sb_ring_stats(self.ptr, out)
        return RingStats(out.total_bytes, out.data_bytes, out.flags, out.created_ns, out.tail,
                         out.next_offset, out.head, out.head_offset, out.published, out.archived,
                         out.synced, out.data_waiters, out.space_waiters, out.base_offset)

    def set_flag(self, flag: int) -> None:
        """Set a header flag and wake every waiter, so they notice."""
        lib.sb_ring_set_flag(self.ptr, flag)

    def clear_flag(self, flag: int) -> None:
        lib.sb_ring_clear_flag(self.ptr, flag)

    def mark_deleted(self) -> None:
        self.set_flag(RING_DELETED)

    def is_deleted(self) -> bool:
        return bool(self.stats().flags & RING_DELETED)

    def set_archived(self, archived: int, synced: int) -> None:
        """Move the archived and synced positions (the archiver's side) and wake writers."""
        lib.sb_ring_set_archived(self.ptr, archived, synced)

    def sync_requested(self) -> int:
        """The highest position a producer's flush() waits to see fsynced."""
        return lib.sb_sync_requested(self.ptr)

    def expire_waiters(self, grace_ns: int) -> bool:
        """Forget waiter counts left by waiters that died asleep (their lease is over)."""
        return bool(lib.sb_expire_waiters(self.ptr, grace_ns))

    # ---- producer slots and dead owners ----

    def acquire_slot(self) -> int:
        pid, start = my_identity()
        slot = lib.sb_slot_acquire(self.ptr, pid, start)
        if slot < 0:
            self.reap_dead()
            slot = lib.sb_slot_acquire(self.ptr, pid, start)
        if slot < 0:
            raise ShmbusError(f"all {MAX_SLOTS} producer slots of {self.name} are taken by live producers")
        return slot

    def release_slot(self, slot: int) -> None:
        if not self._closed and slot >= 0:
            lib.sb_slot_release(self.ptr, slot)

    def slots(self) -> List[SlotInfo]:
        """Every slot in use."""
        out = ffi.new("sb_slot_info[]", MAX_SLOTS)
        lib.sb_slots_get(self.ptr, out)
        return [SlotInfo(i, s.owner_pid, s.owner_start, bool(s.claimed)) for i, s in enumerate(out)
                if s.owner_pid]

    def lock_owner(self) -> int:
        """The producer slot holding the claim lock, or -1."""
        return lib.sb_lock_owner(self.ptr)

    def reap_dead(self, my_slot: Optional[int] = None) -> int:
        """Free the slots of dead producers, finishing their claims as aborted frames
        and breaking the claim lock if one died holding it. Returns how many."""
        dead = [s.slot for s in self.slots() if not is_alive(s.pid, s.start_ms)]
        if not dead:
            return 0
        own_slot = my_slot is None
        if my_slot is None:
            pid, start = my_identity()
            my_slot = lib.sb_slot_acquire(self.ptr, pid, start)
            if my_slot < 0:
                # Every slot is taken, some by the dead: borrow a dead one's after reaping it.
                my_slot = dead[0]
        try:
            for slot in dead:
                if slot != my_slot:
                    lib.sb_reap(self.ptr, my_slot, slot)
        finally:
            if own_slot and my_slot not in dead:
                lib.sb_slot_release(self.ptr, my_slot)
        return len(dead)

    # ---- archiving ----

    def archive(self, fd: int, state: "ArchiveState", max_bytes: int,
                index_interval: int) -> Tuple[int, List[Tuple[int, int, int]]]:
        """Copy complete frames from the ring to the segment file fd (see archive.c).
        Returns (bytes written, index entries [(offset, segment position, max
        timestamp before it)]); OSError if the file cannot be written."""
        written = lib.sb_archive(self.ptr, fd, state.c, max_bytes, index_interval, state.entries,
                                 state.capacity, state.entry_count)
        if written < 0:
            raise OSError(-written, os.strerror(-written))
        entries = state.entries
        return written, [(entries[i].offset, entries[i].position, entries[i].max_timestamp)
                              for i in range(state.entry_count[0])]


class ArchiveState:
    """Where the archiver is in one ring and in the segment it writes (sb_archive_state:
    position, next_offset, segment_bytes, since_index, max_timestamp, read and set as
    attributes of `.c`), and room for the index entries one archive call makes."""

    __slots__ = ("c", "entries", "entry_count", "capacity")

    def __init__(self, capacity: int = 1024):
        self.c = ffi.new("sb_archive_state *")
        self.entries = ffi.new("sb_index_entry[]", capacity)
        self.entry_count = ffi.new("uint32_t *")
        self.capacity = capacity

    def snapshot(self) -> Tuple[int, int, int, int, int]:
        c = self.c
        return c.position, c.next_offset, c.segment_bytes, c.since_index, c.max_timestamp

    def restore(self, saved: Tuple[int, int, int, int, int]) -> None:
        c = self.c
        c.position, c.next_offset, c.segment_bytes, c.since_index, c.max_timestamp = saved


# ---------------------------------------------------------------------------
# Writing: a producer's handle on one partition
# ---------------------------------------------------------------------------

class Writer:
    """A producer's handle on one partition: the ring, a producer slot, how long one
    append may sleep for space (then Python looks around), the timestamp the last
    append used and where its record ends. Release it to free the slot."""

    __slots__ = ("ring", "ptr")

    def __init__(self, ring: Ring, wait_ns: int):
        self.ring = ring
        self.ptr = ffi.new("sb_writer *")
        self.ptr.ring = ring.ptr
        self.ptr.wait_ns = wait_ns
        self.ptr.slot = ring.acquire_slot()

    @property
    def slot(self) -> int:
        return self.ptr.slot

    @property
    def timestamp_ns(self) -> int:
        """The timestamp the last append gave its record(s)."""
        return self.ptr.timestamp_ns

    @property
    def end_position(self) -> int:
        """Where the last appended record ends: flush waits for synced >= it."""
        return self.ptr.end_position

    def append(self, key: CData, key_len: int, headers: CData, headers_len: int,
               value: CData, value_len: int, timestamp_ns: int) -> int:
        """Append one record (a length of -1: no key, no value; a timestamp of -1: now).
        Returns its offset; RingFull, ClaimLockBusy, SlotBusy, RingDeleted or
        MessageTooLarge when it cannot."""
        code = lib.sb_append(self.ptr, key, key_len, headers, headers_len, value, value_len, timestamp_ns)
        if code < 0:
            self._raise(code)
        return code

    def append_batch(self, key: CData, key_len: int, headers: CData, headers_len: int,
                     values: CData, value_lens: CData, count: int, timestamp_ns: int) -> Tuple[int, int]:
        """Append the longest prefix of count values (packed back to back, their lengths in
        value_lens) that fits one claim, all with the same key, headers and timestamp.
        Returns (first offset, records appended)."""
        appended = ffi.new("uint32_t *")
        code = lib.sb_append_batch(self.ptr, key, key_len, headers, headers_len, values, value_lens,
                                   count, timestamp_ns, appended)
        if code < 0:
            self._raise(code)
        return code, appended[0]

    def _raise(self, code: int) -> NoReturn:
        if code == lib.SB_TOO_LARGE:
            raise MessageTooLarge(
                f"record too large for ring {self.ring.name}: at most {self.ring.max_record} bytes of "
                f"key, headers and value (half the ring); create the topic with a larger ring_bytes")
        _raise_for(code, self.ring.name)

    def request_sync(self, position: int) -> None:
        """Ask the archiver to fsync the ring up to position (and wake it)."""
        lib.sb_request_sync(self.ring.ptr, position)

    def wait_synced(self, position: int, timeout_ns: int) -> bool:
        """Wait until the ring is fsynced up to position; False on timeout, RingDeleted."""
        code = lib.sb_wait_synced(self.ring.ptr, position, timeout_ns)
        if code < 0:
            _raise_for(code, self.ring.name)
        return code == 1

    def release(self) -> None:
        self.ring.release_slot(self.slot)


# ---------------------------------------------------------------------------
# Reading: a consumer's place in one ring
# ---------------------------------------------------------------------------

class ReadBuffer:
    """Where sb_read copies records and describes them: shared by every cursor of one
    consumer. It grows when a record does not fit."""

    __slots__ = ("out", "capacity", "max_records", "desc", "_used", "_plain")

    def __init__(self, capacity: int = 1 << 20, max_records: int = 256):
        self.capacity = capacity
        self.out = ffi.new("char[]", capacity)
        self.max_records = max_records
        self.desc = ffi.new("int64_t[]", max_records * DESC_WORDS)
        self._used = ffi.new("uint64_t *")
        self._plain = ffi.new("int *")

    @property
    def used(self) -> int:
        """Bytes of key, headers and values the last read copied."""
        return self._used[0]

    @property
    def plain(self) -> bool:
        """The last read's records are all plain: PLAIN_DESC_WORDS words each."""
        return bool(self._plain[0])

    def grow(self, at_least: int) -> None:
        self.capacity = max(self.capacity * 2, at_least)
        self.out = ffi.new("char[]", self.capacity)

    def data(self, n: int) -> Union[bytes, CData]:
        """What the last read copied, to slice values from. Small records: one copy out
        of the C buffer, then cheap slices of it. Large ones: the C buffer itself, so
        each value is copied once."""
        used = self._used[0]
        data = ffi.buffer(self.out, used)
        return data[:] if used < n * 4096 else data

    def words(self, n: int) -> List[int]:
        """The last read's descriptor words for n records."""
        return ffi.unpack(self.desc, n * (PLAIN_DESC_WORDS if self._plain[0] else DESC_WORDS))


class Cursor:
    """A reader's place in one ring (sb_cursor): the position of the next frame, the
    offset it must carry, and what was skipped (missed: overwritten on a memory-only
    ring; aborted: offsets whose producer died mid-write)."""

    __slots__ = ("ring", "ptr")

    def __init__(self, ring: Ring, position: int = 0):
        self.ring = ring
        self.ptr = ffi.new("sb_cursor *")
        self.ptr.position = position

    @property
    def position(self) -> int:
        return self.ptr.position

    @property
    def next_offset(self) -> int:
        return self.ptr.next_offset

    @next_offset.setter
    def next_offset(self, offset: int) -> None:
        self.ptr.next_offset = offset

    @property
    def missed(self) -> int:
        return self.ptr.missed

    def seek(self, offset: int) -> bool:
        """Go to offset. False if a frame before it is still being written (try again);
        OutOfRing if the ring does not hold it."""
        code = lib.sb_seek(self.ring.ptr, self.ptr, offset)
        if code == lib.SB_EMPTY:
            return False
        if code < 0:
            _raise_for(code, self.ring.name)
        return True

    def seek_head(self) -> None:
        """Go to the oldest record the ring holds."""
        lib.sb_seek_head(self.ring.ptr, self.ptr)

    def seek_end(self) -> None:
        """Go past the newest record."""
        lib.sb_seek_end(self.ring.ptr, self.ptr)

    def read(self, buffer: ReadBuffer, max_records: int) -> int:
        """Copy up to max_records (at most buffer.max_records) available records into
        buffer; returns how many (0: none yet). Lapped when a durable ring overwrote the
        position (read the disk), RingDeleted, CorruptFrame."""
        max_records = min(max_records, buffer.max_records)
        while True:
            n = lib.sb_read(self.ring.ptr, self.ptr, max_records, buffer.out, buffer.capacity,
                            buffer.desc, buffer._used, buffer._plain)
            if n >= 0:
                return n
            if n == lib.SB_EMPTY:
                return 0
            if n == lib.SB_BUFFER_SMALL:
                buffer.grow(buffer._used[0])
                continue
            _raise_for(n, self.ring.name)


class WaitSet:
    """Sleep until one of several cursors has something to read (a frame, a lap, a
    deletion) or a producer asks for an fsync: spin, then futex_waitv on the rings'
    wake-up words (wait.c)."""

    # Most rings one futex_waitv call sleeps on (the kernel's limit). Beyond it a set
    # sleeps on the first ones; the caller's wait slices bound how late the others are seen.
    MAX_RINGS = 128

    __slots__ = ("count", "_rings", "_cursors")

    def __init__(self, cursors: Sequence[Cursor]):
        self.count = len(cursors)
        watched = cursors[:self.MAX_RINGS]
        self._rings = ffi.new("sb_ring *[]", [c.ring.ptr for c in watched])
        self._cursors = ffi.new("sb_cursor *[]", [c.ptr for c in watched])

    def wait(self, timeout_ns: int, spin_ns: int, yield_when_spinning: bool) -> bool:
        """True if something is ready; False on timeout."""
        if not self.count:
            return False
        found = lib.sb_wait_data(self._rings, self._cursors, min(self.count, self.MAX_RINGS), timeout_ns,
                                 spin_ns, yield_when_spinning)
        if found < 0:
            _raise_for(found, "wait")
        return found == 1


# ---------------------------------------------------------------------------
# Frames outside a ring: segment files
# ---------------------------------------------------------------------------

class FrameHeader(NamedTuple):
    """The fields of a frame header a log scan needs."""

    offset: int
    timestamp_ns: int
    record_count: int
    type: int


def walk_frames(chunk: bytes) -> Iterator[Tuple[int, int, FrameHeader]]:
    """(position, aligned size, header) of each whole, CRC-checked frame at the start of
    chunk, stopping at the first incomplete one; CorruptFrame (with .position) at a bad one."""
    base = ffi.from_buffer(chunk)
    position, length = 0, len(chunk)
    while position < length:
        size = lib.sb_frame_check(base + position, length - position)
        if size == lib.SB_EMPTY:
            return
        if size < 0:
            raise CorruptFrame(f"corrupt frame at byte {position}", position=position)
        f = ffi.cast("sb_frame_header *", base + position)
        yield position, size, FrameHeader(f.offset, f.timestamp_ns, f.record_count, f.type)
        position += size


class FrameParser:
    """Describes the records of a chunk of a segment file in place (sb_parse): every frame
    CRC-checked, records before skip_below skipped, descriptors like a ring read's."""

    __slots__ = ("desc", "max_records", "_result")

    def __init__(self, max_records: int = 256):
        self.max_records = max_records
        self.desc = ffi.new("int64_t[]", max_records * DESC_WORDS)
        self._result = ffi.new("sb_parse_result *")

    def parse(self, chunk: bytes, start: int, skip_below: int, max_records: int) -> Tuple[int, int, int]:
        """Parse whole frames of chunk from start; returns (records described, bytes
        consumed, offset after the last frame parsed, or skip_below if none was).
        CorruptFrame, with .position in the chunk and .after_offset, at a bad frame."""
        result = self._result
        result.next_offset = skip_below
        n = lib.sb_parse(chunk, start, len(chunk), skip_below, min(max_records, self.max_records),
                         self.desc, result)
        if n == lib.SB_CORRUPT:
            raise CorruptFrame(f"corrupt frame at byte {result.bad_position}",
                               position=result.bad_position, after_offset=result.next_offset - 1)
        if n < 0:
            _raise_for(n, "segment chunk")
        return n, result.consumed, result.next_offset

    def words(self, n: int) -> List[int]:
        return ffi.unpack(self.desc, n * DESC_WORDS)


# ---------------------------------------------------------------------------
# The control page: consumer group generations (control.c)
# ---------------------------------------------------------------------------

class ControlPage:
    """The bus's mapped control page: a generation word per group (written by the
    supervisor, loaded by members on each poll) and a last-poll time per member.
    Close it explicitly; never left to GC."""

    __slots__ = ("name", "ptr", "id")

    def __init__(self, name: str, ptr: CData):
        self.name = name
        self.ptr = ptr
        self.id = lib.sb_ctl_id(ptr)  # its creation time: tells a replaced page from this one

    @classmethod
    def create(cls, name: str) -> "ControlPage":
        fd = _shm.create(name, lib.sb_ctl_total_bytes(), "control page")
        try:
            err = ffi.new("int *")
            ptr = lib.sb_ctl_create(fd, err)
            if ptr == NULL:
                _shm.unlink(name)
                raise OSError(err[0], f"cannot map control page {name}")
        finally:
            os.close(fd)
        return cls(name, ptr)

    @classmethod
    def attach(cls, name: str) -> "ControlPage":
        """Map an existing page; FileNotFoundError if absent, BadControlPage if invalid."""
        fd, size = _shm.open_existing(name, "control page")
        try:
            err = ffi.new("int *")
            ptr = lib.sb_ctl_attach(fd, size, err)
            if ptr == NULL:
                raise BadControlPage(f"{name} is not a control page of version {lib.SB_CTL_VERSION}")
        finally:
            os.close(fd)
        return cls(name, ptr)

    unlink = staticmethod(_shm.unlink)

    def close(self) -> None:
        if self.ptr is not None:
            lib.sb_ctl_close(self.ptr)
            self.ptr = None

    def generation(self, group_slot: int) -> int:
        return lib.sb_ctl_generation(self.ptr, group_slot)

    def set_generation(self, group_slot: int, generation: int) -> None:
        lib.sb_ctl_set_generation(self.ptr, group_slot, generation)

    def set_member(self, member_slot: int, token: int) -> None:
        """Give a member line to token (0 frees it) and stamp its last poll now."""
        lib.sb_ctl_member_set(self.ptr, member_slot, token)

    def idle_seconds(self, member_slot: int, token: int) -> Optional[float]:
        """Seconds since the member last polled; None if the line is no longer its own."""
        idle_ns = lib.sb_ctl_member_idle_ns(self.ptr, member_slot, token)
        return None if idle_ns < 0 else idle_ns / 1e9

    def poll(self, group_slot: int, member_slot: int, token: int) -> int:
        """A member's per-poll call: stamp its poll time (if the line is still its own)
        and return its group's generation word."""
        return lib.sb_ctl_poll(self.ptr, group_slot, member_slot, token)
