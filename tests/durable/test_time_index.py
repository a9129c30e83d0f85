"""offsets_for_times (Kafka's offsetsForTimes: the first offset whose record's timestamp
is >= the one asked for) against a brute-force scan, over many segment boundaries."""
import bisect
import itertools
import random

from shmbus import TopicPartition
from shmbus._segment_files import list_segments

from test_durable import partition_dir


def test_offsets_for_times_matches_a_brute_force_scan(bus, bus_paths):
    """Small segments, many records, timestamps increasing with runs of equal ones and a
    few that go back: every record's timestamp is asked for, and timestamps between
    records, before the first and past the last. The answer must be exactly the first
    offset at or after each."""
    bus.create_topic("ts", ring_bytes=64 << 10, segment_bytes=64 << 10)
    rng = random.Random(8)
    timestamps = []
    ts = 1_000_000
    for i in range(2000):
        ts += rng.choice((0, 0, 1, 7, 10, 10, 10, 250))
        # A record now and then from a clock that was behind (Kafka allows it).
        timestamps.append(ts - 300 if i % 197 == 5 else ts)
    with bus.producer() as p:
        for i, t in enumerate(timestamps):
            p.send("ts", b"%06d" % i + b"." * 300, timestamp_ns=t)
        p.flush()
    assert len(list_segments(partition_dir(bus_paths, "ts"))) >= 10, "the test needs many segment boundaries"

    def brute_force(target):
        return next((o for o, t in enumerate(timestamps) if t >= target), None)
    # The same answers, quickly: the first offset whose running maximum reaches the target.
    running_max = list(itertools.accumulate(timestamps, max))

    def expected(target):
        i = bisect.bisect_left(running_max, target)
        return i if i < len(timestamps) else None

    queries = sorted(set(timestamps) | {t + 1 for t in timestamps} | {t - 1 for t in timestamps}
                     | {0, timestamps[-1] + 10 ** 9})
    tp = TopicPartition("ts", 0)
    wrong = {}
    with bus.consumer("ts") as c:
        for target in queries:
            found = c.offsets_for_times({tp: target})[tp]
            if found != expected(target):
                wrong[target] = (found, expected(target))
    assert all(expected(t) == brute_force(t) for t in queries[::50])
    assert not wrong, f"{len(wrong)} of {len(queries)} wrong (timestamp: (found, expected)), e.g. " \
                      f"{dict(list(wrong.items())[:5])}"
