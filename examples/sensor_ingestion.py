"""Sensor ingestion: several sensor processes send readings as fast as they can
while a slow dashboard reads them. The dashboard never slows a sensor down:
when it falls behind the ring it reads from the log on disk, then catches up.

    python examples/sensor_ingestion.py [seconds]
"""
import multiprocessing as mp
import struct
import sys
import time

import shmbus

TOPIC = "sensors"
READING = struct.Struct("<Iddd")  # sensor id, x, y, z


def sensor(sensor_id, seconds):
    with shmbus.connect() as bus, bus.producer() as producer:
        deadline, sent = time.monotonic() + seconds, 0
        while time.monotonic() < deadline:
            producer.send(TOPIC, READING.pack(sensor_id, 0.1 * sent, 0.2, 9.81), key=b"sensor-%d" % sensor_id)
            sent += 1
        producer.flush()
        print(f"sensor {sensor_id}: sent {sent:,} readings ({sent / seconds:,.0f}/s)")


def dashboard(seconds):
    with shmbus.connect() as bus, bus.consumer(TOPIC, auto_offset_reset="earliest") as consumer:
        seen, deadline = 0, time.monotonic() + seconds + 5
        while time.monotonic() < deadline:
            batch = consumer.poll_many(max_records=5000, timeout=1.0)
            if not batch and time.monotonic() > deadline - 5:
                break
            seen += len(batch)
            time.sleep(0.01)  # a slow dashboard: redraws 100 times a second
        print(f"dashboard: read {seen:,} readings")


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    with shmbus.connect() as bus:
        if TOPIC in bus.topics():
            bus.delete_topic(TOPIC)
        bus.create_topic(TOPIC, partitions=4, ring_bytes=1 << 20)
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=sensor, args=(i, seconds)) for i in range(3)]
        procs.append(ctx.Process(target=dashboard, args=(seconds,)))
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        for row in bus.describe_topic(TOPIC).partitions:
            print(f"partition {row.partition}: offsets {row.earliest_offset}..{row.end_offset - 1}, "
                  f"{row.segments} segment(s), {row.disk_bytes:,} bytes on disk")
        bus.delete_topic(TOPIC)
