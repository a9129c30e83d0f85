"""Topic metadata on disk and the rings in /dev/shm that go with it."""
import logging
import os
import shutil
import time
from typing import List, Optional

from .. import _access
from .._backend import Ring, max_record_bytes
from .._errors import (InvalidArgument, InvalidArgumentType, InvalidFile, InvalidName, ShmbusError, TopicExists,
                       TopicNotFound)
from .._fsutil import read_json, write_json_atomic
from .._log import SegmentWriter
from .._names import ring_name, validate_name
from .._segment_files import list_segments, segment_path
from .._types import TopicInfo
from .rings import adopt_ring, archive_position, create_ring, finish_retired
from .unblocker import RetiredRing

MIN_RING_BYTES = 64 << 10
MIN_SEGMENT_BYTES = 64 << 10
MAX_PARTITIONS = 1024
OFFSET_RESERVE = 10_000_000  # memory-only offsets skipped after a host crash, at least

logger = logging.getLogger("shmbus.supervisor")


def normalize_ring_bytes(ring_bytes):
    """Round a requested ring size up to whole pages."""
    if not isinstance(ring_bytes, int) or isinstance(ring_bytes, bool):
        raise InvalidArgumentType(f"ring_bytes must be an int, not {type(ring_bytes).__name__}")
    if ring_bytes < MIN_RING_BYTES:
        raise InvalidArgument(f"ring_bytes must be at least {MIN_RING_BYTES} (64 KiB), got {ring_bytes}")
    return (ring_bytes + 4095) & ~4095


class Topic:
    """A topic as the supervisor holds it: its config, one mapped ring per partition,
    and (durable topics) one segment log writer per partition; and per partition the
    rings it moved on from that are not finished yet (oldest first)."""

    def __init__(self, info, created_ns, rings, reaper_slots, logs):
        self.info = info
        self.created_ns = created_ns
        self.rings = rings
        self.reaper_slots = reaper_slots
        self.logs = logs
        self.saved_offsets = [None] * len(rings)
        self.retired: List[List[RetiredRing]] = [[] for _ in rings]   # per partition, oldest first

    def ring_names(self):
        return [ring.name for ring in self.rings]

    def archive_source(self, p):
        """The ring the archiver reads now: the oldest retired ring not archived yet,
        else the partition's ring."""
        for old in self.retired[p]:
            if not old.archived:
                return old
        return None


class TopicRegistry:
    """Creates, adopts, describes and deletes topics. Thread-safe through the
    supervisor's lock (the caller holds it)."""

    def __init__(self, paths):
        self.paths = paths
        self.topics = {}
        # Topic directories whose metadata cannot be read: name -> why. Kept as they are
        # (segments, rings), reported, and refused to clients, until repaired or deleted.
        self.broken = {}
        self.dropped = []  # rings of deleted topics, still mapped (see _drop_rings)

    # ---- paths ----

    def topic_dir(self, name):
        return os.path.join(self.paths.topics_dir, name)

    def partition_dir(self, name, partition):
        return os.path.join(self.topic_dir(name), str(partition))

    def ring_name(self, name, partition):
        return ring_name(self.paths.shm_prefix, name, partition)

    @property
    def trash_dir(self):
        """Where a deleted topic's directory goes (one rename) before it is removed, so an
        interrupted delete never leaves half a topic among the topics."""
        return os.path.join(self.paths.data_dir, "deleted")

    # ---- start and stop ----

    def load(self, crashed):
        """Open every topic of the data dir: adopt its live rings (a supervisor
        that died left them for us) or create fresh ones at the next offset. A topic whose
        metadata cannot be read is broken: reported, kept as it is, and the rest serves."""
        _access.make_dir(self.paths.topics_dir)
        shutil.rmtree(self.trash_dir, ignore_errors=True)  # deletes a stop interrupted
        for name in sorted(os.listdir(self.paths.topics_dir)):
            directory = self.topic_dir(name)
            if not os.path.isdir(directory):
                continue
            try:
                validate_name(name, "topic")
            except InvalidName:
                logger.warning(f"{directory}: not a topic name; left alone")
                continue
            if set(os.listdir(directory)) <= {"topic.json.tmp"}:
                shutil.rmtree(directory)  # a create interrupted before the topic existed
                continue
            try:
                info, created_ns, states = self._read_metadata(name)
            except InvalidFile as e:
                self.broken[name] = str(e)
                logger.error(f"topic {name} is broken: {e}; its segments and rings are left as they are, "
                             f"and clients cannot use it until the file is repaired (then restart the "
                             f"supervisor) or the topic deleted")
                continue
            self.topics[name] = self._open(info, created_ns, adopt=True, crashed=crashed, states=states)
        self._unlink_strays()
        self.save_offsets()  # a fresh reservation before anything is sent

    def _read_metadata(self, name):
        """(TopicInfo, created_ns, [state.json of each partition]) of a topic directory, read
        and checked before anything is opened; InvalidFile naming the file otherwise."""
        path = os.path.join(self.topic_dir(name), "topic.json")
        meta = read_json(path)
        if meta is None:
            raise InvalidFile(f"{path} is missing")
        try:
            info = TopicInfo(meta["name"], meta["partitions"], meta["ring_bytes"], meta["durable"],
                             meta.get("retention_bytes"), meta.get("retention_ms"),
                             meta.get("segment_bytes", TopicInfo._field_defaults["segment_bytes"]))
            created_ns = int(meta.get("created_ns", 0))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise InvalidFile(f"{path} does not describe a topic ({type(e).__name__}: {e})") from None
        valid = (info.name == name and isinstance(info.durable, bool)
                 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                         for v in (info.partitions, info.ring_bytes, info.segment_bytes))
                 and info.partitions <= MAX_PARTITIONS
                 and all(v is None or isinstance(v, int) and v > 0 for v in (info.retention_bytes, info.retention_ms)))
        if not valid:
            raise InvalidFile(f"{path} does not describe topic {name!r}: {meta}")
        return info, created_ns, [self._read_state(info, p) for p in range(info.partitions)]

    def _read_state(self, info, p):
        """A partition's state.json. A memory-only partition cannot do without it (its next
        offset is there and nowhere else); a durable one's segments say the same, so a bad
        one is only a warning there."""
        path = os.path.join(self.partition_dir(info.name, p), "state.json")
        try:
            state = read_json(path, {})
            if not isinstance(state, dict) or not all(isinstance(state.get(k, 0), int)
                                                      for k in ("next_offset", "reserved_until")):
                raise InvalidFile(f"{path} does not hold a partition's state: {state}")
            return state
        except InvalidFile as e:
            if not info.durable:
                raise
            logger.warning(f"{e}: ignored (the segment files say where the log ends)")
            return {}

    def _unlink_strays(self):
        """Remove rings of this bus that belong to no topic (deleted while we were down).
        A broken topic's rings stay: they may hold records not yet archived."""
        prefix = self.paths.shm_prefix
        wanted = {ring.name[1:] for topic in self.topics.values() for ring in topic.rings}
        kept = {self._ring_topic_part(name) for name in self.broken}
        try:
            entries = os.listdir("/dev/shm")
        except OSError:
            return
        wanted |= {old.ring.name[1:] for topic in self.topics.values() for retired in topic.retired
                   for old in retired}
        for entry in entries:
            if not entry.startswith(prefix) or entry in wanted:
                continue
            # '@' never occurs in a topic's name: what has one is a control object (the
            # groups' page) -- or a retired ring, or a new ring being made.
            base, at, kind = entry.partition("@")
            if at and not (kind.startswith("retired-") or kind == "next"):
                continue
            if base[len(prefix):].rpartition(":")[0].partition("~")[0] in kept:
                logger.warning(f"left /dev/shm/{entry} alone: its topic is broken")
                continue
            try:
                Ring.unlink("/" + entry)
            except PermissionError:
                logger.warning(f"/dev/shm/{entry} is named as a ring of this bus but is another user's: "
                               f"left it (never read)")
                continue
            logger.warning(f"removed stray ring /dev/shm/{entry}")

    def _ring_topic_part(self, name):
        """What stands for topic `name` in its rings' names (between the prefix and ':p')."""
        return ring_name(self.paths.shm_prefix, name, 0)[1 + len(self.paths.shm_prefix):-len(":0")]

    def quiesce(self, timeout=1.0):
        """Stop new appends everywhere and give claims in flight a moment to finish."""
        for topic in self.topics.values():
            for p, ring in enumerate(topic.rings):
                ring.mark_deleted()
                for old in topic.retired[p]:
                    old.ring.mark_deleted()
        deadline = time.monotonic() + timeout
        for topic in self.topics.values():
            for p, ring in enumerate(topic.rings):
                while time.monotonic() < deadline and any(
                        s.claimed and s.owner_alive() for s in ring.slots() if s.slot != topic.reaper_slots[p]):
                    time.sleep(0.005)

    def close(self):
        """Clean stop (after the archiver drained): record where each partition ended,
        close the logs, then remove every ring."""
        for name, topic in list(self.topics.items()):
            self._save_offsets(topic, final=True)
            self._drop_rings(topic)
        self.topics.clear()
        self.close_dropped()

    # ---- operations ----

    def create(self, name, partitions=1, ring_bytes=64 << 20, durable=True,
               retention_bytes=None, retention_ms=None, segment_bytes=None):
        validate_name(name, "topic")
        if not isinstance(partitions, int) or isinstance(partitions, bool) or not 1 <= partitions <= MAX_PARTITIONS:
            raise InvalidArgument(f"partitions must be an int from 1 to {MAX_PARTITIONS}, got {partitions!r}")
        ring_bytes = normalize_ring_bytes(ring_bytes)
        if not isinstance(durable, bool):
            raise InvalidArgumentType("durable must be True or False")
        for what, value in (("retention_bytes", retention_bytes), ("retention_ms", retention_ms),
                            ("segment_bytes", segment_bytes)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise InvalidArgument(f"{what} must be a positive int or None, got {value!r}")
        if segment_bytes is None:
            segment_bytes = TopicInfo._field_defaults["segment_bytes"]
        if segment_bytes < MIN_SEGMENT_BYTES:
            raise InvalidArgument(f"segment_bytes must be at least {MIN_SEGMENT_BYTES}, got {segment_bytes}")
        if name in self.topics:
            raise TopicExists(f"topic {name!r} already exists")
        if name in self.broken:
            raise TopicExists(f"topic {name!r} exists but is broken ({self.broken[name]}): repair it, or "
                              f"delete it (shmbus topics delete {name}) to create it anew")
        if os.path.exists(self.topic_dir(name)):
            # Not one of ours, yet in our topics directory: never delete what we do not know.
            raise TopicExists(f"{self.topic_dir(name)} already exists")
        info = TopicInfo(name, partitions, ring_bytes, durable, retention_bytes, retention_ms, segment_bytes)
        created_ns = time.time_ns()
        _access.make_dir(self.topic_dir(name))
        try:
            # The metadata first: from here on the directory is this topic, whatever happens.
            write_json_atomic(os.path.join(self.topic_dir(name), "topic.json"),
                              dict(info._asdict(), created_ns=created_ns))
            for p in range(partitions):
                _access.make_dir(self.partition_dir(name, p))
            topic = self._open(info, created_ns, adopt=False, crashed=False)
        except BaseException:
            shutil.rmtree(self.topic_dir(name), ignore_errors=True)
            raise
        try:
            self._save_offsets(topic)
        except BaseException:
            self._drop_rings(topic)
            shutil.rmtree(self.topic_dir(name), ignore_errors=True)
            raise
        self.topics[name] = topic
        logger.info(f"created topic {name}: {partitions} partition(s), {ring_bytes} byte rings, "
                 f"{'durable' if durable else 'memory-only'}")
        return topic

    def delete(self, name):
        if isinstance(name, str) and name in self.broken:
            # Its rings were left alone at start; deleting it is the operator's word.
            for entry in _shm_entries(self.paths.shm_prefix + self._ring_topic_part(name) + ":"):
                try:
                    ring = Ring.attach("/" + entry, _access.own_trust())
                    ring.mark_deleted()  # clients that still map it let go
                    ring.close()
                except (OSError, ShmbusError):
                    pass
                Ring.unlink("/" + entry)
            del self.broken[name]
        else:
            topic = self.get(name)
            del self.topics[name]
            self._drop_rings(topic)
        _access.make_dir(self.trash_dir)
        trash = os.path.join(self.trash_dir, f"{name}.{time.time_ns()}")
        os.rename(self.topic_dir(name), trash)
        shutil.rmtree(trash, ignore_errors=True)
        logger.info(f"deleted topic {name}")

    def get(self, name):
        if not isinstance(name, str):
            raise InvalidName(f"topic name must be a str, not {type(name).__name__}")
        topic = self.topics.get(name)
        if topic is None:
            if name in self.broken:
                raise ShmbusError(f"topic {name!r} is broken: {self.broken[name]}. Its data is kept; repair "
                                  f"that file and restart the supervisor, or delete the topic "
                                  f"(shmbus topics delete {name})")
            raise TopicNotFound(f"unknown topic {name!r}")
        return topic

    def describe(self, name):
        if isinstance(name, str) and name in self.broken:
            return {"topic": {"name": name}, "broken": self.broken[name], "partitions": []}
        topic = self.get(name)
        partitions = []
        for p, ring in enumerate(topic.rings):
            s = ring.stats()
            row = {
                "partition": p,
                "earliest_offset": s.head_offset,
                "end_offset": s.next_offset,
                "ring_bytes": s.data_bytes,
                "ring_used_bytes": s.tail - s.head,
                "producers": sum(1 for slot in ring.slots() if slot[0] != topic.reaper_slots[p]),
                "waiting_consumers": s.data_waiters,
            }
            log = topic.logs[p]
            if log is not None:
                directory = self.partition_dir(name, p)
                bases = list_segments(directory)
                if bases:
                    row["earliest_offset"] = bases[0]
                row.update({
                    "segments": len(bases),
                    "disk_bytes": sum(_size(segment_path(directory, b)) for b in bases),
                    "archived_offset": log.state.next_offset,
                    "archive_lag": s.next_offset - log.state.next_offset,
                    "unsynced_bytes": s.archived - s.synced,
                    "last_fsync_ns": log.last_sync_ns,
                    "archive_error": log.error,
                    "damage": log.damage(),
                })
            partitions.append(row)
        return {"topic": topic.info._asdict(), "created_ns": topic.created_ns,
                "max_record_bytes": max_record_bytes(topic.info.ring_bytes),
                "partitions": partitions, "broken": None}

    # ---- rings ----

    def _open(self, info, created_ns, adopt, crashed, states=None):
        rings, slots, logs = [], [], []
        try:
            for p in range(info.partitions):
                ring, log = self._open_partition(info, p, adopt, crashed, states[p] if states else {})
                rings.append(ring)
                logs.append(log)
                slots.append(ring.acquire_slot())
        except BaseException:
            for ring in rings:
                ring.close()
                Ring.unlink(ring.name)
            for log in logs:
                if log is not None:
                    log.close()
            raise
        return Topic(info, created_ns, rings, slots, logs)

    def _open_partition(self, info, p, adopt, crashed, state):
        """One partition's ring and log. A durable ring is the tail of its log: the
        archiver resumes at the first offset the disk does not have. state: its
        state.json (_read_state)."""
        log = SegmentWriter(self.partition_dir(info.name, p), info.segment_bytes) if info.durable else None
        disk_next = log.recover(crashed, state.get("next_offset")) if log is not None else None
        if adopt:
            # Rings the partition moved on from (a producer stalled in them) that a
            # supervisor that died had not finished archiving: finish them first.
            disk_next = finish_retired(self.ring_name(info.name, p), info, p, log, disk_next)
        ring = adopt_ring(self.ring_name(info.name, p), info) if adopt else None
        position: Optional[int] = None   # where the archiver starts in the ring
        archive_from = None              # and the offset of the frame there
        if ring is not None and log is not None:
            found = archive_position(info, p, ring, disk_next, log)
            if found is None:
                ring.close()
                Ring.unlink(ring.name)
                ring = None
            else:
                position, archive_from = found
        if ring is None:
            if log is not None:
                base = disk_next or 0
            else:
                # A memory-only ring lost with the host: its records are gone, but its
                # offsets must never be reused, so start past what it may have handed out.
                base = int(state.get("next_offset", 0))
                if crashed:
                    base = max(base, int(state.get("reserved_until", 0)))
            ring = create_ring(self.ring_name(info.name, p), info, base)
            position, archive_from = 0, base
        if log is not None:
            assert position is not None and archive_from is not None
            if log.fd is not None and archive_from != log.state.next_offset:
                log.close()  # records between were lost: the log goes on in a new segment
            if log.fd is None:
                log.start(archive_from)
            log.state.position = position
            log.sync()
            log.synced_position = position
            ring.set_archived(position, position)
        return ring, log

    def settle_retired(self, topic, p):
        """Drop the retired rings of partition p that are archived and let go."""
        while topic.retired[p] and topic.retired[p][0].settled():
            old = topic.retired[p].pop(0)
            logger.info(f"{topic.info.name}/{p}: dropped the retired ring {old.ring.name}")
            old.drop(self.dropped)

    def enforce_retention(self, topic):
        info = topic.info
        if not info.durable or (info.retention_bytes is None and info.retention_ms is None):
            return
        for log in topic.logs:
            log.enforce_retention(info.retention_bytes, info.retention_ms, time.time_ns())

    def _save_offsets(self, topic, final=False):
        """Memory-only partitions: record the next offset, and a reservation beyond
        it, so a ring lost with the host restarts past every offset it may have
        handed out since (never reused). Written about once a second, only when the
        offset moved (an idle bus does no I/O); at a clean stop, exactly."""
        if topic.info.durable:
            # The segment files say where a durable partition ends; what they said at a clean
            # stop is kept too, so that offsets the disk loses since are never given again.
            if final:
                for p, log in enumerate(topic.logs):
                    path = os.path.join(self.partition_dir(topic.info.name, p), "state.json")
                    try:
                        write_json_atomic(path, {"next_offset": log.state.next_offset})
                    except OSError as e:  # a full disk must not stop the clean stop
                        logger.warning(f"cannot record where {topic.info.name}/{p} ends: {e}")
            return
        for p, ring in enumerate(topic.rings):
            next_offset = ring.stats().next_offset
            path = self.partition_dir(topic.info.name, p)
            last = topic.saved_offsets[p]
            if (last != next_offset or final) and os.path.isdir(path):
                # Four times the last interval's rate, and never less than any single
                # producer process can send in a second several times over.
                moved = next_offset - last if last is not None else 0
                reserved = next_offset if final else next_offset + max(OFFSET_RESERVE, 4 * moved)
                write_json_atomic(os.path.join(path, "state.json"),
                                  {"next_offset": next_offset, "reserved_until": reserved})
                topic.saved_offsets[p] = next_offset

    def save_offsets(self):
        for topic in self.topics.values():
            self._save_offsets(topic)

    def _drop_rings(self, topic):
        """Remove a topic's rings. Their mappings are only retired here: the archiver
        may be asleep on their futex words outside the lock, so it unmaps them itself
        (close_dropped) once the deletion flag has woken it."""
        for log in topic.logs:
            if log is not None:
                log.close()
        for p, ring in enumerate(topic.rings):
            ring.mark_deleted()
            ring.release_slot(topic.reaper_slots[p])
            Ring.unlink(ring.name)
            self.dropped.append(ring)
            for old in topic.retired[p]:
                old.ring.mark_deleted()
                old.drop(self.dropped)
            topic.retired[p] = []

    def close_dropped(self):
        for ring in self.dropped:
            ring.close()
        self.dropped.clear()


def _shm_entries(prefix):
    try:
        return [entry for entry in os.listdir("/dev/shm") if entry.startswith(prefix)]
    except OSError:
        return []


def _size(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0

