"""The measurements of shmbus._bench that `shmbus bench` does not run (idle cost, the
durable comparisons), the peers new to the bench, and the reporting: tiny counts,
correctness of the harness only (each reports numbers and cleans up), never speed."""
import importlib
import os
from array import array

import pytest

from shmbus._bench import durable, fixed_rate, harness, idle, peers, plot, report, shmbus_runs, suite



def _installed(module):
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False

def test_idle_cost_reads_the_supervisor_and_every_consumer(bus):
    cost = idle.shmbus_idle(bus, consumers=2, seconds=0.3, settle=0.1)
    assert cost.consumers == 2 and len(cost.consumers_cpu_s) == 2
    assert cost.seconds >= 0.3 and cost.supervisor_cpu_s >= 0 and cost.percent_of_core >= 0
    assert bus.topics() == {}   # its durable topics are deleted after the run


def test_durable_comparisons_report_and_clean_up(bus):
    bulk = durable.durable_bulk(bus, mib=2)
    assert bulk.nbytes == 2 << 20 and bulk.mb_per_s > 0
    dd = durable.dd_bulk(bus.data_dir, mib=2)
    assert dd.nbytes == 2 << 20 and dd.mb_per_s > 0
    for is_durable in (True, False):
        small = durable.small(bus, is_durable, count=2000)
        assert small.received == small.sent == 2000 and small.msg_per_s > 0
        assert small.transport == (durable.SMALL_DURABLE_ROW if is_durable else durable.SMALL_MEMORY_ROW)
    assert bus.topics() == {}
    assert not [name for name in os.listdir(bus.data_dir) if name.startswith("dd-")]


def test_queue_of_lists_sends_distinct_records():
    ep = peers.Endpoints()
    try:
        run = peers._queue_list_throughput(ep, 64, 1000, 30.0)
    finally:
        ep.close()
    assert run.received == run.sent == 1000 and run.batch == 64 and run.transport == peers.QUEUE_LISTS
    values = [b"x" * 60 + i.to_bytes(4, "little") for i in range(64)]
    assert len(set(values)) == 64   # what queue_list_producer puts: 64 distinct objects


@pytest.mark.skipif(not _installed("iceoryx2"), reason="iceoryx2 not installed (bench extra)")
def test_iceoryx2_peer_throughput_and_every_latency():
    ep = peers.Endpoints()
    try:
        run = peers._iceoryx2_throughput(ep, 1024, 2000, 30.0)
        assert run.received == run.sent == 2000 and not run.capped
        for measure in (peers._iceoryx2_busy_latency, peers._iceoryx2_event_latency):
            latency = measure(ep, 100, 10, 30.0)
            assert len(latency.rtt_ns) == 100 and latency.percentile_us(50) > 0
        paced = peers._iceoryx2_sleeping(ep, 10, 2, 0.002, 30.0)
        assert len(paced.one_way_ns) == 10 and paced.percentile_us(50) > 0
    finally:
        ep.close()


def test_missing_peers_are_left_out_with_a_note():
    ghost = peers.Peer("ghost", "no_such_module_for_shmbus_tests", "ghost-pkg")
    present, notes = peers.installed_peers(peers.PEERS[:1] + (ghost,))
    assert present == [peers.PEERS[0]]
    assert len(notes) == 1 and "pip install ghost-pkg" in notes[0]


def _synthetic_results():
    """Results of every kind, made by hand: the reporting without any process."""
    plan = suite.Plan(sizes=(64,), peers=(), rates=(1000,), runs=2)
    results = suite.Results(plan)

    def add(section, row, key, result):
        results.add(suite.Job(section, row, key, row, lambda: None), result)
    for run in range(2):
        for row, rate in (("shmbus send / poll_many", 1e6), ("shmbus send / for msg in c", 9e5),
                          ("pyzmq PUSH/PULL ipc://", 3e5)):
            add(suite.THROUGHPUT, row, 64, harness.Throughput(row, 64, 1, 1000, 1000, 1000, 0, 1000 / rate, False))
        add(suite.LATENCY, suite.SHMBUS_BUSY, None, harness.Latency("shmbus (busy)", 64, 0, [4000, 5000, 6000]))
        add(suite.LATENCY, peers.ICEORYX2_BUSY, None, harness.Latency("iox", 64, 0, [9000, 10000, 11000]))
        add(suite.SLEEPING, "shmbus send -> poll (wait=spin, default)", None,
            harness.OneWay("shmbus", 64, 2.0, 0, [40000, 41000, 45000]))
        add(suite.SLEEPING, "PROBE: posix semaphore post/wait + timestamp in shm (wake-up floor)", None,
            harness.OneWay("sem", 8, 2.0, 0, [20000, 21000, 30000]))
        produced = {"t0_ns": 0, "sent": 10, "last_ns": 9_000_000, "late_p99_ns": 100, "late_max_ns": 200}
        consumed = {"received": 10, "missed": 0,
                    "batches": array("q", [0, 5, 4_050_000, 5, 5, 9_020_000]).tobytes()}
        add(suite.RATE, fixed_rate.ROW, 1000, fixed_rate.summarize(fixed_rate.ROW, 1000, 0.01, 10, produced, consumed))
        add(suite.IDLE, idle.ROW, None, idle.IdleCost(idle.ROW, 10, 30.0, 0.03, [0.01] * 10))
        add(suite.DURABLE, durable.BULK_ROW, None, durable.Bandwidth(durable.BULK_ROW, 1 << 30, 3.0))
        add(suite.DURABLE, durable.DD_ROW, None, durable.Bandwidth(durable.DD_ROW, 1 << 30, 2.9))
    return results


def test_reports_every_section_and_the_targets():
    results = _synthetic_results()
    tables = report.tables(results)
    titles = [t.title for t in tables]
    assert titles[0].startswith("Issue 8's targets")
    text = "\n".join(report.markdown(t) for t in tables)
    for section in ("Throughput,", "Latency, 64 B ping-pong", "sleeping consumer", "coordinated-omission",
                    "Idle cost", "Durable"):
        assert section in text
    targets = {what: (value, met) for what, value, _, met in report.target_rows(results)}
    value, met = targets["64 B shmbus send / poll_many / pyzmq"]
    assert value == pytest.approx(1e6 / 3e5) and met
    value, met = targets["ping-pong one-way p50, shmbus wait=busy / iceoryx2 busy-poll"]
    assert value == pytest.approx(0.5) and met
    value, met = targets["sleeping consumer one-way p50, shmbus / posix semaphore"]
    assert value == pytest.approx(41 / 21) and not met
    assert targets["idle: supervisor + 10 waiting consumers, % of one core"][0] == pytest.approx(100 * 0.13 / 30)
    doc = report.document(results)
    assert len(doc["throughput"]) == 6 and {r["run"] for r in doc["throughput"]} == {1, 2}
    assert doc["fixed_rate"][0]["counted"] == 10 - int(10 * fixed_rate.WARMUP_FRACTION)


def test_fixed_rate_latency_is_from_the_intended_send_time():
    """Record k of a 1000/s schedule is due at k ms: a batch of records 0-4 handed off at
    4.05 ms waited 4.05, 3.05, ... 0.05 ms; none is measured from when it was sent."""
    produced = {"t0_ns": 0, "sent": 5, "last_ns": 4_000_000, "late_p99_ns": 0, "late_max_ns": 0}
    consumed = {"received": 5, "missed": 0,
                "batches": array("q", [0, 5, 4_050_000]).tobytes()}
    result = fixed_rate.summarize("t", 1000, 0.005, 5, produced, consumed)
    assert result.counted == 5
    assert result.max_us == pytest.approx(4050, rel=1e-3)
    assert result.percentiles_us["50"] == pytest.approx(2050, rel=1e-3)
    assert result.kept_rate


@pytest.mark.skipif(not _installed("matplotlib"), reason="matplotlib not installed (bench extra)")
def test_plot_draws_every_section(tmp_path):
    path = tmp_path / "run.png"
    plot.write(_synthetic_results(), str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_iteration_row_ends_when_lapped_and_with_several_producers(bus):
    """`for msg in c` blocks without a timeout: its producers' end markers (one per
    partition) end it even when the memory-only ring overwrote records before it read
    them, and with two producers on two partitions it ends only after every record."""
    iterate = shmbus_runs.MODES_BY_KEY["send/iterate"]
    lapped = shmbus_runs.shmbus_throughput(bus, 65536, 1000, ring_bytes=1 << 20, mode=iterate)
    assert lapped.sent == 1000 and not lapped.capped and not lapped.stalled
    assert lapped.received + lapped.missed + lapped.unaccounted == 1000
    two = shmbus_runs.shmbus_throughput(bus, 64, 5000, producers=2, partitions=2, mode=iterate)
    assert two.received == two.sent == 10000 and two.missed == 0 and not two.capped
    assert bus.topics() == {}
