"""A partition's rings in /dev/shm as the supervisor handles them: adopting what a
supervisor that died left (only if it is the bus's own), creating a fresh one, finding
where the disk ends in an adopted ring, and archiving the rings a partition had
moved on from (unblocker.py retires them) that it had not finished. The registry
(topics.py) decides which partition gets which."""
import logging
import time

from .. import _access
from .._backend import SLOT_CLAIMED, SLOT_PUBLISHING, Cursor, Ring
from .._errors import BadRing, NotTrusted, OutOfRing, OutOfSpace, ShmbusError
from .unblocker import UNBLOCK_TIMEOUT

logger = logging.getLogger("shmbus.supervisor")


def attach_trusted(cls, name, what):
    """Map (cls.attach) an object a supervisor that died left in /dev/shm, if it is the
    bus's: owned by its user, letting in no more than the bus does (checked on the open
    descriptor). One that is not is never read: it is logged and removed (or left, if
    it is another user's and this one may not remove it: the fresh object then takes
    another name). None when there is none or it was refused."""
    try:
        return cls.attach(name, _access.own_trust())
    except FileNotFoundError:
        return None
    except NotTrusted as e:
        try:
            cls.unlink(name)
            done = "removed it"
        except PermissionError:
            done = "cannot remove it (another user's): left it, and its replacement takes another name"
        logger.error(f"refused {what} /dev/shm{name}, never read it: {e}; {done}")
        return None


def trusted_objects(cls, name, what, invalid):
    """(candidate, object) for each object of cls (a Ring, a ControlPage) that a
    supervisor that died left under name or one of its alternates and that is the bus's
    own (attach_trusted). One that is not valid (raises invalid) is logged and removed."""
    for candidate in [name] + cls.alternates(name):
        try:
            found = attach_trusted(cls, candidate, what)
        except invalid:
            logger.warning(f"{what} {candidate} is not valid; replacing it")
            cls.unlink(candidate)
            continue
        if found is not None:
            yield candidate, found


def adopt_ring(name, info):
    """The ring a supervisor that died left for this partition, if it is to be trusted
    and fits the topic; else None (then a fresh one is made)."""
    adopted = None
    for candidate, ring in trusted_objects(Ring, name, "ring", BadRing):
        if (adopted is not None or ring.data_bytes != info.ring_bytes or ring.durable != info.durable
                or ring.is_deleted()):
            ring.close()
            Ring.unlink(candidate)
            continue
        adopted = ring
    if adopted is None:
        return None
    reaped = adopted.reap_dead()
    logger.info(f"adopted ring {adopted.name} at offset {adopted.stats().next_offset}"
                + (f", freed {reaped} dead producer slot(s)" if reaped else ""))
    return adopted

def create_ring(name, info, base_offset):
    try:
        ring = Ring.create(name, info.ring_bytes, base_offset, info.durable)
    except OutOfSpace:
        raise
    except OSError as e:
        raise ShmbusError(f"cannot create ring {name}: {e}") from None
    if ring.name != name:
        logger.error(f"/dev/shm{name} is held by another user's object: created the ring as "
                     f"/dev/shm{ring.name} instead")
    return ring


def finish_retired(name, info, p, log, disk_next):
    """Archive what the partition's retired rings hold beyond the disk, oldest first,
    then remove them. Returns the offset the disk now ends at."""
    for retired_name in Ring.retired_names(name) + [n for alt in Ring.alternates(name)
                                                    for n in Ring.retired_names(alt)]:
        ring = attach_trusted(Ring, retired_name, "retired ring")
        if ring is None:
            continue
        try:
            if log is not None:
                disk_next = _archive_retired(info, p, log, ring, disk_next)
        finally:
            ring.close()
            Ring.unlink(retired_name)
        logger.info(f"{info.name}/{p}: finished the retired ring {retired_name}")
    return disk_next

def _archive_retired(info, p, log, ring, disk_next):
    found = archive_position(info, p, ring, disk_next, log)
    if found is None:
        return disk_next
    position, archive_from = found
    if log.fd is not None and archive_from != log.state.next_offset:
        log.close()  # records between were lost: the log goes on in a new segment
    if log.fd is None:
        log.start(archive_from)
    log.state.position = position
    end = ring.stats().retired_end
    my_slot = ring.acquire_slot()
    try:
        stuck_since = time.monotonic()
        while log.state.position < end:
            if log.archive(ring):
                stuck_since = time.monotonic()
                continue
            ring.reap_dead(my_slot)
            if time.monotonic() - stuck_since > 2 * UNBLOCK_TIMEOUT:
                # Claims in flight when it retired, stalled since: revoke them.
                open_claims = [s.slot for s in ring.slots()
                               if s.slot != my_slot and s.state in (SLOT_CLAIMED, SLOT_PUBLISHING)]
                ring.retire(my_slot, open_claims)
                stuck_since = time.monotonic()
            time.sleep(0.001)
        log.sync()
    finally:
        ring.release_slot(my_slot)
    return log.state.next_offset

def archive_position(info, p, ring, disk_next, log):
    """(position, offset) in an adopted ring where the disk ends; None if the ring must
    be replaced."""
    stats = ring.stats()
    if disk_next is None:
        return stats.head, stats.head_offset  # nothing on disk: archive all the ring holds
    if disk_next > stats.next_offset:
        logger.warning(f"{info.name}/{p}: ring ends at offset {stats.next_offset} but the disk at "
                 f"{disk_next}: replacing the ring")
        return None
    cursor = Cursor(ring)
    found = False
    for _ in range(1000):
        try:
            if cursor.seek(disk_next):
                found = True
                break
        except OutOfRing:
            break
        ring.reap_dead()  # a dead producer's unfinished frame holds the seek up
        time.sleep(0.001)
    if found:
        return cursor.position, disk_next
    log.report(None, f"{info.name}/{p}: records {disk_next}..{stats.head_offset - 1} are neither on disk "
                     f"nor in the ring: they were lost")
    return stats.head, stats.head_offset
