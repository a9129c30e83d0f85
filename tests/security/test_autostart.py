"""Item 15: autostart without storms. One client at a time starts a bus's supervisor
(the others wait for it, then connect); one that cannot start is not started again in
a loop; and `shmbus stop` tells the truth about a supervisor that holds the lock but
does not answer."""
import json
import os
import shutil
import signal
import time

import psutil
import pytest

import shmbus

import buskit

pytestmark = pytest.mark.timeout(90)


def log_since(paths, offset):
    with open(paths.log_file, errors="replace") as f:
        f.seek(offset)
        return f.read()


def reported_pid(child):
    try:
        with open(child.out_file + ".pid") as f:
            return json.load(f)["pid"]
    except (FileNotFoundError, ValueError):
        return None


def test_a_killed_supervisor_is_started_again_once_however_many_clients_notice(bus, bus_paths, children,
                                                                              tmp_path):
    stop_file = str(tmp_path / "stop")
    callers = [children.start("caller", stop_file=stop_file) for _ in range(6)]
    for caller in callers:
        caller.wait_ready()
    old = bus.call("ping")["pid"]
    assert buskit.wait_until(lambda: all(reported_pid(c) == old for c in callers), 20)
    log_offset = os.path.getsize(bus_paths.log_file)
    supervisor = psutil.Process(old)
    supervisor.kill()
    assert buskit.wait_gone(supervisor, 10)
    # Every caller notices and reconnects: to one new supervisor.
    assert buskit.wait_until(lambda: all(reported_pid(c) not in (None, old) for c in callers), 30)
    assert len({reported_pid(c) for c in callers}) == 1
    with open(stop_file, "w"):
        pass
    for caller in callers:
        result = caller.wait(30)
        assert result["calls"] > 0
    log = log_since(bus_paths, log_offset)
    assert log.count("starting (after a crash)") == 1, log
    assert "already runs" not in log, log


def test_a_supervisor_that_cannot_start_is_not_started_in_a_loop(bus_paths):
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        bus.create_topic("t", ring_bytes=64 << 10, durable=False)
        bus.stop_supervisor()
    log_offset = os.path.getsize(bus_paths.log_file)
    # Something a supervisor cannot start with (a bad topic.json only breaks its topic):
    # its topics directory replaced by a file.
    topics_dir = os.path.join(bus_paths.data_dir, "topics")
    shutil.rmtree(topics_dir)
    with open(topics_dir, "w") as f:
        f.write("not a directory")
    started = time.monotonic()
    with pytest.raises(shmbus.SupervisorUnavailable) as raised:
        shmbus.connect(bus_paths.bus, bus_paths.data_dir, timeout=15)
    assert time.monotonic() - started < 12
    message = str(raised.value)
    assert bus_paths.log_file in message and "topics" in message, message
    attempts = log_since(bus_paths, log_offset).count("shmbus: error:")
    assert 1 <= attempts <= 3, attempts


def test_stop_names_a_supervisor_that_holds_the_lock_but_does_not_answer(bus, bus_paths):
    pid = bus.call("ping")["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        assert buskit.wait_until(lambda: psutil.Process(pid).status() == psutil.STATUS_STOPPED, 10)
        done = buskit.run_cli(bus_paths, "stop", timeout=60)
        stderr = done.stderr.decode()
        assert done.returncode != 0, stderr
        assert stderr.startswith("shmbus: error:") and stderr.count("\n") == 1, stderr
        assert f"pid {pid}, stopped" in stderr, stderr
    finally:
        os.kill(pid, signal.SIGCONT)
    bus.call("ping")
