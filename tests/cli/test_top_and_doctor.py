"""shmbus top under a pseudo-terminal (pexpect), and shmbus doctor on a healthy bus,
on the leftovers of a SIGKILLed supervisor, and on a Docker-sized /dev/shm."""
import os
import shutil
import signal
import subprocess
import sys
import time

import pexpect
import pytest

import shmbus

import buskit

pytestmark = pytest.mark.timeout(120)


def spawn_top(paths, rows, cols, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("SHMBUS_BUS", "SHMBUS_DATA_DIR")}
    env["TERM"] = "xterm"
    return pexpect.spawn(sys.executable, ["-m", "shmbus", "top", "--interval", "0.3", *args,
                                          "--bus", paths.bus, "--data-dir", paths.data_dir],
                         dimensions=(rows, cols), env=env, timeout=20)


def screen_lines(child, marker, timeout=20):
    """What a refresh shows after marker, up to the next frame's header."""
    child.expect(marker, timeout=timeout)
    child.expect("Ctrl-C quits", timeout=timeout)   # the next frame's header: the previous one is whole
    return child.before.decode(errors="replace")


def test_top_shows_partitions_groups_and_lag_sized_to_the_terminal(bus, bus_paths):
    bus.create_topic("imu", partitions=2, ring_bytes=64 << 10, durable=False)
    bus.create_topic("wide", partitions=12, ring_bytes=64 << 10, durable=False)
    with bus.producer() as p:
        for i in range(40):
            p.send("imu", b"x", partition=i % 2)
    with bus.consumer("imu", group="dash", auto_offset_reset="earliest") as c:
        got = 0
        while got < 30:
            got += len(c.poll_many(30 - got, timeout=5))
        c.commit()
        child = spawn_top(bus_paths, 40, 160)
        try:
            child.expect_exact(bus_paths.bus)   # the bus name in the header, then its data dir
            child.expect_exact(bus_paths.data_dir)
            text = screen_lines(child, "groups")
            assert "imu" in text and "dash" in text and "LAG" in text and "MEMBERS" in text
            assert str(os.getpid()) in text, "the member holding the partitions"
            assert time.strftime("%Y-%m-%d") in text
            with bus.producer() as p:   # a rate shows up at the next refresh
                for i in range(50):
                    p.send("imu", b"y", partition=0)
            child.expect(r"records/s")
            child.sendintr()
            child.expect(pexpect.EOF)
            child.close()
            assert child.exitstatus == 0, "Ctrl-C quits cleanly"
        finally:
            if child.isalive():
                child.terminate(force=True)
    # A small terminal: 14 partitions do not fit in 12 rows; the frame says what it left out.
    child = spawn_top(bus_paths, 12, 100)
    try:
        child.expect_exact("more partition(s), the quietest")
        child.sendintr()
        child.expect(pexpect.EOF)
    finally:
        if child.isalive():
            child.terminate(force=True)
    # Off a terminal: frames one after another, as top -b.
    done = buskit.run_cli(bus_paths, "top", "-n", "2", "--interval", "0.1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(b"shmbus top  bus " + bus_paths.bus.encode()) == 2


def test_doctor_on_a_healthy_bus_and_after_a_sigkilled_supervisor(bus, bus_paths, tmp_path):
    bus.create_topic("imu", partitions=2, ring_bytes=64 << 10)
    done = buskit.run_cli(bus_paths, "doctor")
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert "supervisor pid" in out and "answers" in out and "/dev/shm:" in out
    assert "FAIL" not in out

    # Another bus whose supervisor is SIGKILLed: its rings stay in /dev/shm, used by nobody.
    dead = buskit.new_paths(buskit.unique_bus_name(), tmp_path / "dead")
    try:
        with shmbus.connect(dead.bus, dead.data_dir) as other:
            other.create_topic("t", ring_bytes=64 << 10, durable=False)
            pid = other.call("ping")["pid"]
        os.kill(pid, signal.SIGKILL)
        buskit.wait_until(lambda: buskit.reap_if_child(pid) and buskit.supervisor_process(dead) is None, 10)
        assert buskit.shm_leftovers(dead)
        out = buskit.run_cli(bus_paths, "doctor").stdout.decode()
        assert f"of bus {dead.bus!r}" in out and "no process uses" in out, out
        assert f"rm /dev/shm/{dead.shm_prefix}*" in out
    finally:
        # What the doctor says to do: start it again (it adopts the rings), then stop it.
        with shmbus.connect(dead.bus, dead.data_dir):
            pass
        assert not buskit.leftovers_after_stop(dead)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1)")
def test_doctor_and_topics_create_on_a_docker_sized_dev_shm(tmp_path):
    """A private mount namespace with a 64 MiB /dev/shm, Docker's default: one default
    4-partition topic does not fit; doctor says so and topics create says how to fix it."""
    data = tmp_path / "data"
    name = buskit.unique_bus_name()
    script = (f"mount -t tmpfs -o size=64m tmpfs /dev/shm && "
              f"{sys.executable} -m shmbus doctor --bus {name} --data-dir {data}; echo doctor=$?; "
              f"{sys.executable} -m shmbus topics create imu --partitions 4 --bus {name} --data-dir {data}; "
              f"echo create=$?; {sys.executable} -m shmbus stop --bus {name} --data-dir {data}")
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, timeout=90, env=dict(os.environ, SHMBUS_BUS="", SHMBUS_DATA_DIR=""))
    out, err = done.stdout.decode(), done.stderr.decode()
    if "mount:" in err and "permission denied" in err.lower():
        pytest.skip("cannot mount a tmpfs here")
    assert "64 MiB" in out and "--shm-size" in out and "doctor=0" in out, out + err
    assert "create=1" in out, out + err
    line = [row for row in err.splitlines() if row.startswith("shmbus: error:")]
    assert line and "/dev/shm has no room for 4 ring(s) of 64 MiB" in line[0] and "--shm-size" in line[0], err
    assert not buskit.leftovers_after_stop(buskit.new_paths(name, data))
