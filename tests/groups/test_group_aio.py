"""A group of shmbus.aio members (real processes, one on uvloop): one is SIGKILLed in the
middle of a batch; its partitions move to the survivors, which resume at its last
commit -- at-least-once, nothing skipped -- while their event loops keep ticking."""
import time

import buskit
from groupkit import check_every_record_handled, ends, produce, wait_committed, wait_file, wait_stable

ALL4 = {("t", p) for p in range(4)}


def test_async_member_sigkilled_mid_batch_loses_nothing(bus, make_topic, members):
    make_topic("t", partitions=4, ring_bytes=1 << 20)
    victim = members.start("g", ["t"], aio=True, max_records=20, pause_at_batch=3)
    wait_stable(bus, "g", [victim], ALL4)
    survivors = [members.start("g", ["t"], aio=True), members.start("g", ["t"], aio=True, loop="uvloop")]
    views = wait_stable(bus, "g", [victim] + survivors, ALL4)
    victim_tps = views[victim]
    produce(bus, "t", 4, 400)
    wait_file(victim.path("mid"))
    victim.kill()
    committed_at_kill = {tp: p.committed for tp, p in bus.describe_group("g").partitions.items()}

    def victims_partitions_read_again():
        return any(("t", p) in victim_tps for s in survivors for _, p, _, _ in s.records())
    assert buskit.wait_until(victims_partitions_read_again, 10.0, interval=0.005), "not reassigned in 10 s"
    wait_stable(bus, "g", survivors, ALL4)
    end_offsets = ends(bus, "t")
    wait_committed(bus, "g", "t", end_offsets)
    ticks_before = [s.state()["ticks"] for s in survivors]
    time.sleep(0.6)   # idle members: their loops still tick while they wait
    for s in survivors:
        assert buskit.wait_until(lambda: s.state()["ticks"] > ticks_before[survivors.index(s)], 5)
    info = bus.describe_group("g")
    assert {m.pid for m in info.members} == {s.pid for s in survivors}, info
    assert all(p.lag == 0 for p in info.partitions.values()), info.partitions
    for s in survivors:
        events = s.state()["events"]
        assert events[0][0] == "assign", events   # the coroutine callbacks ran
        s.stop()
    handled = check_every_record_handled([victim] + survivors, end_offsets)
    for topic, partition in victim_tps:
        resumed = min(o for s in survivors for _, p, o, _ in s.records() if p == partition)
        assert resumed == committed_at_kill[(topic, partition)], (partition, resumed, committed_at_kill)
    redone = [k for k in {(p, o) for _, p, o, _ in victim.records()}
              if k[1] >= committed_at_kill[("t", k[0])]]
    assert redone, (victim_tps, committed_at_kill)
    assert all(handled[k] == 2 for k in redone), {k: handled[k] for k in redone if handled[k] != 2}
