"""Item 13: a control request is checked whole before the supervisor allocates anything
for it: refused requests, however many, leave nothing behind."""
import json
import os
import socket

import pytest

from buskit import read_exact

pytestmark = pytest.mark.timeout(60)


def raw_connection(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
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


def test_bad_group_joins_leave_nothing_behind(bus, bus_paths):
    bus.create_topic("t", ring_bytes=64 << 10, durable=False)
    bad = raw_connection(bus_paths.socket_path)
    try:
        for i in range(300):
            reply = request(bad, {"op": "group_join", "group": f"g{i}", "pid": os.getpid(), "start_ms": 0,
                                  "topics": ["t"], "max_poll_interval_ms": "soon"})
            assert reply["ok"] is False and "max_poll_interval_ms" in reply["message"], reply
        for args in ({"pid": "1"}, {"pid": True}, {"start_ms": -1}, {"sticky": "yes"}, {"member_id": 7},
                     {"topics": "t"}, {"strategy": ["range"]}, {"max_poll_interval_ms": 0},
                     {"max_poll_interval_ms": float("inf")}, {"group": "../x"}):
            join = dict({"op": "group_join", "group": "g", "pid": os.getpid(), "topics": ["t"]}, **args)
            assert request(bad, join)["ok"] is False, args
    finally:
        bad.close()
    assert bus.call("groups") == []
    # Every group line and member line is still free for the real consumers.
    with bus.producer() as p, bus.consumer("t", group="legit", auto_offset_reset="earliest") as c:
        p.send("t", b"x")
        assert [m.value for m in read_exact(c, 1)] == [b"x"]
