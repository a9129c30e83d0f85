"""shmbus topics create | list | describe | delete"""
import json
import time

import click
from rich.table import Table

from ._format import human, parse_size, wide_console
from ._plumbing import bus_options, open_bus, open_running_bus


@click.group()
def topics():
    """Create, list, describe and delete topics."""


@topics.command("create")
@bus_options
@click.argument("name")
@click.option("--partitions", default=1, show_default=True, type=int)
@click.option("--ring-size", default="64MiB", show_default=True, help="Per-partition ring size.")
@click.option("--memory-only", is_flag=True, help="Keep records in memory only; the oldest are overwritten.")
@click.option("--retention-bytes", type=int, default=None)
@click.option("--retention-ms", type=int, default=None)
@click.option("--segment-size", default=None, help="Durable topics: segment file size (default 128MiB).")
@click.option("--if-not-exists", is_flag=True, help="A topic of that name is fine (it is left as it is).")
def create(bus, data_dir, name, partitions, ring_size, memory_only, retention_bytes, retention_ms,
           segment_size, if_not_exists):
    """Create topic NAME."""
    with open_bus(bus, data_dir) as b:
        existed = if_not_exists and name in b.topics()
        info = b.create_topic(name, partitions=partitions, ring_bytes=parse_size(ring_size),
                              durable=not memory_only, retention_bytes=retention_bytes,
                              retention_ms=retention_ms,
                              segment_bytes=parse_size(segment_size) if segment_size else None,
                              exist_ok=if_not_exists)
    if existed:
        click.echo(f"topic {info.name!r} exists ({info.partitions} partition(s))")
    else:
        click.echo(f"created topic {info.name!r} with {info.partitions} partition(s)")


@topics.command("list")
@bus_options
@click.option("--json", "as_json", is_flag=True)
def list_(bus, data_dir, as_json):
    """List topics."""
    with open_running_bus(bus, data_dir) as b:
        infos = b.topics()
        broken = b.query("broken_topics")
    if as_json:
        click.echo(json.dumps({name: info._asdict() for name, info in infos.items()}, indent=1))
        return
    table = Table("TOPIC", "PARTITIONS", "RING", "DURABLE", box=None)
    for name, info in sorted(infos.items()):
        table.add_row(name, str(info.partitions), human(info.ring_bytes), "yes" if info.durable else "memory-only")
    for name in sorted(broken):
        table.add_row(name, "?", "?", "BROKEN")
    console = wide_console()
    console.print(table)
    for name, why in sorted(broken.items()):
        console.print(f"topic {name} is broken: {why}", markup=False)


@topics.command()
@bus_options
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def describe(bus, data_dir, name, as_json):
    """Show a topic's partitions: offsets, ring use, producers; durable ones also their
    segments, archiving, and DAMAGE: what the supervisor found wrong in the log at start
    (records that cannot be read, offsets missing), which readers get as CorruptSegment."""
    with open_running_bus(bus, data_dir) as b:
        d = b.query("describe_topic", name=name)   # the supervisor's shape: --json prints it
    if as_json:
        click.echo(json.dumps(d, indent=1))
        return
    t = d["topic"]
    console = wide_console()
    if d.get("broken"):
        console.print(f"Topic: {t['name']}  BROKEN: {d['broken']}", markup=False)
        return
    console.print(f"Topic: {t['name']}  partitions: {t['partitions']}  ring: {human(t['ring_bytes'])}  "
                  f"{'durable' if t['durable'] else 'memory-only'}  max record: {human(d['max_record_bytes'])}")
    columns = ["PARTITION", "EARLIEST", "END-OFFSET", "RING-USED", "PRODUCERS"]
    if t["durable"]:
        columns += ["SEGMENTS", "DISK", "ARCHIVE-LAG", "UNSYNCED", "LAST-FSYNC", "ERROR", "DAMAGE"]
    table = Table(*columns, box=None)
    now = time.time_ns()
    for p in d["partitions"]:
        row = [str(p["partition"]), str(p["earliest_offset"]), str(p["end_offset"]),
               f"{100 * p['ring_used_bytes'] / p['ring_bytes']:.0f}%", str(p["producers"])]
        if t["durable"]:
            last = p["last_fsync_ns"]
            row += [str(p["segments"]), human(p["disk_bytes"]), f"{p['archive_lag']} records",
                    human(p["unsynced_bytes"]), f"{(now - last) / 1e9:.1f}s ago" if last else "never",
                    p["archive_error"] or "-", "; ".join(p["damage"]) or "-"]
        table.add_row(*row)
    console.print(table)


@topics.command()
@bus_options
@click.argument("name")
def delete(bus, data_dir, name):
    """Delete topic NAME and its data."""
    with open_bus(bus, data_dir) as b:
        b.delete_topic(name)
    click.echo(f"deleted topic {name!r}")
