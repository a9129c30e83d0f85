"""Producer: one C call per record (send) or per batch (send_many), straight
into the partition's ring. No buffering: when send returns, consumers can see
the record."""
import random
import threading
import time

from ._bus import ensure_topic
from ._codec import encode_headers
from ._errors import BufferFull, Closed, TopicNotFound
from ._native._core import ffi, lib
from ._ring import RingDeleted, raise_for_append
from ._types import RecordMetadata

_new_tuple = tuple.__new__
_EMPTY = b""
_NULL = ffi.NULL
# How long one C call may sleep waiting for ring space before Python looks
# around (timeout, Ctrl-C, a dead producer holding the ring up).
_WAIT_SLICE_NS = 50_000_000
# How long a send blocked on a full ring waits before checking for dead
# producers whose unfinished claims hold it up.
_REAP_AFTER = 0.2


def as_buffer(obj, what):
    """bytes pass as they are; other bytes-like objects go through the buffer protocol."""
    try:
        return ffi.from_buffer(obj)
    except TypeError:
        raise TypeError(f"{what} must be bytes-like (bytes, bytearray, memoryview) or None, "
                        f"not {type(obj).__name__}") from None


def murmur2_partition(key, num_partitions):
    """Kafka's default partitioner for keyed records: toPositive(murmur2(key)) % n."""
    return (lib.sb_murmur2(key, len(key)) & 0x7FFFFFFF) % num_partitions


class _Route:
    """A producer's view of one topic: its rings, the slot it holds in each, and
    the sticky partition for records without a key."""

    __slots__ = ("topic", "rings", "slots", "count", "sticky", "sticky_left")

    def __init__(self, topic, rings):
        self.topic = topic
        self.rings = rings
        self.slots = [-1] * len(rings)
        self.count = len(rings)
        self.sticky = random.randrange(self.count)
        self.sticky_left = 0

    def slot(self, partition):
        slot = self.slots[partition]
        if slot < 0:
            slot = self.slots[partition] = self.rings[partition].acquire_slot()
        return slot

    def release(self):
        for ring, slot in zip(self.rings, self.slots):
            ring.release_slot(slot)
        self.slots = [-1] * self.count


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
        self._lock = threading.Lock()
        self._ts = ffi.new("int64_t *")
        self._count = ffi.new("uint32_t *")
        self._closed = False

    # ---- routing ----

    def _route(self, topic):
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
            if not isinstance(partition, int) or not 0 <= partition < route.count:
                raise ValueError(f"partition must be an int in [0, {route.count}) for topic "
                                 f"{route.topic!r}, got {partition!r}")
            return partition
        if key is not None:
            return self._partitioner(key if type(key) is bytes else bytes(key), route.count)
        route.sticky_left -= nbytes
        if route.sticky_left < 0:
            route.sticky_left = self._sticky_bytes
            if route.count > 1:
                route.sticky = (route.sticky + random.randrange(1, route.count)) % route.count
        return route.sticky

    # ---- sending ----

    def send(self, topic, value, key=None, headers=None, partition=None, timestamp_ns=None,
             timeout=None):
        """Append one record; returns RecordMetadata(topic, partition, offset, timestamp_ns)
        once it is in shared memory and visible to consumers."""
        route = self._routes.get(topic) or self._route(topic)
        if type(value) is bytes:
            value_len = len(value)
        elif value is None:
            value, value_len = _NULL, -1
        else:
            value = as_buffer(value, "value")
            value_len = len(value)
        if key is None:
            if partition is None and route.sticky_left > value_len:
                route.sticky_left -= value_len
                partition = route.sticky
            else:
                partition = self._pick(route, None, partition, max(value_len, 0))
            key, key_len = _NULL, -1
        else:
            if type(key) is not bytes:
                key = as_buffer(key, "key")
            key_len = len(key)
            partition = self._pick(route, key, partition, 0)
        blob = encode_headers(headers) if headers else _EMPTY
        if timestamp_ns is None:
            timestamp_ns = -1
        elif type(timestamp_ns) is not int or timestamp_ns < 0:
            raise ValueError(f"timestamp_ns must be a non-negative int, got {timestamp_ns!r}")
        with self._lock:
            if self._closed:
                raise Closed("this producer is closed")
            slot = route.slots[partition]
            if slot < 0:
                slot = route.slot(partition)
            offset = lib.sb_append(route.rings[partition].ptr, slot, key, key_len, blob, len(blob),
                                   value, value_len, timestamp_ns, self._ts, _WAIT_SLICE_NS)
            if offset < 0:
                return self._send_slow(offset, route, partition, key, key_len, blob, value,
                                       value_len, timestamp_ns, timeout)
            return _new_tuple(RecordMetadata, (topic, partition, offset, self._ts[0]))

    def _send_slow(self, code, route, partition, key, key_len, blob, value, value_len,
                   timestamp_ns, timeout):
        """The rare outcomes of sb_append: full ring, busy lock, deleted topic."""
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        blocked_since = time.monotonic()
        while True:
            if code == lib.SB_DELETED:
                route = self._reroute(route)
            elif code in (lib.SB_FULL, lib.SB_LOCK_BUSY):
                now = time.monotonic()
                if now >= deadline:
                    raise BufferFull(
                        f"topic {route.topic!r} partition {partition}: ring full of records not yet "
                        f"safe to overwrite for {now - blocked_since:.1f}s"
                        + (" (is the supervisor running?)" if route.rings[partition].durable else "")
                    )
                if code == lib.SB_LOCK_BUSY or now - blocked_since > _REAP_AFTER:
                    route.rings[partition].reap_dead(route.slots[partition])
            else:
                raise_for_append(code, route.rings[partition])
            slot = route.slot(partition)
            code = lib.sb_append(route.rings[partition].ptr, slot, key, key_len, blob, len(blob),
                                 value, value_len, timestamp_ns, self._ts, _WAIT_SLICE_NS)
            if code >= 0:
                return _new_tuple(RecordMetadata, (route.topic, partition, code, self._ts[0]))

    def _reroute(self, route):
        """The topic's rings were deleted: it was deleted, or the bus restarted. Re-resolve."""
        route.release()
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
        value_lens = [len(v) for v in values]
        lens = ffi.new("int64_t[]", value_lens)
        data = ffi.from_buffer(blob)
        if key is not None and type(key) is not bytes:
            key = bytes(as_buffer(key, "key"))
        partition = self._pick(route, key, partition, len(blob))
        key, key_len = (_NULL, -1) if key is None else (key, len(key))
        header_blob = encode_headers(headers) if headers else _EMPTY
        if timestamp_ns is None:
            timestamp_ns = -1
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        sent, total, position = 0, len(values), 0
        with self._lock:
            if self._closed:
                raise Closed("this producer is closed")
            blocked_since = None
            while sent < total:
                slot = route.slot(partition)
                code = lib.sb_append_batch(
                    route.rings[partition].ptr, slot, key, key_len, header_blob, len(header_blob),
                    data + position, lens + sent, total - sent, timestamp_ns,
                    self._ts, _WAIT_SLICE_NS, self._count)
                if code >= 0:
                    n = self._count[0]
                    position += sum(value_lens[sent:sent + n])
                    sent += n
                    blocked_since = None
                    continue
                if code == lib.SB_DELETED:
                    route = self._reroute(route)
                elif code in (lib.SB_FULL, lib.SB_LOCK_BUSY):
                    now = time.monotonic()
                    blocked_since = blocked_since or now
                    if now >= deadline:
                        raise BufferFull(f"topic {topic!r} partition {partition}: ring stayed full; "
                                         f"{sent} of {total} records sent")
                    if code == lib.SB_LOCK_BUSY or now - blocked_since > _REAP_AFTER:
                        route.rings[partition].reap_dead(route.slots[partition])
                else:
                    raise_for_append(code, route.rings[partition])
        return sent

    def flush(self, timeout=None):
        """Return once every record this producer sent is as safe as its topic makes it.
        Memory-only topics have nothing to wait for."""
        if self._closed:
            raise Closed("this producer is closed")

    def partitions_for(self, topic):
        """The partition numbers of a topic."""
        return list(range(self._route(topic).count))

    # ---- lifetime ----

    def close(self):
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for route in self._routes.values():
                route.release()
            self._routes.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
