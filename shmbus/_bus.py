"""connect() and Bus: a connection to one bus, which hands out producers and
consumers and manages topics through the supervisor."""
import os
import time
from types import TracebackType
from typing import Any, Dict, List, Optional, Type, Union

import psutil

from ._config import BusPaths
from ._consumer import Consumer
from ._errors import Timeout
from ._link import AUTOSTART_TIMEOUT, SupervisorLink, wait_for_supervisor_exit
from ._names import validate_name
from ._producer import Producer
from ._ring_table import RingTable
from ._types import TopicInfo

PathLike = Union[str, "os.PathLike[str]"]


def connect(name: Optional[str] = None, data_dir: Optional[PathLike] = None, autostart: bool = True,
            timeout: float = AUTOSTART_TIMEOUT) -> "Bus":
    """Attach to the bus's supervisor; with autostart, start one (a detached process
    that outlives the caller) when none runs. data_dir defaults to $SHMBUS_DATA_DIR,
    else ~/.local/share/shmbus/<name>."""
    return Bus(BusPaths.resolve(name, data_dir), autostart=autostart, timeout=timeout)


class Bus:
    """A connection to one bus. A context manager; close() releases everything it made.

    `link` is its control connection to the supervisor and `rings` the partition rings
    it has mapped; its producers and consumers share both."""

    def __init__(self, paths: BusPaths, autostart: bool = True, timeout: float = AUTOSTART_TIMEOUT):
        self.paths = paths
        self.link = SupervisorLink(paths, autostart=autostart, timeout=timeout)
        self.rings = RingTable(paths.bus, self.link.call, lambda: self.link.server_uid)
        self._children: List[Union[Producer, Consumer]] = []  # closed with the bus
        self._closed = False

    @property
    def name(self) -> str:
        return self.paths.bus

    @property
    def data_dir(self) -> str:
        return self.paths.data_dir

    def call(self, op: str, **args: Any) -> Any:
        """One control request to the supervisor (reconnecting, and with autostart
        restarting it, if it is gone)."""
        return self.link.call(op, **args)

    # ---- topics ----

    def create_topic(self, name: str, partitions: int = 1, ring_bytes: int = 64 << 20, durable: bool = True,
                     retention_bytes: Optional[int] = None, retention_ms: Optional[int] = None,
                     segment_bytes: Optional[int] = None) -> TopicInfo:
        """Create a topic; TopicExists if it exists. Returns its TopicInfo.

        ring_bytes is each partition's shared-memory ring (reserved now, in /dev/shm).
        durable=True archives to segment files of segment_bytes (default 128 MiB) in the
        data dir, deleted by retention_bytes/retention_ms; durable=False keeps records in
        the ring only, overwriting the oldest."""
        validate_name(name, "topic")
        reply = self.call("create_topic", name=name, partitions=partitions, ring_bytes=ring_bytes,
                          durable=durable, retention_bytes=retention_bytes, retention_ms=retention_ms,
                          segment_bytes=segment_bytes)
        return TopicInfo(**reply["info"])

    def topics(self) -> Dict[str, TopicInfo]:
        """dict of topic name -> TopicInfo."""
        return {name: TopicInfo(**info) for name, info in self.call("topics").items()}

    def topic(self, name: str) -> TopicInfo:
        """One topic's TopicInfo; TopicNotFound if absent."""
        validate_name(name, "topic")
        return TopicInfo(**self.call("topic", name=name)["info"])

    def describe_topic(self, name: str) -> Dict[str, Any]:
        """Per partition: earliest and end offset, ring use, producers (a dict, as the CLI shows it)."""
        validate_name(name, "topic")
        described: Dict[str, Any] = self.call("describe_topic", name=name)
        return described

    def delete_topic(self, name: str) -> None:
        """Delete a topic: its rings and its segment files. TopicNotFound if absent."""
        validate_name(name, "topic")
        self.call("delete_topic", name=name)
        self.rings.forget(name)

    def stop_supervisor(self, timeout: float = 30.0) -> None:
        """Stop the supervisor cleanly (what `shmbus stop` does) and return once it has:
        everything archived and fsynced, nothing of the bus left in /dev/shm. Timeout if
        it takes longer than timeout seconds."""
        pid = self.call("ping")["pid"]
        deadline = time.monotonic() + timeout
        self.call("stop")
        wait_for_supervisor_exit(self.paths, timeout)
        # The lock goes a moment before the process: wait for that too, so "stopped"
        # means no supervisor process is left.
        while _running(pid):
            if time.monotonic() > deadline:
                raise Timeout(f"the supervisor of bus {self.paths.bus!r} (pid {pid}) released its lock but "
                              f"did not exit within {timeout}s")
            time.sleep(0.01)

    # ---- clients ----

    def producer(self, **options: Any) -> Producer:
        """A Producer on this bus; see Producer for the options."""
        producer = Producer(self, **options)
        self._adopt(producer)
        return producer

    def consumer(self, *topics: str, **options: Any) -> Consumer:
        """A Consumer of the given topics; see Consumer for the options."""
        consumer = Consumer(self, list(topics), **options)
        self._adopt(consumer)
        return consumer

    def _adopt(self, child: Union[Producer, Consumer]) -> None:
        """Close it with the bus; forget those already closed (a program that opens and
        closes thousands of consumers must not keep them all)."""
        self._children = [c for c in self._children if not c.closed]
        self._children.append(child)

    # ---- lifetime ----

    def close(self) -> None:
        if self._closed:
            return
        for child in self._children:
            child.close()
        self._children.clear()
        self.rings.close()
        self._closed = True
        self.link.close()

    def __enter__(self) -> "Bus":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 traceback: Optional[TracebackType]) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<shmbus.Bus {self.paths.bus!r} at {self.paths.data_dir}>"


def _running(pid: int) -> bool:
    """The process runs (a zombie has exited: only its parent has yet to collect it)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
