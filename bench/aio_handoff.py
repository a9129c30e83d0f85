"""The cost of an asyncio hand-off: one-way latency to a consumer asleep in `await
c.poll()` (shmbus.aio, on asyncio and on uvloop) next to one asleep in the sync
`c.poll()`, in the same run.

    python bench/aio_handoff.py [RECORDS_PER_CONSUMER]      (default 2000: ~20 s)

One producer process sends a 64 B record every INTERVAL, in turn to the topic of each
consumer process (so each one sleeps between its records, and they never compete for
the same wake-up); one-way latency = when poll() returns the record to the program
minus the record's timestamp_ns (taken by the producer's append), both CLOCK_REALTIME
on one host. The first WARMUP records of each are not counted.
"""
import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time

import shmbus

INTERVAL = 0.001
WARMUP = 50
MODES = ("sync", "asyncio", "uvloop")


def sync_consumer(bus_name, data_dir, topic, count, ready, out):
    with shmbus.connect(bus_name, data_dir, autostart=False) as bus, bus.consumer(topic) as c:
        ready.set()
        lat = []
        while len(lat) < count:
            m = c.poll(timeout=5.0)
            if m is None:
                break
            lat.append(time.time_ns() - m.timestamp_ns)
    out.put((topic, lat))


def aio_consumer(bus_name, data_dir, topic, count, ready, out, loop):
    import shmbus.aio

    async def main():
        async with shmbus.aio.connect(bus_name, data_dir, autostart=False) as bus:
            async with bus.consumer(topic) as c:
                ready.set()
                lat = []
                while len(lat) < count:
                    m = await c.poll(timeout=5.0)
                    if m is None:
                        break
                    lat.append(time.time_ns() - m.timestamp_ns)
        out.put((topic, lat))
    if loop == "uvloop":
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())


def main(count):
    data_dir = tempfile.mkdtemp(prefix="shmbus-handoff-")
    bus_name = f"handoff{os.getpid()}"
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    with shmbus.connect(bus_name, data_dir) as bus:
        for mode in MODES:
            bus.create_topic(f"h-{mode}", ring_bytes=1 << 20, durable=False)
        procs = []
        for mode in MODES:
            ready = ctx.Event()
            if mode == "sync":
                proc = ctx.Process(target=sync_consumer, args=(bus_name, data_dir, "h-sync", count, ready, out))
            else:
                proc = ctx.Process(target=aio_consumer, args=(bus_name, data_dir, f"h-{mode}", count, ready, out,
                                                              mode))
            proc.start()
            ready.wait(30)
            procs.append(proc)
        time.sleep(0.2)
        payload = b"x" * 64
        with bus.producer() as p:
            due = time.monotonic()
            for i in range(count + WARMUP):
                for mode in MODES:
                    due += INTERVAL
                    pause = due - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    p.send(f"h-{mode}", payload)
        results = dict(out.get(timeout=30) for _ in MODES)
        for proc in procs:
            proc.join(10)
        bus.stop_supervisor()
    print(f"one-way latency to a sleeping consumer, 64 B, a record every {INTERVAL * len(MODES) * 1e3:.0f} ms "
          f"per consumer, {count} records each (load average {os.getloadavg()[0]:.2f})\n")
    print("| consumer | p50 | p90 | p99 |")
    print("|---|---|---|---|")
    for mode in MODES:
        lat = sorted(results[f"h-{mode}"][WARMUP:])
        q = statistics.quantiles(lat, n=100)
        name = {"sync": "sync `c.poll()`", "asyncio": "`await c.poll()` (asyncio)",
                "uvloop": "`await c.poll()` (uvloop)"}[mode]
        print(f"| {name} | {q[49] / 1e3:.1f} us | {q[89] / 1e3:.1f} us | {q[98] / 1e3:.1f} us |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
