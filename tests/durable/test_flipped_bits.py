"""A flipped bit anywhere in a record on disk -- each header word the CRC covers, the
key, the headers, the value, the CRC itself -- is CorruptSegment at exactly that record:
never handed out, the records around it intact, and stepping over it (seek to
e.offset + 1) goes on. (The length word, which the CRC does not cover, has its own
tests in test_corrupt_records.py.)"""
import pytest

import shmbus
from shmbus import TopicPartition

from shmbus._codec import encode_headers

import damage

TP = TopicPartition("f", 0)
RECORDS = 3000
KEY = b"sensor-42"
HEADERS = [("unit", b"m/s2"), ("seq", b"x")]

# sb_frame_header (shmbus.h): word0 0-8 | crc 8-12 | type 12-14 | flags 14-16 | offset 16-24 |
# timestamp_ns 24-32 | record_count 32-36 | key_len 36-40 | headers_len 40-44 | value_len 44-48,
# then the key, the headers and the value.
HEADER = damage.HEADER
REGIONS = {
    "crc": 9, "type": 12, "flags": 15, "offset": 17, "timestamp": 26, "record_count": 32,
    "key_len": 37, "headers_len": 41, "value_len": 45,
    "key": HEADER + 3,
    "headers": HEADER + len(KEY) + 5,
    "value": -2,   # from the frame's content end
}


def value(i):
    return b"%06d" % i + b"#" * 40


@pytest.mark.timeout(120)
def test_a_flipped_bit_in_any_region_is_caught_at_that_record(bus_paths):
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        bus.create_topic("f", ring_bytes=64 << 10, segment_bytes=128 << 10)
        with bus.producer() as p:
            for i in range(RECORDS):
                p.send("f", value(i), key=KEY, headers=HEADERS)
            p.flush()
        damage.stop_cleanly(bus, bus_paths)
    first = damage.segment_files(bus_paths, "f")[0]
    frames = damage.frames(first)
    assert len(damage.segment_files(bus_paths, "f")) >= 2, "the damage is in a closed segment"
    # One region per record, far enough apart that each is found on its own.
    spacing = len(frames) // (len(REGIONS) + 1)
    bad = {}
    for n, (region, at) in enumerate(REGIONS.items()):
        position, size, offset = frames[(n + 1) * spacing]
        content_end = position + HEADER + len(KEY) + len(encode_headers(HEADERS)) + len(value(offset))
        damage.flip_bit(first, position + at if at >= 0 else content_end + at, bit=n % 8)
        bad[offset] = region
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        with bus.consumer("f", auto_offset_reset="earliest") as c:
            got, met = [], []
            while True:
                try:
                    batch = c.poll_many(5000, timeout=1)
                except shmbus.CorruptSegment as e:
                    met.append((e.offset, e.resume_offset))
                    assert c.position(TP) == e.offset, "the position stays at the damage"
                    c.seek(TP, e.offset + 1)   # step over it, explicitly
                    continue
                if not batch:
                    break
                got.extend(batch)
    assert met == [(offset, offset + 1) for offset in sorted(bad)], \
        f"each flipped region is reported at its record: {[(o, bad.get(o)) for o, _ in met]}"
    assert [m.offset for m in got] == [i for i in range(RECORDS) if i not in bad]
    assert all((m.key, m.value, list(m.headers)) == (KEY, value(m.offset), HEADERS) for m in got), \
        "no damaged record was handed out"

