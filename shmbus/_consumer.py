"""Consumer: reads partition rings directly, many records per C call, and sleeps
on the rings' futex words when there is nothing to read. Each assigned partition
is a PartitionReader (_partition_reader.py); group membership is a GroupMember
(_group.py)."""
import os
import time
from types import TracebackType
from typing import (TYPE_CHECKING, Callable, Dict, Iterable, List, Mapping, Optional, Set, Tuple,
                    Type, Union)

from . import _backend, _checks, _numpy
from ._backend import BatchScratch, ConsumerBase, ReadBuffer, WaitSet
from ._batch import RecordBatch, from_messages
from ._errors import Closed, CorruptSegment, DeserializationError, LeaseRevoked, RingDeleted, ShmbusError, TopicNotFound
from ._group import GroupMember
from ._log import time_index_start
from ._partition_reader import PartitionReader
from ._types import Message, TopicPartition
from .serde._serde import Deserializer, Serde, as_deserializer

if TYPE_CHECKING:
    from ._bus import Bus

# A TopicPartition, or a plain (topic, partition) pair.
PartitionLike = Union[TopicPartition, Tuple[str, int]]
PartitionsCallback = Callable[[Set[TopicPartition]], None]

# Longest a single C wait lasts while a group may need this member (its generation word
# is read between waits) or some rings are beyond the futex_waitv limit. A signal (Ctrl-C)
# ends a wait at once, and a deleted or retired ring wakes its waiters, so otherwise
# waits are long: each wake-up of an idle consumer costs ~30-60 us of CPU.
_WAIT_SLICE = 0.1
_IDLE_WAIT_SLICE = 2.0
_RESETS = ("earliest", "latest", "none")
_new_tuple = tuple.__new__
# Records per C read: enough to amortize the call, few enough that the copy
# and its descriptors stay in L2 while Python turns them into Messages.
_READ_CHUNK = 256


class Consumer(ConsumerBase):
    """Reads records from topics: poll(), poll_many(), poll_batch(), or iterate
    (`for msg in consumer`, which waits for records without end; its steps are C:
    ConsumerBase).

    Options:
      group              consumer group id (None: read every partition, commit nothing).
      auto_offset_reset  where to start without a committed offset, or when an offset is no
                         longer retained: "earliest", "latest" (Kafka's default) or "none"
                         (raise OffsetOutOfRange).
      wait               "spin" (default): spin briefly, then sleep on a futex; "busy": never
                         sleep (lowest latency; burns a core while waiting).
      spin_us            how long "spin" spins before sleeping (default 50 us).
      max_poll_records   most records one iteration step fetches (default 500).
      max_poll_bytes     a poll returns once it holds about this many bytes of records
                         (default 8 MiB, like Kafka's fetch.max.bytes): it bounds the memory
                         a batch of large records takes, which the next batch then reuses.
      view_lease         seconds a zero-copy batch (poll_batch(copy=False)) holds producers back
                         from overwriting what it views (default 0.1); past it, a producer that
                         needs the space goes on, and releasing the batch raises LeaseRevoked.

    With a group (see README, "Consumer groups"):
      assignment_strategy   "range" (default) or "roundrobin"; every member must use the same.
      sticky                move as few partitions as possible on a rebalance (default False).
      max_poll_interval     seconds without a poll after which the member is removed from the
                            group and its partitions reassigned (default 300, as Kafka).
      enable_auto_commit    commit what was handed out every auto_commit_interval seconds
                            (checked at each poll), before a revoke, and at close (default False).
      auto_commit_interval  seconds (default 5.0, as Kafka).
      on_assign, on_revoke  callbacks taking a set of TopicPartitions gained / about to be lost
                            (as subscribe()'s).

    Deserializers (kafka-python's): value_deserializer and key_deserializer, callables
    bytes -> obj or a Serde (shmbus.serde.json, .msgpack, .string), turn each record's
    value / key into the Message's (None stays None). One that raises is a
    DeserializationError naming the topic, partition and offset; the position stays at that
    record.
    """

    def __init__(self, bus: "Bus", topics: List[str], group: Optional[str] = None,
                 auto_offset_reset: str = "latest", wait: str = "spin", spin_us: float = 50,
                 max_poll_records: int = 500, max_poll_bytes: int = 8 << 20, view_lease: float = 0.1,
                 assignment_strategy: str = "range", sticky: bool = False,
                 max_poll_interval: float = 300.0, enable_auto_commit: bool = False,
                 auto_commit_interval: float = 5.0, on_assign: Optional[PartitionsCallback] = None,
                 on_revoke: Optional[PartitionsCallback] = None,
                 value_deserializer: Union[None, Serde, Deserializer] = None,
                 key_deserializer: Union[None, Serde, Deserializer] = None):
        if auto_offset_reset not in _RESETS:
            raise ValueError(f"auto_offset_reset must be one of {_RESETS}, got {auto_offset_reset!r}")
        if wait not in ("spin", "busy"):
            raise ValueError(f"wait must be 'spin' or 'busy', got {wait!r}")
        _checks.seconds(spin_us, "spin_us")
        _checks.positive_int(max_poll_records, "max_poll_records")
        _checks.positive_int(max_poll_bytes, "max_poll_bytes")
        _checks.seconds(view_lease, "view_lease")
        self._value_deserializer = as_deserializer(value_deserializer, "value_deserializer")
        self._key_deserializer = as_deserializer(key_deserializer, "key_deserializer")
        self._deserializing = self._value_deserializer is not None or self._key_deserializer is not None
        _backend.keep_freed_heap()  # large values would page-fault on every batch
        self._bus = bus
        self._group = group
        self._reset = auto_offset_reset
        self._busy = wait == "busy"
        self._spin_ns = int(spin_us * 1000)
        self._max_poll_records = max_poll_records
        self._max_poll_bytes = max_poll_bytes
        self._readers: List[PartitionReader] = []   # assigned and not paused: what is read
        self._assigned: List[PartitionReader] = []  # assigned
        self._paused: Set[TopicPartition] = set()
        self._by_tp: Dict[TopicPartition, PartitionReader] = {}
        self._read_buffer: Optional[ReadBuffer] = None   # made at the first read
        self._batch_scratch: Optional[BatchScratch] = None   # made at the first poll_batch
        self._view_batch: Optional[RecordBatch] = None   # the zero-copy batch valid until the next poll
        self._view_lease_ns = int(view_lease * 1e9)
        self._warm = True   # the last wait found something: the next one spins first
        self._wait_set = WaitSet([])
        self._next_reader = 0
        # ConsumerBase's _buffer and _buffer_index: Messages fetched for iteration, not handed out yet.
        self._closed = False
        self._subscription: List[str] = []
        # Consumer groups: the membership (None without a group), and the hook every
        # poll calls once this consumer has joined (one C load of the generation word).
        self._member: Optional[GroupMember] = None
        self._on_poll: Optional[Callable[[], None]] = None
        if group is not None:
            self._member = GroupMember(bus.link, _GroupSide(self), group, assignment_strategy, sticky,
                                       max_poll_interval, enable_auto_commit, auto_commit_interval)
        if topics:
            try:
                self.subscribe(topics, on_assign=on_assign, on_revoke=on_revoke)
            except BaseException:
                self.close()  # a group member that joined must not hold partitions for nobody
                raise

    # ---- assignment ----

    def subscribe(self, topics: Union[str, Iterable[str]], on_assign: Optional[PartitionsCallback] = None,
                  on_revoke: Optional[PartitionsCallback] = None) -> None:
        """Read these topics (replacing the current subscription). Without a group: every
        partition. With a group: the partitions the group gives this member, each from its
        committed offset; on_revoke(partitions) runs before partitions are taken away (commit
        there), on_assign(partitions) after new ones are given."""
        self._check_open()
        topics = [topics] if isinstance(topics, str) else list(topics)
        tps: List[TopicPartition] = []
        for topic in topics:
            if not isinstance(topic, str):
                raise TypeError(f"topic must be a str, not {type(topic).__name__}")
            info, _ = self._bus.rings.get(topic)
            tps.extend(TopicPartition(topic, p) for p in range(info.partitions))
        self._subscription = topics
        if self._member is not None:
            self._member.subscribe(topics, on_assign, on_revoke)
            self._on_poll = self._member.on_poll
            return
        self._assign(tps)
        if on_assign is not None:
            on_assign(set(tps))

    def assign(self, partitions: Iterable[PartitionLike]) -> None:
        """Read exactly these TopicPartitions, starting at auto_offset_reset."""
        if self._member is not None:
            raise ShmbusError("a group consumer reads the partitions its group gives it: use subscribe()")
        self._assign(partitions)

    def _assign(self, partitions: Iterable[PartitionLike]) -> None:
        self._check_open()
        readers = []
        for tp in partitions:
            tp = TopicPartition(*tp)
            old = self._by_tp.get(tp)
            if old is not None:
                readers.append(old)
                continue
            readers.append(self._new_reader(tp, self._reset))
        self._set_readers(readers)

    def _new_reader(self, tp: TopicPartition, start: Union[int, str], reset: Optional[str] = None) -> PartitionReader:
        info, rings = self._bus.rings.get(tp.topic)
        if not 0 <= tp.partition < info.partitions:
            raise TopicNotFound(f"topic {tp.topic!r} has no partition {tp.partition}")
        log_dir = os.path.join(self._bus.paths.topics_dir, tp.topic, str(tp.partition))
        return PartitionReader(tp, self._bus.rings, rings[tp.partition], start, log_dir, reset or self._reset)

    def _set_readers(self, readers: List[PartitionReader]) -> None:
        for reader in self._assigned:
            if reader not in readers:
                reader.close()
        self._assigned = readers
        self._by_tp = {r.tp: r for r in readers}
        self._paused &= self._by_tp.keys()   # a partition taken away is not paused any more (Kafka)
        self._buffer = [m for m in self._buffer[self._buffer_index:] if (m.topic, m.partition) in self._by_tp]
        self._buffer_index = 0
        self._read_from([r for r in readers if r.tp not in self._paused])

    def _read_from(self, readers: List[PartitionReader]) -> None:
        """Read (and wait on) these of the assigned readers: those not paused."""
        self._readers = readers
        self._next_reader = 0
        self._wait_set = WaitSet([r.cursor for r in readers])

    def assignment(self) -> Set[TopicPartition]:
        """The set of TopicPartitions this consumer reads."""
        return set(self._by_tp)

    def _reader(self, tp: PartitionLike) -> PartitionReader:
        reader = self._by_tp.get(TopicPartition(*tp))
        if reader is None:
            raise ShmbusError(f"{tp} is not assigned to this consumer")
        return reader

    # ---- positions ----

    def seek(self, tp: PartitionLike, offset: int) -> None:
        """Make the next record read from tp the one at offset."""
        self._move(self._reader(tp), _checks.offset(offset))

    def seek_to_beginning(self, *tps: PartitionLike) -> None:
        """Go to the earliest retained offset (of the given partitions, or all)."""
        for reader in self._targets(tps):
            self._move(reader, "earliest")

    def seek_to_end(self, *tps: PartitionLike) -> None:
        """Go past the last record: only records sent from now on are read."""
        for reader in self._targets(tps):
            self._move(reader, "latest")

    def _targets(self, tps: Tuple[PartitionLike, ...]) -> List[PartitionReader]:
        return [self._reader(tp) for tp in tps] if tps else list(self._assigned)

    def _move(self, reader: PartitionReader, target: Union[int, str]) -> None:
        reader.seek(target)
        rest = self._buffer[self._buffer_index:]
        self._buffer = [m for m in rest if (m.topic, m.partition) != reader.tp]
        self._buffer_index = 0

    def position(self, tp: PartitionLike) -> int:
        """The offset of the next record this consumer will return from tp."""
        reader = self._reader(tp)
        for m in self._buffer[self._buffer_index:]:
            if m.topic == reader.tp.topic and m.partition == reader.tp.partition:
                return m.offset
        return reader.position()

    def offsets_for_times(self, timestamps: Mapping[PartitionLike, int],
                          unit: str = "ns") -> Dict[TopicPartition, Optional[int]]:
        """Kafka's offsetsForTimes: {TopicPartition: timestamp} -> {TopicPartition: the
        earliest offset whose record has a timestamp >= it, or None if there is none}.
        Durable topics start from the segments' time indexes, then scan a few records.

        unit: "ns" (the default: shmbus's timestamps, ns since the epoch, as Message.timestamp_ns)
        or "ms" (Kafka's: what kafka-python and confluent-kafka pass)."""
        if unit not in ("ns", "ms"):
            raise ValueError(f"unit must be 'ns' or 'ms' (Kafka's), got {unit!r}")
        result = {}
        for tp, timestamp in timestamps.items():
            tp = TopicPartition(*tp)
            timestamp = _checks.offset(timestamp, f"the timestamp of {tp}")
            if unit == "ms":
                timestamp *= 1_000_000
            # If retention removes the start meanwhile, the scan goes on from the earliest
            # record, whatever this consumer's auto_offset_reset says.
            probe = self._new_reader(tp, "earliest", reset="earliest")
            if probe.log_dir is not None:
                start = time_index_start(probe.log_dir, timestamp, probe.trust)
                if start is not None:
                    probe.seek(start)
            try:
                result[tp] = probe.first_at_or_after(timestamp, self._buffer_for_reads())
            finally:
                probe.close()
        return result

    def beginning_offsets(self, partitions: Iterable[PartitionLike]) -> Dict[TopicPartition, int]:
        """{tp: the earliest offset retained} (ring or segment files) of any partitions,
        assigned or not (kafka-python's beginning_offsets)."""
        return {tp: self._probe(tp, "earliest") for tp in map(_as_tp, partitions)}

    def end_offsets(self, partitions: Iterable[PartitionLike]) -> Dict[TopicPartition, int]:
        """{tp: the offset the next record will get} (Kafka's log end offset): lag is
        end_offsets()[tp] - position(tp)."""
        return {tp: self._probe(tp, "latest") for tp in map(_as_tp, partitions)}

    def _probe(self, tp: TopicPartition, where: str) -> int:
        probe = self._new_reader(tp, where, reset="earliest")
        try:
            return probe.position()
        finally:
            probe.close()

    # ---- flow control ----

    def pause(self, *partitions: PartitionLike) -> None:
        """Stop returning records of these assigned partitions (and stop waiting on them)
        until resume(); their positions stay where they are. Records of them already
        fetched for iteration are put back, read again after resume()."""
        readers = [self._reader(tp) for tp in partitions]
        for reader in readers:
            if reader.tp in self._paused:
                continue
            buffered = [m.offset for m in self._buffer[self._buffer_index:]
                        if m.topic == reader.tp.topic and m.partition == reader.tp.partition]
            if buffered:
                self._move(reader, buffered[0])
            self._paused.add(reader.tp)
        self._read_from([r for r in self._assigned if r.tp not in self._paused])

    def resume(self, *partitions: PartitionLike) -> None:
        """Return records of these paused partitions again."""
        for tp in partitions:
            self._paused.discard(self._reader(tp).tp)
        self._read_from([r for r in self._assigned if r.tp not in self._paused])

    def paused(self) -> Set[TopicPartition]:
        """The assigned partitions pause() stopped."""
        return set(self._paused)

    def unsubscribe(self) -> None:
        """Stop reading every topic: a group member leaves its group (with auto-commit, after
        committing); subscribe() or assign() start again."""
        self._check_open()
        if self._member is not None and self._member.member_id is not None:
            self._member.close()
        self._on_poll = None
        self._subscription = []
        self._set_readers([])

    def missed(self, tp: Optional[PartitionLike] = None) -> int:
        """Records a memory-only topic overwrote before this consumer read them
        (of tp, or in all). Never garbage: the consumer skips to the oldest record."""
        readers = [self._reader(tp)] if tp is not None else self._assigned
        return sum(r.cursor.missed for r in readers)

    # ---- reading ----

    def poll(self, timeout: Optional[float] = 1.0) -> Optional[Message]:
        """The next record, or None if none arrives within timeout seconds (None: wait forever)."""
        batch = self._next_batch(1, timeout)
        return batch[0] if batch else None

    def poll_many(self, max_records: int = 1000, timeout: Optional[float] = 1.0) -> List[Message]:
        """Up to max_records records, as soon as at least one is there; [] on timeout."""
        return self._next_batch(_checks.positive_int(max_records, "max_records"), timeout)

    # Iteration is ConsumerBase's (C): it hands out _buffer[_buffer_index:], then calls this.

    def _refill(self) -> None:
        """Wait (without end) for the next records to iterate over."""
        self._buffer = self._next_batch(self._max_poll_records, None, buffered=False)
        self._buffer_index = 0

    def poll_batch(self, max_records: int = 65536, timeout: Optional[float] = 1.0,
                   copy: bool = True) -> Optional[RecordBatch]:
        """Up to max_records records of ONE partition as a RecordBatch (columns, no Python
        object per record), as soon as there is one; None on timeout. Needs numpy.

        copy=True: the batch holds its own copy of the records. copy=False: its values view
        the ring itself, valid until batch.release(), the next poll or close; the batch
        holds producers back from overwriting them for up to view_lease seconds, and
        release() raises LeaseRevoked if one had to go on (see RecordBatch). Records on disk
        (a consumer behind the ring), or so far behind that producers are about to lap
        them, come as a copy either way: batch.zero_copy says which."""
        self._check_open()
        _checks.positive_int(max_records, "max_records")
        _checks.seconds(timeout, "timeout", allow_none=True)
        if type(copy) is not bool:
            raise TypeError(f"copy must be True or False, not {copy!r}")
        _numpy.require("Consumer.poll_batch")
        self._release_views()
        if self._on_poll is not None:
            self._on_poll()
        if self._buffer_index < len(self._buffer):
            return self._buffered_batch(max_records)
        if self._batch_scratch is None or self._batch_scratch.max_records < max_records:
            self._batch_scratch = BatchScratch(max_records)
        lease_ns = None if copy else self._view_lease_ns
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            batch = self._fetch_batch(self._batch_scratch, max_records, lease_ns) if self._readers else None
            if batch is not None:
                if batch.zero_copy:
                    self._view_batch = batch
                return batch
            if not self._wait(deadline):
                return None

    def _buffered_batch(self, max_records: int) -> RecordBatch:
        """The Messages fetched for iteration and not handed out go first, as a batch of the
        first one's partition."""
        start = self._buffer_index
        first = self._buffer[start]
        end = start
        while (end < len(self._buffer) and end - start < max_records
               and self._buffer[end].partition == first.partition and self._buffer[end].topic == first.topic):
            end += 1
        self._buffer_index = end
        return from_messages(first.topic, first.partition, self._buffer[start:end])

    def _fetch_batch(self, scratch: BatchScratch, max_records: int,
                     lease_ns: Optional[int]) -> Optional[RecordBatch]:
        """The first partition, after the last one read, that has records."""
        readers = self._readers
        count = len(readers)
        for i in range(count):
            index = (self._next_reader + i) % count
            reader = readers[index]
            try:
                batch = reader.read_batch(scratch, max_records, self._max_poll_bytes, lease_ns)
            except RingDeleted:
                self._reattach(reader)
                continue
            if batch is not None:
                self._next_reader = (index + 1) % count
                return batch
        return None

    def _release_views(self, quiet: bool = False) -> None:
        """Release the last zero-copy batch (valid until the next poll); LeaseRevoked unless quiet."""
        batch, self._view_batch = self._view_batch, None
        if batch is not None:
            try:
                batch.release()
            except LeaseRevoked:
                if not quiet:
                    raise

    def _next_batch(self, max_records: int, timeout: Optional[float], buffered: bool = True) -> List[Message]:
        self._check_open()
        _checks.seconds(timeout, "timeout", allow_none=True)
        if self._on_poll is not None:
            self._on_poll()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            batch = self._take(max_records, buffered)
            if batch:
                return batch
            if not self._wait(deadline):
                return []

    def _take(self, max_records: int, buffered: bool = True) -> List[Message]:
        """What is there now, without waiting (and without the group's per-poll step):
        records fetched for iteration first (if buffered), else a fetch."""
        if self._view_batch is not None:
            self._release_views()
        if buffered and self._buffer_index < len(self._buffer):
            end = self._buffer_index + max_records
            batch = self._buffer[self._buffer_index:end]
            self._buffer_index = min(end, len(self._buffer))
            return batch
        batch = self._fetch(max_records) if self._readers else []
        if batch and self._deserializing:
            return self._deserialize(batch)
        return batch

    def _deserialize(self, batch: List[Message]) -> List[Message]:
        """The batch with keys and values deserialized. At a record that fails, the records
        from it on are put back (their partitions seek back to them): the ones before it
        are returned, or if it is the first, DeserializationError is raised."""
        value_of, key_of = self._value_deserializer, self._key_deserializer
        out: List[Message] = []
        for i, m in enumerate(batch):
            what = "value"
            try:
                value = m.value if value_of is None or m.value is None else value_of(m.value)
                what = "key"
                key = m.key if key_of is None or m.key is None else key_of(m.key)
            except Exception as e:
                self._put_back(batch[i:])
                if out:
                    return out
                raise DeserializationError(
                    f"topic {m.topic!r} partition {m.partition} offset {m.offset}: the {what}_deserializer "
                    f"raised {type(e).__name__}: {e}; the position stays at this record (seek to "
                    f"offset {m.offset + 1} to skip it)", TopicPartition(m.topic, m.partition), m.offset, m) from e
            out.append(_new_tuple(Message, (m.topic, m.partition, m.offset, m.timestamp_ns, key, value, m.headers)))
        return out

    def _put_back(self, rest: List[Message]) -> None:
        """Make the first of these records, per partition, the next one read there."""
        firsts: Dict[TopicPartition, int] = {}
        for m in rest:
            firsts.setdefault(TopicPartition(m.topic, m.partition), m.offset)
        for tp, offset in firsts.items():
            reader = self._by_tp.get(tp)
            if reader is not None:
                reader.seek(offset)

    def _wait(self, deadline: Optional[float]) -> bool:
        """Sleep until a record may be there, for at most one slice; False once the
        deadline (None: none) has passed."""
        longest = _WAIT_SLICE if self._member is not None or self._wait_set.count > WaitSet.MAX_RINGS \
            else _IDLE_WAIT_SLICE
        if deadline is None:
            slice_ns = int(longest * 1e9)
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            slice_ns = int(min(remaining, longest) * 1e9)
        if not self._readers:  # a group member may have none until a rebalance
            time.sleep(slice_ns / 1e9)
        elif self._busy:
            self._wait_set.wait(slice_ns, slice_ns, False)
        else:
            # Spin first only while records have been coming: after a wait that found
            # nothing, the next record is not a spin away, and spinning would be an idle
            # consumer's main cost.
            self._warm = self._wait_set.wait(slice_ns, self._spin_ns if self._warm else 0, True)
        if self._on_poll is not None:
            self._on_poll()
        return True

    def _buffer_for_reads(self) -> ReadBuffer:
        if self._read_buffer is None:
            self._read_buffer = ReadBuffer(max_records=_READ_CHUNK)
        return self._read_buffer

    def _fetch(self, max_records: int) -> List[Message]:
        """One pass over the assigned partitions, starting after the last one read."""
        readers = self._readers
        count = len(readers)
        buffer = self._buffer_for_reads()
        messages: List[Message] = []
        budget = self._max_poll_bytes
        for i in range(count):
            reader = readers[(self._next_reader + i) % count]
            try:
                budget -= reader.read(buffer, max_records - len(messages), messages, budget)
            except RingDeleted:
                self._reattach(reader)
            except CorruptSegment:
                if not messages:
                    raise
                # The records read before it are handed out (the positions are past them
                # already); the next poll starts here and raises.
                self._next_reader = (self._next_reader + i) % count
                return messages
            if len(messages) >= max_records or budget <= 0:
                self._next_reader = (self._next_reader + i + 1) % count
                break
        return messages

    def _reattach(self, reader: PartitionReader) -> None:
        """The ring was deleted: the topic is gone, or a restarted supervisor made a new one."""
        try:
            _, rings = self._bus.rings.refresh(reader.tp.topic, stale=reader.ring)
        except TopicNotFound:
            raise TopicNotFound(f"topic {reader.tp.topic!r} was deleted") from None
        if rings[reader.tp.partition] is reader.ring:
            raise TopicNotFound(f"topic {reader.tp.topic!r} was deleted")
        reader.reattach(rings[reader.tp.partition])
        self._wait_set = WaitSet([r.cursor for r in self._readers])

    # ---- commits (consumer groups) ----

    def commit(self, offsets: Optional[Mapping[PartitionLike, int]] = None) -> None:
        """Commit, durably: with no argument, for every assigned partition the offset after the
        last record handed out; or {TopicPartition: offset}. CommitFailed if this member no
        longer owns a partition (a rebalance moved it: its records will be read again)."""
        self._check_open()
        if self._member is None:
            raise ShmbusError("commit needs a consumer group: create the consumer with group=...")
        self._member.commit(offsets)

    def committed(self, tp: PartitionLike) -> Optional[int]:
        """The group's committed offset of tp, or None."""
        self._check_open()
        if self._member is None:
            raise ShmbusError("committed offsets need a consumer group: create the consumer with group=...")
        return self._member.committed(tp)

    def _consumed_offsets(self) -> Dict[TopicPartition, int]:
        """What commit() commits: per assigned partition, the offset after the last record
        handed to the user (records buffered for iteration do not count). A partition whose
        start is not resolved yet has nothing consumed, unless it is an explicit offset."""
        offsets = {}
        for reader in self._assigned:
            if reader.pending is None:
                offsets[reader.tp] = self.position(reader.tp)
            elif isinstance(reader.pending, int):
                offsets[reader.tp] = reader.pending
        return offsets

    # ---- lifetime ----

    def _check_open(self) -> None:
        if self._closed:
            raise Closed("this consumer is closed")

    def close(self) -> None:
        self._release_views(quiet=True)
        if self._member is not None and not self._closed:
            self._member.close()
        self._on_poll = None
        self._closed = True
        for reader in self._assigned:
            reader.close()
        self._readers = []
        self._assigned = []
        self._by_tp = {}
        self._wait_set = WaitSet([])
        self._buffer = []
        self._read_buffer = None

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 traceback: Optional[TracebackType]) -> None:
        self.close()


class _GroupSide:
    """The consumer as its GroupMember sees it (_group.Assignee): the partitions a group
    may hand it or take back, and what a commit commits."""

    __slots__ = ("_consumer",)

    def __init__(self, consumer: Consumer):
        self._consumer = consumer

    def assignment(self) -> Set[TopicPartition]:
        return self._consumer.assignment()

    def take_partitions(self, starts: Mapping[TopicPartition, Optional[int]]) -> None:
        """Also read these partitions, each from its offset (None: auto_offset_reset)."""
        consumer = self._consumer
        consumer._assign(list(consumer._by_tp) + [tp for tp in starts if tp not in consumer._by_tp])
        for tp, offset in starts.items():
            if offset is not None:
                consumer._by_tp[tp].seek(offset)

    def drop_partitions(self, partitions: Set[TopicPartition]) -> None:
        consumer = self._consumer
        consumer._set_readers([r for r in consumer._assigned if r.tp not in partitions])

    def consumed_offsets(self) -> Dict[TopicPartition, int]:
        return self._consumer._consumed_offsets()


def _as_tp(tp: PartitionLike) -> TopicPartition:
    return TopicPartition(*tp)

