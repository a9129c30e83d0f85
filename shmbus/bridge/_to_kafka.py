"""shmbus -> Kafka: a member of the shmbus consumer group shmbus-bridge-<name> that hands
every record to an idempotent Kafka producer (acks=all), and commits a shmbus offset only
once Kafka has acknowledged every record before it (PartitionAcks): a bridge killed at any
point sends again from the last commit, never skipping one.

Partitions: when the Kafka topic has as many partitions as the shmbus topic, a record goes
to the same partition number; otherwise keyed records go where Kafka's murmur2 puts them
(shmbus's own partitioner, bit for bit Java's), keyless ones at random. A record Kafka can
never take (larger than message.max.bytes) stops its partition, with the reason in the log
and in `shmbus stats`: the bridge neither skips it nor sends what follows it."""
import functools
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set, Tuple, Union

from confluent_kafka import KafkaError, KafkaException, Producer

from .._errors import CommitFailed, SupervisorUnavailable, TopicNotFound
from .._producer import murmur2_partition
from .._types import Message, TopicPartition
from ._acks import PartitionAcks
from ._config import BridgeConfig
from ._kafka import BrokerState, KafkaTopics, error_text, retry_until

if TYPE_CHECKING:
    from .._bus import Bus
    from .._consumer import Consumer, PartitionLike

logger = logging.getLogger("shmbus.bridge")

# A commit is a control request and an fsync by the supervisor: a few a second keep the
# re-sent tail after a crash short without making the supervisor busy.
COMMIT_INTERVAL = 0.2
# Records per shmbus read: enough to amortize the read, few enough to serve Kafka's
# delivery reports often.
READ_BATCH = 2000
# A bridge blocked because Kafka takes nothing (its producer queue full) is still alive:
# the shmbus group would otherwise drop it after the default 300 s and hand its partitions
# to a member that cannot do better.
MAX_POLL_INTERVAL = 3600.0
# Errors meaning the record itself can never be delivered.
_TOO_LARGE = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE, KafkaError.RECORD_LIST_TOO_LARGE}


class _Route:
    __slots__ = ("topic", "kafka_topic", "partitions", "kafka_partitions")

    def __init__(self, topic: str, kafka_topic: str, partitions: int, kafka_partitions: int):
        self.topic = topic
        self.kafka_topic = kafka_topic
        self.partitions = partitions
        self.kafka_partitions = kafka_partitions

    @property
    def same_partitions(self) -> bool:
        return self.partitions == self.kafka_partitions


class ToKafka:
    """One direction of a Bridge, run on a thread of its own."""

    def __init__(self, bus: "Bus", config: BridgeConfig, producer: Producer, topics: KafkaTopics,
                 state: BrokerState, stopping: threading.Event, marker: Tuple[str, bytes]):
        self._bus = bus
        self._config = config
        self._producer = producer
        self._topics = topics
        self._state = state
        self._stopping = stopping
        self._marker = marker
        self._routes: Dict[str, _Route] = {}
        self._acks: Dict[TopicPartition, PartitionAcks] = {}
        self._rewinds: Set[TopicPartition] = set()
        self._consumer: Optional["Consumer"] = None
        self.sent = self.delivered = self.looped = self.resent = 0

    # ---- start ----

    def prepare(self) -> bool:
        """Resolve both sides' topics, creating missing Kafka topics with the shmbus
        partition count, and join the shmbus group. False if the bridge stopped first."""
        infos = {}
        for topic in self._config.to_kafka:
            try:
                infos[topic] = self._bus.topic(topic)
            except TopicNotFound:
                raise TopicNotFound(f"--to-kafka {topic}: no such topic on bus {self._bus.name!r} (create it "
                                    f"first: shmbus topics create {topic} --partitions N)") from None
        counts = retry_until("reading Kafka's topics", self._topics.partition_counts, self._state, self._stopping)
        if counts is None:
            return False
        missing = {kafka_topic: infos[topic].partitions for topic, kafka_topic in self._config.to_kafka.items()
                   if kafka_topic not in counts}
        if missing:
            created = retry_until("creating Kafka topics", lambda: self._topics.create(missing), self._state,
                                  self._stopping)
            if created is None:
                return False
            for name in created:
                logger.info(f"created Kafka topic {name!r} with {missing[name]} partitions")
            counts = self._wait_for_topics(set(missing))
            if counts is None:
                return False
        for topic, kafka_topic in self._config.to_kafka.items():
            route = _Route(topic, kafka_topic, infos[topic].partitions, counts[kafka_topic])
            if not route.same_partitions:
                logger.warning(f"shmbus topic {topic!r} has {route.partitions} partitions, Kafka topic "
                               f"{kafka_topic!r} {route.kafka_partitions}: records go to Kafka partitions by "
                               f"key (murmur2, as Kafka's Java client), keyless ones at random; partition "
                               f"numbers are not kept")
            self._routes[topic] = route
        self._consumer = self._bus.consumer(*self._config.to_kafka, group=self._config.group,
                                            auto_offset_reset="earliest", max_poll_interval=MAX_POLL_INTERVAL,
                                            max_poll_records=READ_BATCH, on_revoke=self._on_revoke)
        logger.info("to Kafka: " + ", ".join(f"{r.topic} -> {r.kafka_topic}" for r in self._routes.values())
                    + f" (shmbus group {self._config.group})")
        return True

    def _wait_for_topics(self, wanted: Set[str]) -> Optional[Dict[str, int]]:
        """Kafka's metadata shows a created topic a moment after the create returns."""
        deadline = time.monotonic() + 30.0
        while not self._stopping.is_set():
            counts = retry_until("reading Kafka's topics", self._topics.partition_counts, self._state,
                                 self._stopping)
            if counts is None or wanted <= set(counts):
                return counts
            if time.monotonic() > deadline:
                raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART,
                                                f"created Kafka topic(s) {sorted(wanted - set(counts))} do not "
                                                f"show in the cluster's metadata after 30 s"))
            self._stopping.wait(0.1)
        return None

    # ---- the loop ----

    def run(self) -> None:
        consumer = self._consumer
        assert consumer is not None, "run before prepare"
        producer = self._producer
        next_commit = time.monotonic() + COMMIT_INTERVAL
        while not self._stopping.is_set():
            for message in consumer.poll_many(READ_BATCH, timeout=0.05):
                self._send(message)
            producer.poll(0)
            if self._rewinds:
                self._rewind()
            now = time.monotonic()
            if now >= next_commit:
                self.commit()
                next_commit = now + COMMIT_INTERVAL

    def _send(self, message: Message) -> None:
        tp = TopicPartition(message.topic, message.partition)
        acks = self._acks.get(tp)
        if acks is None:
            acks = self._acks[tp] = PartitionAcks(message.offset)
        elif acks.error is not None:
            return   # stopped at a record Kafka cannot take: nothing after it goes
        offset = message.offset
        headers = message.headers
        if headers and self._marker in headers:
            acks.passed(offset)   # it came from Kafka through this bridge: not back
            self.looped += 1
            return
        route = self._routes[message.topic]
        if route.same_partitions:
            partition = message.partition
        elif message.key is not None:
            partition = murmur2_partition(message.key, route.kafka_partitions)
        else:
            partition = -1   # the producer's partitioner: random for keyless records
        kafka_headers: List[Tuple[str, Union[str, bytes, None]]] = list(headers)
        kafka_headers.append(self._marker)
        report = functools.partial(self._delivered, acks, acks.epoch, offset)
        producer = self._producer
        while True:
            try:
                producer.produce(route.kafka_topic, message.value, message.key, partition=partition,
                                 on_delivery=report, timestamp=message.timestamp_ns // 1_000_000,
                                 headers=kafka_headers)
                break
            except BufferError:
                # Kafka takes records slower than shmbus hands them over, or not at all now:
                # wait for room (the shmbus side keeps everything meanwhile).
                producer.poll(0.05)
            except KafkaException as e:
                error = e.args[0]
                if isinstance(error, KafkaError) and error.code() in _TOO_LARGE:
                    acks.sent(offset)
                    self._stop_partition(tp, acks, offset, error_text(error), len(message.value or b""))
                    return
                raise
        acks.sent(offset)
        self.sent += 1

    def _delivered(self, acks: PartitionAcks, epoch: int, offset: int, error: Optional[KafkaError],
                   _message: Any) -> None:
        """librdkafka's delivery report (served by poll/flush, on this thread)."""
        if epoch != acks.epoch:
            return   # sent before a rewind: it is being sent again
        if error is None:
            acks.delivered(offset)
            self.delivered += 1
            return
        tp = next((tp for tp, a in self._acks.items() if a is acks), None)
        if tp is None:
            return   # the partition was revoked meanwhile
        if error.code() in _TOO_LARGE:
            self._stop_partition(tp, acks, offset, error.str(), None)
            return
        if not acks.stopped and tp not in self._rewinds:
            logger.warning(f"Kafka did not take {tp.topic}[{tp.partition}] offset {offset} ({error.str()}): "
                           f"sending that partition again from offset {acks.commit_point}")
            self._rewinds.add(tp)

    def _stop_partition(self, tp: TopicPartition, acks: PartitionAcks, offset: int, why: str,
                        size: Optional[int]) -> None:
        if acks.stopped:
            return
        sized = f" ({size} bytes)" if size is not None else ""
        text = (f"Kafka refuses the record at offset {offset}{sized}: {why}; partition {tp.partition} of "
                f"{tp.topic!r} stopped there (nothing skipped: raise the broker's message.max.bytes and "
                f"the bridge's -X message.max.bytes, then restart the bridge)")
        acks.stop(offset, text)
        logger.error(f"to Kafka: {tp.topic}[{tp.partition}]: {text}")

    def _rewind(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        for tp in self._rewinds:
            acks = self._acks.get(tp)
            if acks is not None and tp in consumer.assignment():
                self.resent += acks.pending
                consumer.seek(tp, acks.rewind())
        self._rewinds.clear()

    # ---- commits ----

    def commit(self, only: Optional[Set[TopicPartition]] = None) -> None:
        """Commit, per partition, the offset before which Kafka has everything."""
        consumer = self._consumer
        if consumer is None:
            return
        offsets = {tp: acks.commit_point for tp, acks in list(self._acks.items())
                   if (only is None or tp in only) and acks.commit_point != acks.committed}
        if not offsets:
            return
        request: Dict[PartitionLike, int] = {tp: offset for tp, offset in offsets.items()}
        try:
            consumer.commit(request)
        except CommitFailed as e:
            # A rebalance moved partitions (this member's next poll syncs): their new owner
            # starts from the last commit, so the records since are sent twice, never lost.
            logger.info(f"to Kafka: commit refused ({e}); the partitions' new owner sends from the last commit")
            return
        except SupervisorUnavailable as e:
            logger.warning(f"to Kafka: cannot commit now ({e}); will again")
            return
        for tp, offset in offsets.items():
            self._acks[tp].committed = offset

    def _on_revoke(self, partitions: Set[TopicPartition]) -> None:
        """Before partitions go to another member: deliver what is in flight and commit."""
        self._producer.flush(10.0)
        self.commit(only=partitions)
        for tp in partitions:
            self._acks.pop(tp, None)
            self._rewinds.discard(tp)

    # ---- stop ----

    def finish(self, timeout: float) -> None:
        """Deliver what is in flight (up to timeout seconds), commit it, leave the group."""
        try:
            left = self._producer.flush(timeout)
            self.commit()
            if left:
                logger.warning(f"to Kafka: {left} records not acknowledged by Kafka within {timeout:g}s of the "
                               f"stop: not committed, they are sent again at the next start")
        finally:
            if self._consumer is not None:
                self._consumer.close()

    # ---- what it reports ----

    def status(self) -> Dict[str, Any]:
        rows: List[Dict[str, Any]] = []
        for tp, acks in sorted(list(self._acks.items())):
            route = self._routes.get(tp.topic)
            rows.append({"topic": tp.topic, "partition": tp.partition,
                         "kafka_topic": route.kafka_topic if route else None,
                         "in_flight": acks.pending, "commit_point": acks.commit_point,
                         "committed": acks.committed, "error": acks.error, "error_offset": acks.error_offset})
        return {"routes": [{"topic": r.topic, "kafka_topic": r.kafka_topic, "partitions": r.partitions,
                            "kafka_partitions": r.kafka_partitions} for r in self._routes.values()],
                "partitions": rows, "sent": self.sent, "delivered": self.delivered, "looped": self.looped,
                "resent": self.resent}
