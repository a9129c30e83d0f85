"""Consumer: reads partition rings directly, many records per C call, and sleeps
on the rings' futex words when there is nothing to read."""
import os
import time

from ._bus import ensure_topic
from ._codec import decode_headers
from ._errors import Closed, OffsetOutOfRange, ShmbusError, TopicNotFound
from ._group import GroupMember
from ._log import TIME_ENTRY, SegmentReader, list_segments, read_index, segment_path
from ._native._core import ffi, lib
from ._types import Message, TopicPartition

_new_tuple = tuple.__new__
_DESC = lib.SB_DESC_WORDS
# Longest a single C wait lasts, so Ctrl-C and deadlines are seen promptly.
_WAIT_SLICE = 0.1
_RESETS = ("earliest", "latest", "none")
_BUFFER_BYTES = 1 << 20
# Records per C read: enough to amortize the call, few enough that the copy
# and its descriptors stay in L2 while Python turns them into Messages.
_READ_CHUNK = 256


class _Reader:
    """One assigned partition: its ring, the C cursor, a pending seek, and, while the
    position is older than the ring holds (durable topics), a reader of the segment files."""

    __slots__ = ("tp", "ring", "cursor", "pending", "log_dir", "log")

    def __init__(self, tp, ring, pending, log_dir):
        self.tp = tp
        self.ring = ring
        self.cursor = ffi.new("sb_cursor *")
        self.pending = pending  # None, "earliest", "latest" or an offset
        self.log_dir = log_dir if ring.durable else None
        self.log = None         # a SegmentReader while reading from disk

    def leave_disk(self):
        if self.log is not None:
            self.log.close()
            self.log = None


class Consumer:
    """Reads records from topics.

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
    """

    def __init__(self, bus, topics, group=None, auto_offset_reset="latest", wait="spin",
                 spin_us=50, max_poll_records=500, max_poll_bytes=8 << 20,
                 assignment_strategy="range", sticky=False,
                 max_poll_interval=300.0, enable_auto_commit=False, auto_commit_interval=5.0,
                 on_assign=None, on_revoke=None):
        if auto_offset_reset not in _RESETS:
            raise ValueError(f"auto_offset_reset must be one of {_RESETS}, got {auto_offset_reset!r}")
        if wait not in ("spin", "busy"):
            raise ValueError(f"wait must be 'spin' or 'busy', got {wait!r}")
        lib.sb_keep_freed_heap()  # see frame.c: large values would page-fault on every batch
        self._bus = bus
        self._group = group
        self._reset = auto_offset_reset
        self._busy = wait == "busy"
        self._spin_ns = int(spin_us * 1000)
        self._max_poll_records = max_poll_records
        self._max_poll_bytes = max_poll_bytes
        self._budget = max_poll_bytes
        self._readers = []
        self._by_tp = {}
        self._capacity = _BUFFER_BYTES
        self._out = ffi.new("char[]", self._capacity)
        self._desc = None
        self._used = ffi.new("uint64_t *")
        self._plain = ffi.new("int *")
        self._wait_rings = self._wait_cursors = None
        self._next_reader = 0
        self._buffer = []
        self._buffer_index = 0
        self._closed = False
        self._subscription = []
        # Consumer groups: the membership (None without a group), and the hook every
        # poll calls once this consumer has joined (one C load of the generation word).
        self._member = None
        self._on_poll = None
        if group is not None:
            self._member = GroupMember(bus, self, group, assignment_strategy, sticky, max_poll_interval,
                                       enable_auto_commit, auto_commit_interval)
        if topics:
            try:
                self.subscribe(topics, on_assign=on_assign, on_revoke=on_revoke)
            except BaseException:
                self.close()  # a group member that joined must not hold partitions for nobody
                raise

    # ---- assignment ----

    def subscribe(self, topics, on_assign=None, on_revoke=None):
        """Read these topics (replacing the current subscription). Without a group: every
        partition. With a group: the partitions the group gives this member, each from its
        committed offset; on_revoke(partitions) runs before partitions are taken away (commit
        there), on_assign(partitions) after new ones are given."""
        self._check_open()
        if isinstance(topics, str):
            topics = [topics]
        tps = []
        for topic in topics:
            if not isinstance(topic, str):
                raise TypeError(f"topic must be a str, not {type(topic).__name__}")
            info, _ = ensure_topic(self._bus, topic)
            tps.extend(TopicPartition(topic, p) for p in range(info.partitions))
        self._subscription = list(topics)
        if self._member is not None:
            self._member.subscribe(topics, on_assign, on_revoke)
            self._on_poll = self._member.on_poll
            return
        self._assign(tps)
        if on_assign is not None:
            on_assign(set(tps))

    def assign(self, partitions):
        """Read exactly these TopicPartitions, starting at auto_offset_reset."""
        if self._member is not None:
            raise ShmbusError("a group consumer reads the partitions its group gives it: use subscribe()")
        self._assign(partitions)

    def _assign(self, partitions):
        self._check_open()
        readers = []
        for tp in partitions:
            tp = TopicPartition(*tp)
            old = self._by_tp.get(tp)
            if old is not None:
                readers.append(old)
                continue
            info, rings = ensure_topic(self._bus, tp.topic)
            if not 0 <= tp.partition < info.partitions:
                raise TopicNotFound(f"topic {tp.topic!r} has no partition {tp.partition}")
            log_dir = os.path.join(self._bus.paths.topics_dir, tp.topic, str(tp.partition))
            readers.append(_Reader(tp, rings[tp.partition], self._reset, log_dir))
        self._set_readers(readers)

    def _set_readers(self, readers):
        self._readers = readers
        self._by_tp = {r.tp: r for r in readers}
        self._buffer = [m for m in self._buffer[self._buffer_index:] if (m.topic, m.partition) in self._by_tp]
        self._buffer_index = 0
        self._rebuild_wait_arrays()

    # ---- group membership (the policy is in _group.py) ----

    def _take_partitions(self, starts):
        """Also read these partitions, each from its offset (None: auto_offset_reset)."""
        self._assign(list(self._by_tp) + [tp for tp in starts if tp not in self._by_tp])
        for tp, offset in starts.items():
            if offset is not None:
                self._by_tp[tp].pending = offset

    def _drop_partitions(self, tps):
        for reader in self._readers:
            if reader.tp in tps:
                reader.leave_disk()
        self._set_readers([r for r in self._readers if r.tp not in tps])

    def _consumed_offsets(self):
        """What commit() commits: per assigned partition, the offset after the last record
        handed to the user (records buffered for iteration do not count). A partition whose
        start is not resolved yet has nothing consumed, unless it is an explicit offset."""
        offsets = {}
        for reader in self._readers:
            if reader.pending is None:
                offsets[reader.tp] = self.position(reader.tp)
            elif isinstance(reader.pending, int):
                offsets[reader.tp] = reader.pending
        return offsets

    def _rebuild_wait_arrays(self):
        self._wait_rings = ffi.new("sb_ring *[]", [r.ring.ptr for r in self._readers])
        self._wait_cursors = ffi.new("sb_cursor *[]", [r.cursor for r in self._readers])

    def assignment(self):
        """The set of TopicPartitions this consumer reads."""
        return set(self._by_tp)

    def _reader(self, tp):
        reader = self._by_tp.get(TopicPartition(*tp))
        if reader is None:
            raise ShmbusError(f"{tp} is not assigned to this consumer")
        return reader

    # ---- positions ----

    def seek(self, tp, offset):
        """Make the next record read from tp the one at offset."""
        if not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be a non-negative int, got {offset!r}")
        self._move(self._reader(tp), offset)

    def seek_to_beginning(self, *tps):
        """Go to the earliest retained offset (of the given partitions, or all)."""
        for reader in self._targets(tps):
            self._move(reader, "earliest")

    def seek_to_end(self, *tps):
        """Go past the last record: only records sent from now on are read."""
        for reader in self._targets(tps):
            self._move(reader, "latest")

    def _targets(self, tps):
        return [self._reader(tp) for tp in tps] if tps else list(self._readers)

    def _move(self, reader, target):
        reader.pending = target
        reader.leave_disk()
        self._drop_buffered(reader.tp)

    def _drop_buffered(self, tp):
        rest = self._buffer[self._buffer_index:]
        self._buffer = [m for m in rest if (m.topic, m.partition) != tp]
        self._buffer_index = 0

    def position(self, tp):
        """The offset of the next record this consumer will return from tp."""
        reader = self._reader(tp)
        for m in self._buffer[self._buffer_index:]:
            if m.topic == reader.tp.topic and m.partition == reader.tp.partition:
                return m.offset
        if reader.pending is not None:
            self._apply_seek(reader)
        return reader.cursor.next_offset

    def offsets_for_times(self, timestamps):
        """Kafka's offsetsForTimes: {TopicPartition: timestamp_ns} -> {TopicPartition: the
        earliest offset whose record has a timestamp >= it, or None if there is none}.
        Durable topics start from the segments' time indexes, then scan a few records."""
        result = {}
        for tp, timestamp in timestamps.items():
            tp = TopicPartition(*tp)
            info, rings = ensure_topic(self._bus, tp.topic)
            if not 0 <= tp.partition < info.partitions:
                raise TopicNotFound(f"topic {tp.topic!r} has no partition {tp.partition}")
            log_dir = os.path.join(self._bus.paths.topics_dir, tp.topic, str(tp.partition))
            start = _time_index_start(log_dir, timestamp) if info.durable else None
            probe = _Reader(tp, rings[tp.partition], "earliest" if start is None else start, log_dir)
            result[tp] = self._scan_for_time(probe, timestamp)
            probe.leave_disk()
        return result

    def _scan_for_time(self, probe, timestamp):
        while probe.pending is not None:
            if not self._apply_seek(probe):
                time.sleep(0.001)
        while True:
            messages = []
            self._read(probe, _READ_CHUNK, messages)
            if not messages:
                return None
            for message in messages:
                if message.timestamp_ns >= timestamp:
                    return message.offset

    def missed(self, tp=None):
        """Records a memory-only topic overwrote before this consumer read them
        (of tp, or in all). Never garbage: the consumer skips to the oldest record."""
        readers = [self._reader(tp)] if tp is not None else self._readers
        return sum(r.cursor.missed for r in readers)

    def _apply_seek(self, reader):
        """Resolve a pending seek against the ring, or the segment files for offsets the
        ring no longer holds; False if it must be retried."""
        target, ring, cursor = reader.pending, reader.ring.ptr, reader.cursor
        reader.leave_disk()
        if target == "earliest":
            lib.sb_seek_head(ring, cursor)
            if reader.log_dir is not None:
                earliest = SegmentReader(reader.log_dir).earliest()
                if earliest is not None and earliest < cursor.next_offset:
                    target = earliest
            if target == "earliest":
                reader.pending = None
                return True
        if target == "latest":
            lib.sb_seek_end(ring, cursor)
        else:
            rc = lib.sb_seek(ring, cursor, target)
            if rc == lib.SB_EMPTY:
                return False
            if rc == lib.SB_OUT_OF_RANGE:
                if not (reader.log_dir is not None and target < reader.ring.stats().head_offset
                        and self._enter_disk(reader, target)):
                    if self._reset == "none":
                        reader.pending = None
                        raise OffsetOutOfRange(f"offset {target} of {reader.tp} is not retained")
                    reader.pending = self._reset
                    return self._apply_seek(reader)
        reader.pending = None
        return True

    def _enter_disk(self, reader, offset):
        """Read tp from its segment files from offset on; False if the disk lacks it."""
        log = SegmentReader(reader.log_dir)
        try:
            log.seek(offset)
        except OffsetOutOfRange:
            log.close()
            return False
        reader.log = log
        reader.cursor.next_offset = offset
        return True

    # ---- reading ----

    def poll(self, timeout=1.0):
        """The next record, or None if none arrives within timeout seconds (None: wait forever)."""
        batch = self._next_batch(1, timeout)
        return batch[0] if batch else None

    def poll_many(self, max_records=1000, timeout=1.0):
        """Up to max_records records, as soon as at least one is there; [] on timeout."""
        return self._next_batch(max_records, timeout)

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            if self._buffer_index < len(self._buffer):
                message = self._buffer[self._buffer_index]
                self._buffer_index += 1
                return message
            self._buffer = self._next_batch(self._max_poll_records, None, buffered=False)
            self._buffer_index = 0

    def _next_batch(self, max_records, timeout, buffered=True):
        self._check_open()
        if self._on_poll is not None:
            self._on_poll()
        if buffered and self._buffer_index < len(self._buffer):
            end = self._buffer_index + max_records
            batch = self._buffer[self._buffer_index:end]
            self._buffer_index = min(end, len(self._buffer))
            return batch
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            batch = self._fetch(max_records) if self._readers else []
            if batch:
                return batch
            if deadline is None:
                slice_ns = int(_WAIT_SLICE * 1e9)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                slice_ns = int(min(remaining, _WAIT_SLICE) * 1e9)
            if not self._readers:  # a group member may have none until a rebalance
                time.sleep(slice_ns / 1e9)
            else:
                spin = slice_ns if self._busy else self._spin_ns
                lib.sb_wait_data(self._wait_rings, self._wait_cursors, len(self._readers), slice_ns, spin,
                                 not self._busy)
            if self._on_poll is not None:
                self._on_poll()

    def _fetch(self, max_records):
        """One pass over the assigned partitions, starting after the last one read."""
        readers = self._readers
        count = len(readers)
        messages = []
        self._budget = self._max_poll_bytes
        for i in range(count):
            reader = readers[(self._next_reader + i) % count]
            if reader.pending is not None and not self._apply_seek(reader):
                continue
            self._read(reader, max_records - len(messages), messages)
            if len(messages) >= max_records or self._budget <= 0:
                self._next_reader = (self._next_reader + i + 1) % count
                break
        return messages

    def _read(self, reader, max_records, messages):
        if self._desc is None:
            self._desc = ffi.new("int64_t[]", _READ_CHUNK * _DESC)
        while max_records > 0 and self._budget > 0:
            if reader.log is not None:
                n = self._read_disk(reader, min(max_records, _READ_CHUNK), messages)
                if n is None:
                    return
                max_records -= n
                continue
            first_offset = reader.cursor.next_offset
            n = lib.sb_read(reader.ring.ptr, reader.cursor, min(max_records, _READ_CHUNK), self._out,
                            self._capacity, self._desc, self._used, self._plain)
            if n > 0:
                if self._plain[0]:
                    self._decode_plain(reader.tp, n, messages, self._out_data(n), first_offset)
                else:
                    self._decode(reader.tp, n, messages, self._out_data(n))
                self._budget -= self._used[0]
                max_records -= n
                continue
            if n == 0 or n == lib.SB_EMPTY:
                return
            if n == lib.SB_LAPPED:
                # Producers overwrote our place in the ring: it is on disk (they never
                # overwrite what is not archived). Read there, then rejoin the ring.
                offset = reader.cursor.next_offset
                if not self._enter_disk(reader, offset):
                    reader.pending = offset
                    if not self._apply_seek(reader):
                        return
                continue
            if n == lib.SB_BUFFER_SMALL:
                self._capacity = max(self._capacity * 2, self._used[0])
                self._out = ffi.new("char[]", self._capacity)
                continue
            if n == lib.SB_DELETED:
                self._reattach(reader)
                return
            raise ShmbusError(f"reading {reader.tp} failed with code {n}")

    def _read_disk(self, reader, max_records, messages):
        """Records from the segment files; at their end, rejoin the ring (Aeron's
        replay-merge). Returns how many were read, or None when there is nothing now."""
        try:
            n, data = reader.log.read(max_records, self._desc)
        except OffsetOutOfRange:
            # Retention deleted the segment under us: start over where the policy says.
            if self._reset == "none":
                raise
            reader.leave_disk()
            reader.pending = self._reset
            return None
        if n:
            self._decode(reader.tp, n, messages, data)
            self._budget -= reader.log.result.consumed
            reader.cursor.next_offset = messages[-1].offset + 1
            return n
        offset = reader.log.next_offset
        rc = lib.sb_seek(reader.ring.ptr, reader.cursor, offset)
        if rc == lib.SB_OK:
            reader.leave_disk()
            return 0
        reader.cursor.next_offset = offset
        return None

    def _out_data(self, n):
        # Small records: one copy out of the C buffer, then cheap slices of it.
        # Large ones: slice the C buffer directly, copying each value once.
        used = self._used[0]
        data = ffi.buffer(self._out, used)
        return data[:] if used < n * 4096 else data

    def _decode_plain(self, tp, n, messages, data, offset):
        """Records without key or headers, at consecutive offsets: the descriptors are
        just (timestamp, value length), the values packed back to back."""
        topic, partition = tp
        words = ffi.unpack(self._desc, n * lib.SB_PLAIN_DESC_WORDS)
        append = messages.append
        it = iter(words)
        at = 0
        for timestamp, value_len in zip(it, it):
            if value_len < 0:
                value = None
            else:
                end = at + value_len
                value = data[at:end]
                at = end
            append(_new_tuple(Message, (topic, partition, offset, timestamp, None, value, ())))
            offset += 1

    def _decode(self, tp, n, messages, data):
        topic, partition = tp
        words = ffi.unpack(self._desc, n * _DESC)
        append = messages.append
        it = iter(words)
        for offset, timestamp, key_at, key_len, headers_at, headers_len, value_at, value_len in zip(
                it, it, it, it, it, it, it, it):
            key = None if key_len < 0 else data[key_at:key_at + key_len]
            value = None if value_len < 0 else data[value_at:value_at + value_len]
            headers = decode_headers(data[headers_at:headers_at + headers_len]) if headers_len else ()
            append(_new_tuple(Message, (topic, partition, offset, timestamp, key, value, headers)))

    def _reattach(self, reader):
        """The ring was deleted: the topic is gone, or a restarted supervisor made a new one."""
        try:
            _, rings = self._bus.rings.refresh(reader.tp.topic, stale=None)
        except TopicNotFound:
            raise TopicNotFound(f"topic {reader.tp.topic!r} was deleted") from None
        if rings[reader.tp.partition] is reader.ring:
            raise TopicNotFound(f"topic {reader.tp.topic!r} was deleted")
        next_offset = reader.cursor.next_offset
        reader.ring = rings[reader.tp.partition]
        reader.pending = next_offset
        self._rebuild_wait_arrays()

    # ---- commits (consumer groups) ----

    def commit(self, offsets=None):
        """Commit, durably: with no argument, for every assigned partition the offset after the
        last record handed out; or {TopicPartition: offset}. CommitFailed if this member no
        longer owns a partition (a rebalance moved it: its records will be read again)."""
        self._check_open()
        if self._member is None:
            raise ShmbusError("commit needs a consumer group: create the consumer with group=...")
        self._member.commit(offsets)

    def committed(self, tp):
        """The group's committed offset of tp, or None."""
        self._check_open()
        if self._member is None:
            raise ShmbusError("committed offsets need a consumer group: create the consumer with group=...")
        return self._member.committed(tp)

    # ---- lifetime ----

    def _check_open(self):
        if self._closed:
            raise Closed("this consumer is closed")

    def close(self):
        if self._member is not None and not self._closed:
            self._member.close()
        self._on_poll = None
        self._closed = True
        self._readers = []
        self._by_tp = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _time_index_start(log_dir, timestamp):
    """The offset to scan from for the first record at or after timestamp: the last time
    index entry before one whose max-timestamp-so-far reaches it (None: no segments)."""
    start = None
    for base in list_segments(log_dir):
        if start is None:
            start = base
        for max_before, offset in read_index(segment_path(log_dir, base, ".timeindex"), TIME_ENTRY):
            if max_before >= timestamp:
                return start
            start = offset
    return start
