"""The rings a client has mapped, by topic: shared by one bus's producers and
consumers, resolved through the supervisor on first use, and re-resolved when a
topic is deleted and created again, a restarted supervisor made new rings, or a
partition moved on from a ring a producer stalled in.

A ring that is replaced (or whose topic is deleted) stays mapped only while a writer
or reader still uses it: users `hold` a ring and `release` it, and the last release
of a replaced ring unmaps it. So a client that churns through topics, or through
thousands of consumers, maps only what it uses."""
import threading
from typing import Callable, Dict, List, Optional, Tuple

from ._access import server_trust
from ._backend import Ring
from ._errors import TopicNotFound
from ._types import TopicInfo

TopicRings = Tuple[TopicInfo, List[Ring]]


class RingTable:
    def __init__(self, bus_name: str, call: Callable[..., dict], server_uid: Callable[[], int]):
        self._bus_name = bus_name
        self._call = call   # a control request (SupervisorLink.call)
        self._server_uid = server_uid  # the supervisor's user: a ring must be its, and closed to "other"
        self._lock = threading.Lock()
        self._topics: Dict[str, TopicRings] = {}
        self._users: Dict[int, int] = {}        # id(ring) -> writers and readers holding it
        self._replaced: Dict[int, Ring] = {}    # id(ring) -> a ring no longer current, still held

    def get(self, topic: str) -> TopicRings:
        """(TopicInfo, rings) of a topic; TopicNotFound naming the topic and the bus."""
        entry = self._topics.get(topic)
        if entry is None:
            try:
                entry = self.refresh(topic)
            except TopicNotFound:
                raise TopicNotFound(f"unknown topic {topic!r} on bus {self._bus_name!r}") from None
        return entry

    def refresh(self, topic: str, stale: Optional[Ring] = None) -> TopicRings:
        """Load a topic's rings from the supervisor if they are not loaded, or if they
        still include `stale`, a ring the caller found deleted or retired (if another
        thread already replaced it, the caller gets the new ones). TopicNotFound if the
        topic is gone: then its rings are let go."""
        with self._lock:
            current = self._topics.get(topic)
            if current is not None and (stale is None or stale not in current[1]):
                return current
            try:
                reply = self._call("topic", name=topic)
            except TopicNotFound:
                if current is not None:
                    del self._topics[topic]
                    self._replace(current[1])
                raise
            info = TopicInfo(**reply["info"])
            trust = server_trust(self._server_uid())
            rings: List[Ring] = []
            try:
                for name in reply["rings"]:
                    rings.append(Ring.attach(name, trust))
            except BaseException:
                for ring in rings:
                    ring.close()
                raise
            self._topics[topic] = (info, rings)
            if current is not None:
                self._replace(current[1])
            return self._topics[topic]

    def forget(self, topic: str) -> None:
        """The topic was deleted: let its rings go (now, or at their last release)."""
        with self._lock:
            current = self._topics.pop(topic, None)
            if current is not None:
                self._replace(current[1])

    def _replace(self, rings: List[Ring]) -> None:
        """These rings are no longer current: unmap them now, or at their last release."""
        for ring in rings:
            if self._users.get(id(ring)):
                self._replaced[id(ring)] = ring
            else:
                ring.close()

    def hold(self, ring: Ring) -> None:
        """A writer or reader starts using the ring."""
        with self._lock:
            self._users[id(ring)] = self._users.get(id(ring), 0) + 1

    def release(self, ring: Ring) -> None:
        """A writer or reader is done with the ring."""
        with self._lock:
            left = self._users.get(id(ring), 0) - 1
            if left > 0:
                self._users[id(ring)] = left
                return
            self._users.pop(id(ring), None)
            replaced = self._replaced.pop(id(ring), None)
            if replaced is not None:
                replaced.close()

    def mapped(self) -> int:
        """How many rings this table has mapped (current and replaced-but-held)."""
        with self._lock:
            return sum(len(rings) for _, rings in self._topics.values()) + len(self._replaced)

    def close(self) -> None:
        with self._lock:
            for _, rings in self._topics.values():
                for ring in rings:
                    ring.close()
            self._topics.clear()
            for ring in self._replaced.values():
                ring.close()
            self._replaced.clear()
            self._users.clear()
