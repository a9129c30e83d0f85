"""shmbus.aio.Consumer: the sync Consumer's calls as coroutines, waiting in a helper
thread (the Waiter) on the same futex words; group work off the loop."""
import asyncio
import functools
import inspect
import threading
import time
from types import TracebackType
from typing import (TYPE_CHECKING, Any, Awaitable, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set,
                    Type, TypeVar, Union)

from .. import _checks
from .._backend import STOPPED, WaitSet
from .._consumer import Consumer as SyncConsumer
from .._consumer import PartitionLike
from .._types import Message, TopicPartition
from ._waiter import Waiter

if TYPE_CHECKING:
    from .._bus import Bus as SyncBus

T = TypeVar("T")
# A rebalance callback: a function, or a coroutine function, of a set of TopicPartitions.
Callback = Callable[[Set[TopicPartition]], Union[None, Awaitable[None]]]
# How long one helper-thread sleep lasts while the consumer is in a group: between sleeps
# the helper reads the group's generation word (and stamps the poll time), in the helper
# thread -- the loop is woken only when there are records, a rebalance, or the deadline.
_GROUP_SLICE = 0.1
_IDLE_SLICE = 2.0


class Consumer:
    """Reads records, for asyncio: `await poll()`, `await poll_many()`, `async for msg in c`,
    `await commit()`. Takes the sync Consumer's options; on_assign/on_revoke may be
    coroutine functions (awaited during the rebalance, on the loop). `sync` is the
    shmbus.Consumer underneath (its non-waiting calls -- seek, position, pause... -- are
    exposed here as they are)."""

    def __init__(self, bus: "SyncBus", topics: Sequence[str], on_assign: Optional[Callback] = None,
                 on_revoke: Optional[Callback] = None, **options: Any):
        self._topics = list(topics)
        self._on_assign, self._on_revoke = on_assign, on_revoke
        self.sync = SyncConsumer(bus, [], **options)
        bus._adopt(self.sync)
        self._waiter = Waiter("shmbus-aio-consumer")
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._started = not self._topics
        self._start_lock: Optional[asyncio.Lock] = None
        # The thread group work runs on (never the loop's): callbacks it calls wait for the loop.
        self._group_thread: Optional[threading.Thread] = None

    # ---- start: subscribe (a group join) off the loop ----

    async def start(self) -> None:
        """Subscribe to the topics given (a group member joins its group). `async with` and
        the first poll do it."""
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if not self._started:
                await self.subscribe(self._topics, self._on_assign, self._on_revoke)

    async def subscribe(self, topics: Union[str, Iterable[str]], on_assign: Optional[Callback] = None,
                        on_revoke: Optional[Callback] = None) -> None:
        self._loop = asyncio.get_running_loop()
        await self._group_work(self.sync.subscribe, topics, self._on_loop(on_assign), self._on_loop(on_revoke))
        self._started = True

    def _on_loop(self, callback: Optional[Callback]) -> Optional[Callable[[Set[TopicPartition]], None]]:
        """A rebalance callback as the sync group code calls it (in the group thread): run it
        on the loop, awaited if it is a coroutine function, and wait for it."""
        if callback is None:
            return None
        loop = asyncio.get_running_loop()

        async def call(partitions: Set[TopicPartition]) -> None:
            result = callback(partitions)
            if inspect.isawaitable(result):
                await result

        def from_group_thread(partitions: Set[TopicPartition]) -> None:
            asyncio.run_coroutine_threadsafe(call(partitions), loop).result()
        return from_group_thread

    async def _group_work(self, fn: Callable[..., T], *args: Any) -> T:
        """Group requests and rebalances, in a worker thread: the supervisor answers in
        microseconds, but a rebalance calls the user's callbacks, which run on the loop."""
        def work() -> T:
            self._group_thread = threading.current_thread()
            try:
                return fn(*args)
            finally:
                self._group_thread = None
        return await asyncio.get_running_loop().run_in_executor(None, work)

    async def _group_step(self) -> None:
        member = self.sync._member
        if member is not None and member.member_id is not None and member.due():
            self._waiter.interrupt()   # another task's wait must not sleep on rings a rebalance drops
            await self._group_work(member.on_poll)

    # ---- reading ----

    async def poll(self, timeout: Optional[float] = 1.0) -> Optional[Message]:
        """The next record, or None if none arrives within timeout seconds (None: wait forever)."""
        batch = await self._next_batch(1, timeout)
        return batch[0] if batch else None

    async def poll_many(self, max_records: int = 1000, timeout: Optional[float] = 1.0) -> List[Message]:
        """Up to max_records records, as soon as at least one is there; [] on timeout."""
        return await self._next_batch(_checks.positive_int(max_records, "max_records"), timeout)

    def __aiter__(self) -> "Consumer":
        return self

    async def __anext__(self) -> Message:
        """Waits without end; records fetched and not handed out yet are not committed."""
        sync = self.sync
        while True:
            if sync._buffer_index < len(sync._buffer):
                message = sync._buffer[sync._buffer_index]
                sync._buffer_index += 1
                return message
            sync._buffer = await self._next_batch(sync._max_poll_records, None, buffered=False)
            sync._buffer_index = 0

    async def _next_batch(self, max_records: int, timeout: Optional[float], buffered: bool = True) -> List[Message]:
        if not self._started:
            await self.start()
        sync = self.sync
        sync._check_open()
        _checks.seconds(timeout, "timeout", allow_none=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            await self._group_step()
            batch = sync._take(max_records, buffered)
            if batch:
                return batch
            if deadline is not None and time.monotonic() >= deadline:
                return []
            await self._waiter.run(functools.partial(self._sleep, sync._wait_set, deadline))
            sync._check_open()

    def _sleep(self, wait_set: WaitSet, deadline: Optional[float], stop_seen: int) -> int:
        """In the helper thread: sleep on the rings (and the stop word) until records, the
        deadline, a stop -- or, in a group, the generation word moving, read between slices."""
        member = self.sync._member
        in_group = member is not None and member.member_id is not None
        longest = _GROUP_SLICE if in_group or wait_set.count > WaitSet.MAX_STOPPABLE_RINGS else _IDLE_SLICE
        while True:
            if deadline is None:
                slice_s = longest
            else:
                slice_s = min(deadline - time.monotonic(), longest)
                if slice_s <= 0:
                    return 0
            found = wait_set.wait_or_stop(int(slice_s * 1e9), self._waiter.stop_word, stop_seen)
            if found:
                return found
            if in_group and member is not None and member.due():
                return 1
            if stop_seen != self._waiter.stop_word.value:
                return STOPPED

    # ---- commits and offsets ----

    async def commit(self, offsets: Optional[Mapping[PartitionLike, int]] = None) -> None:
        """As Consumer.commit: what was handed out so far (computed now, on the loop), or
        the offsets given; the request runs off the loop."""
        sync = self.sync
        sync._check_open()
        if sync._member is None:
            sync.commit()   # raises: no group
        chosen: Dict[PartitionLike, int] = {TopicPartition(*tp): offset for tp, offset in
                                             (sync._consumed_offsets() if offsets is None else offsets).items()}
        await asyncio.get_running_loop().run_in_executor(None, functools.partial(sync.commit, chosen))

    async def committed(self, tp: PartitionLike) -> Optional[int]:
        return await asyncio.get_running_loop().run_in_executor(None, self.sync.committed, tp)

    async def beginning_offsets(self, partitions: Iterable[PartitionLike]) -> Dict[TopicPartition, int]:
        return self.sync.beginning_offsets(partitions)

    async def end_offsets(self, partitions: Iterable[PartitionLike]) -> Dict[TopicPartition, int]:
        return self.sync.end_offsets(partitions)

    async def offsets_for_times(self, timestamps: Mapping[PartitionLike, int],
                                unit: str = "ns") -> Dict[TopicPartition, Optional[int]]:
        """As Consumer.offsets_for_times (it may scan segment files: off the loop)."""
        return await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(self.sync.offsets_for_times, timestamps, unit))

    async def unsubscribe(self) -> None:
        self._waiter.interrupt()
        await self._group_work(self.sync.unsubscribe)

    # ---- what does not wait: the sync consumer's own ----

    def seek(self, tp: PartitionLike, offset: int) -> None:
        self.sync.seek(tp, offset)

    def seek_to_beginning(self, *tps: PartitionLike) -> None:
        self.sync.seek_to_beginning(*tps)

    def seek_to_end(self, *tps: PartitionLike) -> None:
        self.sync.seek_to_end(*tps)

    def position(self, tp: PartitionLike) -> int:
        return self.sync.position(tp)

    def assignment(self) -> Set[TopicPartition]:
        return self.sync.assignment()

    def assign(self, partitions: Iterable[PartitionLike]) -> None:
        self._waiter.interrupt()   # readers it drops are closed
        self.sync.assign(partitions)
        self._started = True

    def pause(self, *partitions: PartitionLike) -> None:
        self._stop_waiting()   # a wait in progress sleeps on the old set of rings
        self.sync.pause(*partitions)

    def resume(self, *partitions: PartitionLike) -> None:
        self._stop_waiting()
        self.sync.resume(*partitions)

    def paused(self) -> Set[TopicPartition]:
        return self.sync.paused()

    def missed(self, tp: Optional[PartitionLike] = None) -> int:
        return self.sync.missed(tp)

    def _stop_waiting(self) -> None:
        """End a wait another task has in progress: it goes round again with the new rings."""
        self._waiter.stop_word.stop()

    # ---- lifetime ----

    async def close(self) -> None:
        """Stop any wait, then close (a group member commits with auto-commit and leaves)."""
        if self.sync.closed:
            return
        self._waiter.close()
        await self._group_work(self.sync.close)

    @property
    def closed(self) -> bool:
        return self.sync.closed

    async def __aenter__(self) -> "Consumer":
        await self.start()
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                        traceback: Optional[TracebackType]) -> None:
        await self.close()

    def __del__(self) -> None:
        waiter = getattr(self, "_waiter", None)
        if waiter is not None and not getattr(self.sync, "closed", True):
            waiter.stop_word.stop()
