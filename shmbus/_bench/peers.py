"""The transports a Python user would pick instead of shmbus, measured on the same
harness (harness.py) as shmbus itself: their workers, and the table of peers that
bench/run.py and `shmbus bench --peers` both run.

Every peer's hot loop uses its plain blocking call (no per-call timeout, which would
add a syscall to each receive); the harness's time cap bounds it. A producer sends
an empty end marker after its last record so the consumer never waits for records
that will not come.
"""
import functools
import importlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from . import harness, iceoryx2_peer
from .harness import optional
from .iceoryx2_peer import ICEORYX2_BUSY, ICEORYX2_EVENT, ICEORYX2_THROUGHPUT

CHECK_EVERY = harness.CHECK_EVERY
# A peer producer sends this after its last record (capped or not): values are
# never empty, so the consumer can tell it apart and stop without a timeout.
END = b""
# faster-fifo's own default buffer (1 MB): the library's out-of-the-box behaviour.
FF_BYTES = 1_000_000


def batch_for(record_bytes):
    """Records per call of the batched rows (shmbus send_many, Queue of lists), by size:
    what fits a 64 KiB-ish write."""
    return 64 if record_bytes <= 1024 else 16


# ---- the loops every one-call-per-record peer shares ----

def _produce(send, record_bytes, count, barrier, time_cap):
    """One call per record, a time cap checked every CHECK_EVERY records, then the
    end marker. Returns how many were sent."""
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


def _consume(recv, producers, total, barrier, time_cap, size=None):
    """One blocking receive per call, end markers counted. recv returns None after
    harness.IDLE_TIMEOUT without anything (for the peers whose receive takes a
    timeout): the records still due never arrived. `size(value)` is how many records
    one received value holds (a batch); default one."""
    harness.wait_start(barrier)
    start = time.perf_counter()
    deadline = time.monotonic() + time_cap
    received = ended = calls = 0
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
        received += 1 if size is None else size(value)
        last = time.perf_counter()
        calls += 1
        if calls % CHECK_EVERY == 0 and time.monotonic() > deadline:
            capped = True
            break
    capped = capped or (received < total and not stalled)
    return {"received": received, "missed": total - received if stalled else 0,
            "seconds": last - start, "capped": capped, "stalled": stalled}


def _ping(send, recv, record_bytes, round_trips, warmup, barrier):
    """The pinger: blocking receives; the parent's time cap bounds it."""
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


# ---- multiprocessing.Queue ----

def queue_producer(q, index, record_bytes, count, *, barrier, time_cap):
    # Exiting waits for the feeder thread to flush; a consumer that stopped at its
    # cap never drains it, and the parent kills this process after a grace period.
    return _produce(q.put, record_bytes, count, barrier, time_cap)


def queue_consumer(q, producers, total, record_bytes, *, barrier, time_cap):
    return _consume(q.get, producers, total, barrier, time_cap)


def queue_list_producer(q, batch, index, record_bytes, count, *, barrier, time_cap):
    """Lists of `batch` DISTINCT bytes objects per put. A list of one object repeated
    ([payload] * 64) pickles that object once (pickle's memo) and is not a batch of
    records. The list is built once: each put pickles all of its objects again."""
    values = [b"x" * (record_bytes - 4) + i.to_bytes(4, "little") for i in range(batch)]
    put = q.put
    harness.wait_start(barrier)
    deadline = time.monotonic() + time_cap
    sent = 0
    while sent < count and time.monotonic() < deadline:
        n = min(batch, count - sent)
        put(values if n == batch else values[:n])
        sent += n
    put([])
    return sent


def queue_list_consumer(q, producers, total, record_bytes, *, barrier, time_cap):
    return _consume(q.get, producers, total, barrier, time_cap, size=len)


def queue_pinger(q_ping, q_pong, record_bytes, round_trips, warmup, *, barrier, time_cap):
    return _ping(q_ping.put, q_pong.get, record_bytes, round_trips, warmup, barrier)


def queue_ponger(q_ping, q_pong, record_bytes, total, *, barrier, time_cap):
    return _pong(q_ping.get, q_pong.put, total, barrier)


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
    zmq = optional("zmq")
    context = zmq.Context()
    sock = context.socket(zmq.PUSH)
    sock.connect(endpoint)
    sent = _produce(sock.send, record_bytes, count, barrier, time_cap)
    # Closing drops what is still queued unless it lingers: deliver it, within the cap.
    sock.close(linger=int(time_cap * 1000))
    context.term()
    return sent


def zmq_consumer(endpoint, producers, total, record_bytes, *, barrier, time_cap):
    zmq = optional("zmq")
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
    zmq = optional("zmq")
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
    zmq = optional("zmq")
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
    faster_fifo = optional("faster_fifo")

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


# ---- the table of peers ----

class Endpoints:
    """Per-run resources the peers need from the parent: a directory for ipc://
    sockets and names unique to this process."""

    def __init__(self):
        self.sockets = tempfile.mkdtemp(prefix="shmbus-bench-ipc-")
        self._n = 0

    def close(self):
        shutil.rmtree(self.sockets, ignore_errors=True)

    def ipc(self):
        self._n += 1
        return f"ipc://{self.sockets}/{self._n}.sock"

    def unique(self, kind):
        self._n += 1
        return f"shmbus-bench-{kind}-{os.getpid()}-{self._n}"


# A throughput run: (endpoints, record_bytes, count, time_cap) -> harness.Throughput
ThroughputRun = Callable[[Endpoints, int, int, float], harness.Throughput]
# A ping-pong run: (endpoints, round_trips, warmup, time_cap) -> harness.Latency
LatencyRun = Callable[[Endpoints, int, int, float], harness.Latency]
# A sleeping-consumer run: (endpoints, records, warmup, interval_s, time_cap) -> harness.OneWay
SleepingRun = Callable[[Endpoints, int, int, float, float], harness.OneWay]


@dataclass(frozen=True)
class Peer:
    """One peer: the package it needs, and the rows it adds to each table."""

    name: str                      # the peer, as the ratio table names it
    module: Optional[str]          # what must import for it to run (None: the standard library)
    package: Optional[str]         # its pip package, for the "not installed" note
    throughput_row: Optional[str] = None
    throughput: Optional[ThroughputRun] = None
    latency_rows: Tuple[Tuple[str, LatencyRun], ...] = ()
    sleeping_rows: Tuple[Tuple[str, SleepingRun], ...] = ()

    def installed(self):
        if self.module is None:
            return True
        try:
            importlib.import_module(self.module)
            return True
        except ImportError:
            return False


def _queue_throughput(ep, size, count, cap):
    q = harness.SPAWN.Queue()
    return harness.throughput("multiprocessing.Queue put/get", queue_producer, (q,), queue_consumer,
                              (q, 1), size, count, time_cap=cap)


def _queue_list_throughput(ep, size, count, cap):
    q, batch = harness.SPAWN.Queue(), batch_for(size)
    return harness.throughput(QUEUE_LISTS, queue_list_producer, (q, batch), queue_list_consumer,
                              (q, 1), size, count, time_cap=cap, batch=batch)


def _pipe_throughput(ep, size, count, cap):
    receiver, sender = harness.SPAWN.Pipe(duplex=False)
    return harness.throughput("multiprocessing.Pipe send_bytes/recv_bytes", pipe_producer, (sender,),
                              pipe_consumer, (receiver, 1), size, count, time_cap=cap,
                              parent_closes=(receiver, sender))


def _zmq_throughput(ep, size, count, cap):
    endpoint = ep.ipc()
    return harness.throughput("pyzmq PUSH/PULL ipc://", zmq_producer, (endpoint,), zmq_consumer,
                              (endpoint, 1), size, count, time_cap=cap)


def _ff_throughput(ep, size, count, cap):
    faster_fifo = optional("faster_fifo")
    q = faster_fifo.Queue(max_size_bytes=FF_BYTES)
    return harness.throughput("faster-fifo put/get", ff_producer, (q,), ff_consumer, (q, 1), size, count,
                              time_cap=cap)


def _kw(round_trips, warmup, cap):
    return dict(record_bytes=64, round_trips=round_trips, warmup=warmup, time_cap=cap)


def _queue_latency(ep, round_trips, warmup, cap):
    args = (harness.SPAWN.Queue(), harness.SPAWN.Queue())
    return harness.pingpong("multiprocessing.Queue", queue_pinger, args, queue_ponger, args,
                            **_kw(round_trips, warmup, cap))


def _pipe_latency(ep, round_trips, warmup, cap):
    a, b = harness.SPAWN.Pipe(duplex=True)
    return harness.pingpong("multiprocessing.Pipe (bytes)", pipe_pinger, (a,), pipe_ponger, (b,),
                            parent_closes=(a, b), **_kw(round_trips, warmup, cap))


def _zmq_latency(ep, round_trips, warmup, cap):
    args = (ep.ipc(), ep.ipc())
    return harness.pingpong("pyzmq PUSH/PULL ipc://", zmq_pinger, args, zmq_ponger, args,
                            **_kw(round_trips, warmup, cap))


def _ff_latency(ep, round_trips, warmup, cap):
    faster_fifo = optional("faster_fifo")
    args = (faster_fifo.Queue(max_size_bytes=FF_BYTES), faster_fifo.Queue(max_size_bytes=FF_BYTES))
    return harness.pingpong("faster-fifo", ff_pinger, args, ff_ponger, args, **_kw(round_trips, warmup, cap))


def _iceoryx2_throughput(ep, size, count, cap):
    return iceoryx2_peer.throughput(ep.unique("iox2"), size, count, cap)


def _iceoryx2_busy_latency(ep, round_trips, warmup, cap):
    return iceoryx2_peer.latency(ep.unique("iox2"), False, round_trips, warmup, cap)


def _iceoryx2_event_latency(ep, round_trips, warmup, cap):
    return iceoryx2_peer.latency(ep.unique("iox2"), True, round_trips, warmup, cap)


def _iceoryx2_sleeping(ep, records, warmup, interval, cap):
    return iceoryx2_peer.sleeping(ep.unique("iox2"), records, warmup, interval, cap)


QUEUE_LISTS = "multiprocessing.Queue, list of B distinct records per put"

PEERS: Tuple[Peer, ...] = (
    Peer("multiprocessing.Queue", None, None, "multiprocessing.Queue put/get", _queue_throughput,
         (("multiprocessing.Queue", _queue_latency),)),
    Peer("multiprocessing.Queue, lists of B", None, None, QUEUE_LISTS, _queue_list_throughput),
    Peer("multiprocessing.Pipe", None, None, "multiprocessing.Pipe send_bytes/recv_bytes", _pipe_throughput,
         (("multiprocessing.Pipe (bytes)", _pipe_latency),)),
    Peer("pyzmq PUSH/PULL", "zmq", "pyzmq", "pyzmq PUSH/PULL ipc://", _zmq_throughput,
         (("pyzmq PUSH/PULL ipc://", _zmq_latency),)),
    Peer("faster-fifo", "faster_fifo", "faster-fifo", "faster-fifo put/get", _ff_throughput,
         (("faster-fifo", _ff_latency),)),
    Peer("iceoryx2", "iceoryx2", "iceoryx2", ICEORYX2_THROUGHPUT, _iceoryx2_throughput,
         ((ICEORYX2_BUSY, _iceoryx2_busy_latency), (ICEORYX2_EVENT, _iceoryx2_event_latency)),
         ((iceoryx2_peer.ICEORYX2_SLEEPING, _iceoryx2_sleeping),)),
)


def installed_peers(peers=PEERS):
    """(the peers whose package imports, notes naming the missing ones)."""
    present: List[Peer] = []
    notes: List[str] = []
    for peer in peers:
        if peer.installed():
            present.append(peer)
        else:
            notes.append(f"{peer.name}: not installed (pip install {peer.package}, or the 'bench' extra); "
                         f"left out")
    return present, notes


def versions() -> Dict[str, str]:
    """Versions of the peer packages that are installed, by pip name."""
    from importlib.metadata import PackageNotFoundError, version
    found = {}
    for package in ("pyzmq", "faster-fifo", "iceoryx2", "posix-ipc", "hdrhistogram"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found
