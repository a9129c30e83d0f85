"""Clients in pid namespaces of their own, as two containers sharing one /dev/shm
(`docker run --ipc=container:X`) are: their pids mean nothing here, or name some other
process. A live one must never be judged dead (its producer slot freed, its claim
aborted, its group membership dropped); a killed one must be noticed within seconds.
Liveness rests on an flock the kernel releases at death (shmbus/_liveness.py)."""
import os
import shutil
import signal
import sys
import time

import psutil
import pytest

import shmbus
from buskit import wait_until

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "groups"))
from groupkit import Members, describe  # noqa: E402

UNSHARE = shutil.which("unshare")
# Its own pid namespace (and /proc to match); the namespace dies with the launcher.
LAUNCHER = (UNSHARE, "--pid", "--fork", "--kill-child", "--mount-proc") if UNSHARE else ()

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not UNSHARE or os.geteuid() != 0, reason="needs unshare and root")]


def _inner_pid(child_pid):
    """The process unshare started in the new namespace, as this namespace sees it."""
    def found():
        try:
            kids = psutil.Process(child_pid).children()
        except psutil.NoSuchProcess:
            return None
        return kids[0].pid if kids else None
    return wait_until(found, 20)


def test_producer_in_another_pid_namespace_is_alive_until_killed(bus, bus_paths, make_topic, children,
                                                                  start_collector, tmp_path):
    make_topic("t", ring_bytes=16 << 20)
    stop_file = str(tmp_path / "stop")
    collector = start_collector("t")
    producer = children.start("survivor", launcher=LAUNCHER, topic="t", tag="n", size=[17, 300],
                              stop_file=stop_file)
    producer.wait_ready()
    inner = _inner_pid(producer.pid)
    assert inner
    # Several liveness passes (every 0.25 s): the producer keeps its slot and its
    # records keep coming with consecutive offsets (a reaped live claim leaves a gap).
    started_ns = time.time_ns()
    assert collector.wait_for(lambda c: c.latest.get("n", 0) > started_ns + 3_000_000_000, 30)
    log = open(bus_paths.log_file).read()
    assert "dead producer" not in log, log[-1500:]
    with collector._cond:
        offsets = [offset for _, offset, *_ in collector.records]
    assert offsets == list(range(len(offsets)))
    _, rings = bus.rings.get("t")
    slot_pids = [s.pid for s in rings[0].slots() if s.token]
    assert len(slot_pids) == 2   # the supervisor's and the producer's (its pid as it sees it)

    os.kill(inner, signal.SIGKILL)
    producer.popen.wait(20)
    # Killed: its slot is freed within a few liveness passes.
    assert wait_until(lambda: len([s for s in rings[0].slots()]) == 1, 10), rings[0].slots()
    assert "freed 1 dead producer slot" in open(bus_paths.log_file).read()


def test_group_member_in_another_pid_namespace_keeps_its_partitions(bus, bus_paths, make_topic, tmp_path):
    make_topic("g", partitions=2)
    members = Members(bus_paths, str(tmp_path / "members"))
    try:
        outside = members.start("grp", ["g"])
        inside = members.start("grp", ["g"], launcher=LAUNCHER)

        def both_hold_one():
            try:
                d = describe(bus, "grp")
            except shmbus.ShmbusError:   # nobody joined yet
                return None
            holders = {p["member_id"] for p in d["partitions"]}
            return d["state"] == "Stable" and len(holders) == 2 and None not in holders and d
        stable = wait_until(both_hold_one, 30)
        assert stable, describe(bus, "grp")
        generation = stable["generation"]
        time.sleep(2.0)   # eight liveness passes: a member judged dead would be removed
        d = describe(bus, "grp")
        assert d["generation"] == generation and len(d["members"]) == 2, d
        # Killed: removed, and the survivor takes both partitions.
        os.kill(_inner_pid(inside.pid), signal.SIGKILL)
        inside.popen.wait(20)

        def survivor_holds_all():
            d = describe(bus, "grp")
            return len(d["members"]) == 1 and all(p["member_id"] == d["members"][0]["member_id"]
                                                  for p in d["partitions"])
        assert wait_until(survivor_holds_all, 20), describe(bus, "grp")
        outside.stop()
    finally:
        members.kill_all()
