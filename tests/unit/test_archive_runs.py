"""The archiver copies runs of whole frames straight from the ring, and a run must
never cross the ring's end (the next lap's frames start a new run). A header-only
aborted frame -- what a producer killed while writing an empty record leaves -- that
ends exactly at the ring's end once let the run go on past the data area: foreign
bytes in the segment, or EFAULT."""
import os
import secrets
import struct

import pytest

from shmbus._backend import ArchiveState, FrameParser, Ring
from shmbus._native._core import ffi, lib

from layout_probe import layout

DATA_BYTES = 8192


@pytest.fixture
def ring(tmp_path):
    name = f"/shmbus:unittest:{os.getpid()}:{secrets.token_hex(4)}:archive"
    r = Ring.create(name, DATA_BYTES, 0, durable=True)
    yield r
    r.close()
    Ring.unlink(name)


def _write_shm(ring, at, data):
    with open("/dev/shm" + ring.name, "r+b") as f:
        f.seek(at)
        f.write(data)


def test_a_header_only_aborted_frame_at_the_ring_end_ends_the_run(ring, tmp_path):
    lay = layout()
    me = lib.sb_slot_acquire(ring.ptr, 1, 1, 0)
    dead = lib.sb_slot_acquire(ring.ptr, 2, 2, 0)
    writer = ffi.new("sb_writer *", {"ring": ring.ptr, "slot": me, "wait_ns": 0})
    value = ffi.new("char[]", 64)
    # Fill the first lap to 48 bytes before its end: 4 frames of 56 bytes, 165 of 48.
    for value_len in [8] * 4 + [0] * 165:
        assert lib.sb_append(writer, ffi.NULL, -1, ffi.NULL, 0, value, value_len, 1) >= 0
    assert ring.stats().tail == DATA_BYTES - 48
    segment = os.open(tmp_path / "seg.log", os.O_RDWR | os.O_CREAT, 0o600)
    state = ArchiveState()
    first, _ = ring.archive(segment, state, 1 << 20, 1 << 30)
    ring.set_archived(state.c.position, state.c.position)
    # The producer in slot `dead` claimed one empty record in the last 48 bytes and died
    # before publishing it: its slot holds the claim, tail and next offset moved past it.
    next_offset = ring.stats().next_offset
    slot_at = lay["slot_page_at"] + dead * lay["slot_bytes"]
    claim = {"slot_state": lay["claimed"], "slot_claim_pos": DATA_BYTES - 48,
             "slot_claim_frame_pos": DATA_BYTES - 48, "slot_claim_end": DATA_BYTES,
             "slot_claim_offset": next_offset, "slot_claim_count": 1}
    for field, value_word in claim.items():
        _write_shm(ring, slot_at + lay[field], struct.pack("<Q", value_word))
    _write_shm(ring, lay["header_tail"], struct.pack("<Q", DATA_BYTES))
    _write_shm(ring, lay["header_next_offset"], struct.pack("<Q", next_offset + 1))
    assert lib.sb_reap(ring.ptr, me, dead) == 0   # it becomes a 48-byte aborted frame
    for _ in range(3):                            # the next lap's records
        assert lib.sb_append(writer, ffi.NULL, -1, ffi.NULL, 0, value, 8, 1) >= 0
    written, _ = ring.archive(segment, state, 1 << 20, 1 << 30)
    assert written == 48 + 3 * 56
    data = os.pread(segment, 1 << 20, 0)
    os.close(segment)
    assert len(data) == first + written
    n, consumed, next_after = FrameParser(400).parse(data, 0, 0, 0, 400)   # CorruptFrame if foreign bytes
    assert consumed == len(data)
    assert n == 169 + 3 and next_after == next_offset + 1 + 3
