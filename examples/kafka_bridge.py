"""Beyond one host: mirror a shmbus topic to Apache Kafka and a Kafka topic back, with
shmbus.bridge.Bridge (what `shmbus bridge` runs).

    python examples/kafka_bridge.py --kafka 127.0.0.1:9092

Sensor readings sent on the bus appear in Kafka's `example.imu`, same partitions, same
keys, headers and timestamps; commands written to Kafka's `example.commands` appear on
the bus. The bridge runs on a thread here; in production run `shmbus bridge` as a
service (README, "Beyond one host")."""
import argparse
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition

import shmbus
from shmbus.bridge import Bridge

READINGS = 1000
COMMANDS = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kafka", default="127.0.0.1:9092", help="a Kafka broker, HOST:PORT")
    args = parser.parse_args()

    with shmbus.connect() as bus:
        try:
            bus.create_topic("example.imu", partitions=2)
        except shmbus.TopicExists:
            pass
        bridge = Bridge(bus, kafka={"bootstrap.servers": args.kafka,
                                    # Kafka's smallest session: a restarted bridge rejoins fast.
                                    "session.timeout.ms": "6000"},
                        to_kafka={"example.imu": "example.imu"},
                        from_kafka={"example.commands": "example.commands"}, name="example")
        runner = threading.Thread(target=bridge.run)
        runner.start()
        try:
            with bus.producer() as p:
                for i in range(READINGS):
                    p.send("example.imu", f'{{"ax": {i * 0.01:.2f}}}'.encode(), key=f"dev-{i % 8}".encode(),
                           headers=[("unit", b"g")])
            print(f"sent {READINGS} readings to shmbus topic example.imu")
            readings = read_kafka(args.kafka, "example.imu", READINGS)
            print(f"read {len(readings)} of them from Kafka, per partition: "
                  f"{ {p: sum(1 for m in readings if m.partition() == p) for p in (0, 1)} }")

            kafka = Producer({"bootstrap.servers": args.kafka})
            for i in range(COMMANDS):
                kafka.produce("example.commands", f"set-rate {10 * (i + 1)}".encode(), key=b"dev-3")
            kafka.flush(10)
            commands = read_shmbus(bus, "example.commands", COMMANDS)
            print(f"wrote {COMMANDS} commands to Kafka; shmbus got {len(commands)}, e.g. "
                  f"{commands[0].value!r} with headers {commands[0].headers}")
        finally:
            bridge.stop()
            runner.join()
    ok = len(readings) >= READINGS and len(commands) == COMMANDS
    print("kafka_bridge: ok" if ok else "kafka_bridge: FAILED")
    raise SystemExit(0 if ok else 1)


def read_kafka(servers: str, topic: str, count: int, timeout: float = 30.0) -> list:
    """A plain Kafka consumer (no group: nothing to join) reading the topic from the start."""
    consumer = Consumer({"bootstrap.servers": servers, "group.id": "example-reader", "enable.auto.commit": False})
    deadline = time.monotonic() + timeout
    while True:
        # All topics: asking for one by name makes brokers that auto-create topics create it.
        metadata = consumer.list_topics(timeout=5).topics.get(topic)
        if metadata is not None and metadata.error is None and metadata.partitions:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"Kafka topic {topic} did not appear")
        time.sleep(0.2)
    consumer.assign([TopicPartition(topic, p, 0) for p in metadata.partitions])
    records: list = []
    while len(records) < count and time.monotonic() < deadline:
        records.extend(m for m in consumer.consume(1000, 0.5) if m.error() is None)
    consumer.close()
    return records


def read_shmbus(bus: shmbus.Bus, topic: str, count: int, timeout: float = 30.0) -> list:
    deadline = time.monotonic() + timeout
    while topic not in bus.topics():   # the bridge creates it, with Kafka's partition count
        if time.monotonic() > deadline:
            raise SystemExit(f"shmbus topic {topic} did not appear")
        time.sleep(0.1)
    records: list = []
    with bus.consumer(topic, auto_offset_reset="earliest") as c:
        while len(records) < count and time.monotonic() < deadline:
            records.extend(c.poll_many(1000, timeout=0.5))
    return records


if __name__ == "__main__":
    main()
