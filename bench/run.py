"""shmbus against the transports a Python user would pick instead, in one run.

    python bench/run.py                 # full: 3 runs, 1,000,000 / 500,000 / 100,000 records
    python bench/run.py --quick         # counts divided by 10
    python bench/run.py --json out.json

Throughput: one producer process -> one consumer process, per-record sends of
64 B / 1 KiB / 64 KiB values, counted at the consumer. Latency: a 64 B ping-pong
between two processes, one-way = RTT / 2. Medians of --runs runs, the spread, and
the ratios shmbus / peer. See bench/README.md for how to read them.

Every worker is a spawn process that meets the others at a barrier (the process
harness is shmbus._bench.harness, so shmbus and its peers are measured by the same
code). Each run has a time cap; what does not report by then is killed.
"""
import argparse
import functools
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

from shmbus._bench import harness, shmbus_runs
from shmbus._errors import BenchmarkError

SIZES = (64, 1024, 65536)
# The batch of the shmbus send_many row, per size: what fits a 64 KiB-ish write.
BATCH = {64: 64, 1024: 64, 65536: 16}
CHECK_EVERY = harness.CHECK_EVERY
# A peer producer sends this after its last record (capped or not): values are
# never empty, so the consumer can tell it apart and stop without a timeout.
END = b""


# ---- multiprocessing.Queue ----

def _produce(send, record_bytes, count, barrier, time_cap):
    """The peers' producer loop: one call per record, a time cap checked every
    CHECK_EVERY records, then the end marker. Returns how many were sent."""
    payload = b"x" * record_bytes
    harness.wait_start(barrier)
    deadline = time.monotonic() + time_cap
    sent = 0
    while sent < count and time.monotonic() < deadline:
        n = min(CHECK_EVERY, count - sent)
        for _ in range(n):
            send(payload)
        sent += n
    send(END)
    return sent


def queue_producer(q, index, record_bytes, count, *, barrier, time_cap):
    # Exiting waits for the feeder thread to flush; a consumer that stopped at its
    # cap never drains it, and the parent kills this process after a grace period.
    return _produce(q.put, record_bytes, count, barrier, time_cap)


def queue_consumer(q, producers, total, record_bytes, *, barrier, time_cap):
    return _consume(q.get, producers, total, barrier, time_cap)


def _consume(recv, producers, total, barrier, time_cap):
    """The peers' consumer loop: one blocking receive per record, end markers counted.
    recv returns None after harness.IDLE_TIMEOUT without a record (for the peers whose
    receive takes a timeout): the records still due never arrived."""
    harness.wait_start(barrier)
    start = time.perf_counter()
    deadline = time.monotonic() + time_cap
    received = ended = 0
    last = start
    capped = stalled = False
    while received < total and ended < producers:
        value = recv()
        if value is None:
            stalled = True
            break
        if not value:
            ended += 1
            continue
        received += 1
        last = time.perf_counter()
        if received % CHECK_EVERY == 0 and time.monotonic() > deadline:
            capped = True
            break
    capped = capped or (received < total and not stalled)
    return {"received": received, "missed": total - received if stalled else 0,
            "seconds": last - start, "capped": capped, "stalled": stalled}


def queue_pinger(q_ping, q_pong, record_bytes, round_trips, warmup, *, barrier, time_cap):
    return _ping(q_ping.put, q_pong.get, record_bytes, round_trips, warmup, barrier)


def queue_ponger(q_ping, q_pong, record_bytes, total, *, barrier, time_cap):
    return _pong(q_ping.get, q_pong.put, total, barrier)


def _ping(send, recv, record_bytes, round_trips, warmup, barrier):
    """The peers' pinger: blocking receives (no per-call timeout, which would add a
    syscall); the parent's time cap bounds it."""
    perf_ns = time.perf_counter_ns
    payload = b"p" * record_bytes
    harness.wait_start(barrier)
    for _ in range(warmup):
        send(payload)
        recv()
    rtts = []
    for _ in range(round_trips):
        start = perf_ns()
        send(payload)
        recv()
        rtts.append(perf_ns() - start)
    return rtts


def _pong(recv, send, total, barrier):
    harness.wait_start(barrier)
    for _ in range(total):
        send(recv())
    return total


# ---- multiprocessing.Pipe ----

def pipe_producer(conn, index, record_bytes, count, *, barrier, time_cap):
    return _produce(conn.send_bytes, record_bytes, count, barrier, time_cap)


def pipe_consumer(conn, producers, total, record_bytes, *, barrier, time_cap):
    return _consume(conn.recv_bytes, producers, total, barrier, time_cap)


def pipe_pinger(conn, record_bytes, round_trips, warmup, *, barrier, time_cap):
    return _ping(conn.send_bytes, conn.recv_bytes, record_bytes, round_trips, warmup, barrier)


def pipe_ponger(conn, record_bytes, total, *, barrier, time_cap):
    return _pong(conn.recv_bytes, conn.send_bytes, total, barrier)


# ---- pyzmq PUSH/PULL over ipc:// ----

def zmq_producer(endpoint, index, record_bytes, count, *, barrier, time_cap):
    import zmq
    context = zmq.Context()
    sock = context.socket(zmq.PUSH)
    sock.connect(endpoint)
    sent = _produce(sock.send, record_bytes, count, barrier, time_cap)
    # Closing drops what is still queued unless it lingers: deliver it, within the cap.
    sock.close(linger=int(time_cap * 1000))
    context.term()
    return sent


def zmq_consumer(endpoint, producers, total, record_bytes, *, barrier, time_cap):
    import zmq
    context = zmq.Context()
    sock = context.socket(zmq.PULL)
    sock.bind(endpoint)
    # A receive timeout set once costs nothing per call and bounds every wait.
    sock.setsockopt(zmq.RCVTIMEO, int(min(harness.IDLE_TIMEOUT, time_cap) * 1000))

    def recv():
        try:
            return sock.recv()
        except zmq.Again:
            return None
    try:
        return _consume(recv, producers, total, barrier, time_cap)
    finally:
        sock.close(linger=0)
        context.term()


def zmq_pinger(ping_endpoint, pong_endpoint, record_bytes, round_trips, warmup, *, barrier,
               time_cap):
    import zmq
    context = zmq.Context()
    out, into = context.socket(zmq.PUSH), context.socket(zmq.PULL)
    into.bind(pong_endpoint)
    out.connect(ping_endpoint)
    into.setsockopt(zmq.RCVTIMEO, int(time_cap * 1000))
    try:
        return _ping(out.send, into.recv, record_bytes, round_trips, warmup, barrier)
    finally:
        out.close(linger=0)
        into.close(linger=0)
        context.term()


def zmq_ponger(ping_endpoint, pong_endpoint, record_bytes, total, *, barrier, time_cap):
    import zmq
    context = zmq.Context()
    out, into = context.socket(zmq.PUSH), context.socket(zmq.PULL)
    into.bind(ping_endpoint)
    out.connect(pong_endpoint)
    into.setsockopt(zmq.RCVTIMEO, int(time_cap * 1000))
    try:
        return _pong(into.recv, out.send, total, barrier)
    finally:
        out.close(linger=1000)
        into.close(linger=0)
        context.term()


# ---- faster-fifo ----

def ff_producer(q, index, record_bytes, count, *, barrier, time_cap):
    return _produce(functools.partial(q.put, timeout=time_cap), record_bytes, count, barrier, time_cap)


def ff_consumer(q, producers, total, record_bytes, *, barrier, time_cap):
    import faster_fifo

    def get():
        try:
            return q.get(timeout=min(harness.IDLE_TIMEOUT, time_cap))
        except faster_fifo.Empty:
            return None
    return _consume(get, producers, total, barrier, time_cap)


def ff_pinger(q_ping, q_pong, record_bytes, round_trips, warmup, *, barrier, time_cap):
    def get():
        return q_pong.get(timeout=time_cap)
    return _ping(q_ping.put, get, record_bytes, round_trips, warmup, barrier)


def ff_ponger(q_ping, q_pong, record_bytes, total, *, barrier, time_cap):
    def get():
        return q_ping.get(timeout=time_cap)
    return _pong(get, q_pong.put, total, barrier)


# ---- one run of each transport ----

class Peers:
    """Makes each peer's endpoints for one run, runs it through the shared harness."""

    def __init__(self, time_cap):
        self.time_cap = time_cap
        self.ctx = harness.SPAWN
        self.sockets = tempfile.mkdtemp(prefix="shmbus-bench-ipc-")
        self._n = 0

    def close(self):
        shutil.rmtree(self.sockets, ignore_errors=True)

    def endpoint(self):
        self._n += 1
        return f"ipc://{self.sockets}/{self._n}.sock"

    def throughput(self, name, size, count):
        cap = self.time_cap
        if name == "multiprocessing.Queue put/get":
            q = self.ctx.Queue()
            return harness.throughput(name, queue_producer, (q,), queue_consumer, (q, 1), size, count,
                                      time_cap=cap)
        if name == "multiprocessing.Pipe send_bytes/recv_bytes":
            receiver, sender = self.ctx.Pipe(duplex=False)
            return harness.throughput(name, pipe_producer, (sender,), pipe_consumer, (receiver, 1), size,
                                      count, time_cap=cap, parent_closes=(receiver, sender))
        if name == "pyzmq PUSH/PULL ipc://":
            endpoint = self.endpoint()
            return harness.throughput(name, zmq_producer, (endpoint,), zmq_consumer, (endpoint, 1), size,
                                      count, time_cap=cap)
        if name == "faster-fifo put/get":
            import faster_fifo
            q = faster_fifo.Queue(max_size_bytes=FF_BYTES)
            return harness.throughput(name, ff_producer, (q,), ff_consumer, (q, 1), size, count,
                                      time_cap=cap)
        raise ValueError(name)

    def latency(self, name, round_trips, warmup):
        kw = dict(record_bytes=64, round_trips=round_trips, warmup=warmup, time_cap=self.time_cap)
        if name == "multiprocessing.Queue":
            args = (self.ctx.Queue(), self.ctx.Queue())
            return harness.pingpong(name, queue_pinger, args, queue_ponger, args, **kw)
        if name == "multiprocessing.Pipe (bytes)":
            a, b = self.ctx.Pipe(duplex=True)
            return harness.pingpong(name, pipe_pinger, (a,), pipe_ponger, (b,), parent_closes=(a, b), **kw)
        if name == "pyzmq PUSH/PULL ipc://":
            args = (self.endpoint(), self.endpoint())
            return harness.pingpong(name, zmq_pinger, args, zmq_ponger, args, **kw)
        if name == "faster-fifo":
            import faster_fifo
            args = (faster_fifo.Queue(max_size_bytes=FF_BYTES), faster_fifo.Queue(max_size_bytes=FF_BYTES))
            return harness.pingpong(name, ff_pinger, args, ff_ponger, args, **kw)
        raise ValueError(name)


# faster-fifo's own default buffer (1 MB): the library's out-of-the-box behaviour.
FF_BYTES = 1_000_000

PEER_THROUGHPUT = ("multiprocessing.Queue put/get", "multiprocessing.Pipe send_bytes/recv_bytes",
                   "pyzmq PUSH/PULL ipc://", "faster-fifo put/get")
PEER_LATENCY = ("multiprocessing.Queue", "multiprocessing.Pipe (bytes)", "pyzmq PUSH/PULL ipc://",
                "faster-fifo")
SHMBUS_SEND = "shmbus send / poll_many"
SHMBUS_BATCH = "shmbus send_many(B) / poll_many"
SHMBUS_SPIN, SHMBUS_BUSY = "shmbus (wait=spin, default)", "shmbus (wait=busy)"


def available(name):
    """Peers whose package is missing are left out (pip install -e '.[bench]')."""
    module = {"pyzmq": "zmq", "faster-fifo": "faster_fifo"}.get(name.split()[0])
    if module is None:
        return True
    try:
        __import__(module)
        return True
    except ImportError:
        return False


# ---- formatting ----

def mbps(x):
    return f"{x:.1f}"


def micros(x):
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def size_label(size):
    return f"{size // 1024} KiB" if size >= 1024 else f"{size}B"


def span(low, high, fmt="{}"):
    """'3' or '3-5': a range across runs, collapsed when all runs agree."""
    return fmt.format(low) if fmt.format(low) == fmt.format(high) else f"{fmt.format(low)}-{fmt.format(high)}"


def throughput_table(results, sizes):
    """results: {row: {size: [Throughput]}} -> markdown lines."""
    head = "| transport | " + " | ".join(f"{size_label(s)} msg/s | MB/s" for s in sizes)
    head += " | spread (min-max msg/s, %) | notes |"
    lines = [head, "|" + "---|" * (2 + 2 * len(sizes) + 1)]
    for row, by_size in results.items():
        cells, spreads, notes = [], [], []
        for size in sizes:
            runs = by_size.get(size) or []
            if not runs:
                cells += ["n/a", "n/a"]
                spreads.append("-")
                continue
            rates = [r.msg_per_s for r in runs]
            med = statistics.median(rates)
            cells += [harness.format_rate(med), mbps(med * size / 1e6)]
            spreads.append(f"{100 * (max(rates) - min(rates)) / med:.0f}" if med else "-")
            capped = [r for r in runs if r.capped]
            if capped:
                got = [r.received for r in capped]
                notes.append(f"{size_label(size)} time-capped in {len(capped)}/{len(runs)} run(s) "
                             f"(received {span(min(got), max(got))} of {capped[0].target})")
            stalled = [r.missed for r in runs if r.stalled]
            if stalled:
                notes.append(f"{size_label(size)} {span(min(stalled), max(stalled))} of {runs[0].target} "
                             f"records never arrived in {len(stalled)}/{len(runs)} run(s)")
            lost = [r.missed / r.target for r in runs if r.missed and not r.stalled]
            if lost:
                notes.append(f"{size_label(size)} overwritten before read "
                             f"{span(100 * min(lost), 100 * max(lost), '{:.0f}')}% in {len(lost)}/{len(runs)} run(s)")
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {'/'.join(spreads)} | {'; '.join(notes)} |")
    return lines


def latency_table(results):
    """results: {row: [Latency]} -> markdown lines (medians across runs)."""
    lines = ["| transport | RTT p50 | RTT p99 | RTT p99.9 | RTT max | one-way p50 (RTT/2) | "
             "one-way p99 (RTT/2) | p50 range across runs |",
             "|---|---|---|---|---|---|---|---|"]
    for row, runs in results.items():
        if not runs:
            lines.append(f"| {row} | n/a | n/a | n/a | n/a | n/a | n/a | n/a |")
            continue
        s = [r.summary() for r in runs]

        def med(key):
            return statistics.median(x[key] for x in s)
        p50s = [x["rtt_p50_us"] for x in s]
        lines.append(f"| {row} | {micros(med('rtt_p50_us'))} | {micros(med('rtt_p99_us'))} | "
                     f"{micros(med('rtt_p999_us'))} | {micros(med('rtt_max_us'))} | "
                     f"{micros(med('one_way_p50_us'))} | {micros(med('one_way_p99_us'))} | "
                     f"{micros(min(p50s))}-{micros(max(p50s))} |")
    return lines


def ratio_table(tput, lat, sizes):
    """shmbus / peer from the medians of this run: throughput (msg/s) and latency (RTT p50)."""
    def median_rate(row, size):
        runs = tput.get(row, {}).get(size) or []
        return statistics.median(r.msg_per_s for r in runs) if runs else None

    def median_p50(row):
        runs = lat.get(row) or []
        return statistics.median(r.percentile_us(50) for r in runs) if runs else None

    head = "| peer | " + " | ".join(f"{size_label(s)} msg/s shmbus/peer" for s in sizes)
    head += " | RTT p50 shmbus(spin)/peer | RTT p50 shmbus(busy)/peer |"
    lines = [head, "|" + "---|" * (1 + len(sizes) + 2)]
    peers = [(t, l) for t, l in zip(PEER_THROUGHPUT, PEER_LATENCY) if t in tput or l in lat]
    for t_row, l_row in peers:
        cells = []
        for size in sizes:
            ours, theirs = median_rate(SHMBUS_SEND, size), median_rate(t_row, size)
            cells.append(f"{ours / theirs:.2f}x" if ours and theirs else "n/a")
        for ours_row in (SHMBUS_SPIN, SHMBUS_BUSY):
            ours, theirs = median_p50(ours_row), median_p50(l_row)
            cells.append(f"{ours / theirs:.3f}x" if ours and theirs else "n/a")
        lines.append(f"| {t_row.split(' put')[0].split(' send')[0]} | " + " | ".join(cells) + " |")
    return lines


# ---- main ----

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="divide the record counts by 10")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (default 3)")
    parser.add_argument("--sizes", default="64,1024,65536", help="value sizes in bytes (default 64,1024,65536)")
    parser.add_argument("--round-trips", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--time-cap", type=float, default=30.0, help="seconds per run before it is cut short")
    parser.add_argument("--max-ring", type=int, default=1 << 30,
                        help="largest shmbus ring per run, bytes (default 1 GiB); runs that need more "
                             "use this and report what the memory-only ring overwrote")
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--only", default=None, help="comma-separated substrings: run only matching rows")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write every run's figures here")
    args = parser.parse_args(argv)

    sizes = [int(s) for s in args.sizes.split(",")]
    divisor = 10 if args.quick else 1
    counts = {size: shmbus_runs.default_count(size) // divisor for size in sizes}
    round_trips, warmup = args.round_trips // divisor, args.warmup // divisor

    def wanted(row):
        if args.only is None:
            return True
        return any(part.strip().lower() in row.lower() for part in args.only.split(","))

    t_rows = [r for r in (SHMBUS_SEND, SHMBUS_BATCH) + PEER_THROUGHPUT if wanted(r) and available(r)]
    l_rows = [r for r in (SHMBUS_SPIN, SHMBUS_BUSY) + PEER_LATENCY if wanted(r) and available(r)]
    if args.no_throughput:
        t_rows = []
    if args.no_latency:
        l_rows = []
    tput = {row: {size: [] for size in sizes} for row in t_rows}
    lat = {row: [] for row in l_rows}
    failures = []

    data_dir = tempfile.mkdtemp(prefix="shmbus-bench-")
    bus, _ = shmbus_runs.attach_or_start(f"bench{os.getpid()}", data_dir)
    peers = Peers(args.time_cap)
    began = time.monotonic()
    try:
        # Runs are interleaved (run 1 of everything, then run 2, ...) so a noisy
        # stretch of the machine hits every transport, not one.
        for run in range(args.runs):
            for size in sizes:
                for row in t_rows:
                    label = f"run {run + 1}/{args.runs} {size_label(size)} {row}"
                    try:
                        if row == SHMBUS_SEND or row == SHMBUS_BATCH:
                            batch = BATCH.get(size, 16) if row == SHMBUS_BATCH else None
                            ring = shmbus_runs.ring_bytes_for(size, counts[size], cap=args.max_ring)
                            result = shmbus_runs.shmbus_throughput(bus, size, counts[size], batch=batch,
                                                                   ring_bytes=ring, time_cap=args.time_cap)
                        else:
                            result = peers.throughput(row, size, counts[size])
                    except BenchmarkError as e:
                        failures.append(f"{label}: {e}")
                        print(f"{label}: FAILED: {str(e).splitlines()[0]}", file=sys.stderr)
                        continue
                    tput[row][size].append(result)
                    print(f"{label}: {harness.format_rate(result.msg_per_s)} msg/s, {mbps(result.mb_per_s)} MB/s"
                          + (" (capped)" if result.capped else "")
                          + (f" ({result.missed} never arrived)" if result.stalled
                             else f" ({result.missed} overwritten)" if result.missed else ""),
                          file=sys.stderr)
            for row in l_rows:
                label = f"run {run + 1}/{args.runs} latency {row}"
                try:
                    if row in (SHMBUS_SPIN, SHMBUS_BUSY):
                        wait = "busy" if row == SHMBUS_BUSY else "spin"
                        result = shmbus_runs.shmbus_latency(bus, wait=wait, round_trips=round_trips,
                                                            warmup=warmup, time_cap=args.time_cap)
                    else:
                        result = peers.latency(row, round_trips, warmup)
                except BenchmarkError as e:
                    failures.append(f"{label}: {e}")
                    print(f"{label}: FAILED: {str(e).splitlines()[0]}", file=sys.stderr)
                    continue
                lat[row].append(result)
                s = result.summary()
                print(f"{label}: RTT p50 {micros(s['rtt_p50_us'])} us, p99 {micros(s['rtt_p99_us'])} us",
                      file=sys.stderr)
    finally:
        peers.close()
        shmbus_runs.stop_supervisor(bus)
        shutil.rmtree(data_dir, ignore_errors=True)
    elapsed = time.monotonic() - began

    import shmbus
    versions = [f"shmbus {shmbus.__version__}", f"Python {platform.python_version()}"]
    for module, name in (("zmq", "pyzmq"), ("faster_fifo", "faster-fifo")):
        try:
            versions.append(f"{name} {getattr(__import__(module), '__version__', '?')}")
        except ImportError:
            pass
    if "faster-fifo" in " ".join(versions) and versions[-1].endswith("?"):
        from importlib.metadata import version
        versions[-1] = f"faster-fifo {version('faster-fifo')}"

    out = [f"{platform.node()}: {os.cpu_count()} CPUs, {platform.machine()}, {', '.join(versions)}; "
           f"{args.runs} run(s), medians; {'quick (counts / 10)' if args.quick else 'full'} mode; "
           f"{elapsed:.0f} s", ""]
    if t_rows:
        out += [f"### Throughput, 1 producer process -> 1 consumer process (counted at the consumer; "
                f"records per run: {' / '.join(f'{counts[s]:,}' for s in sizes)}; "
                f"send_many B={'/'.join(str(BATCH.get(s, 16)) for s in sizes)})", ""]
        out += throughput_table(tput, sizes) + [""]
    if l_rows:
        out += [f"### Latency, 64 B ping-pong ({round_trips} round trips after {warmup} warm-up), "
                f"microseconds", ""]
        out += latency_table(lat) + [""]
    if t_rows or l_rows:
        out += ["### Ratios from this run (medians): throughput shmbus/peer (>1: shmbus faster); "
                "latency shmbus/peer (<1: shmbus faster)", ""]
        out += ratio_table(tput, lat, sizes) + [""]
    if failures:
        out += ["Failed runs:", ""] + [f"- {f.splitlines()[0]}" for f in failures] + [""]
    print("\n".join(out))

    if args.json:
        doc = {
            "host": platform.node(), "cpus": os.cpu_count(), "versions": versions,
            "runs": args.runs, "quick": args.quick, "counts": counts, "seconds": elapsed,
            "throughput": {row: {str(s): [r.as_dict() for r in rs] for s, rs in by.items()}
                           for row, by in tput.items()},
            "latency": {row: [r.summary() for r in rs] for row, rs in lat.items()},
            "failures": failures,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
