"""The rings a client has mapped, by topic: shared by one bus's producers and
consumers, resolved through the supervisor on first use, and re-resolved when a
topic is deleted and created again or a restarted supervisor made new rings."""
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
        self._retired: List[Ring] = []  # replaced rings: a reader may still use them until close

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
        still include `stale`, a ring the caller found deleted (if another thread
        already replaced it, the caller gets the new ones). TopicNotFound if the topic
        is gone."""
        with self._lock:
            current = self._topics.get(topic)
            if current is not None and (stale is None or stale not in current[1]):
                return current
            reply = self._call("topic", name=topic)
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
                self._retired.extend(current[1])
            return self._topics[topic]

    def close(self) -> None:
        with self._lock:
            for _, rings in self._topics.values():
                for ring in rings:
                    ring.close()
            self._topics.clear()
            for ring in self._retired:
                ring.close()
            self._retired.clear()
