"""Bridge: mirrors shmbus topics to Apache Kafka and Kafka topics to shmbus, at least once,
partitions kept. Each direction runs on a thread of its own (librdkafka and the shmbus
waits both let go of the GIL); a third reports the bridge's state to the supervisor once
a second, where `shmbus stats` and `shmbus top` read it."""
import logging
import os
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Tuple, Type, Union

from .._errors import ShmbusError, SupervisorUnavailable
from ._config import BridgeConfig
from ._from_kafka import FromKafka
from ._kafka import BrokerState, KafkaTopics, new_admin, new_consumer
from ._to_kafka import ToKafka

if TYPE_CHECKING:
    from .._bus import Bus

logger = logging.getLogger("shmbus.bridge")

# The header every record the bridge carries gets, with the bridge's name as its value:
# a record that has it is not carried back by the same bridge (no echo on a topic
# bridged both ways). Under shmbus.: header names of shmbus's own.
MARKER_HEADER = "shmbus.bridge"
REPORT_INTERVAL = 1.0
# How often the status thread asks the cluster for its metadata, to tell (and log once)
# that Kafka went away or came back: librdkafka says it lost a broker only now and then
# (it does not repeat an error it reported), and says nothing when it is back. While
# Kafka is away, the directions' own clients retry with librdkafka's backoff.
PROBE_INTERVAL = 2.0
PROBE_INTERVAL_DOWN = 1.0
PROBE_TIMEOUT = 1.0

TopicMap = Union[Mapping[str, str], Iterable[str], None]


def _topic_map(topics: TopicMap) -> Dict[str, str]:
    """{"imu": "edge1.imu"}, or names mirrored as they are (["imu"])."""
    if topics is None:
        return {}
    if isinstance(topics, str):
        return {topics: topics}
    if isinstance(topics, Mapping):
        return dict(topics)
    return {topic: topic for topic in topics}


class Bridge:
    """Mirror topics between a bus and a Kafka cluster.

        Bridge(bus, kafka={"bootstrap.servers": "127.0.0.1:9092"},
               to_kafka={"imu": "imu"}, from_kafka={"commands": "commands"}, name="edge1").run()

    kafka       librdkafka properties (bootstrap.servers, security, compression, linger...).
    to_kafka    shmbus topic -> Kafka topic (or a list of names kept as they are).
    from_kafka  Kafka topic -> shmbus topic (or a list).
    name        the bridge's groups are shmbus-bridge-<name> on both sides; two bridges of one
                name share the work, as members of one group do.
    shutdown_timeout  seconds stop() waits for Kafka to acknowledge what is in flight.

    The Kafka clients are made here, so a property librdkafka refuses is a
    BridgeConfigError now; run() blocks until stop() (from another thread, or a signal
    handler) and raises what stopped it otherwise."""

    def __init__(self, bus: "Bus", kafka: Mapping[str, Any], to_kafka: TopicMap = None,
                 from_kafka: TopicMap = None, name: str = "bridge", shutdown_timeout: float = 10.0):
        props = {str(k): v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
                 for k, v in dict(kafka).items()}
        self.config = BridgeConfig(kafka=props, to_kafka=_topic_map(to_kafka), from_kafka=_topic_map(from_kafka),
                                   name=name)
        self._bus = bus
        self._shutdown_timeout = shutdown_timeout
        self.state = BrokerState(self.config.servers)
        self._stopping = threading.Event()
        marker = (MARKER_HEADER, self.config.name.encode())
        self._topics = KafkaTopics(new_admin(props, self.state), self.state)
        self._to: Optional[ToKafka] = None
        self._from: Optional[FromKafka] = None
        if self.config.to_kafka:
            self._to = ToKafka(bus, self.config, self._topics, self.state, self._stopping, marker)
        if self.config.from_kafka:
            self._from = FromKafka(bus, self.config, new_consumer(props, self.config.group, self.state),
                                   self._topics, self.state, self._stopping, marker)
        self._errors: List[BaseException] = []
        self._started = time.time()
        self._running = False

    @classmethod
    def from_config(cls, bus: "Bus", config: BridgeConfig, shutdown_timeout: float = 10.0) -> "Bridge":
        return cls(bus, config.kafka, config.to_kafka, config.from_kafka, config.name, shutdown_timeout)

    @property
    def name(self) -> str:
        return self.config.name

    # ---- running ----

    def run(self) -> None:
        """Bridge until stop(); then deliver and commit what is in flight and return.
        Raises the error that stopped a direction (the other is stopped too)."""
        if self._running:
            raise ShmbusError("this bridge runs already")
        self._running = True
        logger.info(f"bridge {self.name!r} starting (Kafka at {self.config.servers}, pid {os.getpid()})")
        threads = [threading.Thread(target=self._direction, args=(d, label), name=f"bridge-{label}", daemon=True)
                   for d, label in ((self._to, "to-kafka"), (self._from, "from-kafka")) if d is not None]
        for thread in threads:
            thread.start()
        try:
            next_report = 0.0
            while any(t.is_alive() for t in threads):
                now = time.monotonic()
                if now >= next_report:
                    self._report()
                    next_report = now + REPORT_INTERVAL
                interval = PROBE_INTERVAL_DOWN if self.state.connected is False else PROBE_INTERVAL
                if self.state.connected is not None and (self.state.suspect is not None
                                                         or now - self._last_probe >= interval):
                    self._probe()
                for thread in threads:
                    thread.join(0.1)
        finally:
            self._stopping.set()
            for thread in threads:
                thread.join()
            self._running = False
            self._report(final=True)
        if self._errors:
            raise self._errors[0]
        logger.info(f"bridge {self.name!r} stopped: everything acknowledged is committed")

    _last_probe = 0.0

    def _direction(self, direction: Union[ToKafka, FromKafka], label: str) -> None:
        try:
            try:
                if direction.prepare():
                    direction.run()
            finally:
                direction.finish(self._shutdown_timeout)
        except BaseException as e:
            if not self._errors:
                self._errors.append(e)
            self._stopping.set()

    def _probe(self) -> None:
        """Is Kafka back? (A quiet direction would not notice until it has records.)"""
        self._last_probe = time.monotonic()
        suspect = self.state.suspect
        try:
            self._topics.partition_counts(timeout=PROBE_TIMEOUT)   # up() when it answers
        except Exception as e:
            self.state.suspect = None
            self.state.down(suspect or str(e))

    def stop(self) -> None:
        """Ask run() to return: stop reading, deliver and commit what is in flight."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def __enter__(self) -> "Bridge":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 traceback: Optional[TracebackType]) -> None:
        self.stop()

    # ---- state ----

    def status(self) -> Dict[str, Any]:
        """What `shmbus stats` shows of this bridge (a JSON-able dict)."""
        return {"name": self.name, "pid": os.getpid(), "kafka": self.config.servers, "group": self.config.group,
                "started": self._started, "connected": self.state.connected, "kafka_error": self.state.reason,
                "since": self.state.since, "stopping": self._stopping.is_set(),
                "to_kafka": self._to.status() if self._to is not None else None,
                "from_kafka": self._from.status() if self._from is not None else None}

    _report_failing = False

    def lag(self) -> List[Dict[str, Any]]:
        """Per topic-partition each way, the records not yet on the other side, as the bridge
        reports them to the supervisor (shmbus/_supervisor/bridges.py): to Kafka, the shmbus
        end offset minus the offset before which Kafka has everything; from Kafka, Kafka's
        high watermark minus the bridge's last Kafka commit (made once shmbus has the records
        on disk). A row also carries the Kafka topic, the commit and, for a partition the
        bridge stopped at a record the other side refuses, why."""
        rows: List[Dict[str, Any]] = []
        if self._to is not None:
            rows.extend(self._to.lag())
        if self._from is not None:
            rows.extend(self._from.lag())
        return rows

    def _report(self, final: bool = False) -> None:
        try:
            self._bus.call("bridge_report", name=self.name, lag=[] if final else self.lag(), final=final)
        except (SupervisorUnavailable, ShmbusError) as e:
            if not self._report_failing:
                logger.warning(f"cannot report to the supervisor ({e}); `shmbus stats` does not show this "
                               f"bridge until it can")
                self._report_failing = True
            return
        self._report_failing = False


def marker(name: str) -> Tuple[str, bytes]:
    """The loop-guard header of the bridge called name."""
    return (MARKER_HEADER, name.encode())
