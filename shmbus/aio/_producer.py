"""shmbus.aio.Producer: send on the loop's thread (one C call, never sleeping in it);
a full ring is waited for in a helper thread on the ring's space word."""
import asyncio
import functools
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Iterable, List, NoReturn, Optional, Type, Union

from .._backend import STOPPED, Ring, StopWord
from .._codec import Headers
from .._errors import ClaimLockBusy, ShmbusError
from .._linger import FutureRecordMetadata
from .._producer import Producer as SyncProducer
from .._route import TopicRoute
from .._types import RecordMetadata
from ._waiter import Waiter

if TYPE_CHECKING:
    from .._bus import Bus as SyncBus

# A send from a worker thread (send_many) blocked on a full ring sleeps this long at most
# between looks (it cannot count itself a waiter before its last try, as the loop's does).
_THREAD_SPACE_SLICE_NS = 1_000_000


class _NeedsSpace(ShmbusError):
    """Private: a send on the loop found the ring full; wait for space, then send again to
    the same partition."""

    def __init__(self, ring: Ring, partition: int, blocked_since: float, lock_busy: bool):
        super().__init__("the ring is full")
        self.ring, self.partition, self.blocked_since, self.lock_busy = ring, partition, blocked_since, lock_busy


class _LoopProducer(SyncProducer):
    """The sync producer underneath, with appends that never sleep in C: on the loop's
    thread a full ring raises _NeedsSpace (after the sync checks: the deadline's
    BufferFull, dead producers reaped); on a worker thread it sleeps on the space word."""

    _space_wait_ns = 0
    _send_full_batches = False   # the loop must not append a batch: a full ring would block it

    def __init__(self, bus: "SyncBus", **options: Any):
        super().__init__(bus, **options)
        self.loop_thread = threading.get_ident()
        self.blocked_since: Optional[float] = None   # of the send the loop waits to retry
        self.check_supervisor = False   # set on the loop, done in the helper thread (a request)

    def _look_for_holdup(self, route: TopicRoute, partition: int) -> None:
        if threading.get_ident() != self.loop_thread:
            super()._look_for_holdup(route, partition)
            return
        writer = route.writers[partition]
        route.rings[partition].reap_dead(writer.slot if writer is not None else None)
        self.check_supervisor = route.rings[partition].durable

    def _wait_for_space(self, blocked: Exception, route: TopicRoute, partition: int, deadline: float,
                        blocked_since: Optional[float]) -> float:
        on_loop = threading.get_ident() == self.loop_thread
        since = super()._wait_for_space(blocked, route, partition, deadline,
                                        (self.blocked_since or blocked_since) if on_loop else blocked_since)
        ring = route.rings[partition]
        if on_loop:
            raise _NeedsSpace(ring, partition, since, isinstance(blocked, ClaimLockBusy))
        seen = ring.space_wait_begin(time.monotonic_ns() + _THREAD_SPACE_SLICE_NS)
        try:
            ring.space_wait(seen, _THREAD_SPACE_SLICE_NS, _NEVER_STOPPED, _NEVER_STOPPED.value)
        finally:
            ring.space_wait_end()
        return since


# A stop word nobody stops: for the worker thread's sleeps, which only their timeout ends.
_NEVER_STOPPED = StopWord()


class Producer:
    """Sends records, for asyncio: `await send(...)` -> RecordMetadata (with linger > 0, an
    asyncio Future of it, as aiokafka's send), `await flush()`. Takes the sync Producer's
    options (serializers, linger, batch_size, timeout...). `sync` is the shmbus.Producer
    underneath."""

    def __init__(self, bus: "SyncBus", **options: Any):
        self._lingering = options.get("linger", 0) > 0
        self.sync = _LoopProducer(bus, **options)
        bus._adopt(self.sync)
        self._waiter = Waiter("shmbus-aio-producer")

    async def send(self, topic: str, value: Any, key: Any = None, headers: Optional[Headers] = None,
                   partition: Optional[int] = None, timestamp_ns: Optional[int] = None,
                   timeout: Optional[float] = None) -> Union[RecordMetadata, "asyncio.Future[RecordMetadata]"]:
        """Append a record (waiting for ring space without blocking the loop; BufferFull past
        timeout). With linger: put it in its batch and return a Future of its RecordMetadata."""
        sync = self.sync
        if topic not in sync._routes and isinstance(topic, str):
            # The first send to a topic asks the supervisor for its rings: off the loop.
            await asyncio.get_running_loop().run_in_executor(None, sync._route, topic)
        if self._lingering:
            return await self._send_lingering(topic, value, key, headers, partition, timestamp_ns, timeout)
        deadline = time.monotonic() + (sync._timeout if timeout is None else timeout)
        try:
            return sync.send(topic, value, key, headers, partition, timestamp_ns, timeout)  # type: ignore[arg-type]
        except _NeedsSpace as blocked:
            full = blocked
        # The ring is full: count ourselves a space waiter, try once more (space freed
        # before we counted would wake nobody), then sleep in the helper thread.
        value, key = sync._serialized(value, key)
        sync.blocked_since = full.blocked_since
        try:
            while True:
                ring = full.ring
                seen = ring.space_wait_begin(int((time.monotonic() + 1.0) * 1e9))
                try:
                    try:
                        return _send_serialized_already(sync, topic, value, key, headers, full.partition,
                                                        timestamp_ns, max(0.0, deadline - time.monotonic()))
                    except _NeedsSpace as again:
                        full = again
                    if full.lock_busy:
                        await asyncio.sleep(0.0005)   # a claim lock held: no word to wait on
                        continue
                    left_ns = int(max(0.0, min(deadline - time.monotonic(), 1.0)) * 1e9)
                    # STOPPED: closed, or another task's send on this producer was cancelled.
                    if await self._waiter.run(functools.partial(self._sleep, ring, seen, left_ns)) == STOPPED \
                            and self.sync.closed:
                        _closed()
                finally:
                    ring.space_wait_end()
        finally:
            sync.blocked_since = None

    def _sleep(self, ring: Ring, seen: int, timeout_ns: int, stop_seen: int) -> int:
        """In the helper thread: a stopped archiver may hold the ring up (a dead supervisor
        is restarted: a request, not for the loop's thread); then sleep on the space word."""
        if self.sync.check_supervisor:
            self.sync.check_supervisor = False
            self.sync._bus.link.ensure_supervisor()
        return ring.space_wait(seen, timeout_ns, self._waiter.stop_word, stop_seen)

    async def _send_lingering(self, topic: str, value: Any, key: Any, headers: Optional[Headers],
                              partition: Optional[int], timestamp_ns: Optional[int],
                              timeout: Optional[float]) -> "asyncio.Future[RecordMetadata]":
        sync = self.sync
        loop = asyncio.get_running_loop()
        record = sync._linger_record(topic, value, key, headers, partition, timestamp_ns, timeout, False)
        if record is None:   # too much lingers: wait for room off the loop
            record = await loop.run_in_executor(None, functools.partial(
                sync._linger_record, topic, value, key, headers, partition, timestamp_ns, timeout, True))
        assert record is not None
        return _as_asyncio(record, loop)

    async def send_many(self, topic: str, values: Iterable[bytes], key: Optional[bytes] = None,
                        partition: Optional[int] = None, headers: Optional[Headers] = None,
                        timestamp_ns: Optional[int] = None, timeout: Optional[float] = None) -> int:
        """As Producer.send_many, in a worker thread (a batch may wait for space a while)."""
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(
            self.sync.send_many, topic, list(values), key, partition, headers, timestamp_ns, timeout))

    async def flush(self, timeout: Optional[float] = None) -> None:
        """As Producer.flush (lingering records sent, durable ones fsynced), off the loop."""
        await asyncio.get_running_loop().run_in_executor(None, self.sync.flush, timeout)

    def partitions_for(self, topic: str) -> List[int]:
        return self.sync.partitions_for(topic)

    async def close(self) -> None:
        """Send what lingers, then close (off the loop)."""
        self._waiter.close()
        await asyncio.get_running_loop().run_in_executor(None, self.sync.close)

    @property
    def closed(self) -> bool:
        return self.sync.closed

    async def __aenter__(self) -> "Producer":
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                        traceback: Optional[TracebackType]) -> None:
        await self.close()


def _send_serialized_already(sync: _LoopProducer, *args: Any) -> RecordMetadata:
    """The sync send without serializing again (the values were serialized once above)."""
    metadata: RecordMetadata = SyncProducer._send_general(sync, *args)
    return metadata


def _closed() -> NoReturn:
    from .._errors import Closed
    raise Closed("this producer was closed while a send waited for space")


def _as_asyncio(record: FutureRecordMetadata, loop: asyncio.AbstractEventLoop) -> "asyncio.Future[RecordMetadata]":
    future: "asyncio.Future[RecordMetadata]" = loop.create_future()

    def settle(metadata: Optional[RecordMetadata], error: Optional[BaseException]) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            assert metadata is not None
            future.set_result(metadata)

    def from_sender(metadata: Optional[RecordMetadata] = None, error: Optional[BaseException] = None) -> None:
        try:
            loop.call_soon_threadsafe(settle, metadata, error)
        except RuntimeError:
            pass
    record.add_callback(lambda md: from_sender(md, None))
    record.add_errback(lambda e: from_sender(None, e))
    return future
