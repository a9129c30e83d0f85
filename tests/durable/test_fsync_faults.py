"""flush() means fsynced: it returns only after the fsync of the records' segment has
run, and it fails -- never succeeds -- while that fsync fails. The supervisor is a real
one whose fsyncs the test holds or fails (buskit/faulty_supervisor.py)."""
import os
import subprocess
import sys
import threading

import pytest

import shmbus

import buskit

pytestmark = pytest.mark.timeout(90)
SCRIPT = os.path.join(os.path.dirname(buskit.__file__), "faulty_supervisor.py")


@pytest.fixture
def faulty_bus(bus_paths, tmp_path):
    control = tmp_path / "fsync-control"
    control.mkdir()
    log = open(tmp_path / "supervisor.stderr", "wb")
    supervisor = subprocess.Popen([sys.executable, SCRIPT, "serve", bus_paths.bus, bus_paths.data_dir, str(control)],
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    log.close()

    def connect():
        try:
            return shmbus.connect(bus_paths.bus, bus_paths.data_dir, autostart=False)
        except shmbus.SupervisorUnavailable:
            return None
    bus = buskit.wait_until(connect, 20)
    assert bus, open(tmp_path / "supervisor.stderr").read()
    try:
        yield bus, control
    finally:
        for name in ("block", "fail"):
            (control / name).unlink(missing_ok=True)
        bus.stop_supervisor()
        bus.close()
        supervisor.wait(30)


def test_flush_waits_for_the_fsync_itself(faulty_bus):
    bus, control = faulty_bus
    bus.create_topic("d", ring_bytes=1 << 20)
    with bus.producer() as p:
        (control / "block").touch()
        for i in range(100):
            p.send("d", b"%d" % i)
        done = []
        flusher = threading.Thread(target=lambda: done.append(p.flush(timeout=60) or "flushed"))
        flusher.start()
        # The archiver reached the fsync and is held there: flush must still be waiting.
        assert buskit.wait_until(lambda: (control / "blocked").exists(), 20), "no fsync was attempted"
        flusher.join(0.5)
        assert not done, "flush() returned while the fsync was still held"
        (control / "block").unlink()
        flusher.join(30)
        assert done == ["flushed"]
    with bus.consumer("d", auto_offset_reset="earliest") as c:
        assert [m.value for m in buskit.read_exact(c, 100)] == [b"%d" % i for i in range(100)]


def test_flush_fails_while_the_fsync_fails_and_succeeds_once_it_works(faulty_bus):
    bus, control = faulty_bus
    bus.create_topic("d", ring_bytes=1 << 20)
    with bus.producer() as p:
        p.send("d", b"before")
        p.flush(timeout=20)
        (control / "fail").touch()
        p.send("d", b"during")
        with pytest.raises(shmbus.Timeout, match="not fsynced") as failed:
            p.flush(timeout=2)
        assert "archiv" in str(failed.value), str(failed.value)   # it says the archiver is failing
        (control / "fail").unlink()
        p.flush(timeout=30)   # archiving resumes, and the record it owed is now on disk
    described = bus.describe_topic("d")
    assert described, described
    with bus.consumer("d", auto_offset_reset="earliest") as c:
        assert [m.value for m in buskit.read_exact(c, 2)] == [b"before", b"during"]
