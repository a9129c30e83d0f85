"""Retiring a ring (unblock.c) when a stalled producer holds its claim lock: the retirer
does not wait for it, cancels its claiming, and the ring's end is final -- readers
reach it (SB_MOVED), seek to it, and read its stats without the lock that may never
be released."""
import os
import secrets
import struct

import pytest

from shmbus import _backend
from shmbus._backend import SLOT_CANCELLED, Cursor, ReadBuffer, Ring
from shmbus._errors import RingMoved
from shmbus._native._core import lib

from layout_probe import layout


@pytest.fixture
def ring():
    name = f"/shmbus:unittest:{os.getpid()}:{secrets.token_hex(4)}:retire"
    r = Ring.create(name, 64 << 10, 0, durable=False)
    yield r
    r.close()
    Ring.unlink(name)


def test_retire_with_the_lock_held_by_a_stalled_producer(ring):
    lay = layout()
    writer = _backend.Writer(ring, wait_ns=0)
    for i in range(5):
        writer.append(_backend.NULL, -1, b"", 0, b"v%d" % i, 2, -1)
    stalled = lib.sb_slot_acquire(ring.ptr, 2, 2, 0)
    me = lib.sb_slot_acquire(ring.ptr, 3, 3, 0)
    # The stalled producer took the claim lock and stopped there (before claiming).
    with open("/dev/shm" + ring.name, "r+b") as f:
        f.seek(lay["header_lock"])
        word = struct.unpack("<Q", f.read(8))[0]
        f.seek(lay["header_lock"])
        f.write(struct.pack("<Q", word | (stalled + 1)))
    end, next_offset = ring.retire(me, [stalled])      # returns at once, no LOCK_BUSY
    assert next_offset == 5
    stats = ring.stats()                                # does not spin on the held lock
    assert stats.retired and stats.retired_end == end and stats.retired_next_offset == 5
    assert [s.state for s in ring.slots() if s.slot == stalled] == [SLOT_CANCELLED]
    # A live producer can no longer claim here: it is told the partition moved.
    with pytest.raises(RingMoved):
        writer.append(_backend.NULL, -1, b"", 0, b"late", 4, -1)
    # A reader gets every record, then SB_MOVED at the end.
    reader = Cursor(ring)
    reader.seek_head()
    buffer = ReadBuffer()
    assert reader.read(buffer, 100) == 5
    with pytest.raises(RingMoved):
        reader.read(buffer, 100)
    end_cursor = Cursor(ring)
    end_cursor.seek_end()
    assert (end_cursor.position, end_cursor.next_offset) == (end, 5)
    with pytest.raises(RingMoved):
        Cursor(ring).seek(6)    # past its end: in the partition's next ring
    writer.release()
