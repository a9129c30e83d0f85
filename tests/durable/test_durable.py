"""The durable log: archiving, flush, replay from disk, recovery from any crash,
retention, full disk. Real processes, real files, real SIGKILLs."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

import shmbus
from shmbus import TopicPartition
from shmbus._segment_files import list_segments, segment_path

import buskit

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "durable_child.py")


def start_child(paths, role, topic, out, *args):
    return subprocess.Popen([sys.executable, CHILD, role, paths.bus, paths.data_dir, topic, str(out),
                             *map(str, args)], stdin=subprocess.DEVNULL)


def read_all(bus, topic, timeout=2.0, **options):
    with bus.consumer(topic, auto_offset_reset="earliest", **options) as c:
        messages = []
        while True:
            batch = c.poll_many(10000, timeout=timeout)
            if not batch:
                return messages
            messages.extend(batch)


def partition_dir(paths, topic, partition=0):
    return os.path.join(paths.data_dir, "topics", topic, str(partition))


def supervisor_pid(paths):
    proc = buskit.supervisor_process(paths)
    return proc.pid if proc else None


def test_durable_is_the_default_and_survives_a_clean_restart(bus, bus_paths):
    info = bus.create_topic("d", partitions=2, ring_bytes=64 << 10, segment_bytes=64 << 10)
    assert info.durable
    with bus.producer() as p:
        for i in range(3000):
            p.send("d", b"v%d" % i, key=b"k%d" % (i % 7))
        p.flush()
    before = {m.value: (m.partition, m.offset) for m in read_all(bus, "d")}
    assert len(before) == 3000
    bus.stop_supervisor()
    assert buskit.wait_until(lambda: supervisor_pid(bus_paths) is None, 20)
    assert buskit.shm_leftovers(bus_paths) == []
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as again:
        assert again.topics()["d"].segment_bytes == 64 << 10
        after = {m.value: (m.partition, m.offset) for m in read_all(again, "d")}
        assert after == before
        with again.producer() as p:
            md = p.send("d", b"new", partition=0)
        ends = {p: max(o for part, o in before.values() if part == p) for p in (0, 1)}
        assert md.offset == ends[0] + 1, "offsets continue, never reused"


@pytest.mark.timeout(180)
def test_lagging_consumer_replays_from_disk_and_rejoins_the_ring(bus, bus_paths, tmp_path):
    """A 1 MiB ring, 200 MiB sent while the consumer is stopped: it then reads
    everything from offset 0, from disk and then from the ring, while producers go on."""
    bus.create_topic("big", ring_bytes=1 << 20, segment_bytes=16 << 20)
    out = tmp_path / "consumer.json"
    total = 200 * 16 + 400  # 64 KiB records: 200 MiB, then more while it reads
    consumer = start_child(bus_paths, "consume", "big", out, total, 30)
    assert buskit.wait_until(lambda: os.path.exists(str(out) + ".ready"), 30)
    buskit.freeze(consumer.pid)
    try:
        with bus.producer() as p:
            value = b"x" * (64 << 10)
            for i in range(200 * 16):
                p.send("big", b"%d:" % i + value[:-8])
            os.kill(consumer.pid, signal.SIGCONT)
            for i in range(200 * 16, total):
                p.send("big", b"%d:" % i + value[:-8])
                if i % 50 == 0:
                    time.sleep(0.01)
    finally:
        os.kill(consumer.pid, signal.SIGCONT)
    assert consumer.wait(120) == 0
    seen = json.loads(out.read_text())
    assert [o for o, _ in seen] == list(range(total)), "same offsets, same order, no gap, no duplicate"
    assert all(int(v) == o for o, v in seen)


@pytest.mark.timeout(240)
def test_supervisor_sigkilled_twenty_times_loses_no_flushed_record(bus, bus_paths, tmp_path):
    """A producer and a consumer process run through 20 SIGKILLs of the supervisor
    without being restarted; every flushed record is there once, at its offset."""
    bus.create_topic("k", partitions=2, ring_bytes=256 << 10, segment_bytes=1 << 20)
    flushed_file = tmp_path / "flushed"
    live_out = tmp_path / "live.json"
    producer_done = tmp_path / "producer.done"
    live_consumer = start_child(bus_paths, "consume", "k", live_out, 10 ** 9, 3, producer_done)
    assert buskit.wait_until(lambda: os.path.exists(str(live_out) + ".ready"), 30)
    producer = start_child(bus_paths, "produce", "k", flushed_file, 14, 300, 40)
    kills = 0
    deadline = time.monotonic() + 60
    while kills < 20 and time.monotonic() < deadline:
        time.sleep(random.uniform(0.15, 0.45))
        pid = supervisor_pid(bus_paths)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            buskit.reap_if_child(pid)
            kills += 1
    assert kills >= 20
    assert producer.wait(180) == 0, "the producer went on without being restarted"
    producer_done.touch()
    flushed = int(flushed_file.read_text())
    assert live_consumer.wait(120) == 0, "the consumer went on without being restarted"
    for out in (live_out, None):
        if out is None:  # and a consumer process started now reads it all back from disk
            out = tmp_path / "late.json"
            assert start_child(bus_paths, "consume", "k", out, flushed, 10).wait(120) == 0
        seen = json.loads(out.read_text())
        values = [int(v) for _, v in seen]
        assert len(values) == len(set(values)), "no record twice"
        assert set(range(flushed)) <= set(values), "every flushed record is there"
    messages = read_all(bus, "k")
    for p in (0, 1):
        offsets = [m.offset for m in messages if m.partition == p]
        assert offsets == list(range(len(offsets))), "offsets consecutive, never reused"


def stop_and_wipe_rings(bus, paths):
    """A host crash, as far as shmbus can tell: the supervisor dies and /dev/shm is gone."""
    pid = supervisor_pid(paths)
    os.kill(pid, signal.SIGKILL)
    buskit.reap_if_child(pid)
    assert buskit.wait_until(lambda: supervisor_pid(paths) is None, 10)
    buskit.unlink_shm(buskit.shm_leftovers(paths))


@pytest.mark.parametrize("damage", ["cut mid-frame", "garbage appended"])
def test_torn_tail_is_truncated_and_offsets_continue(bus, bus_paths, damage):
    bus.create_topic("t", ring_bytes=64 << 10, segment_bytes=64 << 10)
    with bus.producer() as p:
        for i in range(1000):
            p.send("t", b"r%d" % i)
        p.flush()
    stop_and_wipe_rings(bus, bus_paths)
    directory = partition_dir(bus_paths, "t")
    last = segment_path(directory, list_segments(directory)[-1])
    size = os.path.getsize(last)
    with open(last, "r+b") as f:
        if damage == "cut mid-frame":
            f.truncate(size - 13)
        else:
            f.seek(size)
            f.write(os.urandom(300))
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as again:
        messages = read_all(again, "t")
        expected = 999 if damage == "cut mid-frame" else 1000
        assert [m.value for m in messages] == [b"r%d" % i for i in range(expected)]
        with again.producer() as p:
            assert p.send("t", b"next").offset == expected
    log = open(bus_paths.log_file).read()
    assert "truncating" in log


def test_flipped_bit_in_a_closed_segment_is_reported_never_served(bus, bus_paths):
    bus.create_topic("f", ring_bytes=64 << 10, segment_bytes=64 << 10)
    with bus.producer() as p:
        for i in range(5000):
            p.send("f", b"value-%06d" % i)
        p.flush()
    directory = partition_dir(bus_paths, "f")
    first = segment_path(directory, list_segments(directory)[0])
    with open(first, "r+b") as f:
        f.seek(os.path.getsize(first) // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x10]))
    with bus.consumer("f", auto_offset_reset="earliest") as c:
        good = []
        with pytest.raises(shmbus.CorruptSegment) as err:
            while True:
                good.extend(c.poll_many(1000, timeout=2))
        assert first in str(err.value) and "at byte" in str(err.value)
        assert all(m.value == b"value-%06d" % m.offset for m in good), "no corrupt record handed out"


def test_full_ring_blocks_then_buffer_full_while_the_archiver_is_stopped(bus, bus_paths):
    bus.create_topic("s", ring_bytes=64 << 10)
    pid = supervisor_pid(bus_paths)
    try:
        with bus.producer(timeout=1.0) as p:
            p.send("s", b"0" + b"." * 500)  # resolves the topic while the supervisor answers
            sent = 1
            buskit.freeze(pid)
            blocked = time.monotonic()
            with pytest.raises(shmbus.BufferFull):
                for i in range(1, 10000):
                    p.send("s", b"%d" % i + b"." * 500)
                    sent += 1
            # At the producer's timeout: asking the stopped supervisor whether it lives
            # once blocked the send for 20 s (a request's own timeout, twice).
            assert time.monotonic() - blocked < 5
            assert 0 < sent < 200
            os.kill(pid, signal.SIGCONT)
            p.send("s", b"after", timeout=10)
            p.flush(timeout=10)
    finally:
        os.kill(pid, signal.SIGCONT)
    values = [m.value for m in read_all(bus, "s")]
    assert values[:sent] == [b"%d" % i + b"." * 500 for i in range(sent)]
    assert values[sent:] == [b"after"], "nothing dropped, nothing corrupted"


def test_seek_anywhere_and_offsets_for_times(bus):
    bus.create_topic("q", ring_bytes=64 << 10, segment_bytes=64 << 10)
    with bus.producer() as p:
        for i in range(20000):
            p.send("q", b"%d" % i, timestamp_ns=1_000_000 + 10 * i)
        p.flush()
    tp = TopicPartition("q", 0)
    with bus.consumer("q") as c:
        for target in (0, 1, 7777, 15999, 19990, 19999):
            c.seek(tp, target)
            m = c.poll(timeout=2)
            assert (m.offset, m.value) == (target, b"%d" % target)
            assert c.position(tp) == target + 1
        found = c.offsets_for_times({tp: 1_000_000 + 10 * 12345 - 5})
        assert found == {tp: 12345}
        assert c.offsets_for_times({tp: 0}) == {tp: 0}
        assert c.offsets_for_times({tp: 10 ** 18}) == {tp: None}


def test_retention_deletes_closed_segments_and_consumers_follow_reset(bus, bus_paths):
    bus.create_topic("r", ring_bytes=64 << 10, segment_bytes=64 << 10, retention_bytes=256 << 10)
    with bus.producer() as p:
        for i in range(30000):
            p.send("r", b"%08d" % i)
        p.flush()
    directory = partition_dir(bus_paths, "r")

    def retained():
        """Bytes of segment files now. Retention runs meanwhile: a segment listed and then
        deleted before its size is read is gone, so it counts 0 (it once raised here)."""
        total = 0
        for base in list_segments(directory):
            try:
                total += os.path.getsize(segment_path(directory, base))
            except FileNotFoundError:
                pass
        return total
    assert buskit.wait_until(lambda: retained() <= (256 + 64) << 10, 20)
    earliest = list_segments(directory)[0]
    assert earliest > 0
    with bus.consumer("r", auto_offset_reset="earliest") as c:
        c.seek(TopicPartition("r", 0), 5)  # deleted by retention: earliest applies
        assert c.poll(timeout=2).offset == earliest
    with bus.consumer("r", auto_offset_reset="none") as c:
        c.seek(TopicPartition("r", 0), 5)
        with pytest.raises(shmbus.OffsetOutOfRange):
            c.poll(timeout=2)


def test_retention_by_age(bus, bus_paths):
    bus.create_topic("age", ring_bytes=64 << 10, segment_bytes=64 << 10, retention_ms=1)
    old = time.time_ns() - 10 ** 12
    with bus.producer() as p:
        for i in range(20000):
            p.send("age", b"%08d" % i, timestamp_ns=old)
        p.flush()
    directory = partition_dir(bus_paths, "age")
    assert buskit.wait_until(lambda: len(list_segments(directory)) == 1, 20), \
        "every closed segment is older than the retention"


def test_disk_full_is_reported_and_archiving_resumes(bus_paths, tmp_path):
    """The data dir on a 6 MiB tmpfs: when it fills the producer gets BufferFull naming
    the cause, describe shows the error, and freeing space lets everything through."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)]).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        paths = buskit.new_paths(bus_paths.bus, mount / "data")
        filler = mount / "filler"
        with shmbus.connect(paths.bus, paths.data_dir) as b:
            b.create_topic("full", ring_bytes=256 << 10, segment_bytes=1 << 20)
            filler.write_bytes(b"\0" * (5 << 20))
            sent = 0
            with b.producer(timeout=2.0) as p:
                with pytest.raises(shmbus.BufferFull):
                    for i in range(100000):
                        p.send("full", b"%d:" % i + b"y" * 1000)
                        sent += 1
                error = b.describe_topic("full").partitions[0].archive_error
                assert error and "No space left" in error
                filler.unlink()
                p.send("full", b"%d:" % sent + b"y" * 1000, timeout=20)
                sent += 1
                p.flush(timeout=20)
            assert b.describe_topic("full").partitions[0].archive_error is None
            values = [m.value for m in read_all(b, "full")]
            assert [int(v.split(b":")[0]) for v in values] == list(range(sent))
            b.stop_supervisor()
            assert buskit.wait_until(lambda: buskit.supervisor_process(paths) is None, 20)
        assert "cannot archive" in open(paths.log_file).read()
    finally:
        subprocess.run(["umount", "-l", str(mount)])


def test_clean_stop_archives_what_was_never_flushed(bus, bus_paths, tmp_path):
    """`shmbus stop` lets claims in flight finish, archives and fsyncs everything, and
    only then removes the rings: records sent without flush() are all on disk."""
    bus.create_topic("u", partitions=2, ring_bytes=1 << 20, segment_bytes=256 << 10)
    with bus.producer() as p:
        for i in range(20000):
            p.send("u", b"%d" % i, partition=i % 2)  # no flush
    done = buskit.run_cli(bus_paths, "stop")
    assert done.returncode == 0, done.stderr
    assert buskit.shm_leftovers(bus_paths) == []
    # Nothing in /dev/shm any more: whatever a new supervisor serves comes from disk.
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as again:
        values = sorted(int(m.value) for m in read_all(again, "u"))
        assert values == list(range(20000))
