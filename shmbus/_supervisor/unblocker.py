"""The supervisor's unblocker: finds the producers that hold a partition up and gets
them out of its way (DESIGN.md §2).

Dead ones -- their liveness lock released (_liveness.py) -- are reaped in place: an
unfinished claim becomes an aborted frame that readers step over.

Live ones that hold a claim, or the claim lock, past the unblock timeout (stopped,
traced, swapped out) cannot be reaped in place: a copy of theirs may still be in
flight, and nothing stops a memcpy from outside. So the partition moves on to a fresh
ring at the next offset: the old ring is retired (unblock.c: no more claims in it, the
stalled claim revoked, its end made final) and renamed in /dev/shm; its readers and
the archiver finish it and move to the new one; the stalled producer, when it wakes,
finds its claim revoked (ClaimRevoked: the record was not sent) before it publishes,
and its late bytes land only in the retired ring, which nobody reuses.

What it costs: one more ring in /dev/shm until the retired one is archived and its
stalled producer lets go of it (wakes or dies) -- ring_bytes per retirement; the
clients of the partition re-resolve it (one control request each); and the revoked
records. If /dev/shm has no room for the new ring, the partition stays held up and the
log says so, and it is tried again.
"""
import logging
import os
import time
from typing import TYPE_CHECKING, Dict, List, Set, Tuple

from .. import _holdup as holdup
from .. import _liveness, _shm
from .._backend import SLOT_CLAIMED, SLOT_PUBLISHING, Ring, SlotInfo
from .._errors import ClaimLockBusy

if TYPE_CHECKING:
    from .topics import Topic, TopicRegistry

logger = logging.getLogger("shmbus.supervisor")

UNBLOCK_TIMEOUT = 1.0   # seconds a live producer may hold a claim or the lock (Aeron's publication unblock timeout)


class StallWatch:
    """Since when each claim and each lock hold has been seen unchanged."""

    def __init__(self) -> None:
        self._claims: Dict[Tuple[int, int], Tuple[int, int, float]] = {}   # (ring id, slot) -> (pos, state, since)
        self._locks: Dict[int, Tuple[int, float]] = {}                     # ring id -> (lock word, since)
        self._seen_rings: Set[int] = set()

    def begin_pass(self) -> None:
        self._seen_rings = set()

    def end_pass(self) -> None:
        """Forget rings not looked at in the last pass (deleted, replaced)."""
        self._claims = {k: v for k, v in self._claims.items() if k[0] in self._seen_rings}
        self._locks = {k: v for k, v in self._locks.items() if k in self._seen_rings}

    def stalled(self, ring: Ring, slots: List[SlotInfo], lock_word: int, my_slot: int, now: float,
                timeout: float) -> List[int]:
        """The slots of live producers holding a claim or the lock for longer than timeout."""
        key = id(ring)
        self._seen_rings.add(key)
        found = set()
        for s in slots:
            if s.slot == my_slot:
                continue
            claim_key = (key, s.slot)
            if s.state in (SLOT_CLAIMED, SLOT_PUBLISHING):
                seen = self._claims.get(claim_key)
                if seen is None or seen[:2] != (s.claim_pos, s.state):
                    self._claims[claim_key] = (s.claim_pos, s.state, now)
                elif now - seen[2] >= timeout and s.owner_alive():
                    found.add(s.slot)
            else:
                self._claims.pop(claim_key, None)
        holder = (lock_word & 0xFF) - 1
        if holder >= 0 and holder != my_slot:
            seen_lock = self._locks.get(key)
            if seen_lock is None or seen_lock[0] != lock_word:
                self._locks[key] = (lock_word, now)
            elif now - seen_lock[1] >= timeout:
                owner = next((s for s in slots if s.slot == holder), None)
                if owner is not None and owner.owner_alive():
                    found.add(holder)
        else:
            self._locks.pop(key, None)
        return sorted(found)


class Unblocker:
    """Run by the supervisor's liveness loop, under its lock, every REAPER_INTERVAL."""

    def __init__(self, registry: "TopicRegistry", timeout: float = UNBLOCK_TIMEOUT):
        self.registry = registry
        self.timeout = timeout
        self.watch = StallWatch()

    def check(self) -> None:
        registry = self.registry
        now = time.monotonic()
        self.watch.begin_pass()
        for topic in list(registry.topics.values()):
            for p in range(topic.info.partitions):
                self._check_partition(topic, p, now)
        self.watch.end_pass()

    def _check_partition(self, topic: "Topic", p: int, now: float) -> None:
        name = f"{topic.info.name}/{p}"
        ring = topic.rings[p]
        my_slot = topic.reaper_slots[p]
        slots = ring.slots()
        reaped = ring.reap_dead(my_slot, slots)
        if reaped:
            logger.info(f"{name}: freed {reaped} dead producer slot(s)")
            slots = ring.slots()
        stats = ring.stats()
        if stats.leases_held:
            # Zero-copy readers that died holding a lease: producers would go past it at
            # its deadline anyway, but the lease itself would stay taken.
            for token in set(ring.lease_holders()):
                if not _liveness.is_alive(token, 0, 0):
                    dropped = ring.drop_leases(token)
                    if dropped:
                        logger.info(f"{name}: dropped {dropped} lease(s) of a zero-copy reader that died")
        stalled = self.watch.stalled(ring, slots, stats.lock, my_slot, now, self.timeout)
        if stalled:
            retire_ring(topic, p, stalled)
        for old in list(topic.retired[p]):
            old.ring.reap_dead(old.slot)
            late = self.watch.stalled(old.ring, old.ring.slots(), old.ring.stats().lock, old.slot, now,
                                      self.timeout)
            if late:
                # A claim that was in flight when the ring retired, stalled since: revoke it
                # (retiring again changes nothing else: the ring's end is final).
                old.ring.retire(old.slot, late)
                logger.warning(f"{name}: revoked the stalled claim(s) of slot(s) {late} in the retired ring")
        self.registry.settle_retired(topic, p)


class RetiredRing:
    """A ring its partition moved on from because a producer stalled in it (see
    unblocker.py): its archiver and readers finish it, then it is dropped."""

    def __init__(self, ring, slot, end, next_offset):
        self.ring = ring
        self.slot = slot                  # the supervisor's producer slot in it
        self.end = end                    # where it ends (final)
        self.next_offset = next_offset    # the offset the next ring starts at
        self.archived = not ring.durable  # durable: until the archiver has it all on disk

    def settled(self):
        """Archived, and no live producer is still writing a claim in it."""
        return self.archived and not any(
            s.state in (SLOT_CLAIMED, SLOT_PUBLISHING) and s.owner_alive()
            for s in self.ring.slots() if s.slot != self.slot)

    def drop(self, dropped):
        """Let go of it; the mapping goes to `dropped`, unmapped by the archiver (which
        may sleep on its futex words outside the lock)."""
        self.ring.release_slot(self.slot)
        Ring.unlink(self.ring.name)
        dropped.append(self.ring)


def retire_ring(topic, p, stalled):
    """Retire partition p's ring for the stalled producer slots and go on in a new
    ring at the next offset. Nothing happens (and the next pass tries again) if
    /dev/shm has no room for the new ring, or a live producer holds the lock."""
    info, ring = topic.info, topic.rings[p]
    name = ring.name
    who = holdup.describe_slots(ring, stalled)
    try:
        new = Ring.create(f"{name}@next", info.ring_bytes, 0, info.durable)
    except OSError as e:
        logger.error(f"{info.name}/{p}: held up ({who}), and no room for the ring it would move "
                     f"on to: {e}")
        return
    # The retired ring keeps a name of its own (a restarted supervisor finds it and
    # archives what it holds); the new one will take the partition's name, atomically.
    retired_name = f"{name}@retired-{time.time_ns()}"
    try:
        os.link(_shm.path_of(name), _shm.path_of(retired_name))
    except OSError as e:
        logger.error(f"{info.name}/{p}: held up ({who}), and cannot name the ring it would retire: {e}")
        new.close()
        Ring.unlink(new.name)
        return
    try:
        end, next_offset = ring.retire(topic.reaper_slots[p], stalled)
    except ClaimLockBusy:   # a live producer that is not stalled has the lock: next pass
        new.close()
        Ring.unlink(new.name)
        Ring.unlink(retired_name)
        return
    new.rebase(next_offset)
    new_slot = new.acquire_slot()
    os.rename(_shm.path_of(new.name), _shm.path_of(name))
    ring.name = retired_name
    new.name = name
    topic.retired[p].append(RetiredRing(ring, topic.reaper_slots[p], end, next_offset))
    topic.rings[p] = new
    topic.reaper_slots[p] = new_slot
    logger.warning(f"{info.name}/{p}: {who} for longer than the unblock timeout: revoked; the partition "
                   f"goes on in a new ring at offset {next_offset} (the old one is kept as "
                   f"{retired_name} until it is archived and let go)")
