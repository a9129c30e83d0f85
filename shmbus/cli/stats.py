"""shmbus stats: per-partition and per-group figures from the ring headers and the
supervisor, as tables, JSON or Prometheus text (the names /metrics serves)."""
import json
import time

import click
from rich.table import Table

from .._metrics import exposition, with_rates
from ._format import human, wide_console
from ._plumbing import HELP_OPTIONS, bus_options, exclusive, open_running_bus


def collect(bus):
    """One snapshot of the bus (see shmbus/_metrics.py), in one control request."""
    return bus.call("snapshot")


def cell(value):
    return "-" if value is None else str(value)


def partition_rows(snapshot):
    """(topic, partition, end, rate, ring %, archive lag, disk) per partition, as text."""
    for name, described in snapshot["topics"].items():
        for p in described["partitions"]:
            rate = p.get("rate")
            yield (name, str(p["partition"]), f"{p['end_offset']:,}",
                   "-" if rate is None else f"{rate:,.0f}",
                   f"{100 * p['ring_used_bytes'] / p['ring_bytes']:.0f}%",
                   cell(p.get("archive_lag")), human(p["disk_bytes"]) if "disk_bytes" in p else "-",
                   str(p["producers"]))


def group_rows(snapshot):
    """(group, topic, partition, committed, end, lag, member pid) per group and partition."""
    for name, described in snapshot.get("groups", {}).items():
        for p in described["partitions"]:
            yield (name, p["topic"], str(p["partition"]), cell(p["committed"]), cell(p["end_offset"]),
                   cell(p["lag"]), cell(p.get("pid")))


PARTITION_COLUMNS = ("TOPIC", "PARTITION", "END-OFFSET", "RATE/s", "RING-USED", "ARCHIVE-LAG", "DISK", "PRODUCERS")
GROUP_COLUMNS = ("GROUP", "TOPIC", "PARTITION", "COMMITTED", "END-OFFSET", "LAG", "PID")


def table(snapshot):
    t = Table(*PARTITION_COLUMNS, box=None)
    for row in partition_rows(snapshot):
        t.add_row(*row)
    return t


def group_table(snapshot):
    t = Table(*GROUP_COLUMNS, box=None)
    for row in group_rows(snapshot):
        t.add_row(*row)
    return t


@click.command(context_settings=HELP_OPTIONS)
@bus_options
@click.option("--json", "as_json", is_flag=True, help="The whole snapshot as JSON.")
@click.option("--prometheus", is_flag=True,
              help="Prometheus text format, the names `shmbus serve --metrics-port` serves.")
@click.option("--interval", type=click.FloatRange(min=0), default=0.0, metavar="SECONDS",
              help="Sample twice this far apart to show rates.")
def stats(bus, data_dir, as_json, prometheus, interval):
    """Per partition: end offset, rate, ring fill, archive lag, bytes on disk; per group
    and partition: committed offset and lag."""
    exclusive(json=as_json, prometheus=prometheus)
    with open_running_bus(bus, data_dir) as b:
        before = collect(b) if interval > 0 else None
        if before:
            time.sleep(interval)
        snapshot = with_rates(collect(b), before)
    if as_json:
        click.echo(json.dumps(snapshot, indent=1))
    elif prometheus:
        click.echo(exposition(snapshot).decode(), nl=False)
    else:
        console = wide_console()
        console.print(table(snapshot))
        if snapshot["groups"]:
            console.print(group_table(snapshot))
        for row in snapshot.get("bridges", []):
            console.print(bridge_line(row), markup=False)


def bridge_line(row):
    """One partition of a Kafka bridge: its lag, and why it stopped if it did."""
    arrow = "->" if row["direction"] == "to_kafka" else "<-"
    other = f" {arrow} Kafka {row['kafka_topic']}" if row.get("kafka_topic") else ""
    stopped = f"; STOPPED: {row['error']}" if row.get("error") else ""
    return (f"bridge {row['bridge']} {row['direction']} {row['topic']}/{row['partition']}{other}: "
            f"{row['records']} record(s) not delivered yet{stopped}")
