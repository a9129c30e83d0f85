"""shmbus demo and shmbus bench, run as a user runs them, on a private bus."""
import importlib
import json
import os

import buskit

from shmbus._bench.plot import MISSING as PLOT_NEEDS_MATPLOTLIB



def _installed(module):
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False

def test_demo_runs_the_main_job_and_checks_it(bus_paths):
    done = buskit.run_cli(bus_paths, "demo", timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode()
    assert "check passed" in out and "exactly once" in out
    # `shmbus demo > file`: never wrapped at 80 columns, each sentence on one line.
    assert any(line.startswith("check passed") and "sum of partition ends" in line for line in out.splitlines())
    assert "one-way p50" in out
    # It started the supervisor itself, so it stopped it: nothing of the bus is left
    # (the fixture's teardown checks /dev/shm and processes too).
    assert buskit.supervisor_process(bus_paths) is None


def test_bench_measures_every_shmbus_path(bus_paths, tmp_path):
    """Every shmbus row (the table of modes), ping-pong, the sleeping consumer next to
    the semaphore floor and a fixed-rate run, with tiny counts: each reports numbers,
    and the bus is left clean. Correctness of the harness only, never speed."""
    plot = tmp_path / "bench.png"
    with_plot = _installed("matplotlib")
    done = buskit.run_cli(bus_paths, "bench", "--size", "64", "--count", "3000",
                          "--mode", "send/poll_many", "--mode", "send_many/poll_many", "--mode", "send/iterate",
                          "--batch", "16", "--round-trips", "200", "--warmup", "20", "--paced", "10",
                          "--rate", "2k", "--rate-seconds", "0.2", "--json",
                          *(["--plot", str(plot)] if with_plot else []), timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    result = json.loads(done.stdout)
    runs = {r["row"]: r for r in result["throughput"]}
    assert set(runs) == {"shmbus send / poll_many", "shmbus send_many(B) / poll_many", "shmbus send / for msg in c"}
    for run in runs.values():
        assert run["received"] == run["sent"] == 3000 and run["msg_per_s"] > 0 and not run["capped"]
    assert runs["shmbus send_many(B) / poll_many"]["batch"] == 16
    assert {r["row"] for r in result["latency"]} == {"shmbus (wait=spin, default)", "shmbus (wait=busy)"}
    assert all(r["round_trips"] == 200 and r["rtt_p50_us"] > 0 for r in result["latency"])
    sleeping = {r["row"]: r for r in result["sleeping"]}
    assert len(sleeping) == 2 and any(row.startswith("PROBE: posix semaphore") for row in sleeping)
    assert all(r["records"] == 10 and r["p50_us"] > 0 for r in sleeping.values())
    (rate,) = result["fixed_rate"]
    assert rate["key"] == rate["rate"] == 2000 and rate["sent"] == rate["received"] == 400
    assert rate["counted"] > 0 and rate["percentiles_us"]["99"] >= rate["percentiles_us"]["50"] > 0
    assert rate["histogram"] in ("hdr", "exact")
    assert {t["measure"] for t in result["targets"]} >= {
        "sleeping consumer one-way p50, shmbus / posix semaphore"}
    # One progress line per run, on stderr.
    progress = [line for line in done.stderr.decode().splitlines() if line.startswith("run 1/1 ")]
    assert len(progress) == 3 + 2 + 2 + 1, done.stderr.decode()
    if with_plot:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert buskit.supervisor_process(bus_paths) is None


def test_bench_plot_names_the_extra_when_matplotlib_is_missing(bus_paths, tmp_path):
    if _installed("matplotlib"):
        # Hide it: a module of that name that fails to import.
        (tmp_path / "matplotlib.py").write_text("raise ImportError('hidden by the test')\n")
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    else:
        env = {}
    done = buskit.run_cli(bus_paths, "bench", "--plot", str(tmp_path / "x.png"), env=env, timeout=60)
    assert done.returncode != 0
    assert PLOT_NEEDS_MATPLOTLIB in done.stderr.decode() and b"Traceback" not in done.stderr


def test_bench_reports_a_failing_run_as_an_error(bus_paths):
    done = buskit.run_cli(bus_paths, "bench", "--size", "64KiB", "--ring-size", "64KiB",
                          "--count", "10", "--no-latency", timeout=120)
    assert done.returncode != 0
    assert b"MessageTooLarge" in done.stderr and b"Traceback" not in done.stderr


def test_bench_prints_its_tables(bus_paths):
    done = buskit.run_cli(bus_paths, "bench", "--size", "64", "--count", "500", "--no-latency", timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode()
    assert "Throughput, 1 producer process -> 1 consumer process" in out and "shmbus send / poll_many" in out
    assert b"run 1/1 64 B shmbus send / poll_many: " in done.stderr
