"""Item 2: nobody else's control socket, and nobody else on ours.

When the data dir path is too long for a Unix socket, the socket lives in a runtime
dir, `$XDG_RUNTIME_DIR/shmbus-<uid>` or `/tmp/shmbus-<uid>`, which anyone can create
first. A client refuses that directory unless it is its own and closed to others, and
checks the peer credentials (SO_PEERCRED) of whatever answers on the socket; the
supervisor checks those of every client."""
import grp
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

import shmbus
from shmbus._names import bus_prefix

import buskit

pytestmark = pytest.mark.timeout(60)

FAKE_SERVER = r"""
import json, os, socket, sys
path = sys.argv[1]
server = socket.socket(socket.AF_UNIX)
server.bind(path)
os.chmod(path, 0o777)
server.listen(16)
print("ready", flush=True)
fake = {"name": "pwned", "partitions": 1, "ring_bytes": 65536, "durable": False,
        "retention_bytes": None, "retention_ms": None, "segment_bytes": 134217728}
while True:
    conn, _ = server.accept()
    f = conn.makefile("rwb")
    for line in f:
        op = json.loads(line).get("op")
        result = {"pwned": fake} if op == "topics" else {"pid": os.getpid()}
        f.write(json.dumps({"ok": True, "result": result}).encode() + b"\n")
        f.flush()
    conn.close()
"""

CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
try:
    s.sendall(b'{"op": "ping"}\n')
except OSError:
    pass
f = s.makefile("rb")
print(f.readline().decode().strip(), flush=True)
if sys.argv[2] == "refused":
    try:
        rest = f.read()
    except ConnectionResetError:  # closed with our request unread
        rest = b""
    print("eof" if rest == b"" else "more", flush=True)
"""


@pytest.fixture
def runtime_base(open_dir):
    """A stand-in for /tmp as XDG_RUNTIME_DIR (world-writable, sticky), so that the
    attack does not touch the host's real /tmp/shmbus-<uid>."""
    base = os.path.join(open_dir, "run")
    os.mkdir(base)
    os.chmod(base, 0o1777)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def long_paths(tmp_path):
    """A bus whose data dir path is too long for a socket in it: its socket goes to the
    runtime dir. (paths, socket file name). Nothing of it may run (were a refusal to
    fail, a supervisor would be autostarted): teardown kills and reports what does."""
    data_dir = str(tmp_path / ("d" * 110))
    bus = buskit.unique_bus_name()
    socket_name = f"{bus[:40]}-{hashlib.sha1(os.fsencode(data_dir)).hexdigest()[:16]}.sock"
    yield SimpleNamespace(bus=bus, data_dir=data_dir), socket_name
    running = buskit.processes_mentioning(bus)
    buskit.kill_processes(running)
    prefix = bus_prefix(bus, data_dir)
    leftovers = [name for name in os.listdir("/dev/shm") if name.startswith(prefix)]
    buskit.unlink_shm(leftovers)
    if running or leftovers:
        pytest.fail(f"the bus ran: {len(running)} process(es), left {leftovers} in /dev/shm", pytrace=False)


def start_fake_server(attacker, path):
    server = attacker.popen(["/usr/bin/python3", "-c", FAKE_SERVER, path], stdout=subprocess.PIPE)
    assert server.stdout.readline() == b"ready\n"
    return server


def test_a_runtime_dir_made_by_another_user_is_refused(long_paths, attacker, runtime_base):
    paths, socket_name = long_paths
    hijacked = os.path.join(runtime_base, f"shmbus-{os.getuid()}")
    attacker.run(["mkdir", "-m", "0777", hijacked])
    attacker.run(["chmod", "0777", hijacked])
    server = start_fake_server(attacker, os.path.join(hijacked, socket_name))
    try:
        done = buskit.run_cli(paths, "topics", "list", env={"XDG_RUNTIME_DIR": runtime_base}, timeout=30)
    finally:
        server.kill()
        server.wait()
    stderr = done.stderr.decode()
    assert b"pwned" not in done.stdout
    assert done.returncode != 0
    assert stderr.startswith("shmbus: error:") and stderr.count("\n") == 1, stderr
    assert f"{hijacked} is owned by uid {attacker.uid} ({attacker.name})" in stderr, stderr


def test_a_runtime_dir_open_to_others_is_refused(long_paths, runtime_base):
    paths, _ = long_paths
    loose = os.path.join(runtime_base, f"shmbus-{os.getuid()}")
    os.mkdir(loose)
    os.chmod(loose, 0o773)
    done = buskit.run_cli(paths, "topics", "list", env={"XDG_RUNTIME_DIR": runtime_base}, timeout=30)
    assert done.returncode != 0
    assert b"writable by group or others" in done.stderr, done.stderr


def test_a_control_socket_served_by_another_user_is_refused(long_paths, attacker, runtime_base, open_dir):
    paths, socket_name = long_paths
    mine = os.path.join(runtime_base, f"shmbus-{os.getuid()}")
    os.mkdir(mine, 0o700)
    # The attacker's server, its socket moved (by whatever means) to where the client looks.
    theirs = os.path.join(open_dir, "theirs")
    os.mkdir(theirs)
    os.chown(theirs, attacker.uid, attacker.gid)
    server = start_fake_server(attacker, os.path.join(theirs, "s.sock"))
    try:
        os.rename(os.path.join(theirs, "s.sock"), os.path.join(mine, socket_name))
        done = buskit.run_cli(paths, "topics", "list", env={"XDG_RUNTIME_DIR": runtime_base}, timeout=30)
    finally:
        server.kill()
        server.wait()
    stderr = done.stderr.decode()
    assert b"pwned" not in done.stdout
    assert done.returncode != 0
    assert stderr.startswith("shmbus: error:") and stderr.count("\n") == 1, stderr
    assert f"served by uid {attacker.uid} ({attacker.name})" in stderr, stderr


def test_the_supervisor_refuses_peers_that_are_not_its_user_or_group(reachable_paths, attacker, share_group):
    group, member = share_group
    serve = subprocess.Popen([sys.executable, "-m", "shmbus", "serve", "--share-group", group,
                              "--bus", reachable_paths.bus, "--data-dir", reachable_paths.data_dir])
    try:
        assert buskit.wait_until(lambda: os.path.exists(reachable_paths.socket_path), 20)
        with shmbus.connect(reachable_paths.bus, reachable_paths.data_dir, autostart=False) as bus:
            bus.call("ping")
            assert os.stat(reachable_paths.socket_path).st_gid == grp.getgrnam(group).gr_gid
            # A member of the group (a supplementary one) is served.
            done = member.python(CLIENT, reachable_paths.socket_path, "served")
            assert json.loads(done.stdout.decode().splitlines()[0])["ok"] is True
            # Someone else, who could reach the socket by a mistake in its modes, gets one
            # error line and the connection closes.
            os.chmod(reachable_paths.data_dir, 0o2775)
            os.chmod(reachable_paths.socket_path, 0o666)
            done = attacker.python(CLIENT, reachable_paths.socket_path, "refused")
            first, rest = done.stdout.decode().splitlines()
            reply = json.loads(first)
            assert reply["ok"] is False and reply["error"] == "NotTrusted", reply
            assert attacker.name in reply["message"] and group in reply["message"]
            assert rest == "eof"
            bus.call("ping")  # and the supervisor goes on serving its own
            bus.stop_supervisor()
        assert serve.wait(20) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()


def test_a_private_bus_refuses_everyone_else(reachable_paths, attacker):
    with shmbus.connect(reachable_paths.bus, reachable_paths.data_dir) as bus:
        os.chmod(reachable_paths.data_dir, 0o755)
        os.chmod(reachable_paths.socket_path, 0o666)
        done = attacker.python(CLIENT, reachable_paths.socket_path, "refused")
        reply = json.loads(done.stdout.decode().splitlines()[0])
        assert reply["ok"] is False and reply["error"] == "NotTrusted", reply
        assert "private" in reply["message"]
        bus.call("ping")
        deadline = time.monotonic() + 10
        while "refused a control connection" not in open(reachable_paths.log_file).read():
            assert time.monotonic() < deadline
            time.sleep(0.05)
