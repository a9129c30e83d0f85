"""A mapped partition ring (ring.c, claim.c, unblock.c, archive.c): lifetime, header,
producer slots and their dead or stalled owners, and archiving to a segment file."""
import os
from typing import TYPE_CHECKING, List, NamedTuple, Optional, Tuple

from .. import _shm
from .._access import Trust
from .._errors import BadRing, ShmbusError
from .. import _liveness
from .._native._core import ffi, lib
from .._process import my_identity
if TYPE_CHECKING:
    from .reader import StopWord
from .core import MAX_SLOTS, NULL, RING_DELETED, RING_DURABLE, RING_RETIRED, CData, max_record_bytes, raise_for


class RingStats(NamedTuple):
    """A snapshot of a ring header (sb_stats)."""

    total_bytes: int
    data_bytes: int
    flags: int
    created_ns: int
    tail: int            # end of the last claimed frame
    next_offset: int     # offset the next claim gets
    head: int            # start of the oldest frame still in the ring
    head_offset: int     # offset of that frame
    published: int       # every frame before this position is complete
    archived: int        # every frame before this position is on disk
    synced: int          # every frame before this position is fsynced
    data_waiters: int
    space_waiters: int
    base_offset: int     # offset of the ring's first frame
    lock: int            # the claim lock's word: a sequence, and its holder's slot + 1
    retired_end: int     # a retired ring: where it ends
    retired_next_offset: int  # ... and where the partition's next ring starts
    leases_held: int     # zero-copy readers' leases not let go

    @property
    def lock_holder(self) -> int:
        """The producer slot holding the claim lock, or -1."""
        return (self.lock & 0xFF) - 1

    @property
    def retired(self) -> bool:
        return bool(self.flags & RING_RETIRED)


# A slot's claim states (layout.h).
SLOT_IDLE: int = lib.SB_CLAIM_IDLE
SLOT_CLAIMED: int = lib.SB_CLAIM_CLAIMED
SLOT_PUBLISHING: int = lib.SB_CLAIM_PUBLISHING
SLOT_REVOKED: int = lib.SB_CLAIM_REVOKED
SLOT_CANCELLED: int = lib.SB_CLAIM_CANCELLED
LEASE_HELD: int = lib.SB_LEASE_HELD
LEASE_REVOKED: int = lib.SB_LEASE_REVOKED


class SlotInfo(NamedTuple):
    """One producer slot in use."""

    slot: int
    pid: int             # a hint: in another pid namespace it names nobody
    start_ms: int        # the owner's process create time, ms since the epoch
    claimed: bool        # a claim is between reservation and publication
    token: int           # the owner's liveness lock (_liveness)
    state: int           # SLOT_IDLE ... SLOT_CANCELLED
    claim_pos: int       # where its claim (if any) starts: the same claim while unchanged
    claim_offset: int    # the first offset it covers

    def owner_alive(self) -> bool:
        return _liveness.is_alive(self.token, self.pid, self.start_ms)


class Ring:
    """One mapped partition ring. Close it explicitly; the mapping is never left to GC --
    except that views into it (zero-copy reads, a reserved record's buffer) keep it
    mapped while they live: close() then unmaps it when the last one goes, since a
    view that outlived its unmapped ring would crash the process when touched."""

    __slots__ = ("name", "ptr", "owner", "data_bytes", "durable", "max_record", "_closed", "_views")

    def __init__(self, name: str, ptr: CData, owner: int):
        self.name = name
        self.ptr = ptr
        self.owner = owner   # the uid owning the object: the bus's user
        stats = self.stats()
        self.data_bytes = stats.data_bytes
        self.durable = bool(stats.flags & RING_DURABLE)
        self.max_record = max_record_bytes(self.data_bytes)
        self._closed = False
        self._views = 0   # view keepers alive (see view_keeper)

    # ---- lifetime ----

    @staticmethod
    def total_bytes(data_bytes: int) -> int:
        """What a ring of data_bytes takes in /dev/shm, header pages and index included."""
        return lib.sb_ring_total_bytes(data_bytes)

    @classmethod
    def create(cls, name: str, data_bytes: int, base_offset: int, durable: bool) -> "Ring":
        """Create the ring with all its memory reserved (OutOfSpace if /dev/shm is full),
        replacing what has the name. If another user's object holds it, the ring gets
        another name (see _shm.create_fresh): read it from `.name`."""
        fd, name = _shm.create_fresh(name, cls.total_bytes(data_bytes), "ring")
        try:
            err = ffi.new("int *")
            ptr = lib.sb_ring_create(fd, data_bytes, base_offset, RING_DURABLE if durable else 0, err)
            if ptr == NULL:
                _shm.unlink(name)
                raise OSError(err[0], f"cannot map ring {name}: {os.strerror(err[0])}")
        finally:
            os.close(fd)
        return cls(name, ptr, os.geteuid())

    @classmethod
    def attach(cls, name: str, trust: Trust) -> "Ring":
        """Map an existing ring that trust accepts (NotTrusted if not: it is never read);
        BadRing if it is not a ring, FileNotFoundError if absent."""
        fd, size = _shm.open_existing(name, "ring", trust)
        try:
            err = ffi.new("int *")
            ptr = lib.sb_ring_attach(fd, size, err)
            if ptr == NULL:
                raise BadRing(f"{name} is not a valid shmbus ring of version {lib.SB_VERSION}")
        finally:
            os.close(fd)
        return cls(name, ptr, trust.uid)

    unlink = staticmethod(_shm.unlink)
    alternates = staticmethod(_shm.alternates)
    retired_names = staticmethod(_shm.retired)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if not self._views:
                self._unmap()

    def _unmap(self) -> None:
        lib.sb_ring_close(self.ptr)
        self.ptr = NULL

    def view_keeper(self) -> CData:
        """The ring's data area as a C pointer that keeps the ring mapped while it lives:
        make views with ffi.buffer(keeper, data_bytes), which holds it."""
        if self._closed:
            raise BadRing(f"{self.name} is closed")
        self._views += 1
        return ffi.gc(ffi.cast("char *", lib.sb_ring_data(self.ptr)), self._view_gone, size=0)

    def _view_gone(self, keeper: CData) -> None:
        self._views -= 1
        if self._closed and not self._views and self.ptr != NULL:
            self._unmap()

    def data_view(self) -> "tuple[memoryview, CData]":
        """A writable memoryview of the data area (positions mod data_bytes index it), and
        its keeper (what a buffer of it must hold on to)."""
        keeper = self.view_keeper()
        return memoryview(ffi.buffer(keeper, self.data_bytes)), keeper

    # ---- zero-copy readers' leases (lease.c) ----

    def lease(self, position: int, hold_ns: int, token: int) -> Optional[int]:
        """Hold producers back from overwriting the ring from position on, for at most
        hold_ns: the lease, or None if the ring cannot (the position is gone or about to
        be, every lease is taken, the claim lock stayed held): then read with a copy."""
        lease = lib.sb_lease_acquire(self.ptr, position, hold_ns, token)
        if lease >= 0:
            return lease
        if lease in (lib.SB_LAPPED, lib.SB_FULL, lib.SB_LOCK_BUSY):
            return None
        raise_for(lease, self.name)

    def release_lease(self, lease: int) -> bool:
        """Let go of a lease: False if a producer revoked it (it overstayed its hold, and
        what it protected may have been overwritten)."""
        if self.ptr == NULL:
            return False
        held = lib.sb_lease_release(self.ptr, lease)
        if held < 0:
            raise_for(held, self.name)
        return bool(held)

    def lease_holders(self) -> List[int]:
        """The liveness tokens of the leases held or revoked but not let go."""
        token = ffi.new("uint64_t *")
        holders = []
        for lease in range(lib.SB_MAX_LEASES):
            state = lib.sb_lease_holder(self.ptr, lease, token)
            if state in (LEASE_HELD, LEASE_REVOKED):
                holders.append(token[0])
        return holders

    def drop_leases(self, token: int) -> int:
        """Free the leases of a holder that died; returns how many."""
        return lib.sb_lease_drop(self.ptr, token)

    @property
    def closed(self) -> bool:
        return self._closed

    # ---- header ----

    def tail(self) -> int:
        """Where the next claim starts (stats().tail, without the rest of the stats)."""
        return lib.sb_ring_tail(self.ptr)

    def stats(self) -> RingStats:
        out = ffi.new("sb_stats *")
        lib.sb_ring_stats(self.ptr, out)
        return RingStats(out.total_bytes, out.data_bytes, out.flags, out.created_ns, out.tail,
                         out.next_offset, out.head, out.head_offset, out.published, out.archived,
                         out.synced, out.data_waiters, out.space_waiters, out.base_offset, out.lock,
                         out.retired_end, out.retired_next_offset, out.leases_held)

    def set_flag(self, flag: int) -> None:
        """Set a header flag and wake every waiter, so they notice."""
        lib.sb_ring_set_flag(self.ptr, flag)

    def clear_flag(self, flag: int) -> None:
        lib.sb_ring_clear_flag(self.ptr, flag)

    def mark_deleted(self) -> None:
        self.set_flag(RING_DELETED)

    def is_deleted(self) -> bool:
        return bool(self.stats().flags & RING_DELETED)

    def set_archived(self, archived: int, synced: int) -> None:
        """Move the archived and synced positions (the archiver's side) and wake writers."""
        lib.sb_ring_set_archived(self.ptr, archived, synced)

    def request_sync(self, position: int) -> None:
        """Ask the archiver to fsync the ring up to position (and wake it)."""
        lib.sb_request_sync(self.ptr, position)

    def wait_synced(self, position: int, timeout_ns: int) -> bool:
        """Wait until the ring is fsynced up to position; False on timeout, RingDeleted."""
        code = lib.sb_wait_synced(self.ptr, position, timeout_ns)
        if code < 0:
            raise_for(code, self.name)
        return code == 1

    # ---- producers waiting for space off their thread (asyncio) ----

    def space_wait_begin(self, deadline_ns: int) -> int:
        """Count a producer among the space waiters until deadline_ns (monotonic) and return
        the space word to wait on. Call it before retrying the append that found the ring
        full, then space_wait() (on any thread), then always space_wait_end()."""
        return lib.sb_space_wait_begin(self.ptr, deadline_ns)

    def space_wait(self, seen: int, timeout_ns: int, stop: "StopWord", stop_seen: int) -> int:
        """Sleep until the space word moves from seen (1), timeout (0) or stop (STOPPED)."""
        return lib.sb_space_wait(self.ptr, seen, timeout_ns, stop.word, stop_seen)

    def space_wait_end(self) -> None:
        lib.sb_space_wait_end(self.ptr)

    def rebase(self, base_offset: int) -> None:
        """Make a fresh, unwritten ring start at base_offset."""
        code = lib.sb_ring_rebase(self.ptr, base_offset)
        if code < 0:
            raise_for(code, self.name)

    def sync_requested(self) -> int:
        """The highest position a producer's flush() waits to see fsynced."""
        return lib.sb_sync_requested(self.ptr)

    def expire_waiters(self, grace_ns: int) -> bool:
        """Forget waiter counts left by waiters that died asleep (their lease is over)."""
        return bool(lib.sb_expire_waiters(self.ptr, grace_ns))

    # ---- producer slots and dead owners ----

    def acquire_slot(self) -> int:
        pid, start = my_identity()
        token = _liveness.my_token()
        slot = lib.sb_slot_acquire(self.ptr, pid, start, token)
        if slot < 0:
            self.reap_dead()
            slot = lib.sb_slot_acquire(self.ptr, pid, start, token)
        if slot < 0:
            raise ShmbusError(f"all {MAX_SLOTS} producer slots of {self.name} are taken by live producers")
        return slot

    def release_slot(self, slot: int) -> None:
        if not self._closed and slot >= 0:
            lib.sb_slot_release(self.ptr, slot)

    def slots(self) -> List[SlotInfo]:
        """Every slot in use."""
        out = ffi.new("sb_slot_info[]", MAX_SLOTS)
        used = lib.sb_slots_get(self.ptr, out)
        return [SlotInfo(s.slot, s.owner_pid, s.owner_start, bool(s.claimed), s.owner_token, s.state,
                         s.claim_pos, s.claim_offset)
                for s in out[0:used]]

    def lock_owner(self) -> int:
        """The producer slot holding the claim lock, or -1."""
        return lib.sb_lock_owner(self.ptr)

    def reap_dead(self, my_slot: Optional[int] = None, slots: Optional[List[SlotInfo]] = None) -> int:
        """Free the slots of dead producers (of `slots`, if the caller has just read them),
        finishing their claims as aborted frames and breaking the claim lock if one died
        holding it. Returns how many."""
        dead = [s.slot for s in (self.slots() if slots is None else slots) if not s.owner_alive()]
        if not dead:
            return 0
        own_slot = my_slot is None
        if my_slot is None:
            pid, start = my_identity()
            my_slot = lib.sb_slot_acquire(self.ptr, pid, start, _liveness.my_token())
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

    def retire(self, my_slot: int, stalled: List[int]) -> Tuple[int, int]:
        """Retire the ring for the stalled producer slots (unblock.c): no more claims in
        it, their claims revoked (or, if they were already publishing, published for
        them), and where it ends made final. Returns (end position, the offset the
        partition's next ring must start at). ClaimLockBusy if a producer that is not
        stalled holds the lock for long: try again."""
        end, next_offset = ffi.new("uint64_t *"), ffi.new("uint64_t *")
        mask = 0
        for slot in stalled:
            mask |= 1 << slot
        code = lib.sb_ring_retire(self.ptr, my_slot, mask, end, next_offset)
        if code < 0:
            raise_for(code, self.name)
        return end[0], next_offset[0]

    # ---- archiving ----

    def archive(self, fd: int, state: "ArchiveState", max_bytes: int,
                index_interval: int) -> Tuple[int, List[Tuple[int, int, int]]]:
        """Copy complete frames from the ring to the segment file fd (see archive.c).
        Returns (bytes written, index entries [(offset, segment position, max
        timestamp before it)]); OSError if the file cannot be written."""
        written = lib.sb_archive(self.ptr, fd, state.c, max_bytes, index_interval, state.entries,
                                 state.capacity, state.entry_count)
        if written < 0:
            raise OSError(-written, os.strerror(-written))
        entries = state.entries
        return written, [(entries[i].offset, entries[i].position, entries[i].max_timestamp)
                              for i in range(state.entry_count[0])]


class ArchiveState:
    """Where the archiver is in one ring and in the segment it writes (sb_archive_state:
    position, next_offset, segment_bytes, since_index, max_timestamp, read and set as
    attributes of `.c`), and room for the index entries one archive call makes."""

    __slots__ = ("c", "entries", "entry_count", "capacity")

    def __init__(self, capacity: int = 1024):
        self.c = ffi.new("sb_archive_state *")
        self.entries = ffi.new("sb_index_entry[]", capacity)
        self.entry_count = ffi.new("uint32_t *")
        self.capacity = capacity

    def snapshot(self) -> Tuple[int, int, int, int, int]:
        c = self.c
        return c.position, c.next_offset, c.segment_bytes, c.since_index, c.max_timestamp

    def restore(self, saved: Tuple[int, int, int, int, int]) -> None:
        c = self.c
        c.position, c.next_offset, c.segment_bytes, c.since_index, c.max_timestamp = saved
