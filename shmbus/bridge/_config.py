"""What a bridge is told: its name, the topic maps each way, and the Kafka (librdkafka)
properties, from arguments, -X options and a TOML file. Every check here fails with one
BridgeConfigError line that names what is wrong; librdkafka's own property check comes
when the clients are made (_kafka.py)."""
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

from .._errors import BridgeConfigError, InvalidName
from .._names import validate_name

if sys.version_info >= (3, 11):
    import tomllib
else:   # the kafka extra installs it there
    import tomli as tomllib

DEFAULT_NAME = "bridge"
# Kafka's own port, and what a bare HOST means.
DEFAULT_PORT = 9092
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(\d{1,5}))?$")
_TOML_KEYS = {"name", "kafka", "bootstrap_servers", "to_kafka", "from_kafka"}


def group_id(name: str) -> str:
    """The shmbus consumer group (to Kafka) and the Kafka consumer group (from Kafka) of a
    bridge: the same name on both sides, so an operator finds it in either's tools."""
    return f"shmbus-bridge-{name}"


@dataclass(frozen=True)
class BridgeConfig:
    """Everything one bridge needs, checked.

    name        the bridge's name (Kafka's topic-name rule): its groups are
                shmbus-bridge-<name> on both sides, and its loop-guard header carries it.
    kafka       librdkafka properties for its clients; bootstrap.servers is required.
    to_kafka    shmbus topic -> Kafka topic.
    from_kafka  Kafka topic -> shmbus topic.
    """

    kafka: Dict[str, str]
    to_kafka: Dict[str, str] = field(default_factory=dict)
    from_kafka: Dict[str, str] = field(default_factory=dict)
    name: str = DEFAULT_NAME

    def __post_init__(self) -> None:
        try:
            validate_name(self.name, "bridge")
        except InvalidName as e:
            raise BridgeConfigError(str(e)) from None
        if not isinstance(self.kafka, Mapping):
            raise BridgeConfigError("kafka must be a table of librdkafka properties")
        servers = self.kafka.get("bootstrap.servers")
        if not servers:
            raise BridgeConfigError("no Kafka broker given: use --kafka HOST:PORT (or bootstrap.servers)")
        check_servers(str(servers))
        for mapping, what in ((self.to_kafka, "to_kafka"), (self.from_kafka, "from_kafka")):
            if not isinstance(mapping, Mapping):
                raise BridgeConfigError(f"{what} must map topic names to topic names")
            for source, target in mapping.items():
                _check_topic(source, what)
                _check_topic(target, what)
        if not self.to_kafka and not self.from_kafka:
            raise BridgeConfigError("nothing to bridge: give --to-kafka TOPIC and/or --from-kafka TOPIC")
        targets = list(self.from_kafka.values())
        for target in set(targets):
            if targets.count(target) > 1:
                raise BridgeConfigError(f"--from-kafka maps two Kafka topics onto shmbus topic {target!r}: "
                                        f"their partitions and offsets would mix")
        kafka_targets = list(self.to_kafka.values())
        for target in set(kafka_targets):
            if kafka_targets.count(target) > 1:
                raise BridgeConfigError(f"--to-kafka maps two shmbus topics onto Kafka topic {target!r}")

    @property
    def group(self) -> str:
        return group_id(self.name)

    @property
    def servers(self) -> str:
        return str(self.kafka["bootstrap.servers"])

    @classmethod
    def build(cls, kafka: Optional[str] = None, to_kafka: Iterable[str] = (), from_kafka: Iterable[str] = (),
              name: Optional[str] = None, properties: Iterable[str] = (),
              config_file: Optional[str] = None) -> "BridgeConfig":
        """The command line's view: --kafka, --to-kafka, --from-kafka, --name and -X on top
        of a --config file (the command line wins; topic maps add up)."""
        base: Dict[str, Any] = load_toml(config_file) if config_file else {}
        props = dict(base.get("kafka", {}))
        for item in properties:
            key, value = parse_property(item)
            props[key] = value
        if kafka:
            props["bootstrap.servers"] = kafka
        to = dict(base.get("to_kafka", {}))
        to.update(parse_topic_map(to_kafka, "--to-kafka"))
        back = dict(base.get("from_kafka", {}))
        back.update(parse_topic_map(from_kafka, "--from-kafka"))
        return cls(kafka=props, to_kafka=to, from_kafka=back, name=name or base.get("name") or DEFAULT_NAME)


def check_servers(servers: str) -> None:
    """bootstrap.servers: HOST[:PORT] entries, comma-separated (a scheme such as
    PLAINTEXT:// is librdkafka's business, and allowed)."""
    for entry in servers.split(","):
        address = re.sub(r"^[A-Za-z_]+://", "", entry.strip())
        match = _HOST_PORT.match(address)
        port = match.group(2) if match else None
        if not match or (port is not None and not 0 < int(port) < 65536):
            raise BridgeConfigError(f"bad Kafka address {entry.strip()!r}: use HOST:PORT (for example "
                                    f"127.0.0.1:{DEFAULT_PORT}), several separated by commas")


def parse_property(item: str) -> Tuple[str, str]:
    """-X property=value."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise BridgeConfigError(f"bad -X {item!r}: use -X property=value (a librdkafka property, "
                                f"for example -X compression.type=lz4)")
    return key.strip(), value.strip()


def parse_topic_map(items: Iterable[str], option: str) -> Dict[str, str]:
    """TOPIC or TOPIC=OTHER_TOPIC, each side a valid topic name."""
    mapping: Dict[str, str] = {}
    for item in items:
        source, sep, target = item.partition("=")
        target = target if sep else source
        if not source or not target or "=" in target:
            raise BridgeConfigError(f"bad {option} {item!r}: use TOPIC or TOPIC=OTHER_TOPIC")
        _check_topic(source, option)
        _check_topic(target, option)
        if source in mapping and mapping[source] != target:
            raise BridgeConfigError(f"{option} maps topic {source!r} twice ({mapping[source]!r} and {target!r})")
        mapping[source] = target
    return mapping


def _check_topic(name: object, what: str) -> None:
    try:
        validate_name(name, "topic")
    except InvalidName as e:
        raise BridgeConfigError(f"{what}: {e}") from None


def load_toml(path: str) -> Dict[str, Any]:
    """A bridge's TOML file:

        name = "edge1"
        [kafka]
        "bootstrap.servers" = "kafka1:9092,kafka2:9092"
        "compression.type" = "lz4"
        [to_kafka]
        imu = "edge1.imu"
        [from_kafka]
        commands = "commands"

    (to_kafka and from_kafka may also be lists of "TOPIC" or "TOPIC=OTHER" strings)."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise BridgeConfigError(f"cannot read {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise BridgeConfigError(f"{path} is not valid TOML: {e}") from None
    unknown = set(data) - _TOML_KEYS
    if unknown:
        raise BridgeConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} (known: "
                                f"{', '.join(sorted(_TOML_KEYS))})")
    kafka = data.get("kafka", {})
    if not isinstance(kafka, dict) or any(isinstance(v, (dict, list)) for v in kafka.values()):
        raise BridgeConfigError(f"{path}: [kafka] must be a table of property = value")
    props = {str(k): _property_text(v) for k, v in kafka.items()}
    if "bootstrap_servers" in data:
        props["bootstrap.servers"] = str(data["bootstrap_servers"])
    result: Dict[str, Any] = {"kafka": props}
    for key, option in (("to_kafka", "to_kafka"), ("from_kafka", "from_kafka")):
        value = data.get(key, {})
        if isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise BridgeConfigError(f"{path}: {key} must be a list of \"TOPIC\" or \"TOPIC=OTHER\" strings")
            result[key] = parse_topic_map(value, f"{path}: {option}")
        elif isinstance(value, dict):
            result[key] = parse_topic_map([f"{k}={v}" for k, v in value.items()], f"{path}: {option}")
        else:
            raise BridgeConfigError(f"{path}: {key} must be a table (topic = \"other topic\") or a list")
    if "name" in data:
        if not isinstance(data["name"], str):
            raise BridgeConfigError(f"{path}: name must be a string")
        result["name"] = data["name"]
    return result


def _property_text(value: Any) -> str:
    """librdkafka takes every property as a string; TOML's true and 5 mean 'true' and '5'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
