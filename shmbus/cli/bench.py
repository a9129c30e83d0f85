"""shmbus bench: throughput and ping-pong latency of this bus, between real processes,
on throwaway topics it creates and deletes."""
import json

import click
from rich.console import Console
from rich.table import Table

from .._bench.harness import format_rate
from .._bench.shmbus_runs import (attach_or_start, default_count, ring_bytes_for, shmbus_latency,
                                  shmbus_throughput, stop_supervisor)
from .._errors import BenchmarkError
from ._format import human, parse_size
from ._plumbing import CliError, bus_options


@click.command()
@bus_options
@click.option("--size", "sizes", multiple=True, default=("64",), show_default=True,
              help="Value size per record (65536, 1KiB, 64KiB); repeat for several.")
@click.option("--count", type=int, default=None,
              help="Records per producer [default by size: 1,000,000 up to 256 B, 500,000 up to 16 KiB, "
                   "100,000 beyond].")
@click.option("--producers", type=int, default=1, show_default=True, help="Producer processes.")
@click.option("--partitions", type=int, default=1, show_default=True)
@click.option("--batch", type=int, default=None, help="Send with send_many, this many records per call.")
@click.option("--ring-size", default=None,
              help="Per-partition ring [default: room for the whole run, at most 1 GiB].")
@click.option("--wait", type=click.Choice(["spin", "busy"]), default="spin", show_default=True,
              help="The consumer's wait mode in the throughput runs.")
@click.option("--latency/--no-latency", default=True, show_default=True,
              help="Also measure 64 B ping-pong latency (wait=spin and wait=busy).")
@click.option("--round-trips", type=int, default=20_000, show_default=True)
@click.option("--warmup", type=int, default=2_000, show_default=True)
@click.option("--time-cap", type=float, default=60.0, show_default=True,
              help="Seconds a run may take before it is cut short.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def bench(bus, data_dir, sizes, count, producers, partitions, batch, ring_size, wait, latency,
          round_trips, warmup, time_cap, as_json):
    """Measure throughput (N producer processes -> 1 consumer process) and latency."""
    sizes = [parse_size(s) for s in sizes]
    if any(s < 1 for s in sizes) or producers < 1 or (count is not None and count < 1):
        raise CliError("--size, --count and --producers must be positive")
    ring_bytes = parse_size(ring_size) if ring_size else None
    console = Console(stderr=as_json)
    b, started = attach_or_start(bus, data_dir)
    throughputs, latencies = [], []  # latencies: (wait mode, Latency)
    try:
        for size in sizes:
            records = count or default_count(size)
            ring = ring_bytes or ring_bytes_for(size, records * producers // partitions)
            with console.status(f"throughput: {producers} x {records:,} records of {human(size)} ..."):
                throughputs.append(shmbus_throughput(
                    b, size, records, producers=producers, batch=batch, partitions=partitions,
                    ring_bytes=ring, wait=wait, time_cap=time_cap))
        if latency:
            for mode in ("spin", "busy"):
                with console.status(f"latency: {round_trips:,} round trips, wait={mode} ..."):
                    latencies.append((mode, shmbus_latency(b, wait=mode, round_trips=round_trips,
                                                           warmup=warmup, time_cap=time_cap)))
    except BenchmarkError as e:
        raise CliError(f"benchmark failed: {str(e).splitlines()[0]}") from None
    finally:
        if started:
            stop_supervisor(b)
        else:
            b.close()

    if as_json:
        click.echo(json.dumps({"throughput": [t.as_dict() for t in throughputs],
                               "latency": [dict(lat.summary(), wait=mode) for mode, lat in latencies]}, indent=1))
        return
    table = Table("SIZE", "PRODUCERS", "SEND", "RECORDS", "SECONDS", "MSG/S", "MB/S", "NOTES",
                  title="Throughput, counted at the consumer", box=None)
    for t in throughputs:
        notes = []
        if t.capped:
            notes.append(f"time-capped: {t.received:,} of {t.target:,} received")
        if t.missed:
            notes.append(f"{t.missed:,} overwritten before read (memory-only ring)")
        table.add_row(human(t.record_bytes), str(t.producers), f"send_many({t.batch})" if t.batch else "send",
                      f"{t.received:,}", f"{t.seconds:.3f}", format_rate(t.msg_per_s), f"{t.mb_per_s:.1f}",
                      "; ".join(notes))
    console.print(table)
    if latencies:
        table = Table("WAIT", "ROUND TRIPS", "RTT p50", "p99", "p99.9", "max", "ONE-WAY p50", "ONE-WAY p99",
                      title="Latency, 64 B ping-pong, microseconds (one-way = RTT/2)", box=None)
        for mode, lat in latencies:
            s = lat.summary()
            table.add_row(mode, f"{s['round_trips']:,}", f"{s['rtt_p50_us']:.2f}",
                          f"{s['rtt_p99_us']:.2f}", f"{s['rtt_p999_us']:.2f}", f"{s['rtt_max_us']:.1f}",
                          f"{s['one_way_p50_us']:.2f}", f"{s['one_way_p99_us']:.2f}")
        console.print(table)
