"""shmbus bench: throughput and latency of this bus between real processes, on throwaway
topics it creates and deletes; with --peers, the same measurements of the transports
a Python user would pick instead, side by side. The measurements are bench/run.py's
(shmbus._bench): one harness, one set of workers."""
import json
import re

import click
from rich.console import Console
from rich.table import Table

from .._bench import peers, plot, report, shmbus_runs, suite
from .._errors import BenchmarkError
from ._format import parse_size, wide_console
from ._plumbing import CliError, bus_options

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$")


def parse_rate(text):
    """'10000', '100k', '1M' -> records per second."""
    match = _RATE.match(str(text))
    if not match:
        raise CliError(f"not a rate: {text!r} (examples: 10000, 100k, 1M)")
    rate = int(float(match.group(1)) * {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2).lower()])
    if rate < 1:
        raise CliError(f"a rate must be at least 1 record/s, got {text!r}")
    return rate


@click.command()
@bus_options
@click.option("--size", "sizes", multiple=True, default=("64",), show_default=True,
              help="Value size per record (65536, 1KiB, 64KiB); repeat for several.")
@click.option("--count", type=int, default=None,
              help="Records per producer [default by size: 1,000,000 up to 256 B, 500,000 up to 16 KiB, "
                   "100,000 beyond].")
@click.option("--producers", type=int, default=1, show_default=True, help="Producer processes.")
@click.option("--partitions", type=int, default=1, show_default=True, help="Partitions of the topic each run uses.")
@click.option("--mode", "modes", multiple=True, type=click.Choice([m.key for m in shmbus_runs.MODES]),
              help="How shmbus sends and reads in the throughput runs; repeat for several "
                   "[default: send/poll_many, or send_many/poll_many with --batch].")
@click.option("--batch", type=int, default=None,
              help="Records per send_many call (and per Queue put with --peers) [default 64, 16 above 1 KiB].")
@click.option("--ring-size", default=None,
              help="Per-partition ring [default: room for the whole run, at most 1 GiB].")
@click.option("--wait", type=click.Choice(["spin", "busy"]), default="spin", show_default=True,
              help="The consumer's wait mode in the throughput runs.")
@click.option("--latency/--no-latency", default=True, show_default=True,
              help="Also measure 64 B ping-pong latency (wait=spin and wait=busy) and latency to a "
                   "sleeping consumer.")
@click.option("--round-trips", type=int, default=20_000, show_default=True,
              help="Ping-pong round trips of each latency run.")
@click.option("--warmup", type=int, default=2_000, show_default=True,
              help="Round trips before the measured ones (not counted).")
@click.option("--paced", type=int, default=1_000, show_default=True,
              help="Records (one every 2 ms) of the sleeping-consumer latency, next to a posix semaphore's; 0: off.")
@click.option("--peers", "with_peers", is_flag=True,
              help="Also measure the peers that are installed (pyzmq, faster-fifo, iceoryx2, multiprocessing); "
                   "missing ones are left out with a note.")
@click.option("--rate", "rates", multiple=True,
              help="Latency at this fixed rate, 64 B records, corrected for coordinated omission "
                   "(10k, 100k, 1M); repeat for several.")
@click.option("--rate-seconds", type=float, default=2.0, show_default=True, help="Length of each --rate run.")
@click.option("--runs", type=int, default=1, show_default=True,
              help="Runs of each measurement, interleaved; tables show medians.")
@click.option("--time-cap", type=float, default=60.0, show_default=True,
              help="Seconds a run may take before it is cut short.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--plot", "plot_path", default=None, metavar="FILE.png",
              help="Draw latency percentile curves and throughput bars into FILE.png (needs matplotlib, "
                   "the 'bench' extra).")
def bench(bus, data_dir, sizes, count, producers, partitions, modes, batch, ring_size, wait, latency,
          round_trips, warmup, paced, with_peers, rates, rate_seconds, runs, time_cap, as_json, plot_path):
    """Measure throughput (N producer processes -> 1 consumer process) and latency.

    A progress line per run goes to stderr; the tables (or --json) to stdout."""
    sizes = [parse_size(s) for s in sizes]
    if any(s < 1 for s in sizes) or producers < 1 or (count is not None and count < 1):
        raise CliError("--size, --count and --producers must be positive")
    if runs < 1 or round_trips < 1 or warmup < 0 or paced < 0 or (batch is not None and batch < 1):
        raise CliError("--runs, --round-trips and --batch must be positive, --warmup and --paced not negative")
    if with_peers and (producers > 1 or partitions > 1):
        raise CliError("--peers compares 1 producer with 1 consumer on 1 partition: "
                       "leave --producers and --partitions at 1")
    if rate_seconds <= 0:
        raise CliError("--rate-seconds must be positive")
    rate_list = [parse_rate(r) for r in rates]
    chosen = [shmbus_runs.MODES_BY_KEY[k] for k in modes] or [
        shmbus_runs.MODES_BY_KEY["send_many/poll_many" if batch else "send/poll_many"]]
    if plot_path:
        try:
            plot.require()
        except BenchmarkError as e:
            raise CliError(str(e)) from None
    notes = []
    present = []
    if with_peers:
        present, notes = peers.installed_peers()
    plan = suite.Plan(
        sizes=sizes, counts={size: count for size in sizes} if count else {}, modes=chosen, batch=batch,
        producers=producers, partitions=partitions, wait=wait,
        ring_bytes=parse_size(ring_size) if ring_size else None, peers=present,
        latency=latency, round_trips=round_trips, warmup=warmup,
        sleeping_records=paced if latency else 0, rates=rate_list, rate_seconds=rate_seconds,
        runs=runs, time_cap=time_cap)
    for note in notes:
        click.echo(f"shmbus bench: {note}", err=True)

    b, started = shmbus_runs.attach_or_start(bus, data_dir)
    try:
        results = suite.run(plan, b, progress=lambda line: click.echo(line, err=True), describe=report.describe)
    except BenchmarkError as e:
        raise CliError(f"benchmark failed: {str(e).splitlines()[0]}") from None
    finally:
        if started:
            shmbus_runs.stop_supervisor(b)
        else:
            b.close()
    results.notes += notes
    if plot_path:
        try:
            plot.write(results, plot_path)
        except BenchmarkError as e:
            results.failures.append(f"plot: {e}")
            plot_path = None
    if as_json:
        click.echo(json.dumps(report.document(results), indent=1))
    else:
        _print_tables(results)
    if results.failures:
        first = results.failures[0].split(": ", 1)[-1].splitlines()[0]
        raise CliError(f"benchmark failed ({len(results.failures)} run(s)): {first}")
    if plot_path:
        Console(stderr=True).print(f"plot written to {plot_path}", highlight=False)


def _print_tables(results):
    console = wide_console()
    console.print(report.headline(results), highlight=False)
    for table in report.tables(results):
        shown = Table(*table.header, title=table.title, box=None, title_justify="left")
        for row in table.rows:
            shown.add_row(*row)
        console.print(shown)
    for note in results.notes:
        console.print(f"note: {note}", highlight=False)
