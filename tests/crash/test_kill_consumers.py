"""SIGKILL consumers in the middle of reading or waiting: producers and other
consumers carry on as if nothing happened."""
import random
import time

import pytest

import buskit
from buskit import read_exact, wait_until

pytestmark = pytest.mark.timeout(90)


def test_sigkill_consumers_mid_read(bus, make_topic, children):
    make_topic("t", partitions=2, ring_bytes=4 << 20)
    total = 20_000
    # Paced, so the readers are killed while records are still flowing.
    producer = children.start("produce", topic="t", tag="p", count=total, size=[17, 150], key="cycle:10",
                              pause=0.0001)
    producer.wait_ready()
    rng = random.Random()
    for i in range(6):
        reader = children.start("reader", topics=["t"], seed=i)
        reader.wait_ready()
        time.sleep(rng.uniform(0.01, 0.3))
        assert reader.alive(), reader.stderr()
        reader.kill()
    result = producer.wait(60)
    assert len(result["sent"]) == total

    with bus.consumer("t", auto_offset_reset="earliest") as c:
        got = read_exact(c, total, timeout=30)
        assert c.poll(timeout=0.2) is None
        assert c.missed() == 0
    placed = {(partition, offset): seq for seq, partition, offset in result["sent"]}
    seen = {(m.partition, m.offset): buskit.check_value(m.value)[1] for m in got}
    assert seen == placed
    assert wait_until(lambda: all(p.producers == 0 for p in bus.describe_topic("t").partitions), 5)


def test_consumer_killed_while_waiting_does_not_stop_others(bus, make_topic, children):
    make_topic("t")
    waiter = children.start("waiter", topics=["t"])
    waiter.wait_ready()
    assert wait_until(lambda: bus.describe_topic("t").partitions[0].waiting_consumers >= 1, 5)
    waiter.kill()
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        for i in range(100):
            p.send("t", b"%d" % i)
        assert [m.value for m in read_exact(c, 100)] == [b"%d" % i for i in range(100)]


def test_consumer_killed_while_waiting_leaves_no_phantom_waiter(bus, make_topic, children):
    # A consumer asleep on the futex counts itself in the ring's waiter count;
    # killed there, it never takes itself out again. Producers then pay for a
    # futex wake on every append, forever, and stats report a waiter that does
    # not exist. The supervisor repairs what dead clients leave.
    make_topic("t")
    waiter = children.start("waiter", topics=["t"])
    waiter.wait_ready()
    assert wait_until(lambda: bus.describe_topic("t").partitions[0].waiting_consumers == 1, 5)
    waiter.kill()
    assert wait_until(lambda: bus.describe_topic("t").partitions[0].waiting_consumers == 0, 5), (
        "a consumer killed while waiting is still counted as waiting")
