"""A producer frozen (SIGSTOP) in the middle of a record must not stall its partition
for more than about the unblock timeout, and when it runs again its late copy must
land on nobody's record: its claim is revoked -- it gets ClaimRevoked for that record
--, the partition goes on in a new ring at the next offset, and every other record,
from every producer, arrives intact, once, in order, in the ring and on disk."""
import os
import signal
import time

import psutil
import pytest

import buskit
import shmbus
from shmbus._backend import SLOT_CLAIMED

from buskit import wait_until

STALL_SECONDS = 4.0   # frozen this long: well past the 1 s unblock timeout


def _frozen_mid_claim(bus, child, topic):
    """True once the child is stopped with its claim still open (SLOT_CLAIMED)."""
    try:
        if psutil.Process(child.pid).status() != psutil.STATUS_STOPPED:
            return False
    except psutil.NoSuchProcess:
        return False
    _, rings = bus.rings.get(topic)
    return any(s.pid == child.pid and s.state == SLOT_CLAIMED for s in rings[0].slots())


@pytest.mark.timeout(120)
def test_sigstop_mid_claim_revokes_it_and_the_partition_goes_on(bus, bus_paths, children, start_collector,
                                                               tmp_path):
    bus.create_topic("t", partitions=1, ring_bytes=16 << 20, durable=True)
    stop_file, arm_file = str(tmp_path / "stop"), str(tmp_path / "arm")
    collector = start_collector("t")
    staller = children.start("staller", topic="t", tag="z", size=2 << 20, arm_file=arm_file,
                             stop_file=stop_file)
    staller.wait_ready()
    survivor = children.start("survivor", topic="t", tag="s", size=[17, 300], stop_file=stop_file)
    survivor.wait_ready()

    # Freeze the staller inside a claim (it stops itself the instant it sees one open);
    # a stop that lands just after the claim closed is undone and tried again.
    for _ in range(20):
        open(arm_file, "w").close()
        if wait_until(lambda: _frozen_mid_claim(bus, staller, "t"), 10):
            break
        os.kill(staller.pid, signal.SIGCONT)
    else:
        pytest.fail("the staller never froze with a claim open")
    frozen_at_ns = time.time_ns()

    # The others go on: a survivor record stamped after the freeze arrives, and the
    # supervisor says what it did.
    assert collector.wait_for(lambda c: c.latest.get("s", 0) > frozen_at_ns + 2_000_000_000, 30), \
        "the partition stayed stalled behind the frozen producer"
    log = open(bus_paths.log_file).read()
    assert "revoked" in log and f"pid {staller.pid}" in log, log[-2000:]
    time.sleep(max(0.0, STALL_SECONDS - (time.time_ns() - frozen_at_ns) / 1e9))

    os.kill(staller.pid, signal.SIGCONT)
    # It learns its record was revoked, then sends more -- to the partition's new ring.
    assert collector.wait_for(lambda c: c.counts.get("z", 0) >= 3, 60)
    time.sleep(0.5)
    open(stop_file, "w").close()
    staller_out = staller.wait(60)
    survivor_out = survivor.wait(60)
    assert len(staller_out["revoked"]) == 1, staller_out["revoked"]
    assert "stalled" in staller_out["revoked"][0][1]
    revoked_seq = staller_out["revoked"][0][0]

    def check(reader):
        assert not reader.garbage, reader.garbage[:5]
        records = reader.records
        by_tag = {}
        for _partition, offset, tag, seq, _ts in records:
            by_tag.setdefault(tag, []).append((offset, seq))
        z_seqs = [seq for _, seq in sorted(by_tag["z"])]
        assert z_seqs == [s for s, _ in staller_out["sent"]], "staller records missing, doubled or reordered"
        assert revoked_seq not in z_seqs
        s_seqs = [seq for _, seq in sorted(by_tag["s"])]
        assert s_seqs == list(range(survivor_out["sent"])), "survivor records missing, doubled or reordered"
        offsets = sorted(offset for _, offset, *_ in records)
        assert len(offsets) == len(set(offsets))

    wait_until(lambda: collector.counts.get("s", 0) >= survivor_out["sent"], 30)
    collector.stop()
    check(collector)

    # And on disk, read back by a fresh consumer from the start, through the retired ring's
    # archive and the new ring's (every frame CRC-checked on the way).
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as b:
        replay = buskit.Collector(b, "t")
        replay.start()
        total = len(staller_out["sent"]) + survivor_out["sent"]
        assert replay.wait_for(lambda c: len(c.records) >= total, 60)
        replay.stop()
        check(replay)
