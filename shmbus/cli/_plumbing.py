"""What every subcommand shares: --bus/--data-dir, opening the bus, and errors as one line."""

import click

from .._config import BusPaths
from .._errors import ShmbusError


class CliError(click.ClickException):
    def show(self, file=None):
        click.echo(f"shmbus: error: {self.format_message()}", err=True)


class Group(click.Group):
    """Turns every shmbus error into one line on stderr and exit status 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (ShmbusError, OSError, ValueError, TypeError) as e:
            raise CliError(str(e) or type(e).__name__) from None
        except KeyboardInterrupt:
            raise SystemExit(130) from None


def bus_options(f):
    f = click.option("--data-dir", envvar="SHMBUS_DATA_DIR", default=None,
                     help="The bus's data directory [env SHMBUS_DATA_DIR].")(f)
    f = click.option("--bus", envvar="SHMBUS_BUS", default=None,
                     help="The bus name (default 'default') [env SHMBUS_BUS].")(f)
    return f


def paths_of(bus, data_dir):
    return BusPaths.resolve(bus, data_dir)


def open_bus(bus, data_dir, autostart=True):
    import shmbus
    return shmbus.connect(bus, data_dir, autostart=autostart)


def open_running_bus(bus, data_dir):
    """For commands that only read (list, describe, stats, group admin): never start a
    supervisor; if the bus does not run, one line says so."""
    return open_bus(bus, data_dir, autostart=False)
