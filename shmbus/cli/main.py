"""The `shmbus` command, assembled: the root group and every subcommand on it.

Each subcommand module defines its own click command or group and knows nothing of
this one; the plumbing they share is in _plumbing.py, the formatting in _format.py.
"""
import click

from ._plumbing import Group
from .bench import bench
from .bridge import bridge
from .demo import demo
from .groups import groups
from .records import consume, produce
from .stats import stats, top
from .supervisor import serve, stop
from .topics import topics


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="shmbus")
def cli():
    """shmbus: Kafka's model over shared memory, for processes on one host."""


for command in (serve, stop, demo, topics, produce, consume, groups, stats, top, bench, bridge):
    cli.add_command(command)


def main():
    cli(prog_name="shmbus")
