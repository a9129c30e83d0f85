"""shmbus stats | top: per-partition figures from the ring headers and the supervisor."""
import json
import time

import click
from rich.live import Live
from rich.table import Table

from ._format import human, wide_console
from ._plumbing import bus_options, open_running_bus


def collect(bus):
    """One snapshot: {topic: describe_topic(topic)}, {group: describe_group(group)},
    plus when it was taken."""
    topics = {name: bus.query("describe_topic", name=name) for name in sorted(bus.topics())}
    groups = {name: bus.query("describe_group", group=name) for name in bus.list_groups()}
    return {"taken_ns": time.time_ns(), "topics": topics, "groups": groups}


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
    return "\n".join(lines) + "\n"


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
    with open_running_bus(bus, data_dir) as b:
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



@click.command()
@bus_options
@click.option("--interval", type=float, default=1.0, show_default=True)
def top(bus, data_dir, interval):
    """A live view of every partition, refreshed every interval seconds (Ctrl-C quits)."""
    with open_running_bus(bus, data_dir) as b:
        before = collect(b)
        with Live(table(with_rates(before, None)), refresh_per_second=4) as live:
            while True:
                time.sleep(interval)
                now = with_rates(collect(b), before)
                live.update(table(now))
                before = now
