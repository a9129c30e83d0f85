"""shmbus topics create | list | describe | delete"""
import json
import os
import time

import click
from rich.table import Table

from .._errors import OutOfSpace
from ._format import Size, human, wide_console
from ._plumbing import HELP_OPTIONS, CliError, bus_options, open_bus, open_running_bus

# The supervisor's limits, checked here too so that the error names the flag.
MIN_RING = MIN_SEGMENT = 64 << 10
MAX_PARTITIONS = 1024


@click.group(context_settings=HELP_OPTIONS)
def topics():
    """Create, list, describe and delete topics."""


@topics.command("create")
@bus_options
@click.argument("name")
@click.option("-p", "--partitions", default=1, show_default=True, type=click.IntRange(1, MAX_PARTITIONS),
              help="Partitions (each a ring of --ring-size in /dev/shm).")
@click.option("--ring-size", default="64MiB", show_default=True, type=Size(MIN_RING, "a ring"),
              help="Per-partition ring size, reserved in /dev/shm now (65536, 512KiB, 64MiB).")
@click.option("--memory-only", is_flag=True, help="Keep records in memory only; the oldest are overwritten.")
@click.option("--retention-bytes", type=Size(1, "a retention size"), default=None, metavar="SIZE",
              help="Durable topics: delete the oldest segments beyond this size per partition.")
@click.option("--retention-ms", type=click.IntRange(min=1), default=None, metavar="MS",
              help="Durable topics: delete segments whose records are all older than this.")
@click.option("--segment-size", default=None, type=Size(MIN_SEGMENT, "a segment"),
              help="Durable topics: segment file size (default 128MiB).")
@click.option("--if-not-exists", is_flag=True, help="Succeed if the topic exists already.")
def create(bus, data_dir, name, partitions, ring_size, memory_only, retention_bytes, retention_ms,
           segment_size, if_not_exists):
    """Create topic NAME."""
    with open_bus(bus, data_dir) as b:
        existed = if_not_exists and name in b.topics()
        try:
            info = b.create_topic(name, partitions=partitions, ring_bytes=ring_size,
                                  durable=not memory_only, retention_bytes=retention_bytes,
                                  retention_ms=retention_ms, segment_bytes=segment_size, exist_ok=if_not_exists)
        except OutOfSpace:
            raise CliError(_no_room(partitions, ring_size)) from None
    if existed:
        click.echo(f"topic {info.name!r} exists already ({info.partitions} partition(s))")
    else:
        click.echo(f"created topic {info.name!r} with {info.partitions} partition(s)")


def _no_room(partitions, ring_size):
    st = os.statvfs("/dev/shm")
    return (f"/dev/shm has no room for {partitions} ring(s) of {human(ring_size)}: it is "
            f"{human(st.f_blocks * st.f_frsize)} with {human(st.f_bavail * st.f_frsize)} free; use a smaller "
            f"--ring-size or fewer --partitions, or enlarge /dev/shm (Docker: --shm-size=1g; see shmbus doctor)")


@topics.command("list")
@bus_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
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
