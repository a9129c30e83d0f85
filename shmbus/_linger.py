"""Lingering producers (linger > 0): send() puts the record in its partition's open
batch and returns a FutureRecordMetadata; the batch is appended with one C call
(sb_append_records) once it holds batch_size bytes (by the thread whose send filled
it), once its first record has waited `linger` seconds (by the producer's linger
thread, with no send needed), or on flush()/close() -- Kafka's accumulator. Batches
are sent one at a time (the send lock), in the order they were closed, so each
partition's records keep their order.

The common record is added in C (ProducerBase.linger_send, cpython/send.c: 3.8 -> 1.1 us
per 64 B send here), under the batch's lock, while the batch is open and the record
does not fill it; every other case -- a new batch, the one that fills it, headers, a
timestamp -- comes to Lingerer.add. A full batch is sent by the thread that filled it,
not handed to the linger thread:
handing it over made every batch wait for the GIL's switch interval (5 ms), which
measured 13 us per send instead of ~2. Futures are resolved per batch, not per record:
a record's metadata is worked out when it is asked for.

Records are only in this process until their batch is sent: a producer killed with
records still lingering loses those (and only those), as Kafka's does.
"""
import bisect
import collections
import logging
import struct
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, List, Optional, Tuple

from ._backend import bind_linger
from ._errors import BufferFull, Closed, Timeout
from ._types import RecordMetadata

if TYPE_CHECKING:
    from ._producer import Producer
    from ._route import TopicRoute

_new_tuple = tuple.__new__
# Most bytes of records lingering in one producer before send() blocks (Kafka's buffer.memory).
BUFFER_BYTES = 32 << 20
# Descriptor words per record: sb_append_records's (key at, key length, headers at,
# headers length, value at, value length, timestamp); checked against the C value.
RECORD_WORDS = 7
# What a record counts for against BUFFER_BYTES beyond its bytes (its descriptor words, its future).
_RECORD_OVERHEAD = 32
_WORDS = struct.Struct(f"{RECORD_WORDS}q")   # one record's descriptor words
_WORD = struct.Struct("q")


class FutureRecordMetadata:
    """Where a lingering record will land: kafka-python's FutureRecordMetadata.

    get(timeout) waits for it (the RecordMetadata, or raises what stopped the record);
    add_callback(fn) / add_errback(fn) run fn(metadata) / fn(exception) once it is known
    (at once if it is; else in the thread that sends its batch -- keep them short); done()."""

    # linger_send (C) makes instances without __init__, setting _batch and _index only:
    # _callbacks is set when the first callback is added (read with getattr).
    __slots__ = ("_batch", "_index", "_callbacks")
    _callbacks: Optional[List[Tuple[bool, Callable[[Any], Any]]]]

    def __init__(self, batch: "Batch", index: int):
        self._batch = batch
        self._index = index

    def done(self) -> bool:
        return self._batch.sent.is_set()

    def succeeded(self) -> bool:
        return self.done() and self.exception is None

    def failed(self) -> bool:
        return self.done() and self.exception is not None

    @property
    def exception(self) -> Optional[BaseException]:
        """What stopped the record (None: sent, or not known yet)."""
        batch = self._batch
        return batch.error if batch.error is not None and self._index >= batch.appended else None

    def get(self, timeout: Optional[float] = None) -> RecordMetadata:
        """The record's RecordMetadata once its batch is sent; Timeout if that takes more
        than timeout seconds (None: wait as long as it takes); the send's error if it failed."""
        if not self._batch.sent.wait(timeout):
            raise Timeout(f"the record was not sent within {timeout}s (its batch still lingers or waits for "
                          f"space in the ring)")
        error = self.exception
        if error is not None:
            raise error
        return self._batch.metadata(self._index)

    def add_callback(self, fn: Callable[[RecordMetadata], Any]) -> "FutureRecordMetadata":
        return self._add(True, fn)

    def add_errback(self, fn: Callable[[BaseException], Any]) -> "FutureRecordMetadata":
        return self._add(False, fn)

    def _add(self, on_success: bool, fn: Callable[[Any], Any]) -> "FutureRecordMetadata":
        if not callable(fn):
            raise TypeError(f"a callback must be callable, not {fn!r}")
        batch = self._batch
        with batch.lock:
            if not batch.sent.is_set():
                callbacks = getattr(self, "_callbacks", None)
                if callbacks is None:
                    callbacks = []
                    self._callbacks = callbacks
                    batch.called_back.append(self)
                callbacks.append((on_success, fn))
                return self
        self._run(on_success, fn)
        return self

    def _run_callbacks(self) -> None:
        callbacks, self._callbacks = getattr(self, "_callbacks", None), None
        for on_success, fn in callbacks or ():
            self._run(on_success, fn)

    def _run(self, on_success: bool, fn: Callable[[Any], Any]) -> None:
        error = self.exception
        if on_success == (error is None):
            try:
                fn(self._batch.metadata(self._index) if on_success else error)
            except Exception:   # a callback's bug must not stop the sender
                logging.getLogger("shmbus").exception("a FutureRecordMetadata callback raised")

    def __repr__(self) -> str:
        if not self.done():
            return "<FutureRecordMetadata pending>"
        error = self.exception
        return f"<FutureRecordMetadata {error!r}>" if error is not None else \
            f"<FutureRecordMetadata {self._batch.metadata(self._index)}>"


class Batch:
    """One partition's records waiting to go out together: their bytes back to back in
    `data`, their descriptor words (RECORD_WORDS int64s each) in `desc`, both bytearrays
    that ProducerBase.linger_send (C) appends to as well, under `lock`, while `open` and
    below `limit` bytes. Once sent: `appended` records went out, in `chunks` of (first
    index, first offset) -- one per C call -- and `error` stopped the rest, if any."""

    __slots__ = ("route", "partition", "data", "desc", "created", "sent", "lock", "open", "limit", "chunks",
                 "appended", "error", "called_back")

    def __init__(self, route: "TopicRoute", partition: int, lock: threading.Lock, limit: int):
        self.route = route
        self.partition = partition
        self.data = bytearray()
        self.desc = bytearray()
        self.created = time.monotonic()
        self.sent = threading.Event()
        self.lock = lock   # the lingerer's: records are added and futures get callbacks under it
        self.open = True   # False once closed: nothing is added after that
        self.limit = limit   # batch_size: the record that reaches it closes the batch
        self.chunks: List[Tuple[int, int]] = []
        self.appended = 0
        self.error: Optional[BaseException] = None
        self.called_back: List[FutureRecordMetadata] = []   # futures with callbacks

    @property
    def count(self) -> int:
        return len(self.desc) // _WORDS.size

    def finish(self, first_offset: int, count: int) -> None:
        """The next count records were appended from first_offset on."""
        self.chunks.append((self.appended, first_offset))
        self.appended += count

    def fail(self, error: BaseException) -> None:
        self.error = error

    def metadata(self, index: int) -> RecordMetadata:
        chunks = self.chunks
        start, first_offset = chunks[0] if len(chunks) == 1 else chunks[bisect.bisect_right(chunks, (index, 1 << 63)) - 1]
        timestamp_ns = _WORD.unpack_from(self.desc, (index * RECORD_WORDS + 6) * 8)[0]
        return _new_tuple(RecordMetadata, (self.route.topic, self.partition, first_offset + index - start,
                                           timestamp_ns))


class Lingerer:
    """A producer's open batches (one per partition), the closed ones in the order they
    closed, and the linger thread that sends the batches whose linger expired."""

    def __init__(self, producer: "Producer", linger: float, batch_size: int, send_full_batches: bool = True):
        self._producer = producer
        self.linger = linger
        self.batch_size = batch_size
        # False: a full batch is left to the linger thread (asyncio's loop must not append:
        # a full ring would block it).
        self._send_full_batches = send_full_batches
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        # One batch is sent at a time, in closing order. Reentrant: a callback may send.
        self._send_lock = threading.RLock()
        self._open: Dict[Tuple[str, int], Batch] = {}
        self._closed_batches: Deque[Batch] = collections.deque()
        self._sending = 0          # batches taken from _closed_batches, not yet sent
        self._bytes = 0            # of records in closed batches not yet sent
        self._stopping = False
        self._thread: Optional[threading.Thread] = None
        self._timer_idle = True   # the linger thread waits without a timer (or has not started)

    def add(self, route: "TopicRoute", partition: int, key: Optional[bytes], headers: bytes, value: Optional[bytes],
            timestamp_ns: int, timeout: float, block: bool = True) -> Optional[FutureRecordMetadata]:
        """Put a record in its partition's batch; None (not block) or BufferFull (block, after
        timeout seconds) while BUFFER_BYTES of records wait already."""
        size = (len(key) if key else 0) + len(headers) + (len(value) if value else 0)
        full = None
        with self._lock:
            if self._bytes + size > BUFFER_BYTES and self._bytes:
                if not block:
                    return None
                self._wait_for_room(size, timeout)
            if self._stopping:
                raise Closed("this producer is closed")
            batch = self._open.get((route.topic, partition))
            if batch is None or batch.route is not route:
                if batch is not None:   # the topic was re-resolved: what lingers goes first
                    self._close_batch(batch)
                batch = self._open[(route.topic, partition)] = Batch(route, partition, self._lock,
                                                                     self.batch_size)
                route.lingering[partition] = batch   # where linger_send (C) finds it
                if self._thread is None:
                    self._start()
                if self._timer_idle:
                    # The linger thread sleeps with no timer: set one. (With one set, it is
                    # earlier than this batch's; waking it for every batch cost a GIL hand-off.)
                    self._timer_idle = False
                    self._changed.notify()
            data = batch.data
            key_at = len(data)
            if key is not None:
                data += key
            headers_at = len(data)
            data += headers
            value_at = len(data)
            if value is not None:
                data += value
            index = len(batch.desc) // _WORDS.size
            batch.desc += _WORDS.pack(key_at, -1 if key is None else len(key), headers_at, len(headers), value_at,
                                      -1 if value is None else len(value), timestamp_ns)
            future = FutureRecordMetadata(batch, index)
            if len(data) >= self.batch_size:
                self._close_batch(batch)
                if self._send_full_batches:
                    full = True
                else:
                    self._changed.notify()
        if full:
            self._send_closed()
        return future

    def _wait_for_room(self, size: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._bytes + size > BUFFER_BYTES and self._bytes:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BufferFull(f"{self._bytes} bytes of records linger unsent (most {BUFFER_BYTES}): the "
                                 f"rings they go to stay full")
            if self._send_full_batches and self._closed_batches:
                self._lock.release()   # send them ourselves
                try:
                    self._send_closed()
                finally:
                    self._lock.acquire()
                continue
            self._changed.wait(left)

    def _close_batch(self, batch: Batch) -> None:
        batch.open = False   # first: linger_send (C) adds nothing after it
        del self._open[(batch.route.topic, batch.partition)]
        if batch.route.lingering[batch.partition] is batch:
            batch.route.lingering[batch.partition] = None
        self._bytes += _batch_bytes(batch)
        self._closed_batches.append(batch)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shmbus-linger", daemon=True)
        self._thread.start()

    def _send_closed(self) -> None:
        """Send the closed batches, oldest first, one at a time (whoever holds the send lock)."""
        with self._send_lock:
            while True:
                with self._lock:
                    if not self._closed_batches:
                        return
                    batch = self._closed_batches.popleft()
                    self._sending += 1
                try:
                    self._producer._send_batch_records(batch)
                finally:
                    with self._lock:
                        self._sending -= 1
                        self._bytes -= _batch_bytes(batch)
                        batch.sent.set()
                        self._changed.notify_all()
                    for future in batch.called_back:
                        future._run_callbacks()

    def _run(self) -> None:
        """The linger thread: close the batches whose linger expired, and send them."""
        while True:
            with self._lock:
                while True:
                    now = time.monotonic()
                    for batch in [b for b in self._open.values() if now - b.created >= self.linger]:
                        self._close_batch(batch)
                    if self._closed_batches:
                        break
                    if self._stopping:
                        self._changed.notify_all()
                        return
                    wait = min((b.created + self.linger - now for b in self._open.values()), default=None)
                    self._timer_idle = wait is None
                    self._changed.wait(wait)
            self._send_closed()

    def sending(self) -> "threading.RLock":
        """The send lock: held, no batch is being sent."""
        return self._send_lock

    def drain(self, timeout: float) -> None:
        """Send every lingering record now and return once they are all sent (or failed);
        Timeout past timeout seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            for batch in list(self._open.values()):
                self._close_batch(batch)
        self._send_closed()
        with self._lock:
            while self._closed_batches or self._sending:   # another thread is sending the last ones
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


def _batch_bytes(batch: Batch) -> int:
    return len(batch.data) + batch.count * _RECORD_OVERHEAD


bind_linger(FutureRecordMetadata)
