"""connect() and Bus: a connection to one bus, which hands out producers and
consumers and manages topics through the supervisor."""
import os
import time
from types import TracebackType
from typing import Any, Dict, List, Optional, Type, Union

import psutil

from ._config import BusPaths
from ._consumer import Consumer
from . import _admin
from ._errors import CorruptSegment, Timeout, TopicExists
from ._link import AUTOSTART_TIMEOUT, SupervisorLink, wait_for_supervisor_exit
from ._names import validate_name
from ._producer import Producer
from ._ring_table import RingTable
from ._types import GroupInfo, TopicDescription, TopicInfo, TopicPartition

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

    def query(self, op: str, **args: Any) -> Any:
        """A control request that only reads: it never starts a supervisor (if none runs,
        SupervisorUnavailable says so in one line)."""
        return self.link.query(op, **args)

    def create_topic(self, name: str, partitions: int = 1, ring_bytes: int = 64 << 20, durable: bool = True,
                     retention_bytes: Optional[int] = None, retention_ms: Optional[int] = None,
                     segment_bytes: Optional[int] = None, exist_ok: bool = False) -> TopicInfo:
        """Create a topic; TopicExists if it exists, unless exist_ok: then the existing
        topic's TopicInfo is returned as it is (its settings are not changed or compared,
        as Kafka's --if-not-exists). Returns its TopicInfo.

        ring_bytes is each partition's shared-memory ring (reserved now, in /dev/shm).
        durable=True archives to segment files of segment_bytes (default 128 MiB) in the
        data dir, deleted by retention_bytes/retention_ms; durable=False keeps records in
        the ring only, overwriting the oldest."""
        validate_name(name, "topic")
        if type(exist_ok) is not bool:
            raise TypeError(f"exist_ok must be True or False, not {exist_ok!r}")
        try:
            reply = self.call("create_topic", name=name, partitions=partitions, ring_bytes=ring_bytes,
                              durable=durable, retention_bytes=retention_bytes, retention_ms=retention_ms,
                              segment_bytes=segment_bytes)
        except TopicExists:
            if not exist_ok:
                raise
            return self.topic(name)
        return TopicInfo(**reply["info"])

    def topics(self) -> Dict[str, TopicInfo]:
        """dict of topic name -> TopicInfo."""
        return {name: TopicInfo(**info) for name, info in self.query("topics").items()}

    def topic(self, name: str) -> TopicInfo:
        """One topic's TopicInfo; TopicNotFound if absent."""
        validate_name(name, "topic")
        return TopicInfo(**self.query("topic", name=name)["info"])

    def describe_topic(self, name: str) -> TopicDescription:
        """The topic's TopicInfo and, per partition, earliest and end offset, ring use,
        producers, and for durable topics segments, archiving and damage (what `shmbus
        topics describe` shows). TopicNotFound if absent; CorruptSegment if it is broken."""
        validate_name(name, "topic")
        reply = self.query("describe_topic", name=name)
        if reply.get("broken"):
            raise CorruptSegment(f"topic {name!r} is broken: {reply['broken']}")
        return _admin.topic_description(reply)

    # ---- consumer groups ----

    def list_groups(self) -> List[str]:
        """The consumer groups the bus knows (live or with committed offsets), by name."""
        return [row["group"] for row in self.query("groups")]

    def describe_group(self, group: str) -> GroupInfo:
        """A group's generation, live members (with their pids) and, per partition, its
        committed offset, end offset, lag and owner. ShmbusError if there is no such group."""
        validate_name(group, "group")
        return _admin.group_info(self.query("describe_group", group=group))

    def delete_group(self, group: str) -> None:
        """Delete a group and its committed offsets; refused (ShmbusError) while it has live members."""
        validate_name(group, "group")
        self.call("delete_group", group=group)

    def reset_offsets(self, group: str, to: _admin.ResetTarget, topics: Optional[List[str]] = None,
                      execute: bool = True) -> Dict[TopicPartition, int]:
        """Move a group's committed offsets, as `shmbus groups reset-offsets`: to "earliest",
        "latest", or an offset (clamped to what each partition holds), for the given topics
        (default: every topic the group has offsets for). Refused while the group has live
        members. execute=False only computes it (the CLI's dry run). Returns {tp: new offset}."""
        validate_name(group, "group")
        reply = self.call("reset_group_offsets", group=group, execute=execute, **_admin.reset_request(to, topics))
        return {TopicPartition(row["topic"], row["partition"]): row["new"] for row in reply["partitions"]}

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
