"""Consumer groups, client side: a consumer's membership in its group (join, notice a
rebalance, sync, commit, leave).

The coordinator is the supervisor (_supervisor/groups.py). A member learns of a
rebalance by loading its group's generation word from the control page on each
poll (one C call that also stamps its poll time); only when the word moved does
it make a request. A rebalance is incremental and hand-off safe: the coordinator
tells a member which partitions to give up (`revoke`); the member commits (with
auto-commit), runs on_revoke, and reports them released; only then may their new
owner read them. So a partition never has two owners that may both commit, and
its new owner starts exactly at the last commit.
"""
import hashlib
import time
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Protocol, Set, Tuple, Union

from . import _checks, _liveness
from ._access import server_trust
from ._backend import ControlPage
from ._errors import CommitFailed, ShmbusError
from ._names import validate_name
from ._process import my_identity
from ._types import TopicPartition

if TYPE_CHECKING:
    from ._link import SupervisorLink


class Assignee(Protocol):
    """What a GroupMember needs from the consumer it belongs to (_consumer._GroupSide)."""

    def assignment(self) -> Set[TopicPartition]:
        """The partitions it reads now."""

    def take_partitions(self, starts: Mapping[TopicPartition, Optional[int]]) -> None:
        """Also read these partitions, each from its offset (None: auto_offset_reset)."""

    def drop_partitions(self, partitions: Set[TopicPartition]) -> None:
        """Stop reading these partitions."""

    def consumed_offsets(self) -> Dict[TopicPartition, int]:
        """What commit() commits: per partition, the offset after the last record handed out."""


STRATEGIES = ("range", "roundrobin")
PartitionsCallback = Any  # Callable[[Set[TopicPartition]], None] or None


def control_page_name(shm_prefix: str) -> str:
    """The /dev/shm name of a bus's control page. '@' never occurs in a topic
    name, so it never collides with a ring, yet it carries the bus's prefix."""
    name = f"{shm_prefix}@groups"
    if len(name) > 250:
        digest = hashlib.sha1(name.encode()).hexdigest()[:16]
        name = f"{shm_prefix[:200]}{digest}@groups"
    return "/" + name


def _tps(rows: List[List[Any]]) -> Set[TopicPartition]:
    return {TopicPartition(topic, partition) for topic, partition, *_ in rows}


class GroupMember:
    """One consumer's membership in a group. The Consumer owns it and calls
    on_poll() at every poll; all group policy lives here."""

    def __init__(self, link: "SupervisorLink", consumer: Assignee, group: str,
                 assignment_strategy: str = "range", sticky: bool = False, max_poll_interval: float = 300.0,
                 enable_auto_commit: bool = False, auto_commit_interval: float = 5.0):
        validate_name(group, "group")
        if assignment_strategy not in STRATEGIES:
            raise ValueError(f"assignment_strategy must be one of {STRATEGIES}, got {assignment_strategy!r}")
        if not isinstance(sticky, bool):
            raise TypeError("sticky must be True or False")
        for what, value in (("max_poll_interval", max_poll_interval), ("auto_commit_interval", auto_commit_interval)):
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{what} must be a positive number of seconds, got {value!r}")
        self.group = group
        self._link = link
        self._consumer = consumer
        self._strategy = assignment_strategy
        self._sticky = sticky
        self._max_poll_interval = float(max_poll_interval)
        self._auto_commit = bool(enable_auto_commit)
        self._auto_commit_interval = float(auto_commit_interval)
        self._next_auto_commit = time.monotonic() + self._auto_commit_interval
        self._last_committed: Dict[TopicPartition, int] = {}
        self.topics: List[str] = []
        self.on_assign: PartitionsCallback = None
        self.on_revoke: PartitionsCallback = None
        self.member_id: Optional[str] = None
        # The generation this member last synced; -1 never matches a word, so
        # the first poll after a join always syncs.
        self.generation = -1
        self._page: Optional[ControlPage] = None
        self._group_slot = self._member_slot = self._token = 0
        self._in_rebalance = False

    # ---- membership ----

    def subscribe(self, topics: List[str], on_assign: PartitionsCallback = None,
                  on_revoke: PartitionsCallback = None) -> None:
        self.topics = list(topics)
        self.on_assign = on_assign
        self.on_revoke = on_revoke
        self._join()
        self._rebalance()

    def _join(self) -> None:
        pid, start_ms = my_identity()
        reply = self._link.call(
            "group_join", group=self.group, member_id=self.member_id, pid=pid, start_ms=start_ms,
            liveness=_liveness.my_token(),
            topics=self.topics, strategy=self._strategy, sticky=self._sticky,
            max_poll_interval_ms=round(self._max_poll_interval * 1000))
        self.member_id = reply["member_id"]
        self._attach_page(reply["control"]["name"], reply["control"]["id"])
        self._group_slot = reply["group_slot"]
        self._member_slot = reply["member_slot"]
        self._token = reply["token"]
        self.generation = -1

    def _attach_page(self, name: str, page_id: int) -> None:
        if self._page is not None and self._page.name == name and self._page.id == page_id:
            return
        page = ControlPage.attach(name, server_trust(self._link.server_uid))
        if page.id != page_id:
            page.close()
            raise ShmbusError(f"control page {name} was replaced during the join; try again")
        if self._page is not None:
            self._page.close()
        self._page = page

    def on_poll(self) -> None:
        """Every poll: one C call reads the group's generation word (and stamps
        this member's poll time); a request is made only when it moved."""
        page = self._page
        assert page is not None, "on_poll before the join"
        if page.poll(self._group_slot, self._member_slot, self._token) != self.generation:
            self._rebalance()
        if self._auto_commit and time.monotonic() >= self._next_auto_commit:
            self._commit_quietly()

    def due(self) -> bool:
        """What on_poll would act on, without acting: the generation word moved (stamping
        the poll time, as on_poll does), or an auto-commit is due. For asyncio's consumer,
        which runs on_poll off the event loop only when it has something to do."""
        page = self._page
        if page is None:
            return False
        if page.poll(self._group_slot, self._member_slot, self._token) != self.generation:
            return True
        return self._auto_commit and time.monotonic() >= self._next_auto_commit

    def _rebalance(self) -> None:
        """Sync with the coordinator until this member holds exactly its share:
        give up what it must (commit, on_revoke, release), take what is free
        (at the committed offsets), then on_assign with what it gained."""
        if self._in_rebalance:  # a callback polled: let the outer rebalance finish
            return
        self._in_rebalance = True
        consumer = self._consumer
        gained: Set[TopicPartition] = set()
        released: List[TopicPartition] = []
        failure: Optional[Exception] = None
        try:
            while True:
                reply = self._link.call("group_sync", group=self.group, member_id=self.member_id,
                                       released=[list(tp) for tp in released])
                released = []
                if not reply["member"]:
                    # Removed (it died in the coordinator's eyes, stopped polling, or the
                    # supervisor restarted): the partitions are someone else's already,
                    # so no commit; tell the user they are gone and join again.
                    lost = consumer.assignment()
                    consumer.drop_partitions(lost)
                    gained -= lost
                    if lost:
                        failure = failure or self._call_back(self.on_revoke, lost)
                    self._last_committed = {}
                    self.member_id = None
                    self._join()
                    continue
                holdings = {TopicPartition(t, p): committed for t, p, committed in reply["assignment"]}
                mine = consumer.assignment()
                new = {tp: off for tp, off in holdings.items() if tp not in mine}
                if new:
                    consumer.take_partitions(new)
                    gained |= new.keys()
                stray = mine - holdings.keys()
                if stray:  # not ours by the coordinator's book: stop reading them
                    consumer.drop_partitions(stray)
                    failure = failure or self._call_back(self.on_revoke, stray)
                revoke = _tps(reply["revoke"])
                if revoke:
                    if self._auto_commit:
                        self._commit_quietly()
                    failure = failure or self._call_back(self.on_revoke, revoke)
                    consumer.drop_partitions(revoke)
                    gained -= revoke
                    released = sorted(revoke)
                    continue
                self.generation = reply["generation"]
                break
            if gained:
                failure = failure or self._call_back(self.on_assign, gained)
        finally:
            self._in_rebalance = False
        if failure is not None:
            raise failure

    @staticmethod
    def _call_back(callback: PartitionsCallback, partitions: Set[TopicPartition]) -> Optional[Exception]:
        """Run a user callback; its exception is raised once the rebalance is
        complete, so the membership is never left half-synced."""
        if callback is None:
            return None
        try:
            callback(set(partitions))
        except Exception as e:
            return e
        return None

    # ---- commits ----

    def commit(self, offsets: Optional[Mapping[Any, int]] = None) -> None:
        if self.member_id is None:
            raise CommitFailed(f"this consumer is not a member of group {self.group!r}")
        if offsets is None:
            offsets = self._consumer.consumed_offsets()
        else:
            offsets = self._checked_offsets(offsets)
        if not offsets:
            return
        try:
            self._link.call("group_commit", group=self.group, member_id=self.member_id,
                           generation=self.generation,
                           offsets=[[tp.topic, tp.partition, offset] for tp, offset in offsets.items()])
        except CommitFailed:
            # Something moved that the generation word may not show (say, the control
            # page was replaced): the next poll syncs with the coordinator and finds out.
            self.generation = -1
            raise
        self._last_committed.update(offsets)

    @staticmethod
    def _checked_offsets(offsets: Mapping[Any, int]) -> Dict[TopicPartition, int]:
        if not isinstance(offsets, dict):
            raise TypeError("offsets must be a dict of TopicPartition -> offset")
        checked = {}
        for tp, offset in offsets.items():
            tp = TopicPartition(*tp)
            checked[tp] = _checks.offset(offset, f"the offset of {tp}")
        return checked

    def _commit_quietly(self) -> None:
        """Auto-commit: what was handed out since the last commit. A refused
        commit is not an error here: the rebalance it signals is next."""
        self._next_auto_commit = time.monotonic() + self._auto_commit_interval
        offsets = self._consumer.consumed_offsets()
        changed = {tp: off for tp, off in offsets.items() if self._last_committed.get(tp) != off}
        if changed:
            try:
                self.commit(changed)
            except CommitFailed:
                pass

    def committed(self, tp: Union[TopicPartition, Tuple[str, int]]) -> Optional[int]:
        tp = TopicPartition(*tp)
        reply = self._link.call("group_committed", group=self.group, partitions=[list(tp)])
        return reply[0][2]

    # ---- lifetime ----

    def close(self) -> None:
        """Commit (with auto-commit) and leave, over the connection we joined on:
        if the supervisor is gone, so is our membership, and no new supervisor
        should be started just to say goodbye."""
        try:
            if self.member_id is not None:
                if self._auto_commit:
                    offsets = self._consumer.consumed_offsets()
                    changed = {tp: off for tp, off in offsets.items() if self._last_committed.get(tp) != off}
                    if changed:
                        self._link.call_if_connected(
                            "group_commit", group=self.group, member_id=self.member_id,
                            generation=self.generation, offsets=[[t, p, o] for (t, p), o in changed.items()])
                self._link.call_if_connected("group_leave", group=self.group, member_id=self.member_id)
        finally:
            self.member_id = None
            if self._page is not None:
                self._page.close()
                self._page = None
