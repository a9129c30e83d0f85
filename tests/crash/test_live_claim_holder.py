"""A producer that is alive but stopped (SIGSTOP) inside a claim, for less than the
unblock timeout, is waited for, never reaped: while others are blocked behind it,
nobody aborts its record or frees its slot, and once it runs again its record arrives
intact, at its offset, with everyone else's after it. (Reaping is for the dead; the
stalled are the unblocker's, after its timeout -- here a long one, so only a wrong
reap could touch the claim.)"""
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

import buskit
import shmbus
from shmbus._backend import SLOT_CLAIMED

pytestmark = pytest.mark.timeout(120)


def _frozen_mid_claim(ring, pid):
    try:
        if psutil.Process(pid).status() != psutil.STATUS_STOPPED:
            return False
    except psutil.NoSuchProcess:
        return False
    return any(s.pid == pid and s.state == SLOT_CLAIMED for s in ring.slots())


def test_a_stopped_live_claim_holder_is_waited_for_not_reaped(bus_paths, children, tmp_path):
    # A supervisor whose unblocker waits a minute: within the test, only a (wrong) reap
    # by a blocked producer could end the stopped producer's claim.
    log = open(tmp_path / "serve.stderr", "wb")
    serve = subprocess.Popen([sys.executable, "-m", "shmbus", "serve", "--bus", bus_paths.bus, "--data-dir",
                              bus_paths.data_dir, "--unblock-timeout", "60"], stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL)
    log.close()
    bus = buskit.wait_until(lambda: _connect(bus_paths), 20)
    assert bus, open(tmp_path / "serve.stderr").read()
    staller = None
    try:
        bus.create_topic("t", ring_bytes=1 << 20)   # durable: every record stays readable after
        staller = children.start("reserver_signals_itself", topic="t", tag="z", size=300 << 10, signal="SIGSTOP")
        staller.wait_ready()
        _, (ring,) = bus.rings.get("t")
        assert buskit.wait_until(lambda: _frozen_mid_claim(ring, staller.pid), 10), \
            "the reserver never froze with its claim open"
        (held,) = [s for s in ring.slots() if s.pid == staller.pid]

        # Others send behind it: the ring fills up to the unfinished claim and they block,
        # looking for dead producers to reap every wait slice.
        sent, failed = [], []

        def send_behind():
            with bus.producer(timeout=60) as p:
                try:
                    for i in range(200):
                        sent.append(p.send("t", buskit.make_value("o", i, 20 << 10), partition=0).offset)
                except Exception as e:   # noqa: BLE001 -- reported below
                    failed.append(repr(e))
        sender = threading.Thread(target=send_behind)
        sender.start()
        assert buskit.wait_until(lambda: _stuck(sent), 30), "the sender never blocked behind the claim"
        time.sleep(1.0)   # five times the producers' reap interval: a wrong reap would have run
        (still,) = [s for s in ring.slots() if s.slot == held.slot]
        assert (still.pid, still.state, still.claim_offset) == (staller.pid, SLOT_CLAIMED, held.claim_offset), \
            "the live producer's slot and claim were taken from it"
        os.kill(staller.pid, signal.SIGCONT)
        sender.join(60)
        assert not failed, failed
        out = staller.wait(60)
        assert not out["revoked"], out["revoked"]
        assert out["offset"] == held.claim_offset
        with bus.consumer("t", auto_offset_reset="earliest") as c:
            c.seek(shmbus.TopicPartition("t", 0), held.claim_offset)
            got = []
            while not got or got[-1].offset < max(sent):
                got.extend(c.poll_many(1000, timeout=5) or pytest.fail("records missing"))
        first = got[0]
        assert first.offset == held.claim_offset and buskit.check_value(first.value)[0] == "z", \
            "the stopped producer's record arrives intact at its offset (no aborted frame)"
        got = [m for m in got if m.offset <= max(sent)]
        assert [m.offset for m in got] == list(range(held.claim_offset, max(sent) + 1)), "no gap: nothing aborted"
        others = [buskit.check_value(m.value) for m in got if m.value.startswith(b"o:")]
        assert others == [("o", i) for i in range(200)], "everyone else's records, intact, in order"
    finally:
        if staller is not None and staller.alive():
            os.kill(staller.pid, signal.SIGCONT)
        bus.stop_supervisor()
        bus.close()
        serve.wait(30)


def _connect(paths):
    try:
        return shmbus.connect(paths.bus, paths.data_dir, autostart=False)
    except shmbus.SupervisorUnavailable:
        return None


def _stuck(sent, quiet=0.3):
    """True once the sender has sent something and then nothing for `quiet` seconds."""
    before = len(sent)
    time.sleep(quiet)
    return before > 0 and len(sent) == before
