"""What linger buys for small records sent one send() at a time: msg/s of 64 B records
with linger=0 (each send() one C append, the default) and with linger=0.005 (records
wait in per-partition batches, one C call per batch), to a memory-only and a durable
topic, with a consumer process iterating over them.

    python bench/linger.py [SECONDS_PER_RUN]      (default 2)

msg/s = records the consumer received / the time from the producer's first send to
the consumer's last record. Producer-side ns/send is also shown.
"""
import multiprocessing as mp
import os
import sys
import tempfile
import time

import shmbus

SIZE = 64


def consume(bus_name, data_dir, topic, ready, out):
    with shmbus.connect(bus_name, data_dir, autostart=False) as bus, bus.consumer(topic) as c:
        ready.set()
        n = 0
        last = None
        while True:
            batch = c.poll_many(10000, timeout=2.0)
            if not batch:
                break
            for i, m in enumerate(batch):
                if m.value == b"":   # the end marker
                    out.put((n + i, time.time_ns() if i else last))
                    return
            n += len(batch)
            last = time.time_ns()
    out.put((n, last))


def run(bus, bus_name, data_dir, topic, linger, seconds, ctx):
    out, ready = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=consume, args=(bus_name, data_dir, topic, ready, out))
    proc.start()
    ready.wait(30)
    time.sleep(0.1)
    payload = b"v" * SIZE
    with bus.producer(linger=linger) as p:
        send = p.send
        sent = 0
        started_ns = time.time_ns()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for _ in range(1000):
                send(topic, payload)
            sent += 1000
        send_ns = (time.time_ns() - started_ns) / sent
        p.flush()
        p.send(topic, b"")
    received, last_ns = out.get(timeout=60)
    proc.join(10)
    return received / ((last_ns - started_ns) / 1e9), send_ns, received, sent


def main(seconds):
    data_dir = tempfile.mkdtemp(prefix="shmbus-linger-")
    bus_name = f"linger{os.getpid()}"
    ctx = mp.get_context("spawn")
    rows = []
    with shmbus.connect(bus_name, data_dir) as bus:
        for durable in (False, True):
            for linger in (0.0, 0.005):
                topic = f"l-{int(durable)}-{int(linger * 1000)}"
                bus.create_topic(topic, ring_bytes=64 << 20, durable=durable)
                rate, send_ns, received, sent = run(bus, bus_name, data_dir, topic, linger, seconds, ctx)
                rows.append((durable, linger, rate, send_ns, received, sent))
                bus.delete_topic(topic)
        bus.stop_supervisor()
    print(f"64 B records, one send() at a time, {seconds:g} s per run, one consumer process "
          f"(load average {os.getloadavg()[0]:.2f})\n")
    print("| topic | linger | msg/s (end to end) | producer ns/send | received / sent |")
    print("|---|---|---|---|---|")
    for durable, linger, rate, send_ns, received, sent in rows:
        print(f"| {'durable' if durable else 'memory-only'} | {linger:g} s | {rate / 1e6:.2f} M | {send_ns:.0f} | "
              f"{received} / {sent} |")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 2.0)
