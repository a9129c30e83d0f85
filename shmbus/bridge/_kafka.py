"""The Kafka side of a bridge: its librdkafka clients with the properties the bridge's
guarantees need, the broker's reachability as one log line per change, and topic
metadata (partition counts, creating what is missing).

librdkafka retries connections by itself and logs every failed attempt; a bridge left
for an hour without its broker would write thousands of lines. Its log goes through a
filter that keeps configuration warnings and drops the connection chatter, which
BrokerState sums up instead: "unreachable" once, "connected" once when it is back."""
import logging
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from .._errors import BridgeConfigError

logger = logging.getLogger("shmbus.bridge")
_librdkafka_logger = logging.getLogger("shmbus.bridge.librdkafka")

# Properties the bridge's guarantees rest on: refused if the user sets them otherwise.
PRODUCER_REQUIRED = {"enable.idempotence": "true", "acks": "all"}
CONSUMER_REQUIRED = {"enable.auto.commit": "false"}
# Defaults the user may change with -X.
PRODUCER_DEFAULTS = {
    # Java's partitioner (murmur2), as shmbus's: keys land where a Java client puts them.
    # Keyless records are spread at random; keyed ones the bridge places itself.
    "partitioner": "murmur2_random",
    # Never give up on a record: the shmbus side keeps it, and Kafka gets it when it returns.
    "message.timeout.ms": "0",
    "linger.ms": "5",
}
CONSUMER_DEFAULTS = {
    "auto.offset.reset": "earliest",
    # librdkafka's default is Java's 45 s: a restarted bridge would wait that long for
    # its dead self to leave the group. 10 s is the broker's usual minimum plus room.
    "session.timeout.ms": "10000",
    "enable.partition.eof": "false",
}
# Values of enable.idempotence / enable.auto.commit that mean the same as ours.
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}
_SAME = {"true": _TRUE, "false": _FALSE, "all": {"all", "-1"}}
# librdkafka's log facilities that are connection chatter (BrokerState says it once).
_CHATTER = {"FAIL", "BROKERFAIL", "ERROR", "REQTMOUT", "RETRY", "COORDERR", "FETCHERR", "SESSTMOUT",
            "MAXPOLL", "HEARTBEAT", "CONFWARN_IGNORED"}
# Errors that say the broker cannot be reached (rather than refusing something).
UNREACHABLE = {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE,
               KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT, KafkaError.NETWORK_EXCEPTION}


class _ChatterFilter(logging.Filter):
    """librdkafka logs as logger.log(level, '%s [%s] %s', facility, client, text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        facility = args[0] if isinstance(args, tuple) and args else ""
        if facility == "CONFWARN" and isinstance(args, tuple) and "will be ignored" in str(args[-1]):
            return False   # a consumer property given to the producer too: expected with -X
        return facility not in _CHATTER


_librdkafka_logger.addFilter(_ChatterFilter())


class BrokerState:
    """Whether the Kafka cluster answers, as this bridge's clients see it; one log
    line per change. Thread-safe (both directions and the status thread report here)."""

    def __init__(self, servers: str):
        self.servers = servers
        self.connected: Optional[bool] = None   # None: not known yet
        self.reason = ""
        # A client said it lost the broker: librdkafka hands its errors over only at the next
        # poll, maybe long after (and after the broker came back), so the bridge asks the
        # cluster itself before it says so (Bridge._probe).
        self.suspect: Optional[str] = None
        self.since = time.time()
        self._lock = threading.Lock()

    def up(self) -> None:
        """The cluster answered a metadata request just now. Only that says so: a delivery
        report or a commit may be served long after it happened."""
        self.suspect = None
        if self.connected is True:
            return
        with self._lock:
            if self.connected is True:
                return
            was_down = self.connected is False
            self.connected, self.reason, self.since = True, "", time.time()
        if was_down:
            logger.info(f"Kafka at {self.servers}: reachable again; delivering what waited")
        else:
            logger.info(f"Kafka at {self.servers}: connected")

    def down(self, reason: str) -> None:
        with self._lock:
            if self.connected is False:
                return
            self.connected, self.reason, self.since = False, reason, time.time()
        logger.warning(f"Kafka at {self.servers}: unreachable ({reason}); retrying with backoff, "
                       f"records wait in shmbus")

    def on_error(self, error: KafkaError) -> None:
        """librdkafka's error_cb: errors of the client as a whole, not of one record."""
        if error.code() in UNREACHABLE:
            if self.connected is not False:
                self.suspect = error.str()
        elif error.fatal():
            logger.error(f"Kafka client error (fatal): {error.str()}")
        else:
            logger.warning(f"Kafka client error: {error.str()}")


def _conflicts(props: Mapping[str, str], required: Mapping[str, str], why: str) -> None:
    for key, value in required.items():
        given = props.get(key)
        if key == "acks" and given is None:
            given = props.get("request.required.acks")
        if given is not None and str(given).strip().lower() not in _SAME.get(value, {value}):
            raise BridgeConfigError(f"-X {key}={given} is refused: the bridge needs {key}={value} ({why})")


def producer_config(props: Mapping[str, str], state: BrokerState,
                    on_delivery: Optional[Callable[..., None]] = None) -> Dict[str, Any]:
    _conflicts(props, PRODUCER_REQUIRED, "an idempotent producer, acknowledged by every in-sync "
                                         "replica, is what lets it commit shmbus offsets")
    config: Dict[str, Any] = dict(PRODUCER_DEFAULTS)
    config.update(props)
    config.update(PRODUCER_REQUIRED)
    config.pop("request.required.acks", None)
    config.update({"error_cb": state.on_error, "logger": _librdkafka_logger})
    if on_delivery is not None:
        # One callback for every record, set once: a callback per produce() costs a third more.
        config["on_delivery"] = on_delivery
    return config


def consumer_config(props: Mapping[str, str], group: str, state: BrokerState) -> Dict[str, Any]:
    _conflicts(props, CONSUMER_REQUIRED, "it commits Kafka offsets itself, once the records are on disk")
    if "group.id" in props and props["group.id"] != group:
        raise BridgeConfigError(f"-X group.id is refused: the bridge's Kafka consumer group is {group!r} "
                                f"(set by --name)")
    config: Dict[str, Any] = dict(CONSUMER_DEFAULTS)
    config.update(props)
    if "heartbeat.interval.ms" not in props:
        # A session shorter than librdkafka's 3 s heartbeat would expire between heartbeats.
        config["heartbeat.interval.ms"] = str(max(100, min(3000, _int(config["session.timeout.ms"]) // 4)))
    config.update(CONSUMER_REQUIRED)
    config.update({"group.id": group, "error_cb": state.on_error, "logger": _librdkafka_logger})
    return config


def _int(text: Any) -> int:
    try:
        return int(str(text))
    except ValueError:
        raise BridgeConfigError(f"session.timeout.ms must be a number of milliseconds, not {text!r}") from None


def admin_config(props: Mapping[str, str], state: BrokerState) -> Dict[str, Any]:
    config: Dict[str, Any] = dict(props)
    config.update({"error_cb": state.on_error, "logger": _librdkafka_logger})
    return config


def make_client(kind: Callable[[Dict[str, Any]], Any], config: Dict[str, Any]) -> Any:
    """A librdkafka client; a property it refuses is one BridgeConfigError line."""
    try:
        return kind(config)
    except KafkaException as e:
        error = e.args[0]
        text = error.str() if isinstance(error, KafkaError) else str(e)
        raise BridgeConfigError(f"Kafka configuration: {text}") from None
    except (TypeError, ValueError) as e:
        raise BridgeConfigError(f"Kafka configuration: {e}") from None


def new_producer(props: Mapping[str, str], state: BrokerState,
                 on_delivery: Optional[Callable[..., None]] = None) -> Producer:
    producer: Producer = make_client(Producer, producer_config(props, state, on_delivery))
    return producer


def new_consumer(props: Mapping[str, str], group: str, state: BrokerState) -> Consumer:
    consumer: Consumer = make_client(Consumer, consumer_config(props, group, state))
    return consumer


def new_admin(props: Mapping[str, str], state: BrokerState) -> AdminClient:
    # The admin client takes only general properties: a producer or consumer one would be
    # warned about; they were checked by the clients that use them.
    general = {k: v for k, v in props.items() if k not in PRODUCER_DEFAULTS and k not in CONSUMER_DEFAULTS}
    admin: AdminClient = make_client(AdminClient, admin_config(general, state))
    return admin


class KafkaTopics:
    """Topic metadata through the admin client (it asks for every topic, which never
    creates one: a metadata request naming a missing topic may, on brokers that
    auto-create)."""

    def __init__(self, admin: AdminClient, state: BrokerState):
        self.admin = admin
        self.state = state

    def partition_counts(self, timeout: float = 2.0) -> Dict[str, int]:
        """{topic: partitions} of the cluster; KafkaException if it does not answer."""
        metadata = self.admin.list_topics(timeout=timeout)
        self.state.up()
        return {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None}

    def create(self, wanted: Mapping[str, int], timeout: float = 10.0) -> List[str]:
        """Create the topics {name: partitions} (replication: the broker's default); those that
        exist meanwhile are fine. Returns the names created."""
        if not wanted:
            return []
        futures = self.admin.create_topics([NewTopic(name, num_partitions=count, replication_factor=-1)
                                            for name, count in wanted.items()], request_timeout=timeout)
        created = []
        for name, future in futures.items():
            try:
                future.result(timeout)
                created.append(name)
            except KafkaException as e:
                error = e.args[0]
                if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue
                raise
        return created


def retry_until(what: str, attempt: Callable[[], Any], state: BrokerState, stopping: threading.Event,
                first_delay: float = 0.5, max_delay: float = 5.0) -> Any:
    """attempt() until it succeeds or the bridge stops (None then), backing off while the
    broker does not answer; BrokerState logs the outage once."""
    delay = first_delay
    while not stopping.is_set():
        try:
            return attempt()
        except KafkaException as e:
            error = e.args[0]
            if not isinstance(error, KafkaError) or (error.code() not in UNREACHABLE and not error.retriable()):
                raise
            state.down(f"{what}: {error.str()}")
        stopping.wait(delay)
        delay = min(delay * 2, max_delay)
    return None


def error_text(error: Any) -> str:
    return error.str() if isinstance(error, KafkaError) else str(error)


def names(topics: Iterable[str]) -> str:
    return ", ".join(repr(t) for t in topics)
