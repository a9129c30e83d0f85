"""shmbus against the transports a Python user would pick instead, in one run.

    python bench/run.py                 # full: 3 runs of everything but the durable pair
    python bench/run.py --durable       # ... and the durable comparisons too
    python bench/run.py --quick         # counts, round trips and durations divided by 10
    python bench/run.py --json out.json --plot out.png

Throughput (1 producer process -> 1 consumer process, 64 B / 1 KiB / 64 KiB, counted
at the consumer), ping-pong latency, latency to a sleeping consumer, latency under
load at fixed rates (coordinated-omission corrected), the idle cost, and with
--durable what archiving costs. Medians of --runs runs, interleaved, and the ratios
shmbus / peer, issue 8's targets first. See bench/README.md for the methods.

The measurements are shmbus._bench's (the same code as `shmbus bench --peers`): every
worker is a spawn process that meets the others at a barrier, and each run has a
time cap after which whatever has not reported is killed.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

from shmbus._bench import fixed_rate, idle, peers, plot, report, shmbus_runs, suite
from shmbus._errors import BenchmarkError


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="divide record counts, round trips and durations by 10")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (default 3)")
    parser.add_argument("--sizes", default="64,1024,65536", help="value sizes in bytes (default 64,1024,65536)")
    parser.add_argument("--round-trips", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--paced", type=int, default=2_000,
                        help="records per run of the sleeping-consumer latency (default 2000, one per 2 ms)")
    parser.add_argument("--rates", default=",".join(str(r) for r in fixed_rate.RATES),
                        help="records/s of the fixed-rate corrected latency runs (default 10000,100000,1000000)")
    parser.add_argument("--rate-seconds", type=float, default=2.0, help="length of each fixed-rate run (2 s)")
    parser.add_argument("--idle-seconds", type=float, default=idle.SECONDS,
                        help=f"length of the idle-cost measurement (default {idle.SECONDS:g} s)")
    parser.add_argument("--durable", action="store_true",
                        help="also the durable comparisons (64 KiB durable vs dd; 64 B durable vs memory-only)")
    parser.add_argument("--durable-mib", type=int, default=1024, help="volume of the 64 KiB durable run (1024)")
    parser.add_argument("--time-cap", type=float, default=30.0, help="seconds per run before it is cut short")
    parser.add_argument("--max-ring", type=int, default=1 << 30,
                        help="largest shmbus ring per run, bytes (default 1 GiB); runs that need more "
                             "use this and report what the memory-only ring overwrote")
    for section in ("throughput", "latency", "sleeping", "rates", "idle"):
        parser.add_argument(f"--no-{section}", action="store_true", help=f"leave out the {section} runs")
    parser.add_argument("--only", default=None,
                        help="comma-separated substrings: only the shmbus rows and peers that match")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write every run's figures here")
    parser.add_argument("--plot", metavar="PNG", default=None,
                        help="also draw latency percentile curves and throughput bars (needs matplotlib)")
    args = parser.parse_args(argv)

    def wanted(*names):
        if args.only is None:
            return True
        parts = [p.strip().lower() for p in args.only.split(",") if p.strip()]
        return any(part in name.lower() for part in parts for name in names)

    if args.plot:
        try:
            plot.require()
        except BenchmarkError as e:
            parser.error(str(e))
    div = 10 if args.quick else 1
    sizes = [int(s) for s in args.sizes.split(",")]
    present, notes = peers.installed_peers()
    chosen = [p for p in present
              if wanted(p.name, p.throughput_row or "", *(row for row, _ in p.latency_rows))]
    plan = suite.Plan(
        sizes=sizes if not args.no_throughput else (),
        counts={size: shmbus_runs.default_count(size) // div for size in sizes},
        modes=[m for m in shmbus_runs.MODES if wanted(m.row, m.key)],
        max_ring=args.max_ring, peers=chosen,
        latency=not args.no_latency, round_trips=args.round_trips // div, warmup=args.warmup // div,
        sleeping_records=0 if args.no_sleeping else max(1, args.paced // div),
        rates=[] if args.no_rates else [int(r) for r in args.rates.split(",") if r.strip()],
        rate_seconds=args.rate_seconds / div,
        idle_seconds=0 if args.no_idle else args.idle_seconds / div,
        durable_mib=max(1, args.durable_mib // div) if args.durable else 0,
        durable_count=1_000_000 // div,
        runs=args.runs, time_cap=args.time_cap)

    data_dir = tempfile.mkdtemp(prefix="shmbus-bench-")
    bus, _ = shmbus_runs.attach_or_start(f"bench{os.getpid()}", data_dir)
    try:
        results = suite.run(plan, bus, progress=lambda line: print(line, file=sys.stderr, flush=True),
                            describe=report.describe)
    finally:
        shmbus_runs.stop_supervisor(bus)
        shutil.rmtree(data_dir, ignore_errors=True)
    results.notes += notes

    out = [report.headline(results) + f"; {'quick (counts and durations / 10)' if args.quick else 'full'} mode",
           ""]
    out += [report.markdown(table) for table in report.tables(results)]
    if results.failures:
        out += ["Failed runs:", ""] + [f"- {f.splitlines()[0]}" for f in results.failures] + [""]
    if results.notes:
        out += ["Notes:", ""] + [f"- {n}" for n in results.notes] + [""]
    print("\n".join(out))

    if args.json:
        with open(args.json, "w") as f:
            json.dump(report.document(results, {"quick": args.quick}), f, indent=1)
    if args.plot:
        plot.write(results, args.plot)
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main())
