"""Writing (append.c): a producer's handle on one partition."""
from typing import NoReturn, Optional, Tuple

from .._errors import MessageTooLarge
from .._native._core import ffi, lib
from .core import CData, raise_for
from .ring import Ring


_sb_reserve, _sb_commit = lib.sb_reserve, lib.sb_commit   # per-record calls of reserve()
RECORD_WORDS: int = lib.SB_RECORD_WORDS


class Writer:
    """A producer's handle on one partition: the ring, a producer slot, how long one
    append may sleep for space (then Python looks around), the timestamp the last
    append used and where its record ends. Release it to free the slot."""

    __slots__ = ("ring", "ptr", "address", "_value_at", "_value_address", "_keeper", "_appended")

    def __init__(self, ring: Ring, wait_ns: int):
        self.ring = ring
        self.ptr = ffi.new("sb_writer *")
        self.ptr.ring = ring.ptr
        self.ptr.wait_ns = wait_ns
        self.ptr.slot = ring.acquire_slot()
        self.address = int(ffi.cast("uintptr_t", self.ptr))   # for the C fast path (fastpath.py)
        self._value_at = ffi.new("char **")
        self._value_address = ffi.cast("uintptr_t *", self._value_at)   # the same word, read as an int
        self._keeper: Optional[CData] = None   # keeps the ring mapped for reserve()'s views
        self._appended = ffi.new("uint32_t *")   # append_batch's count, allocated once

    def view_keeper(self) -> CData:
        """What a reserve() view holds to keep the ring mapped: one per writer, made on the
        first reserve (a keeper per record cost more than the rest of reserve together)."""
        if self._keeper is None:
            self._keeper = self.ring.view_keeper()
        return self._keeper

    @property
    def reserving_thread(self) -> Optional[int]:
        """The thread whose reserve() is open on this writer, if one is (the C fast path
        sets it too: it lives in the sb_writer)."""
        return self.ptr.reserving_thread or None

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
        appended = self._appended
        code = lib.sb_append_batch(self.ptr, key, key_len, headers, headers_len, values, value_lens,
                                   count, timestamp_ns, appended)
        if code < 0:
            self._raise(code)
        return code, appended[0]

    def append_records(self, data: CData, descriptors: CData, count: int) -> Tuple[int, int]:
        """Append the longest prefix of count records, each with its own key, headers and
        timestamp (RECORD_WORDS descriptor words each: see sb_append_records), that fits one
        claim. Returns (first offset, records appended)."""
        appended = ffi.new("uint32_t *")
        code = lib.sb_append_records(self.ptr, data, descriptors, count, appended)
        if code < 0:
            self._raise(code)
        return code, appended[0]

    def reserve(self, key: CData, key_len: int, headers: CData, headers_len: int, value_len: int,
                timestamp_ns: int, thread: int) -> Tuple[int, int]:
        """Claim one record's place with its value left to fill in place: (offset, address
        of the value's bytes in the ring). The slot stays taken until commit() or abort()."""
        code = _sb_reserve(self.ptr, key, key_len, headers, headers_len, value_len, timestamp_ns, self._value_at)
        if code < 0:
            self._raise(code)
        self.ptr.reserving_thread = thread
        return code, self._value_address[0]

    def commit(self) -> None:
        """Publish the reserved record; ClaimRevoked if it was held past the unblock timeout."""
        self.ptr.reserving_thread = 0
        code = _sb_commit(self.ptr)
        if code < 0:
            raise_for(code, self.ring.name)

    def abort(self) -> None:
        """Turn the reserved record into an aborted frame, which consumers skip."""
        self.ptr.reserving_thread = 0
        code = lib.sb_abort(self.ptr)
        if code < 0 and code != lib.SB_REVOKED:   # revoked: not published either way
            raise_for(code, self.ring.name)

    def _raise(self, code: int) -> NoReturn:
        if code == lib.SB_TOO_LARGE:
            raise MessageTooLarge(
                f"record too large for ring {self.ring.name}: at most {self.ring.max_record} bytes of "
                f"key, headers and value (half the ring); create the topic with a larger ring_bytes")
        raise_for(code, self.ring.name)

    def release(self) -> None:
        self._keeper = None   # views still out hold it, and so the mapping, themselves
        self.ring.release_slot(self.slot)
