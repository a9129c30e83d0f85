"""The bridge carries records whole, both ways: key, value, headers, timestamp and the
partition number (or Kafka's murmur2 of the key where the partition counts differ), creates
the topics it needs, commits only what the other side holds, and never echoes a record
back through a topic bridged both ways. Against a real Kafka-protocol broker (Tansu)."""
import contextlib
import logging
import threading
import time

import pytest

from shmbus.bridge import MARKER_HEADER, Bridge
from shmbus.bridge._config import group_id

import kafkakit
from buskit import reference_murmur2
from kafkakit import FAST_GROUP, unique

pytestmark = pytest.mark.timeout(90)

BASE_NS = 1_700_000_000_000_000_000


def kafka_partition(key, count):
    """Kafka's Java partitioner, from the test suite's own murmur2."""
    return (reference_murmur2(key) & 0x7FFFFFFF) % count


@contextlib.contextmanager
def running(bridge):
    """Bridge.run() on a thread for the block; stop() and join at its end, re-raising what
    stopped it."""
    errors = []

    def run():
        try:
            bridge.run()
        except BaseException as e:
            errors.append(e)
    thread = threading.Thread(target=run, name="test-bridge")
    thread.start()
    try:
        yield bridge
    finally:
        bridge.stop()
        thread.join(30)
        assert not thread.is_alive(), "the bridge did not stop within 30 s"
    if errors:
        raise errors[0]


def read_shmbus(bus, topic, count, timeout=20.0):
    """{partition: [Message...]} once count records of topic are there."""
    by_partition = {}
    got = 0
    deadline = time.monotonic() + timeout
    kafkakit.wait_for(lambda: topic in bus.topics(), timeout, f"shmbus topic {topic}")
    with bus.consumer(topic, auto_offset_reset="earliest") as c:
        while got < count:
            assert time.monotonic() < deadline, f"only {got} of {count} records in shmbus topic {topic}"
            for m in c.poll_many(1000, timeout=0.2):
                by_partition.setdefault(m.partition, []).append(m)
                got += 1
        assert c.poll_many(1000, timeout=0.3) == [], f"more than {count} records in {topic}"
    return by_partition


def group_caught_up(bus, group, total):
    described = bus.call("describe_group", group=group)
    return sum(p["committed"] or 0 for p in described["partitions"]) == total


def test_to_kafka_keeps_fields_and_partitions(bus, broker, caplog):
    caplog.set_level(logging.INFO, logger="shmbus.bridge")
    same, other = unique("imu"), unique("gps")
    bus.create_topic(same, partitions=3, ring_bytes=1 << 20)
    bus.create_topic(other, partitions=2, ring_bytes=1 << 20)
    kafkakit.create_topic(broker, other, 5)   # another partition count: by key
    sent = {same: {}, other: {}}
    with bus.producer() as p:
        for i in range(300):
            key = None if i % 7 == 0 else f"dev-{i % 23}".encode()
            headers = [("unit", b"g"), ("seq", str(i).encode()), ("empty", b"")] if i % 2 else []
            timestamp_ns = BASE_NS + i * 1_000_000 + 123_456   # not whole milliseconds
            for topic in (same, other):
                md = p.send(topic, f"v{i}".encode(), key=key, headers=headers, timestamp_ns=timestamp_ns)
                sent[topic][f"v{i}".encode()] = (md.partition, md.offset, key, headers, timestamp_ns)
    name = unique("edge")
    with running(Bridge(bus, kafka={"bootstrap.servers": broker.address}, to_kafka=[same, other], name=name)):
        in_kafka = {topic: kafkakit.read_topic(broker, topic, expect=300) for topic in (same, other)}
        kafkakit.wait_for(lambda: group_caught_up(bus, group_id(name), 600), 10, "the bridge's commits")
    marker = (MARKER_HEADER, name.encode())

    # Same partition count (the Kafka topic was created with shmbus's): same partition, same order.
    assert kafkakit.partition_count(broker, same) == 3
    for partition, records in in_kafka[same].items():
        expected = sorted((v for v, s in sent[same].items() if s[0] == partition), key=lambda v: sent[same][v][1])
        assert [m.value() for m in records] == expected
        for m in records:
            shm_partition, _, key, headers, timestamp_ns = sent[same][m.value()]
            assert m.key() == key
            assert m.timestamp() == (1, timestamp_ns // 1_000_000)   # CreateTime, in ms
            assert (m.headers() or []) == headers + [marker]
            if key is not None:   # shmbus put it where Kafka's partitioner would
                assert partition == kafka_partition(key, 3)

    # Another count: every record once, keyed ones where Kafka's murmur2 puts them.
    values = [m.value() for records in in_kafka[other].values() for m in records]
    assert sorted(values) == sorted(sent[other])
    for partition, records in in_kafka[other].items():
        for m in records:
            key = sent[other][m.value()][2]
            if key is not None:
                assert partition == kafka_partition(key, 5), (key, partition)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and other in r.getMessage()]
    assert len(warnings) == 1 and "by key" in warnings[0], warnings


def test_from_kafka_keeps_fields_and_nothing_echoes(bus, broker, caplog):
    caplog.set_level(logging.INFO, logger="shmbus.bridge")
    inbound, both, narrow = unique("commands"), unique("chat"), unique("alerts")
    kafkakit.create_topic(broker, inbound, 3)   # the shmbus topic is missing: made with 3 partitions
    bus.create_topic(both, partitions=2, ring_bytes=1 << 20)
    kafkakit.create_topic(broker, narrow, 3)
    bus.create_topic(narrow, partitions=2, ring_bytes=1 << 20)   # another partition count: by key
    kafka = kafkakit.producer(broker)
    produced = {}
    for i in range(200):
        key = None if i % 5 == 0 else f"unit-{i % 17}".encode()
        headers = [("origin", b"kafka"), ("n", str(i).encode())] if i % 3 else None
        extra = {} if key is not None else {"partition": i % 3}
        kafka.produce(inbound, f"c{i}".encode(), key, timestamp=1_700_000_000_000 + i, headers=headers, **extra)
        produced[f"c{i}".encode()] = (key, headers or [], 1_700_000_000_000 + i)
    for i in range(60):
        kafka.produce(narrow, f"a{i}".encode(), f"sensor-{i}".encode())
    assert kafka.flush(10) == 0
    with bus.producer() as p:
        for i in range(50):
            p.send(both, f"from-shmbus-{i}".encode(), key=f"k{i}".encode())
    name = unique("edge")
    marker = (MARKER_HEADER, name.encode())
    bridge = Bridge(bus, kafka=dict(FAST_GROUP, **{"bootstrap.servers": broker.address}), to_kafka=[both],
                    from_kafka=[inbound, both, narrow], name=name)
    with running(bridge):
        # shmbus -> Kafka made the Kafka side of `both`; now records born in Kafka.
        kafkakit.wait_for(lambda: both in kafkakit.admin(broker).list_topics(timeout=5).topics, 20, both)
        for i in range(30):
            kafka.produce(both, f"from-kafka-{i}".encode(), f"k{i}".encode())
        assert kafka.flush(10) == 0
        in_shmbus = read_shmbus(bus, inbound, 200)
        narrow_in_shmbus = read_shmbus(bus, narrow, 60)
        both_in_shmbus = read_shmbus(bus, both, 80)
        both_in_kafka = kafkakit.read_topic(broker, both, expect=80)
        time.sleep(0.5)   # room for an echo to show, if the guard let one through
        assert sum(len(v) for v in kafkakit.read_topic(broker, both).values()) == 80
        assert sum(len(v) for v in read_shmbus(bus, both, 80).values()) == 80
        kafkakit.wait_for(lambda: kafkakit.committed(broker, group_id(name), inbound, 3) ==
                          {p: len(in_shmbus.get(p, [])) for p in range(3)}, 15, "the bridge's Kafka commits")

    assert bus.topic(inbound).partitions == 3
    in_kafka = kafkakit.read_topic(broker, inbound)
    for partition in range(3):
        kafka_records = in_kafka[partition]
        shm_records = in_shmbus.get(partition, [])
        assert [m.value for m in shm_records] == [m.value() for m in kafka_records]
        assert [m.offset for m in shm_records] == list(range(len(shm_records)))
        for m in shm_records:
            key, headers, timestamp_ms = produced[m.value]
            assert m.key == key
            assert m.timestamp_ns == timestamp_ms * 1_000_000
            assert list(m.headers) == headers + [marker]
            if key is not None:
                assert partition == kafka_partition(key, 3)
    # Another partition count: shmbus's murmur2 of the key, one warning.
    for partition, records in narrow_in_shmbus.items():
        for m in records:
            assert partition == kafka_partition(m.key, 2), (m.key, partition)
    assert sorted(m.value for ms in narrow_in_shmbus.values() for m in ms) == sorted(
        f"a{i}".encode() for i in range(60))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and narrow in r.getMessage()]
    assert len(warnings) == 1 and "by key" in warnings[0], warnings
    # Both ways: each record once on each side, the bridge's own never carried back.
    shm_values = sorted(m.value for ms in both_in_shmbus.values() for m in ms)
    kafka_values = sorted(m.value() for ms in both_in_kafka.values() for m in ms)
    expected = sorted([f"from-shmbus-{i}".encode() for i in range(50)] + [f"from-kafka-{i}".encode() for i in range(30)])
    assert shm_values == expected and kafka_values == expected
