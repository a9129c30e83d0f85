"""Zero-copy: Producer.reserve (a record written in place: published at the end of its
block, aborted by an exception, revoked if held past the unblock timeout) and
poll_batch(copy=False) (values that view the ring under a lease: a producer that laps
the reader waits at most the lease, and whatever it overwrote is reported)."""
import threading
import time

import numpy as np
import pytest

import shmbus

import buskit

pytestmark = pytest.mark.timeout(60)
TP = shmbus.TopicPartition("t", 0)


def test_a_reserved_record_is_published_when_its_block_ends(bus, make_topic):
    make_topic("t", ring_bytes=1 << 20)
    frame = np.arange(480 * 64, dtype=np.uint16).reshape(480, 64)
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        with p.reserve("t", frame.nbytes, key=b"cam0", headers=[("fmt", b"u16")]) as buf:
            assert len(buf) == buf.nbytes == frame.nbytes and buf.metadata is None
            assert c.poll(timeout=0.05) is None       # not visible while it is written
            np.frombuffer(buf, np.uint16).reshape(480, 64)[:] = frame
        md = buf.metadata
        assert (md.topic, md.partition, md.offset) == ("t", 0, 0) and md.timestamp_ns > 0
        m = c.poll(timeout=1)
        assert (m.offset, m.key, m.headers, m.timestamp_ns) == (0, b"cam0", (("fmt", b"u16"),), md.timestamp_ns)
        assert np.array_equal(np.frombuffer(m.value, np.uint16).reshape(480, 64), frame)
        with p.reserve("t", 0) as empty:
            pass
        assert empty.metadata.offset == 1 and c.poll(timeout=1).value == b""


def test_an_exception_in_the_block_aborts_the_record_and_consumers_skip_it(bus, make_topic):
    make_topic("t")
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        p.send("t", b"before")
        with pytest.raises(KeyError):
            with p.reserve("t", 100) as buf:
                buf[:5] = b"torn!"
                raise KeyError("the camera went away")
        assert buf.metadata is None
        assert p.send("t", b"after").offset == 2   # the aborted record kept its offset
        assert [(m.offset, m.value) for m in c.poll_many(10, timeout=1)] == [(0, b"before"), (2, b"after")]
        with pytest.raises(ValueError, match="can no longer be used"):
            buf[0] = 1
        with pytest.raises(ValueError, match="can no longer be used"):
            memoryview(buf)


def test_a_reserved_view_cannot_be_written_past_nor_misused(bus, make_topic):
    make_topic("t", ring_bytes=64 << 10)
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        with p.reserve("t", 8) as buf:
            buf[:] = b"12345678"
            with pytest.raises(IndexError):
                buf[8] = 0
            with pytest.raises(ValueError):
                buf[4:12] = b"overflow"
            with pytest.raises(IndexError):
                np.frombuffer(buf, np.uint8)[8] = 0
            with pytest.raises(shmbus.ShmbusError, match="holds a reserve"):
                p.send("t", b"x", partition=0)   # the same partition, from inside the block: not a hang
        assert c.poll(timeout=1).value == b"12345678"   # nothing of the attempts landed
        with pytest.raises(shmbus.MessageTooLarge, match="half the ring"):
            with p.reserve("t", 40 << 10):
                pass
        for bad in (-1, 1.5, "8", True):
            with pytest.raises(TypeError, match="nbytes"):
                with p.reserve("t", bad):
                    pass
        with pytest.raises(shmbus.TopicNotFound):
            with p.reserve("nope", 8):
                pass
        assert p.send("t", b"next").offset == 1


def test_the_common_reservation_takes_the_c_path_and_keeps_every_rule(bus, make_topic):
    """No key, headers, timestamp or timeout, to a partition already written: the claim and
    the publish are C (FastReservation); the rules are the general path's."""
    make_topic("t", ring_bytes=64 << 10)
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        p.send("t", b"first", partition=0)
        fast = p.reserve("t", 4, partition=0)
        assert type(fast).__name__ == "FastReservation"
        with fast as buf:
            buf[:] = b"fast"
            with pytest.raises(shmbus.ShmbusError, match="holds a reserve"):
                p.send("t", b"x", partition=0)
            with pytest.raises(shmbus.ShmbusError, match="holds a reserve"):
                with p.reserve("t", 1, partition=0):
                    pass
        assert buf.metadata.offset == 1
        with pytest.raises(shmbus.ShmbusError, match="entered once"):
            with fast:
                pass
        with pytest.raises(RuntimeError):
            with p.reserve("t", 3, partition=0) as torn:
                torn[0] = 7
                raise RuntimeError("aborted")
        left_open = p.reserve("t", 5, partition=0)
        left_open.__enter__()[:] = b"never"
        del left_open   # entered, never exited: aborted, not left for the unblocker
        with pytest.raises(shmbus.MessageTooLarge, match="half the ring"):   # the C claim hands it on
            with p.reserve("t", 40 << 10, partition=0):
                pass
        for i in range(4):   # 4 x 30 KiB through a 64 KiB ring: the C claim finds it full, Python waits
            with p.reserve("t", 30 << 10, partition=0) as big:
                big[:] = bytes([i]) * (30 << 10)
            assert big.metadata.offset == 4 + i
            got = buskit.read_exact(c, 3 if i == 0 else 1, timeout=5)
            if i == 0:   # the aborted (2), and the one entered and dropped (3), are skipped
                assert [(m.offset, m.value) for m in got[:2]] == [(0, b"first"), (1, b"fast")]
            assert (got[-1].offset, got[-1].value) == (4 + i, bytes([i]) * (30 << 10))
        assert p.send("t", b"after", partition=0, timeout=5).offset == 8


def test_another_thread_waits_for_the_block_to_end(bus, make_topic):
    make_topic("t")
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        sent = []
        with p.reserve("t", 4, partition=0) as buf:
            t = threading.Thread(target=lambda: sent.append(p.send("t", b"other", partition=0)))
            t.start()
            time.sleep(0.2)
            assert not sent   # it waits for the partition's slot
            buf[:] = b"mine"
        t.join(5)
        assert [m.value for m in c.poll_many(10, timeout=1)] == [b"mine", b"other"]


def test_a_block_held_past_the_unblock_timeout_is_revoked(bus, make_topic):
    make_topic("t")
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        p.send("t", b"first")
        with pytest.raises(shmbus.ClaimRevoked, match="was not sent"):
            with p.reserve("t", 16) as buf:
                buf[:] = b"x" * 16
                time.sleep(2.0)   # the supervisor's unblock timeout is 1 s
        assert buf.metadata is None
        after = p.send("t", b"after")
        got = [(m.offset, m.value) for m in buskit.read_exact(c, 2, timeout=5)]
        assert got == [(0, b"first"), (after.offset, b"after")]


# ---- zero-copy reads ----

def test_zero_copy_values_view_the_ring_and_hold_it_back(bus, make_topic):
    make_topic("t", ring_bytes=64 << 10)
    with bus.producer(timeout=10) as p, bus.consumer("t", auto_offset_reset="earliest", view_lease=0.5) as c:
        for i in range(50):
            p.send("t", buskit.make_value("z", i, 200))
        batch = c.poll_batch(timeout=1, copy=False)
        assert batch.zero_copy and len(batch) == 50
        assert all(isinstance(v, memoryview) and v.readonly for v in batch.values)
        array = batch.as_numpy(np.dtype((np.uint8, 200)))
        assert not array.flags.writeable
        # A producer that laps the reader waits for the lease (0.5 s) before it overwrites.
        started = time.monotonic()
        for i in range(50, 500):
            p.send("t", buskit.make_value("z", i, 200))
        waited = time.monotonic() - started
        assert 0.3 < waited < 5, waited
        with pytest.raises(shmbus.LeaseRevoked, match="held past its lease"):
            batch.release()
        # Held for less than the lease, it stays intact and releases quietly.
        c.seek_to_end()
        for i in range(500, 540):
            p.send("t", buskit.make_value("z", i, 200))
        c.seek(TP, 500)
        batch = c.poll_batch(timeout=1, copy=False)
        assert batch.zero_copy
        values = list(batch.values)
        assert [buskit.check_value(bytes(v))[1] for v in values] == list(range(500, 540))
        batch.release()
        with pytest.raises(ValueError, match="released"):
            bytes(values[0])   # the views handed out go with the batch


def test_a_lapping_producer_never_leaves_silent_garbage(bus, make_topic, children, bus_paths, tmp_path):
    """A producer in another process laps a slow zero-copy reader over and over: every
    batch is either intact when looked at after holding it, or its release says it was
    not; the producer keeps going."""
    make_topic("t", ring_bytes=64 << 10)
    stop = tmp_path / "stop"
    producer = children.start("survivor", topic="t", tag="lap", size=300, pause=0, stop_file=str(stop))
    producer.wait_ready()
    outcomes = {"intact": 0, "revoked": 0, "copied": 0}
    with bus.consumer("t", auto_offset_reset="latest", view_lease=0.05) as c:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            batch = c.poll_batch(max_records=40, timeout=1, copy=False)
            if batch is None:
                continue
            if not batch.zero_copy:   # too far behind to lease: a copy, always whole
                assert all(buskit.check_value(v) for v in batch.values)
                outcomes["copied"] += 1
                continue
            time.sleep(0.1 if outcomes["revoked"] < 3 else 0.001)   # longer than the lease, at first
            intact = True
            for v in batch.values:
                try:
                    buskit.check_value(bytes(v))
                except ValueError:
                    intact = False
            try:
                batch.release()
                assert intact, "a batch whose views were overwritten released without a word"
                outcomes["intact"] += 1
            except shmbus.LeaseRevoked:
                outcomes["revoked"] += 1
            c.seek_to_end()
    stop.touch()
    producer.wait()
    assert producer.result()["sent"] > 2000
    assert outcomes["revoked"] >= 3 and outcomes["intact"] >= 1, outcomes
