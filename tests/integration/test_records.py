"""What goes in comes out: every kind of record a producer can send, read
back by a consumer on the same bus, plus the keyed partitioner end to end."""
import array
import time

import pytest

import shmbus
from shmbus import TopicPartition
from shmbus._backend import FRAME_HEADER_BYTES

import buskit
from buskit import read_exact, reference_murmur2

pytestmark = pytest.mark.timeout(60)


def test_record_shapes_round_trip(bus, make_topic):
    make_topic("t")
    cases = [
        dict(value=b"plain"),
        dict(value=b""),                                     # size 0: not the same as None
        dict(value=None),                                    # a tombstone
        dict(value=b"v", key=None),
        dict(value=b"v", key=b""),                           # an empty key is a key
        dict(value=b"v", key=b"\x00\xffkey"),
        dict(value=b"v", headers=[("unit", b"g"), ("none", None), ("dup", b"1"), ("dup", b"2")]),
        dict(value=None, key=b"k", headers=[("h", b"")]),
        dict(value=b"t", timestamp_ns=1_234_567_890_123_456_789),
        dict(value=b"t0", timestamp_ns=0),
    ]
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        sent = [p.send("t", **case) for case in cases]
        got = read_exact(c, len(cases))
    for offset, (case, md, m) in enumerate(zip(cases, sent, got)):
        assert md.topic == "t" and md.partition == 0 and md.offset == offset
        assert (m.topic, m.partition, m.offset, m.timestamp_ns) == ("t", 0, offset, md.timestamp_ns)
        assert m.value == case["value"] and type(m.value) is type(case["value"])
        assert m.key == case.get("key") and type(m.key) is type(case.get("key"))
        assert m.headers == tuple(case.get("headers") or ())
        if "timestamp_ns" in case:
            assert m.timestamp_ns == case["timestamp_ns"]
        else:
            # The producer's clock: loosely "now" (a sanity check, not a timing one).
            assert abs(m.timestamp_ns - time.time_ns()) < 3600 * 10**9


def test_dict_headers_arrive_as_pairs(bus, make_topic):
    make_topic("t")
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        p.send("t", b"v", headers={"a": b"1", "b": b"2"})
        (m,) = read_exact(c, 1)
    assert m.headers == (("a", b"1"), ("b", b"2"))


@pytest.mark.parametrize("ring_bytes", [64 << 10, 1 << 20, (200 << 10) + 4096])
def test_largest_record_fits_and_one_byte_more_is_too_large(bus, make_topic, ring_bytes):
    make_topic("t", ring_bytes=ring_bytes)
    limit = bus.describe_topic("t").max_record_bytes
    data_bytes = bus.topic("t").ring_bytes
    assert limit == (data_bytes // 2 & ~7) - FRAME_HEADER_BYTES, "largest record: half the ring minus the frame header"
    key, headers = b"key", [("h", b"hv")]
    header_bytes = 2 + 1 + 4 + 2  # u16 name length, name, i32 value length, value
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        # Two records of the largest size fill the ring: read each one as it
        # is sent, before the next overwrites it.
        big = buskit.make_value("big", 0, limit)
        p.send("t", big)
        assert read_exact(c, 1)[0].value == big
        keyed = buskit.make_value("big", 1, limit - len(key) - header_bytes)
        p.send("t", keyed, key=key, headers=headers)
        (m,) = read_exact(c, 1)
        assert (m.key, m.headers, m.value) == (key, tuple(headers), keyed)
        with pytest.raises(shmbus.MessageTooLarge):
            p.send("t", b"x" * (limit + 1))
        with pytest.raises(shmbus.MessageTooLarge):
            p.send("t", keyed + b"x", key=key, headers=headers)
        with pytest.raises(shmbus.MessageTooLarge):
            p.send_many("t", [b"x" * (limit + 1)])
        # The refused sends left nothing behind: the next record gets offset 2.
        assert p.send("t", b"after").offset == 2
        (m,) = read_exact(c, 1)
        assert (m.offset, m.value) == (2, b"after")
        assert c.missed() == 0


def test_too_large_is_a_value_error(bus, make_topic):
    make_topic("t")
    with bus.producer() as p:
        with pytest.raises(ValueError):
            p.send("t", bytes(1 << 20))


def test_bytes_like_values(bus, make_topic):
    make_topic("t")
    backing = b"..value-in-the-middle.."
    words = array.array("H", range(1000))
    values = [
        bytearray(b"a bytearray"),
        memoryview(backing)[2:-2],             # a slice: only its bytes
        memoryview(words),                     # multi-byte items: all 2000 bytes
        memoryview(bytearray(b"writable")),
    ]
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        for value in values:
            p.send("t", value)
        got = read_exact(c, len(values))
    for value, m in zip(values, got):
        assert m.value == bytes(value) and type(m.value) is bytes


def test_bytes_like_keys(bus, make_topic):
    make_topic("t", partitions=3)
    keys = [bytearray(b"bk"), memoryview(b"[mk]")[1:3], memoryview(bytearray(b"wk"))]
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        sent = [p.send("t", b"v", key=key) for key in keys]
        got = read_exact(c, len(keys))
    by_key = {m.key: m for m in got}
    for key, md in zip(keys, sent):
        # A bytes-like key partitions exactly like the same bytes.
        assert md.partition == (reference_murmur2(bytes(key)) & 0x7FFFFFFF) % 3
        m = by_key[bytes(key)]
        assert type(m.key) is bytes and m.partition == md.partition


def test_send_many_with_bytes_like_values(bus, make_topic):
    make_topic("t")
    words = array.array("H", range(100))
    values = [b"bytes", bytearray(b"bytearray"), memoryview(b"xmemoryviewx")[1:-1], memoryview(words), b"last"]
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        assert p.send_many("t", values, partition=0) == len(values)
        got = read_exact(c, len(values))
    assert [m.value for m in got] == [bytes(v) for v in values], (
        "send_many must cut the batch at each value's byte length, not its item count")


def test_keyed_records_land_on_kafkas_partition(bus, make_topic):
    partitions = 7
    make_topic("t", partitions=partitions)
    keys = [f"device-{i}".encode() for i in range(60)] + [b"", b"21", b"foobar", b"abc"]
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        for round_ in range(2):
            for key in keys:
                md = p.send("t", b"v%d" % round_, key=key)
                assert md.partition == (reference_murmur2(key) & 0x7FFFFFFF) % partitions, key
        got = read_exact(c, 2 * len(keys))
    for m in got:
        assert m.partition == (reference_murmur2(m.key) & 0x7FFFFFFF) % partitions
    assert len({m.partition for m in got}) == partitions


def test_explicit_partition_wins_over_key(bus, make_topic):
    make_topic("t", partitions=3)
    with bus.producer() as p:
        for partition in range(3):
            assert p.send("t", b"v", key=b"same", partition=partition).partition == partition
        for bad in (3, -1, "0", 1.0, True):
            with pytest.raises(ValueError):
                p.send("t", b"v", partition=bad)


def test_keyless_records_spread_and_offsets_are_per_partition(bus, make_topic):
    make_topic("t", partitions=4)
    with bus.producer(sticky_bytes=1000) as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        sent = [p.send("t", buskit.make_value("s", i, 100)) for i in range(400)]
        got = read_exact(c, 400)
    assert len({md.partition for md in sent}) > 1, "the sticky partition moves on after a batch"
    for partition in range(4):
        offsets = [md.offset for md in sent if md.partition == partition]
        assert offsets == list(range(len(offsets)))
        seqs = [buskit.check_value(m.value)[1] for m in got if m.partition == partition]
        assert seqs == sorted(seqs), "one producer's records keep their order per partition"


def test_consumer_of_several_topics(bus, make_topic):
    make_topic("a", partitions=2)
    make_topic("b")
    with bus.producer() as p, bus.consumer("a", "b", auto_offset_reset="earliest") as c:
        assert c.assignment() == {TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)}
        for i in range(10):
            p.send("a", b"a%d" % i, partition=i % 2)
            p.send("b", b"b%d" % i)
        got = read_exact(c, 20)
    assert sorted(m.value for m in got if m.topic == "a") == sorted(b"a%d" % i for i in range(10))
    assert [m.value for m in got if m.topic == "b"] == [b"b%d" % i for i in range(10)]


def test_iteration_and_poll_share_one_stream(bus, make_topic):
    make_topic("t")
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest", max_poll_records=7) as c:
        for i in range(30):
            p.send("t", b"%d" % i)
        first = next(iter(c))
        second = c.poll(timeout=1)
        rest = read_exact(c, 28)
    assert [m.offset for m in [first, second, *rest]] == list(range(30))


def test_latest_consumer_sees_only_new_records(bus, make_topic):
    make_topic("t")
    with bus.producer() as p:
        for i in range(5):
            p.send("t", b"old")
        with bus.consumer("t") as c:   # Kafka's default: latest
            assert c.position(TopicPartition("t", 0)) == 5
            assert c.poll(timeout=0.2) is None
            p.send("t", b"new")
            m = c.poll(timeout=5)
    assert (m.offset, m.value) == (5, b"new")


def test_busy_wait_consumer_receives(bus, make_topic):
    make_topic("t")
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest", wait="busy") as c:
        assert c.poll(timeout=0.05) is None
        p.send("t", b"x")
        assert c.poll(timeout=5).value == b"x"


def test_flush_on_memory_only_topic_returns(bus, make_topic):
    make_topic("t")
    with bus.producer() as p:
        p.send("t", b"x")
        p.flush(timeout=5)
