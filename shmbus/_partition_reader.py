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
from typing import Any, List, Optional, Union

from ._access import Trust, server_trust
from . import _numpy
from ._backend import BatchScratch, Cursor, ReadBuffer, Ring, c_buffer, decode, decode_plain, read_batch, read_views
from ._batch import RecordBatch, from_words
from ._liveness import my_token
from ._codec import decode_headers
from ._errors import CorruptSegment, Lapped, OffsetOutOfRange, OutOfRing
from ._log import SegmentReader
from ._ring_table import RingTable
from ._types import Message, TopicPartition

# A pending seek: an offset, or where auto_offset_reset says.
Target = Union[int, str]
# What _read_views returns when the ring cannot lease the position.
_NO_LEASE = object()


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

    def read_batch(self, scratch: BatchScratch, max_records: int, budget: int,
                   view_lease_ns: Optional[int]) -> Optional[RecordBatch]:
        """Up to max_records records as one RecordBatch (about `budget` bytes at most), or
        None if there are none now. With view_lease_ns, values view the ring under a lease
        of that long when the ring can give one (else, and from disk, they are copied).
        RingDeleted if the ring was deleted."""
        while True:
            if self.pending is not None and not self.resolve():
                return None
            if self.log is not None:
                log = self.log
                n, _, chunk = self._read_disk_step(min(max_records, log.parser.max_records))
                if n is None:
                    return None
                if n:
                    return from_words(self.tp.topic, self.tp.partition, chunk, log.parser.desc_buffer, n, False, 0)
                continue
            try:
                if view_lease_ns is not None:
                    batch = self._read_views(scratch, max_records, view_lease_ns)
                    if batch is not _NO_LEASE:
                        return batch
                return self._read_copy(scratch, max_records, budget)
            except Lapped:
                # Producers overwrote our place in the ring: it is on disk (they never
                # overwrite what is not archived). Read there, then rejoin the ring.
                offset = self.cursor.next_offset
                if not self._enter_disk(offset):
                    self.pending = offset

    def _read_copy(self, scratch: BatchScratch, max_records: int, budget: int) -> Optional[RecordBatch]:
        np = _numpy.require("Consumer.poll_batch")
        first_offset = self.cursor.next_offset
        # At most what the ring holds unread, or the budget; at least the next record.
        capacity = max(64, min(budget, self.ring.tail() - self.cursor.position))
        while True:
            out = np.empty(capacity, np.uint8)
            n, used, plain = read_batch(self.cursor, scratch, c_buffer(out), capacity, max_records)
            if n >= 0:
                break
            capacity = used   # the first record is larger than the budget: it comes alone
        if n == 0:
            return None
        out.resize(used, refcheck=False)   # give back what the records did not take
        return from_words(self.tp.topic, self.tp.partition, out, scratch.words(n, plain), n, plain, first_offset)

    def _read_views(self, scratch: BatchScratch, max_records: int, lease_ns: int) -> Any:
        """A zero-copy batch, or _NO_LEASE if the ring cannot lease the position (read
        with a copy then), or None if there is nothing to read."""
        ring, position = self.ring, self.cursor.position
        lease = ring.lease(position, lease_ns, my_token())
        if lease is None:
            return _NO_LEASE
        try:
            n = read_views(self.cursor, scratch, max_records)
        except BaseException:
            ring.release_lease(lease)
            raise
        if n == 0:
            ring.release_lease(lease)
            return None
        view, _ = ring.data_view()
        self.table.hold(ring)   # the batch holds the ring until it lets go of the lease
        ended: List[bool] = []

        def end_lease() -> bool:
            if ended:
                return True
            ended.append(True)
            try:
                return ring.release_lease(lease)
            finally:
                self.table.release(ring)

        return from_words(self.tp.topic, self.tp.partition, view.toreadonly(), scratch.words(n, False), n, False, 0,
                          end_lease)

    def _read_disk(self, max_records: int, messages: List[Message]) -> "tuple[Optional[int], int]":
        """Records from the segment files, as Messages; at their end, rejoin the ring.
        Returns (records read, bytes read), or (None, 0) when there is nothing now."""
        n, consumed, chunk = self._read_disk_step(max_records)
        if n:
            assert self.log is not None
            decode(messages, self.tp.topic, self.tp.partition, chunk, self.log.parser.desc_buffer, n,
                   decode_headers)
        return n, consumed

    def _read_disk_step(self, max_records: int) -> "tuple[Optional[int], int, Optional[bytes]]":
        """Parse records from the segment files; at their end, rejoin the ring. Returns
        (records parsed, bytes read, the chunk they are in: log.parser describes them),
        (0, 0, None) after rejoining the ring, or (None, 0, None) when there is nothing now."""
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
            return None, 0, None
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
                return 0, 0, None
            self.cursor.next_offset = e.offset  # (a seek that fails moves the cursor)
            if rejoined is None:
                raise e from None
            return None, 0, None  # a frame before it in the ring is still being written: try again
        if n:
            self.cursor.next_offset = log.parser.last_offset(n) + 1
            return n, log.last_consumed, data
        offset = log.next_offset
        assert offset is not None
        try:
            rejoined = self.cursor.seek(offset)
        except OutOfRing:
            rejoined = False
        if rejoined:
            self.leave_disk()
            return 0, 0, None
        self.cursor.next_offset = offset
        return None, 0, None

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
