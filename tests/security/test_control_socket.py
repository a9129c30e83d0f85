"""Item 13: the control socket under abuse. Idle connections cost no thread, bursts of
connects all get through, a half-sent request does not hold a connection forever, and
the number of connections is capped."""
import json
import logging
import resource
import socket
import threading
import time

import psutil
import pytest

import shmbus
from shmbus._protocol import ControlClient

import buskit

pytestmark = pytest.mark.timeout(120)


def raw_connection(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)     # blocking: waits while the listen backlog is full
    s.settimeout(30)
    return s


def request(sock, obj):
    sock.sendall(json.dumps(obj).encode() + b"\n")
    line = b""
    while not line.endswith(b"\n"):
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        line += chunk
    return json.loads(line)


def _raise_own_fd_limit(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def test_idle_connections_cost_no_thread(bus, bus_paths):
    if _raise_own_fd_limit(2300) < 2300:
        pytest.skip("needs 2,300 open files")
    supervisor = psutil.Process(bus.call("ping")["pid"])
    idle = []
    try:
        for _ in range(2000):
            idle.append(raw_connection(bus_paths.socket_path))
        assert buskit.wait_until(lambda: supervisor.num_fds() >= 2000, 30), supervisor.num_fds()
        assert supervisor.num_threads() < 10, supervisor.num_threads()
        # A client still gets through, and so does a request on an idle connection.
        with shmbus.connect(bus_paths.bus, bus_paths.data_dir, autostart=False) as other:
            other.create_topic("t", ring_bytes=64 << 10, durable=False)
        assert request(idle[1234], {"op": "ping"})["ok"] is True
    finally:
        for s in idle:
            s.close()


def test_a_burst_of_200_concurrent_connects_all_succeed(bus, bus_paths):
    bus.call("ping")
    start = threading.Barrier(200)
    errors, clients = [], []
    lock = threading.Lock()

    def connect():
        try:
            start.wait(10)
            client = ControlClient(bus_paths.socket_path)
            with lock:
                clients.append(client)
            client.call("ping")
        except Exception as e:
            with lock:
                errors.append(repr(e))

    threads = [threading.Thread(target=connect) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for client in clients:
        client.close()
    assert errors == [], errors[:5]
    assert len(clients) == 200


def test_a_half_sent_request_is_dropped_but_an_idle_connection_never_is(bus, bus_paths):
    idle = raw_connection(bus_paths.socket_path)
    assert request(idle, {"op": "ping"})["ok"] is True
    half = raw_connection(bus_paths.socket_path)
    half.sendall(b'{"op": "pi')
    started = time.monotonic()
    half.settimeout(30)
    assert half.recv(100) == b""          # closed by the supervisor...
    waited = time.monotonic() - started
    assert 9.0 < waited < 25.0, waited    # ...after about ten seconds
    # The complete, idle one is still served (clients keep theirs for life).
    assert request(idle, {"op": "ping"})["ok"] is True
    idle.close()
    half.close()


# ---- the server on its own, with small limits ----

@pytest.fixture
def small_server(tmp_path):
    from shmbus._supervisor.server import ControlServer
    closed = []

    def handle(line, connection):
        return {"ok": True, "result": json.loads(line)}

    server = ControlServer(str(tmp_path / "s.sock"), handle, closed.append, lambda pid, uid, gid: None,
                           max_connections=3, partial_timeout=0.5)
    server.start()
    yield server, closed
    server.stop()


def test_connections_beyond_the_cap_get_one_error_line_and_are_logged_once(small_server, caplog):
    server, closed = small_server
    caplog.set_level(logging.WARNING, logger="shmbus.supervisor")
    kept = [raw_connection(server.path) for _ in range(3)]
    for s in kept:
        assert request(s, {"x": 1})["ok"] is True
    for _ in range(3):
        with pytest.raises(shmbus.SupervisorUnavailable, match="maximum of 3"):
            ControlClient(server.path).call("ping")
    assert sum("connections are open" in r.message for r in caplog.records) == 1
    kept.pop().close()
    # The server drops the connection from its table, then calls closed(): wait for the
    # callback, which comes last, rather than the count.
    assert buskit.wait_until(lambda: closed == [3], 5), closed
    assert server.connection_count == 2
    again = raw_connection(server.path)
    assert request(again, {"y": 2})["ok"] is True
    for s in kept + [again]:
        s.close()


def test_a_partial_line_times_out_and_a_long_one_is_refused(small_server):
    server, closed = small_server
    half = raw_connection(server.path)
    half.sendall(b'{"never": "finished')
    assert half.recv(100) == b""
    too_long = raw_connection(server.path)
    too_long.sendall(b"x" * ((1 << 20) + 10))
    reply = json.loads(too_long.makefile("rb").readline())
    assert reply["ok"] is False and "longer than" in reply["message"]
    assert buskit.wait_until(lambda: len(closed) == 2, 5)
    half.close()
    too_long.close()
