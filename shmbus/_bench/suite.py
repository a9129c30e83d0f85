"""One benchmark run, the same for bench/run.py and `shmbus bench`: what to measure (a
Plan), the jobs it makes, and running them interleaved -- run 1 of everything, then
run 2, ... -- so a noisy stretch of the machine hits every transport rather than one.

A job is one measurement of one row (a transport, or a way of using shmbus) for one
key (a record size, a rate); a run of it returns a result record (harness.Throughput,
harness.Latency, harness.OneWay, fixed_rate.FixedRate, idle.IdleCost,
durable.Bandwidth). A job that fails is recorded and the run goes on.
"""
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .._errors import BenchmarkError
from . import durable, fixed_rate, idle, shmbus_runs, sleeping
from .peers import Endpoints, Peer, batch_for

THROUGHPUT, LATENCY, SLEEPING, RATE, IDLE, DURABLE = (
    "throughput", "latency", "sleeping", "fixed_rate", "idle", "durable")
SECTIONS = (THROUGHPUT, LATENCY, SLEEPING, RATE, IDLE, DURABLE)
SHMBUS_SPIN, SHMBUS_BUSY = "shmbus (wait=spin, default)", "shmbus (wait=busy)"


@dataclass
class Plan:
    """What one run measures. Zero or empty turns a section off."""

    sizes: Sequence[int] = (64, 1024, 65536)
    counts: Dict[int, int] = field(default_factory=dict)   # records per run by size (default by size)
    modes: Sequence[shmbus_runs.Mode] = shmbus_runs.MODES
    batch: Optional[int] = None          # records per call of the batched rows (default by size)
    producers: int = 1
    partitions: int = 1
    wait: str = "spin"                   # the shmbus consumers' wait in the throughput rows
    ring_bytes: Optional[int] = None     # shmbus ring per run (default: room for the run)
    max_ring: int = 1 << 30
    peers: Sequence[Peer] = ()
    latency: bool = True                 # ping-pong
    round_trips: int = 20_000
    warmup: int = 2_000
    sleeping_records: int = 2_000        # latency to a sleeping consumer, records per run
    rates: Sequence[int] = ()            # fixed-rate corrected latency, records/s
    rate_seconds: float = 2.0
    idle_seconds: float = 0.0            # idle cost
    idle_consumers: int = idle.CONSUMERS
    durable_mib: int = 0                 # the durable comparisons (bulk volume; 0: off)
    durable_count: int = 1_000_000       # 64 B records of the durable / memory-only pair
    runs: int = 1
    time_cap: float = 30.0

    def count(self, size):
        return self.counts.get(size) or shmbus_runs.default_count(size)

    def batch_for(self, size):
        return self.batch or batch_for(size)


@dataclass
class Job:
    section: str
    row: str
    key: Any                 # the record size, the rate, or None
    label: str               # for the progress line
    run: Callable[[], Any]


@dataclass
class Results:
    """Every run's result, by section, row and key, in the order first seen."""

    plan: Plan
    by_section: Dict[str, Dict[str, Dict[Any, List[Any]]]] = field(default_factory=dict)
    failures: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    seconds: float = 0.0
    load_before: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: Tuple[float, float, float] = (0.0, 0.0, 0.0)

    def add(self, job, result):
        self.by_section.setdefault(job.section, {}).setdefault(job.row, {}).setdefault(job.key, []).append(result)

    def rows(self, section):
        return self.by_section.get(section, {})

    def get(self, section, row, key=None):
        return self.by_section.get(section, {}).get(row, {}).get(key, [])


def jobs(plan, bus, endpoints):
    """The jobs of one run, in the order they run."""
    cap = plan.time_cap
    out: List[Job] = []
    for size in plan.sizes:
        count = plan.count(size)
        for mode in plan.modes:
            batch = plan.batch_for(size) if mode.batched else None
            ring = plan.ring_bytes or shmbus_runs.ring_bytes_for(
                size, count * plan.producers // plan.partitions, cap=plan.max_ring)
            out.append(Job(THROUGHPUT, mode.row, size, f"{_size(size)} {mode.row}",
                           _bind(shmbus_runs.shmbus_throughput, bus, size, count, producers=plan.producers,
                                 batch=batch, partitions=plan.partitions, ring_bytes=ring, wait=plan.wait,
                                 time_cap=cap, mode=mode)))
        for peer in plan.peers:
            if peer.throughput is not None:
                out.append(Job(THROUGHPUT, peer.throughput_row, size, f"{_size(size)} {peer.throughput_row}",
                               _bind(peer.throughput, endpoints, size, count, cap)))
    if plan.latency:
        for row, wait in ((SHMBUS_SPIN, "spin"), (SHMBUS_BUSY, "busy")):
            out.append(Job(LATENCY, row, None, f"latency {row}",
                           _bind(shmbus_runs.shmbus_latency, bus, wait=wait, round_trips=plan.round_trips,
                                 warmup=plan.warmup, time_cap=cap)))
        for peer in plan.peers:
            for row, run in peer.latency_rows:
                out.append(Job(LATENCY, row, None, f"latency {row}",
                               _bind(run, endpoints, plan.round_trips, plan.warmup, cap)))
    if plan.sleeping_records:
        records = plan.sleeping_records
        cap_s = max(cap, records * sleeping.INTERVAL * 2 + 10)
        out.append(Job(SLEEPING, sleeping.SHMBUS_ROW, None, f"sleeping consumer {sleeping.SHMBUS_ROW}",
                       _bind(sleeping.shmbus_sleeping, bus, records=records, time_cap=cap_s)))
        out.append(Job(SLEEPING, sleeping.SEMAPHORE_ROW, None, f"sleeping consumer {sleeping.SEMAPHORE_ROW}",
                       lambda: sleeping.semaphore_sleeping(endpoints.unique("sem"), records=records,
                                                           time_cap=cap_s)))
        for peer in plan.peers:
            for row, run in peer.sleeping_rows:
                out.append(Job(SLEEPING, row, None, f"sleeping consumer {row}",
                               _bind(run, endpoints, records, sleeping.WARMUP, sleeping.INTERVAL, cap_s)))
    for rate in plan.rates:
        out.append(Job(RATE, fixed_rate.ROW, rate, f"fixed rate {rate:,}/s {fixed_rate.ROW}",
                       _bind(fixed_rate.shmbus_fixed_rate, bus, rate, seconds=plan.rate_seconds,
                             time_cap=max(cap, plan.rate_seconds * 3 + 10))))
    if plan.idle_seconds:
        out.append(Job(IDLE, idle.ROW, None, f"idle {plan.idle_consumers} consumers, {plan.idle_seconds:g} s",
                       _bind(idle.shmbus_idle, bus, consumers=plan.idle_consumers, seconds=plan.idle_seconds)))
    if plan.durable_mib:
        out.append(Job(DURABLE, durable.BULK_ROW, None, f"durable {plan.durable_mib} MiB of 64 KiB",
                       _bind(durable.durable_bulk, bus, plan.durable_mib)))
        out.append(Job(DURABLE, durable.DD_ROW, None, f"dd {plan.durable_mib} MiB",
                       _bind(durable.dd_bulk, bus.data_dir, plan.durable_mib)))
        for row, is_durable in ((durable.SMALL_DURABLE_ROW, True), (durable.SMALL_MEMORY_ROW, False)):
            out.append(Job(DURABLE, row, None, row,
                           _bind(durable.small, bus, is_durable, count=plan.durable_count, time_cap=cap)))
    return out


def _bind(fn, *args, **kwargs):
    return lambda: fn(*args, **kwargs)


def _size(size):
    return f"{size // 1024} KiB" if size >= 1024 and size % 1024 == 0 else f"{size} B"


def run(plan, bus, progress=None, describe=None):
    """Run every job of `plan` plan.runs times, interleaved, on `bus` (and the peers on
    their own endpoints); progress(line) after each. Returns Results."""
    results = Results(plan)
    results.load_before = os.getloadavg()
    endpoints = Endpoints()
    began = time.monotonic()
    try:
        planned = jobs(plan, bus, endpoints)
        for run_index in range(plan.runs):
            for job in planned:
                label = f"run {run_index + 1}/{plan.runs} {job.label}"
                try:
                    result = job.run()
                except Exception as e:  # one failed job (a worker's error, a peer's setup) ends only itself
                    why = str(e) if isinstance(e, BenchmarkError) else f"{type(e).__name__}: {e}"
                    results.failures.append(f"{label}: {why}")
                    if progress is not None:
                        progress(f"{label}: FAILED: {why.splitlines()[0]}")
                    continue
                results.add(job, result)
                if progress is not None:
                    progress(f"{label}: {describe(result) if describe else result}")
    finally:
        endpoints.close()
    results.seconds = time.monotonic() - began
    results.load_after = os.getloadavg()
    return results
