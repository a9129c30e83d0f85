"""shmbus serve | stop: run a bus's supervisor in the foreground, stop it cleanly."""
import errno
import socket

import click

from ._plumbing import HELP_OPTIONS, CliError, bus_options, open_bus, paths_of


@click.command(context_settings=HELP_OPTIONS)
@bus_options
@click.option("--share-group", default=None, metavar="GROUP",
              help="Also let the members of this Unix group use the bus (its rings, socket "
                   "and files become 0660/2770, group GROUP); remembered in the data dir.")
@click.option("--unblock-timeout", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              metavar="SECONDS",
              help="How long a live producer may hold a record half-written (stopped, traced, swapped "
                   "out) before it is revoked and its partition moves on.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None, metavar="PORT",
              help="Serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port, logged).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, metavar="HOST",
              help="The address the metrics endpoint listens on (0.0.0.0: every interface).")
def serve(bus, data_dir, share_group, unblock_timeout, metrics_port, metrics_host):
    """Run the bus's supervisor in the foreground (SIGTERM: clean stop)."""
    from .._errors import SupervisorRunning
    from .._supervisor import serve as run
    address = (metrics_host, metrics_port) if metrics_port is not None else None
    try:
        run(paths_of(bus, data_dir), share_group=share_group, unblock_timeout=unblock_timeout,
            metrics_address=address)
    except SupervisorRunning as e:
        raise CliError(str(e)) from None
    except OSError as e:
        if address is not None and (isinstance(e, socket.gaierror)
                                    or e.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)):
            raise CliError(f"--metrics-port {metrics_port}: cannot listen on {metrics_host}:{metrics_port}: "
                           f"{e.strerror}") from None
        raise


@click.command(context_settings=HELP_OPTIONS)
@bus_options
@click.option("--timeout", type=click.FloatRange(min=0), default=30.0, show_default=True,
              metavar="SECONDS", help="Seconds to wait for it to exit.")
def stop(bus, data_dir, timeout):
    """Stop the bus's supervisor cleanly: nothing of the bus is left in /dev/shm."""
    from .._errors import SupervisorUnavailable
    from .._link import lock_holder
    paths = paths_of(bus, data_dir)
    holder = lock_holder(paths)
    if holder is not None and holder.status() in STUCK:
        raise CliError(_not_answering(paths, holder))
    try:
        with open_bus(bus, data_dir, autostart=False) as b:
            b.stop_supervisor(timeout)
    except SupervisorUnavailable as e:
        holder = lock_holder(paths)
        if holder is None:
            click.echo(f"no supervisor runs for bus {paths.bus!r}", err=True)
            return
        raise CliError(f"{_not_answering(paths, holder)} ({e})") from None
    click.echo(f"stopped bus {paths.bus!r}")


# psutil statuses of a process that cannot answer until someone else acts
STUCK = ("stopped", "tracing-stop", "zombie", "dead")


def _not_answering(paths, holder):
    return (f"the supervisor of bus {paths.bus!r} ({holder.describe()}) holds its lock but does not answer; "
            f"resume it (kill -CONT) or kill it")
