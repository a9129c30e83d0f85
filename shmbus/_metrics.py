"""The Prometheus metrics of a bus: their names, and how one snapshot of the bus
becomes them.

A snapshot is what `shmbus stats --json` prints: {"taken_ns", "topics": {name:
describe_topic}, "groups": {name: describe_group}, "supervisor": {"pid",
"started_ns", "errors"}, "bridges": [...]}, every figure read from the ring headers
and the supervisor at that moment. The same function serves the live endpoint
(`shmbus serve --metrics-port`, a collector that takes a snapshot per scrape inside
the supervisor) and `shmbus stats --prometheus` (one snapshot over the control
socket), so both print the same names. Nothing counts per record: a scrape reads
the headers, and rates are the difference between two snapshots.

The names (examples/grafana-dashboard.json is built on them):

  per partition {topic, partition}:
    shmbus_partition_end_offset, shmbus_partition_earliest_offset,
    shmbus_partition_rate_records_per_second (since the previous snapshot),
    shmbus_partition_producers, shmbus_partition_waiting_consumers,
    shmbus_ring_used_bytes, shmbus_ring_size_bytes, shmbus_ring_fill_ratio,
    durable topics: shmbus_archive_lag_records, shmbus_unsynced_bytes, shmbus_disk_bytes,
    shmbus_archive_errors (1 while the archiver reports an error for the partition)
  per group {group}: shmbus_group_members
  per group and partition {group, topic, partition}:
    shmbus_group_committed_offset, shmbus_group_lag_records
  per bridge and partition {bridge, direction, topic, partition}:
    shmbus_bridge_lag_records (records the bridge has not delivered yet; see
    shmbus/_supervisor/bridges.py for how a bridge reports it),
    shmbus_bridge_partition_stopped (1 where the bridge stopped at a record the other side refuses)
  the supervisor: shmbus_supervisor_up, shmbus_supervisor_uptime_seconds,
    shmbus_supervisor_errors_total (errors it logged since it started),
    shmbus_broken_topics, shmbus_bus_info {bus, data_dir, pid}
"""
from typing import Any, Dict, Iterator, List, Optional

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

Snapshot = Dict[str, Any]


def with_rates(now: Snapshot, before: Optional[Snapshot]) -> Snapshot:
    """Add records/s per partition (p["rate"]) between two snapshots; None without one."""
    seconds = (now["taken_ns"] - before["taken_ns"]) / 1e9 if before else 0
    for name, described in now["topics"].items():
        old = {p["partition"]: p for p in before["topics"].get(name, {}).get("partitions", [])} if before else {}
        for p in described["partitions"]:
            prev = old.get(p["partition"])
            p["rate"] = max(0.0, (p["end_offset"] - prev["end_offset"]) / seconds) \
                if prev and seconds > 0 else None
    return now


def families(snapshot: Snapshot) -> Iterator[Metric]:
    """Every metric family of one snapshot."""
    part = ["topic", "partition"]

    def gauge(name: str, doc: str, labels: List[str]) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"shmbus_{name}", doc, labels=labels)

    parts = [(name, p) for name, d in snapshot["topics"].items() for p in d["partitions"]]
    rows = {
        "partition_end_offset": ("Offset the partition's next record gets (records ever written).",
                                 lambda p: p["end_offset"]),
        "partition_earliest_offset": ("Earliest retained offset (in the ring or on disk).",
                                      lambda p: p["earliest_offset"]),
        "partition_rate_records_per_second": ("Records written per second since the previous sample.",
                                              lambda p: p.get("rate")),
        "partition_producers": ("Producers attached to the partition's ring.", lambda p: p["producers"]),
        "partition_waiting_consumers": ("Processes asleep on the partition waiting for records (consumers; the archiver of a durable topic).",
                                        lambda p: p.get("waiting_consumers")),
        "ring_used_bytes": ("Bytes of the ring holding records.", lambda p: p["ring_used_bytes"]),
        "ring_size_bytes": ("Size of the ring's data area.", lambda p: p["ring_bytes"]),
        "ring_fill_ratio": ("Fraction of the ring holding records (0..1).",
                            lambda p: p["ring_used_bytes"] / p["ring_bytes"] if p["ring_bytes"] else None),
        "archive_lag_records": ("Records in the ring not yet archived to disk (durable topics).",
                                lambda p: p.get("archive_lag")),
        "unsynced_bytes": ("Archived bytes not yet fsynced (durable topics).", lambda p: p.get("unsynced_bytes")),
        "disk_bytes": ("Bytes of the partition's segment files (durable topics).", lambda p: p.get("disk_bytes")),
        "archive_errors": ("1 while the archiver reports an error for the partition (durable topics).",
                           lambda p: None if "archive_error" not in p else int(bool(p["archive_error"]))),
    }
    for name, (doc, value_of) in rows.items():
        family = gauge(name, doc, part)
        for topic, p in parts:
            value = value_of(p)
            if value is not None:
                family.add_metric([topic, str(p["partition"])], value)
        yield family

    members = gauge("group_members", "Live members of the consumer group.", ["group"])
    committed = gauge("group_committed_offset", "The group's committed offset.", ["group", "topic", "partition"])
    lag = gauge("group_lag_records", "End offset minus the group's committed offset.",
                ["group", "topic", "partition"])
    for group, described in snapshot.get("groups", {}).items():
        members.add_metric([group], len(described.get("members", [])))
        for p in described["partitions"]:
            labels = [group, p["topic"], str(p["partition"])]
            if p["committed"] is not None:
                committed.add_metric(labels, p["committed"])
            if p["lag"] is not None:
                lag.add_metric(labels, p["lag"])
    yield from (members, committed, lag)

    bridge = gauge("bridge_lag_records", "Records a bridge has not delivered yet.",
                   ["bridge", "direction", "topic", "partition"])
    stopped = gauge("bridge_partition_stopped", "1 if the bridge stopped the partition at a record the other "
                    "side refuses (the reason is in its log and in shmbus stats).",
                    ["bridge", "direction", "topic", "partition"])
    for row in snapshot.get("bridges", []):
        labels = [row["bridge"], row["direction"], row["topic"], str(row["partition"])]
        bridge.add_metric(labels, row["records"])
        stopped.add_metric(labels, 1 if row.get("error") else 0)
    yield from (bridge, stopped)

    supervisor = snapshot.get("supervisor")
    up = gauge("supervisor_up", "1 when the supervisor answered this sample.", [])
    up.add_metric([], 1 if supervisor else 0)
    yield up
    if supervisor:
        uptime = gauge("supervisor_uptime_seconds", "Seconds since the supervisor started.", [])
        uptime.add_metric([], max(0.0, (snapshot["taken_ns"] - supervisor["started_ns"]) / 1e9))
        yield uptime
        errors = CounterMetricFamily("shmbus_supervisor_errors", "Errors the supervisor logged since it started.")
        errors.add_metric([], supervisor["errors"])
        yield errors
        info = gauge("bus_info", "The bus this supervisor serves (always 1).", ["bus", "data_dir", "pid"])
        info.add_metric([supervisor["bus"], supervisor["data_dir"], str(supervisor["pid"])], 1)
        yield info
    broken = gauge("broken_topics", "Topics whose metadata cannot be read (kept, not served).", [])
    broken.add_metric([], len(snapshot.get("broken_topics", {})))
    yield broken


def exposition(snapshot: Snapshot) -> bytes:
    """The Prometheus text format of one snapshot."""
    from prometheus_client import CollectorRegistry, generate_latest

    class _Once:
        def collect(self) -> Iterator[Metric]:
            return families(snapshot)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Once())
    return generate_latest(registry)
