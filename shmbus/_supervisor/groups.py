"""The consumer group coordinator: membership, assignment, generations and
durable committed offsets, inside the supervisor.

How a rebalance goes (incremental, like Kafka's cooperative protocol, so a
partition never has two owners that may both commit):

- A member joins, leaves, dies or stops polling: the coordinator recomputes the
  group's *target* assignment and bumps its generation word on the control page.
- Each member sees the word move on its next poll and syncs. It is granted the
  partitions of its target that nobody holds (with their committed offsets), and
  told which ones it holds but must give up (`revoke`). It commits them if it
  auto-commits, runs on_revoke, and syncs again reporting them released; that
  bumps the generation again, so their new owner comes for them.
- Until it releases them, the old owner may still commit them: nobody else reads
  them. A member the coordinator removed (dead, gone, or silent for longer than
  its max_poll_interval) loses its partitions at once, and any later commit of
  its is refused with CommitFailed.

Committed offsets live in <data_dir>/groups/<group>/offsets.json, replaced
atomically and fsynced on every commit, under the supervisor's lock.
"""
import functools
import logging
import os
import shutil
import time
from typing import Dict, Optional

from .. import _access
from .._backend import CONTROL_GROUPS, CONTROL_MEMBERS, ControlPage
from .._errors import BadControlPage, CommitFailed, InvalidFile, ShmbusError
from .._fsutil import read_json, write_json_atomic
from .._group import STRATEGIES, control_page_name
from .._names import validate_name
from .. import _checks
from .. import _liveness as liveness
from .._types import TopicPartition
from .assignment import compute_assignment
from .rings import trusted_objects

OFFSETS_FILE = "offsets.json"
MAX_POLL_INTERVAL_MS = 365 * 24 * 3600 * 1000   # a year: beyond it a member may as well never poll

logger = logging.getLogger("shmbus.supervisor")


class Member:
    """A live member as the coordinator sees it."""

    __slots__ = ("member_id", "pid", "start_ms", "liveness", "connection", "topics", "max_poll_interval",
                 "slot", "token", "generation", "holdings")

    def __init__(self, member_id, pid, start_ms, liveness, connection, topics, max_poll_interval, slot, token):
        self.member_id = member_id
        self.pid = pid                  # a hint: in another pid namespace it names nobody
        self.start_ms = start_ms
        self.liveness = liveness        # its process's liveness lock token (_liveness)
        self.connection = connection    # the control connection it joined on; its close = leave
        self.topics = topics
        self.max_poll_interval = max_poll_interval
        self.slot = slot                # its line on the control page (last poll time)
        self.token = token              # owner token of that line
        self.generation = -1            # the generation it last completed a sync at
        self.holdings = set()           # partitions it may read and commit now


class Group:
    def __init__(self, name, generation=0, offsets=None, broken=None):
        self.name = name
        self.generation = generation
        self.offsets = offsets or {}    # TopicPartition -> committed offset
        self.broken = broken            # why its offsets.json cannot be read, if it cannot
        self.members = {}               # member_id -> Member, in join order
        self.target = {}                # member_id -> set(TopicPartition): the assignment being reached
        self.partitions = {}            # topic -> partition count the target was computed for
        self.slot = None                # its generation word on the control page, while it has members
        self.strategy = "range"
        self.sticky = False

    def holder(self, tp):
        for member in self.members.values():
            if tp in member.holdings:
                return member
        return None

    def state(self):
        if self.broken:
            return "Broken"
        if not self.members:
            return "Empty"
        for member in self.members.values():
            if member.generation != self.generation or member.holdings != self.target.get(member.member_id):
                return "Rebalancing"
        return "Stable"


def _check_int(what, value, minimum):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{what} must be an int of at least {minimum}, got {value!r}")


def _partition_rows(rows, what="partitions"):
    if not isinstance(rows, list):
        raise TypeError(f"{what} must be a list")
    return [TopicPartition(str(row[0]), int(row[1])) for row in rows]


class GroupCoordinator:
    """Every group of the bus. Its op_* methods are control operations; they
    take the supervisor's lock, and get the id of the connection they came on."""

    def __init__(self, paths, registry, lock):
        self.paths = paths
        self.registry = registry
        self.lock = lock
        self.groups: Dict[str, Group] = {}
        self._page: Optional[ControlPage] = None
        self._free_group_slots = list(range(CONTROL_GROUPS - 1, -1, -1))
        self._free_member_slots = list(range(CONTROL_MEMBERS - 1, -1, -1))
        # Tokens start at the wall clock, so none equals a token a previous
        # supervisor handed out on an adopted page.
        self._next_token = time.time_ns()
        self._closed = False

    @property
    def page(self) -> ControlPage:
        """The control page (mapped by open())."""
        assert self._page is not None, "the coordinator is not open"
        return self._page

    @property
    def groups_dir(self):
        return os.path.join(self.paths.data_dir, "groups")

    def _group_file(self, name):
        return os.path.join(self.groups_dir, name, OFFSETS_FILE)

    def handler(self, op, connection):
        """The method serving control operation `op`, bound to the connection; or None."""
        method = getattr(self, f"op_{op}", None)
        return None if method is None else functools.partial(method, connection)

    # ---- start and stop ----

    def open(self):
        """Load committed offsets, and adopt the control page a crashed supervisor left."""
        _access.make_dir(self.groups_dir)
        for name in sorted(os.listdir(self.groups_dir)):
            group = self._load(name)
            if group is not None:
                self.groups[name] = group
        name = control_page_name(self.paths.shm_prefix)
        for candidate, page in trusted_objects(ControlPage, name, "control page", BadControlPage):
            if self._page is not None:
                page.close()            # an older one of ours, replaced since
                ControlPage.unlink(candidate)
            else:
                self._page = page
        if self._page is None:
            self._page = ControlPage.create(name)
            if self._page.name != name:
                logger.error(f"/dev/shm{name} is held by another user's object: created the control page as "
                             f"/dev/shm{self._page.name} instead")
            return
        # Members of the supervisor that died still watch this page, but their
        # membership died with it: move every generation word on so they notice
        # and join again, and free every member line.
        moved = 0
        for slot in range(CONTROL_GROUPS):
            generation = self.page.generation(slot)
            if generation:
                self.page.set_generation(slot, generation + 1)
                moved += 1
        for slot in range(CONTROL_MEMBERS):
            self.page.set_member(slot, 0)
        logger.info(f"adopted control page {self.page.name}" + (f"; {moved} group(s) must rejoin" if moved else ""))

    def _load(self, name):
        """A group as its offsets.json has it (None without one). A file that cannot be read
        makes the group broken, not the supervisor: the rest of the bus serves, the file is
        kept, and whoever uses the group is told why (see _usable)."""
        path = self._group_file(name)
        try:
            data = read_json(path)
            if data is None:
                return None
            if not isinstance(data, dict) or not isinstance(data.get("offsets", {}), dict):
                raise InvalidFile(f"{path} does not hold a group's offsets")
            offsets = {TopicPartition(str(topic), int(p)): int(offset)
                       for topic, by_partition in data.get("offsets", {}).items()
                       for p, offset in by_partition.items()}
            return Group(name, int(data.get("generation", 0)), offsets)
        except (InvalidFile, ValueError, TypeError, AttributeError) as e:
            reason = str(e) if isinstance(e, InvalidFile) else f"{path} does not hold a group's offsets ({e})"
            logger.error(f"group {name} is broken: {reason}; its members cannot join until the file is "
                         f"fixed (or the group deleted)")
            return Group(name, broken=reason)

    def _usable(self, g):
        """The group, unless it is broken: then read its file again (an operator may have
        fixed it), and if it is still broken, refuse with a clear error."""
        if g is None or not g.broken:
            return g
        again = self._load(g.name)
        if again is not None and not again.broken:
            self.groups[g.name] = again
            logger.info(f"group {g.name}: {self._group_file(g.name)} is readable again")
            return again
        if again is None:
            del self.groups[g.name]
            return None
        g.broken = again.broken
        raise ShmbusError(f"group {g.name!r} is broken: {g.broken}. Its committed offsets cannot be "
                          f"read, so its members cannot start; fix that file, or delete the group "
                          f"(shmbus groups delete {g.name})")

    def close(self):
        """Clean stop: tell every member (its word moves: it will look for the next
        supervisor), then remove the control page."""
        self._closed = True
        if self._page is None:
            return
        for group in self.groups.values():
            if group.slot is not None:
                self._bump(group)
        self._page.close()
        ControlPage.unlink(self._page.name)
        self._page = None

    def _check_open(self):
        if self._closed:
            raise ShmbusError("the supervisor is stopping")

    # ---- membership ----

    def _group(self, name, create=False):
        validate_name(name, "group")
        group = self._usable(self.groups.get(name))
        if group is None and create:
            group = self.groups[name] = Group(name)
        return group

    def _member(self, group_name, member_id):
        group = self.groups.get(group_name)
        member = group.members.get(member_id) if group is not None else None
        return group, member

    def op_group_join(self, connection, group, member_id=None, pid=0, start_ms=0, topics=(),
                      strategy="range", sticky=False, max_poll_interval_ms=300000, liveness=0):
        # Every argument is checked before anything is taken: a refused join must leave
        # no member line, group line or group behind (300 joins with a bad interval once
        # used up every group line, and every later consumer group failed until a restart).
        validate_name(group, "group")
        if member_id is not None and not isinstance(member_id, str):
            raise TypeError(f"member_id must be a str or None, not {type(member_id).__name__}")
        if not isinstance(strategy, str) or strategy not in STRATEGIES:
            raise ValueError(f"assignment strategy must be one of {STRATEGIES}, got {strategy!r}")
        if not isinstance(topics, list) or not topics or not all(isinstance(t, str) for t in topics):
            raise TypeError("topics must be a non-empty list of topic names")
        _check_int("pid", pid, minimum=1)
        _check_int("start_ms", start_ms, minimum=0)
        _checks.offset(liveness, "liveness (a liveness lock token)")
        if not isinstance(sticky, bool):
            raise TypeError(f"sticky must be true or false, got {sticky!r}")
        if (not isinstance(max_poll_interval_ms, (int, float)) or isinstance(max_poll_interval_ms, bool)
                or not 0 < max_poll_interval_ms <= MAX_POLL_INTERVAL_MS):
            raise ValueError(f"max_poll_interval_ms must be a number of milliseconds from 1 to "
                             f"{MAX_POLL_INTERVAL_MS}, got {max_poll_interval_ms!r}")
        with self.lock:
            self._check_open()
            for topic in topics:
                self.registry.get(topic)
            # A group is registered only once it has a member (or offsets): refused joins
            # must not fill the registry with names either.
            g = self._usable(self.groups.get(group)) or Group(group)
            if g.members and (g.strategy, g.sticky) != (strategy, sticky):
                raise ShmbusError(
                    f"group {group!r} assigns with {g.strategy}{' (sticky)' if g.sticky else ''}; "
                    f"this consumer asks for {strategy}{' (sticky)' if sticky else ''}: use the same options"
                )
            member = g.members.get(member_id)
            if member is not None:
                member.topics = sorted(set(topics))
                self._rebalance(g, f"{member.member_id} subscribed to {', '.join(member.topics)}")
            else:
                if not self._free_member_slots:
                    raise ShmbusError(f"this bus already has {CONTROL_MEMBERS} group members")
                if g.slot is None and not self._free_group_slots:
                    raise ShmbusError(f"this bus already has {CONTROL_GROUPS} groups with members")
                # Nothing can fail from here on.
                if g.slot is None:
                    g.slot = self._free_group_slots.pop()
                    # Never below what the line held: a watcher of an earlier
                    # group on this line must see the word move.
                    g.generation = max(g.generation, self.page.generation(g.slot))
                slot = self._free_member_slots.pop()
                self._next_token += 1
                member = Member(f"{pid}-{self._next_token % 1000000:06d}", pid, start_ms, liveness, connection,
                                sorted(set(topics)), max_poll_interval_ms / 1000, slot, self._next_token)
                self.page.set_member(slot, member.token)
                g.members[member.member_id] = member
                self.groups[group] = g
                g.strategy, g.sticky = strategy, sticky
                self._rebalance(g, f"{member.member_id} (pid {pid}) joined")
            return {"member_id": member.member_id, "generation": g.generation,
                    "control": {"name": self.page.name, "id": self.page.id},
                    "group_slot": g.slot, "member_slot": member.slot, "token": member.token}

    def op_group_sync(self, connection, group, member_id, released=()):
        with self.lock:
            self._check_open()
            g, member = self._member(group, member_id)
            if member is None:
                return {"member": False}
            released = set(_partition_rows(list(released), "released")) & member.holdings
            if released:
                member.holdings -= released
                wanted_elsewhere = any(released & target for other, target in g.target.items()
                                       if other != member_id)
                if wanted_elsewhere:
                    self._bump(g)  # their new owners are synced already: call them back
            target = g.target.get(member_id, set())
            taken = set().union(*(m.holdings for m in g.members.values() if m is not member))
            member.holdings |= target - taken
            revoke = member.holdings - target
            if not revoke:
                member.generation = g.generation
            return {"member": True, "generation": g.generation,
                    "assignment": [[tp.topic, tp.partition, g.offsets.get(tp)] for tp in sorted(member.holdings)],
                    "revoke": [list(tp) for tp in sorted(revoke)]}

    def op_group_leave(self, connection, group, member_id):
        with self.lock:
            g, member = self._member(group, member_id)
            if member is not None and not self._closed:
                self._remove(g, member, f"{member_id} left")
        return None

    def connection_closed(self, connection):
        """A control connection closed: its members left, or their process died
        (the kernel closes a killed process's socket: the fastest death signal)."""
        with self.lock:
            if self._closed:
                return
            for g in list(self.groups.values()):
                for member in list(g.members.values()):
                    if member.connection == connection:
                        self._remove(g, member, f"{member.member_id} (pid {member.pid}) is gone: "
                                                f"its connection closed")

    def check_liveness(self):
        """From the liveness loop: remove members whose process died (its liveness lock
        released: see _liveness.py) or that stopped polling; rebalance
        groups whose topics gained or lost partitions."""
        with self.lock:
            if self._closed:
                return
            for g in list(self.groups.values()):
                for member in list(g.members.values()):
                    if not liveness.is_alive(member.liveness, member.pid, member.start_ms):
                        self._remove(g, member, f"{member.member_id} (pid {member.pid}) died")
                        continue
                    idle = self.page.idle_seconds(member.slot, member.token)
                    if idle is not None and idle > member.max_poll_interval:
                        self._remove(g, member, f"{member.member_id} (pid {member.pid}) did not poll for "
                                                f"{idle:.1f}s (max_poll_interval {member.max_poll_interval:g}s)")
                if g.members and self._partition_counts(g) != g.partitions:
                    self._rebalance(g, "its topics' partitions changed")

    def _remove(self, g, member, reason):
        del g.members[member.member_id]
        g.target.pop(member.member_id, None)
        self.page.set_member(member.slot, 0)
        self._free_member_slots.append(member.slot)
        if g.members:
            self._rebalance(g, reason)
            return
        # The last one: a removed member that still polls must see the word move
        # before the line goes to another group.
        self._bump(g)
        self._free_group_slots.append(g.slot)
        g.slot = None
        g.target = {}
        logger.info(f"group {g.name}: generation {g.generation}: {reason}; no members left")

    def _partition_counts(self, g):
        topics = set().union(*(set(m.topics) for m in g.members.values()))
        counts = {}
        for topic in topics:
            entry = self.registry.topics.get(topic)
            if entry is not None:
                counts[topic] = entry.info.partitions
        return counts

    def _rebalance(self, g, reason):
        g.partitions = self._partition_counts(g)
        subscriptions = {member_id: set(m.topics) for member_id, m in g.members.items()}
        g.target = compute_assignment(g.strategy, g.sticky, subscriptions, g.partitions, g.target)
        self._bump(g)
        logger.info(f"group {g.name}: generation {g.generation}: {reason}")

    def _bump(self, g):
        g.generation += 1
        if g.slot is not None:
            self.page.set_generation(g.slot, g.generation)

    # ---- offsets ----

    def op_group_commit(self, connection, group, member_id, generation, offsets):
        if not isinstance(offsets, list):
            raise TypeError("offsets must be a list of [topic, partition, offset] rows")
        with self.lock:
            self._check_open()
            g, member = self._member(group, member_id)
            if member is None:
                raise CommitFailed(
                    f"member {member_id} is no longer in group {group!r} (it was removed and its partitions "
                    f"reassigned); it rejoins on its next poll"
                )
            if generation != member.generation:
                raise CommitFailed(
                    f"commit with stale generation {generation} refused: member {member_id} of group {group!r} "
                    f"is at generation {member.generation}"
                )
            parsed = {}
            for row in offsets:
                tp = TopicPartition(str(row[0]), int(row[1]))
                offset = row[2]
                _checks.offset(offset, f"the offset of {tp}")
                if tp not in member.holdings:
                    raise CommitFailed(f"{tp} is not assigned to member {member_id} of group {group!r}")
                parsed[tp] = offset
            g.offsets.update(parsed)
            self._save(g)
        return None

    def op_group_committed(self, connection, group, partitions):
        with self.lock:
            g = self._group(group)
            offsets = g.offsets if g is not None else {}
            return [[tp.topic, tp.partition, offsets.get(tp)] for tp in _partition_rows(partitions)]

    def _save(self, g):
        by_topic: Dict[str, Dict[str, int]] = {}
        for tp, offset in sorted(g.offsets.items()):
            by_topic.setdefault(tp.topic, {})[str(tp.partition)] = offset
        _access.make_dir(os.path.dirname(self._group_file(g.name)))
        write_json_atomic(self._group_file(g.name),
                          {"group": g.name, "generation": g.generation, "offsets": by_topic})

    # ---- operations (CLI) ----

    def op_groups(self, connection):
        with self.lock:
            return [{"group": g.name, "state": g.state(), "members": len(g.members),
                     "generation": g.generation, "strategy": g.strategy if g.members else None,
                     "sticky": g.sticky if g.members else None, "error": g.broken}
                    for g in sorted(self.groups.values(), key=lambda g: g.name)]

    def _ends(self, topic):
        """{partition: (earliest, end)} of a topic, or None if it no longer exists."""
        if topic not in self.registry.topics:
            return None
        return {p["partition"]: (p["earliest_offset"], p["end_offset"])
                for p in self.registry.describe(topic)["partitions"]}

    def op_describe_group(self, connection, group):
        with self.lock:
            self._check_open()
            validate_name(group, "group")
            g = self.groups.get(group)
            if g is not None and g.broken:
                return {"group": g.name, "state": g.state(), "generation": g.generation, "strategy": None,
                        "sticky": None, "members": [], "partitions": [], "error": g.broken}
            if g is None:
                raise ShmbusError(f"unknown group {group!r}")
            tps = set(g.offsets)
            for member in g.members.values():
                for topic in member.topics:
                    if topic in self.registry.topics:
                        tps.update(TopicPartition(topic, p)
                                   for p in range(self.registry.topics[topic].info.partitions))
            ends = {topic: self._ends(topic) for topic in {tp.topic for tp in tps}}
            partitions = []
            for tp in sorted(tps):
                committed = g.offsets.get(tp)
                end = (ends[tp.topic] or {}).get(tp.partition, (None, None))[1]
                holder = g.holder(tp)
                partitions.append({
                    "topic": tp.topic, "partition": tp.partition, "committed": committed,
                    "end_offset": end,
                    "lag": end - committed if end is not None and committed is not None else None,
                    "member_id": holder.member_id if holder else None,
                    "pid": holder.pid if holder else None,
                })
            members = []
            for member in g.members.values():
                idle = self.page.idle_seconds(member.slot, member.token)
                members.append({"member_id": member.member_id, "pid": member.pid, "topics": member.topics,
                                "generation": member.generation,
                                "assignment": [list(tp) for tp in sorted(member.holdings)],
                                "idle_ms": None if idle is None else round(idle * 1000)})
            return {"group": g.name, "state": g.state(), "generation": g.generation,
                    "strategy": g.strategy if g.members else None,
                    "sticky": g.sticky if g.members else None,
                    "members": members, "partitions": partitions, "error": None}

    def op_reset_group_offsets(self, connection, group, to, offset=None, topics=None, execute=False):
        if to not in ("earliest", "latest", "offset"):
            raise ValueError(f"reset to must be 'earliest', 'latest' or 'offset', got {to!r}")
        if to == "offset":
            _checks.offset(offset)
        if topics is not None and (not isinstance(topics, list) or not all(isinstance(t, str) for t in topics)):
            raise TypeError("topics must be a list of topic names, or null")
        if not isinstance(execute, bool):
            raise TypeError(f"execute must be true or false, got {execute!r}")
        validate_name(group, "group")
        with self.lock:
            self._check_open()
            g = self._group(group)
            if topics is None:
                if g is None or not g.offsets:
                    raise ShmbusError(f"group {group!r} has no committed offsets: name the topics to reset")
                topics = sorted({tp.topic for tp in g.offsets})
            if execute and g is not None and g.members:
                raise ShmbusError(f"group {group!r} has {len(g.members)} live member(s): "
                                  f"stop them before resetting its offsets")
            plan = []
            for topic in topics:
                self.registry.get(topic)
                for p, (earliest, end) in sorted(self._ends(topic).items()):
                    tp = TopicPartition(topic, p)
                    new = {"earliest": earliest, "latest": end}.get(to)
                    if new is None:
                        new = min(max(offset, earliest), end)  # Kafka clamps to what exists
                    current = g.offsets.get(tp) if g is not None else None
                    plan.append({"topic": topic, "partition": p, "current": current, "new": new})
            if execute:
                g = self._group(group, create=True)
                for row in plan:
                    g.offsets[TopicPartition(row["topic"], row["partition"])] = row["new"]
                self._save(g)
                logger.info(f"group {group}: offsets reset to {to} for {', '.join(topics)}")
            return {"group": group, "executed": bool(execute), "members": len(g.members) if g else 0,
                    "partitions": plan}

    def op_delete_group(self, connection, group):
        with self.lock:
            self._check_open()
            validate_name(group, "group")
            g = self.groups.get(group)  # a broken group too: deleting it is the way out
            if g is None:
                raise ShmbusError(f"unknown group {group!r}")
            if g.members:
                raise ShmbusError(f"group {group!r} has {len(g.members)} live member(s): stop them first")
            del self.groups[group]
            shutil.rmtree(os.path.join(self.groups_dir, group), ignore_errors=True)
            logger.info(f"deleted group {group}")
        return None
