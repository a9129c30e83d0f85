"""The supervisor's side of the metrics: one snapshot of the bus (what `shmbus stats`
prints and /metrics exports), the count of errors it logged, and the Prometheus
endpoint of `shmbus serve --metrics-port`.

The endpoint is prometheus_client's HTTP server with one custom collector: a scrape
takes a snapshot (the ring headers read at that moment, under the supervisor's lock,
as a `describe` does) and turns it into families (shmbus/_metrics.py). Nothing is
counted per record, so a bus that is never scraped pays nothing. The rate gauge is
the difference between this scrape and the previous one.
"""
import logging
import threading
import time
from typing import Any, Dict, Iterator, Optional, Tuple

from .. import _metrics

logger = logging.getLogger("shmbus.supervisor")


class ErrorCounter(logging.Handler):
    """Counts the records of ERROR and above that the supervisor logs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def snapshot(supervisor: Any) -> Dict[str, Any]:
    """The whole bus at this moment, as `shmbus stats --json` shows it."""
    with supervisor.lock:
        registry = supervisor.registry
        topics = {name: registry.describe(name) for name in sorted(registry.topics)}
        broken = dict(registry.broken)
        groups = {}
        for row in supervisor.groups.op_groups(None):
            try:
                groups[row["group"]] = supervisor.groups.op_describe_group(None, row["group"])
            except Exception as e:   # a group broken meanwhile: shown, not fatal to the scrape
                groups[row["group"]] = {"group": row["group"], "members": [], "partitions": [], "error": str(e)}
    paths = supervisor.paths
    return {"taken_ns": time.time_ns(), "topics": topics, "groups": groups, "broken_topics": broken,
            "bridges": supervisor.bridges.rows(),
            "supervisor": {"pid": supervisor.pid, "bus": paths.bus, "data_dir": paths.data_dir,
                           "started_ns": supervisor.started_ns, "errors": supervisor.errors.count}}


class _Collector:
    """prometheus_client's custom collector: a snapshot per scrape."""

    def __init__(self, supervisor: Any):
        self.supervisor = supervisor
        self._previous: Optional[Dict[str, Any]] = None
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Any]:
        now = snapshot(self.supervisor)
        with self._lock:   # two scrapes at once: each rate spans a real interval
            _metrics.with_rates(now, self._previous)
            self._previous = now
        return _metrics.families(now)


class MetricsEndpoint:
    """GET /metrics on host:port, served by a thread of the supervisor."""

    def __init__(self, supervisor: Any, host: str, port: int):
        from prometheus_client import CollectorRegistry
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(supervisor))
        self.host = host
        self.requested_port = port
        self._server: Any = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> Tuple[str, int]:
        """Listen (port 0: any free one) and serve; returns the address it listens on."""
        from prometheus_client import start_http_server
        self._server, self._thread = start_http_server(self.requested_port, addr=self.host,
                                                       registry=self.registry)
        host, port = self._server.server_address[:2]
        logger.info(f"Prometheus metrics on http://{_url_host(host)}:{port}/metrics")
        return host, port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
