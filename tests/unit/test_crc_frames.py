"""CRC32C and the frame check (sb_frame_check) that validates frames outside a
ring, e.g. in segment files. Frames come from a real ring built with
shmbus._ring.Ring, so they are exactly what producers write."""
import os
import random
import secrets
import struct

import pytest

import shmbus
from shmbus._native._core import ffi, lib
from shmbus import _backend
from shmbus._backend import Ring

HEADER = ffi.sizeof("sb_frame_header")
WORD0 = struct.Struct("<Q")


# ---------------------------------------------------------------------------
# CRC32C
# ---------------------------------------------------------------------------

def crc32c(data, crc=0):
    return lib.sb_crc32c(crc, data, len(data))


def reference_crc32c(data):
    """Bit-at-a-time CRC32C (Castagnoli, reflected 0x82F63B78): slow and obviously right."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


@pytest.mark.parametrize("data, expected", [
    (b"123456789", 0xE3069283),                 # the catalogue check value
    (b"", 0x00000000),
    (bytes(32), 0x8A9136AA),                    # RFC 3720 B.4: 32 bytes of zeros
    (b"\xff" * 32, 0x62A8AB43),                 # 32 bytes of ones
    (bytes(range(32)), 0x46DD794E),             # incrementing
    (bytes(range(31, -1, -1)), 0x113FDB5C),     # decrementing
])
def test_crc32c_known_vectors(data, expected):
    assert crc32c(data) == expected


def test_crc32c_matches_reference_at_every_length_and_alignment():
    # The fast path works 8 bytes at a time after aligning the pointer; check
    # every head/body/tail split against the bit-wise reference.
    rng = random.Random(1)
    blob = bytes(rng.randrange(256) for _ in range(300))
    base = ffi.from_buffer(blob)
    for start in range(9):
        for length in list(range(0, 40)) + [63, 64, 65, 200, 300 - start]:
            piece = blob[start:start + length]
            assert lib.sb_crc32c(0, base + start, len(piece)) == reference_crc32c(piece), (start, length)


def test_crc32c_three_streams_match_one_at_every_block_boundary():
    # Long inputs run three interleaved streams over blocks of 8 KiB, then 256 B, and
    # combine them: check lengths around each block boundary, at odd alignments.
    # Against the same CRC run over pieces too short for the three streams (each below
    # 3 x 256 B), which the bit-wise reference checks above.
    rng = random.Random(2)
    blob = bytes(rng.randrange(256) for _ in range(3 * 8192 * 2 + 3 * 256 + 100))
    base = ffi.from_buffer(blob)
    lengths = [767, 768, 769, 3 * 256 + 7, 6 * 256, 24575, 24576, 24577, 3 * 8192 + 3 * 256 + 13,
               2 * 3 * 8192, len(blob) - 5]
    for start in (0, 3, 5):
        for length in lengths:
            piece = blob[start:start + length]
            expected = 0
            for at in range(0, length, 500):
                expected = crc32c(piece[at:at + 500], expected)
            assert lib.sb_crc32c(0, base + start, length) == expected, (start, length)
    assert crc32c(blob[:3000]) == reference_crc32c(blob[:3000])


def test_crc32c_can_be_computed_incrementally():
    data = os.urandom(1000)
    for cut in (0, 1, 7, 8, 500, 999, 1000):
        assert crc32c(data[cut:], crc32c(data[:cut])) == crc32c(data)


# ---------------------------------------------------------------------------
# Frames from a real ring
# ---------------------------------------------------------------------------

DATA_BYTES = 64 << 10


@pytest.fixture
def ring():
    """A bare memory-only ring (no supervisor), unlinked at teardown."""
    name = f"/shmbus:unittest:{os.getpid()}:{secrets.token_hex(4)}:frames"
    r = Ring.create(name, DATA_BYTES, 0, durable=False)
    yield r
    r.close()
    Ring.unlink(name)
    assert not os.path.exists("/dev/shm" + name)


class Writer:
    """Appends straight into a ring through the C boundary, as a producer does."""

    def __init__(self, ring):
        self.writer = _backend.Writer(ring, wait_ns=0)

    def append(self, value, key=None, headers=b"", timestamp_ns=-1):
        key_ptr, key_len = (ffi.NULL, -1) if key is None else (key, len(key))
        value_ptr, value_len = (ffi.NULL, -1) if value is None else (value, len(value))
        return self.writer.append(key_ptr, key_len, headers, len(headers), value_ptr, value_len, timestamp_ns)

    def close(self):
        self.writer.release()


def data_area(ring):
    """A copy of the ring's data area, read through the file system (the data
    area is the last part of the shared-memory object)."""
    total = lib.sb_ring_total_bytes(ring.data_bytes)
    with open("/dev/shm" + ring.name, "rb") as f:
        f.seek(total - ring.data_bytes)
        return f.read(ring.data_bytes)


def frames_of(data):
    """(position, word0 length, aligned length, type) of each frame of the first lap."""
    frames, pos = [], 0
    while pos + HEADER <= len(data):
        (word0,) = WORD0.unpack_from(data, pos)
        length = word0 & 0xFFFFFFFF
        if length == 0:
            break
        aligned = (length + 7) & ~7
        frame_type = struct.unpack_from("<H", data, pos + 12)[0]
        frames.append((pos, length, aligned, frame_type))
        pos += aligned
    return frames


def check(frame, available=None):
    return lib.sb_frame_check(frame, len(frame) if available is None else available)


def test_every_frame_a_producer_writes_passes_the_check(ring):
    writer = Writer(ring)
    records = [
        dict(value=b"plain"),
        dict(value=b""),
        dict(value=None),
        dict(value=b"v" * 1001, key=b"key-1"),
        dict(value=b"with headers", key=b"", headers=b"\x01\x00h\x01\x00\x00\x00x"),
        dict(value=os.urandom(4093), timestamp_ns=12345),
    ]
    for record in records:
        writer.append(**record)
    writer.close()
    data = data_area(ring)
    frames = frames_of(data)
    assert [f[3] for f in frames] == [lib.SB_FRAME_DATA] * len(records)
    for pos, _, aligned, _ in frames:
        assert check(data[pos:pos + aligned]) == aligned
        # More bytes after the frame do not change the answer.
        assert check(data[pos:pos + aligned + 64]) == aligned


def test_truncated_frame_reads_as_not_yet_complete(ring):
    writer = Writer(ring)
    writer.append(b"x" * 500, key=b"k")
    writer.close()
    pos, _, aligned, _ = frames_of(data_area(ring))[0]
    frame = data_area(ring)[pos:pos + aligned]
    for available in (0, 1, HEADER - 1, HEADER, HEADER + 1, aligned // 2, aligned - 1):
        assert check(frame[:available]) == lib.SB_EMPTY, available
    assert check(frame) == aligned


def test_zero_length_word_reads_as_empty(ring):
    writer = Writer(ring)
    writer.append(b"abc")
    writer.close()
    frame = bytearray(data_area(ring)[:HEADER + 8])
    frame[0:8] = bytes(8)
    assert check(bytes(frame)) == lib.SB_EMPTY


def test_any_flipped_bit_after_the_length_word_is_caught(ring):
    writer = Writer(ring)
    writer.append(b"value bytes " * 8, key=b"the key", headers=b"\x02\x00hh\x03\x00\x00\x00abc",
                  timestamp_ns=1_700_000_000_000_000_000)
    writer.close()
    data = data_area(ring)
    pos, length, aligned, _ = frames_of(data)[0]
    frame = data[pos:pos + aligned]
    content = length  # no gap after the first frame: the length is the content
    # Bytes 8..12 are the CRC itself; 12..content are what it covers.
    for byte in range(8, content):
        for bit in (0, 3, 7):
            broken = bytearray(frame)
            broken[byte] ^= 1 << bit
            assert check(bytes(broken)) == lib.SB_CORRUPT, (byte, bit)


def test_header_fields_out_of_range_are_corrupt(ring):
    writer = Writer(ring)
    writer.append(b"abc")
    writer.close()
    pos, _, aligned, _ = frames_of(data_area(ring))[0]
    good = data_area(ring)[pos:pos + aligned]
    # A length shorter than a frame header.
    short = bytearray(good)
    short[0:4] = struct.pack("<I", HEADER - 8)
    assert check(bytes(short)) == lib.SB_CORRUPT
    # An unknown frame type.
    bad_type = bytearray(good)
    bad_type[12:14] = struct.pack("<H", 9)
    assert check(bytes(bad_type)) == lib.SB_CORRUPT


def test_padding_frame_at_the_wrap_passes_the_check(ring):
    writer = Writer(ring)
    # 3000-byte frames do not divide 64 KiB: the 22nd leaves a padding frame
    # before the ring's end and wraps.
    for _ in range(22):
        writer.append(b"p" * (3000 - HEADER))
    writer.close()
    data = data_area(ring)
    # The 22nd frame went to the start of the ring, and the word after it was
    # zeroed (the next frame goes there), so walk from where the padding must be.
    pos = 21 * 3000
    frames = frames_of(data[pos:])
    assert len(frames) == 1 and frames[0][3] == lib.SB_FRAME_PADDING
    _, _, aligned, _ = frames[0]
    assert pos + aligned == DATA_BYTES, "padding runs to the end of the ring"
    assert check(data[pos:pos + aligned]) == aligned


def test_frame_that_absorbs_the_last_bytes_before_the_wrap(ring):
    # 63 frames of 1024 bytes leave 1024 bytes; a 984-byte frame would leave
    # 40, too few for any frame header, so it absorbs them: its length word
    # covers 1024 bytes while its CRC covers its 984.
    writer = Writer(ring)
    for _ in range(63):
        writer.append(b"a" * (1024 - HEADER))
    writer.append(b"b" * (984 - HEADER))
    writer.close()
    data = data_area(ring)
    last = frames_of(data)[-1]
    pos, length, aligned, frame_type = last
    assert frame_type == lib.SB_FRAME_DATA
    assert pos + aligned == DATA_BYTES
    assert check(data[pos:pos + aligned]) == aligned


def test_ring_larger_than_dev_shm_fails_cleanly_with_out_of_space():
    name = f"/shmbus:unittest:{os.getpid()}:{secrets.token_hex(4)}:huge"
    stat = os.statvfs("/dev/shm")
    # Larger than the whole file system (not just its free space), so tmpfs
    # refuses it up front instead of filling memory page by page.
    too_big = (stat.f_blocks * stat.f_frsize + (1 << 30)) & ~4095
    with pytest.raises(shmbus.OutOfSpace):
        Ring.create(name, too_big, 0, durable=False)
    assert not os.path.exists("/dev/shm" + name)


def test_a_length_word_longer_than_a_data_frame_can_be_is_corrupt(ring):
    """The CRC does not cover the length word, but a data frame's length is its content
    plus at most the gap before the ring's end (< a frame header): a longer one is damage,
    not a frame that swallows the ones after it."""
    writer = Writer(ring)
    writer.append(b"abc")
    writer.close()
    pos, length, aligned, _ = frames_of(data_area(ring))[0]
    frame = bytearray(data_area(ring)[pos:pos + aligned]) + bytes(512)
    for longer, verdict in ((HEADER - 1, (length + HEADER - 1 + 7) & ~7), (HEADER, lib.SB_CORRUPT),
                            (400, lib.SB_CORRUPT), (0x7FFFFF00, lib.SB_CORRUPT)):
        broken = bytearray(frame)
        broken[0:4] = struct.pack("<I", length + longer)
        assert check(bytes(broken)) == verdict, longer


def test_parse_checks_that_offsets_run_on_from_frame_to_frame(ring):
    writer = Writer(ring)
    for i in range(4):
        writer.append(b"r%d" % i)
    writer.close()
    data = data_area(ring)
    frames = frames_of(data)
    end = frames[-1][0] + frames[-1][2]
    chunk = data[:end]
    parser = _backend.FrameParser()
    assert parser.parse(chunk, 0, 0, 0, 100) == (4, end, 4)
    # The frame at the start must carry the expected offset, and each the next one.
    with pytest.raises(shmbus._errors.CorruptFrame) as err:
        parser.parse(chunk, 0, 1, 0, 100)
    assert err.value.position == 0
    # Frame 2 cut out: frame 3 is intact but follows a hole.
    holed = chunk[:frames[2][0]] + chunk[frames[3][0]:]
    with pytest.raises(shmbus._errors.CorruptFrame) as err:
        parser.parse(holed, 0, 0, 0, 100)
    assert err.value.position == frames[2][0] and err.value.after_offset == 1
    # Parsing stops at `end`; from the middle it needs the offset there.
    assert parser.parse(holed, 0, 0, 0, 100, end=frames[2][0]) == (2, frames[2][0], 2)
    assert parser.parse(holed, frames[2][0], 3, 0, 100) == (1, len(holed) - frames[2][0], 4)


def test_find_frame_resyncs_after_garbage_whatever_its_length_words_say(ring):
    writer = Writer(ring)
    for i in range(6):
        writer.append(b"v%d" % i * 10)
    writer.close()
    data = data_area(ring)
    frames = frames_of(data)
    chunk = bytearray(data[:frames[-1][0] + frames[-1][2]])
    # Garbage from frame 1 to the middle of frame 3, its length words included.
    chunk[frames[1][0]:frames[3][0] + 20] = os.urandom(frames[3][0] + 20 - frames[1][0])
    found, _ = _backend.find_frame(bytes(chunk), frames[1][0], 1, final=True)
    assert found is not None and found[0] == frames[4][0] and found[1].offset == 4
    # Frames with a smaller offset than asked for are passed by.
    found, _ = _backend.find_frame(bytes(chunk), 0, 5, final=True)
    assert found[0] == frames[5][0]
    assert _backend.find_frame(bytes(chunk), 0, 6, final=True)[0] is None
