"""kcat's habits on `shmbus consume` and `shmbus produce`, run as a user runs them,
and the command line's manners: one-line errors naming the flag, conflicting flags
refused, global options before or after the subcommand, a closed pipe as exit 0.

One bus for the module (each test its own topics): every test here runs several CLI
processes, and a supervisor per test would double the module's time without testing
anything more. The bus is checked for leftovers at the end like any other."""
import base64
import io
import json
import os
import re
import subprocess
import sys
import time

import click
import pytest

import shmbus
from shmbus.cli._plumbing import run
from shmbus.cli.main import cli

import buskit

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    paths = buskit.new_paths(buskit.unique_bus_name(), tmp_path_factory.mktemp("kcat") / "data")
    bus = shmbus.connect(paths.bus, paths.data_dir)
    yield paths, bus
    bus.close()
    problems = buskit.leftovers_after_stop(paths)
    assert not problems, problems


@pytest.fixture
def topic(shared, request):
    """A fresh 3-partition memory-only topic named after the test."""
    paths, bus = shared
    name = re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:80]
    bus.create_topic(name, partitions=3, ring_bytes=64 << 10, durable=False)
    yield name
    bus.delete_topic(name)


def cli_ok(paths, *args, stdin=None):
    done = buskit.run_cli(paths, *args, stdin=stdin)
    assert done.returncode == 0, done.stderr.decode()
    return done


def one_line_error(done):
    stderr = done.stderr.decode()
    assert done.returncode != 0, f"expected a failure: {done.stdout!r}"
    assert "Traceback" not in stderr and stderr.count("\n") == 1 and stderr.startswith("shmbus: error: "), stderr
    return stderr.strip()


def test_produce_headers_keys_partition_and_consume_with_a_format(shared, topic):
    paths, _ = shared
    done = cli_ok(paths, "produce", topic, "-p", "2", "-K", ":", "-H", "unit=degC", "-H", "src=gw-1",
                  stdin=b"dev-1:20.5\ndev-2:21.0\nno-key\n")
    assert b"sent 3 record(s)" in done.stderr
    out = cli_ok(paths, "consume", topic, "-o", "beginning", "-e",
                 "-f", r"%t|%p|%o|%k|%K|%s|%S|%h|%T\n").stdout.decode()
    rows = [line.split("|") for line in out.splitlines()]
    assert [r[:8] for r in rows] == [
        [topic, "2", "0", "dev-1", "5", "20.5", "4", "unit=degC,src=gw-1"],
        [topic, "2", "1", "dev-2", "5", "21.0", "4", "unit=degC,src=gw-1"],
        [topic, "2", "2", "", "-1", "no-key", "6", "unit=degC,src=gw-1"],
    ]
    assert all(abs(int(r[8]) - time.time() * 1000) < 600_000 for r in rows), "%T is the timestamp in ms"
    # -K on consume: key DELIM value; \t escapes work.
    out = cli_ok(paths, "consume", topic, "-o", "beginning", "-e", "-K", r"\t").stdout
    assert out.splitlines() == [b"dev-1\t20.5", b"dev-2\t21.0", b"\tno-key"]


def test_json_envelopes_show_bytes_that_are_not_utf8_unambiguously(shared, topic):
    paths, bus = shared
    with bus.producer() as p:
        p.send(topic, b"\xff\xfe", key=b"\x00\x9f", headers=[("raw", b"\x80"), ("txt", b"ok")], partition=1)
        p.send(topic, b'{"a": 1}', key=b"base64:AAA=", partition=1)   # text that looks like an encoding
        p.send(topic, None, partition=1)
    kcat = [json.loads(line) for line in cli_ok(paths, "consume", topic, "-J", "-o", "beginning", "-e").stdout.splitlines()]
    assert set(kcat[0]) == {"topic", "partition", "offset", "tstype", "ts", "broker", "headers", "key", "payload"}
    assert kcat[0]["payload"] == {"base64": base64.b64encode(b"\xff\xfe").decode()}
    assert kcat[0]["key"] == {"base64": "AJ8="}
    assert kcat[0]["headers"] == ["raw", {"base64": "gA=="}, "txt", "ok"]
    assert (kcat[0]["tstype"], kcat[0]["partition"], kcat[0]["offset"]) == ("create", 1, 0)
    assert kcat[1]["payload"] == '{"a": 1}' and kcat[1]["key"] == "base64:AAA="
    assert kcat[2]["payload"] is None and kcat[2]["key"] is None
    own = [json.loads(line) for line in cli_ok(paths, "consume", topic, "--json", "--from-beginning",
                                                 "--max-messages", "3", "--timeout", "10").stdout.splitlines()]
    assert own[0]["value"] == {"base64": "//4="} and own[0]["headers"] == [["raw", {"base64": "gA=="}], ["txt", "ok"]]
    assert own[0]["timestamp_ns"] // 1_000_000 == kcat[0]["ts"]


def test_offsets_partitions_count_and_exit_at_end(shared, topic):
    paths, bus = shared
    with bus.producer() as p:
        for i in range(10):
            p.send(topic, b"p0-%d" % i, partition=0, timestamp_ns=1_700_000_000_000_000_000 + i * 1_000_000)
        for i in range(4):
            p.send(topic, b"p1-%d" % i, partition=1)

    def values(*args):
        return cli_ok(paths, "consume", topic, *args).stdout.decode().split()

    assert values("-p", "0", "-o", "7", "-e") == ["p0-7", "p0-8", "p0-9"]
    assert values("-p", "0", "-o", "-2", "-e") == ["p0-8", "p0-9"]
    assert values("-p", "0", "-o", "s@1700000000004", "-e") == [f"p0-{i}" for i in range(4, 10)]
    assert values("-p", "0", "-o", "beginning", "-c", "3") == ["p0-0", "p0-1", "p0-2"]
    # No -p: every partition; -o N and -N apply to each.
    assert sorted(values("-o", "-1", "-e")) == ["p0-9", "p1-3"]
    assert sorted(values("-o", "beginning", "-e")) == sorted([f"p0-{i}" for i in range(10)] + [f"p1-{i}" for i in range(4)])
    # Past the end: starts at the end, so -e exits at once with nothing; so does -o end.
    assert values("-p", "1", "-o", "99", "-e") == [] and values("-o", "end", "-e") == []
    # A group: -e exits once its assigned partitions are read to their ends.
    assert len(values("--group", "g1", "-o", "beginning", "-e")) == 14
    assert values("--group", "g1", "-o", "stored", "-e") == [], "the group committed what it read"


def test_null_files_and_delimiters_are_binary_safe(shared, topic, tmp_path):
    paths, bus = shared
    blob = bytes(range(256)) * 3   # every byte, newlines and NULs included
    (tmp_path / "a.bin").write_bytes(blob)
    (tmp_path / "empty.bin").write_bytes(b"")
    cli_ok(paths, "produce", topic, "-p", "0", str(tmp_path / "a.bin"), str(tmp_path / "empty.bin"))
    cli_ok(paths, "produce", topic, "-p", "1", "-D", r"\0", "-Z", "-K", "=", stdin=b"k=v\0\0=only-value\0last")
    cli_ok(paths, "produce", topic, "-p", "2", stdin=b"\n")
    with bus.consumer(topic, auto_offset_reset="earliest") as c:
        got = buskit.read_exact(c, 7)
    by_partition = {}
    for m in got:
        by_partition.setdefault(m.partition, []).append((m.key, m.value))
    assert by_partition[0] == [(None, blob), (None, b"")], "a FILE is one record, byte for byte"
    assert by_partition[1] == [(b"k", b"v"), (None, None), (None, b"only-value"), (None, b"last")]
    assert by_partition[2] == [(None, b"")], "without -Z an empty line is an empty value"
    out = cli_ok(paths, "consume", topic, "-p", "1", "-o", "beginning", "-e", "-Z", "-f", r"%k=%s\n").stdout
    assert out == b"k=v\nNULL=NULL\nNULL=only-value\nNULL=last\n"


def test_a_failing_produce_says_what_was_sent_and_which_line_failed(shared, topic):
    paths, bus = shared
    big = b"x" * (40 << 10)   # larger than a 64 KiB ring takes (half of it)
    done = buskit.run_cli(paths, "produce", topic, "-p", "0", stdin=b"one\ntwo\n" + big + b"\nfour\n")
    line = one_line_error(done)
    assert "line 3" in line and "sent 2 record(s)" in line and "KiB" in line, line
    with bus.consumer(topic, auto_offset_reset="earliest") as c:
        assert [m.value for m in c.poll_many(10, timeout=1)] == [b"one", b"two"], "nothing after the failed line"


def test_a_closed_pipe_ends_quietly(shared, topic):
    paths, bus = shared
    with bus.producer() as p:
        p.send_many(topic, [b"%d" % i for i in range(300)], partition=0)
    proc = subprocess.Popen([sys.executable, "-m", "shmbus", "consume", topic, "-o", "beginning",
                             "--bus", paths.bus, "--data-dir", paths.data_dir],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = [proc.stdout.readline() for _ in range(3)]   # as `| head -3` reads
    proc.stdout.close()
    # It notices the closed pipe at its next write: more records keep coming.
    with bus.producer() as p:
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            p.send(topic, b"more" * 100, partition=0)
            time.sleep(0.01)
    assert proc.wait(10) == 0
    assert first == [b"0\n", b"1\n", b"2\n"]
    assert proc.stderr.read() == b""


def test_unbuffered_output_arrives_while_it_runs(shared, topic):
    paths, bus = shared
    proc = subprocess.Popen([sys.executable, "-m", "shmbus", "consume", topic, "-u", "-p", "0",
                             "--bus", paths.bus, "--data-dir", paths.data_dir],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # It starts at the end: send until the first record it sees comes out.
        with bus.producer() as p:
            deadline = time.monotonic() + 20
            os.set_blocking(proc.stdout.fileno(), False)
            seen = b""
            while b"\n" not in seen and time.monotonic() < deadline:
                p.send(topic, b"live", partition=0)
                time.sleep(0.05)
                seen += proc.stdout.read() or b""
        assert seen.startswith(b"live\n"), (seen, proc.stderr.read() if proc.poll() is not None else "")
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("args, words", [
    (["consume", "T", "-o", "beginning", "--from-beginning"], "-o and --from-beginning"),
    (["consume", "T", "-J", "-f", "%s"], "-f and -J"),
    (["consume", "T", "-o", "yesterday"], "-o: not an offset"),
    (["consume", "T", "-f", "%q"], "unknown token %q"),
    (["consume", "T", "-p", "7", "-e"], "-p 7: topic"),
    (["consume", "T", "-p", "-1"], "'-p'"),
    (["consume", "T", "--group", "g", "-o", "5"], "-o 5 needs partitions"),
    (["produce", "T", "-H", "novalue"], "name=value"),
    (["stats", "--json", "--prometheus"], "--json and --prometheus"),
    (["groups", "reset-offsets", "g", "--to-earliest", "--to-latest"], "--to-earliest and --to-latest"),
    (["topics", "create", "x", "--ring-size", "1KiB"], "at least 64 KiB"),
    (["topics", "create", "x", "--partitions", "0"], "'--partitions'"),
    (["topics", "create", "x", "--retention-ms", "0"], "'--retention-ms'"),
    (["replay", "/nonexistent.mcap"], "does not exist"),
    (["serve", "--metrics-port", "99999"], "'--metrics-port'"),
])
def test_errors_are_one_line_in_the_users_words(shared, topic, args, words, capsys, monkeypatch):
    """In this process (the same run() the `shmbus` program is), to save a start per case;
    the cases that need a process of their own are run as one elsewhere in this module."""
    paths, _ = shared
    args = [topic if a == "T" else a for a in args] + ["--bus", paths.bus, "--data-dir", paths.data_dir]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"x\n")))
    with pytest.raises(SystemExit) as exited:
        run(cli, args)
    captured = capsys.readouterr()
    assert exited.value.code != 0
    line = one_line_error(subprocess.CompletedProcess(args, exited.value.code, captured.out.encode(),
                                                      captured.err.encode()))
    assert words in line, line
    assert "retention_ms" not in line and "ring_bytes" not in line


def test_global_options_before_or_after_the_subcommand(shared, topic):
    paths, _ = shared
    before = subprocess.run([sys.executable, "-m", "shmbus", "--bus", paths.bus, "--data-dir", paths.data_dir,
                             "topics", "list", "--json"], capture_output=True, timeout=60)
    assert before.returncode == 0, before.stderr
    assert topic in json.loads(before.stdout)
    # After the subcommand wins over before it; before wins over the environment.
    env = dict(os.environ, SHMBUS_BUS="no-such-bus", SHMBUS_DATA_DIR="/nonexistent/dir")
    mixed = subprocess.run([sys.executable, "-m", "shmbus", "--bus", "also-not-this", "--data-dir", paths.data_dir,
                            "topics", "list", "--json", "--bus", paths.bus], capture_output=True, timeout=60, env=env)
    assert mixed.returncode == 0, mixed.stderr
    assert topic in json.loads(mixed.stdout)
    bare = subprocess.run([sys.executable, "-m", "shmbus"], capture_output=True, timeout=60)
    assert bare.returncode == 0 and b"Commands:" in bare.stdout and bare.stderr == b"", "no subcommand: the help"


def _commands(group, path=()):
    for name, command in group.commands.items():
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


def test_every_option_has_help():
    missing = [f"shmbus {' '.join(path)} {param.opts[0]}" for path, command in _commands(cli)
               for param in command.params
               if isinstance(param, click.Option) and not param.help and "--help" not in param.opts]
    assert missing == []
    assert not [p for p in cli.params if isinstance(p, click.Option) and not p.help and "--version" not in p.opts]
