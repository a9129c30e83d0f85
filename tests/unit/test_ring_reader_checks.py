"""The C reader never trusts a frame's lengths before checking them: a ring whose
bytes are garbage (a producer lapping a memory-only reader rewrites them under it;
here, bytes written on purpose) is reported as corrupt or lapped, never copied past
the frame -- which read past the mapping and crashed the reader."""
import os
import secrets
import struct
import subprocess
import sys

import pytest

from shmbus._backend import FRAME_HEADER_BYTES, Ring

CHILD = r"""
import sys
from shmbus import _backend
from shmbus._errors import CorruptFrame
from shmbus._access import own_trust
ring = _backend.Ring.attach(sys.argv[1], own_trust())
cursor = _backend.Cursor(ring)
cursor.seek_head()
try:
    n = cursor.read(_backend.ReadBuffer(), 16)
    print("read", n)
except CorruptFrame as e:
    print("corrupt", e)
"""

DATA_BYTES = 64 << 10
VALUE_LEN_AT = 44   # offsetof(sb_frame_header, value_len), pinned in frame.h


@pytest.fixture
def ring_with_one_record():
    name = f"/shmbus:unittest:{os.getpid()}:{secrets.token_hex(4)}:reader"
    ring = Ring.create(name, DATA_BYTES, 0, durable=False)
    from shmbus import _backend
    writer = _backend.Writer(ring, wait_ns=0)
    writer.append(_backend.NULL, -1, b"", 0, b"v" * 100, 100, -1)
    writer.release()
    yield ring
    ring.close()
    Ring.unlink(name)


def _poke(ring, at, data):
    """Write into the ring's data area through the file system."""
    data_area = Ring.total_bytes(ring.data_bytes) - ring.data_bytes
    with open("/dev/shm" + ring.name, "r+b") as f:
        f.seek(data_area + at)
        f.write(data)


@pytest.mark.parametrize("value_len", [0x7FFFFFFF, 1 << 20, 4000])
def test_a_value_length_past_its_frame_is_corrupt_not_a_crash(ring_with_one_record, value_len):
    _poke(ring_with_one_record, VALUE_LEN_AT, struct.pack("<i", value_len))
    done = subprocess.run([sys.executable, "-c", CHILD, ring_with_one_record.name], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, f"the reader died ({done.returncode}): {done.stderr[-500:]}"
    assert done.stdout.startswith("corrupt"), done.stdout


def test_a_frame_length_across_the_ring_end_is_corrupt(ring_with_one_record):
    # word0 keeps its lap (1) but claims a length running past the data area.
    _poke(ring_with_one_record, 0, struct.pack("<Q", (1 << 32) | (DATA_BYTES + FRAME_HEADER_BYTES)))
    done = subprocess.run([sys.executable, "-c", CHILD, ring_with_one_record.name], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.startswith("corrupt"), done.stdout
