"""Durable-log benchmark: what archiving to disk costs.

  1. 64 KiB records into a durable topic, flushed at the end (MB/s from the first
     send to flush() returning), next to `dd bs=1M conv=fdatasync` of the same
     volume into the same directory.
  2. 64 B per-record throughput, 1 producer process -> 1 consumer process,
     durable topic next to a memory-only one.

Each figure is the median of --runs runs, measured in this run: compare ratios.
    python bench/durable.py [--dir DIR] [--mib 1024] [--runs 3]
"""
import argparse
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import tempfile
import time

import shmbus


def _produce_big(bus, data_dir, topic, count, size, result):
    with shmbus.connect(bus, data_dir) as b, b.producer() as p:
        value = b"x" * size
        start = time.perf_counter()
        for _ in range(count):
            p.send(topic, value)
        p.flush(timeout=600)
        result.put(time.perf_counter() - start)


def durable_mb_per_s(directory, mib, size=64 << 10):
    data_dir = tempfile.mkdtemp(dir=directory)
    bus = f"bd{os.getpid()}"
    try:
        with shmbus.connect(bus, data_dir) as b:
            b.create_topic("big", ring_bytes=64 << 20)
            count = (mib << 20) // size
            result = mp.get_context("spawn").Queue()
            proc = mp.get_context("spawn").Process(target=_produce_big,
                                                   args=(bus, data_dir, "big", count, size, result))
            proc.start()
            seconds = result.get(timeout=900)
            proc.join()
            b.stop_supervisor()
            time.sleep(0.5)
        return count * size / seconds / 1e6
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def dd_mb_per_s(directory, mib):
    path = os.path.join(directory, f"dd-{os.getpid()}")
    try:
        start = time.perf_counter()
        subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}", "conv=fdatasync"],
                       check=True, capture_output=True)
        return (mib << 20) / (time.perf_counter() - start) / 1e6
    finally:
        os.unlink(path)


def _produce_small(bus, data_dir, count, ready):
    with shmbus.connect(bus, data_dir) as b, b.producer() as p:
        ready.wait(60)
        value = b"x" * 64
        send = p.send
        for _ in range(count):
            send("small", value)


def _consume_small(bus, data_dir, count, ready, result):
    with shmbus.connect(bus, data_dir) as b, b.consumer("small", auto_offset_reset="earliest") as c:
        ready.set()
        got, start = 0, None
        while got < count:
            batch = c.poll_many(10000, timeout=30)
            if not batch:
                break
            if start is None:
                start = time.perf_counter()
            got += len(batch)
        result.put(got / (time.perf_counter() - start))


def small_msgs_per_s(directory, durable, count=1_000_000):
    data_dir = tempfile.mkdtemp(dir=directory)
    bus = f"bs{os.getpid()}"
    ctx = mp.get_context("spawn")
    try:
        with shmbus.connect(bus, data_dir) as b:
            b.create_topic("small", ring_bytes=64 << 20, durable=durable)
            ready, result = ctx.Event(), ctx.Queue()
            consumer = ctx.Process(target=_consume_small, args=(bus, data_dir, count, ready, result))
            producer = ctx.Process(target=_produce_small, args=(bus, data_dir, count, ready))
            consumer.start()
            producer.start()
            rate = result.get(timeout=300)
            producer.join()
            consumer.join()
            b.stop_supervisor()
            time.sleep(0.5)
        return rate
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where data dirs and the dd file go")
    parser.add_argument("--mib", type=int, default=1024, help="volume of the 64 KiB test")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = {"durable 64 KiB MB/s": [], "dd bs=1M fdatasync MB/s": [],
            "durable 64 B msg/s": [], "memory-only 64 B msg/s": []}
    for run in range(args.runs):
        rows["durable 64 KiB MB/s"].append(durable_mb_per_s(args.dir, args.mib))
        rows["dd bs=1M fdatasync MB/s"].append(dd_mb_per_s(args.dir, args.mib))
        rows["durable 64 B msg/s"].append(small_msgs_per_s(args.dir, True))
        rows["memory-only 64 B msg/s"].append(small_msgs_per_s(args.dir, False))
        print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in rows.items()), flush=True)
    median = {k: statistics.median(v) for k, v in rows.items()}
    print("\n| measure | median | min-max |\n|---|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {median[k]:,.0f} | {min(v):,.0f}-{max(v):,.0f} |")
    print(f"\ndurable 64 KiB / dd: {median['durable 64 KiB MB/s'] / median['dd bs=1M fdatasync MB/s']:.0%}")
    print(f"durable 64 B / memory-only 64 B: {median['durable 64 B msg/s'] / median['memory-only 64 B msg/s']:.0%}")


if __name__ == "__main__":
    main()
