"""Columnar batches (Consumer.poll_batch, RecordBatch) and numpy in (Producer.send_array):
from the ring, across wrap-around and aborted records, from the segment files, through
group rebalances and commits; and what bad input gets."""
import subprocess
import sys
import time

import numpy as np
import pytest

import shmbus

import buskit

pytestmark = pytest.mark.timeout(60)


def drain_batches(consumer, expect, copy=True, max_records=65536, timeout=10.0):
    """poll_batch until `expect` records arrived; the batches, each released."""
    batches, got = [], 0
    deadline = time.monotonic() + timeout
    while got < expect:
        assert time.monotonic() < deadline, f"only {got} of {expect} records arrived"
        batch = consumer.poll_batch(max_records, timeout=0.5, copy=copy)
        if batch is None:
            continue
        batches.append((batch.topic, batch.partition, batch.offsets.copy(), [bytes(v) for v in batch.values]))
        got += len(batch)
        batch.release()
    return batches


def test_a_batch_is_columns_of_one_partition(bus, make_topic):
    make_topic("t", partitions=2, ring_bytes=1 << 20)
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        sent = {0: [], 1: []}
        for i in range(300):
            md = p.send("t", buskit.make_value("b", i, 20 + i % 50), partition=i % 2,
                        key=b"k%d" % i if i % 3 == 0 else None, headers=[("h", b"%d" % i)] if i % 5 == 0 else None)
            sent[md.partition].append(md)
        seen = {0: [], 1: []}
        while sum(len(v) for v in seen.values()) < 300:
            batch = c.poll_batch(timeout=2)
            assert batch is not None
            assert batch.topic == "t" and batch.partition in (0, 1)
            assert batch.offsets.dtype == np.int64 and batch.timestamps_ns.dtype == np.int64
            assert len(batch) == len(batch.offsets) == len(batch.values) == len(batch.keys)
            messages = list(batch)
            assert [m.offset for m in messages] == batch.offsets.tolist()
            assert [m.timestamp_ns for m in messages] == batch.timestamps_ns.tolist()
            assert [m.value for m in messages] == list(batch.values)
            assert [m.key for m in messages] == list(batch.keys)
            seen[batch.partition].extend(messages)
        for partition in (0, 1):
            assert [m.offset for m in seen[partition]] == [md.offset for md in sent[partition]]
            for m, md in zip(seen[partition], sent[partition]):
                tag, seq = buskit.check_value(m.value)
                assert m.timestamp_ns == md.timestamp_ns
                assert m.key == (b"k%d" % seq if seq % 3 == 0 else None)
                assert m.headers == ((("h", b"%d" % seq),) if seq % 5 == 0 else ())
        assert c.poll_batch(timeout=0.05) is None


def test_batches_cross_the_ring_wrap_and_step_over_aborted_records(bus, make_topic):
    make_topic("t", ring_bytes=64 << 10)
    expected = []
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        seq = 0
        for round_ in range(40):   # ~10 laps of the ring, read as we go
            for _ in range(30):
                value = buskit.make_value("w", seq, 100 + seq % 300)
                expected.append((p.send("t", value).offset, value))
                seq += 1
            if round_ % 7 == 3:
                # A reserve() the block aborts: its offset is skipped, like a dead producer's claim.
                with pytest.raises(RuntimeError):
                    with p.reserve("t", 50) as buf:
                        buf[:4] = b"dead"
                        raise RuntimeError("abort it")
            got = []
            while len(got) < 30:
                batch = c.poll_batch(max_records=17, timeout=2)
                assert batch is not None and len(batch) <= 17
                got.extend(zip(batch.offsets.tolist(), [bytes(v) for v in batch.values]))
                batch.release()
            assert got == expected[-30:]
        assert c.missed() == 0


def test_a_consumer_behind_the_ring_gets_batches_from_the_segment_files(bus):
    bus.create_topic("d", ring_bytes=64 << 10, durable=True)
    with bus.producer() as p:
        values = [buskit.make_value("d", i, 200) for i in range(2000)]   # ~7 rings' worth
        assert p.send_many("d", values[:1000]) == 1000
        for v in values[1000:]:
            p.send("d", v)
        p.flush()
    with bus.consumer("d", auto_offset_reset="earliest") as c:
        got = drain_batches(c, 2000, copy=False)
    offsets = np.concatenate([b[2] for b in got]).tolist()
    assert offsets == list(range(2000))
    assert [v for b in got for v in b[3]] == values


def test_commit_counts_a_batch_and_a_rebalance_hands_on_from_there(bus, make_topic):
    make_topic("g", partitions=2, ring_bytes=1 << 20)
    with bus.producer() as p:
        for i in range(200):
            p.send("g", buskit.make_value("g", i, 30), partition=i % 2)
    first = bus.consumer("g", group="grp", auto_offset_reset="earliest")
    taken = {}
    try:
        while len(taken) < 2:
            batch = first.poll_batch(max_records=40, timeout=2)
            assert batch is not None
            taken.setdefault(batch.partition, batch.offsets.tolist())
        first.commit()
        committed = {tp.partition: first.committed(tp) for tp in first.assignment()}
        assert committed == {p_: taken[p_][-1] + 1 for p_ in (0, 1)} == {0: 40, 1: 40}
        # A second member joins: the group rebalances; each partition goes on from its commit.
        second = bus.consumer("g", group="grp", auto_offset_reset="earliest")
        try:
            rest = {0: [], 1: []}
            deadline = time.monotonic() + 20
            while sum(map(len, rest.values())) < 120 and time.monotonic() < deadline:
                for member in (first, second):
                    batch = member.poll_batch(timeout=0.1)
                    if batch is not None:
                        rest[batch.partition].extend(batch.offsets.tolist())
            assert sorted(rest[0]) == list(range(40, 100)) and sorted(rest[1]) == list(range(40, 100))
            assert len(first.assignment()) == len(second.assignment()) == 1
        finally:
            second.close()
    finally:
        first.close()


def test_records_fetched_for_iteration_come_first(bus, make_topic):
    make_topic("t")
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest", max_poll_records=50) as c:
        for i in range(20):
            p.send("t", b"%d" % i, key=b"k" if i % 2 else None)
        assert next(iter(c)).offset == 0   # fetches all 20 for iteration, hands out one
        batch = c.poll_batch(timeout=1)
        assert batch.offsets.tolist() == list(range(1, 20))
        assert list(batch.values) == [b"%d" % i for i in range(1, 20)]
        assert list(batch.keys) == [b"k" if i % 2 else None for i in range(1, 20)]
        assert c.position(shmbus.TopicPartition("t", 0)) == 20


def test_as_numpy_is_the_values_and_names_the_first_wrong_size(bus, make_topic):
    make_topic("t", ring_bytes=1 << 20)
    readings = np.zeros(100, dtype=[("t", "<i8"), ("x", "<f4"), ("y", "<f4")])
    readings["t"] = np.arange(100)
    readings["x"] = np.linspace(0, 1, 100)
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        assert p.send_array("t", readings) == 100
        p.send("t", b"short")
        batch = c.poll_batch(timeout=1)
        assert len(batch) == 101
        with pytest.raises(ValueError, match=r"16 bytes, but the value at offset 100 \(t/0\) is 5 bytes"):
            batch.as_numpy(readings.dtype)
        batch.release()
        assert p.send_array("t", readings) == 100
        batch = c.poll_batch(timeout=1)
        array = batch.as_numpy(readings.dtype)
        assert array.dtype == readings.dtype and np.array_equal(array, readings)
        assert array.flags.writeable   # the batch's own copy
        array["x"] += 1                # ... which nothing else sees
        assert np.array_equal(batch.as_numpy(readings.dtype)["x"], readings["x"] + 1)


def test_send_array_sends_a_row_per_record_in_few_calls(bus):
    bus.create_topic("img", ring_bytes=1 << 20, durable=False, partitions=2)
    frames = np.random.default_rng(7).integers(0, 255, size=(40, 120, 160), dtype=np.uint8)   # 19 KiB each
    frame = np.dtype((np.uint8, (120, 160)))
    with bus.producer() as p, bus.consumer("img", auto_offset_reset="earliest") as c:
        assert p.send_array("img", frames, partition=1) == 40   # 750 KiB: more than half the ring, two claims
        assert p.send_array("img", frames[:3], key=b"cam", partition=0) == 3
        assert p.send_array("img", np.arange(5, dtype=np.int32), partition=0) == 5
        assert p.send_array("img", np.empty((0, 4))) == 0
        batches = []
        while sum(len(b) for b in batches) < 48:
            batch = c.poll_batch(timeout=2)
            assert batch is not None
            batches.append(batch)
        one = np.concatenate([b.as_numpy(frame) for b in batches if b.partition == 1])
        assert np.array_equal(one, frames)
        zero = [b for b in batches if b.partition == 0]
        assert len(zero) == 1 and len(zero[0]) == 8
        assert list(zero[0].keys) == [b"cam"] * 3 + [None] * 5
        assert np.array_equal(np.stack([np.frombuffer(v, np.uint8).reshape(120, 160)
                                        for v in zero[0].values[:3]]), frames[:3])
        assert [int.from_bytes(v, "little") for v in zero[0].values[3:]] == [0, 1, 2, 3, 4]


def test_send_array_refuses_what_it_cannot_send_and_sends_nothing(bus, make_topic):
    make_topic("t")
    a = np.arange(24, dtype=np.float32).reshape(4, 6)
    with bus.producer() as p:
        with pytest.raises(ValueError, match="not C-contiguous"):
            p.send_array("t", a[:, ::2])
        with pytest.raises(ValueError, match="not C-contiguous"):
            p.send_array("t", a.T)
        with pytest.raises(TypeError, match="Python objects"):
            p.send_array("t", np.array([b"a", 1, None], dtype=object))
        with pytest.raises(TypeError, match="numpy array"):
            p.send_array("t", [1, 2, 3])
        with pytest.raises(ValueError, match="at least one axis"):
            p.send_array("t", np.array(1.0))
        with pytest.raises(shmbus.MessageTooLarge):
            p.send_array("t", np.zeros((2, 40 << 10), dtype=np.uint8))   # rows larger than half the ring
        with pytest.raises(shmbus.TopicNotFound):
            p.send_array("nope", a)
        assert p.send("t", b"first").offset == 0   # nothing of the above was sent


def test_a_batch_after_release_or_close_is_an_error(bus, make_topic):
    make_topic("t")
    with bus.producer() as p:
        for i in range(5):
            p.send("t", b"%d" % i)
    c = bus.consumer("t", auto_offset_reset="earliest")
    batch = c.poll_batch(timeout=1)
    batch.release()
    for use in (lambda: batch.values, lambda: batch.keys, lambda: batch.as_numpy(np.uint8), lambda: list(batch)):
        with pytest.raises(shmbus.Closed, match="released"):
            use()
    batch.release()   # once is enough; twice is harmless
    assert batch.offsets.tolist() == [0, 1, 2, 3, 4]   # the columns stay: they are the caller's
    c.seek(shmbus.TopicPartition("t", 0), 0)
    views = c.poll_batch(timeout=1, copy=False)
    assert views.zero_copy
    c.close()
    with pytest.raises(shmbus.Closed):
        views.values[0]
    with pytest.raises(shmbus.Closed):
        c.poll_batch(timeout=0)
    with pytest.raises(TypeError, match="copy must be"):
        bus.consumer("t").poll_batch(copy="no")


def test_without_numpy_batches_say_what_to_install(bus_paths, bus, make_topic):
    make_topic("t")
    code = f"""
import sys
sys.modules["numpy"] = None   # as if it were not installed
import shmbus
with shmbus.connect({bus_paths.bus!r}, {str(bus_paths.data_dir)!r}, autostart=False) as bus:
    with bus.producer() as p, bus.consumer("t") as c:
        p.send("t", b"still works")
        for call in (lambda: c.poll_batch(timeout=0), lambda: p.send_array("t", [1])):
            try:
                call()
            except ImportError as e:
                print(e)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and all("pip install 'shmbus[numpy]'" in line for line in lines), lines
    assert lines[0].startswith("Consumer.poll_batch needs numpy") and lines[1].startswith("send_array needs numpy")
