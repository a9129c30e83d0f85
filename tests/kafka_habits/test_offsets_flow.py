"""beginning_offsets / end_offsets (lag), pause / resume / paused, unsubscribe, and
offsets_for_times in shmbus's nanoseconds (the default) or Kafka's milliseconds."""
import time

import pytest

import shmbus
from shmbus import TopicPartition as TP


def test_beginning_and_end_offsets_of_any_partition(module_bus, topic):
    t = topic(partitions=2)
    with module_bus.producer() as p:
        for i in range(400):   # laps partition 0's small memory-only ring
            p.send(t, b"%04d" % i + b"." * 250, partition=0)
        p.send(t, b"one", partition=1)
    tps = [TP(t, 0), TP(t, 1)]
    with module_bus.consumer() as c:   # no assignment needed
        begin, end = c.beginning_offsets(tps), c.end_offsets(tps)
        assert end == {TP(t, 0): 400, TP(t, 1): 1}
        assert 0 < begin[TP(t, 0)] < 400 and begin[TP(t, 1)] == 0
        assert begin[TP(t, 0)] == module_bus.describe_topic(t).partitions[0].earliest_offset
    with module_bus.consumer(t, auto_offset_reset="earliest") as c:
        c.poll_many(1, timeout=2)
        lag = {tp: c.end_offsets([tp])[tp] - c.position(tp) for tp in c.assignment()}
        assert lag == {TP(t, 0): 400 - begin[TP(t, 0)] - 1, TP(t, 1): 1} or \
            lag == {TP(t, 0): 400 - begin[TP(t, 0)], TP(t, 1): 0}   # the one record polled: either partition


def test_pause_and_resume(module_bus, topic):
    t = topic(partitions=2)
    with module_bus.producer() as p:
        for i in range(5):
            p.send(t, b"a%d" % i, partition=0)
            p.send(t, b"b%d" % i, partition=1)
    with module_bus.consumer(t, auto_offset_reset="earliest", max_poll_records=3) as c:
        it = iter(c)
        next(it)   # fetches some records for iteration, of either partition
        c.pause(TP(t, 0))
        assert c.paused() == {TP(t, 0)}
        got = c.poll_many(100, timeout=0.2)
        assert got and all(m.partition == 1 for m in got)
        assert c.poll(timeout=0.1) is None, "partition 0 has records, but it is paused"
        paused_at = c.position(TP(t, 0))
        c.resume(TP(t, 0))
        assert c.paused() == set()
        rest = c.poll_many(100, timeout=1)
        assert [m.offset for m in rest] == list(range(paused_at, 5)) and {m.partition for m in rest} == {0}
        with pytest.raises(shmbus.ShmbusError, match="not assigned"):
            c.pause(TP(t, 5))


def test_a_paused_partition_does_not_wake_a_waiting_consumer(module_bus, topic):
    t = topic(partitions=2)
    with module_bus.consumer(t, auto_offset_reset="latest") as c, module_bus.producer() as p:
        c.pause(TP(t, 0))
        p.send(t, b"paused", partition=0)
        started = time.monotonic()
        assert c.poll(timeout=0.3) is None
        assert time.monotonic() - started >= 0.29
        p.send(t, b"live", partition=1)
        assert c.poll(timeout=2).value == b"live"


def test_unsubscribe_leaves_the_group(module_bus, topic):
    t = topic()
    with module_bus.consumer(t, group="leaver", auto_offset_reset="earliest") as c:
        assert len(module_bus.describe_group("leaver").members) == 1
        c.unsubscribe()
        assert c.assignment() == set() and c.poll(timeout=0.05) is None
        assert module_bus.describe_group("leaver").members == ()
        c.subscribe([t])
        assert c.assignment() == {TP(t, 0)} and len(module_bus.describe_group("leaver").members) == 1


def test_offsets_for_times_in_ns_or_kafka_ms(module_bus, topic):
    t = topic()
    base = 1_750_000_000_000   # ms since the epoch
    with module_bus.producer() as p:
        for i in range(10):
            p.send(t, b"%d" % i, timestamp_ns=(base + 1000 * i) * 1_000_000)
    tp = TP(t, 0)
    with module_bus.consumer(t) as c:
        assert c.offsets_for_times({tp: (base + 3500) * 1_000_000}) == {tp: 4}   # ns
        assert c.offsets_for_times({tp: base + 3500}, unit="ms") == {tp: 4}      # Kafka's ms
        assert c.offsets_for_times({tp: base + 3500}) == {tp: 0}, "ns by default: that is 1970"
        assert c.offsets_for_times({tp: base + 99_000}, unit="ms") == {tp: None}
        with pytest.raises(ValueError, match="unit must be"):
            c.offsets_for_times({tp: base}, unit="s")
