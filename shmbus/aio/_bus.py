"""shmbus.aio.connect() and Bus: the sync Bus's calls as coroutines (the control
requests run in a worker thread: a supervisor may take a moment to start or answer)."""
import asyncio
import functools
from types import TracebackType
from typing import Any, Callable, Dict, Generator, List, Optional, Type, TypeVar, Union

from .. import _bus
from .._admin import ResetTarget
from .._link import AUTOSTART_TIMEOUT
from .._types import GroupInfo, TopicDescription, TopicInfo, TopicPartition
from ._consumer import Consumer
from ._producer import Producer

T = TypeVar("T")
C = TypeVar("C", Producer, Consumer)


async def _off_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args, **kwargs))


def connect(name: Optional[str] = None, data_dir: Optional[_bus.PathLike] = None, autostart: bool = True,
            timeout: float = AUTOSTART_TIMEOUT) -> "_Connecting":
    """As shmbus.connect: `bus = await shmbus.aio.connect(...)`, or `async with shmbus.aio.connect(...) as bus`."""
    return _Connecting(lambda: _bus.connect(name, data_dir, autostart, timeout))


class _Connecting:
    """What connect() returns: awaitable, and an async context manager that closes the bus."""

    def __init__(self, make: Callable[[], _bus.Bus]):
        self._make = make
        self._bus: Optional[Bus] = None

    def __await__(self) -> Generator[Any, None, "Bus"]:
        return self._connect().__await__()

    async def _connect(self) -> "Bus":
        return Bus(await _off_loop(self._make))

    async def __aenter__(self) -> "Bus":
        self._bus = await self._connect()
        return self._bus

    async def __aexit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                        traceback: Optional[TracebackType]) -> None:
        if self._bus is not None:
            await self._bus.close()


class Bus:
    """A connection to one bus, for asyncio. `sync` is the shmbus.Bus underneath."""

    def __init__(self, sync: _bus.Bus):
        self.sync = sync
        # Closed before the sync bus: their helper threads may sleep on its rings.
        self._children: List[Union[Producer, Consumer]] = []

    @property
    def name(self) -> str:
        return self.sync.name

    @property
    def data_dir(self) -> str:
        return self.sync.data_dir

    async def create_topic(self, name: str, partitions: int = 1, ring_bytes: int = 64 << 20, durable: bool = True,
                           retention_bytes: Optional[int] = None, retention_ms: Optional[int] = None,
                           segment_bytes: Optional[int] = None, exist_ok: bool = False) -> TopicInfo:
        return await _off_loop(self.sync.create_topic, name, partitions, ring_bytes, durable, retention_bytes,
                               retention_ms, segment_bytes, exist_ok)

    async def topics(self) -> Dict[str, TopicInfo]:
        return await _off_loop(self.sync.topics)

    async def topic(self, name: str) -> TopicInfo:
        return await _off_loop(self.sync.topic, name)

    async def describe_topic(self, name: str) -> TopicDescription:
        return await _off_loop(self.sync.describe_topic, name)

    async def delete_topic(self, name: str) -> None:
        await _off_loop(self.sync.delete_topic, name)

    async def list_groups(self) -> List[str]:
        return await _off_loop(self.sync.list_groups)

    async def describe_group(self, group: str) -> GroupInfo:
        return await _off_loop(self.sync.describe_group, group)

    async def delete_group(self, group: str) -> None:
        await _off_loop(self.sync.delete_group, group)

    async def reset_offsets(self, group: str, to: ResetTarget, topics: Optional[List[str]] = None,
                            execute: bool = True) -> Dict[TopicPartition, int]:
        return await _off_loop(self.sync.reset_offsets, group, to, topics, execute)

    def producer(self, **options: Any) -> Producer:
        """A Producer (the sync options); `async with bus.producer() as p`."""
        return self._adopt(Producer(self.sync, **options))

    def consumer(self, *topics: str, **options: Any) -> Consumer:
        """A Consumer of the topics (the sync options; on_assign/on_revoke may be coroutine
        functions); `async with bus.consumer(...) as c` joins its group off the loop."""
        return self._adopt(Consumer(self.sync, topics, **options))

    def _adopt(self, child: C) -> C:
        self._children = [c for c in self._children if not c.closed]
        self._children.append(child)
        return child

    async def close(self) -> None:
        for child in self._children:
            await child.close()
        self._children.clear()
        await _off_loop(self.sync.close)

    async def __aenter__(self) -> "Bus":
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                        traceback: Optional[TracebackType]) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<shmbus.aio.Bus {self.sync.name!r} at {self.sync.data_dir}>"
