"""seek, seek_to_beginning, seek_to_end and position, on a fresh ring and on
one that has wrapped (where seek goes through the offset index)."""
import pytest

import shmbus
from shmbus import TopicPartition

import buskit
from buskit import read_exact

pytestmark = pytest.mark.timeout(60)

TP = TopicPartition("t", 0)


def fill(producer, start, count, size=100):
    for seq in range(start, start + count):
        assert producer.send("t", buskit.make_value("s", seq, size), partition=0).offset == seq


def expect_offset(consumer, offset):
    m = consumer.poll(timeout=5)
    assert m is not None, f"expected offset {offset}, got nothing"
    assert m.offset == offset
    assert buskit.check_value(m.value) == ("s", offset)


def test_position_before_any_read(bus, make_topic):
    make_topic("t")
    with bus.producer() as p:
        fill(p, 0, 10)
        with bus.consumer("t", auto_offset_reset="earliest") as c:
            assert c.position(TP) == 0
        with bus.consumer("t", auto_offset_reset="latest") as c:
            assert c.position(TP) == 10


def test_position_follows_reads_including_buffered_ones(bus, make_topic):
    make_topic("t")
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        fill(p, 0, 50)
        read_exact(c, 5)
        assert c.position(TP) == 5
        first = next(iter(c))            # iteration fetches ahead into a buffer
        assert first.offset == 5
        assert c.position(TP) == 6, "position counts only what was returned"


def test_seek_to_any_retained_offset(bus, make_topic):
    make_topic("t")
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        fill(p, 0, 100)
        for offset in [37, 0, 99, 16, 15, 17, 64, 1]:     # on and off the index stride
            c.seek(TP, offset)
            assert c.position(TP) == offset
            expect_offset(c, offset)
            assert c.position(TP) == offset + 1
        c.seek(TP, 98)
        assert [m.offset for m in read_exact(c, 2)] == [98, 99]


def test_seek_drops_what_iteration_buffered(bus, make_topic):
    make_topic("t")
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        fill(p, 0, 40)
        assert next(iter(c)).offset == 0
        c.seek(TP, 30)
        expect_offset(c, 30)


def test_seek_to_the_end_offset_waits_for_the_next_record(bus, make_topic):
    make_topic("t")
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        fill(p, 0, 10)
        c.seek(TP, 10)
        assert c.poll(timeout=0.2) is None
        fill(p, 10, 1)
        expect_offset(c, 10)


def test_seek_to_beginning_rereads(bus, make_topic):
    make_topic("t", partitions=2)
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        for i in range(10):
            p.send("t", b"%d" % i, partition=i % 2)
        first = read_exact(c, 10)
        c.seek_to_beginning()
        again = read_exact(c, 10)
        assert sorted((m.partition, m.offset) for m in first) == sorted((m.partition, m.offset) for m in again)
        # Only one partition.
        c.seek_to_beginning(TopicPartition("t", 1))
        only = read_exact(c, 5)
        assert {m.partition for m in only} == {1}
        assert c.poll(timeout=0.1) is None


def test_seek_to_end_skips_what_is_there(bus, make_topic):
    make_topic("t")
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        fill(p, 0, 20)
        c.seek_to_end()
        assert c.position(TP) == 20
        assert c.poll(timeout=0.2) is None
        fill(p, 20, 1)
        expect_offset(c, 20)


@pytest.mark.parametrize("reset, expected", [("earliest", 0), ("latest", 10)])
def test_seek_past_the_end_applies_auto_offset_reset(bus, make_topic, reset, expected):
    make_topic("t")
    with bus.producer() as p, bus.consumer("t", auto_offset_reset=reset) as c:
        fill(p, 0, 10)
        c.seek(TP, 500)
        assert c.position(TP) == expected


def test_seek_out_of_range_with_reset_none_raises(bus, make_topic):
    make_topic("t")
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="none") as c:
        fill(p, 0, 10)
        c.seek(TP, 500)
        with pytest.raises(shmbus.OffsetOutOfRange):
            c.poll(timeout=0.5)


def test_seek_on_a_wrapped_ring(bus, make_topic):
    make_topic("t")   # 64 KiB: 2000 records of ~150 bytes lap it several times
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        fill(p, 0, 2000)
        partition = bus.describe_topic("t").partitions[0]
        earliest, end = partition.earliest_offset, partition.end_offset
        assert earliest > 0 and end == 2000
        # Every retained offset, through the offset index.
        for offset in range(earliest, end):
            c.seek(TP, offset)
            expect_offset(c, offset)
        # An overwritten offset is out of range: back to the earliest.
        c.seek(TP, earliest - 1)
        expect_offset(c, earliest)
        c.seek_to_beginning()
        expect_offset(c, earliest)


def test_seek_argument_checks(bus, make_topic):
    make_topic("t")
    with bus.consumer("t") as c:
        with pytest.raises(ValueError):
            c.seek(TP, -1)
        with pytest.raises(TypeError):
            c.seek(TP, "3")
        with pytest.raises(shmbus.ShmbusError):
            c.seek(TopicPartition("t", 5), 0)        # not assigned
        with pytest.raises(shmbus.ShmbusError):
            c.position(TopicPartition("other", 0))
