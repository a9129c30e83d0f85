"""A consumer meets damaged records on disk: it gets every intact record before them,
never one after them by itself, commits never skip them, and it can step over them
explicitly (seek to e.offset + 1), whatever the damage did to the length words."""
import os

import pytest

import shmbus
from shmbus import TopicPartition

import damage

RECORDS = 3000
TP = TopicPartition("c", 0)


def value(i):
    return b"%06d" % i + b"." * 90


def make_log(bus, paths):
    """3000 records over 4+ closed segments, flushed; then a clean stop (no ring left:
    a new supervisor serves every record from disk). Returns the second segment."""
    bus.create_topic("c", ring_bytes=64 << 10, segment_bytes=64 << 10)
    with bus.producer() as p:
        for i in range(RECORDS):
            p.send("c", value(i))
        p.flush()
    damage.stop_cleanly(bus, paths)
    segments = damage.segment_files(paths, "c")
    assert len(segments) >= 5
    return segments[1]


def middle_record(path):
    """An offset in the middle of the segment, between two index entries."""
    frames = damage.frames(path)
    return frames[len(frames) // 2 + 3][2]


def check_values(messages):
    assert all(m.value == value(m.offset) for m in messages), "a damaged record was handed out"


DAMAGES = {
    # A flipped bit in the value, in the header the CRC covers, and in the CRC itself.
    "value bit": lambda path, at, size: damage.flip_bit(path, at + damage.VALUE_AT + 3),
    "timestamp bit": lambda path, at, size: damage.flip_bit(path, at + 24, 1),
    "crc bit": lambda path, at, size: damage.flip_bit(path, at + 9, 6),
    # The length word (which the CRC does not cover) made garbage too: huge, a little
    # longer (the next frame seems to start in the middle of the real one), zero.
    "length garbage and value bit": lambda path, at, size: (
        damage.write_at(path, at, (0x7FFFFF18).to_bytes(4, "little")),
        damage.flip_bit(path, at + damage.VALUE_AT)),
    "length 16 longer and value bit": lambda path, at, size: (
        damage.write_at(path, at, (size + 16).to_bytes(4, "little")),
        damage.flip_bit(path, at + damage.VALUE_AT)),
    "length zero": lambda path, at, size: damage.write_at(path, at, bytes(8)),
}


def test_a_length_word_a_little_too_long_loses_no_record(bus_paths):
    """The CRC does not cover the length word: one that overstates its frame by 16 bytes
    leads into the middle of the next frame. The reader finds that frame again."""
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        path = make_log(bus, bus_paths)
    bad = middle_record(path)
    at, size = damage.frame_of(path, bad)
    damage.write_at(path, at, (size + 16).to_bytes(4, "little"))
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        with bus.consumer("c", auto_offset_reset="earliest") as c:
            got = damage.read_until_empty(c)
            assert [m.offset for m in got] == list(range(RECORDS))
            check_values(got)
            c.seek(TP, bad + 1)
            assert c.poll(timeout=2).offset == bad + 1


@pytest.mark.parametrize("how", list(DAMAGES))
def test_records_before_a_damaged_one_are_handed_out_and_seek_steps_over_it(bus_paths, how):
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        path = make_log(bus, bus_paths)
    bad = middle_record(path)
    at, size = damage.frame_of(path, bad)
    DAMAGES[how](path, at, size)
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        with bus.consumer("c", group="g", auto_offset_reset="earliest") as c:
            got = []
            with pytest.raises(shmbus.CorruptSegment) as err:
                for _ in range(20):
                    got.extend(c.poll_many(700, timeout=2))
            assert [m.offset for m in got] == list(range(bad)), \
                "every intact record before the damaged one is handed out, once"
            check_values(got)
            e = err.value
            assert (e.topic_partition, e.offset, e.resume_offset) == (TP, bad, bad + 1)
            assert e.path == path and str(bad) in str(e) and path in str(e)
            assert c.position(TP) == bad, "the position is where the damage is"
            c.commit()
            assert c.committed(TP) == bad, "a commit never goes past records not handed out"
            with pytest.raises(shmbus.CorruptSegment):
                c.poll_many(700, timeout=2)  # it does not move past it by itself
            assert c.position(TP) == bad
            c.seek(TP, e.offset + 1)
            rest = damage.read_until_empty(c)
            assert [m.offset for m in rest] == list(range(bad + 1, RECORDS))
            check_values(rest)
            c.commit()
            assert c.committed(TP) == RECORDS
        # A group member starting from a commit before the damage meets it again.
        with bus.consumer("c", group="g2", auto_offset_reset="earliest") as c:
            with pytest.raises(shmbus.CorruptSegment):
                damage.read_until_empty(c)
            assert c.position(TP) == bad


def test_a_damaged_stretch_is_stepped_over_a_record_at_a_time_or_all_at_once(bus_paths):
    """Garbage over three records: each of their offsets raises in turn when stepped
    over one by one, and resume_offset names the first intact record after them."""
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        path = make_log(bus, bus_paths)
    bad = middle_record(path)
    at, size = damage.frame_of(path, bad)
    damage.write_at(path, at + 8, os.urandom(3 * size - 16))
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        with bus.consumer("c", auto_offset_reset="earliest") as c:
            with pytest.raises(shmbus.CorruptSegment) as err:
                damage.read_until_empty(c)
            assert (err.value.offset, err.value.resume_offset) == (bad, bad + 3)
            for step in (1, 2):
                c.seek(TP, err.value.offset + 1)
                with pytest.raises(shmbus.CorruptSegment) as err:
                    c.poll(timeout=2)
                assert (err.value.offset, err.value.resume_offset) == (bad + step, bad + 3)
            c.seek(TP, err.value.offset + 1)
            assert c.poll(timeout=2).offset == bad + 3
            c.seek(TP, bad)
            with pytest.raises(shmbus.CorruptSegment):
                c.poll(timeout=2)
            c.seek(TP, err.value.resume_offset)
            rest = damage.read_until_empty(c)
            assert [m.offset for m in rest] == list(range(bad + 3, RECORDS))
            check_values(rest)
