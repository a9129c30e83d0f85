"""The Kafka bridge: mirror shmbus topics to Apache Kafka and Kafka topics to shmbus,
at least once, with keys, headers, timestamps and partition numbers kept (README,
"Beyond one host"). Needs confluent-kafka: `pip install 'shmbus[kafka]'`.

    from shmbus.bridge import Bridge
    Bridge(bus, kafka={"bootstrap.servers": "127.0.0.1:9092"},
           to_kafka={"imu": "imu"}, from_kafka={"commands": "commands"}, name="edge1").run()
"""
from .._errors import BridgeConfigError
from ._bridge import MARKER_HEADER, Bridge
from ._config import BridgeConfig

__all__ = ["Bridge", "BridgeConfig", "BridgeConfigError", "MARKER_HEADER"]
