"""Commits: what commit() commits, auto-commit, stale commits refused, and
committed offsets surviving a supervisor SIGKILL and restart."""
import json
import os
import time

import pytest

import buskit
from buskit import read_exact
import shmbus
from shmbus import TopicPartition
from shmbus._group import control_page_name
from groupkit import produce

pytestmark = pytest.mark.timeout(60)

T0, T1 = TopicPartition("t", 0), TopicPartition("t", 1)


def poll_until(consumer, predicate, timeout=10.0):
    """Poll until predicate() holds; returns the records those polls handed out."""
    messages = []
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        messages.extend(consumer.poll_many(100, timeout=0.05))
    return messages


def test_commit_counts_only_records_handed_out(bus, make_topic):
    make_topic("t", partitions=1)
    produce(bus, "t", 1, 100)
    with bus.consumer("t", group="g", auto_offset_reset="earliest") as c:
        assert c.committed(T0) is None
        it = iter(c)
        first = [next(it) for _ in range(3)]  # iteration buffered many more than 3
        assert [m.offset for m in first] == [0, 1, 2]
        c.commit()
        assert c.committed(T0) == 3
        assert c.position(T0) == 3
        c.commit({T0: 42})
        assert c.committed(T0) == 42
        with pytest.raises(ValueError):
            c.commit({T0: -1})
    # A new member of the group starts where the group committed.
    with bus.consumer("t", group="g", auto_offset_reset="earliest") as c:
        assert read_exact(c, 1)[0].offset == 42
    with bus.consumer("t", auto_offset_reset="earliest") as groupless:
        with pytest.raises(shmbus.ShmbusError):
            groupless.commit()


def test_auto_commit_on_interval_before_revoke_and_at_close(bus, bus_paths, make_topic):
    make_topic("t", partitions=2)
    produce(bus, "t", 2, 10)
    c1 = bus.consumer("t", group="g", auto_offset_reset="earliest", enable_auto_commit=True,
                      auto_commit_interval=0.1)
    read_exact(c1, 8)
    time.sleep(0.15)
    # Auto-commit happens in poll, for what earlier polls handed out.
    more = c1.poll_many(12, timeout=1.0)
    assert sum(c1.committed(tp) or 0 for tp in (T0, T1)) == 8
    read_exact(c1, 12 - len(more))

    # A second member joins: c1 must give up a partition, and commits it first, so the
    # new owner starts right after the last record c1 handed out: nothing read twice.
    other = shmbus.connect(bus_paths.bus, bus_paths.data_dir, autostart=False)
    try:
        c2 = other.consumer("t", group="g", auto_offset_reset="earliest", enable_auto_commit=True,
                            auto_commit_interval=60)
        assert c2.assignment() == set()  # c1 still holds both until it lets go
        assert poll_until(c1, lambda: c1.assignment() == {T0}) == []
        assert poll_until(c2, lambda: c2.assignment() == {T1}) == []
        assert c2.committed(T1) == 10
        assert c2.poll_many(100, timeout=0.2) == []
        produce(bus, "t", 2, 1, start=10)
        assert [(m.partition, m.offset) for m in read_exact(c2, 1)] == [(1, 10)]
        c2.close()  # and at close
        assert c1.committed(T1) == 11
    finally:
        other.close()
    c1.close()


def test_stale_commits_are_refused(bus, bus_paths, make_topic):
    make_topic("t", partitions=2)
    produce(bus, "t", 2, 10)
    lost = []
    slow = bus.consumer("t", group="g", auto_offset_reset="earliest", max_poll_interval=0.5,
                        on_revoke=lost.append)
    assert slow.assignment() == {T0, T1}
    read_exact(slow, 20)
    other = shmbus.connect(bus_paths.bus, bus_paths.data_dir, autostart=False)
    try:
        fast = other.consumer("t", group="g", auto_offset_reset="earliest", max_poll_interval=30)
        # slow stops polling: after max_poll_interval the group drops it and fast gets all.
        again = poll_until(fast, lambda: fast.assignment() == {T0, T1})
        with pytest.raises(shmbus.CommitFailed):
            slow.commit()
        # What slow handled but never committed is read again: at-least-once.
        again += read_exact(fast, 20 - len(again))
        assert sorted((m.partition, m.offset) for m in again) == \
            sorted((p, o) for p in (0, 1) for o in range(10))
        fast.commit()

        # A commit that carries an older generation than the member's is refused too.
        member = fast._member
        with pytest.raises(shmbus.CommitFailed):
            other.call("group_commit", group="g", member_id=member.member_id,
                       generation=member.generation - 1, offsets=[["t", 0, 1]])
        assert fast.committed(T0) == 10

        # slow polls again: it learns it lost everything, and joins again; fast gives
        # it a partition back the next time it polls.
        deadline = time.monotonic() + 10
        while len(slow.assignment()) != 1 or len(fast.assignment()) != 1:
            assert time.monotonic() < deadline, "the two members did not share the partitions"
            assert slow.poll_many(10, timeout=0.02) == [] and fast.poll_many(10, timeout=0.02) == []
        assert lost[0] == {T0, T1}

        # A member may commit only what it holds: the coordinator refuses the partition
        # slow holds, whatever the client sends (the request is made by hand here).
        (theirs,) = slow.assignment()
        before = fast.committed(theirs)
        member = fast._member
        with pytest.raises(shmbus.CommitFailed, match="not assigned"):
            other.call("group_commit", group="g", member_id=member.member_id, generation=member.generation,
                       offsets=[[theirs.topic, theirs.partition, 3]])
        assert fast.committed(theirs) == before
        fast.close()
    finally:
        other.close()
    slow.close()


def test_members_must_agree_on_the_strategy(bus, make_topic):
    make_topic("t", partitions=2)
    with bus.consumer("t", group="g", assignment_strategy="range"):
        with pytest.raises(shmbus.ShmbusError, match="range"):
            bus.consumer("t", group="g", assignment_strategy="roundrobin")
    with pytest.raises(shmbus.InvalidName):
        bus.consumer("t", group="no/slash")


def test_committed_offsets_survive_a_supervisor_sigkill(bus, bus_paths, make_topic):
    make_topic("t", partitions=2)
    produce(bus, "t", 2, 100)
    c = bus.consumer("t", group="g", auto_offset_reset="earliest")
    read_exact(c, 120)
    c.commit()
    committed = {tp: c.committed(tp) for tp in (T0, T1)}
    assert sum(committed.values()) == 120
    with open(os.path.join(bus_paths.data_dir, "groups", "g", "offsets.json")) as f:
        on_disk = json.load(f)["offsets"]["t"]
    assert {TopicPartition("t", int(p)): o for p, o in on_disk.items()} == committed

    supervisor = buskit.supervisor_process(bus_paths)
    supervisor.kill()
    assert buskit.wait_gone(supervisor, 10)
    page = control_page_name(bus_paths.shm_prefix)[1:]
    assert page in os.listdir("/dev/shm")  # a crash leaves the page for the next supervisor

    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as again:
        assert again.call("group_committed", group="g", partitions=[["t", 0], ["t", 1]]) == \
            [["t", 0, committed[T0]], ["t", 1, committed[T1]]]
        # The member that lived through the crash sees its generation word move (the new
        # supervisor adopted the page), joins again and goes on from the committed offsets.
        rest = read_exact(c, 80)
        assert sorted((m.partition, m.offset) for m in rest) == \
            sorted((p, o) for p, tp in enumerate((T0, T1)) for o in range(committed[tp], 100))
        c.commit()
        c.close()
        with again.consumer("t", group="g", auto_offset_reset="earliest") as d:
            assert d.poll_many(10, timeout=0.3) == []
            assert {tp: d.committed(tp) for tp in (T0, T1)} == {T0: 100, T1: 100}
    with open(bus_paths.log_file) as f:
        assert "adopted control page" in f.read()
