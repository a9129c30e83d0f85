"""A partition ring in shared memory: create, attach, and the calls producers,
consumers and the supervisor make on it. The C core does the work; this module
turns its return codes into exceptions and owns the mapping's lifetime."""
import os

from . import _shm
from ._errors import BadRing, MessageTooLarge, ShmbusError
from ._native._core import ffi, lib
from ._process import is_alive, my_identity

SLOTS = lib.SB_MAX_SLOTS


def max_frame_bytes(data_bytes):
    return lib.sb_max_frame_bytes(data_bytes)


class Ring:
    """One mapped partition ring. Close it explicitly; the mapping is never left to GC."""

    __slots__ = ("name", "ptr", "data_bytes", "durable", "max_frame", "_closed")

    def __init__(self, name, ptr):
        self.name = name
        self.ptr = ptr
        stats = self.stats()
        self.data_bytes = stats.data_bytes
        self.durable = bool(stats.flags & lib.SB_RING_DURABLE)
        self.max_frame = lib.sb_max_frame_bytes(self.data_bytes)
        self._closed = False

    # ---- lifetime ----

    @classmethod
    def create(cls, name, data_bytes, base_offset, durable):
        """Create the ring with all its memory reserved (OutOfSpace if /dev/shm is full)."""
        fd = _shm.create(name, lib.sb_ring_total_bytes(data_bytes), "ring")
        try:
            err = ffi.new("int *")
            flags = lib.SB_RING_DURABLE if durable else 0
            ptr = lib.sb_ring_create(fd, data_bytes, base_offset, flags, err)
            if ptr == ffi.NULL:
                _shm.unlink(name)
                raise OSError(err[0], f"cannot map ring {name}: {os.strerror(err[0])}")
        finally:
            os.close(fd)
        return cls(name, ptr)

    @classmethod
    def attach(cls, name):
        """Map an existing ring; BadRing if it is not one, FileNotFoundError if absent."""
        fd, size = _shm.open_existing(name, "ring")
        try:
            err = ffi.new("int *")
            ptr = lib.sb_ring_attach(fd, size, err)
            if ptr == ffi.NULL:
                raise BadRing(f"{name} is not a valid shmbus ring of version {lib.SB_VERSION}")
        finally:
            os.close(fd)
        return cls(name, ptr)

    unlink = staticmethod(_shm.unlink)

    def close(self):
        if not self._closed:
            self._closed = True
            lib.sb_ring_close(self.ptr)
            self.ptr = ffi.NULL

    @property
    def closed(self):
        return self._closed

    # ---- header ----

    def stats(self):
        out = ffi.new("sb_stats *")
        lib.sb_ring_stats(self.ptr, out)
        return out

    def mark_deleted(self):
        lib.sb_ring_set_flag(self.ptr, lib.SB_RING_DELETED)

    def set_flag(self, flag):
        lib.sb_ring_set_flag(self.ptr, flag)

    def is_deleted(self):
        return bool(self.stats().flags & lib.SB_RING_DELETED)

    def set_archived(self, archived, synced):
        lib.sb_ring_set_archived(self.ptr, archived, synced)

    # ---- producer slots and dead owners ----

    def acquire_slot(self):
        pid, start = my_identity()
        slot = lib.sb_slot_acquire(self.ptr, pid, start)
        if slot < 0:
            self.reap_dead()
            slot = lib.sb_slot_acquire(self.ptr, pid, start)
        if slot < 0:
            raise ShmbusError(f"all {SLOTS} producer slots of {self.name} are taken by live producers")
        return slot

    def release_slot(self, slot):
        if not self._closed and slot >= 0:
            lib.sb_slot_release(self.ptr, slot)

    def slots(self):
        """[(slot, pid, start_ms, claimed)] for every slot in use."""
        out = ffi.new("sb_slot_info[]", SLOTS)
        lib.sb_slots_get(self.ptr, out)
        return [(i, s.owner_pid, s.owner_start, bool(s.claimed)) for i, s in enumerate(out) if s.owner_pid]

    def reap_dead(self, my_slot=None):
        """Free the slots of dead producers, finishing their claims as aborted frames
        and breaking the claim lock if one died holding it. Returns how many."""
        dead = [slot for slot, pid, start, _ in self.slots() if not is_alive(pid, start)]
        if not dead:
            return 0
        own_slot = my_slot is None
        if own_slot:
            pid, start = my_identity()
            my_slot = lib.sb_slot_acquire(self.ptr, pid, start)
            if my_slot < 0:
                # Every slot is taken, some by the dead: borrow a dead one's after reaping it.
                my_slot = dead[0]
        try:
            for slot in dead:
                if slot != my_slot:
                    lib.sb_reap(self.ptr, my_slot, slot)
        finally:
            if own_slot and my_slot not in dead:
                lib.sb_slot_release(self.ptr, my_slot)
        return len(dead)



def raise_for_append(code, ring):
    """Turn a negative sb_append code into the matching exception (not BUSY/FULL)."""
    if code == lib.SB_TOO_LARGE:
        raise MessageTooLarge(
            f"record too large for ring {ring.name}: at most {ring.max_frame - lib.SB_FRAME_HEADER_BYTES} "
            f"bytes of key, headers and value (half the ring); create the topic with a larger ring_bytes"
        )
    raise ShmbusError(f"append to {ring.name} failed with code {code}")
