"""The assignment strategies, as pure functions: range, roundrobin, sticky."""
import random

from shmbus import TopicPartition
from shmbus._supervisor.assignment import assign_range, assign_roundrobin, assign_sticky, compute_assignment


def tps(*pairs):
    return {TopicPartition(t, p) for t, p in pairs}


def check_partitioned(result, partitions, subscriptions):
    """Every partition of a subscribed topic has exactly one owner, who subscribes to it."""
    seen = []
    for member, owned in result.items():
        for tp in owned:
            assert tp.topic in subscriptions[member]
        seen.extend(owned)
    assert len(seen) == len(set(seen))
    subscribed = set().union(*subscriptions.values())
    assert set(seen) == {TopicPartition(t, p) for t, n in partitions.items() if t in subscribed for p in range(n)}


def test_range_gives_consecutive_ranges_first_members_get_the_extra():
    subs = {"a": {"t"}, "b": {"t"}, "c": {"t"}}
    result = assign_range(subs, {"t": 7})
    assert result == {"a": tps(("t", 0), ("t", 1), ("t", 2)), "b": tps(("t", 3), ("t", 4)),
                      "c": tps(("t", 5), ("t", 6))}


def test_range_is_per_topic_and_respects_subscriptions():
    subs = {"a": {"t", "u"}, "b": {"u"}}
    result = assign_range(subs, {"t": 2, "u": 2})
    assert result == {"a": tps(("t", 0), ("t", 1), ("u", 0)), "b": tps(("u", 1))}


def test_roundrobin_deals_partitions_in_turn():
    subs = {"a": {"t", "u"}, "b": {"t", "u"}}
    result = assign_roundrobin(subs, {"t": 3, "u": 2})
    assert result == {"a": tps(("t", 0), ("t", 2), ("u", 1)), "b": tps(("t", 1), ("u", 0))}


def test_roundrobin_skips_members_that_do_not_subscribe():
    subs = {"a": {"t"}, "b": {"u"}, "c": {"t"}}
    result = assign_roundrobin(subs, {"t": 4, "u": 1})
    check_partitioned(result, {"t": 4, "u": 1}, subs)
    assert result["b"] == tps(("u", 0))
    assert len(result["a"]) == len(result["c"]) == 2


def test_more_members_than_partitions_leaves_some_idle():
    subs = {m: {"t"} for m in "abcde"}
    for strategy in ("range", "roundrobin"):
        result = compute_assignment(strategy, False, subs, {"t": 3}, {})
        check_partitioned(result, {"t": 3}, subs)
        assert sorted(len(v) for v in result.values()) == [0, 0, 1, 1, 1]


def test_sticky_moves_only_what_balance_needs():
    partitions = {"t": 12}
    subs = {"a": {"t"}, "b": {"t"}, "c": {"t"}}
    before = assign_range(subs, partitions)
    # d joins: each of the three gives up exactly one partition, nothing else moves.
    subs4 = dict(subs, d={"t"})
    after = assign_sticky(subs4, partitions, before)
    check_partitioned(after, partitions, subs4)
    assert sorted(len(v) for v in after.values()) == [3, 3, 3, 3]
    for member in "abc":
        assert after[member] <= before[member]
    # b leaves: only b's partitions move.
    subs3 = {m: {"t"} for m in "acd"}
    later = assign_sticky(subs3, partitions, after)
    check_partitioned(later, partitions, subs3)
    for member in "acd":
        assert after[member] <= later[member]
    assert sorted(len(v) for v in later.values()) == [4, 4, 4]


def test_sticky_stays_balanced_and_complete_under_random_churn():
    rng = random.Random(7)
    partitions = {"t": 10, "u": 3}
    total = 13
    subs, previous = {}, {}
    for step in range(300):
        if subs and rng.random() < 0.45:
            subs.pop(rng.choice(sorted(subs)))
        else:
            subs[f"m{step}"] = {"t", "u"}
        if not subs:
            previous = {}
            continue
        result = compute_assignment("range", True, subs, partitions, previous)
        check_partitioned(result, partitions, subs)
        loads = [len(result[m]) for m in subs]
        assert max(loads) - min(loads) <= 1
        # Sticky: a member that stays keeps all it had, up to its fair share.
        fair = total // len(subs)
        for member in subs:
            had = previous.get(member, set())
            assert len(result[member] & had) >= min(len(had), fair)
        previous = result
