"""The process harness every benchmark runs on, shmbus's and its peers' alike (bench/run.py
uses it for the peers), so every transport is measured the same way; and the records
of its results. Nothing here knows shmbus: its own workers are in shmbus_runs.py.

How a measurement runs: every worker is a fresh "spawn" process (nothing is
inherited across fork, as shmbus requires). Each does its setup (connect, map the
rings, open sockets), then waits at a shared barrier; the clock starts when the
barrier opens. Throughput is counted at the consumer: records received, divided by
the time from the barrier to the last record. Latency is a 64 B ping-pong timed
by the pinging process, one-way = RTT / 2.

Nothing here can hang: every wait has a timeout, each run has a time cap after
which the workers stop and report what they did, and the parent kills whatever
has not reported by the cap plus a grace period.
"""
import importlib
import multiprocessing
import queue
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

from .._errors import BenchmarkError

# Seconds a worker may take to start (interpreter, imports, connect, mmap) before
# the run is abandoned: spawn start-up on a loaded 2-core machine is ~0.5 s.
SETUP_TIMEOUT = 30.0
# What the parent waits past a run's time cap for results before killing workers.
GRACE = 10.0
# Records sent between two looks at the clock, so the deadline check costs nothing.
CHECK_EVERY = 1024
# A consumer that gets nothing for this long while records are still due stops
# and reports them as never arrived: in a stream this fast, a 5 s silence is a
# lost record, not a slow one.
IDLE_TIMEOUT = 5.0

SPAWN = multiprocessing.get_context("spawn")


def optional(module):
    """Import a package the benchmarks may use but shmbus does not need (the `bench`
    extra: peers, hdrhistogram, matplotlib). Through importlib, so type checking does
    not need it installed; ImportError when it is not."""
    return importlib.import_module(module)


# ---- results ----

@dataclass
class Throughput:
    """One throughput run, counted at the consumer."""

    transport: str
    record_bytes: int        # value bytes per record
    producers: int
    target: int              # records the producers were asked to send, in all
    sent: Optional[int]      # records the producers report sent (None: a producer did not report)
    received: int            # records the consumer received
    missed: int              # records the consumer never saw (overwritten, dropped, lost)
    seconds: float           # barrier to last record, at the consumer
    capped: bool             # the run hit its time cap before every record arrived
    batch: Optional[int] = None   # records per send call (None: one per call)
    stalled: bool = False    # the consumer stopped after IDLE_TIMEOUT without a record: the
                             # rest never arrived

    @property
    def unaccounted(self):
        """Records the producers sent that the consumer neither received nor was told
        it missed (0 when the producers did not report)."""
        if self.sent is None or self.stalled:
            return 0
        return max(0, self.sent - self.received - self.missed)

    @property
    def msg_per_s(self):
        return self.received / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_s(self):
        return self.msg_per_s * self.record_bytes / 1e6

    def as_dict(self):
        d = asdict(self)
        d["msg_per_s"] = self.msg_per_s
        d["mb_per_s"] = self.mb_per_s
        d["unaccounted"] = self.unaccounted
        return d


def nearest_rank(ordered, p):
    """The nearest-rank p-th percentile of an ascending list (nan if it is empty)."""
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100)
    return ordered[min(len(ordered), int(rank)) - 1]


@dataclass
class Latency:
    """One ping-pong run: round-trip times in nanoseconds, as measured by the pinger."""

    transport: str
    record_bytes: int
    warmup: int
    rtt_ns: List[int] = field(repr=False)

    def percentile_us(self, p):
        """Nearest-rank percentile of the RTT, in microseconds."""
        return nearest_rank(sorted(self.rtt_ns), p) / 1000

    def one_way_us(self):
        """The samples as one-way times (RTT / 2), microseconds, ascending: for plots."""
        return [rtt / 2000 for rtt in sorted(self.rtt_ns)]

    def summary(self):
        """RTT p50/p99/p99.9/max and one-way (RTT/2) p50/p99, in microseconds."""
        p50, p99, p999 = self.percentile_us(50), self.percentile_us(99), self.percentile_us(99.9)
        return {
            "transport": self.transport, "record_bytes": self.record_bytes,
            "round_trips": len(self.rtt_ns), "warmup": self.warmup,
            "rtt_p50_us": p50, "rtt_p99_us": p99, "rtt_p999_us": p999,
            "rtt_max_us": max(self.rtt_ns) / 1000 if self.rtt_ns else float("nan"),
            "one_way_p50_us": p50 / 2, "one_way_p99_us": p99 / 2,
        }


@dataclass
class OneWay:
    """One run of one-way latencies in nanoseconds: each record's hand-off to the consumer
    minus the timestamp its producer gave it (both CLOCK_REALTIME, one host)."""

    transport: str
    record_bytes: int
    interval_ms: float          # the pace the records were sent at
    warmup: int                 # records sent before these, not counted
    one_way_ns: List[int] = field(repr=False)

    def percentile_us(self, p):
        return nearest_rank(sorted(self.one_way_ns), p) / 1000

    def one_way_us(self):
        return [ns / 1000 for ns in sorted(self.one_way_ns)]

    def summary(self):
        ordered = sorted(self.one_way_ns)
        return {
            "transport": self.transport, "record_bytes": self.record_bytes, "interval_ms": self.interval_ms,
            "records": len(ordered), "warmup": self.warmup,
            "p50_us": nearest_rank(ordered, 50) / 1000, "p99_us": nearest_rank(ordered, 99) / 1000,
            "p999_us": nearest_rank(ordered, 99.9) / 1000,
            "max_us": ordered[-1] / 1000 if ordered else float("nan"),
        }


def format_rate(x):
    """1234567 -> '1.23M', 45600 -> '45.6k': records per second, as the tables print them."""
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


# ---- the process harness ----

def _worker(role, target, args, barrier, results, time_cap):
    """Body of every worker process: run target, report (role, ok, value) once."""
    try:
        value = target(*args, barrier=barrier, time_cap=time_cap)
        results.put((role, True, value))
    except BaseException as e:  # report everything, Ctrl-C included: the parent waits for it
        results.put((role, False, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


def run_workers(workers, time_cap, required=None, parent_closes=(), on_wait=None):
    """Run workers [(role, target, args)] in spawn processes that meet at one barrier.

    target(*args, barrier=, time_cap=) does its setup, calls wait_start(barrier),
    then works for at most time_cap seconds and returns a picklable value.
    Returns {role: value}. Raises BenchmarkError if a worker fails or a role in
    `required` (default: all) has not reported by SETUP_TIMEOUT + time_cap + GRACE;
    workers still running after that are terminated, then killed. `parent_closes`
    are handles (pipe ends) the parent closes once the workers hold their copies,
    so a worker blocked on a pipe sees EOF when its peer exits. `on_wait()` is
    called about every 0.1 s while the parent waits (a live progress display).
    """
    roles = [role for role, _, _ in workers]
    required = set(roles if required is None else required)
    barrier = SPAWN.Barrier(len(workers))
    results = SPAWN.Queue()
    processes = [
        SPAWN.Process(target=_worker, args=(role, target, args, barrier, results, time_cap),
                       name=f"shmbus-bench-{role}", daemon=True)
        for role, target, args in workers
    ]
    for process in processes:
        process.start()
    for handle in parent_closes:
        handle.close()
    values: Dict[str, Any] = {}
    errors: List[str] = []
    deadline = time.monotonic() + SETUP_TIMEOUT + time_cap + GRACE
    try:
        while not required.issubset(values) and not errors:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if on_wait is not None:
                on_wait()
            try:
                role, ok, value = results.get(timeout=min(remaining, 0.1))
            except queue.Empty:
                # A worker that died without reporting (segfault, OOM kill) never will.
                dead = [p.name for p in processes if p.exitcode not in (None, 0)]
                if dead and results.empty():
                    errors.append(f"worker(s) {', '.join(dead)} died without reporting")
                continue
            if ok:
                values[role] = value
            else:
                errors.append(f"{role}: {value}")
        # The optional roles (producers blocked on a full pipe after the consumer
        # stopped) get a short moment, then are stopped.
        end = time.monotonic() + 2.0
        while len(values) + len(errors) < len(roles) and time.monotonic() < end:
            try:
                role, ok, value = results.get(timeout=0.1)
            except queue.Empty:
                if all(p.exitcode is not None for p in processes):
                    break
                continue
            if ok:
                values[role] = value
    finally:
        _stop_processes(processes)
        results.close()
        results.join_thread()
    if errors:
        raise BenchmarkError(errors[0].strip())
    missing = required - set(values)
    if missing:
        raise BenchmarkError(f"no result from {', '.join(sorted(missing))} within "
                             f"{SETUP_TIMEOUT + time_cap + GRACE:.0f}s")
    return values


def _stop_processes(processes):
    for process in processes:
        process.join(timeout=1.0)
    for process in processes:
        if process.is_alive():
            process.terminate()
            process.join(timeout=2.0)
        if process.is_alive():
            process.kill()
            process.join(timeout=2.0)


def wait_start(barrier):
    """Meet the other workers; the clock starts when this returns."""
    barrier.wait(timeout=SETUP_TIMEOUT)


def throughput(transport, producer, producer_args, consumer, consumer_args, record_bytes, count,
               producers=1, time_cap=60.0, batch=None, parent_closes=()):
    """One throughput run of any transport.

    producer(*producer_args, index, record_bytes, count, barrier=, time_cap=) -> records sent
    consumer(*consumer_args, total, record_bytes, barrier=, time_cap=) ->
        {"received", "missed", "seconds", "capped", and optionally "stalled"}
    """
    total = count * producers
    workers = [("consumer", consumer, (*consumer_args, total, record_bytes))]
    workers += [(f"producer{i}", producer, (*producer_args, i, record_bytes, count))
                for i in range(producers)]
    values = run_workers(workers, time_cap, required=["consumer"], parent_closes=parent_closes)
    got = values["consumer"]
    sent = [values.get(f"producer{i}") for i in range(producers)]
    sent_total = None if None in sent else sum(sent)
    return Throughput(
        transport=transport, record_bytes=record_bytes, producers=producers, target=total,
        sent=sent_total, received=got["received"], missed=got["missed"], seconds=got["seconds"],
        # The producers sending fewer than asked is a cap too, whatever the consumer saw.
        capped=got["capped"] or (sent_total is not None and sent_total < total), batch=batch,
        stalled=got.get("stalled", False),
    )


def pingpong(transport, pinger, pinger_args, ponger, ponger_args, record_bytes=64,
             round_trips=20_000, warmup=2_000, time_cap=60.0, parent_closes=()):
    """One ping-pong run of any transport.

    pinger(*pinger_args, record_bytes, round_trips, warmup, barrier=, time_cap=) -> [rtt_ns]
        (the timed round trips only; it sends warmup + round_trips pings)
    ponger(*ponger_args, record_bytes, round_trips + warmup, barrier=, time_cap=) -> echoed
    """
    workers = [
        ("ponger", ponger, (*ponger_args, record_bytes, round_trips + warmup)),
        ("pinger", pinger, (*pinger_args, record_bytes, round_trips, warmup)),
    ]
    values = run_workers(workers, time_cap, required=["pinger"], parent_closes=parent_closes)
    return Latency(transport, record_bytes, warmup, values["pinger"])
