"""shmbus -> Kafka: a member of the shmbus consumer group shmbus-bridge-<name> that hands
every record to an idempotent Kafka producer (acks=all), and commits a shmbus offset only
once Kafka has acknowledged every record before it (PartitionAcks): a bridge killed at any
point sends again from the last commit, never skipping one.

Partitions: when the Kafka topic has as many partitions as the shmbus topic, a record goes
to the same partition number; otherwise keyed records go where Kafka's murmur2 puts them
(shmbus's own partitioner, bit for bit Java's), keyless ones at random. A record Kafka can
never take (larger than message.max.bytes) stops its partition, with the reason in the log
and in `shmbus stats`: the bridge neither skips it nor sends what follows it."""
import logging
import random
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Deque, Dict, List, Optional, Set, Tuple, Union

from confluent_kafka import KafkaError, KafkaException, Producer

from .._errors import CommitFailed, ShmbusError, SupervisorUnavailable, TopicNotFound
from .._route import murmur2_partition
from .._types import Message, TopicPartition
from ._acks import PartitionAcks
from ._config import BridgeConfig
from ._kafka import BrokerState, KafkaTopics, error_text, new_producer, retry_until

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


class _Partition(PartitionAcks):
    """One shmbus partition's acknowledgements, and which partition it is."""

    __slots__ = ("tp",)

    def __init__(self, tp: TopicPartition, start: int):
        super().__init__(start)
        self.tp = tp


class _KafkaQueue:
    """One Kafka partition's records in flight, in the order they were produced:
    (the shmbus partition's acks, its epoch then, the shmbus offset)."""

    __slots__ = ("entries", "last_offset")

    def __init__(self) -> None:
        self.entries: Deque[Tuple[_Partition, int, int]] = deque()
        self.last_offset = -1


class ToKafka:
    """One direction of a Bridge, run on a thread of its own."""

    def __init__(self, bus: "Bus", config: BridgeConfig, topics: KafkaTopics, state: BrokerState,
                 stopping: threading.Event, marker: Tuple[str, bytes]):
        self._bus = bus
        self._config = config
        self._producer: Producer = new_producer(config.kafka, state, on_delivery=self._delivered)
        self._topics = topics
        self._state = state
        self._stopping = stopping
        self._marker = marker
        self._routes: Dict[str, _Route] = {}
        self._acks: Dict[TopicPartition, _Partition] = {}
        self._queues: Dict[Tuple[str, int], _KafkaQueue] = {}
        self._realign = False
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
            messages = consumer.poll_many(READ_BATCH, timeout=0.05)
            if messages:
                self._send_all(messages)
            producer.poll(0)
            if self._realign:
                self._start_again()
            if self._rewinds:
                self._rewind()
            now = time.monotonic()
            if now >= next_commit:
                self.commit()
                next_commit = now + COMMIT_INTERVAL

    def _send_all(self, messages: List[Message]) -> None:
        """Hand a batch from shmbus to the Kafka producer, in order. The per-partition
        bookkeeping is done once per run of records of one partition (poll_many returns a
        few such runs), and a record without headers of its own shares one header list."""
        producer = self._producer
        produce = producer.produce
        marker = self._marker
        marker_only = [marker]
        topic = ""
        partition = -1
        acks: Optional[_Partition] = None
        stopped = True
        sent = looped = 0
        route: Optional[_Route] = None
        kafka_topic = ""
        same = True
        target = -1
        in_flight_append: Any = None
        queue_append: Any = None
        epoch = 0
        for message in messages:
            if message.partition != partition or message.topic != topic:
                topic, partition = message.topic, message.partition
                tp = TopicPartition(topic, partition)
                acks = self._acks.get(tp)
                if acks is None:
                    acks = self._acks[tp] = _Partition(tp, message.offset)
                stopped = acks.error is not None
                route = self._routes[topic]
                kafka_topic = route.kafka_topic
                same = route.same_partitions
                target = partition if same else self._keyless_partition(route)
                in_flight_append = acks.in_flight.append
                queue_append = self._queue(kafka_topic, target).entries.append if same else None
                epoch = acks.epoch
            if stopped:
                continue   # stopped at a record Kafka cannot take: nothing after it goes
            assert acks is not None and route is not None
            offset = message.offset
            headers = message.headers
            if headers:
                if marker in headers:
                    acks.passed(offset)   # it came from Kafka through this bridge: not back
                    looped += 1
                    continue
                kafka_headers: List[Tuple[str, Union[str, bytes, None]]] = list(headers)
                kafka_headers.append(marker)
            else:
                kafka_headers = marker_only   # type: ignore[assignment]
            if same:
                kafka_partition = target
            else:
                key = message.key
                kafka_partition = murmur2_partition(key, route.kafka_partitions) if key is not None else target
                queue_append = self._queue(kafka_topic, kafka_partition).entries.append
            try:
                produce(kafka_topic, message.value, message.key, kafka_partition,
                        timestamp=message.timestamp_ns // 1_000_000, headers=kafka_headers)
            except BufferError:
                if not self._produce_when_room(kafka_topic, message, kafka_partition, kafka_headers):
                    break   # stopping: this record and those after it go at the next start
            except KafkaException as e:
                error = e.args[0]
                if isinstance(error, KafkaError) and error.code() in _TOO_LARGE:
                    in_flight_append(offset)
                    self._stop_partition(acks.tp, acks, offset, error_text(error), len(message.value or b""))
                    stopped = True
                    continue
                raise
            in_flight_append(offset)
            queue_append((acks, epoch, offset))
            sent += 1
        self.sent += sent
        self.looped += looped

    def _produce_when_room(self, kafka_topic: str, message: Message, partition: int,
                           headers: List[Tuple[str, Union[str, bytes, None]]]) -> bool:
        """Kafka takes records slower than shmbus hands them over, or not at all now: wait for
        room in the producer's queue (the shmbus side keeps everything meanwhile). False if
        the bridge stops first."""
        producer = self._producer
        while not self._stopping.is_set():
            producer.poll(0.05)
            try:
                producer.produce(kafka_topic, message.value, message.key, partition,
                                 timestamp=message.timestamp_ns // 1_000_000, headers=headers)
                return True
            except BufferError:
                pass
        return False

    def _keyless_partition(self, route: _Route) -> int:
        """Where keyless records of one batch run go when the partition counts differ: a
        random partition per run (Kafka's sticky partitioner, roughly)."""
        return random.randrange(route.kafka_partitions)

    def _queue(self, kafka_topic: str, partition: int) -> "_KafkaQueue":
        key = (kafka_topic, partition)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _KafkaQueue()
        return queue

    def _delivered(self, error: Optional[KafkaError], message: Any) -> None:
        """librdkafka's delivery report, one per record (served by poll/flush, on this thread).
        Reports come in the order of production per Kafka partition (librdkafka's guarantee,
        which the idempotent producer keeps across retries), so each Kafka partition's queue
        says which shmbus record a report is for. That the offsets Kafka gave grow is checked:
        should they not, everything in flight is sent again rather than trusted."""
        queue = self._queues.get((message.topic(), message.partition()))
        if queue is None or not queue.entries:
            return   # from before a restart of the queues
        acks, epoch, offset = queue.entries.popleft()
        if error is None:
            kafka_offset = message.offset()
            if kafka_offset is not None and kafka_offset <= queue.last_offset:
                if not self._realign:
                    logger.error(f"to Kafka: delivery reports of {message.topic()}[{message.partition()}] out of "
                                 f"order (offset {kafka_offset} after {queue.last_offset}): sending everything in "
                                 f"flight again")
                    self._realign = True
            elif kafka_offset is not None:
                queue.last_offset = kafka_offset
            if epoch == acks.epoch:
                acks.delivered(offset)
            self.delivered += 1
            return
        if epoch != acks.epoch or self._acks.get(acks.tp) is not acks:
            return   # sent before a rewind, or the partition was revoked meanwhile
        if error.code() in _TOO_LARGE:
            self._stop_partition(acks.tp, acks, offset, error.str(), None)
            return
        if not acks.stopped and acks.tp not in self._rewinds:
            logger.warning(f"Kafka did not take {acks.tp.topic}[{acks.tp.partition}] offset {offset} "
                           f"({error.str()}): sending that partition again from offset {acks.commit_point}")
            self._rewinds.add(acks.tp)

    def _start_again(self) -> None:
        """Delivery reports could not be matched to records: wait for what is in flight (its
        reports are ignored), then send every partition again from its commit point."""
        for acks in self._acks.values():
            acks.epoch += 1
        self._producer.flush(30.0)
        self._queues.clear()
        self._rewinds.update(self._acks)
        self._realign = False

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

    def lag(self) -> List[Dict[str, Any]]:
        """The supervisor's lag rows of this direction (Bridge.lag): per partition of every
        bridged topic, its end offset minus the offset before which Kafka has everything (the
        bridge's commit point, or the group's commit for a partition it has not read from)."""
        rows: List[Dict[str, Any]] = []
        if not self._routes:
            return rows
        try:
            group = {(p["topic"], p["partition"]): p["committed"] for p in
                     self._bus.call("describe_group", group=self._config.group)["partitions"]}
        except ShmbusError:
            group = {}   # not joined yet
        for route in list(self._routes.values()):
            try:
                partitions = self._bus.describe_topic(route.topic).partitions
            except ShmbusError:
                continue
            for p in partitions:
                tp = TopicPartition(route.topic, p.partition)
                acks = self._acks.get(tp)
                committed = group.get(tp)
                done = [o for o in (committed, acks.commit_point if acks is not None else None) if o is not None]
                start = max(done) if done else p.earliest_offset
                rows.append({"direction": "to_kafka", "topic": route.topic, "partition": p.partition,
                             "records": max(0, p.end_offset - start), "kafka_topic": route.kafka_topic,
                             "committed": committed, "error": acks.error if acks is not None else None})
        return rows

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
