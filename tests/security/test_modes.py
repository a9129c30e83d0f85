"""Item 3: private by default means everything the bus makes or adopts: a data dir
that already exists open (0755) is closed at start, with everything in it, and the
supervisor's log is private (0600), or 0660 when the bus is shared."""
import grp
import os
import stat
import subprocess
import sys

import shmbus

import buskit


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def everything_under(root):
    for directory, dirs, files in os.walk(root):
        for name in dirs:
            yield os.path.join(directory, name), True
        for name in files:
            yield os.path.join(directory, name), False


def test_what_exists_at_start_is_made_private(bus_paths):
    os.makedirs(bus_paths.data_dir)
    os.chmod(bus_paths.data_dir, 0o755)
    with open(bus_paths.log_file, "w") as f:   # an older version's log
        f.write("old\n")
    os.chmod(bus_paths.log_file, 0o644)
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        assert mode(bus_paths.data_dir) == 0o700
        assert mode(bus_paths.log_file) == 0o600
        bus.create_topic("t", ring_bytes=64 << 10)
        with bus.producer() as p:
            p.send("t", b"x")
            p.flush()
        bus.stop_supervisor()
    # Loosened while the bus was down (by hand, a backup restore, an older version):
    for path, is_dir in everything_under(bus_paths.data_dir):
        os.chmod(path, 0o755 if is_dir else 0o644)
    os.chmod(bus_paths.data_dir, 0o755)
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        bus.call("ping")
        assert mode(bus_paths.data_dir) == 0o700
        seen = list(everything_under(bus_paths.data_dir))
        assert len(seen) > 8
        for path, is_dir in seen:
            assert mode(path) == (0o700 if is_dir else 0o600), path


def test_a_new_log_is_private(bus_paths):
    old_umask = os.umask(0o022)
    try:
        with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
            bus.call("ping")
    finally:
        os.umask(old_umask)
    assert mode(bus_paths.log_file) == 0o600


def test_the_log_of_a_shared_bus_is_shared_with_its_group(bus_paths, share_group):
    group, _ = share_group
    serve = subprocess.Popen([sys.executable, "-m", "shmbus", "serve", "--share-group", group,
                              "--bus", bus_paths.bus, "--data-dir", bus_paths.data_dir])
    try:
        assert buskit.wait_until(lambda: os.path.exists(bus_paths.socket_path), 20)
        with shmbus.connect(bus_paths.bus, bus_paths.data_dir, autostart=False) as bus:
            bus.stop_supervisor()
        assert serve.wait(20) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:   # autostarted: shares the same way
        bus.call("ping")
    st = os.stat(bus_paths.log_file)
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o660, grp.getgrnam(group).gr_gid)
