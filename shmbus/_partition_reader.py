"""One partition as a consumer reads it: the consumer's counterpart of the producer's
route.

A PartitionReader holds a cursor in the partition's ring and a pending seek, which
it resolves against the ring (an O(1) index lookup) or, for offsets the ring no
longer holds on a durable topic, against the segment files. While its position is
older than the ring holds it reads the segment files, then rejoins the ring at the
offset where the disk ends (Aeron Archive's replay-merge): same offsets, same
order, no gap, no duplicate. A durable ring that laps it sends it to disk the same
way; a memory-only one skips it to the oldest record and counts what it missed.
"""
import time
from typing import List, Optional, Union

from ._access import Trust, server_trust
from ._backend import Cursor, ReadBuffer, Ring, decode, decode_plain
from ._codec import decode_headers
from ._errors import CorruptSegment, Lapped, OffsetOutOfRange, OutOfRing
from ._log import SegmentReader
from ._ring_table import RingTable
from ._types import Message, TopicPartition

# A pending seek: an offset, or where auto_offset_reset says.
Target = Union[int, str]


class PartitionReader:
    """One assigned partition: its ring, the C cursor, a pending seek, and, while the
    position is older than the ring holds (durable topics), a reader of the segment
    files. `reset` is the consumer's auto_offset_reset: "earliest", "latest" or "none"."""

    __slots__ = ("tp", "table", "ring", "cursor", "pending", "log_dir", "log", "reset", "closed")

    def __init__(self, tp: TopicPartition, table: RingTable, ring: Ring, pending: Optional[Target], log_dir: str,
                 reset: str):
        self.tp = tp
        self.table = table   # the reader holds its ring there
        table.hold(ring)
        self.ring = ring
        self.cursor = Cursor(ring)
        self.pending = pending   # None (resolved), "earliest", "latest" or an offset
        self.log_dir = log_dir if ring.durable else None
        self.log: Optional[SegmentReader] = None   # while reading from disk
        self.reset = reset
        self.closed = False

    # ---- positions ----

    def seek(self, target: Target) -> None:
        """Make target the next record read (resolved at the next read or position())."""
        self.pending = target
        self.leave_disk()

    def position(self) -> int:
        """The offset of the next record this reader returns."""
        if self.pending is not None:
            self.resolve()
        return self.cursor.next_offset

    def resolve(self) -> bool:
        """Resolve a pending seek against the ring, or the segment files for offsets the
        ring no longer holds; False if it must be retried."""
        target, cursor = self.pending, self.cursor
        self.leave_disk()
        if target == "earliest":
            cursor.seek_head()
            if self.log_dir is not None:
                earliest = SegmentReader(self.log_dir, self.trust, self.tp).earliest()
                if earliest is not None and earliest < cursor.next_offset:
                    target = earliest
            if target == "earliest":
                self.pending = None
                return True
        if target == "latest":
            cursor.seek_end()
        else:
            assert isinstance(target, int)
            try:
                if not cursor.seek(target):
                    return False
            except OutOfRing:
                if not (self.log_dir is not None and target < self.ring.stats().head_offset
                        and self._enter_disk(target)):
                    if self.reset == "none":
                        self.pending = None
                        raise OffsetOutOfRange(f"offset {target} of {self.tp} is not retained") from None
                    self.pending = self.reset
                    return self.resolve()
        self.pending = None
        return True

    def _enter_disk(self, offset: int) -> bool:
        """Read from the segment files from offset on; False if the disk lacks it."""
        assert self.log_dir is not None
        log = SegmentReader(self.log_dir, self.trust, self.tp)
        try:
            log.seek(offset)
        except OffsetOutOfRange:
            log.close()
            return False
        self.log = log
        self.cursor.next_offset = offset
        return True

    @property
    def trust(self) -> Trust:
        """What the partition's segment files must be: its ring's owner's, closed to "other"."""
        return server_trust(self.ring.owner)

    def leave_disk(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None

    def reattach(self, ring: Ring) -> None:
        """The ring was replaced (a restarted supervisor made a new one): go on in the new
        one at the same offset."""
        next_offset = self.cursor.next_offset
        self.leave_disk()
        self.table.hold(ring)
        self.table.release(self.ring)
        self.ring = ring
        self.cursor = Cursor(ring)
        self.pending = next_offset

    def close(self) -> None:
        """Let go of the disk and the ring (once: a closed reader holds nothing)."""
        self.leave_disk()
        if not self.closed:
            self.closed = True
            self.table.release(self.ring)

    # ---- reading ----

    def read(self, buffer: ReadBuffer, max_records: int, messages: List[Message], budget: int) -> int:
        """Append up to max_records Messages, stopping once about `budget` bytes are read.
        Returns the bytes read. RingDeleted if the ring was deleted."""
        used = 0
        while max_records > 0 and used < budget:
            if self.pending is not None and not self.resolve():
                return used
            if self.log is not None:
                n, consumed = self._read_disk(min(max_records, buffer.max_records), messages)
                if n is None:
                    return used
                used += consumed
                max_records -= n
                continue
            first_offset = self.cursor.next_offset
            try:
                n = self.cursor.read(buffer, max_records)
            except Lapped:
                # Producers overwrote our place in the ring: it is on disk (they never
                # overwrite what is not archived). Read there, then rejoin the ring.
                offset = self.cursor.next_offset
                if not self._enter_disk(offset):
                    self.pending = offset
                continue
            if n == 0:
                return used
            if buffer.plain:
                decode_plain(messages, self.tp.topic, self.tp.partition, buffer.out_buffer, buffer.desc_buffer, n,
                             first_offset)
            else:
                decode(messages, self.tp.topic, self.tp.partition, buffer.out_buffer, buffer.desc_buffer, n,
                       decode_headers)
            used += buffer.used
            max_records -= n
        return used

    def _read_disk(self, max_records: int, messages: List[Message]) -> "tuple[Optional[int], int]":
        """Records from the segment files; at their end, rejoin the ring. Returns (records
        read, bytes read), or (None, 0) when there is nothing now."""
        log = self.log
        assert log is not None
        try:
            n, data = log.read(max_records)
        except OffsetOutOfRange:
            # Retention deleted the segment under us: start over where the policy says.
            if self.reset == "none":
                raise
            self.leave_disk()
            self.pending = self.reset
            return None, 0
        except CorruptSegment as e:
            # What the disk cannot give, the ring may still hold: read it there.
            if e.offset is None:
                raise
            try:
                rejoined = self.cursor.seek(e.offset)
            except OutOfRing:
                rejoined = None
            if rejoined:
                self.leave_disk()
                return 0, 0
            self.cursor.next_offset = e.offset  # (a seek that fails moves the cursor)
            if rejoined is None:
                raise e from None
            return None, 0  # a frame before it in the ring is still being written: try again
        if n:
            decode(messages, self.tp.topic, self.tp.partition, data, log.parser.desc_buffer, n, decode_headers)
            self.cursor.next_offset = messages[-1].offset + 1
            return n, log.last_consumed
        offset = log.next_offset
        assert offset is not None
        try:
            rejoined = self.cursor.seek(offset)
        except OutOfRing:
            rejoined = False
        if rejoined:
            self.leave_disk()
            return 0, 0
        self.cursor.next_offset = offset
        return None, 0

    def first_at_or_after(self, timestamp_ns: int, buffer: ReadBuffer) -> Optional[int]:
        """Scan on from the position for the first record with a timestamp >= timestamp_ns."""
        while self.pending is not None:
            if not self.resolve():
                time.sleep(0.001)
        while True:
            messages: List[Message] = []
            self.read(buffer, buffer.max_records, messages, 1 << 62)
            if not messages:
                return None
            for message in messages:
                if message.timestamp_ns >= timestamp_ns:
                    return message.offset
