"""Producer: one C call per record (send) or per batch (send_many), straight
into the partition's ring. No buffering: when send returns, consumers can see
the record."""
import random
import threading
import time

from ._bus import ensure_topic
from ._codec import encode_headers
from ._errors import BufferFull, Closed, Timeout, TopicNotFound
from ._native._core import ffi, lib
from ._ring import raise_for_append
from ._types import RecordMetadata

_new_tuple = tuple.__new__
# The C calls of the straight-line paths, looked up once rather than per record.
_append_value = lib.sb_append_value
_append_keyed = lib.sb_append_keyed
_EMPTY = b""
_NULL = ffi.NULL
# How long one C call may sleep waiting for ring space before Python looks
# around (timeout, Ctrl-C, a dead producer holding the ring up).
_WAIT_SLICE_NS = 50_000_000
# How long a send blocked on a full ring waits before checking for dead
# producers whose unfinished claims hold it up.
_REAP_AFTER = 0.2


def _not_bytes_like(obj, what):
    return TypeError(f"{what} must be bytes-like (bytes, bytearray, memoryview) or None, "
                     f"not {type(obj).__name__}")


def as_buffer(obj, what):
    """A bytes-like object as a C buffer, without copying it."""
    try:
        return ffi.from_buffer(obj)
    except TypeError:
        raise _not_bytes_like(obj, what) from None


def as_bytes(obj, what):
    """A bytes-like object as bytes (a copy: for keys, which are small)."""
    try:
        return bytes(memoryview(obj))
    except TypeError:
        raise _not_bytes_like(obj, what) from None


def murmur2_partition(key, num_partitions):
    """Kafka's default partitioner for keyed records: toPositive(murmur2(key)) % n."""
    return (lib.sb_murmur2(key, len(key)) & 0x7FFFFFFF) % num_partitions


class _Route:
    """A producer's view of one topic: its rings, a C writer (ring + slot) per
    partition, taken on first use, and the sticky partition for keyless records."""

    __slots__ = ("topic", "rings", "writers", "count", "sticky", "sticky_left", "sticky_writer",
                 "key_partitions")

    def __init__(self, topic, rings):
        self.topic = topic
        self.rings = rings
        self.count = len(rings)
        self.writers = [None] * self.count
        self.sticky = random.randrange(self.count)
        self.sticky_left = 0
        self.sticky_writer = None
        self.key_partitions = {}  # a cache: murmur2 of a hot key is computed once

    def writer(self, partition):
        writer = self.writers[partition]
        if writer is None:
            writer = ffi.new("sb_writer *")
            writer.ring = self.rings[partition].ptr
            writer.slot = self.rings[partition].acquire_slot()
            writer.wait_ns = _WAIT_SLICE_NS
            self.writers[partition] = writer
        return writer

    def stick_to(self, partition, budget):
        self.sticky_writer = self.writer(partition)
        self.sticky = partition
        self.sticky_left = budget

    def release(self):
        for ring, writer in zip(self.rings, self.writers):
            if writer is not None:
                ring.release_slot(writer.slot)
        self.writers = [None] * self.count
        self.sticky_left = 0
        self.sticky_writer = None


class Producer:
    """Sends records to topics.

    Options:
      timeout      seconds send/send_many wait for ring space before BufferFull (default 30).
      partitioner  callable(key: bytes, num_partitions) -> partition for keyed records;
                   default Kafka's murmur2, so a key lands where Kafka would put it.
      sticky_bytes records without a key stick to one partition for this many value
                   bytes, then move on (Kafka's sticky partitioner; default 16 KiB).

    Thread-safe. Records one producer sends to one partition keep their order.
    """

    def __init__(self, bus, timeout=30.0, partitioner=None, sticky_bytes=16384):
        self._bus = bus
        self._timeout = timeout
        self._partitioner = partitioner or murmur2_partition
        self._sticky_bytes = sticky_bytes
        self._routes = {}
        self._lock = threading.Lock()  # routes and slots change under it; sends don't take it
        self._count = ffi.new("uint32_t *")
        self._closed = False

    # ---- routing ----

    def _route(self, topic):
        with self._lock:
            if self._closed:
                raise Closed("this producer is closed")
            if not isinstance(topic, str):
                raise TypeError(f"topic must be a str, not {type(topic).__name__}")
            route = self._routes.get(topic)
            if route is None:
                _, rings = ensure_topic(self._bus, topic)
                route = self._routes[topic] = _Route(topic, rings)
            return route

    def _pick(self, route, key, partition, nbytes):
        if partition is not None:
            if type(partition) is not int or not 0 <= partition < route.count:
                raise ValueError(f"partition must be an int in [0, {route.count}) for topic "
                                 f"{route.topic!r}, got {partition!r}")
            return partition
        if key is not None:
            key = key if type(key) is bytes else bytes(key)
            partition = route.key_partitions.get(key)
            if partition is None:
                if len(route.key_partitions) >= 4096:
                    route.key_partitions.clear()
                partition = route.key_partitions[key] = self._partitioner(key, route.count)
            return partition
        if route.sticky_left <= 0 or route.sticky_writer is None:
            # Kafka's sticky partitioner: a new partition once a batch' worth was sent.
            with self._lock:
                choice = route.sticky
                if route.count > 1 and route.sticky_writer is not None:
                    choice = (choice + random.randrange(1, route.count)) % route.count
                route.stick_to(choice, self._sticky_bytes)
        route.sticky_left -= nbytes
        return route.sticky

    # ---- sending ----

    def send(self, topic, value, key=None, headers=None, partition=None, timestamp_ns=None,
             timeout=None):
        """Append one record; returns RecordMetadata(topic, partition, offset, timestamp_ns)
        once it is in shared memory and visible to consumers."""
        route = self._routes.get(topic)
        # The common cases in straight lines: a bytes value, no headers, the
        # producer's clock, a partition whose writer exists. Anything else, and
        # any error, takes the general path below.
        if route is not None and type(value) is bytes and headers is None and timestamp_ns is None:
            if key is None:
                if partition is None and route.sticky_left > 0:
                    size = len(value)
                    route.sticky_left -= size
                    writer = route.sticky_writer
                    offset = _append_value(writer, value, size)
                    if offset >= 0:
                        return _new_tuple(RecordMetadata, (topic, route.sticky, offset, writer.timestamp_ns))
                    partition = route.sticky
                elif type(partition) is int and 0 <= partition < route.count:
                    writer = route.writers[partition]
                    if writer is not None:
                        offset = _append_value(writer, value, len(value))
                        if offset >= 0:
                            return _new_tuple(RecordMetadata, (topic, partition, offset, writer.timestamp_ns))
            elif type(key) is bytes and partition is None:
                partition = route.key_partitions.get(key)
                writer = route.writers[partition] if partition is not None else None
                if writer is not None:
                    offset = _append_keyed(writer, key, len(key), value, len(value))
                    if offset >= 0:
                        return _new_tuple(RecordMetadata, (topic, partition, offset, writer.timestamp_ns))
                partition = None  # let the general path pick (and validate) it
        return self._send(route, topic, value, key, headers, partition, timestamp_ns, timeout)

    def _send(self, route, topic, value, key, headers, partition, timestamp_ns, timeout):
        if route is None:
            route = self._route(topic)
        if type(value) is bytes:
            value_len = len(value)
        elif value is None:
            value, value_len = _NULL, -1
        else:
            value = as_buffer(value, "value")
            value_len = len(value)
        if key is None:
            partition = self._pick(route, None, partition, max(value_len, 0))
            key, key_len = _NULL, -1
        else:
            if type(key) is not bytes:
                key = as_bytes(key, "key")  # the partitioner hashes bytes
            key_len = len(key)
            partition = self._pick(route, key, partition, 0)
        blob = encode_headers(headers) if headers else _EMPTY
        if timestamp_ns is None:
            timestamp_ns = -1
        elif type(timestamp_ns) is not int or timestamp_ns < 0:
            raise ValueError(f"timestamp_ns must be a non-negative int, got {timestamp_ns!r}")
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        blocked_since = None
        while True:
            if self._closed:
                raise Closed("this producer is closed")
            writer = route.writers[partition]
            if writer is None:
                with self._lock:
                    writer = route.writer(partition)
            code = lib.sb_append(writer, key, key_len, blob, len(blob), value, value_len, timestamp_ns)
            if code >= 0:
                return _new_tuple(RecordMetadata, (route.topic, partition, code, writer.timestamp_ns))
            route, blocked_since = self._handle(code, route, partition, deadline, blocked_since)

    def _handle(self, code, route, partition, deadline, blocked_since):
        """What to do about a negative sb_append code: wait, reap, re-resolve or raise."""
        if code == lib.SB_SLOT_BUSY:  # another thread is mid-append on this partition
            time.sleep(0)
            return route, blocked_since
        if code == lib.SB_DELETED:
            return self._reroute(route), None
        if code not in (lib.SB_FULL, lib.SB_LOCK_BUSY):
            raise_for_append(code, route.rings[partition])
        now = time.monotonic()
        blocked_since = blocked_since or now
        if now >= deadline:
            ring = route.rings[partition]
            raise BufferFull(
                f"topic {route.topic!r} partition {partition}: ring full of records not yet "
                f"safe to overwrite for {now - blocked_since:.1f}s"
                + (" (is the supervisor archiving?)" if ring.durable else "")
            )
        if code == lib.SB_LOCK_BUSY or now - blocked_since > _REAP_AFTER:
            # A producer that died mid-claim holds the ring up: finish its claim.
            writer = route.writers[partition]
            route.rings[partition].reap_dead(writer.slot if writer is not None else None)
            if route.rings[partition].durable:
                # Or the archiver stopped: a dead supervisor is restarted (autostart).
                self._bus.ensure_supervisor()
        return route, blocked_since

    def _reroute(self, route):
        """The topic's rings were deleted: it was deleted, or the bus restarted. Re-resolve."""
        with self._lock:
            route.release()
            if self._routes.get(route.topic) is route:
                del self._routes[route.topic]
        try:
            self._bus.rings.refresh(route.topic, stale=route.rings)
        except TopicNotFound:
            raise TopicNotFound(f"topic {route.topic!r} was deleted") from None
        new = self._route(route.topic)
        if new.count != route.count:
            raise TopicNotFound(f"topic {route.topic!r} was deleted and created again")
        return new

    def send_many(self, topic, values, key=None, partition=None, headers=None, timestamp_ns=None,
                  timeout=None):
        """Append a batch to one partition, with as few C calls as the ring allows
        (one per half-ring of data). All records share key, headers and timestamp.
        Returns how many were sent."""
        route = self._routes.get(topic) or self._route(topic)
        if not isinstance(values, (list, tuple)):
            values = list(values)
        if not values:
            return 0
        try:
            blob = b"".join(values)
        except TypeError:
            bad = next(v for v in values if not isinstance(v, (bytes, bytearray, memoryview)))
            raise TypeError(f"send_many values must be bytes-like, not {type(bad).__name__}") from None
        # Byte lengths: len() of a memoryview or array counts items, not bytes.
        value_lens = [len(v) if type(v) is bytes else memoryview(v).nbytes for v in values]
        lens = ffi.new("int64_t[]", value_lens)
        data = ffi.from_buffer(blob)
        if key is not None and type(key) is not bytes:
            key = as_bytes(key, "key")
        partition = self._pick(route, key, partition, len(blob))
        key, key_len = (_NULL, -1) if key is None else (key, len(key))
        header_blob = encode_headers(headers) if headers else _EMPTY
        if timestamp_ns is None:
            timestamp_ns = -1
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        sent, total, position = 0, len(values), 0
        blocked_since = None
        while sent < total:
            if self._closed:
                raise Closed("this producer is closed")
            with self._lock:
                writer = route.writer(partition)
            code = lib.sb_append_batch(writer, key, key_len, header_blob, len(header_blob),
                                       data + position, lens + sent, total - sent, timestamp_ns,
                                       self._count)
            if code >= 0:
                n = self._count[0]
                position += sum(value_lens[sent:sent + n])
                sent += n
                blocked_since = None
                continue
            try:
                route, blocked_since = self._handle(code, route, partition, deadline, blocked_since)
            except BufferFull as e:
                raise BufferFull(f"{e}; {sent} of {total} records sent") from None
        return sent

    def flush(self, timeout=None):
        """Return once every record this producer sent to a durable topic is fsynced
        on disk (memory-only topics have nothing to wait for). Timeout if the
        supervisor does not get there in time (default: the producer's timeout)."""
        if self._closed:
            raise Closed("this producer is closed")
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        pending = [(route, p, writer.end_position) for route in list(self._routes.values())
                   for p, writer in enumerate(route.writers)
                   if writer is not None and route.rings[p].durable and writer.end_position]
        for route, p, end in pending:
            lib.sb_request_sync(route.rings[p].ptr, end)
        for route, p, end in pending:
            while True:
                left = deadline - time.monotonic()
                done = lib.sb_wait_synced(route.rings[p].ptr, end, int(max(0.0, min(left, 0.1)) * 1e9))
                if done == 1:
                    break
                if done == lib.SB_DELETED:
                    if route.rings[p].stats().synced >= end:
                        break
                    raise TopicNotFound(f"topic {route.topic!r} was deleted before its records were flushed")
                self._bus.ensure_supervisor()
                if left <= 0:
                    raise Timeout(f"flush: records of {route.topic!r} partition {p} not fsynced after "
                                  f"{(self._timeout if timeout is None else timeout):.1f}s "
                                  f"(is the supervisor running? see `shmbus topics describe`)")
                lib.sb_request_sync(route.rings[p].ptr, end)

    def partitions_for(self, topic):
        """The partition numbers of a topic."""
        return list(range(self._route(topic).count))

    # ---- lifetime ----

    def close(self):
        with self._lock:
            if self._closed:
                return
            self._closed = True
            routes = list(self._routes.values())
            self._routes.clear()
            for route in routes:
                route.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
