"""shmbus stats | top: per-partition figures from the ring headers and the supervisor."""
import json
import time

import click
from rich.console import Group as Stack
from rich.live import Live
from rich.table import Table

from .._errors import ShmbusError
from ._format import human, wide_console
from ._plumbing import bus_options, open_bus


def collect(bus):
    """One snapshot: {topic: describe_topic(topic)}, {group: describe_group(group)},
    the Kafka bridges with their lag per partition, plus when it was taken."""
    topics = {name: bus.describe_topic(name) for name in sorted(bus.topics())}
    groups = {row["group"]: bus.call("describe_group", group=row["group"]) for row in bus.call("groups")}
    try:
        reports = bus.call("bridges")
    except ShmbusError:   # a supervisor older than the bridge
        reports = []
    return {"taken_ns": time.time_ns(), "topics": topics, "groups": groups,
            "bridges": [bridge_view(r, topics, groups) for r in reports]}


def bridge_view(entry, topics, groups):
    """One bridge as stats shows it: its state and, per partition each way, the lag --
    records not yet acknowledged on the other side. To Kafka that is the bus's own
    figure, the partition's end offset minus what the bridge's shmbus group committed (it
    commits only what Kafka acknowledged), so it stays true when the bridge is dead; from
    Kafka it is the bridge's report, Kafka's high watermark minus the bridge's commit."""
    report = entry["report"]
    rows = []
    to_kafka = report.get("to_kafka") or {}
    stopped = {(p["topic"], p["partition"]): p for p in to_kafka.get("partitions", []) if p.get("error")}
    in_flight = {(p["topic"], p["partition"]): p["in_flight"] for p in to_kafka.get("partitions", [])}
    group = {(p["topic"], p["partition"]): p for p in groups.get(report.get("group"), {}).get("partitions", [])}
    for route in to_kafka.get("routes", []):
        parts = {p["partition"]: p for p in topics.get(route["topic"], {}).get("partitions", [])}
        for partition in range(route["partitions"]):
            key = (route["topic"], partition)
            committed = group.get(key, {}).get("committed")
            part = parts.get(partition, {})
            end = part.get("end_offset")
            start = committed if committed is not None else part.get("earliest_offset")
            error = stopped.get(key)
            rows.append({"direction": "to-kafka", "topic": route["topic"], "partition": partition,
                         "kafka_topic": route["kafka_topic"], "committed": committed,
                         "lag": end - start if end is not None and start is not None else None,
                         "in_flight": in_flight.get(key, 0),
                         "error": error["error"] if error else None})
    from_kafka = report.get("from_kafka") or {}
    for p in from_kafka.get("partitions", []):
        rows.append({"direction": "from-kafka", "topic": p["topic"], "partition": p["partition"],
                     "kafka_topic": p["kafka_topic"], "committed": p["committed"], "lag": p["lag"],
                     "in_flight": None, "error": p["error"]})
    return {"name": entry["name"], "running": entry["running"], "age_s": entry["age_s"], "pid": report.get("pid"),
            "kafka": report.get("kafka"), "connected": report.get("connected"),
            "kafka_error": report.get("kafka_error") or None, "partitions": rows}


def with_rates(now, before):
    """Add records/s per partition between two snapshots."""
    seconds = (now["taken_ns"] - before["taken_ns"]) / 1e9 if before else 0
    for name, described in now["topics"].items():
        old = {p["partition"]: p for p in before["topics"].get(name, {}).get("partitions", [])} if before else {}
        for p in described["partitions"]:
            prev = old.get(p["partition"])
            p["rate"] = (p["end_offset"] - prev["end_offset"]) / seconds if prev and seconds > 0 else None
    return now


def prometheus_text(snapshot):
    """The Prometheus text exposition format."""
    lines = []

    def metric(name, kind, doc, rows):
        lines.append(f"# HELP shmbus_{name} {doc}")
        lines.append(f"# TYPE shmbus_{name} {kind}")
        for labels, value in rows:
            label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
            lines.append(f"shmbus_{name}{{{label_text}}} {value}")

    parts = [(name, p) for name, d in snapshot["topics"].items() for p in d["partitions"]]
    lbl = lambda name, p: {"topic": name, "partition": p["partition"]}  # noqa: E731
    metric("partition_end_offset", "gauge", "Offset the next record of the partition gets.",
           [(lbl(n, p), p["end_offset"]) for n, p in parts])
    metric("partition_earliest_offset", "gauge", "Earliest retained offset.",
           [(lbl(n, p), p["earliest_offset"]) for n, p in parts])
    metric("ring_used_bytes", "gauge", "Bytes of the ring holding records.",
           [(lbl(n, p), p["ring_used_bytes"]) for n, p in parts])
    metric("ring_size_bytes", "gauge", "Size of the ring's data area.",
           [(lbl(n, p), p["ring_bytes"]) for n, p in parts])
    durable = [(n, p) for n, p in parts if "archive_lag" in p]
    metric("archive_lag_records", "gauge", "Records in the ring not yet on disk.",
           [(lbl(n, p), p["archive_lag"]) for n, p in durable])
    metric("disk_bytes", "gauge", "Bytes of segment files.", [(lbl(n, p), p["disk_bytes"]) for n, p in durable])
    metric("unsynced_bytes", "gauge", "Archived bytes not yet fsynced.",
           [(lbl(n, p), p["unsynced_bytes"]) for n, p in durable])
    committed = [(g, p) for g, d in snapshot.get("groups", {}).items() for p in d["partitions"]
                 if p["committed"] is not None]
    glbl = lambda g, p: {"group": g, "topic": p["topic"], "partition": p["partition"]}  # noqa: E731
    metric("group_committed_offset", "gauge", "The group's committed offset.",
           [(glbl(g, p), p["committed"]) for g, p in committed])
    metric("group_lag_records", "gauge", "End offset minus the group's committed offset.",
           [(glbl(g, p), p["lag"]) for g, p in committed if p["lag"] is not None])
    bridges = snapshot.get("bridges", [])
    metric("bridge_up", "gauge", "1 while the Kafka bridge runs (its control connection is open).",
           [({"bridge": b["name"]}, int(b["running"])) for b in bridges])
    metric("bridge_kafka_connected", "gauge", "1 while the bridge reaches Kafka.",
           [({"bridge": b["name"]}, int(bool(b["connected"]))) for b in bridges])
    rows = [(b, p) for b in bridges for p in b["partitions"]]
    blbl = lambda b, p: {"bridge": b["name"], "direction": p["direction"], "topic": p["topic"],  # noqa: E731
                         "partition": p["partition"], "kafka_topic": p["kafka_topic"]}
    metric("bridge_lag_records", "gauge", "Records not yet acknowledged on the other side of the bridge.",
           [(blbl(b, p), p["lag"]) for b, p in rows if p["lag"] is not None])
    metric("bridge_partition_stopped", "gauge", "1 if the bridge stopped the partition at a record the other "
           "side refuses (see the bridge's log).", [(blbl(b, p), int(p["error"] is not None)) for b, p in rows])
    return "\n".join(lines) + "\n"


def bridge_table(snapshot):
    t = Table("BRIDGE", "STATE", "DIRECTION", "TOPIC", "PARTITION", "KAFKA-TOPIC", "COMMITTED", "LAG", "ERROR",
              box=None)
    for b in snapshot.get("bridges", []):
        state = ("stopped" if not b["running"] else "kafka unreachable" if b["connected"] is False
                 else "running")
        if not b["partitions"]:
            t.add_row(b["name"], state, "-", "-", "-", "-", "-", "-", b["kafka_error"] or "")
        for p in b["partitions"]:
            t.add_row(b["name"], state, p["direction"], p["topic"], str(p["partition"]), p["kafka_topic"],
                      str(p["committed"]), str(p["lag"]), p["error"] or "")
    return t


def group_table(snapshot):
    t = Table("GROUP", "TOPIC", "PARTITION", "COMMITTED", "END-OFFSET", "LAG", "PID", box=None)
    for name, described in snapshot.get("groups", {}).items():
        for p in described["partitions"]:
            t.add_row(name, p["topic"], str(p["partition"]), str(p["committed"]), str(p["end_offset"]),
                      str(p["lag"]), str(p["pid"] or "-"))
    return t


def table(snapshot):
    t = Table("TOPIC", "PARTITION", "END-OFFSET", "RATE/s", "RING-USED", "ARCHIVE-LAG", "DISK", box=None)
    for name, described in snapshot["topics"].items():
        for p in described["partitions"]:
            rate = p.get("rate")
            t.add_row(name, str(p["partition"]), str(p["end_offset"]),
                      "-" if rate is None else f"{rate:,.0f}",
                      f"{100 * p['ring_used_bytes'] / p['ring_bytes']:.0f}%",
                      str(p.get("archive_lag", "-")), human(p["disk_bytes"]) if "disk_bytes" in p else "-")
    return t


@click.command()
@bus_options
@click.option("--json", "as_json", is_flag=True)
@click.option("--prometheus", is_flag=True, help="Prometheus text exposition format.")
@click.option("--interval", type=float, default=0.0, help="Sample twice this far apart to show rates.")
def stats(bus, data_dir, as_json, prometheus, interval):
    """Per partition: end offset, rate, ring fill, archive lag, bytes on disk."""
    with open_bus(bus, data_dir) as b:
        before = collect(b) if interval > 0 else None
        if before:
            time.sleep(interval)
        snapshot = with_rates(collect(b), before)
    if as_json:
        click.echo(json.dumps(snapshot, indent=1))
    elif prometheus:
        click.echo(prometheus_text(snapshot), nl=False)
    else:
        console = wide_console()
        console.print(table(snapshot))
        if snapshot["groups"]:
            console.print(group_table(snapshot))
        if snapshot["bridges"]:
            console.print(bridge_table(snapshot))



@click.command()
@bus_options
@click.option("--interval", type=float, default=1.0, show_default=True)
def top(bus, data_dir, interval):
    """A live view of every partition, refreshed every interval seconds (Ctrl-C quits)."""
    with open_bus(bus, data_dir) as b:
        before = collect(b)
        with Live(live_view(with_rates(before, None)), refresh_per_second=4) as live:
            while True:
                time.sleep(interval)
                now = with_rates(collect(b), before)
                live.update(live_view(now))
                before = now


def live_view(snapshot):
    """The partitions, and the Kafka bridges' lag when there are any."""
    return Stack(table(snapshot), bridge_table(snapshot)) if snapshot.get("bridges") else table(snapshot)
