"""Permissions: private to the user by default; shared with one Unix group only when
asked (`shmbus serve --share-group`), and then remembered by later supervisors."""
import glob
import grp
import os
import stat
import subprocess
import sys

import pytest

import shmbus

import buskit


def mode_and_gid(path):
    st = os.stat(path)
    return stat.S_IMODE(st.st_mode), st.st_gid


def bus_files(paths):
    rings = [os.path.join("/dev/shm", n) for n in buskit.shm_leftovers(paths)]
    segments = glob.glob(os.path.join(paths.data_dir, "topics", "t", "0", "*.log"))
    return rings, segments


def test_a_bus_is_private_to_its_user_by_default(bus, bus_paths):
    bus.create_topic("t", ring_bytes=64 << 10)
    with bus.producer() as p:
        p.send("t", b"x")
        p.flush()
    rings, segments = bus_files(bus_paths)
    assert rings and segments
    assert mode_and_gid(bus_paths.data_dir)[0] == 0o700
    assert mode_and_gid(bus_paths.socket_path)[0] == 0o600
    for path in rings + segments:
        assert mode_and_gid(path)[0] == 0o600, path


def test_share_group_opens_the_bus_to_one_group_and_is_remembered(bus_paths):
    try:
        group = grp.getgrnam("users")
    except KeyError:
        pytest.skip("no 'users' group on this machine")
    serve = subprocess.Popen([sys.executable, "-m", "shmbus", "serve", "--share-group", "users",
                              "--bus", bus_paths.bus, "--data-dir", bus_paths.data_dir])
    try:
        assert buskit.wait_until(lambda: os.path.exists(bus_paths.socket_path), 20)
        with shmbus.connect(bus_paths.bus, bus_paths.data_dir, autostart=False) as bus:
            bus.create_topic("t", ring_bytes=64 << 10)
            with bus.producer() as p:
                p.send("t", b"x")
                p.flush()
            rings, segments = bus_files(bus_paths)
            assert mode_and_gid(bus_paths.data_dir) == (0o2770, group.gr_gid)
            assert mode_and_gid(bus_paths.socket_path) == (0o660, group.gr_gid)
            for path in rings + segments:
                assert mode_and_gid(path) == (0o660, group.gr_gid), path
            bus.stop_supervisor()
        assert serve.wait(20) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
    # An autostarted supervisor shares the same way.
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        assert mode_and_gid(bus_paths.socket_path) == (0o660, group.gr_gid)
        rings, _ = bus_files(bus_paths)
        assert all(mode_and_gid(path) == (0o660, group.gr_gid) for path in rings)


def test_an_unknown_group_is_a_one_line_error(bus_paths):
    done = buskit.run_cli(bus_paths, "serve", "--share-group", "no-such-group-here", timeout=30)
    assert done.returncode != 0
    assert b"no Unix group named" in done.stderr and b"Traceback" not in done.stderr
