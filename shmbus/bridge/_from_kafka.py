"""Kafka -> shmbus: a member of the Kafka consumer group shmbus-bridge-<name> (auto-commit
off) that appends every record to shmbus with its key, headers, timestamp and partition
number, and commits a Kafka offset only once the shmbus records before it are flushed
(fsynced on disk, Producer.flush): a bridge killed at any point appends again from the
last commit, never skipping one.

A shmbus topic that is missing is created with the Kafka topic's partition count; one
that exists with another count gets records by key (shmbus's murmur2, as Kafka's),
with one warning. A record shmbus cannot take (larger than half the ring) stops its
partition (it is paused in Kafka), with the reason in the log and in `shmbus stats`."""
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set, Tuple

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, KafkaException
from confluent_kafka import Message as KafkaMessage
from confluent_kafka import TopicPartition as KafkaPartition

from .._codec import encode_headers
from .._errors import BufferFull, MessageTooLarge, RingDeleted, TopicExists, Timeout
from ._config import BridgeConfig
from ._kafka import UNREACHABLE, BrokerState, KafkaTopics, names, retry_until

if TYPE_CHECKING:
    from .._bus import Bus
    from .._producer import Producer

logger = logging.getLogger("shmbus.bridge")

# Each commit waits for the archiver's fsync of what was appended since the last one.
COMMIT_INTERVAL = 0.2
READ_BATCH = 2000
FLUSH_TIMEOUT = 30.0
# How long the loop's commit lets the disk take before it waits for it (commit()).
FLUSH_WAIT = 2.0
# How often the lag (Kafka's high watermark minus the commit) is worked out.
LAG_INTERVAL = 1.0

Key = Tuple[str, int]


def _header(item: Any) -> Tuple[str, bytes]:
    """A Kafka header as shmbus keeps it: a value is bytes (a null value is empty)."""
    name, value = item
    if value is None:
        return str(name), b""
    return str(name), value.encode() if isinstance(value, str) else bytes(value)


class _Route:
    __slots__ = ("kafka_topic", "topic", "kafka_partitions", "partitions")

    def __init__(self, kafka_topic: str, topic: str, kafka_partitions: int, partitions: int):
        self.kafka_topic = kafka_topic
        self.topic = topic
        self.kafka_partitions = kafka_partitions
        self.partitions = partitions

    @property
    def same_partitions(self) -> bool:
        return self.partitions == self.kafka_partitions


class FromKafka:
    """One direction of a Bridge, run on a thread of its own."""

    def __init__(self, bus: "Bus", config: BridgeConfig, consumer: Consumer, topics: KafkaTopics,
                 state: BrokerState, stopping: threading.Event, marker: Tuple[str, bytes]):
        self._bus = bus
        self._config = config
        self._consumer = consumer
        self._topics = topics
        self._state = state
        self._stopping = stopping
        self._marker = marker
        self._routes: Dict[str, _Route] = {}
        self._producer: Optional["Producer"] = None
        self._next: Dict[Key, int] = {}        # per Kafka partition: the offset after the last record appended
        self._committed: Dict[Key, int] = {}
        self._stopped: Dict[Key, Tuple[int, str]] = {}   # partitions stopped: (offset, why)
        self._commit_lock = threading.Lock()
        self._assigned: Set[Key] = set()
        self._lag: List[Dict[str, Any]] = []   # per partition, worked out by the loop
        self._next_watermark_query = 0.0
        self._marker_blob = encode_headers([marker])
        # A commit waiting for the disk: (the flush mark, the offsets, since when).
        self._pending: Optional[Tuple[Any, Dict[Key, int], float]] = None
        self._commit_failing = False
        self.appended = self.looped = 0

    # ---- start ----

    def prepare(self) -> bool:
        wanted = set(self._config.from_kafka)
        waiting_logged = False

        def existing() -> Dict[str, int]:
            return self._topics.partition_counts()

        while True:
            counts = retry_until("reading Kafka's topics", existing, self._state, self._stopping)
            if counts is None:
                return False
            if wanted <= set(counts):
                break
            if not waiting_logged:
                logger.warning(f"from Kafka: Kafka topic(s) {names(sorted(wanted - set(counts)))} do not exist "
                               f"yet: waiting for them")
                waiting_logged = True
            if self._stopping.wait(0.5):
                return False
        for kafka_topic, topic in self._config.from_kafka.items():
            count = counts[kafka_topic]
            try:
                info = self._bus.create_topic(topic, partitions=count)
                logger.info(f"created shmbus topic {topic!r} with {count} partitions")
            except TopicExists:
                info = self._bus.topic(topic)
            route = _Route(kafka_topic, topic, count, info.partitions)
            if not route.same_partitions:
                logger.warning(f"Kafka topic {kafka_topic!r} has {count} partitions, shmbus topic {topic!r} "
                               f"{info.partitions}: records go to shmbus partitions by key (murmur2), keyless "
                               f"ones sticky; partition numbers are not kept")
            self._routes[kafka_topic] = route
        self._producer = self._bus.producer()
        self._consumer.subscribe(list(self._config.from_kafka), on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_lost)
        logger.info("from Kafka: " + ", ".join(f"{r.kafka_topic} -> {r.topic}" for r in self._routes.values())
                    + f" (Kafka group {self._config.group})")
        return True

    # ---- the loop ----

    def run(self) -> None:
        consumer = self._consumer
        next_commit = time.monotonic() + COMMIT_INTERVAL
        next_lag = time.monotonic()
        while not self._stopping.is_set():
            # consume(n, timeout) waits for n records or the timeout: what is there now, or
            # else the next one to come, then what came with it.
            messages = consumer.consume(READ_BATCH, 0)
            if not messages:
                messages = consumer.consume(1, 0.05)
                if messages:
                    messages += consumer.consume(READ_BATCH - 1, 0)
            if messages:
                self._append_all(messages)
            now = time.monotonic()
            if now >= next_commit or self._pending is not None:
                self._commit_soon()
                next_commit = now + COMMIT_INTERVAL
            if now >= next_lag:
                self._lag = self._lag_rows()
                next_lag = now + LAG_INTERVAL

    def _append_all(self, messages: List[KafkaMessage]) -> None:
        """Append a batch from Kafka to shmbus, in order. The per-partition bookkeeping is
        done once per run of records of one partition (a batch holds a few such runs), and
        the headers of a record that has none of its own are encoded once for all."""
        producer = self._producer
        assert producer is not None
        send = producer._send_encoded
        marker = self._marker
        marker_only = self._marker_blob
        current: Optional[Key] = None
        stopped = False
        shm_topic = ""
        target: Optional[int] = None
        last: Optional[int] = None   # the offset of the last record of `current` done with
        appended = looped = 0
        for message in messages:
            error = message.error()
            if error is not None:
                self._on_error(error)
                continue
            kafka_topic, partition = message.topic(), message.partition()
            if current is None or kafka_topic != current[0] or partition != current[1]:
                if current is not None and last is not None:
                    self._next[current] = last + 1
                assert kafka_topic is not None and partition is not None
                current = (kafka_topic, partition)
                stopped = current in self._stopped
                route = self._routes[kafka_topic]
                shm_topic = route.topic
                target = partition if route.same_partitions else None
                last = None
            if stopped:
                continue
            offset: int = message.offset()   # type: ignore[assignment]
            raw = message.headers()
            if raw:
                headers = [_header(item) for item in raw]
                if marker in headers:
                    looped += 1   # it came from shmbus through this bridge: not back
                    last = offset
                    continue
                headers.append(marker)
                blob = encode_headers(headers)
            else:
                blob = marker_only
            kind, stamp = message.timestamp()
            timestamp_ns = stamp * 1_000_000 if kind != TIMESTAMP_NOT_AVAILABLE and stamp > 0 else -1
            value, key = message.value(), message.key()
            try:
                send(shm_topic, value, key, blob, target, timestamp_ns)
            except MessageTooLarge as e:
                self._stop_partition(current, offset, str(e))
                stopped = True
                continue
            except BufferFull as e:
                if not self._send_when_room(shm_topic, value, key, blob, target, timestamp_ns, e):
                    break   # stopping: this record and those after it come again at the next start
            last = offset
            appended += 1
        if current is not None and last is not None:
            self._next[current] = last + 1
        self.appended += appended
        self.looped += looped

    def _send_when_room(self, topic: str, value: Any, key: Any, blob: bytes, partition: Optional[int],
                        timestamp_ns: int, error: BufferFull) -> bool:
        """The shmbus ring stays full (its archiver or readers hold it): wait, keep the record.
        False if the bridge stops first."""
        logger.warning(f"from Kafka: shmbus topic {topic!r} takes nothing ({error}); waiting")
        producer = self._producer
        assert producer is not None
        while not self._stopping.is_set():
            try:
                producer._send_encoded(topic, value, key, blob, partition, timestamp_ns)
                logger.info(f"from Kafka: shmbus topic {topic!r} takes records again")
                return True
            except BufferFull:
                pass
        return False

    def _stop_partition(self, key: Key, offset: int, why: str) -> None:
        text = (f"shmbus refuses the record at offset {offset}: {why}; Kafka partition {key[1]} of {key[0]!r} "
                f"stopped there (nothing skipped: give the shmbus topic a larger ring, then restart the bridge)")
        self._stopped[key] = (offset, text)
        self._consumer.pause([KafkaPartition(key[0], key[1])])
        logger.error(f"from Kafka: {key[0]}[{key[1]}]: {text}")

    def _on_error(self, error: KafkaError) -> None:
        if error.code() in UNREACHABLE:
            self._state.on_error(error)
        elif error.code() != KafkaError._PARTITION_EOF:
            logger.warning(f"from Kafka: {error.str()}")

    # ---- commits ----

    def commit(self, only: Optional[List[Key]] = None) -> None:
        """Flush the shmbus producer (what was appended is on disk), then commit the Kafka
        offsets after it; waits for the disk. A commit that fails is tried again at the next."""
        with self._commit_lock:
            offsets = self._uncommitted(only)
            if not offsets:
                return
            producer = self._producer
            assert producer is not None
            try:
                producer.flush(FLUSH_TIMEOUT)
            except Timeout as e:
                logger.warning(f"from Kafka: shmbus did not fsync the appended records in time ({e}); "
                               f"not committing to Kafka yet")
                return
            self._commit_to_kafka(offsets)

    def _commit_soon(self) -> None:
        """The loop's commit, without waiting for the disk: ask shmbus to sync what was appended
        (offsets noted), and commit those offsets at a later turn of the loop, once the disk has
        them; meanwhile the loop goes on appending. Past FLUSH_WAIT, a plain commit() (it waits,
        and handles what a ring deleted or a supervisor restarted mean)."""
        producer = self._producer
        assert producer is not None
        if self._pending is None:
            offsets = self._uncommitted(None)
            if offsets:
                self._pending = (producer._flush_mark(), offsets, time.monotonic())
            return
        mark, offsets, since = self._pending
        try:
            synced = producer._flushed(mark)
        except RingDeleted:
            synced = False
        if synced:
            self._pending = None
            with self._commit_lock:
                self._commit_to_kafka(offsets)
        elif time.monotonic() - since > FLUSH_WAIT:
            self._pending = None
            self.commit()

    def _uncommitted(self, only: Optional[List[Key]]) -> Dict[Key, int]:
        return {k: o for k, o in list(self._next.items())
                if (only is None or k in only) and self._committed.get(k) != o}

    def _commit_to_kafka(self, offsets: Dict[Key, int]) -> None:
        offsets = {k: o for k, o in offsets.items() if k in self._assigned}   # none revoked meanwhile
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=[KafkaPartition(t, p, o) for (t, p), o in offsets.items()],
                                  asynchronous=False)
        except KafkaException as e:
            error = e.args[0]
            if isinstance(error, KafkaError) and error.code() in UNREACHABLE:
                self._state.on_error(error)
            elif not self._commit_failing:
                logger.warning(f"from Kafka: commit to Kafka failed ({e}); trying again")
            self._commit_failing = True
            return
        if self._commit_failing:
            logger.info("from Kafka: committing to Kafka again")
            self._commit_failing = False
        self._committed.update(offsets)

    def _on_assign(self, consumer: Consumer, partitions: List[KafkaPartition]) -> None:
        self._assigned.update((p.topic, p.partition) for p in partitions)
        try:   # where the group stands, for the lag before anything is read
            for tp in consumer.committed(partitions, timeout=5.0):
                if tp.offset is not None and tp.offset >= 0:
                    self._committed.setdefault((tp.topic, tp.partition), tp.offset)
        except KafkaException:
            pass
        logger.info(f"from Kafka: assigned {len(partitions)} partition(s) of {names(sorted({p.topic for p in partitions}))}")

    def _on_revoke(self, consumer: Consumer, partitions: List[KafkaPartition]) -> None:
        """Before Kafka moves partitions to another member: what was appended is committed."""
        keys = [(p.topic, p.partition) for p in partitions]
        self.commit(only=keys)
        self._forget(keys)

    def _on_lost(self, consumer: Consumer, partitions: List[KafkaPartition]) -> None:
        """Already someone else's (this member's session expired): no commit; the new owner
        appends again from the last commit."""
        self._forget([(p.topic, p.partition) for p in partitions])

    def _forget(self, keys: List[Key]) -> None:
        for key in keys:
            self._assigned.discard(key)
            self._next.pop(key, None)
            self._committed.pop(key, None)
            self._stopped.pop(key, None)

    # ---- stop ----

    def finish(self, timeout: float) -> None:
        """Commit what was appended, leave the Kafka group."""
        try:
            self.commit()
        finally:
            self._consumer.close()

    # ---- what it reports ----

    def _lag_rows(self) -> List[Dict[str, Any]]:
        """Per assigned partition: Kafka's high watermark minus the bridge's commit. Worked out
        on the loop's thread (a librdkafka consumer call from another thread can wait for the
        loop's consume), from the watermark of the last fetch; a partition not fetched from yet
        is asked for it, now and then, briefly."""
        rows = []
        now = time.monotonic()
        for key in sorted(self._assigned):
            tp = KafkaPartition(*key)
            low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high < 0 and now >= self._next_watermark_query and self._state.connected:
                try:
                    low, high = self._consumer.get_watermark_offsets(tp, timeout=0.2, cached=False)
                except KafkaException:
                    high = -1
            committed = self._committed.get(key)
            at = committed if committed is not None else self._next.get(key)
            stopped = self._stopped.get(key)
            route = self._routes.get(key[0])
            rows.append({"kafka_topic": key[0], "partition": key[1],
                         "topic": route.topic if route else None,
                         "committed": committed, "high_watermark": high if high >= 0 else None,
                         "lag": max(0, high - at) if high >= 0 and at is not None else None,
                         "error": stopped[1] if stopped else None,
                         "error_offset": stopped[0] if stopped else None})
        if now >= self._next_watermark_query:
            self._next_watermark_query = now + 5.0
        return rows

    def lag(self) -> List[Dict[str, Any]]:
        """The supervisor's lag rows of this direction (Bridge.lag); a partition whose high
        watermark is not known yet (nothing fetched) has none."""
        return [{"direction": "from_kafka", "topic": row["topic"], "partition": row["partition"],
                 "records": row["lag"], "kafka_topic": row["kafka_topic"], "committed": row["committed"],
                 "error": row["error"]}
                for row in list(self._lag) if row["lag"] is not None and row["topic"] is not None]

    def status(self) -> Dict[str, Any]:
        return {"routes": [{"kafka_topic": r.kafka_topic, "topic": r.topic, "kafka_partitions": r.kafka_partitions,
                            "partitions": r.partitions} for r in self._routes.values()],
                "partitions": list(self._lag), "appended": self.appended, "looped": self.looped}
