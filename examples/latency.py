"""Latency microbenchmark: a 64-byte ping-pong between two processes.

    python examples/latency.py [round_trips] [spin|busy]
"""
import multiprocessing as mp
import statistics
import sys
import time

import shmbus


def echo(round_trips, wait, ready):
    with shmbus.connect() as bus, bus.producer() as producer, \
            bus.consumer("ping", wait=wait) as consumer:
        for tp in consumer.assignment():
            consumer.position(tp)   # start at the end now, before saying ready: no ping is missed
        ready.set()
        for _ in range(round_trips):
            msg = consumer.poll(timeout=10)
            producer.send("pong", msg.value)


def main():
    round_trips = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    wait = sys.argv[2] if len(sys.argv) > 2 else "spin"
    with shmbus.connect() as bus:
        for topic in ("ping", "pong"):
            if topic in bus.topics():
                bus.delete_topic(topic)
            bus.create_topic(topic, ring_bytes=1 << 20, durable=False)
        ctx = mp.get_context("spawn")
        ready = ctx.Event()
        peer = ctx.Process(target=echo, args=(round_trips, wait, ready))
        peer.start()
        ready.wait(30)
        rtts = []
        with bus.producer() as producer, bus.consumer("pong", wait=wait) as consumer:
            for tp in consumer.assignment():
                consumer.position(tp)
            value = b"x" * 64
            for _ in range(round_trips):
                start = time.perf_counter_ns()
                producer.send("ping", value)
                consumer.poll(timeout=10)
                rtts.append(time.perf_counter_ns() - start)
        peer.join()
        rtts = sorted(rtts[len(rtts) // 10:])  # drop the warm-up tenth
        q = statistics.quantiles(rtts, n=1000)
        print(f"{wait}: RTT p50 {q[499] / 1000:.1f} us, p99 {q[989] / 1000:.1f} us, "
              f"p99.9 {q[998] / 1000:.1f} us; one-way p50 {q[499] / 2000:.1f} us")
        for topic in ("ping", "pong"):
            bus.delete_topic(topic)


if __name__ == "__main__":
    main()
