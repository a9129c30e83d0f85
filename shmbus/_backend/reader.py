"""Reading (read.c, wait.c): a consumer's place in one ring, the buffer records are
copied into, and sleeping until any of several rings has something."""
from typing import Sequence, Tuple

from .._native._core import ffi, lib
from .core import DESC_WORDS, PLAIN_DESC_WORDS, CData, raise_for
from .ring import Ring


class ReadBuffer:
    """Where sb_read copies records and describes them: shared by every cursor of one
    consumer. It grows when a record does not fit."""

    __slots__ = ("out", "capacity", "max_records", "desc", "out_buffer", "desc_buffer", "_used", "_plain")

    def __init__(self, capacity: int = 1 << 20, max_records: int = 256):
        self.capacity = capacity
        self.out = ffi.new("char[]", capacity)
        self.max_records = max_records
        self.desc = ffi.new("int64_t[]", max_records * DESC_WORDS)
        # Buffer views of both, for decode() (fastpath.py), made once.
        self.out_buffer = ffi.buffer(self.out)
        self.desc_buffer = ffi.buffer(self.desc)
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
        self.out_buffer = ffi.buffer(self.out)


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
            raise_for(code, self.ring.name)
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
            raise_for(n, self.ring.name)


class BatchScratch:
    """Descriptor words for up to max_records records, for batch reads (poll_batch): one
    per consumer, grown to the largest batch asked for."""

    __slots__ = ("max_records", "desc", "_used", "_plain")

    def __init__(self, max_records: int):
        self.max_records = max_records
        self.desc = ffi.new("int64_t[]", max_records * DESC_WORDS)
        self._used = ffi.new("uint64_t *")
        self._plain = ffi.new("int *")

    def words(self, n: int, plain: bool) -> memoryview:
        """The descriptor words of the last read's n records, as a buffer of int64."""
        return memoryview(ffi.buffer(self.desc, n * (PLAIN_DESC_WORDS if plain else DESC_WORDS) * 8))


def read_batch(cursor: "Cursor", scratch: BatchScratch, out: CData, capacity: int,
               max_records: int) -> Tuple[int, int, bool]:
    """Copy up to max_records available records into out (capacity bytes), describing them
    in scratch: (records, bytes used, plain). (0, 0, False): none yet; (-1, bytes, False):
    the first record needs that many bytes. Lapped, RingDeleted, CorruptFrame as read()."""
    n = lib.sb_read(cursor.ring.ptr, cursor.ptr, min(max_records, scratch.max_records), out, capacity,
                    scratch.desc, scratch._used, scratch._plain)
    if n >= 0:
        return n, scratch._used[0], bool(scratch._plain[0])
    if n == lib.SB_EMPTY:
        return 0, 0, False
    if n == lib.SB_BUFFER_SMALL:
        return -1, scratch._used[0], False
    raise_for(n, cursor.ring.name)


def read_views(cursor: "Cursor", scratch: BatchScratch, max_records: int) -> int:
    """Describe up to max_records available records in place (positions in the ring's data
    area), without copying: how many (0: none yet). Hold a lease on the position first."""
    n = lib.sb_read_views(cursor.ring.ptr, cursor.ptr, min(max_records, scratch.max_records), scratch.desc,
                          scratch._used)
    if n >= 0:
        return n
    if n == lib.SB_EMPTY:
        return 0
    raise_for(n, cursor.ring.name)


class WaitSet:
    """Sleep until one of several cursors has something to read (a frame, a lap, a
    deletion) or a producer asks for an fsync: spin, then futex_waitv on the rings'
    wake-up words (wait.c)."""

    # Most rings one futex_waitv call sleeps on (the kernel's limit). Beyond it a set
    # sleeps on the first ones; the caller's wait slices bound how late the others are seen.
    MAX_RINGS = 128

    __slots__ = ("count", "_rings", "_cursors")
    # A stoppable wait sleeps on the stop word too: one ring fewer.
    MAX_STOPPABLE_RINGS = lib.SB_WAIT_MAX_RINGS - 1

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
            raise_for(found, "wait")
        return found == 1

    def wait_or_stop(self, timeout_ns: int, stop: "StopWord", seen: int) -> int:
        """Sleep (no spin) until something is ready (1), timeout (0), or stop moved past seen
        (STOPPED). For a helper thread another thread must be able to wake (asyncio)."""
        found = lib.sb_wait_data_or_stop(self._rings, self._cursors, min(self.count, self.MAX_STOPPABLE_RINGS),
                                         timeout_ns, stop.word, seen)
        if found < 0:
            raise_for(found, "wait")
        return found


STOPPED: int = lib.SB_WAIT_STOPPED


class StopWord:
    """A waiter's own futex word: another thread ends its stoppable waits at once with
    stop() (sb_stop_wait). Read `value` before handing the wait over; a wait with that
    value ends once stop() was called after the read."""

    __slots__ = ("word",)

    def __init__(self) -> None:
        self.word = ffi.new("uint32_t *")

    @property
    def value(self) -> int:
        return self.word[0]

    def stop(self) -> None:
        lib.sb_stop_wait(self.word)

