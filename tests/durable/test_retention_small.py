"""retention_bytes smaller than one segment: retention deletes every closed segment and
never the active one -- with the archiver writing it and readers reading meanwhile --,
so the newest records are always on disk and readable from the earliest offset."""
import os
import threading

import pytest

import shmbus
from shmbus import TopicPartition
from shmbus._segment_files import list_segments, segment_path

import buskit
import damage

TP = TopicPartition("r", 0)
RECORDS = 20000


def value(i):
    return b"%08d" % i + b"-" * 56


@pytest.mark.timeout(120)
def test_retention_below_one_segment_keeps_the_active_segment(bus, bus_paths):
    bus.create_topic("r", ring_bytes=64 << 10, segment_bytes=64 << 10, retention_bytes=16 << 10)
    directory = damage.partition_dir(bus_paths, "r")
    seen, problems, done = [], [], []

    def read_along():
        """A reader going on while retention deletes under it: it may be reset forward
        (Kafka's earliest), never handed a record out of order or damaged."""
        with bus.consumer("r", auto_offset_reset="earliest") as c:
            while not (done and seen and seen[-1] >= done[0] - 1):
                for m in c.poll_many(2000, timeout=5):
                    if m.value != value(m.offset) or (seen and m.offset <= seen[-1]):
                        problems.append((m.offset, m.value[:12]))
                    seen.append(m.offset)
                if problems:
                    return
    reader = threading.Thread(target=read_along)
    reader.start()
    with bus.producer() as p:
        for i in range(RECORDS):
            p.send("r", value(i))
        p.flush()
        # The active segment must itself be larger than retention_bytes, or a sweep that
        # wrongly counted it as deletable would find nothing to delete.
        sent = RECORDS
        while os.path.getsize(segment_path(directory, list_segments(directory)[-1])) <= 20 << 10:
            for _ in range(50):
                p.send("r", value(sent))
                sent += 1
            p.flush()
        done.append(sent)
    reader.join(60)
    assert not problems, problems[:5]
    assert seen and seen[-1] == sent - 1
    # Retention leaves exactly the active segment, and it holds the newest records.
    # (A sweep runs every 5 s; one that also took the active segment would leave none.)
    assert buskit.wait_until(lambda: len(list_segments(directory)) == 1, 20), list_segments(directory)
    (active,) = list_segments(directory)
    assert 0 < active < sent
    # After a clean stop the ring is gone: the newest records come from the active segment.
    damage.stop_cleanly(bus, bus_paths)
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as again:
        with again.consumer("r", auto_offset_reset="earliest") as c:
            got = buskit.read_exact(c, sent - active, timeout=10)
        assert [m.offset for m in got] == list(range(active, sent))
        assert all(m.value == value(m.offset) for m in got)
        with again.producer() as p:   # and archiving goes on after it
            assert p.send("r", value(sent)).offset == sent
            p.flush()
        with again.consumer("r", auto_offset_reset="none") as c:
            c.seek(TP, sent)
            assert c.poll(timeout=5).value == value(sent)
