"""SIGKILL in the middle of zero-copy: a producer inside a reserve() block (its record is
aborted, consumers and the archive step over it, the partition goes on), and a reader
holding a zero-copy batch (its lease is dropped; producers are not held up by it)."""
import time

import pytest

import buskit

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("durable", [False, True])
def test_a_producer_killed_inside_reserve_leaves_an_aborted_record(bus, children, durable):
    bus.create_topic("t", ring_bytes=256 << 10, durable=durable)
    with bus.producer() as p:
        p.send("t", b"before")
        holder = children.start("reserver", topic="t", nbytes=50_000)
        holder.wait_ready()
        holder.kill()
        # Sent after the dead claim: readers see it once the supervisor has aborted that claim.
        after = p.send("t", b"after", partition=0)
        assert after.offset == 2
        with bus.consumer("t", auto_offset_reset="earliest") as c:
            got = [(m.offset, m.value) for m in buskit.read_exact(c, 2, timeout=10)]
        assert got == [(0, b"before"), (2, b"after")]
        if durable:
            p.flush(timeout=10)
    if durable:
        # The archive holds the aborted frame too: a reader from disk steps over it alike.
        with bus.consumer("t", auto_offset_reset="earliest") as c:
            batch = c.poll_batch(timeout=5)
            assert batch.offsets.tolist() == [0, 2] and list(batch.values) == [b"before", b"after"]


def test_a_reader_killed_holding_a_zero_copy_batch_does_not_hold_producers(bus, children, make_topic):
    make_topic("t", ring_bytes=64 << 10)
    with bus.producer(timeout=30) as p:
        for i in range(20):
            p.send("t", buskit.make_value("k", i, 200))
        holder = children.start("view_holder", topics=["t"], view_lease=3600.0)   # a lease of an hour
        holder.wait_ready()
        assert holder.result()["offsets"] == list(range(20))
        ring = bus.rings.get("t")[1][0]
        assert len(ring.lease_holders()) == 1
        holder.kill()
        # The supervisor drops a dead reader's lease: lapping it does not wait the hour.
        started = time.monotonic()
        for i in range(20, 1000):
            p.send("t", buskit.make_value("k", i, 200))
        assert time.monotonic() - started < 10
        assert buskit.wait_until(lambda: not ring.lease_holders(), timeout=5)
