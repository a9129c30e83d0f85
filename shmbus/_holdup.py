"""Who holds a ring up, in words: for the errors producers raise when they cannot
append (BufferFull, a flush Timeout) and for `topics describe`. A ring stops taking
records when its oldest unfinished record belongs to a producer that does not finish
it (stopped, traced, swapped out -- or dead and not reaped yet), when a producer holds
its claim lock, or, on a durable ring, when the archiver does not archive."""
from typing import List, Optional

import psutil

from ._backend import RING_ARCHIVE_ERROR, SLOT_CLAIMED, SLOT_PUBLISHING, Ring, RingStats, SlotInfo


def _process_state(pid: int) -> str:
    try:
        return psutil.Process(pid).status()
    except (psutil.Error, ValueError):
        return "not visible from here (another pid namespace?)"


def _describe_owner(slot: SlotInfo) -> str:
    alive = slot.owner_alive()
    state = _process_state(slot.pid) if alive else "dead"
    return f"producer pid {slot.pid} ({state})"


def describe_slots(ring: Ring, slots: List[int]) -> str:
    """Who the given producer slots belong to, and what they hold."""
    by_slot = {s.slot: s for s in ring.slots()}
    stats = ring.stats()
    parts = []
    for slot in slots:
        s = by_slot.get(slot)
        if s is None:
            continue
        what = (f"its record at offset {s.claim_offset}" if s.state in (SLOT_CLAIMED, SLOT_PUBLISHING)
                else "the claim lock" if stats.lock_holder == slot else "nothing any more")
        parts.append(f"{_describe_owner(s)} held {what}")
    return "; ".join(parts) or f"slot(s) {slots}"


def holders(ring: Ring, stats: Optional[RingStats] = None, exclude: int = -1) -> List[str]:
    """What holds the ring up now, one phrase each; [] if nothing does."""
    stats = stats or ring.stats()
    slots = {s.slot: s for s in ring.slots() if s.slot != exclude}
    found = []
    # Readers and the write limit stop at the oldest unfinished claim.
    open_claims = [s for s in slots.values() if s.state in (SLOT_CLAIMED, SLOT_PUBLISHING)]
    if open_claims:
        oldest = min(open_claims, key=lambda s: s.claim_pos)
        found.append(f"{_describe_owner(oldest)} has not finished its record at offset {oldest.claim_offset}")
    holder = stats.lock_holder
    if holder in slots and holder != exclude:
        found.append(f"{_describe_owner(slots[holder])} holds its claim lock")
    return found


def explain(ring: Ring, exclude: int = -1, waiting_for: str = "room") -> str:
    """One sentence for an error message: what holds the ring up, or what to check.
    waiting_for: "room" (an append found the ring full) or "sync" (a flush waited for
    its records to be fsynced)."""
    stats = ring.stats()
    if ring.durable and stats.flags & RING_ARCHIVE_ERROR:
        return ("the archiver cannot write or fsync this partition's segment files (the error is in "
                "supervisor.log and `shmbus topics describe`); the records wait in the ring until it can")
    found = holders(ring, stats, exclude)
    if found:
        return ("held up because " + "; ".join(found) + " -- the supervisor revokes a claim that "
                "stalls past its unblock timeout and the partition goes on")
    if waiting_for == "sync":
        return "not archived and fsynced yet: is the supervisor running and archiving? (shmbus topics describe)"
    if ring.durable and stats.archived < stats.published:
        return "full of records not yet archived: is the supervisor running and archiving? (shmbus topics describe)"
    return "full"
