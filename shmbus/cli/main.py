"""The `shmbus` command, assembled: the root group and every subcommand on it.

Each subcommand module defines its own click command or group and knows nothing of
this one; the plumbing they share is in _plumbing.py, the formatting in _format.py.
"""
import click

from ._plumbing import HELP_OPTIONS, Group, root_bus_options, run
from .bench import bench
from .bridge import bridge
from .consume import consume
from .demo import demo
from .doctor import doctor
from .groups import groups
from .produce import produce
from .record import record, replay
from .stats import stats
from .supervisor import serve, stop
from .top import top
from .topics import topics


@click.group(cls=Group, context_settings=HELP_OPTIONS)
@click.version_option(package_name="shmbus")
@root_bus_options
def cli(bus, data_dir):
    """shmbus: Kafka's model over shared memory, for processes on one host.

    --bus and --data-dir may come before the subcommand or after it."""


for command in (serve, stop, demo, topics, produce, consume, groups, stats, top, record, replay, doctor, bench,
                bridge):
    cli.add_command(command)


def main(args=None):
    run(cli, args)
