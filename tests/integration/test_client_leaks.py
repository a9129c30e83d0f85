"""A long-lived client process stays flat through churn: closed consumers and
producers are forgotten by their bus, and the rings of deleted (or replaced) topics
are unmapped once nothing uses them -- not at bus.close(). Measured with the
process's own mappings (/proc/self/maps) and its resident memory."""
import os

import psutil
import pytest

pytestmark = pytest.mark.timeout(120)


def _shm_mappings():
    with open("/proc/self/maps") as f:
        return sum(1 for line in f if "/dev/shm/shmbus:" in line)


def test_opening_and_closing_many_consumers_stays_flat(bus, make_topic):
    make_topic("t", partitions=2)
    with bus.producer() as p:
        p.send("t", b"x" * 1000, partition=0)
    for _ in range(50):   # warm up allocators
        with bus.consumer("t", auto_offset_reset="earliest") as c:
            c.poll(timeout=1)
    before = psutil.Process().memory_info().rss
    for _ in range(1000):
        with bus.consumer("t", auto_offset_reset="earliest") as c:
            c.poll(timeout=1)
        with bus.producer() as p:
            p.send("t", b"y", partition=1)
    grown = psutil.Process().memory_info().rss - before
    assert len(bus._children) <= 2
    assert grown < 40 << 20, f"resident memory grew by {grown >> 20} MiB over 1,000 consumers"


def test_rings_of_deleted_topics_are_unmapped_when_unused(bus, bus_paths):
    baseline = _shm_mappings()
    for i in range(40):
        name = f"churn{i}"
        bus.create_topic(name, partitions=2, ring_bytes=1 << 20, durable=False)
        with bus.producer() as p, bus.consumer(name, auto_offset_reset="earliest") as c:
            p.send(name, b"x", partition=0)
            assert c.poll(timeout=5) is not None
        bus.delete_topic(name)
        # What a client does when its topic goes: the next use finds it gone.
        with bus.producer() as p:
            with pytest.raises(Exception):
                p.send(name, b"x", partition=0)
    assert bus.rings.mapped() <= 2, bus.rings.mapped()
    assert _shm_mappings() - baseline <= 4   # two 1 MiB rings at most, of the last topic
    listed = [e for e in os.listdir("/dev/shm") if e.startswith(bus_paths.shm_prefix + "churn")]
    assert listed == []
