"""Damage the supervisor finds in the log at start: a closed segment cut short (a hole
in the offsets), a flipped bit in the active segment after a clean stop or a crash.
Recovery cuts only a torn tail; damage is reported (log, describe) and kept, readers
get CorruptSegment for it, and offsets are never reused."""
import os

import pytest

import shmbus
from shmbus import TopicPartition
from shmbus._segment_files import list_segments

import buskit
import damage

TP = TopicPartition("d", 0)


def value(i):
    return b"%06d" % i + b"." * 90


def produce(bus, count, segment_bytes, ring_bytes=64 << 10):
    bus.create_topic("d", ring_bytes=ring_bytes, segment_bytes=segment_bytes)
    with bus.producer() as p:
        for i in range(count):
            p.send("d", value(i))
        p.flush()


def stop(bus, paths, how):
    if how == "clean stop":
        damage.stop_cleanly(bus, paths)
    else:
        damage.kill_supervisor(paths)


def partition_damage(bus):
    return bus.describe_topic("d").partitions[0].damage


def check_values(messages):
    assert all(m.value == value(m.offset) for m in messages)


@pytest.mark.parametrize("how", ["clean stop", "SIGKILL"])
def test_closed_segment_cut_in_half_is_a_hole_readers_cannot_cross_silently(bus_paths, how):
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        produce(bus, 3000, 64 << 10)
        stop(bus, bus_paths, how)
    segments = damage.segment_files(bus_paths, "d")
    bases = list_segments(damage.partition_dir(bus_paths, "d"))
    cut = segments[1]
    with open(cut, "r+b") as f:
        f.truncate(os.path.getsize(cut) // 2)
    # The first offset gone: the one after the last whole frame left.
    first_missing = damage.frames(cut)[-1][2] + 1
    assert first_missing < bases[2]
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        log = damage.supervisor_log(bus_paths)
        report = f"offsets {first_missing}..{bases[2] - 1} are missing"
        assert cut in log and report in log, "the hole is in the supervisor log at start"
        found = partition_damage(bus)
        assert len(found) == 1 and cut in found[0] and report in found[0], "and in describe"
        described = buskit.run_cli(bus_paths, "topics", "describe", "d")
        assert described.returncode == 0 and b"DAMAGE" in described.stdout
        assert report.encode() in described.stdout.replace(b"\n", b"")
        with bus.consumer("d", group="g", auto_offset_reset="earliest") as c:
            got = []
            with pytest.raises(shmbus.CorruptSegment) as err:
                for _ in range(20):
                    got.extend(c.poll_many(1000, timeout=2))
            assert [m.offset for m in got] == list(range(first_missing))
            check_values(got)
            e = err.value
            assert (e.topic_partition, e.offset, e.resume_offset, e.path) == (TP, first_missing, bases[2], cut)
            c.commit()
            assert c.committed(TP) == first_missing
            c.seek(TP, e.offset + 1)  # still in the hole
            with pytest.raises(shmbus.CorruptSegment) as err:
                c.poll(timeout=2)
            assert (err.value.offset, err.value.resume_offset) == (first_missing + 1, bases[2])
            c.seek(TP, err.value.resume_offset)
            rest = damage.read_until_empty(c)
            assert [m.offset for m in rest] == list(range(bases[2], 3000))
            check_values(rest)


def test_a_deleted_middle_segment_is_a_hole_too(bus_paths):
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        produce(bus, 3000, 64 << 10)
        stop(bus, bus_paths, "clean stop")
    bases = list_segments(damage.partition_dir(bus_paths, "d"))
    gone = damage.segment_files(bus_paths, "d")[2]
    os.unlink(gone)
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        assert f"offsets {bases[2]}..{bases[3] - 1} are missing" in partition_damage(bus)[0]
        with bus.consumer("d", auto_offset_reset="earliest") as c:
            with pytest.raises(shmbus.CorruptSegment) as err:
                damage.read_until_empty(c)
            assert (err.value.offset, err.value.resume_offset) == (bases[2], bases[3])


@pytest.mark.parametrize("where", ["middle", "last record"])
def test_flipped_bit_in_the_active_segment_after_a_clean_stop_is_reported_not_cut(bus_paths, where):
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        produce(bus, 1000, 1 << 20)  # every record in the one, active, segment
        damage.stop_cleanly(bus, bus_paths)
    (active,) = damage.segment_files(bus_paths, "d")
    size = os.path.getsize(active)
    bad = 600 if where == "middle" else 999
    at, _ = damage.frame_of(active, bad)
    damage.flip_bit(active, at + damage.VALUE_AT + 2)
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        assert os.path.getsize(active) == size, "nothing truncated"
        log = damage.supervisor_log(bus_paths)
        assert "truncating" not in log
        assert active in partition_damage(bus)[0] and active in log.split("starting (after a clean stop)")[-1]
        with bus.producer() as p:
            assert p.send("d", value(1000)).offset == 1000, "offsets are never reused"
            p.flush()
        bases = list_segments(damage.partition_dir(bus_paths, "d"))
        assert bases == [0, 1000], "new records go to a new segment after the highest offset"
        with bus.consumer("d", auto_offset_reset="earliest") as c:
            with pytest.raises(shmbus.CorruptSegment) as err:
                damage.read_until_empty(c)
            assert (err.value.offset, err.value.resume_offset) == (bad, bad + 1)
            c.seek(TP, bad + 1)
            rest = damage.read_until_empty(c)
            assert [m.offset for m in rest] == list(range(bad + 1, 1001))
            check_values(rest)


@pytest.mark.parametrize("in_ring", [True, False], ids=["still in the ring", "only on disk"])
def test_flipped_bit_in_the_active_segment_after_a_crash_is_kept(bus_paths, in_ring):
    """SIGKILL: the rings survive. A damaged record the ring still holds is read from the
    ring; one only the disk had raises CorruptSegment. Nothing is cut either way."""
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        produce(bus, 3000, 1 << 20)  # 64 KiB ring: about the last 450 records are in it
        damage.kill_supervisor(bus_paths)
    (active,) = damage.segment_files(bus_paths, "d")
    size = os.path.getsize(active)
    bad = 2900 if in_ring else 1500
    at, _ = damage.frame_of(active, bad)
    damage.flip_bit(active, at + 30, 2)  # in the header, where the CRC covers it
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        assert os.path.getsize(active) >= size, "nothing truncated"
        assert "truncating" not in damage.supervisor_log(bus_paths)
        assert active in partition_damage(bus)[0]
        with bus.producer() as p:
            assert p.send("d", value(3000)).offset == 3000, "offsets are never reused"
        with bus.consumer("d", auto_offset_reset="earliest") as c:
            if in_ring:
                got = damage.read_until_empty(c)
                assert [m.offset for m in got] == list(range(3001))
                check_values(got)
            else:
                with pytest.raises(shmbus.CorruptSegment) as err:
                    damage.read_until_empty(c)
                assert err.value.offset == bad
                c.seek(TP, bad + 1)
                rest = damage.read_until_empty(c)
                assert [m.offset for m in rest] == list(range(bad + 1, 3001))


def test_garbage_after_the_last_frame_after_a_clean_stop_is_kept_and_offsets_go_on(bus_paths):
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        produce(bus, 500, 1 << 20)
        damage.stop_cleanly(bus, bus_paths)
    (active,) = damage.segment_files(bus_paths, "d")
    size = os.path.getsize(active)
    with open(active, "ab") as f:
        f.write(os.urandom(300))
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        assert os.path.getsize(active) == size + 300
        assert "300 bytes after its last intact frame" in partition_damage(bus)[0]
        with bus.producer() as p:
            assert p.send("d", value(500)).offset == 500
        with bus.consumer("d", auto_offset_reset="earliest") as c:
            got = damage.read_until_empty(c)
            assert [m.offset for m in got] == list(range(501))


@pytest.mark.parametrize("reset", ["earliest", "none"])
def test_segments_retention_deletes_under_a_reader_are_no_damage(bus_paths, reset):
    """Retention deletes whole segments, oldest first, also the one a slow reader is in:
    at its end the reader finds the next retained segment far ahead. That gap is 'not
    retained' (auto_offset_reset), not a hole in the log."""
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        produce(bus, 3000, 64 << 10)
        bases = list_segments(damage.partition_dir(bus_paths, "d"))
        with bus.consumer("d", auto_offset_reset=reset) as c:
            c.seek(TP, 0)
            assert [m.offset for m in c.poll_many(100, timeout=2)] == list(range(100))
            for path in damage.segment_files(bus_paths, "d")[:2]:  # as retention does
                for suffix in ("", ".index", ".timeindex"):
                    os.unlink(path[:-len(".log")] + (suffix or ".log"))
            if reset == "none":
                with pytest.raises(shmbus.OffsetOutOfRange):
                    damage.read_until_empty(c)
                return
            rest = [m.offset for m in damage.read_until_empty(c)]
            assert rest == list(range(100, bases[1])) + list(range(bases[2], 3000))
