"""shmbus groups list | describe | reset-offsets | delete (Kafka's kafka-consumer-groups)."""
import json

import click
from rich.table import Table

from .._admin import group_info_json, reset_request
from ._format import wide_console
from ._plumbing import HELP_OPTIONS, CliError, bus_options, exclusive, open_running_bus


def _cell(value):
    return "-" if value is None else str(value)


@click.group(context_settings=HELP_OPTIONS)
def groups():
    """List, describe, reset and delete consumer groups."""


@groups.command("list")
@bus_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(bus, data_dir, as_json):
    """List consumer groups: state, members, generation."""
    with open_running_bus(bus, data_dir) as b:
        rows = b.query("groups")   # the state, members, strategy of each: more than list_groups()
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    table = Table("GROUP", "STATE", "MEMBERS", "GENERATION", "STRATEGY", box=None)
    for row in rows:
        strategy = row["strategy"] and row["strategy"] + (" (sticky)" if row["sticky"] else "")
        table.add_row(row["group"], row["state"], str(row["members"]), str(row["generation"]), _cell(strategy))
    console = wide_console()
    console.print(table)
    for row in rows:
        if row.get("error"):
            console.print(f"group {row['group']} is broken: {row['error']}", markup=False)


@groups.command()
@bus_options
@click.argument("group")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def describe(bus, data_dir, group, as_json):
    """Per partition: committed offset, end offset, lag, and the member that reads it."""
    with open_running_bus(bus, data_dir) as b:
        d = group_info_json(b.describe_group(group))
    if as_json:
        click.echo(json.dumps(d, indent=1))
        return
    console = wide_console()
    strategy = d["strategy"] and d["strategy"] + (" (sticky)" if d["sticky"] else "")
    console.print(f"Group: {d['group']}  state: {d['state']}  generation: {d['generation']}  "
                  f"members: {len(d['members'])}" + (f"  strategy: {strategy}" if strategy else ""))
    if d.get("error"):
        console.print(f"BROKEN: {d['error']}", markup=False)
    table = Table("TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "PID",
                  box=None)
    for p in d["partitions"]:
        table.add_row(p["topic"], str(p["partition"]), _cell(p["committed"]), _cell(p["end_offset"]),
                      _cell(p["lag"]), _cell(p["member_id"]), _cell(p["pid"]))
    console.print(table)


@groups.command("reset-offsets")
@bus_options
@click.argument("group")
@click.option("--to-earliest", is_flag=True, help="The earliest retained offset.")
@click.option("--to-latest", is_flag=True, help="The end: skip everything there is.")
@click.option("--to-offset", "offset", type=click.IntRange(min=0), default=None, metavar="N",
              help="This offset (clamped to what exists).")
@click.option("--topic", "topics", multiple=True,
              help="Reset this topic (repeatable; default: every topic the group has offsets for).")
@click.option("--execute", is_flag=True, help="Apply the reset (default: show it only).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def reset_offsets(bus, data_dir, group, to_earliest, to_latest, offset, topics, execute, as_json):
    """Move a group's committed offsets. A dry run unless --execute; refused while it has live members."""
    exclusive(to_earliest=to_earliest, to_latest=to_latest, to_offset=offset)
    to = "earliest" if to_earliest else "latest" if to_latest else "offset" if offset is not None else None
    if to is None:
        raise CliError("give one of --to-earliest, --to-latest, --to-offset N")
    with open_running_bus(bus, data_dir) as b:
        d = b.call("reset_group_offsets", group=group, execute=execute,
                   **reset_request(offset if to == "offset" else to, list(topics) or None))
    if as_json:
        click.echo(json.dumps(d, indent=1))
        return
    console = wide_console()
    table = Table("TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET", box=None)
    for p in d["partitions"]:
        table.add_row(p["topic"], str(p["partition"]), _cell(p["current"]), str(p["new"]))
    console.print(table)
    if d["executed"]:
        click.echo(f"reset the offsets of group {group!r}")
    else:
        note = f" (it has {d['members']} live member(s): stop them first)" if d["members"] else ""
        click.echo(f"dry run: nothing changed; add --execute to apply{note}", err=True)


@groups.command()
@bus_options
@click.argument("group")
def delete(bus, data_dir, group):
    """Delete a group and its committed offsets (refused while it has live members)."""
    with open_running_bus(bus, data_dir) as b:
        b.delete_group(group)
    click.echo(f"deleted group {group!r}")
