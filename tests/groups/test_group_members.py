"""Consumer groups with real member processes: joining and leaving, a member
SIGKILLed mid-batch, a rebalance storm, and several groups on one topic."""
import os
import signal
import time

import pytest

import buskit
from groupkit import check_every_record_handled, describe, ends, produce, wait_committed, wait_file, wait_stable

pytestmark = pytest.mark.timeout(90)

ALL4 = {("t", p) for p in range(4)}




def test_three_members_join_and_leave(bus, make_topic, members):
    make_topic("t", partitions=4)
    a = members.start("g", ["t"])
    assert wait_stable(bus, "g", [a], ALL4)[a] == ALL4
    produce(bus, "t", 4, 30)

    b = members.start("g", ["t"])
    views = wait_stable(bus, "g", [a, b], ALL4)
    # range, in join order: the first member gets the first partitions.
    assert views[a] == {("t", 0), ("t", 1)} and views[b] == {("t", 2), ("t", 3)}
    produce(bus, "t", 4, 30, start=30)

    c = members.start("g", ["t"])
    views = wait_stable(bus, "g", [a, b, c], ALL4)
    assert views == {a: {("t", 0), ("t", 1)}, b: {("t", 2)}, c: {("t", 3)}}
    produce(bus, "t", 4, 30, start=60)

    c.stop()
    views = wait_stable(bus, "g", [a, b], ALL4)
    assert views == {a: {("t", 0), ("t", 1)}, b: {("t", 2), ("t", 3)}}
    a.stop()
    assert wait_stable(bus, "g", [b], ALL4)[b] == ALL4
    produce(bus, "t", 4, 30, start=90)
    end_offsets = ends(bus, "t")
    wait_committed(bus, "g", "t", end_offsets)
    b.stop()

    d = describe(bus, "g")
    assert d["state"] == "Empty" and d["members"] == []
    assert {p["partition"]: p["committed"] for p in d["partitions"]} == end_offsets
    assert all(p["lag"] == 0 for p in d["partitions"])
    handled = check_every_record_handled([a, b, c], end_offsets)
    # Nobody died and every hand-off was committed first: nothing was read twice.
    assert max(handled.values()) == 1
    # a was told about each change: all four, then two revoked when b came.
    events = a.state()["events"]
    assert events[0] == ["assign", [["t", p] for p in range(4)]]
    assert events[1] == ["revoke", [["t", 2], ["t", 3]]]


def test_member_sigkilled_mid_batch_loses_nothing(bus, make_topic, members):
    make_topic("t", partitions=4, ring_bytes=1 << 20)
    # The victim joins first, so range gives it partitions 0 and 1; it commits after
    # each batch of 20, and stops halfway through its third batch for the kill.
    victim = members.start("g", ["t"], max_records=20, pause_at_batch=3)
    wait_stable(bus, "g", [victim], ALL4)
    survivors = [members.start("g", ["t"]), members.start("g", ["t"])]
    views = wait_stable(bus, "g", [victim] + survivors, ALL4)
    victim_tps = views[victim]
    assert victim_tps == {("t", 0), ("t", 1)}
    produce(bus, "t", 4, 400)
    wait_file(victim.path("mid"))
    victim.kill()
    killed = time.monotonic()
    committed_at_kill = {p: o for _, p, o in bus.call("group_committed", group="g",
                                                       partitions=[list(tp) for tp in sorted(victim_tps)])}

    def victims_partitions_read_again():
        return any(p in (0, 1) for s in survivors for _, p, _, _ in s.records())
    assert buskit.wait_until(victims_partitions_read_again, 10.0, interval=0.005), "not reassigned in 10 s"
    print(f"\nSIGKILL to the victim's partitions being read again: {(time.monotonic() - killed) * 1000:.0f} ms")

    wait_stable(bus, "g", survivors, ALL4)
    end_offsets = ends(bus, "t")
    wait_committed(bus, "g", "t", end_offsets)
    for s in survivors:
        s.stop()

    handled = check_every_record_handled([victim] + survivors, end_offsets)
    victim_handled = {(p, o) for _, p, o, _ in victim.records()}
    for _, partition in victim_tps:
        # The survivors started exactly at the victim's last commit...
        resumed = min(o for s in survivors for _, p, o, _ in s.records() if p == partition)
        assert resumed == committed_at_kill[partition]
    # ...so what it handled after that commit (half a batch) was handled twice: at-least-once.
    redone = [k for k in victim_handled if k[1] >= committed_at_kill[k[0]]]
    assert redone and all(handled[k] == 2 for k in redone)


def test_a_dead_member_is_noticed_by_pid_when_its_connection_stays_open(bus, bus_paths, make_topic, members):
    make_topic("t", partitions=4)
    survivor = members.start("g", ["t"])
    wait_stable(bus, "g", [survivor], ALL4)
    victim = members.start("g", ["t"], fork_holder=True)
    wait_stable(bus, "g", [survivor, victim], ALL4)
    wait_file(victim.path("holder"))
    with open(victim.path("holder")) as f:
        holder = int(f.read())
    try:
        victim.kill()
        assert wait_stable(bus, "g", [survivor], ALL4, timeout=10)[survivor] == ALL4
        with open(bus_paths.log_file) as f:
            log = f.read()
        assert f"(pid {victim.pid}) died" in log
        assert f"(pid {victim.pid}) is gone" not in log
    finally:
        os.kill(holder, signal.SIGKILL)
    survivor.stop()


def test_rebalance_storm_converges_to_one_owner_per_partition(bus, make_topic, members):
    make_topic("t", partitions=6, ring_bytes=1 << 20)
    all6 = {("t", p) for p in range(6)}
    steady = [members.start("g", ["t"], max_records=20) for _ in range(3)]
    wait_stable(bus, "g", steady, all6)
    storms = [members.start("g", ["t"], churn_seconds=3.0, churn_width=3, seed=s) for s in range(3)]
    # Records keep coming through the storm; somebody must handle each one.
    deadline = time.monotonic() + 1.5
    sent = 0
    while time.monotonic() < deadline:
        produce(bus, "t", 6, 10, start=sent)
        sent += 10
        time.sleep(0.02)
    storms[0].kill()  # one storm process dies with its members mid-storm
    for storm in storms[1:]:
        assert storm.popen.wait(30) == 0, storm.stderr()
        assert storm.state()["joins"] > 5
    views = wait_stable(bus, "g", steady, all6, timeout=20)
    assert sorted(len(v) for v in views.values()) == [2, 2, 2]
    d = describe(bus, "g")
    assert d["generation"] > 20  # it really was a storm
    end_offsets = ends(bus, "t")
    wait_committed(bus, "g", "t", end_offsets)
    for member in steady:
        member.stop()
    check_every_record_handled(steady + storms, end_offsets)


def test_two_groups_and_a_groupless_consumer_each_get_everything(bus, make_topic, members):
    make_topic("t", partitions=3, ring_bytes=1 << 20)
    all3 = {("t", p) for p in range(3)}
    g1 = [members.start("g1", ["t"]), members.start("g1", ["t"])]
    g2 = [members.start("g2", ["t"], strategy="roundrobin", commit="auto")]
    wait_stable(bus, "g1", g1, all3)
    wait_stable(bus, "g2", g2, all3)
    groupless = bus.consumer("t", auto_offset_reset="earliest")
    for tp in groupless.assignment():
        groupless.position(tp)
    produce(bus, "t", 3, 300)
    end_offsets = ends(bus, "t")
    assert sum(end_offsets.values()) == 900
    read = []
    deadline = time.monotonic() + 20
    while len(read) < 900 and time.monotonic() < deadline:
        read.extend((m.partition, m.offset) for m in groupless.poll_many(1000, timeout=0.2))
    assert sorted(read) == sorted((p, o) for p, end in end_offsets.items() for o in range(end))
    wait_committed(bus, "g1", "t", end_offsets)
    wait_committed(bus, "g2", "t", end_offsets)
    for member in g1 + g2:
        member.stop()
    for group in (g1, g2):
        handled = check_every_record_handled(group, end_offsets)
        assert sum(handled.values()) == 900 and max(handled.values()) == 1
    assert {g["group"] for g in bus.call("groups")} == {"g1", "g2"}
