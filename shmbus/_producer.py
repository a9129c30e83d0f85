"""Producer: one C call per record (send) or per batch (send_many), straight
into the partition's ring. No buffering by default: when send returns, consumers
can see the record. With linger > 0, records wait in batches (_linger.py)."""
import random
import threading
import time
from types import TracebackType
from typing import (TYPE_CHECKING, Any, Callable, Dict, Iterable, List, NoReturn, Optional, Tuple, Type,
                    TypeVar, Union)

from . import _backend
from ._backend import NULL as _NULL
from ._backend import CData, ProducerBase, ReservedView, Ring, Writer
from ._codec import Headers, encode_headers
from ._reservation import Reservation
from ._route import WAIT_SLICE_NS, TopicRoute, as_buffer, as_bytes, murmur2_partition
from . import _checks, _holdup, _numpy
from ._errors import (BufferFull, ClaimLockBusy, ClaimRevoked, Closed, MessageTooLarge, RingDeleted, RingFull,
                      ShmbusError, SlotBusy, Timeout, TopicNotFound)
from ._linger import RECORD_WORDS, Batch, FutureRecordMetadata, Lingerer
from ._types import RecordMetadata
from .serde._serde import Serde, Serializer, as_serializer

if TYPE_CHECKING:
    from ._bus import Bus

_new_tuple = tuple.__new__
_EMPTY = b""
_T = TypeVar("_T")
# How long a send blocked on a full ring waits before checking for dead
# producers whose unfinished claims hold it up.
_REAP_AFTER = 0.2


class Producer(ProducerBase):
    """Sends records to topics.

    Options:
      timeout      seconds send/send_many wait for ring space before BufferFull (default 30).
      partitioner  callable(key: bytes, num_partitions) -> partition for keyed records;
                   default Kafka's murmur2, so a key lands where Kafka would put it.
      sticky_bytes records without a key stick to one partition for this many value
                   bytes, then move on (Kafka's sticky partitioner; default 16 KiB).
      value_serializer, key_serializer
                   callables obj -> bytes, or a Serde (shmbus.serde.json, .msgpack, .string),
                   applied to every value / key sent (None stays None). kafka-python's.
      linger       seconds a record may wait to go out with others (default 0: send() appends
                   at once and returns its RecordMetadata). With linger > 0, send() returns a
                   FutureRecordMetadata and records go out as one C call per batch: when the
                   partition's batch holds batch_size bytes, when its first record has waited
                   linger seconds, or on flush()/close(). A process killed meanwhile loses the
                   records still lingering (as Kafka's producer does).
      batch_size   bytes of records per batch with linger (default 16 KiB, Kafka's).

    Thread-safe. Records one producer sends to one partition keep their order.
    """

    _routes: Dict[str, TopicRoute]   # ProducerBase's: its send looks there first
    # How long one append sleeps in C for ring space (asyncio's producer: never).
    _space_wait_ns = WAIT_SLICE_NS
    # With linger, the send() that fills a batch appends it (asyncio's: the linger thread does).
    _send_full_batches = True

    def __init__(self, bus: "Bus", timeout: float = 30.0,
                 partitioner: Optional[Callable[[bytes, int], int]] = None, sticky_bytes: int = 16384,
                 value_serializer: Union[None, Serde, Serializer] = None,
                 key_serializer: Union[None, Serde, Serializer] = None,
                 linger: float = 0.0, batch_size: int = 16384):
        _checks.seconds(timeout, "timeout")
        _checks.positive_int(sticky_bytes, "sticky_bytes")
        _checks.seconds(linger, "linger")
        _checks.positive_int(batch_size, "batch_size")
        self._value_serializer = as_serializer(value_serializer, "value_serializer")
        self._key_serializer = as_serializer(key_serializer, "key_serializer")
        self._serializing = self._value_serializer is not None or self._key_serializer is not None
        self._lingerer = Lingerer(self, float(linger), batch_size, self._send_full_batches) if linger > 0 else None
        # The default producer keeps ProducerBase's send (C); the others get theirs per
        # instance, so the default path pays nothing for them.
        if self._lingerer is not None:
            # ProducerBase.linger_send (C) takes the common record; the rest, _linger_record.
            self.send = self.linger_send   # type: ignore[method-assign]
        elif self._value_serializer is not None or self._key_serializer is not None:
            self.send = self._send_serialized   # type: ignore[method-assign]
        if partitioner is not None and not callable(partitioner):
            raise TypeError(f"partitioner must be callable(key, num_partitions), got {partitioner!r}")
        self._bus = bus
        self._timeout = timeout
        self._partitioner = partitioner or murmur2_partition
        self._sticky_bytes = sticky_bytes
        # (ring, end position) of records sent through writers since released (their
        # rings were retired or replaced): flush() still waits for them.
        self._unflushed: List[Tuple[Ring, int]] = []
        self._lengths_cache: Optional[Tuple[int, Any, CData]] = None   # send_array's (length, array, C view)
        self._lock = threading.Lock()  # routes and slots change under it; sends don't take it
        self._closed = False
        self._stop_sending = False   # set by close(): a lingering batch still being sent stops

    # ---- routing ----

    def _route(self, topic: str) -> TopicRoute:
        with self._lock:
            if self._closed:
                raise Closed("this producer is closed")
            if not isinstance(topic, str):
                raise TypeError(f"topic must be a str, not {type(topic).__name__}")
            route = self._routes.get(topic)
            if route is None:
                _, rings = self._bus.rings.get(topic)
                route = self._routes[topic] = TopicRoute(topic, self._bus.rings, rings, self._space_wait_ns)
            return route

    def _pick(self, route: TopicRoute, key: Optional[bytes], partition: Optional[int], nbytes: int) -> int:
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
        if route.sticky_left <= 0 or not route.has_sticky:
            # Kafka's sticky partitioner: a new partition once a batch' worth was sent.
            with self._lock:
                choice = route.sticky
                if route.count > 1 and route.has_sticky:
                    choice = (choice + random.randrange(1, route.count)) % route.count
                route.stick_to(choice, self._sticky_bytes)
        route.sticky_left -= nbytes
        return route.sticky

    # ---- sending ----

    def _serialized(self, value: Any, key: Any) -> Tuple[Any, Any]:
        if self._value_serializer is not None and value is not None:
            value = self._serialize(self._value_serializer, value, "value")
        if self._key_serializer is not None and key is not None:
            key = self._serialize(self._key_serializer, key, "key")
        return value, key

    @staticmethod
    def _serialize(serializer: Serializer, obj: Any, what: str) -> Any:
        try:
            data = serializer(obj)
        except Exception as e:
            raise type(e)(f"the {what}_serializer raised on {obj!r:.80}: {e}") from e
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"the {what}_serializer must return bytes, returned {type(data).__name__}")
        return data

    def _send_serialized(self, topic: str, value: Any, key: Any = None, headers: Optional[Headers] = None,
                         partition: Optional[int] = None, timestamp_ns: Optional[int] = None,
                         timeout: Optional[float] = None) -> RecordMetadata:
        """send() of a producer with serializers (and no linger)."""
        value, key = self._serialized(value, key)
        return ProducerBase.send(self, topic, value, key, headers, partition, timestamp_ns, timeout)  # type: ignore[arg-type]

    def _linger_record(self, topic: str, value: Any, key: Any = None, headers: Optional[Headers] = None,
                       partition: Optional[int] = None, timestamp_ns: Optional[int] = None,
                       timeout: Optional[float] = None, block: bool = True) -> Optional[FutureRecordMetadata]:
        """send() with linger: the record joins its partition's batch. (None only with
        block=False, when it would wait for lingering records to make room.)"""
        lingerer = self._lingerer
        assert lingerer is not None
        route = self._routes.get(topic)
        if (route is not None and type(value) is bytes and headers is None and timestamp_ns is None
                and timeout is None and (key is None or type(key) is bytes) and not self._serializing
                and not self._closed):
            # The common record, with fewer checks (it is the per-record path).
            size = len(value) if key is None else len(value) + len(key)
            if size <= route.max_record:
                return lingerer.add(route, self._pick(route, key, partition, size), key, _EMPTY, value,
                                    time.time_ns(), self._timeout, block)
        if self._closed:
            raise Closed("this producer is closed")
        if self._value_serializer is not None or self._key_serializer is not None:
            value, key = self._serialized(value, key)
        route = self._routes.get(topic) or self._route(topic)
        if value is not None and type(value) is not bytes:
            value = as_bytes(value, "value")
        if key is not None and type(key) is not bytes:
            key = as_bytes(key, "key")
        size = (len(value) if value is not None else 0) + (len(key) if key is not None else 0)
        if size > route.max_record:
            raise MessageTooLarge(f"record too large for topic {topic!r}: at most {route.max_record} bytes of key, "
                                  f"headers and value (half the ring); create the topic with a larger ring_bytes")
        partition = self._pick(route, key, partition, size)
        blob = encode_headers(headers) if headers else _EMPTY
        timestamp_ns = time.time_ns() if timestamp_ns is None else _checks.timestamp_ns(timestamp_ns)
        if timeout is not None:
            _checks.seconds(timeout, "timeout")
        return lingerer.add(route, partition, key, blob, value, timestamp_ns,
                            self._timeout if timeout is None else timeout, block)

    def _send_batch_records(self, batch: Batch) -> None:
        """The sender thread's: append a lingering batch, as few C calls as the ring allows
        (one per half-ring), and resolve its futures. Never raises: a failure fails the
        futures of the records it did not send."""
        done = 0
        try:
            route, partition = batch.route, batch.partition
            data = _backend.c_buffer(batch.data)   # closed: it changes no more
            desc = _backend.int64_buffer(batch.desc)
            deadline = batch.created + self._timeout
            while done < batch.count:
                route, _, (first, n) = self._until_written(
                    route, partition, deadline,
                    lambda writer: writer.append_records(data, desc + done * RECORD_WORDS, batch.count - done),
                    sender=True)
                batch.finish(first, n)
                done += n
        except BaseException as e:
            batch.fail(e)

    # send() is ProducerBase's (C): the common records -- a bytes value, no headers, the
    # producer's clock, a partition whose writer exists -- in one C call; everything
    # else, and every error, comes here with the same arguments.

    def _send_general(self, topic: str, value: Any, key: Any = None, headers: Optional[Headers] = None,
                      partition: Optional[int] = None, timestamp_ns: Optional[int] = None,
                      timeout: Optional[float] = None) -> RecordMetadata:
        route = self._routes.get(topic)
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
        return self._append(route, partition, key, key_len, value, value_len, blob, timestamp_ns, deadline)

    def _send_encoded(self, topic: str, value: Optional[bytes], key: Optional[bytes], header_blob: bytes,
                      partition: Optional[int], timestamp_ns: int) -> None:
        """send() for a caller that made the record itself (the Kafka bridge, once per record
        it carries): value and key bytes or None, the headers already encoded (_codec), the
        timestamp in ns or -1 for now. The same routing, waits and errors as send(); no
        RecordMetadata (building it is a tenth of the cost of a small record)."""
        route = self._routes.get(topic) or self._route(topic)
        if value is None:
            value_arg, value_len = _NULL, -1
        else:
            value_arg, value_len = value, len(value)
        if key is None:
            partition = self._pick(route, None, partition, max(value_len, 0))
            key_arg, key_len = _NULL, -1
        else:
            partition = self._pick(route, key, partition, 0)
            key_arg, key_len = key, len(key)
        self._append(route, partition, key_arg, key_len, value_arg, value_len, header_blob, timestamp_ns,
                     time.monotonic() + self._timeout, metadata=False)

    def _append(self, route: TopicRoute, partition: int, key: Any, key_len: int, value: Any, value_len: int,
                blob: bytes, timestamp_ns: int, deadline: float, metadata: bool = True) -> Any:
        """One record into its partition's ring, waiting for room until deadline. Returns its
        RecordMetadata (None if not metadata)."""
        route, writer, offset = self._until_written(
            route, partition, deadline,
            lambda writer: writer.append(key, key_len, blob, len(blob), value, value_len, timestamp_ns))
        if not metadata:
            return None
        return _new_tuple(RecordMetadata, (route.topic, partition, offset, writer.timestamp_ns))

    def _until_written(self, route: TopicRoute, partition: int, deadline: float, write: Callable[[Writer], _T],
                       sender: bool = False) -> Tuple[TopicRoute, Writer, _T]:
        """write(writer) on the partition's writer, again until it succeeds: it waits out
        another thread's append (SlotBusy), follows a deleted or retired ring to the
        topic's new one (RingDeleted), waits for room until deadline (RingFull,
        ClaimLockBusy; then BufferFull), and says what a revoked claim means. Returns the
        route (a new one after a reroute), the writer and what write returned. sender: the
        linger thread's call, which stops when closing stops the sending."""
        blocked_since = None
        while True:
            if self._stop_sending if sender else self._closed:
                raise Closed("this producer is closed")
            writer = route.writers[partition]
            if writer is None:
                with self._lock:
                    writer = route.writer(partition)
            try:
                return route, writer, write(writer)
            except SlotBusy:  # another thread is mid-append on this partition
                self._slot_busy(route, partition, deadline)
            except RingDeleted:   # or moved on to a new ring
                route, blocked_since = self._reroute(route, partition), None
            except ClaimRevoked:
                raise self._revoked(route, partition) from None
            except (RingFull, ClaimLockBusy) as blocked:
                blocked_since = self._wait_for_space(blocked, route, partition, deadline, blocked_since)

    def _raise_revoked(self, route: TopicRoute, partition: int) -> NoReturn:
        """ProducerBase.send's append was revoked: say so (it is not sent again)."""
        raise self._revoked(route, partition)

    @staticmethod
    def _revoked(route: TopicRoute, partition: Optional[int]) -> ClaimRevoked:
        return ClaimRevoked(
            f"topic {route.topic!r} partition {partition}: the record was not sent: this producer stalled "
            f"while writing it (stopped, traced or swapped out) for longer than the supervisor's unblock "
            f"timeout, and its place was revoked so the partition could go on; send it again")

    def _wait_for_space(self, blocked: Exception, route: TopicRoute, partition: int, deadline: float,
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
            self._look_for_holdup(route, partition)
        return blocked_since

    def _look_for_holdup(self, route: TopicRoute, partition: int) -> None:
        # A producer that died mid-claim holds the ring up: finish its claim.
        writer = route.writers[partition]
        route.rings[partition].reap_dead(writer.slot if writer is not None else None)
        if route.rings[partition].durable:
            # Or the archiver stopped: a dead supervisor is restarted (autostart).
            self._bus.link.ensure_supervisor()

    def _reroute(self, route: TopicRoute, partition: int) -> TopicRoute:
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
        Returns how many were sent. (Serializers apply to send() only; with linger, what
        lingers is sent first.)"""
        self._drain_lingering()
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
        starts = [0]   # where each value starts in blob, and the end
        for length in value_lens:
            starts.append(starts[-1] + length)
        return self._send_batch(route, _backend.c_buffer(blob), lens, starts.__getitem__, len(values), key,
                                partition, headers, timestamp_ns, timeout, len(blob))

    def send_array(self, topic: str, array: Any, key: Optional[bytes] = None,
                   partition: Optional[int] = None) -> int:
        """Send a numpy array, one record per element of its first axis (a row, or a
        structured element): the record's value is that element's bytes. With as few C
        calls as the ring allows (one per half-ring of data); no copy of the array.
        The array must be C-contiguous and hold values, not objects. Returns how many
        records were sent."""
        np = _numpy.require("send_array")
        self._drain_lingering()
        if not isinstance(array, np.ndarray):
            raise TypeError(f"send_array takes a numpy array, not {type(array).__name__} "
                            f"(np.asarray(x) makes one)")
        if array.dtype.hasobject:
            raise TypeError(f"send_array: the array holds Python objects (dtype {array.dtype}), whose bytes "
                            f"are pointers, not values: convert it to a fixed-size dtype")
        if array.ndim == 0:
            raise ValueError("send_array takes an array with at least one axis (one record per element "
                             "of the first): use send() for one value")
        if not array.flags.c_contiguous:
            raise ValueError("send_array: the array is not C-contiguous (a slice, a transpose): pass "
                             "np.ascontiguousarray(array), which copies it")
        count = len(array)
        if count == 0:
            return 0
        record_bytes = array.nbytes // count
        route = self._routes.get(topic) or self._route(topic)
        return self._send_batch(route, _backend.c_buffer(array), self._equal_lengths(record_bytes, count),
                                lambda i: i * record_bytes, count, key, partition, None, None, None, array.nbytes)

    def _equal_lengths(self, length: int, count: int) -> CData:
        """count value lengths, all length, as C int64s: kept from one send_array to the next
        (making them per call cost as much as the rest of a 64-record call)."""
        lengths = self._lengths_cache
        if lengths is None or lengths[0] != length or len(lengths[1]) < count:
            np = _numpy.require("send_array")
            array = np.full(max(count, 1024), length, dtype=np.int64)
            lengths = self._lengths_cache = (length, array, _backend.int64_buffer(array))
        return lengths[2]

    def _send_batch(self, route: TopicRoute, data: CData, lens: CData, start_of: Callable[[int], int], total: int,
                    key: Any, partition: Optional[int], headers: Optional[Headers], timestamp_ns: Optional[int],
                    timeout: Optional[float], total_bytes: int) -> int:
        """Append total values (value i starts at start_of(i) in data, its length in lens) to
        one partition, in as few C calls as the ring allows."""
        if key is not None and type(key) is not bytes:
            key = as_bytes(key, "key")
        partition = self._pick(route, key, partition, total_bytes)
        key, key_len = (_NULL, -1) if key is None else (key, len(key))
        header_blob = encode_headers(headers) if headers else _EMPTY
        timestamp_ns = _checks.timestamp_ns(timestamp_ns)
        _checks.seconds(timeout, "timeout", allow_none=True)
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        sent = 0
        while sent < total:
            try:
                route, _, (_, n) = self._until_written(
                    route, partition, deadline,
                    lambda writer: writer.append_batch(key, key_len, header_blob, len(header_blob),
                                                       data + start_of(sent), lens + sent, total - sent,
                                                       timestamp_ns))
            except ClaimRevoked as e:
                raise ClaimRevoked(f"{e}; {sent} of {total} records sent before it") from None
            except BufferFull as e:
                raise BufferFull(f"{e}; {sent} of {total} records sent") from None
            sent += n
        return sent

    # ---- zero-copy writes ----

    # reserve() is ProducerBase's (C): with no key, headers, timestamp or timeout, to a
    # partition whose writer exists, a FastReservation claims and publishes in C; the
    # rest, and whatever it cannot claim at once, comes here with the same arguments.

    def _reserve_general(self, topic: str, nbytes: int, key: Optional[bytes] = None,
                         partition: Optional[int] = None, headers: Optional[Headers] = None,
                         timestamp_ns: Optional[int] = None, timeout: Optional[float] = None) -> Reservation:
        if type(nbytes) is not int or nbytes < 0:
            raise TypeError(f"nbytes must be an int >= 0, got {nbytes!r}")
        self._drain_lingering()
        route = self._routes.get(topic) or self._route(topic)
        if key is not None and type(key) is not bytes:
            key = as_bytes(key, "key")
        partition = self._pick(route, key, partition, nbytes)
        if timeout is not None:
            _checks.seconds(timeout, "timeout")
        return Reservation(self, route, partition, key, encode_headers(headers) if headers else _EMPTY,
                           _checks.timestamp_ns(timestamp_ns), nbytes,
                           self._timeout if timeout is None else timeout)

    def _commit_failed(self, route: TopicRoute, partition: int, code: int) -> NoReturn:
        """A FastReservation's commit failed: ClaimRevoked as for the general path, or
        the error the code means."""
        try:
            _backend.raise_for(code, route.rings[partition].name)
        except ClaimRevoked:
            raise self._revoked(route, partition) from None

    def _reserve(self, reservation: Reservation) -> ReservedView:
        """Claim the reservation's place (its with-block starts), waiting for room as send does."""
        route, partition = reservation.route, reservation.partition
        key = reservation.key
        key, key_len = (_NULL, -1) if key is None else (key, len(key))
        header_blob = reservation.header_blob
        deadline = time.monotonic() + reservation.timeout
        reservation.route, writer, (reservation.offset, address) = self._until_written(
            route, partition, deadline,
            lambda writer: writer.reserve(key, key_len, header_blob, len(header_blob), reservation.nbytes,
                                          reservation.timestamp_ns, threading.get_ident()))
        reservation.writer = writer
        return ReservedView(writer.view_keeper(), address, reservation.nbytes)

    def _slot_busy(self, route: TopicRoute, partition: int, deadline: float) -> None:
        """Another append holds the partition's producer slot: this producer's, in another
        thread (wait for it), or a reserve() open in this thread (which would never end)."""
        writer = route.writers[partition]
        reserving = writer.reserving_thread if writer is not None else None
        if reserving == threading.get_ident():
            raise ShmbusError(f"topic {route.topic!r} partition {partition}: this thread holds a reserve() open "
                              f"on it: end its with-block before sending to that partition again")
        if time.monotonic() >= deadline:
            raise BufferFull(f"topic {route.topic!r} partition {partition}: another thread of this producer kept "
                             f"appending to it (or held a reserve() open) until the timeout")
        time.sleep(0.0005 if reserving is not None else 0)

    def _drain_lingering(self, timeout: Optional[float] = None) -> None:
        """Send what lingers now (records sent some other way must come after it)."""
        if self._lingerer is not None:
            self._lingerer.drain(self._timeout if timeout is None else timeout)

    def flush(self, timeout: Optional[float] = None) -> None:
        """Return once every record this producer sent is in its ring (lingering ones are sent
        now) and, for durable topics, fsynced on disk. Timeout if that takes longer than
        timeout (default: the producer's timeout)."""
        if self._closed:
            raise Closed("this producer is closed")
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        self._drain_lingering(timeout)
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

    def _flush_mark(self) -> List[Tuple[Ring, int]]:
        """flush() in two halves, for a caller that must not block while the disk syncs (the
        Kafka bridge, which keeps appending meanwhile): ask for the sync of every record sent
        so far and return what to check; _flushed(mark) then says, without waiting, whether
        they are on disk. A plain flush() covers what this cannot (a ring deleted meanwhile,
        a supervisor to restart)."""
        with self._lock:
            earlier = list(self._unflushed)
        mark = earlier + [(writer.ring, writer.end_position) for route in list(self._routes.values())
                          for writer in route.writers
                          if writer is not None and writer.ring.durable and writer.end_position]
        for ring, end in mark:
            ring.request_sync(end)
        return mark

    @staticmethod
    def _flushed(mark: List[Tuple[Ring, int]]) -> bool:
        """Whether everything _flush_mark() returned is fsynced (no wait). RingDeleted: the
        ring went (use flush() to know what that means)."""
        return all(ring.stats().synced >= end for ring, end in mark)

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
                              f"{_holdup.explain(ring, waiting_for='sync')}")
            ring.request_sync(end)

    def partitions_for(self, topic: str) -> List[int]:
        """The partition numbers of a topic."""
        return list(range(self._route(topic).count))

    # ---- lifetime ----

    def close(self) -> None:
        """Send what lingers (waiting up to the producer's timeout), then let go of every
        ring. Records sent are in their rings; use flush() first for them to be on disk."""
        try:
            if self._lingerer is not None and not self._closed:
                self._lingerer.close(self._timeout)   # Timeout if the rings stay full: raised after
        finally:
            self._release_all()

    def _release_all(self) -> None:
        self._stop_sending = True   # a batch being sent stops at its next C call ...
        if self._lingerer is not None:
            with self._lingerer.sending():   # ... which is waited for: its writer is freed below
                self._release_routes()
        else:
            self._release_routes()

    def _release_routes(self) -> None:
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
