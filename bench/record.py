"""The recorder's ceiling next to the bus's own throughput, in the same run.

    python bench/record.py                 # 64 B and 1 KiB records, zstd / lz4 / none (~1 minute)
    python bench/record.py --count 200000 --size 64 --compression zstd

For each record size, on a private bus:

  bus read     a consumer reading N records already in the ring (poll_many), nothing
               else: the most a reader on this bus takes in, the recorder's upper bound;
  bus live     a producer process sending N records at full speed (send) to a consumer
               process: what the bus carries end to end;
  record       what `shmbus record` does (the same consumer loop and RecordWriter)
               over the same N records, writing an MCAP file on the data dir's disk,
               for each compression: the recorder's ceiling;
  record live  the recorder on a live stream from a producer process sending at full
               speed: the records it recorded per second, and how many it was behind
               when the producer finished (0: it kept up).

MB/s counts value bytes. Progress goes to stderr, the table to stdout (markdown).
"""
import argparse
import multiprocessing
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import shmbus  # noqa: E402
from shmbus._recording import RecordWriter  # noqa: E402

SPAWN = multiprocessing.get_context("spawn")


def _producer(bus, data_dir, topic, count, size, ready, go):
    import shmbus
    value = b"v" * size
    with shmbus.connect(bus, data_dir, autostart=False) as b, b.producer() as p:
        p.partitions_for(topic)
        ready.set()
        go.wait()
        send = p.send
        for _ in range(count):
            send(topic, value, partition=0)


def _consumer(bus, data_dir, topic, count, ready, go, result):
    import shmbus
    with shmbus.connect(bus, data_dir, autostart=False) as b, \
            b.consumer(topic, auto_offset_reset="latest") as c:
        c.position(shmbus.TopicPartition(topic, 0))
        ready.set()
        go.wait()
        got = 0
        start = None
        while got < count:
            batch = c.poll_many(4096, timeout=1.0)
            if batch and start is None:
                start = time.perf_counter()
            got += len(batch)
        result.value = time.perf_counter() - (start or time.perf_counter())


def read_all(b, topic, count):
    with b.consumer(topic, auto_offset_reset="earliest") as c:
        start = time.perf_counter()
        got = 0
        while got < count:
            got += len(c.poll_many(4096, timeout=1.0))
        return time.perf_counter() - start


def record_all(b, topic, count, path, compression):
    with b.consumer(topic, auto_offset_reset="earliest") as c, open(path, "wb") as f, \
            RecordWriter(f, compression) as writer:
        writer.add_topic(topic, 1, False)
        start = time.perf_counter()
        while writer.count < count:
            batch = c.poll_many(4096, timeout=1.0)
            if batch:
                writer.write(batch)
        writer.finish()
        return time.perf_counter() - start, os.path.getsize(path)


def live_pair(b, topic, count, size):
    """A producer process -> a consumer process, at full speed: seconds at the consumer."""
    ready = [SPAWN.Event(), SPAWN.Event()]
    go = SPAWN.Event()
    result = SPAWN.Value("d", 0.0)
    consumer = SPAWN.Process(target=_consumer, args=(b.name, b.data_dir, topic, count, ready[0], go, result))
    producer = SPAWN.Process(target=_producer, args=(b.name, b.data_dir, topic, count, size, ready[1], go))
    consumer.start()
    producer.start()
    for e in ready:
        e.wait(30)
    go.set()
    producer.join(120)
    consumer.join(120)
    return result.value


def record_live(b, topic, count, size, path, compression):
    """The recorder (this process) on a live producer process: (records/s recorded,
    records behind when the producer finished)."""
    ready, go = SPAWN.Event(), SPAWN.Event()
    producer = SPAWN.Process(target=_producer, args=(b.name, b.data_dir, topic, count, size, ready, go))
    with b.consumer(topic, auto_offset_reset="latest") as c, open(path, "wb") as f, \
            RecordWriter(f, compression) as writer:
        c.position(shmbus.TopicPartition(topic, 0))
        writer.add_topic(topic, 1, False)
        producer.start()
        ready.wait(30)
        go.set()
        start = time.perf_counter()
        behind = None
        while writer.count < count:
            batch = c.poll_many(4096, timeout=1.0)
            if batch:
                writer.write(batch)
            if behind is None and not producer.is_alive():
                behind = count - writer.count
        seconds = time.perf_counter() - start
    producer.join(30)
    return count / seconds, behind if behind is not None else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300_000)
    parser.add_argument("--size", type=int, action="append")
    parser.add_argument("--compression", action="append", choices=["zstd", "lz4", "none"])
    args = parser.parse_args()
    sizes = args.size or [64, 1024]
    compressions = args.compression or ["zstd", "lz4", "none"]
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as tmp:
        b = shmbus.connect(f"recbench{os.getpid()}", os.path.join(tmp, "data"))
        try:
            for size in sizes:
                count = args.count if size <= 256 else args.count // 3
                ring = 1 << max(24, (count * (size + 64) * 2).bit_length())
                topic = f"rec{size}"
                b.create_topic(topic, ring_bytes=min(ring, 2 << 30), durable=False)
                with b.producer() as p:
                    value = b"v" * size
                    for start in range(0, count, 1000):
                        p.send_many(topic, [value] * min(1000, count - start), partition=0)
                mb = count * size / 1e6
                seconds = read_all(b, topic, count)
                rows.append((size, "bus read (poll_many, records in the ring)", count / seconds, mb / seconds, ""))
                print(f"{size} B bus read: {count / seconds:,.0f} msg/s", file=sys.stderr)
                for compression in compressions:
                    seconds, file_bytes = record_all(b, topic, count, os.path.join(tmp, "r.mcap"), compression)
                    rows.append((size, f"record, {compression}", count / seconds, mb / seconds,
                                 f"file {file_bytes / 1e6:.1f} MB"))
                    print(f"{size} B record {compression}: {count / seconds:,.0f} msg/s", file=sys.stderr)
                b.delete_topic(topic)
                live = f"live{size}"
                b.create_topic(live, ring_bytes=min(ring, 2 << 30), durable=False)
                seconds = live_pair(b, live, count, size)
                rows.append((size, "bus live (send -> poll_many, 2 processes)", count / seconds, mb / seconds, ""))
                print(f"{size} B bus live: {count / seconds:,.0f} msg/s", file=sys.stderr)
                b.delete_topic(live)
                b.create_topic(live, ring_bytes=min(ring, 2 << 30), durable=False)
                rate, behind = record_live(b, live, count, size, os.path.join(tmp, "l.mcap"), compressions[0])
                rows.append((size, f"record live ({compressions[0]}) on a full-speed producer", rate,
                             rate * size / 1e6, f"{behind:,} behind when the producer finished"))
                print(f"{size} B record live: {rate:,.0f} msg/s, {behind} behind", file=sys.stderr)
                b.delete_topic(live)
        finally:
            b.stop_supervisor()
            b.close()
    print(f"| size | what | msg/s | MB/s (values) | note |\n|---|---|---|---|---|")
    for size, what, msgs, mbs, note in rows:
        print(f"| {size} B | {what} | {msgs:,.0f} | {mbs:,.1f} | {note} |")


if __name__ == "__main__":
    main()
