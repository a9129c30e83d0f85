"""The ring wraps: frames that would cross its end leave a padding frame, the
oldest records of a memory-only topic are overwritten, and a consumer that
falls behind gets the earliest record still there plus a count of what it
missed; never garbage."""
import random
import time

import pytest

from shmbus import TopicPartition

import buskit
from buskit import read_exact

pytestmark = pytest.mark.timeout(90)

TP = TopicPartition("t", 0)


def drain(consumer, timeout=1.0):
    """Everything readable now: poll until one poll comes back empty."""
    messages = []
    while True:
        batch = consumer.poll_many(10_000, timeout=timeout)
        if not batch:
            return messages
        messages.extend(batch)
        timeout = 0.2


def check_records(messages, tag, first_seq):
    """Offsets consecutive from first_seq, each value intact and matching its offset."""
    for i, m in enumerate(messages):
        assert m.offset == first_seq + i, f"offset {m.offset} where {first_seq + i} was expected"
        got_tag, seq = buskit.check_value(m.value)
        assert (got_tag, seq) == (tag, m.offset)


@pytest.mark.parametrize("ring_bytes", [64 << 10, (64 << 10) + 4096 * 5, 1 << 20])
def test_many_laps_in_lockstep_with_sizes_that_do_not_divide_the_ring(bus, make_topic, ring_bytes):
    make_topic("t", ring_bytes=ring_bytes)
    data_bytes = bus.topic("t").ring_bytes
    limit = bus.describe_topic("t").max_record_bytes
    rng = random.Random(ring_bytes)
    laps, written, seq = 25, 0, 0
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        while written < laps * data_bytes:
            # Write up to a third of the ring, then read it all back: the
            # consumer is never lapped, so every record must arrive.
            budget, first = data_bytes // 3, seq
            while budget > 0:
                # Small, medium, or as large as the round's budget allows.
                size = rng.choice([rng.randint(17, 200), rng.randint(17, 3001), limit])
                size = max(17, min(size, budget - 56))
                if rng.random() < 0.25:
                    values = [buskit.make_value("w", seq + i, rng.randint(17, 700)) for i in range(rng.randint(1, 20))]
                    assert p.send_many("t", values, partition=0) == len(values)
                    seq += len(values)
                    nbytes = sum(len(v) + 56 for v in values)
                else:
                    assert p.send("t", buskit.make_value("w", seq, size)).offset == seq
                    seq += 1
                    nbytes = size + 56
                budget -= nbytes
                written += nbytes
            check_records(read_exact(c, seq - first), "w", first)
        assert c.missed() == 0
        assert c.position(TP) == seq
    partition = bus.describe_topic("t").partitions[0]
    assert partition.end_offset == seq
    assert partition.earliest_offset > 0, "the ring wrapped, so the oldest records are gone"


def test_records_of_size_zero_and_none_across_many_laps(bus, make_topic):
    make_topic("t")
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        expected = []
        for round_ in range(60):
            # 64 minimal frames of 48-56 bytes: about 3.5 KiB per round, 3 laps in all.
            for i in range(64):
                value = [b"", None, b"x" * (i % 9)][i % 3]
                key = None if i % 2 else b""
                p.send("t", value, key=key)
                expected.append((key, value))
            got = read_exact(c, len(expected))
            assert [(m.key, m.value) for m in got] == expected
            expected = []
        assert c.poll(timeout=0.1) is None
        assert c.missed() == 0


def test_send_many_splits_at_half_a_ring_and_crosses_the_wrap(bus, make_topic):
    make_topic("t")  # 64 KiB: at most 32 KiB per claim
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        # Bring the tail near the end of the ring first.
        for seq in range(55):
            p.send("t", buskit.make_value("s", seq, 1000))
        check_records(read_exact(c, 55), "s", 0)
        # ~40 KiB in one call: more than one claim, and it crosses the wrap.
        values = [buskit.make_value("s", 55 + i, 450) for i in range(80)]
        assert p.send_many("t", values, partition=0) == 80
        check_records(read_exact(c, 80), "s", 55)
        assert c.poll(timeout=0.1) is None and c.missed() == 0


def test_send_many_of_more_than_the_whole_ring(bus, make_topic):
    make_topic("t")
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        c.position(TP)  # the consumer starts at offset 0
        values = [buskit.make_value("s", i, 300) for i in range(1000)]  # ~350 KiB into a 64 KiB ring
        assert p.send_many("t", values, partition=0) == 1000
        got = drain(c)
        # What survives is the newest part, intact; the rest is counted as missed.
        assert got and got[-1].offset == 999
        check_records(got, "s", got[0].offset)
        assert c.missed() == got[0].offset
        assert got[0].offset == bus.describe_topic("t").partitions[0].earliest_offset


def test_lapped_consumer_gets_the_earliest_record_and_counts_the_gap(bus, make_topic):
    make_topic("t")
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        for seq in range(10):
            p.send("t", buskit.make_value("l", seq, 500))
        check_records(c.poll_many(5, timeout=5), "l", 0)       # read 0..4, then fall behind
        for seq in range(10, 2000):                              # ~15 laps of the ring
            p.send("t", buskit.make_value("l", seq, 500))
        earliest = bus.describe_topic("t").partitions[0].earliest_offset
        first = c.poll(timeout=5)
        assert first.offset == earliest
        assert c.missed() == earliest - 5
        assert c.missed(TP) == earliest - 5
        rest = drain(c)
        check_records([first, *rest], "l", earliest)
        assert rest[-1].offset == 1999
        # Caught up: new records arrive normally and nothing more is missed.
        p.send("t", buskit.make_value("l", 2000, 500))
        check_records([c.poll(timeout=5)], "l", 2000)
        assert c.missed() == earliest - 5


@pytest.mark.timeout(120)
def test_slow_consumer_in_another_process_is_lapped_but_never_gets_garbage(bus, make_topic, children):
    make_topic("t")
    total = 20_000
    seen, last_offset = 0, -1
    with bus.consumer("t", auto_offset_reset="earliest") as c:
        c.position(TP)  # start at offset 0, before the producer starts
        producer = children.start("produce", topic="t", tag="fast", count=total, size=[17, 900], partition=0)
        producer.wait_ready()
        deadline = time.monotonic() + 60
        while last_offset < total - 1 and time.monotonic() < deadline:
            for m in c.poll_many(50, timeout=0.5):
                tag, seq = buskit.check_value(m.value)   # never garbage, never torn
                assert tag == "fast" and seq == m.offset
                assert m.offset > last_offset
                last_offset = m.offset
                seen += 1
            time.sleep(0.001)                             # slower than the producer
        missed = c.missed()
    producer.wait(30)
    assert last_offset == total - 1
    assert seen + missed == total, "every offset is either read or counted as missed"


# Every room a claim can find left at the ring's end: none, less than a frame header
# (the frame before the end absorbs it), exactly a header (a header-only padding
# frame), and more (a longer padding frame).
REMAINDERS = list(range(0, 104, 8))


def _steer(p, ring, data_bytes, room_left, seq):
    """Send records (make_value, tag "w") until the last frame before the ring's end
    leaves room_left bytes there, then one that cannot fit in that room and wraps.
    Returns the next seq. The tail is read from the ring itself, so where each frame
    lands is known, not hoped for."""
    header = 48
    end = data_bytes - room_left   # where the frame before the wrap must end
    while True:
        at = ring.stats().tail % data_bytes
        remaining = end - at
        if remaining >= header + 24 and remaining <= data_bytes // 4:   # room for a make_value
            break
        # Too far (send a quarter ring), or too close to land exactly (wrap past it).
        frame = data_bytes // 4 if remaining > data_bytes // 4 else max(remaining, 0) + data_bytes // 8
        p.send("w", buskit.make_value("w", seq, frame - header), partition=0)
        seq += 1
    p.send("w", buskit.make_value("w", seq, remaining - header), partition=0)
    seq += 1
    landed = ring.stats().tail % data_bytes
    assert landed == (end if room_left >= header else 0), (room_left, landed)   # absorbed when < a header
    # The next frame cannot fit the room: it must wrap. Where the room could take a frame,
    # it is exactly 8 bytes too long for it (the frame a wrap check off by 8 lets cross).
    crossing = room_left + 8 if room_left >= header + 24 else room_left + 200
    p.send("w", buskit.make_value("w", seq, crossing - header), partition=0)
    return seq + 1


@pytest.mark.timeout(120)
def test_every_room_left_at_the_ring_end_wraps_cleanly_for_a_reader_in_another_process(bus, children):
    bus.create_topic("w", ring_bytes=64 << 10)   # durable: the producer never laps the reader
    _, (ring,) = bus.rings.get("w")
    data_bytes = ring.stats().data_bytes
    with bus.producer() as p:
        p.send("w", buskit.make_value("w", 0, 100), partition=0)
        seq = 1
        reader = children.start("consume", topics=["w"], done_file=str(children.workdir) + "/w.done",
                                timeout=60)
        reader.wait_ready()
        for room_left in REMAINDERS:
            seq = _steer(p, ring, data_bytes, room_left, seq)
        p.flush()
    open(str(children.workdir) + "/w.done", "w").close()
    out = reader.wait(90)
    assert not out["garbage"], out["garbage"]
    assert out["missed"] == 0
    assert [r[2] for r in out["records"]] == list(range(seq)), "every record, once, in order"
    assert [r[5] for r in out["records"]] == list(range(seq)), "each one's own bytes"
