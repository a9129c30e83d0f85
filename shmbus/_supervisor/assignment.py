"""The partition assignors of consumer groups, as Kafka's: range, roundrobin and
sticky (which keeps what each member had as far as the balance allows). Pure
functions: the coordinator (groups.py) calls compute_assignment on every rebalance.

Each takes the members' subscriptions {member_id: set(topic)} in join order and the
partition counts {topic: n}, and returns {member_id: set(TopicPartition)}."""
from typing import Dict, List, Set

from .._types import TopicPartition

Subscriptions = Dict[str, Set[str]]
Assignment = Dict[str, Set[TopicPartition]]


def _subscribers(subscriptions: Subscriptions, topic: str) -> List[str]:
    return [member for member, topics in subscriptions.items() if topic in topics]


def assign_range(subscriptions: Subscriptions, partitions: Dict[str, int]) -> Assignment:
    """Kafka's RangeAssignor: per topic, consecutive ranges; the first members
    get one more when the partitions do not divide evenly."""
    result: Assignment = {member: set() for member in subscriptions}
    for topic in sorted(partitions):
        members = _subscribers(subscriptions, topic)
        if not members:
            continue
        per_member, extra = divmod(partitions[topic], len(members))
        start = 0
        for i, member in enumerate(members):
            count = per_member + (1 if i < extra else 0)
            result[member].update(TopicPartition(topic, p) for p in range(start, start + count))
            start += count
    return result


def assign_roundrobin(subscriptions: Subscriptions, partitions: Dict[str, int]) -> Assignment:
    """Kafka's RoundRobinAssignor: every partition of every topic in turn, to
    the next member in the circle that subscribes to its topic."""
    result: Assignment = {member: set() for member in subscriptions}
    members = list(subscriptions)
    turn = 0
    for topic in sorted(partitions):
        if not _subscribers(subscriptions, topic):
            continue
        for p in range(partitions[topic]):
            while topic not in subscriptions[members[turn % len(members)]]:
                turn += 1
            result[members[turn % len(members)]].add(TopicPartition(topic, p))
            turn += 1
    return result


def assign_sticky(subscriptions, partitions, previous):
    """Each member keeps what it had (if it still subscribes and the partition
    still exists); free partitions go to the least loaded members; then
    partitions move, one at a time, only from a member that has two more than
    another eligible one. Every move shrinks the sum of squared loads, so it ends."""
    result = {
        member: {tp for tp in previous.get(member, ())
                 if tp.topic in topics and tp.partition < partitions.get(tp.topic, 0)}
        for member, topics in subscriptions.items()
    }
    order = {member: i for i, member in enumerate(subscriptions)}
    owned = set().union(*result.values()) if result else set()
    for topic in sorted(partitions):
        members = _subscribers(subscriptions, topic)
        for p in range(partitions[topic]):
            tp = TopicPartition(topic, p)
            if members and tp not in owned:
                least = min(members, key=lambda m: (len(result[m]), order[m]))
                result[least].add(tp)
    eligible = {topic: _subscribers(subscriptions, topic) for topic in partitions}
    while True:
        moved = False
        for source in sorted(result, key=lambda m: (-len(result[m]), order[m])):
            for tp in sorted(result[source], reverse=True):
                target = min(eligible[tp.topic], key=lambda m: (len(result[m]), order[m]))
                if len(result[target]) < len(result[source]) - 1:
                    result[source].remove(tp)
                    result[target].add(tp)
                    moved = True
                    break
            if moved:
                break
        if not moved:
            return result


def compute_assignment(strategy, sticky, subscriptions, partitions, previous):
    if sticky and any(previous.get(member) for member in subscriptions):
        return assign_sticky(subscriptions, partitions, previous)
    if strategy == "roundrobin":
        return assign_roundrobin(subscriptions, partitions)
    return assign_range(subscriptions, partitions)


# ---- state ----
