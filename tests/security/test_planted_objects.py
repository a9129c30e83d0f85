"""Item 1: objects planted by another local user are refused, never read.

The names in /dev/shm are world-visible and predictable, and /dev/shm is world-writable:
with a bus stopped, anyone can create its ring or control page before it restarts. A
data dir shared with a group can be written by its members. The bus uses a ring,
page or file only if it is its user's and lets in no more than the bus does, checked
on the open descriptor, and never follows a link."""
import os
import secrets
import stat
import subprocess

import pytest

import shmbus
from shmbus._backend import NULL, ControlPage, Ring
from shmbus._backend.writer import Writer
from shmbus._group import control_page_name

import buskit
from buskit import read_exact

pytestmark = pytest.mark.timeout(90)


def shm_path(name):
    return "/dev/shm" + name


def forge(make, open_dir):
    """A valid object made by `make(name)` (as the attacker's own copy of shmbus would),
    copied to a file in open_dir the attacker can read; returns that file."""
    name = f"/shmbus-forge-{secrets.token_hex(6)}"
    made = make(name)
    try:
        copy = os.path.join(open_dir, "forged")
        with open(shm_path(made.name), "rb") as src, open(copy, "wb") as dst:
            dst.write(src.read())
        os.chmod(copy, 0o644)
    finally:
        made.close()
        Ring.unlink(made.name)
    return copy


def log_text(paths):
    with open(paths.log_file, errors="replace") as f:
        return f.read()


HOLDER = """
import sys
f = open(sys.argv[1], "rb")        # the attacker keeps the inode it planted
print("ready", flush=True)
sys.stdin.readline()
f.seek(0)
print(f.read().count(b"secret-of-the-bus"), flush=True)
"""


def test_a_ring_planted_while_the_bus_is_stopped_is_refused_never_read(bus_paths, attacker, open_dir):
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        bus.create_topic("t", ring_bytes=64 << 10)
        with bus.producer() as p:
            for i in range(3):
                p.send("t", b"mine-%d" % i)
            p.flush()
        ring_name = bus.rings.get("t")[1][0].name
        bus.stop_supervisor()
    assert not os.path.exists(shm_path(ring_name))

    def forged_ring(name):
        # A ring that fits the topic, holding the attacker's record at the next offset.
        ring = Ring.create(name, 64 << 10, 3, True)
        writer = Writer(ring, 0)
        assert writer.append(NULL, -1, b"", 0, b"injected", 8, -1) == 3
        writer.release()
        return ring

    copy = forge(forged_ring, open_dir)
    attacker.run(["cp", copy, shm_path(ring_name)])
    attacker.run(["chmod", "0644", shm_path(ring_name)])
    holder = attacker.popen(["/usr/bin/python3", "-c", HOLDER, shm_path(ring_name)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert holder.stdout.readline() == b"ready\n"

    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        with bus.producer() as p:
            p.send("t", b"secret-of-the-bus")
            p.flush()
        with bus.consumer("t", auto_offset_reset="earliest") as c:
            values = [m.value for m in read_exact(c, 4)]
            assert c.poll(timeout=0.3) is None
        assert values == [b"mine-0", b"mine-1", b"mine-2", b"secret-of-the-bus"]
        # The ring now is the bus's own, and private.
        st = os.stat(shm_path(bus.rings.get("t")[1][0].name))
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (os.geteuid(), 0o600)
    # What the attacker planted never received a record.
    out, _ = holder.communicate(b"go\n", timeout=10)
    assert out == b"0\n"
    log = log_text(bus_paths)
    assert f"refused ring /dev/shm{ring_name}" in log and attacker.name in log


def test_a_control_page_planted_while_the_bus_is_stopped_is_refused(bus_paths, attacker, open_dir):
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        bus.create_topic("t", ring_bytes=64 << 10, durable=False)
        bus.stop_supervisor()
    page = control_page_name(bus_paths.shm_prefix)
    copy = forge(ControlPage.create, open_dir)
    attacker.run(["cp", copy, shm_path(page)])

    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        with bus.producer() as p, bus.consumer("t", group="g", auto_offset_reset="earliest") as c:
            p.send("t", b"x")
            assert [m.value for m in read_exact(c, 1)] == [b"x"]
        st = os.stat(shm_path(page))
        assert st.st_uid == os.geteuid()
    assert f"refused control page /dev/shm{page}" in log_text(bus_paths)


def test_a_client_refuses_a_ring_that_is_not_its_supervisors(bus, bus_paths, attacker):
    bus.create_topic("t", ring_bytes=64 << 10, durable=False)
    with bus.producer() as p:
        p.send("t", b"x")
    path = shm_path(bus.rings.get("t")[1][0].name)
    try:
        # As if the name had been planted: another user's object, or one open to everyone.
        for owner, mode, says in ((attacker.uid, 0o600, attacker.name), (os.geteuid(), 0o606, "mode 0606")):
            os.chown(path, owner, -1)
            os.chmod(path, mode)
            with shmbus.connect(bus_paths.bus, bus_paths.data_dir, autostart=False) as other:
                with pytest.raises(PermissionError, match=says):
                    other.consumer("t")
                with pytest.raises(PermissionError, match=says):
                    with other.producer() as p:
                        p.send("t", b"y")
    finally:
        os.chown(path, os.geteuid(), -1)
        os.chmod(path, 0o600)


def test_a_name_held_by_an_object_that_cannot_be_removed_gets_another(attacker, monkeypatch):
    """A supervisor that is not root may not remove another user's object from sticky
    /dev/shm: it leaves it alone and makes its ring under another name (the kernel's
    EPERM is simulated here, since root may remove anything)."""
    import shmbus._shm as shm
    name = f"/shmbus-squat-{secrets.token_hex(6)}"
    planted = shm_path(name)
    attacker.run(["sh", "-c", f"echo planted > {planted}"])
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        if path == planted:
            raise PermissionError(1, "Operation not permitted", path)
        return real_unlink(path, *args, **kwargs)
    monkeypatch.setattr(shm.os, "unlink", unlink)
    ring = None
    try:
        ring = Ring.create(name, 64 << 10, 0, False)
        assert ring.name.startswith(name + "~")
        assert shm.alternates(name) == [ring.name]
        with open(planted) as f:
            assert f.read() == "planted\n"
    finally:
        if ring is not None:
            ring.close()
            real_unlink(shm_path(ring.name))
        real_unlink(planted)


# ---- files in the data dir ----

def _make_bus_with_segments(paths):
    with shmbus.connect(paths.bus, paths.data_dir) as bus:
        bus.create_topic("t", ring_bytes=64 << 10)
        with bus.producer() as p:
            p.send("t", b"x")
            p.flush()
        bus.stop_supervisor()
    return os.path.join(paths.data_dir, "topics", "t")


def _plant(case, topic_dir, paths, attacker, open_dir):
    """Returns the path the supervisor must name."""
    meta = os.path.join(topic_dir, "topic.json")
    if case == "foreign topic.json":
        os.chown(meta, attacker.uid, -1)
        return meta
    if case == "topic.json is a link":
        copy = os.path.join(open_dir, "topic.json")
        with open(meta) as src, open(copy, "w") as dst:
            dst.write(src.read())
        os.chown(copy, attacker.uid, -1)
        os.unlink(meta)
        os.symlink(copy, meta)
        return meta
    if case == "topic.json is a fifo":
        os.unlink(meta)
        os.mkfifo(meta, 0o600)
        return meta
    if case == "foreign lock file":
        os.chown(paths.lock_file, attacker.uid, -1)
        return paths.lock_file
    if case == "foreign segment":
        segment = os.path.join(topic_dir, "0", f"{0:020d}.log")
        os.chown(segment, attacker.uid, -1)
        return segment
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["foreign topic.json", "topic.json is a link", "topic.json is a fifo",
                                  "foreign lock file", "foreign segment"])
def test_the_supervisor_refuses_a_planted_file_with_one_line(bus_paths, attacker, open_dir, case):
    topic_dir = _make_bus_with_segments(bus_paths)
    named = _plant(case, topic_dir, bus_paths, attacker, open_dir)
    try:
        done = buskit.run_cli(bus_paths, "serve", timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{case}: the supervisor started on it")
    stderr = done.stderr.decode()
    assert done.returncode != 0
    assert stderr.startswith("shmbus: error:") and stderr.count("\n") == 1, stderr
    assert named in stderr and "refused" in stderr, stderr


def test_a_client_refuses_a_segment_file_that_is_not_its_supervisors(bus, bus_paths, attacker):
    bus.create_topic("t", ring_bytes=64 << 10)
    with bus.producer() as p:
        for i in range(200):   # 200 KiB through a 64 KiB ring: the first ones are on disk only
            p.send("t", bytes([i]) * 1000)
        p.flush()
    segment = os.path.join(bus_paths.data_dir, "topics", "t", "0", f"{0:020d}.log")
    os.chown(segment, attacker.uid, -1)   # as if a member of a shared group had replaced it
    try:
        with bus.consumer("t", auto_offset_reset="earliest") as c:
            with pytest.raises(PermissionError, match=attacker.name):
                c.poll_many(10, timeout=2)
    finally:
        os.chown(segment, os.geteuid(), -1)


def test_a_link_planted_as_a_temporary_file_is_never_written_through(bus, bus_paths, open_dir):
    bus.create_topic("t", ring_bytes=64 << 10, durable=False)
    victim = os.path.join(open_dir, "precious")
    with open(victim, "w") as f:
        f.write("precious\n")
    with bus.producer() as p, bus.consumer("t", group="g", auto_offset_reset="earliest") as c:
        p.send("t", b"a")
        read_exact(c, 1)
        c.commit()
        offsets = os.path.join(bus_paths.data_dir, "groups", "g", "offsets.json")
        os.symlink(victim, offsets + ".tmp")  # what a member of a shared group could do
        p.send("t", b"b")
        read_exact(c, 1)
        c.commit()
        assert c.committed(shmbus.TopicPartition("t", 0)) == 2
    with open(victim) as f:
        assert f.read() == "precious\n"
    assert not os.path.islink(offsets)
