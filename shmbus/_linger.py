"""Lingering producers (linger > 0): send() puts the record in its partition's open
batch and returns a FutureRecordMetadata; a sender thread appends each batch with
one C call (sb_append_records) once it holds batch_size bytes, once the first record
in it has waited `linger` seconds, or on flush()/close() -- Kafka's accumulator and
sender. One sender per producer sends the batches in the order they were closed, so
each partition's records keep their order.

Records are only in this process until their batch is sent: a producer killed with
records still lingering loses those (and only those), as Kafka's does.
"""
import collections
import threading
import time
from array import array
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, List, Optional, Tuple

from ._errors import BufferFull, Closed, Timeout
from ._types import RecordMetadata

if TYPE_CHECKING:
    from ._producer import Producer, _Route

_new_tuple = tuple.__new__
# Most bytes of records lingering in one producer before send() blocks (Kafka's buffer.memory).
BUFFER_BYTES = 32 << 20
# Descriptor words per record: sb_append_records's (key at, key length, headers at,
# headers length, value at, value length, timestamp); checked against the C value.
RECORD_WORDS = 7


class FutureRecordMetadata:
    """Where a lingering record will land: kafka-python's FutureRecordMetadata.

    get(timeout) waits for it (the RecordMetadata, or raises what stopped the record);
    add_callback(fn) / add_errback(fn) run fn(metadata) / fn(exception) once it is known
    (at once if it is; else in the producer's sender thread -- keep them short); done()."""

    __slots__ = ("_batch", "_metadata", "_exception", "_callbacks")

    def __init__(self, batch: "Batch"):
        self._batch = batch
        self._metadata: Optional[RecordMetadata] = None
        self._exception: Optional[BaseException] = None
        self._callbacks: Optional[List[Tuple[bool, Callable[[Any], Any]]]] = None

    def done(self) -> bool:
        return self._batch.sent.is_set()

    def succeeded(self) -> bool:
        return self.done() and self._exception is None

    def failed(self) -> bool:
        return self.done() and self._exception is not None

    @property
    def exception(self) -> Optional[BaseException]:
        return self._exception

    def get(self, timeout: Optional[float] = None) -> RecordMetadata:
        """The record's RecordMetadata once its batch is sent; Timeout if that takes more
        than timeout seconds (None: wait as long as it takes); the send's error if it failed."""
        if not self._batch.sent.wait(timeout):
            raise Timeout(f"the record was not sent within {timeout}s (its batch still lingers or waits for "
                          f"space in the ring)")
        if self._exception is not None:
            raise self._exception
        assert self._metadata is not None
        return self._metadata

    def add_callback(self, fn: Callable[[RecordMetadata], Any]) -> "FutureRecordMetadata":
        return self._add(True, fn)

    def add_errback(self, fn: Callable[[BaseException], Any]) -> "FutureRecordMetadata":
        return self._add(False, fn)

    def _add(self, on_success: bool, fn: Callable[[Any], Any]) -> "FutureRecordMetadata":
        if not callable(fn):
            raise TypeError(f"a callback must be callable, not {fn!r}")
        with self._batch.lock:
            if not self._batch.sent.is_set():
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append((on_success, fn))
                return self
        self._run(on_success, fn)
        return self

    def _resolve(self, metadata: Optional[RecordMetadata], exception: Optional[BaseException]) -> None:
        self._metadata, self._exception = metadata, exception

    def _run_callbacks(self) -> None:
        callbacks, self._callbacks = self._callbacks, None
        for on_success, fn in callbacks or ():
            self._run(on_success, fn)

    def _run(self, on_success: bool, fn: Callable[[Any], Any]) -> None:
        if on_success == (self._exception is None):
            try:
                fn(self._metadata if on_success else self._exception)
            except Exception:   # a callback's bug must not stop the sender
                import logging
                logging.getLogger("shmbus").exception("a FutureRecordMetadata callback raised")

    def __repr__(self) -> str:
        state = "pending" if not self.done() else repr(self._exception or self._metadata)
        return f"<FutureRecordMetadata {state}>"


class Batch:
    """One partition's records waiting to go out together: their bytes back to back in
    `data`, their descriptor words in `desc`, a future each."""

    __slots__ = ("route", "partition", "data", "desc", "futures", "created", "sent", "lock", "count")

    def __init__(self, route: "_Route", partition: int, lock: threading.Lock):
        self.route = route
        self.partition = partition
        self.data = bytearray()
        self.desc = array("q")
        self.futures: List[FutureRecordMetadata] = []
        self.created = time.monotonic()
        self.sent = threading.Event()
        self.lock = lock   # the lingerer's: futures add callbacks under it
        self.count = 0

    def add(self, key: Optional[bytes], headers: bytes, value: Optional[bytes], timestamp_ns: int) -> FutureRecordMetadata:
        data = self.data
        key_at = len(data)
        if key is not None:
            data += key
        headers_at = len(data)
        data += headers
        value_at = len(data)
        if value is not None:
            data += value
        self.desc.extend((key_at, -1 if key is None else len(key), headers_at, len(headers), value_at,
                          -1 if value is None else len(value), timestamp_ns))
        future = FutureRecordMetadata(self)
        self.futures.append(future)
        self.count += 1
        return future

    def finish(self, first_offset: int, count: int, done: int) -> None:
        """Records done..done+count were appended from first_offset on."""
        topic, partition, desc = self.route.topic, self.partition, self.desc
        for j in range(count):
            i = done + j
            self.futures[i]._resolve(_new_tuple(RecordMetadata, (topic, partition, first_offset + j,
                                                                 desc[i * RECORD_WORDS + 6])), None)

    def fail(self, done: int, error: BaseException) -> None:
        for future in self.futures[done:]:
            future._resolve(None, error)


class Lingerer:
    """A producer's open batches (one per partition), the closed ones in the order they
    closed, and the sender thread that appends them."""

    def __init__(self, producer: "Producer", linger: float, batch_size: int):
        self._producer = producer
        self.linger = linger
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._open: Dict[Tuple[str, int], Batch] = {}
        self._closed_batches: Deque[Batch] = collections.deque()
        self._in_flight: Optional[Batch] = None
        self._bytes = 0           # of records not yet sent
        self._stopping = False
        self._thread: Optional[threading.Thread] = None

    def add(self, route: "_Route", partition: int, key: Optional[bytes], headers: bytes, value: Optional[bytes],
            timestamp_ns: int, deadline: float, block: bool = True) -> Optional[FutureRecordMetadata]:
        """Put a record in its partition's batch; None (not block) or BufferFull (block, past
        the deadline) while BUFFER_BYTES of records wait already."""
        size = (len(key) if key else 0) + len(headers) + (len(value) if value else 0) + 32
        with self._lock:
            while self._bytes + size > BUFFER_BYTES and self._bytes:
                if not block:
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BufferFull(f"{self._bytes} bytes of records linger unsent (most {BUFFER_BYTES}): the "
                                     f"rings they go to stay full")
                self._changed.wait(left)
            if self._stopping:
                raise Closed("this producer is closed")
            batch = self._open.get((route.topic, partition))
            if batch is None or batch.route is not route:
                if batch is not None:   # the topic was re-resolved: what lingers goes first
                    self._close_batch(batch)
                batch = self._open[(route.topic, partition)] = Batch(route, partition, self._lock)
                self._start()
                self._changed.notify()   # the sender sets its timer
            future = batch.add(key, headers, value, timestamp_ns)
            self._bytes += size
            if len(batch.data) >= self.batch_size:
                self._close_batch(batch)
                self._changed.notify()
            return future

    def _close_batch(self, batch: Batch) -> None:
        del self._open[(batch.route.topic, batch.partition)]
        self._closed_batches.append(batch)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="shmbus-linger", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                while True:
                    now = time.monotonic()
                    for batch in [b for b in self._open.values() if now - b.created >= self.linger]:
                        self._close_batch(batch)
                    if self._closed_batches:
                        batch = self._closed_batches.popleft()
                        self._in_flight = batch
                        break
                    if self._stopping:
                        self._changed.notify_all()
                        return
                    wait = min((b.created + self.linger - now for b in self._open.values()), default=None)
                    self._changed.wait(wait)
            try:
                self._producer._send_batch_records(batch)
            finally:
                with self._lock:
                    self._in_flight = None
                    self._bytes -= batch.count * 32 + len(batch.data)
                    batch.sent.set()
                    self._changed.notify_all()
                for future in batch.futures:
                    future._run_callbacks()

    def drain(self, timeout: float) -> None:
        """Send every lingering record now and return once they are all sent (or failed);
        Timeout past timeout seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            for batch in list(self._open.values()):
                self._close_batch(batch)
            self._changed.notify_all()
            while self._closed_batches or self._in_flight is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Timeout(f"lingering records not sent within {timeout:.1f}s: the rings stay full")
                self._changed.wait(left)

    def close(self, timeout: float) -> None:
        try:
            self.drain(timeout)
        finally:
            with self._lock:
                self._stopping = True
                self._changed.notify_all()
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join(timeout)
