"""`shmbus topics create | list | describe | delete`, `serve` and `stop`, run
as a user runs them: `python -m shmbus ... --bus B --data-dir D`."""
import json
import os
import subprocess
import sys

import pytest

from buskit import run_cli, shm_leftovers, supervisor_process, wait_until

pytestmark = pytest.mark.timeout(90)


def ok(result):
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def one_line_error(result):
    """Non-zero exit, exactly one line on stderr, no traceback; returns the line."""
    stderr = result.stderr.decode()
    assert result.returncode != 0, f"expected a failure, got exit 0: {result.stdout!r}"
    assert "Traceback" not in stderr, stderr
    assert stderr.count("\n") == 1 and stderr.endswith("\n"), f"not one line: {stderr!r}"
    assert stderr.startswith("shmbus: error:") or stderr.startswith("Error:"), stderr
    return stderr.strip()


def test_create_list_describe_delete(bus_paths):
    out = ok(run_cli(bus_paths, "topics", "create", "events", "--partitions", "3", "--ring-size", "128KiB",
                     "--memory-only"))
    assert "events" in out
    ok(run_cli(bus_paths, "topics", "create", "other", "--memory-only", "--ring-size", "64KiB"))

    listing = ok(run_cli(bus_paths, "topics", "list"))
    assert "events" in listing and "other" in listing
    topics = json.loads(ok(run_cli(bus_paths, "topics", "list", "--json")))
    assert topics["events"]["partitions"] == 3
    assert topics["events"]["ring_bytes"] == 128 << 10
    assert topics["events"]["durable"] is False

    text = ok(run_cli(bus_paths, "topics", "describe", "events"))
    assert "events" in text and "PARTITION" in text
    described = json.loads(ok(run_cli(bus_paths, "topics", "describe", "events", "--json")))
    assert [p["partition"] for p in described["partitions"]] == [0, 1, 2]
    assert all(p["end_offset"] == 0 for p in described["partitions"])

    ok(run_cli(bus_paths, "topics", "delete", "events"))
    topics = json.loads(ok(run_cli(bus_paths, "topics", "list", "--json")))
    assert list(topics) == ["other"]
    assert not [e for e in shm_leftovers(bus_paths) if e.startswith(bus_paths.shm_prefix + "events:")]


def test_environment_variables_name_the_bus(bus_paths):
    env = {"SHMBUS_BUS": bus_paths.bus, "SHMBUS_DATA_DIR": bus_paths.data_dir}
    ok(run_cli(None, "topics", "create", "from-env", "--memory-only", "--ring-size", "64KiB", env=env))
    topics = json.loads(ok(run_cli(bus_paths, "topics", "list", "--json")))
    assert "from-env" in topics


@pytest.mark.parametrize("args", [
    ["topics", "describe", "missing"],
    ["topics", "delete", "missing"],
    ["topics", "create", "bad/name", "--memory-only"],
    ["topics", "create", "..", "--memory-only"],
    ["topics", "create", "t", "--memory-only", "--ring-size", "1KiB"],
    ["topics", "create", "t", "--memory-only", "--ring-size", "lots"],
    ["topics", "create", "t", "--memory-only", "--partitions", "0"],
    ["produce", "missing"],
    ["consume", "missing", "--timeout", "0.5"],
])
def test_errors_are_one_line_without_traceback(bus_paths, args):
    one_line_error(run_cli(bus_paths, *args, stdin=b"x\n"))


def test_topic_exists_is_one_line(bus_paths):
    ok(run_cli(bus_paths, "topics", "create", "t", "--memory-only", "--ring-size", "64KiB"))
    assert "exists" in one_line_error(run_cli(bus_paths, "topics", "create", "t", "--memory-only",
                                              "--ring-size", "64KiB"))


def test_bad_bus_name_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "shmbus", "topics", "list", "--bus", "a/b",
                             "--data-dir", str(tmp_path)], capture_output=True, timeout=60)
    one_line_error(result)


def test_second_serve_fails_and_stop_leaves_nothing(bus_paths, tmp_path):
    log = open(tmp_path / "serve.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "shmbus", "serve", "--bus", bus_paths.bus,
                               "--data-dir", bus_paths.data_dir], stdout=log, stderr=log)
    log.close()
    try:
        assert wait_until(lambda: os.path.exists(bus_paths.socket_path), 20), "serve did not come up"
        ok(run_cli(bus_paths, "topics", "create", "t", "--partitions", "2", "--memory-only", "--ring-size", "64KiB"))
        assert len([e for e in shm_leftovers(bus_paths) if e.startswith(bus_paths.shm_prefix + "t:")]) == 2

        line = one_line_error(run_cli(bus_paths, "serve", timeout=30))
        assert "already" in line

        ok(run_cli(bus_paths, "stop", timeout=60))
        # `stop` returns once the supervisor has removed everything.
        assert shm_leftovers(bus_paths) == []
        assert server.wait(20) == 0
        assert supervisor_process(bus_paths) is None
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_serve_stops_cleanly_on_sigterm(bus_paths, tmp_path):
    log = open(tmp_path / "serve.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "shmbus", "serve", "--bus", bus_paths.bus,
                               "--data-dir", bus_paths.data_dir], stdout=log, stderr=log)
    log.close()
    try:
        assert wait_until(lambda: os.path.exists(bus_paths.socket_path), 20)
        ok(run_cli(bus_paths, "topics", "create", "t", "--memory-only", "--ring-size", "64KiB"))
        server.terminate()
        assert server.wait(20) == 0
        assert shm_leftovers(bus_paths) == []
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_stop_without_a_supervisor(bus_paths):
    result = run_cli(bus_paths, "stop")
    assert "Traceback" not in result.stderr.decode()
    assert supervisor_process(bus_paths) is None
