"""Consumer: reads partition rings directly, many records per C call, and sleeps
on the rings' futex words when there is nothing to read."""
import os
import time

from ._bus import ensure_topic
from ._codec import decode_headers
from ._errors import Closed, OffsetOutOfRange, ShmbusError, TopicNotFound
from ._log import INDEX_ENTRY, TIME_ENTRY, SegmentReader, list_segments, read_index, segment_path
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
    """

    def __init__(self, bus, topics, group=None, auto_offset_reset="latest", wait="spin",
                 spin_us=50, max_poll_records=500):
        if auto_offset_reset not in _RESETS:
            raise ValueError(f"auto_offset_reset must be one of {_RESETS}, got {auto_offset_reset!r}")
        if wait not in ("spin", "busy"):
            raise ValueError(f"wait must be 'spin' or 'busy', got {wait!r}")
        if group is not None:
            raise ShmbusError("consumer groups are not available yet: use group=None")
        self._bus = bus
        self._group = group
        self._reset = auto_offset_reset
        self._busy = wait == "busy"
        self._spin_ns = int(spin_us * 1000)
        self._max_poll_records = max_poll_records
        self._readers = []
        self._by_tp = {}
        self._capacity = _BUFFER_BYTES
        self._out = ffi.new("char[]", self._capacity)
        self._desc = None
        self._used = ffi.new("uint64_t *")
        self._wait_rings = self._wait_cursors = None
        self._next_reader = 0
        self._buffer = []
        self._buffer_index = 0
        self._closed = False
        self._subscription = []
        if topics:
            self.subscribe(topics)

    # ---- assignment ----

    def subscribe(self, topics):
        """Read every partition of these topics (replacing the current subscription)."""
        if isinstance(topics, str):
            topics = [topics]
        tps = []
        for topic in topics:
            if not isinstance(topic, str):
                raise TypeError(f"topic must be a str, not {type(topic).__name__}")
            info, _ = ensure_topic(self._bus, topic)
            tps.extend(TopicPartition(topic, p) for p in range(info.partitions))
        self._subscription = list(topics)
        self.assign(tps)

    def assign(self, partitions):
        """Read exactly these TopicPartitions, starting at auto_offset_reset."""
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
        if buffered and self._buffer_index < len(self._buffer):
            end = self._buffer_index + max_records
            batch = self._buffer[self._buffer_index:end]
            self._buffer_index = min(end, len(self._buffer))
            return batch
        if not self._readers:
            if timeout is not None:
                time.sleep(timeout)
            return []
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            batch = self._fetch(max_records)
            if batch:
                return batch
            if deadline is None:
                slice_ns = int(_WAIT_SLICE * 1e9)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                slice_ns = int(min(remaining, _WAIT_SLICE) * 1e9)
            spin = slice_ns if self._busy else self._spin_ns
            lib.sb_wait_data(self._wait_rings, self._wait_cursors, len(self._readers), slice_ns, spin)

    def _fetch(self, max_records):
        """One pass over the assigned partitions, starting after the last one read."""
        readers = self._readers
        count = len(readers)
        messages = []
        for i in range(count):
            reader = readers[(self._next_reader + i) % count]
            if reader.pending is not None and not self._apply_seek(reader):
                continue
            self._read(reader, max_records - len(messages), messages)
            if len(messages) >= max_records:
                self._next_reader = (self._next_reader + i + 1) % count
                break
        return messages

    def _read(self, reader, max_records, messages):
        if self._desc is None:
            self._desc = ffi.new("int64_t[]", _READ_CHUNK * _DESC)
        while max_records > 0:
            if reader.log is not None:
                n = self._read_disk(reader, min(max_records, _READ_CHUNK), messages)
                if n is None:
                    return
                max_records -= n
                continue
            n = lib.sb_read(reader.ring.ptr, reader.cursor, min(max_records, _READ_CHUNK), self._out,
                            self._capacity, self._desc, self._used)
            if n > 0:
                self._decode(reader.tp, n, messages, self._out_data(n))
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
        n, data = reader.log.read(max_records, self._desc)
        if n:
            self._decode(reader.tp, n, messages, data)
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
        raise ShmbusError("commit needs a consumer group: create the consumer with group=...")

    def committed(self, tp):
        raise ShmbusError("committed offsets need a consumer group: create the consumer with group=...")

    # ---- lifetime ----

    def _check_open(self):
        if self._closed:
            raise Closed("this consumer is closed")

    def close(self):
        self._closed = True
        self._readers = []
        self._by_tp = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
