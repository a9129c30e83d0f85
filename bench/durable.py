"""Durable-log benchmark: what archiving to disk costs.

  1. 64 KiB records into a durable topic, flushed at the end (MB/s from the first
     send to flush() returning), next to `dd bs=1M conv=fdatasync` of the same
     volume into the same directory.
  2. 64 B per-record throughput, 1 producer process -> 1 consumer process,
     durable topic next to a memory-only one.

Each figure is the median of --runs runs, measured in this run: compare ratios.
bench/run.py --durable runs the same measurements (shmbus._bench.durable) with
everything else.
    python bench/durable.py [--dir DIR] [--mib 1024] [--runs 3]
"""
import argparse
import os
import shutil
import sys
import tempfile

from shmbus._bench import report, shmbus_runs, suite


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the bus's data dir and the dd file go")
    parser.add_argument("--mib", type=int, default=1024, help="volume of the 64 KiB test")
    parser.add_argument("--count", type=int, default=1_000_000, help="records of the 64 B test")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    plan = suite.Plan(sizes=(), modes=(), latency=False, sleeping_records=0, durable_mib=args.mib,
                      durable_count=args.count, runs=args.runs, time_cap=600.0)
    data_dir = tempfile.mkdtemp(dir=args.dir)
    bus, _ = shmbus_runs.attach_or_start(f"bd{os.getpid()}", data_dir)
    try:
        results = suite.run(plan, bus, progress=lambda line: print(line, file=sys.stderr, flush=True),
                            describe=report.describe)
    finally:
        shmbus_runs.stop_supervisor(bus)
        shutil.rmtree(data_dir, ignore_errors=True)
    print(report.headline(results) + "\n")
    print(report.markdown(report.durable_table(results)))
    for what, value, goal, met in report.target_rows(results):
        print(f"{what}: {value:.0%} (target {goal}: {'met' if met else 'not met'})")
    for failure in results.failures:
        print(f"FAILED: {failure.splitlines()[0]}")
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main())
