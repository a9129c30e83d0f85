"""shmbus demo and shmbus bench, run as a user runs them, on a private bus."""
import json

import buskit


def test_demo_runs_the_main_job_and_checks_it(bus_paths):
    done = buskit.run_cli(bus_paths, "demo", timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode()
    assert "check passed" in out and "exactly once" in out
    assert "one-way p50" in out
    # It started the supervisor itself, so it stopped it: nothing of the bus is left
    # (the fixture's teardown checks /dev/shm and processes too).
    assert buskit.supervisor_process(bus_paths) is None


def test_bench_measures_throughput_and_latency(bus_paths):
    done = buskit.run_cli(bus_paths, "bench", "--size", "64", "--size", "1KiB", "--count", "20000",
                          "--round-trips", "500", "--warmup", "50", "--json", timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    result = json.loads(done.stdout)
    runs = {(r["transport"], r["record_bytes"]): r for r in result["throughput"]}
    for size in (64, 1024):
        run = runs[("shmbus send", size)]
        assert run["received"] == run["sent"] == 20000 and run["msg_per_s"] > 0
    assert {r["transport"] for r in result["latency"]} == {"shmbus (spin)", "shmbus (busy)"}
    assert buskit.supervisor_process(bus_paths) is None


def test_bench_reports_a_failing_run_as_an_error(bus_paths):
    done = buskit.run_cli(bus_paths, "bench", "--size", "64KiB", "--ring-size", "64KiB",
                          "--count", "10", "--no-latency", timeout=120)
    assert done.returncode != 0
    assert b"MessageTooLarge" in done.stderr and b"Traceback" not in done.stderr
