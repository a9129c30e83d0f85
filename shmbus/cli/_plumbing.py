"""What every subcommand shares: --bus/--data-dir (before or after the subcommand),
opening the bus, refusing conflicting flags, and every error as one line in the
user's words."""
import functools
import os
import sys

import click

from .._config import BusPaths
from .._errors import ShmbusError

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}
# click >= 8.2 raises this for a group given no subcommand; older ones print the help themselves.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class CliError(click.ClickException):
    def show(self, file=None):
        click.echo(f"shmbus: error: {self.format_message()}", err=True)


class ReaderGone(Exception):
    """stdout's reader went away (`shmbus consume t | head -3`). Not an OSError: click
    turns an EPIPE OSError into exit status 1, and this is a normal end."""


class Group(click.Group):
    """Turns every shmbus error into one line on stderr and exit status 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise ReaderGone() from None
        except (ShmbusError, OSError, ValueError, TypeError) as e:
            raise CliError(str(e) or type(e).__name__) from None
        except KeyboardInterrupt:
            raise SystemExit(130) from None


def bus_options(f):
    """--bus and --data-dir on a subcommand. They may also come before it (`shmbus --bus x
    topics list`), from the root group, or from SHMBUS_BUS / SHMBUS_DATA_DIR, which the
    root group reads: one given after the subcommand wins, then one before, then the
    environment."""
    @functools.wraps(f)
    def with_bus(*args, bus=None, data_dir=None, **kwargs):
        root = click.get_current_context().find_root().params
        return f(*args, bus=bus if bus is not None else root.get("bus"),
                 data_dir=data_dir if data_dir is not None else root.get("data_dir"), **kwargs)
    with_bus = click.option("--data-dir", default=None, metavar="DIR",
                            help="The bus's data directory [env SHMBUS_DATA_DIR].")(with_bus)
    with_bus = click.option("--bus", default=None, metavar="NAME",
                            help="The bus name (default 'default') [env SHMBUS_BUS].")(with_bus)
    return with_bus


def root_bus_options(f):
    f = click.option("--data-dir", envvar="SHMBUS_DATA_DIR", default=None, metavar="DIR",
                     help="The bus's data directory [env SHMBUS_DATA_DIR]; also accepted after "
                          "the subcommand.")(f)
    f = click.option("--bus", envvar="SHMBUS_BUS", default=None, metavar="NAME",
                     help="The bus name (default 'default') [env SHMBUS_BUS]; also accepted after "
                          "the subcommand.")(f)
    return f


def exclusive(**given):
    """Refuse two flags that contradict each other: exclusive(json=as_json, prometheus=...)
    with each flag's value (None or False when not given). Names use _ for -."""
    chosen = [name for name, value in given.items() if value not in (None, False, ())]
    if len(chosen) > 1:
        flags = [_flag(name) for name in chosen]
        raise CliError(f"{' and '.join(flags)} cannot be used together: give one")


def _flag(name):
    return name if name.startswith("-") else ("-" if len(name) == 1 else "--") + name.replace("_", "-")


def paths_of(bus, data_dir):
    return BusPaths.resolve(bus, data_dir)


def open_bus(bus, data_dir, autostart=True):
    import shmbus
    return shmbus.connect(bus, data_dir, autostart=autostart)


def run(command, args=None):
    """Run the root command as a program: usage errors as one line (with where to find
    help), a closed stdout (`shmbus consume t | head -3`) as a quiet exit 0."""
    try:
        code = command.main(args=args, prog_name="shmbus", standalone_mode=False)
    except _NO_ARGS_IS_HELP as e:   # `shmbus`, `shmbus topics`: the help, not an error
        click.echo(e.ctx.get_help())
        code = 0
    except click.UsageError as e:
        where = e.ctx.command_path if e.ctx is not None else "shmbus"
        click.echo(f"shmbus: error: {_usage_message(e)} (see '{where} --help')", err=True)
        code = e.exit_code
    except click.ClickException as e:
        e.show()
        code = e.exit_code
    except click.Abort:
        code = 130
    except (ReaderGone, BrokenPipeError):
        _quiet_stdout()
        code = 0
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
    sys.exit(code if isinstance(code, int) else 0)


def _usage_message(e):
    message = e.format_message()
    # click: "Invalid value for '--partitions' / '-p': 'x' is not a valid integer." -> one line
    return " ".join(message.split())


def _quiet_stdout():
    """The reader of stdout is gone: point stdout at /dev/null so the interpreter's
    last flush does not fail too."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
def open_running_bus(bus, data_dir):
    """For commands that only read (list, describe, stats, group admin): never start a
    supervisor; if the bus does not run, one line says so."""
    return open_bus(bus, data_dir, autostart=False)
