"""What the running Kafka bridges last reported (shmbus.bridge sends its state once a
second): their Kafka side's lag, stopped partitions and broker state, for `shmbus stats`
and `shmbus top`. Kept in memory only: a bridge reports again within a second of a
supervisor restart. A bridge whose control connection closes (it stopped, or died) is
kept with its last report, marked not running, so a dead bridge is seen, not forgotten."""
import functools
import json
import time
from typing import Any, Dict, List, Tuple

from .._names import validate_name

# A report is small (a row per partition); one far larger is a client gone wrong.
MAX_REPORT_BYTES = 256 << 10
MAX_BRIDGES = 1024


class BridgeBoard:
    def __init__(self, lock):
        self.lock = lock
        self._bridges: Dict[Tuple[str, int], Dict[str, Any]] = {}

    def handler(self, op, connection):
        method = getattr(self, f"op_{op}", None)
        return None if method is None else functools.partial(method, connection)

    def op_bridge_report(self, connection, name, report, final=False):
        validate_name(name, "bridge")
        if not isinstance(final, bool):
            raise TypeError("final must be true or false")
        if not isinstance(report, dict):
            raise TypeError("a bridge report is a JSON object")
        if len(json.dumps(report)) > MAX_REPORT_BYTES:
            raise ValueError(f"a bridge report is at most {MAX_REPORT_BYTES} bytes")
        key = (name, connection)   # two bridges of one name (sharing the work) are two entries
        with self.lock:
            # A bridge of this name that stopped is replaced by the one reporting now.
            for old in [k for k, b in self._bridges.items() if k[0] == name and k != key and not b["running"]]:
                del self._bridges[old]
            if key not in self._bridges and len(self._bridges) >= MAX_BRIDGES:
                self._forget_stopped()
                if len(self._bridges) >= MAX_BRIDGES:
                    raise ValueError(f"at most {MAX_BRIDGES} bridges are tracked")
            self._bridges[key] = {"name": name, "report": report, "connection": connection,
                                  "running": not final, "updated_ns": time.time_ns()}
        return None

    def op_bridges(self, connection) -> List[Dict[str, Any]]:
        with self.lock:
            now = time.time_ns()
            return [{"name": b["name"], "running": b["running"], "report": b["report"],
                     "age_s": round((now - b["updated_ns"]) / 1e9, 3)}
                    for b in sorted(self._bridges.values(), key=lambda b: (b["name"], b["connection"]))]

    def connection_closed(self, connection: int) -> None:
        with self.lock:
            for b in self._bridges.values():
                if b["connection"] == connection:
                    b["running"] = False

    def _forget_stopped(self) -> None:
        for key in [k for k, b in self._bridges.items() if not b["running"]]:
            del self._bridges[key]
