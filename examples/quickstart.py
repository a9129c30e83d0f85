"""Quickstart: create a topic, send a few records, read them back.

    python examples/quickstart.py        (uses the default bus; SHMBUS_BUS/SHMBUS_DATA_DIR pick another)
"""
import shmbus

with shmbus.connect() as bus:  # starts the bus's supervisor if none runs
    bus.create_topic("quickstart", partitions=2, ring_bytes=1 << 20, exist_ok=True)  # fine if it exists

    with bus.producer() as producer:
        for i in range(5):
            md = producer.send("quickstart", b"hello %d" % i, key=b"user-%d" % (i % 2),
                               headers=[("source", b"quickstart")])
            print(f"sent to partition {md.partition} at offset {md.offset}")
        producer.flush()  # on disk now

    with bus.consumer("quickstart", auto_offset_reset="earliest") as consumer:
        for msg in consumer.poll_many(max_records=100, timeout=1.0):
            print(f"{msg.topic}/{msg.partition}@{msg.offset} key={msg.key} value={msg.value} "
                  f"headers={msg.headers}")

    bus.delete_topic("quickstart")
