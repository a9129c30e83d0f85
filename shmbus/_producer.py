"""Producer: one C call per record (send) or per batch (send_many), straight
into the partition's ring. No buffering: when send returns, consumers can see
the record."""
import random
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Tuple, Type

from . import _backend
from ._backend import NULL as _NULL
from ._backend import CData, Ring, Writer
from ._codec import Headers, encode_headers
from ._ring_table import RingTable
from . import _checks, _holdup
from ._errors import (BufferFull, ClaimLockBusy, ClaimRevoked, Closed, RingDeleted, RingFull, SlotBusy, Timeout,
                      TopicNotFound)
from ._types import RecordMetadata

if TYPE_CHECKING:
    from ._bus import Bus

_new_tuple = tuple.__new__
# The C calls of the straight-line paths, looked up once rather than per record.
_append_value = _backend.append_value
_append_keyed = _backend.append_keyed
_REVOKED = _backend.APPEND_REVOKED
_EMPTY = b""
# How long one C call may sleep waiting for ring space before Python looks
# around (timeout, Ctrl-C, a dead producer holding the ring up).
_WAIT_SLICE_NS = 50_000_000
# How long a send blocked on a full ring waits before checking for dead
# producers whose unfinished claims hold it up.
_REAP_AFTER = 0.2


def _not_bytes_like(obj: object, what: str) -> TypeError:
    return TypeError(f"{what} must be bytes-like (bytes, bytearray, memoryview) or None, "
                     f"not {type(obj).__name__}")


def as_buffer(obj: Any, what: str) -> CData:
    """A bytes-like object as a C buffer, without copying it -- unless it is not
    contiguous (a strided memoryview, a sliced array): then as a contiguous copy."""
    try:
        return _backend.c_buffer(obj)
    except TypeError:
        raise _not_bytes_like(obj, what) from None
    except BufferError:
        return _backend.c_buffer(as_bytes(obj, what))


def as_bytes(obj: Any, what: str) -> bytes:
    """A bytes-like object as bytes (a copy: for keys, which are small)."""
    try:
        return bytes(memoryview(obj))
    except TypeError:
        raise _not_bytes_like(obj, what) from None


def murmur2_partition(key: bytes, num_partitions: int) -> int:
    """Kafka's default partitioner for keyed records: toPositive(murmur2(key)) % n."""
    return (_backend.murmur2(key) & 0x7FFFFFFF) % num_partitions


class _Route:
    """A producer's view of one topic: its rings, a Writer (ring + producer slot) per
    partition, taken on first use, and the sticky partition for keyless records.
    `ptrs` mirrors `writers` with their C handles, for the straight-line sends."""

    __slots__ = ("topic", "table", "rings", "writers", "ptrs", "count", "sticky", "sticky_left", "sticky_ptr",
                 "key_partitions")

    def __init__(self, topic: str, table: RingTable, rings: List[Ring]):
        self.topic = topic
        self.table = table   # each writer holds its ring there
        self.rings = rings
        self.count = len(rings)
        self.writers: List[Optional[Writer]] = [None] * self.count
        self.ptrs: List[Optional[CData]] = [None] * self.count
        self.sticky = random.randrange(self.count)
        self.sticky_left = 0
        self.sticky_ptr: CData = None   # the sticky partition's C writer, once chosen
        self.key_partitions: Dict[bytes, int] = {}  # a cache: murmur2 of a hot key is computed once

    def writer(self, partition: int) -> Writer:
        writer = self.writers[partition]
        if writer is None:
            ring = self.rings[partition]
            self.table.hold(ring)
            writer = self.writers[partition] = Writer(ring, _WAIT_SLICE_NS)
            self.ptrs[partition] = writer.ptr
        return writer

    def stick_to(self, partition: int, budget: int) -> None:
        self.sticky_ptr = self.writer(partition).ptr
        self.sticky = partition
        self.sticky_left = budget

    def release(self) -> None:
        for writer in self.writers:
            if writer is not None:
                writer.release()
                self.table.release(writer.ring)
        self.writers = [None] * self.count
        self.ptrs = [None] * self.count
        self.sticky_left = 0
        self.sticky_ptr = None


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

    def __init__(self, bus: "Bus", timeout: float = 30.0,
                 partitioner: Optional[Callable[[bytes, int], int]] = None, sticky_bytes: int = 16384):
        _checks.seconds(timeout, "timeout")
        _checks.positive_int(sticky_bytes, "sticky_bytes")
        if partitioner is not None and not callable(partitioner):
            raise TypeError(f"partitioner must be callable(key, num_partitions), got {partitioner!r}")
        self._bus = bus
        self._timeout = timeout
        self._partitioner = partitioner or murmur2_partition
        self._sticky_bytes = sticky_bytes
        self._routes: Dict[str, _Route] = {}
        # (ring, end position) of records sent through writers since released (their
        # rings were retired or replaced): flush() still waits for them.
        self._unflushed: List[Tuple[Ring, int]] = []
        self._lock = threading.Lock()  # routes and slots change under it; sends don't take it
        self._closed = False

    # ---- routing ----

    def _route(self, topic: str) -> _Route:
        with self._lock:
            if self._closed:
                raise Closed("this producer is closed")
            if not isinstance(topic, str):
                raise TypeError(f"topic must be a str, not {type(topic).__name__}")
            route = self._routes.get(topic)
            if route is None:
                _, rings = self._bus.rings.get(topic)
                route = self._routes[topic] = _Route(topic, self._bus.rings, rings)
            return route

    def _pick(self, route: _Route, key: Optional[bytes], partition: Optional[int], nbytes: int) -> int:
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
        if route.sticky_left <= 0 or route.sticky_ptr is None:
            # Kafka's sticky partitioner: a new partition once a batch' worth was sent.
            with self._lock:
                choice = route.sticky
                if route.count > 1 and route.sticky_ptr is not None:
                    choice = (choice + random.randrange(1, route.count)) % route.count
                route.stick_to(choice, self._sticky_bytes)
        route.sticky_left -= nbytes
        return route.sticky

    # ---- sending ----

    def send(self, topic: str, value: Optional[bytes], key: Optional[bytes] = None,
             headers: Optional[Headers] = None, partition: Optional[int] = None,
             timestamp_ns: Optional[int] = None, timeout: Optional[float] = None) -> RecordMetadata:
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
                    ptr = route.sticky_ptr
                    offset = _append_value(ptr, value, size)
                    if offset >= 0:
                        return _new_tuple(RecordMetadata, (topic, route.sticky, offset, ptr.timestamp_ns))
                    if offset == _REVOKED:
                        raise self._revoked(route, route.sticky)
                    partition = route.sticky
                elif type(partition) is int and 0 <= partition < route.count:
                    ptr = route.ptrs[partition]
                    if ptr is not None:
                        offset = _append_value(ptr, value, len(value))
                        if offset >= 0:
                            return _new_tuple(RecordMetadata, (topic, partition, offset, ptr.timestamp_ns))
                        if offset == _REVOKED:
                            raise self._revoked(route, partition)
            elif type(key) is bytes and partition is None:
                partition = route.key_partitions.get(key)
                ptr = route.ptrs[partition] if partition is not None else None
                if ptr is not None:
                    offset = _append_keyed(ptr, key, len(key), value, len(value))
                    if offset >= 0:
                        return _new_tuple(RecordMetadata, (topic, partition, offset, ptr.timestamp_ns))
                    if offset == _REVOKED:
                        raise self._revoked(route, partition)
                partition = None  # let the general path pick (and validate) it
        return self._send(route, topic, value, key, headers, partition, timestamp_ns, timeout)

    def _send(self, route: Optional[_Route], topic: str, value: Any, key: Any, headers: Optional[Headers],
              partition: Optional[int], timestamp_ns: Optional[int], timeout: Optional[float]) -> RecordMetadata:
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
        timestamp_ns = _checks.timestamp_ns(timestamp_ns)
        _checks.seconds(timeout, "timeout", allow_none=True)
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        blocked_since = None
        while True:
            if self._closed:
                raise Closed("this producer is closed")
            writer = route.writers[partition]
            if writer is None:
                with self._lock:
                    writer = route.writer(partition)
            try:
                offset = writer.append(key, key_len, blob, len(blob), value, value_len, timestamp_ns)
                return _new_tuple(RecordMetadata, (route.topic, partition, offset, writer.timestamp_ns))
            except SlotBusy:  # another thread is mid-append on this partition
                time.sleep(0)
            except RingDeleted:   # or moved on to a new ring
                route, blocked_since = self._reroute(route, partition), None
            except ClaimRevoked:
                raise self._revoked(route, partition) from None
            except (RingFull, ClaimLockBusy) as blocked:
                blocked_since = self._wait_for_space(blocked, route, partition, deadline, blocked_since)

    @staticmethod
    def _revoked(route: _Route, partition: Optional[int]) -> ClaimRevoked:
        return ClaimRevoked(
            f"topic {route.topic!r} partition {partition}: the record was not sent: this producer stalled "
            f"while writing it (stopped, traced or swapped out) for longer than the supervisor's unblock "
            f"timeout, and its place was revoked so the partition could go on; send it again")

    def _wait_for_space(self, blocked: Exception, route: _Route, partition: int, deadline: float,
                        blocked_since: Optional[float]) -> float:
        """An append found the ring full, or its claim lock held for long: BufferFull past
        the deadline; else look for what holds it up. Returns when the block started."""
        now = time.monotonic()
        blocked_since = blocked_since or now
        if now >= deadline:
            ring = route.rings[partition]
            writer = route.writers[partition]
            raise BufferFull(
                f"topic {route.topic!r} partition {partition}: no room for the record for "
                f"{now - blocked_since:.1f}s: the ring is "
                + _holdup.explain(ring, exclude=writer.slot if writer is not None else -1))
        if isinstance(blocked, ClaimLockBusy) or now - blocked_since > _REAP_AFTER:
            # A producer that died mid-claim holds the ring up: finish its claim.
            writer = route.writers[partition]
            route.rings[partition].reap_dead(writer.slot if writer is not None else None)
            if route.rings[partition].durable:
                # Or the archiver stopped: a dead supervisor is restarted (autostart).
                self._bus.link.ensure_supervisor()
        return blocked_since

    def _reroute(self, route: _Route, partition: int) -> _Route:
        """The topic's rings were deleted or retired: it was deleted, the bus restarted, or
        the partition moved on from a ring a producer stalled in. Re-resolve. Records
        already sent to the old rings are still waited for by flush()."""
        with self._lock:
            for w in route.writers:
                if w is not None and w.ring.durable and w.end_position:
                    self._bus.rings.hold(w.ring)   # until flush() has seen it synced
                    self._unflushed.append((w.ring, w.end_position))
            route.release()
            if self._routes.get(route.topic) is route:
                del self._routes[route.topic]
        try:
            self._bus.rings.refresh(route.topic, stale=route.rings[partition])
        except TopicNotFound:
            raise TopicNotFound(f"topic {route.topic!r} was deleted") from None
        new = self._route(route.topic)
        if new.count != route.count:
            raise TopicNotFound(f"topic {route.topic!r} was deleted and created again")
        return new

    def send_many(self, topic: str, values: Iterable[bytes], key: Optional[bytes] = None,
                  partition: Optional[int] = None, headers: Optional[Headers] = None,
                  timestamp_ns: Optional[int] = None, timeout: Optional[float] = None) -> int:
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
            # Bytes-like after all, but not contiguous: join copies of them. Or not bytes-like.
            values = [v if type(v) is bytes else as_bytes(v, "a send_many value") for v in values]
            blob = b"".join(values)
        # Byte lengths: len() of a memoryview or array counts items, not bytes.
        value_lens = [len(v) if type(v) is bytes else memoryview(v).nbytes for v in values]
        lens = _backend.int64_array(value_lens)
        data = _backend.c_buffer(blob)
        if key is not None and type(key) is not bytes:
            key = as_bytes(key, "key")
        partition = self._pick(route, key, partition, len(blob))
        key, key_len = (_NULL, -1) if key is None else (key, len(key))
        header_blob = encode_headers(headers) if headers else _EMPTY
        timestamp_ns = _checks.timestamp_ns(timestamp_ns)
        _checks.seconds(timeout, "timeout", allow_none=True)
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        sent, total, position = 0, len(values), 0
        blocked_since = None
        while sent < total:
            if self._closed:
                raise Closed("this producer is closed")
            with self._lock:
                writer = route.writer(partition)
            try:
                _, n = writer.append_batch(key, key_len, header_blob, len(header_blob), data + position,
                                           lens + sent, total - sent, timestamp_ns)
            except SlotBusy:
                time.sleep(0)
                continue
            except RingDeleted:   # or moved on to a new ring
                route, blocked_since = self._reroute(route, partition), None
                continue
            except ClaimRevoked:
                raise ClaimRevoked(f"{self._revoked(route, partition)}; {sent} of {total} records sent "
                                   f"before it") from None
            except (RingFull, ClaimLockBusy) as blocked:
                try:
                    blocked_since = self._wait_for_space(blocked, route, partition, deadline, blocked_since)
                except BufferFull as e:
                    raise BufferFull(f"{e}; {sent} of {total} records sent") from None
                continue
            position += sum(value_lens[sent:sent + n])
            sent += n
            blocked_since = None
        return sent

    def flush(self, timeout: Optional[float] = None) -> None:
        """Return once every record this producer sent to a durable topic is fsynced
        on disk (memory-only topics have nothing to wait for). Timeout if the
        supervisor does not get there in time (default: the producer's timeout)."""
        if self._closed:
            raise Closed("this producer is closed")
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        with self._lock:
            earlier, self._unflushed = self._unflushed, []
        current = [(writer.ring, writer.end_position) for route in list(self._routes.values())
                   for writer in route.writers
                   if writer is not None and writer.ring.durable and writer.end_position]
        owed = list(earlier)   # held in the ring table until seen synced
        try:
            for ring, end in earlier + current:
                ring.request_sync(end)
            for entry in earlier + current:
                try:
                    self._wait_synced(*entry, deadline, timeout)
                except TopicNotFound:
                    self._forget_owed(owed, entry)   # said once: its records went with the topic
                    raise
                self._forget_owed(owed, entry)
        finally:
            with self._lock:
                self._unflushed[:0] = owed   # still owed: the next flush waits for them

    def _forget_owed(self, owed: List[Tuple[Ring, int]], entry: Tuple[Ring, int]) -> None:
        if entry in owed:
            owed.remove(entry)
            self._bus.rings.release(entry[0])

    def _wait_synced(self, ring: Ring, end: int, deadline: float, timeout: Optional[float]) -> None:
        while True:
            left = deadline - time.monotonic()
            try:
                if ring.wait_synced(end, int(max(0.0, min(left, 0.1)) * 1e9)):
                    return
            except RingDeleted:
                if ring.stats().synced >= end:
                    return
                raise TopicNotFound(f"the topic of ring {ring.name} was deleted before its records "
                                    f"were flushed") from None
            self._bus.link.ensure_supervisor()
            if left <= 0:
                raise Timeout(f"flush: records in ring {ring.name} not fsynced after "
                              f"{(self._timeout if timeout is None else timeout):.1f}s: "
                              f"{_holdup.explain(ring)}")
            ring.request_sync(end)

    def partitions_for(self, topic: str) -> List[int]:
        """The partition numbers of a topic."""
        return list(range(self._route(topic).count))

    # ---- lifetime ----

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            routes = list(self._routes.values())
            self._routes.clear()
            for route in routes:
                route.release()
            for ring, _ in self._unflushed:
                self._bus.rings.release(ring)
            self._unflushed.clear()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 traceback: Optional[TracebackType]) -> None:
        self.close()
