"""connect(): find (or start) the bus's supervisor, and hand out producers and consumers."""
import fcntl
import os
import subprocess
import sys
import threading
import time

from ._config import BusPaths
from ._errors import Closed, SupervisorUnavailable, Timeout, TopicNotFound
from ._names import validate_name
from ._protocol import ControlClient
from ._ring import Ring
from ._types import TopicInfo

AUTOSTART_TIMEOUT = 15.0


def connect(name=None, data_dir=None, autostart=True, timeout=AUTOSTART_TIMEOUT):
    """Attach to the bus's supervisor; with autostart, start one (a detached process
    that outlives the caller) when none runs. data_dir defaults to $SHMBUS_DATA_DIR,
    else ~/.local/share/shmbus/<name>."""
    return Bus(BusPaths.resolve(name, data_dir), autostart=autostart, timeout=timeout)


def wait_for_supervisor_exit(paths, timeout):
    """A supervisor holds its lock until it has removed everything: wait for the lock."""
    deadline = time.monotonic() + timeout
    fd = os.open(paths.lock_file, os.O_RDWR)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise Timeout(f"the supervisor of bus {paths.bus!r} did not stop within {timeout}s") from None
                time.sleep(0.02)
    finally:
        os.close(fd)


def start_supervisor(paths):
    """Start `shmbus serve` detached: its own session, no terminal, log in the data dir."""
    os.makedirs(paths.data_dir, mode=0o700, exist_ok=True)
    log = open(paths.log_file, "ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "shmbus", "serve", "--bus", paths.bus, "--data-dir", paths.data_dir],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
            # Not the caller's directory: `-m` puts it first on sys.path, and a source
            # checkout there (no compiled core) would shadow the installed package.
            cwd=paths.data_dir,
        )
    finally:
        log.close()


class RingTable:
    """The rings a client has mapped, by topic. Shared by a bus's producers and
    consumers; re-resolved when a topic is deleted and created again, or when a
    restarted supervisor made new rings."""

    def __init__(self, bus):
        self._bus = bus
        self._lock = threading.Lock()
        self._topics = {}  # name -> (TopicInfo, [Ring])

    def get(self, topic):
        entry = self._topics.get(topic)
        if entry is None:
            entry = self.refresh(topic)
        return entry

    def refresh(self, topic, stale=None):
        """(Re)load a topic's rings from the supervisor. `stale` is the list the caller
        found deleted: if another thread already replaced it, use theirs."""
        with self._lock:
            current = self._topics.get(topic)
            if current is not None and (stale is None or current[1] is not stale):
                return current
            reply = self._bus.call("topic", name=topic)
            info = TopicInfo(**reply["info"])
            rings = [Ring.attach(name) for name in reply["rings"]]
            self._topics[topic] = (info, rings)
            if current is not None:
                self._bus._retired.extend(current[1])
            return self._topics[topic]

    def close(self):
        with self._lock:
            for _, rings in self._topics.values():
                for ring in rings:
                    ring.close()
            self._topics.clear()


class Bus:
    """A connection to one bus. A context manager; close() releases everything it made."""

    def __init__(self, paths, autostart=True, timeout=AUTOSTART_TIMEOUT):
        self.paths = paths
        self.autostart = autostart
        self.timeout = timeout
        self._control = None
        self._control_lock = threading.Lock()
        self._closed = False
        self._children = []  # producers and consumers to close with the bus
        self._retired = []   # rings of deleted topics, unmapped at close
        self._last_check = 0.0
        self.rings = RingTable(self)
        self._connect()

    @property
    def name(self):
        return self.paths.bus

    @property
    def data_dir(self):
        return self.paths.data_dir

    # ---- control connection ----

    def _connect(self):
        try:
            self._control = ControlClient(self.paths.socket_path)
            return
        except SupervisorUnavailable:
            if not self.autostart:
                raise
        process = start_supervisor(self.paths)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                self._control = ControlClient(self.paths.socket_path)
                return
            except SupervisorUnavailable:
                pass
            if process.poll() is not None:
                # It exited: it lost the race for the lock to another one that is
                # starting (then we connect to that one), or it died: start another.
                time.sleep(0.1)
                process = start_supervisor(self.paths)
            time.sleep(0.02)
        raise SupervisorUnavailable(
            f"could not start a supervisor for bus {self.paths.bus!r}; see {self.paths.log_file}"
        )

    def ensure_supervisor(self, min_interval=0.5):
        """Check the supervisor still answers; reconnect, and with autostart start a new
        one, if it died. Clients call this when they wait on something only it does
        (archiving, fsync). Rate-limited: at most one check per min_interval."""
        now = time.monotonic()
        if now - self._last_check < min_interval:
            return
        self._last_check = now
        try:
            self.call("ping")
        except SupervisorUnavailable:
            pass

    def call(self, op, **args):
        """One control request. If the supervisor is gone, reconnect (with autostart,
        start a new one) and retry until the connect timeout: a supervisor killed a
        moment ago may still refuse or reset connections while it dies."""
        if self._closed:
            raise Closed("this bus connection is closed")
        with self._control_lock:
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    return self._control.call(op, **args)
                except SupervisorUnavailable:
                    if time.monotonic() > deadline:
                        raise
                self._control.close()
                try:
                    self._connect()
                except SupervisorUnavailable:
                    if not self.autostart or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    # ---- topics ----

    def create_topic(self, name, partitions=1, ring_bytes=64 << 20, durable=True,
                     retention_bytes=None, retention_ms=None, segment_bytes=None):
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

    def topics(self):
        """dict of topic name -> TopicInfo."""
        return {name: TopicInfo(**info) for name, info in self.call("topics").items()}

    def topic(self, name):
        """One topic's TopicInfo; TopicNotFound if absent."""
        validate_name(name, "topic")
        return TopicInfo(**self.call("topic", name=name)["info"])

    def describe_topic(self, name):
        """Per partition: earliest and end offset, ring use, producers (a dict, as the CLI shows it)."""
        validate_name(name, "topic")
        return self.call("describe_topic", name=name)

    def delete_topic(self, name):
        """Delete a topic: its rings and its segment files. TopicNotFound if absent."""
        validate_name(name, "topic")
        self.call("delete_topic", name=name)

    def stop_supervisor(self, timeout=30.0):
        """Stop the supervisor cleanly (what `shmbus stop` does) and return once it has:
        everything archived and fsynced, nothing of the bus left in /dev/shm. Timeout if
        it takes longer than timeout seconds."""
        self.call("stop")
        wait_for_supervisor_exit(self.paths, timeout)

    # ---- clients ----

    def producer(self, **options):
        """A Producer on this bus; see Producer for the options."""
        from ._producer import Producer
        producer = Producer(self, **options)
        self._children.append(producer)
        return producer

    def consumer(self, *topics, **options):
        """A Consumer of the given topics; see Consumer for the options."""
        from ._consumer import Consumer
        consumer = Consumer(self, list(topics), **options)
        self._children.append(consumer)
        return consumer

    # ---- lifetime ----

    def close(self):
        if self._closed:
            return
        for child in self._children:
            child.close()
        self._children.clear()
        self.rings.close()
        for ring in self._retired:
            ring.close()
        self._retired.clear()
        self._closed = True
        if self._control is not None:
            self._control.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<shmbus.Bus {self.paths.bus!r} at {self.paths.data_dir}>"


def ensure_topic(bus, topic):
    """TopicNotFound with the topic's name, for clients that resolve lazily."""
    try:
        return bus.rings.get(topic)
    except TopicNotFound:
        raise TopicNotFound(f"unknown topic {topic!r} on bus {bus.name!r}") from None
