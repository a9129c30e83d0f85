"""What bridges report to the supervisor: their lag, for stats, top and /metrics.

The hook for `shmbus bridge` (shmbus/bridge/): a running bridge sends, every second
or so, one control request

    bus.call("bridge_report", name="edge1", lag=[
        {"direction": "to_kafka", "topic": "imu", "partition": 0, "records": 12},
        {"direction": "from_kafka", "topic": "commands", "partition": 0, "records": 0}])

where records is how many records it has taken in but not yet delivered (to_kafka:
the shmbus end offset minus what Kafka acknowledged; from_kafka: Kafka's high
watermark minus what shmbus flushed). A row may also say "kafka_topic" (the topic on the
Kafka side), "committed" (the bridge's last commit) and "error" (why the bridge stopped
that partition: a record the other side refuses; None while it runs). The supervisor
keeps the latest report of each bridge and forgets one not renewed within STALE_AFTER
seconds (a bridge that died), or at once when its last report says final (it stopped).
The figures appear as shmbus_bridge_lag_records{bridge, direction, topic, partition}
in Prometheus and as the "bridges" rows of `shmbus stats --json` and `shmbus top`.
"""
import threading
import time
from typing import Any, Dict, List, Tuple

from .._names import validate_name

STALE_AFTER = 30.0
DIRECTIONS = ("to_kafka", "from_kafka")
# What a row may carry besides its lag, and the JSON types each takes.
_OPTIONAL = {"kafka_topic": (str,), "committed": (int,), "error": (str,)}


class BridgeReports:
    def __init__(self, stale_after: float = STALE_AFTER):
        self.stale_after = stale_after
        self._lock = threading.Lock()
        self._reports: Dict[str, Tuple[float, List[Dict[str, Any]]]] = {}

    def report(self, name: str, lag: List[Dict[str, Any]], final: bool = False) -> None:
        validate_name(name, "bridge")
        if not isinstance(final, bool):
            raise TypeError("final must be true or false")
        if not isinstance(lag, list):
            raise TypeError("lag must be a list of {direction, topic, partition, records} rows")
        rows = []
        for row in lag:
            if not isinstance(row, dict) or row.get("direction") not in DIRECTIONS:
                raise ValueError(f"a lag row is {{direction: one of {DIRECTIONS}, topic, partition, records}}, "
                                 f"got {row!r}")
            topic, partition, records = row.get("topic"), row.get("partition"), row.get("records")
            if not isinstance(topic, str) or not isinstance(partition, int) or not isinstance(records, int) \
                    or isinstance(partition, bool) or isinstance(records, bool):
                raise TypeError(f"a lag row's topic is a str, partition and records ints: got {row!r}")
            entry = {"bridge": name, "direction": row["direction"], "topic": topic,
                     "partition": partition, "records": records}
            for key, kinds in _OPTIONAL.items():
                value = row.get(key)
                if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
                    raise TypeError(f"a lag row's {key} is a {kinds[0].__name__} or null: got {row!r}")
                if key in row:
                    entry[key] = value
            rows.append(entry)
        with self._lock:
            if final:
                self._reports.pop(name, None)
            else:
                self._reports[name] = (time.monotonic(), rows)

    def rows(self) -> List[Dict[str, Any]]:
        """Every live bridge's lag rows; stale reports are dropped."""
        now = time.monotonic()
        with self._lock:
            for name in [n for n, (at, _) in self._reports.items() if now - at > self.stale_after]:
                del self._reports[name]
            return [row for name in sorted(self._reports) for row in self._reports[name][1]]
