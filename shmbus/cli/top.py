"""shmbus top: a live view of the bus, partitions and groups, sized to the terminal.

Each refresh is one snapshot from the supervisor (the ring headers read at that
moment); rates are the difference between two. When the rows do not fit the
terminal, the busiest partitions and the most lagging group partitions are kept and
the rest counted in a "... more" line. Off a terminal (`shmbus top -n 3 > file`) it
prints one frame per interval, as `top -b` does.
"""
import datetime
import time

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .._metrics import with_rates
from ._format import human, wide_console
from ._plumbing import HELP_OPTIONS, bus_options, open_running_bus
from .stats import cell, collect

# Lines a frame needs besides table rows: the two header lines, a blank line and a
# heading per table, and room for the "... more" lines.
FIXED_LINES = 9


def _uptime(seconds):
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def frame(snapshot, height, width):
    """The whole view of one snapshot, at most `height` lines."""
    sup = snapshot.get("supervisor") or {}
    when = datetime.datetime.fromtimestamp(snapshot["taken_ns"] / 1e9).strftime("%Y-%m-%d %H:%M:%S")
    parts = [(name, p) for name, d in snapshot["topics"].items() for p in d["partitions"]]
    total_rate = sum(p.get("rate") or 0 for _, p in parts)
    head = Text.assemble(("shmbus top", "bold"), "  bus ", (sup.get("bus", "?"), "bold"),
                         f"  data {sup.get('data_dir', '?')}  {when}")
    uptime = _uptime((snapshot["taken_ns"] - sup["started_ns"]) / 1e9) if sup else "?"
    errors = sup.get("errors", 0)
    status = Text(f"supervisor pid {sup.get('pid', '?')} up {uptime}  errors {errors}  "
                  f"{len(snapshot['topics'])} topic(s), {len(parts)} partition(s), "
                  f"{total_rate:,.0f} records/s  {len(snapshot.get('groups', {}))} group(s)   Ctrl-C quits",
                  style="red" if errors else "")

    group_rows = []
    for name, d in snapshot.get("groups", {}).items():
        members = len(d.get("members", []))
        for p in d["partitions"]:
            group_rows.append((name, members, p))
    # The header lines wrap on a narrow terminal: count what they take.
    wrapped = sum(max(0, (len(line.plain) - 1) // max(1, width)) for line in (head, status))
    budget = max(2, height - FIXED_LINES - wrapped)
    # Partitions get at least half the room when groups need it, and the rest otherwise.
    group_budget = min(len(group_rows), max(budget // 2, budget - len(parts)))
    part_budget = max(1, budget - group_budget)

    shown_parts = parts
    if len(parts) > part_budget:
        busiest = sorted(parts, key=lambda np: (-(np[1].get("rate") or 0), -np[1]["ring_used_bytes"],
                                                -np[1]["end_offset"]))[:part_budget]
        shown_parts = [np for np in parts if any(np is b for b in busiest)]
    pt = Table("TOPIC", "PART", "END-OFFSET", "RATE/s", "RING", "ARCHIVE-LAG", "UNSYNCED", "PRODUCERS",
               box=None, title="partitions", title_justify="left", title_style="bold")
    for name, p in shown_parts:
        rate = p.get("rate")
        fill = p["ring_used_bytes"] / p["ring_bytes"] if p["ring_bytes"] else 0
        pt.add_row(name, str(p["partition"]), f"{p['end_offset']:,}", "-" if rate is None else f"{rate:,.0f}",
                   Text(f"{100 * fill:.0f}%", style="red" if fill > 0.9 and "archive_lag" in p else ""),
                   cell(p.get("archive_lag")),
                   human(p["unsynced_bytes"]) if "unsynced_bytes" in p else "-", str(p["producers"]))
    pieces: list = [head, status, pt]
    if len(shown_parts) < len(parts):
        pieces.append(Text(f"... {len(parts) - len(shown_parts)} more partition(s), the quietest"))

    shown_groups = group_rows
    if len(group_rows) > group_budget:
        worst = sorted(group_rows, key=lambda r: -(r[2]["lag"] or 0))[:group_budget]
        shown_groups = [r for r in group_rows if any(r is w for w in worst)]
    gt = Table("GROUP", "MEMBERS", "TOPIC", "PART", "COMMITTED", "END-OFFSET", "LAG", "MEMBER-PID",
               box=None, title="groups", title_justify="left", title_style="bold")
    for name, members, p in shown_groups:
        lag = p["lag"]
        gt.add_row(name, str(members), p["topic"], str(p["partition"]), cell(p["committed"]),
                   cell(p["end_offset"]), Text(cell(lag), style="yellow" if lag else ""), cell(p.get("pid")))
    if group_rows:
        pieces.append(gt)
        if len(shown_groups) < len(group_rows):
            pieces.append(Text(f"... {len(group_rows) - len(shown_groups)} more group partition(s), the least "
                               f"lagging"))
    else:
        pieces.append(Text("no consumer groups", style="dim"))
    bridges = snapshot.get("bridges", [])
    # Stopped partitions first: they need someone; then the most lagging.
    for row in sorted(bridges, key=lambda r: (not r.get("error"), -r["records"]))[:3]:
        stopped = f"  STOPPED: {row['error']}" if row.get("error") else ""
        pieces.append(Text(f"bridge {row['bridge']} {row['direction']} {row['topic']}/{row['partition']}: "
                           f"lag {row['records']:,}{stopped}", style="red" if stopped else ""))
    if len(bridges) > 3:
        pieces.append(Text(f"... {len(bridges) - 3} more bridge partition(s)"))
    return Group(*pieces)


@click.command(context_settings=HELP_OPTIONS)
@bus_options
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True, metavar="SECONDS",
              help="Seconds between refreshes.")
@click.option("-n", "--iterations", type=click.IntRange(min=1), default=None,
              help="Stop after this many refreshes (default: until Ctrl-C).")
def top(bus, data_dir, interval, iterations):
    """A live view of every partition and group: rates, ring fill, archive lag, group lag and
    members, with the bus name, data directory and time (Ctrl-C quits)."""
    console = Console()
    with open_running_bus(bus, data_dir) as b:
        before = with_rates(collect(b), None)
        done = 0
        try:
            if console.is_terminal:
                with Live(console=console, auto_refresh=False, screen=True) as live:
                    while True:
                        live.update(frame(before, console.size.height, console.size.width), refresh=True)
                        done += 1
                        if iterations is not None and done >= iterations:
                            break
                        time.sleep(interval)
                        before = with_rates(collect(b), before)
            else:
                out = wide_console()
                while True:
                    out.print(frame(before, 10_000, 10_000))
                    done += 1
                    if iterations is not None and done >= iterations:
                        break
                    out.print()
                    time.sleep(interval)
                    before = with_rates(collect(b), before)
        except KeyboardInterrupt:
            pass
