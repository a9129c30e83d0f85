"""A producer dies mid-claim, then the supervisor restarts (cleanly, or after
being killed itself): the partition recovers, no offset is reused, and the
clients that were running carry on."""
import os
import signal
import time

import pytest

from shmbus import TopicPartition

from buskit import freeze, read_exact, supervisor_process, wait_gone, wait_until

pytestmark = pytest.mark.timeout(90)

TP = TopicPartition("t", 0)


def offsets_and_values(messages):
    return [(m.offset, m.value) for m in messages]


def test_producer_killed_mid_claim_then_clean_supervisor_restart(bus, bus_paths, make_topic, children):
    make_topic("t", ring_bytes=1 << 20)
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        for i in range(10):
            p.send("t", b"before-%d" % i)
        assert [m.offset for m in read_exact(c, 10)] == list(range(10))
        victim = children.start("victim", topic="t", tag="v", mode="claim")
        victim.wait_ready()
        victim.popen.wait(30)
        assert victim.popen.returncode == -signal.SIGKILL
        end_before = bus.describe_topic("t").partitions[0].end_offset

        old = supervisor_process(bus_paths)
        bus.stop_supervisor()
        assert wait_gone(old, 20)

        # The producer and the consumer from before the restart keep working:
        # the next send re-resolves the topic (starting a new supervisor).
        md = p.send("t", b"after")
        assert md.offset >= end_before, "an offset was reused after the restart"
        assert bus.describe_topic("t").partitions[0].end_offset == md.offset + 1
        m = c.poll(timeout=10)
        while m is not None and m.value != b"after":
            assert m.offset < md.offset
            m = c.poll(timeout=10)
        assert m is not None and m.offset == md.offset


def test_producer_killed_mid_claim_while_supervisor_is_down_then_restarted(bus, bus_paths, make_topic, children):
    make_topic("t", ring_bytes=1 << 20)
    supervisor = supervisor_process(bus_paths)
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        c.position(TP)
        for i in range(10):
            p.send("t", b"before-%d" % i)
        arm_file = os.path.join(children.workdir, "arm")
        victim = children.start("reserver_signals_itself", topic="t", tag="v", size=16 << 10, before=10,
                                signal="SIGKILL", arm_file=arm_file)
        victim.wait_ready()
        # Freeze the supervisor so its reaper cannot finish the dead claim,
        # then let the victim die inside a claim, then kill the supervisor.
        freeze(supervisor.pid)
        got = []
        try:
            with open(arm_file, "w"):
                pass
            deadline = time.monotonic() + 30
            while victim.popen.poll() is None and time.monotonic() < deadline:
                got.extend(c.poll_many(1000, timeout=0.05))
            assert victim.popen.returncode == -signal.SIGKILL
        finally:
            os.kill(supervisor.pid, signal.SIGKILL)
            os.kill(supervisor.pid, signal.SIGCONT)
        assert wait_gone(supervisor, 20)

        # No supervisor: the surviving producer still appends (it breaks a lock
        # the dead one held, if it must).
        for i in range(10):
            p.send("t", b"during-%d" % i)
        # A new supervisor (started by a call that writes: reads never start one) adopts
        # the ring and finishes the dead claim.
        make_topic("u")
        assert "t" in bus.topics()
        for i in range(10):
            p.send("t", b"after-%d" % i)

        while not got or got[-1].value != b"after-9":
            batch = c.poll_many(1000, timeout=10)
            assert batch, f"consumer stuck after {got[-1].offset if got else None}"
            got.extend(batch)
        mine = [m.value for m in got if not m.value.startswith(b"v:")]
        assert mine == ([b"before-%d" % i for i in range(10)] + [b"during-%d" % i for i in range(10)]
                        + [b"after-%d" % i for i in range(10)])
        offsets = [m.offset for m in got]
        assert offsets == sorted(set(offsets)), "offsets repeated or went backwards"
        gaps = [(a, b) for a, b in zip(offsets, offsets[1:]) if b != a + 1]
        assert len(gaps) == 1, f"one dead claim, one gap where its unpublished records were: {gaps}"
        assert c.missed() == 0
        assert wait_until(lambda: bus.describe_topic("t").partitions[0].producers == 1, 5)


def test_a_ring_adopted_while_its_archiver_was_behind_keeps_every_record_and_offset(bus, bus_paths):
    """The archiver is held behind on purpose (its supervisor frozen) while records are
    acknowledged into a durable ring, then the supervisor is killed. The next one adopts
    the ring: the disk ends before the ring does, and the ring -- not the disk -- says
    where the partition ends: every record is kept and no offset is handed out twice."""
    bus.create_topic("a", ring_bytes=1 << 20)
    with bus.producer() as p:
        for i in range(100):
            p.send("a", b"archived-%d" % i)
        p.flush()   # 0..99 are on disk
        supervisor = supervisor_process(bus_paths)
        freeze(supervisor.pid)
        try:
            for i in range(100, 400):
                p.send("a", b"ring-only-%d" % i)   # acknowledged: in the ring, the archiver frozen
            partition = bus.rings.get("a")[1][0].stats()
            assert partition.next_offset == 400 and partition.archived < partition.tail
        finally:
            os.kill(supervisor.pid, signal.SIGKILL)
            os.kill(supervisor.pid, signal.SIGCONT)
        assert wait_gone(supervisor, 10)
        # The next send starts a supervisor, which adopts the ring where it ends.
        assert p.send("a", b"after").offset == 400, "an offset was handed out twice"
        p.flush()
    with bus.consumer("a", auto_offset_reset="earliest") as c:
        got = offsets_and_values(read_exact(c, 401))
    assert got == [(i, b"archived-%d" % i if i < 100 else b"ring-only-%d" % i) for i in range(400)] + [(400, b"after")]
