"""`shmbus produce` (one record per stdin line) and `shmbus consume`."""
import json

import pytest

from buskit import read_exact, run_cli

pytestmark = pytest.mark.timeout(90)


def ok(result):
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


@pytest.fixture
def topic(bus):
    bus.create_topic("t", partitions=3, ring_bytes=64 << 10, durable=False)
    return "t"


def consume_json(bus_paths, *args):
    out = ok(run_cli(bus_paths, "consume", "t", "--from-beginning", "--json", *args))
    return [json.loads(line) for line in out.splitlines()]


def test_produce_lines_and_consume_them(bus, bus_paths, topic):
    result = run_cli(bus_paths, "produce", "t", "--partition", "1", stdin=b"one\ntwo\n\nfour\n")
    ok(result)
    assert "4" in result.stderr.decode()
    records = consume_json(bus_paths, "--max-messages", "4", "--timeout", "10")
    assert [r["value"] for r in records] == ["one", "two", "", "four"]
    assert [(r["topic"], r["partition"], r["offset"]) for r in records] == [("t", 1, i) for i in range(4)]
    assert all(r["key"] is None and r["headers"] == [] and r["timestamp_ns"] > 0 for r in records)
    # What the Python API sees matches.
    with bus.consumer("t", auto_offset_reset="earliest") as c:
        assert [m.value for m in read_exact(c, 4)] == [b"one", b"two", b"", b"four"]


def test_produce_with_a_key(bus, bus_paths, topic):
    ok(run_cli(bus_paths, "produce", "t", "--key", "device-7", stdin=b"a\nb\nc\n"))
    records = consume_json(bus_paths, "--max-messages", "3", "--timeout", "10")
    assert [r["key"] for r in records] == ["device-7"] * 3
    assert len({r["partition"] for r in records}) == 1, "one key, one partition"
    with bus.producer() as p:
        assert p.send("t", b"x", key=b"device-7").partition == records[0]["partition"]


def test_produce_with_a_key_separator(bus, bus_paths, topic):
    ok(run_cli(bus_paths, "produce", "t", "--key-separator", ":", stdin=b"k1:v1\nk2:v:2\nno-separator\n"))
    records = consume_json(bus_paths, "--max-messages", "3", "--timeout", "10")
    by_value = {r["value"]: r["key"] for r in records}
    assert by_value == {"v1": "k1", "v:2": "k2", "no-separator": None}


def test_consume_stops_after_max_messages(bus, bus_paths, topic):
    with bus.producer() as p:
        for i in range(10):
            p.send("t", b"%d" % i, partition=0)
    records = consume_json(bus_paths, "--max-messages", "3", "--timeout", "10")
    assert [r["value"] for r in records] == ["0", "1", "2"]


def test_consume_stops_after_timeout_when_idle(bus, bus_paths, topic):
    with bus.producer() as p:
        p.send("t", b"only", partition=2)
    records = consume_json(bus_paths, "--timeout", "1")
    assert [r["value"] for r in records] == ["only"]
    # Without --from-beginning it starts at the end: nothing to print.
    assert ok(run_cli(bus_paths, "consume", "t", "--timeout", "0.5")) == ""


def test_consume_plain_and_binary_values(bus, bus_paths, topic):
    with bus.producer() as p:
        p.send("t", b"text", key=b"k", partition=0)
        p.send("t", b"\xff\x00\xfe", partition=0)
        p.send("t", None, partition=0)
    plain = run_cli(bus_paths, "consume", "t", "--from-beginning", "--max-messages", "3", "--timeout", "10")
    assert plain.returncode == 0, plain.stderr.decode()
    assert plain.stdout == b"text\n\xff\x00\xfe\n\n", "plain output: the raw value bytes, one per line"
    records = consume_json(bus_paths, "--max-messages", "3", "--timeout", "10")
    assert records[0]["value"] == "text" and records[0]["key"] == "k"
    # Bytes that are not UTF-8 are an object, never a string that could be someone's text.
    assert records[1]["value"] == {"base64": "/wD+"}
    assert records[2]["value"] is None
