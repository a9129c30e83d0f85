"""Measurements of shmbus itself, run by the harness (harness.py): throughput of N
producer processes -> 1 consumer process, and ping-pong latency between two
processes, each on topics made for the run and deleted after it; and the bus they
run on. `shmbus bench`, `shmbus demo` and bench/run.py all measure shmbus with these.

Throughput rows are a table (MODES): a Mode pairs a producer worker (how records go
in) with a consumer worker (how they come out), so a new way of using shmbus is a
worker and a line, and every front end shows it as a row of its own.
"""
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Tuple

from .._backend import FRAME_HEADER_BYTES
from .._errors import BenchmarkError, Timeout
from .harness import CHECK_EVERY, IDLE_TIMEOUT, pingpong, throughput, wait_start

# The peer comparisons run on memory-only topics: none of the peers keeps
# anything on disk. bench/durable.py measures what durability costs.
DURABLE = False
# Most records one consumer read returns (poll_many): shmbus's normal read path.
CONSUMER_BATCH = 1000
# A capped producer sends this after its last record: the bench never sends an empty value.
END = b""


# ---- the bus a measurement runs on ----

def attach_or_start(name=None, data_dir=None):
    """(bus, started): attach to a running supervisor, else start one.
    `started` says this caller must stop it when done."""
    import shmbus
    try:
        return shmbus.connect(name, data_dir, autostart=False), False
    except shmbus.SupervisorUnavailable:
        return shmbus.connect(name, data_dir, autostart=True), True


def stop_supervisor(bus, timeout=30.0):
    """Stop the bus's supervisor, wait until it has removed everything, and close the
    connection."""
    try:
        bus.stop_supervisor(timeout)
    except Timeout as e:
        raise BenchmarkError(str(e)) from None
    finally:
        bus.close()


def ring_bytes_for(record_bytes, records, cap=1 << 30, floor=64 << 20):
    """A ring that holds a whole run when that takes at most `cap` (so a memory-only
    ring never overwrites what the consumer has not read), else `cap`."""
    frame = FRAME_HEADER_BYTES + ((record_bytes + 7) & ~7)
    return max(floor, min(cap, frame * records * 9 // 8))


# ---- shmbus workers: how records go in ----
#
# A producer worker: (bus_name, data_dir, topic, batch, end_marker, index, record_bytes,
# count, *, barrier, time_cap) -> records sent. It sends an empty value (the bench never
# sends one otherwise) to every partition after its last record when it was cut short by
# the time cap, and always when `end_marker` is set: a consumer that blocks without a
# timeout (iteration) then ends however many records were overwritten before it read them.

def _connect_producer(bus_name, data_dir, topic, time_cap):
    import shmbus
    bus = shmbus.connect(bus_name, data_dir, autostart=False)
    producer = bus.producer(timeout=time_cap)
    producer.partitions_for(topic)  # map the rings now, not inside the timed loop
    return bus, producer


def _send_end(producer, topic):
    """The end marker, in every partition: behind this producer's last record in each."""
    for partition in producer.partitions_for(topic):
        producer.send(topic, END, partition=partition)


def _send_producer(bus_name, data_dir, topic, batch, end_marker, index, record_bytes, count, *, barrier,
                   time_cap):
    """Producer.send, one call per record."""
    payload = b"x" * record_bytes
    bus, producer = _connect_producer(bus_name, data_dir, topic, time_cap)
    with bus:
        send = producer.send
        wait_start(barrier)
        deadline = time.monotonic() + time_cap
        sent = 0
        while sent < count and time.monotonic() < deadline:
            n = min(CHECK_EVERY, count - sent)
            for _ in range(n):
                send(topic, payload)
            sent += n
        if sent < count or end_marker:
            _send_end(producer, topic)
        producer.close()
    return sent


def _send_many_producer(bus_name, data_dir, topic, batch, end_marker, index, record_bytes, count, *,
                        barrier, time_cap):
    """Producer.send_many, `batch` records per call."""
    payload = b"x" * record_bytes
    bus, producer = _connect_producer(bus_name, data_dir, topic, time_cap)
    with bus:
        send_many = producer.send_many
        values = [payload] * batch
        wait_start(barrier)
        deadline = time.monotonic() + time_cap
        sent = 0
        while sent < count and time.monotonic() < deadline:
            sent += send_many(topic, values[:count - sent])
        if sent < count or end_marker:
            _send_end(producer, topic)
        producer.close()
    return sent


def _send_array_producer(bus_name, data_dir, topic, batch, end_marker, index, record_bytes, count, *,
                         barrier, time_cap):
    """Producer.send_array, `batch` rows of record_bytes (distinct bytes) per call."""
    import numpy as np
    rows = np.random.default_rng(index).integers(0, 256, size=(batch, record_bytes), dtype=np.uint8)
    bus, producer = _connect_producer(bus_name, data_dir, topic, time_cap)
    with bus:
        send_array = producer.send_array
        wait_start(barrier)
        deadline = time.monotonic() + time_cap
        sent = 0
        while sent < count and time.monotonic() < deadline:
            sent += send_array(topic, rows[:count - sent])
        if sent < count or end_marker:
            _send_end(producer, topic)
        producer.close()
    return sent


def _reserve_producer(bus_name, data_dir, topic, batch, end_marker, index, record_bytes, count, *, barrier,
                      time_cap):
    """Producer.reserve, one record per block, its value written in place."""
    payload = b"x" * record_bytes
    bus, producer = _connect_producer(bus_name, data_dir, topic, time_cap)
    with bus:
        reserve = producer.reserve
        wait_start(barrier)
        deadline = time.monotonic() + time_cap
        sent = 0
        while sent < count and time.monotonic() < deadline:
            n = min(CHECK_EVERY, count - sent)
            for _ in range(n):
                with reserve(topic, record_bytes) as buf:
                    buf[:] = payload
            sent += n
        if sent < count or end_marker:
            _send_end(producer, topic)
        producer.close()
    return sent


# ---- shmbus workers: how records come out ----
#
# A consumer worker: (bus_name, data_dir, topic, wait, producers, total, record_bytes, *,
# barrier, time_cap) -> {"received", "missed", "seconds", "capped", "stalled"}; the clock
# runs from the barrier to the last record received.

def _poll_many_consumer(bus_name, data_dir, topic, wait, producers, total, record_bytes, *, barrier,
                        time_cap):
    """Consumer.poll_many(CONSUMER_BATCH, timeout=0.1), its normal read path."""
    import shmbus
    with shmbus.connect(bus_name, data_dir, autostart=False) as bus:
        consumer = bus.consumer(topic, auto_offset_reset="earliest", wait=wait)
        # Fix the start now: "earliest" is resolved at the first read, and a ring lapped
        # before it would start later, not count what it skipped as missed.
        for tp in consumer.assignment():
            consumer.position(tp)
        poll_many, missed = consumer.poll_many, consumer.missed
        wait_start(barrier)
        start = time.perf_counter()
        deadline = time.monotonic() + time_cap
        received = 0
        last = start
        stalled = False
        while received + missed() < total:
            if time.monotonic() >= deadline:
                break
            batch = poll_many(CONSUMER_BATCH, timeout=0.1)
            if batch:
                last = time.perf_counter()
                if not batch[-1].value:  # a capped producer's end marker
                    received += len(batch) - 1
                    break
                received += len(batch)
            elif time.perf_counter() - last > IDLE_TIMEOUT:
                stalled = True
                break
        lost = missed()
        consumer.close()
    return {"received": received, "missed": lost, "seconds": last - start,
            "capped": received + lost < total and not stalled, "stalled": stalled}


def _iterate_consumer(bus_name, data_dir, topic, wait, producers, total, record_bytes, *, barrier,
                      time_cap):
    """`for msg in consumer`, the way the simplest program is written. It blocks without
    a timeout, so its producers always send the end marker to every partition
    (Mode.end_marker), and the parent's kill bounds it if one dies."""
    import shmbus
    with shmbus.connect(bus_name, data_dir, autostart=False) as bus:
        consumer = bus.consumer(topic, auto_offset_reset="earliest", wait=wait)
        # Fix the start now: "earliest" is resolved at the first read, and a ring lapped
        # before it would start later, not count what it skipped as missed.
        for tp in consumer.assignment():
            consumer.position(tp)
        markers = producers * len(consumer.assignment())
        wait_start(barrier)
        start = time.perf_counter()
        deadline = time.monotonic() + time_cap
        received = ended = 0
        last = start
        capped = False
        for message in consumer:
            if not message.value:
                ended += 1
                if ended == markers:
                    break
                continue
            received += 1
            if received == total:
                break
            if received % CHECK_EVERY == 0 and time.monotonic() > deadline:
                capped = True
                break
        last = time.perf_counter()
        lost = consumer.missed()
        consumer.close()
    return {"received": received, "missed": lost, "seconds": last - start, "capped": capped,
            "stalled": False}


def _poll_batch_consumer(bus_name, data_dir, topic, wait, producers, total, record_bytes, *, barrier,
                         time_cap, copy=True):
    """Consumer.poll_batch, each batch's values taken as one numpy array (as_numpy): no
    Python object per record. copy=False: the array views the ring, released after."""
    import numpy as np
    import shmbus
    dtype = np.dtype((np.uint8, record_bytes))
    with shmbus.connect(bus_name, data_dir, autostart=False) as bus:
        consumer = bus.consumer(topic, auto_offset_reset="earliest", wait=wait)
        # Fix the start now (see _poll_many_consumer).
        for tp in consumer.assignment():
            consumer.position(tp)
        poll_batch, missed = consumer.poll_batch, consumer.missed
        wait_start(barrier)
        start = time.perf_counter()
        deadline = time.monotonic() + time_cap
        received = 0
        last = start
        stalled = False
        while received + missed() < total:
            if time.monotonic() >= deadline:
                break
            batch = poll_batch(65536, timeout=0.1, copy=copy)
            if batch is None:
                if time.perf_counter() - last > IDLE_TIMEOUT:
                    stalled = True
                    break
                continue
            last = time.perf_counter()
            final = batch.values[-1]
            ended = final is not None and len(final) == 0   # a capped producer's end marker
            n = len(batch) - ended
            if n:
                values = batch.as_numpy(dtype) if not ended else None
                if values is not None:
                    values[-1]   # handed off: the records are an array now
            batch.release()
            received += n
            if ended:
                break
        lost = missed()
        consumer.close()
    return {"received": received, "missed": lost, "seconds": last - start, "capped": False,
            "stalled": stalled}


def _poll_batch_view_consumer(*args, **kwargs):
    """poll_batch(copy=False): the values view the ring."""
    return _poll_batch_consumer(*args, copy=False, **kwargs)


@dataclass(frozen=True)
class Mode:
    """One way of using shmbus: a row of the throughput tables, a producer worker and a
    consumer worker with the signatures above."""

    key: str                 # its name on the command line (shmbus bench --mode)
    row: str                 # its row in the tables
    producer: Callable[..., int]
    consumer: Callable[..., Dict[str, Any]]
    batched: bool = False    # the producer sends `batch` records per call
    end_marker: bool = False  # the consumer blocks without a timeout: always end with a marker


# shmbus's rows, in table order. A new way in or out is a producer or consumer worker
# above and one Mode here; bench/run.py and `shmbus bench` pick it up.
MODES: Tuple[Mode, ...] = (
    Mode("send/poll_many", "shmbus send / poll_many", _send_producer, _poll_many_consumer),
    Mode("send_many/poll_many", "shmbus send_many(B) / poll_many", _send_many_producer,
         _poll_many_consumer, batched=True),
    Mode("send/iterate", "shmbus send / for msg in c", _send_producer, _iterate_consumer, end_marker=True),
    Mode("send_array/poll_batch", "shmbus send_array(B) / poll_batch", _send_array_producer,
         _poll_batch_consumer, batched=True),
    Mode("reserve/poll_batch-view", "shmbus reserve / poll_batch(copy=False)", _reserve_producer,
         _poll_batch_view_consumer),
)
MODES_BY_KEY = {mode.key: mode for mode in MODES}
# The row the ratios to the peers are taken from when no other is named.
BASELINE = MODES[0]


def _shmbus_pinger(bus_name, data_dir, ping, pong, wait, record_bytes, round_trips, warmup, *,
                   barrier, time_cap):
    import shmbus
    perf_ns = time.perf_counter_ns
    payload = b"p" * record_bytes
    with shmbus.connect(bus_name, data_dir, autostart=False) as bus:
        producer = bus.producer(timeout=5.0)
        producer.partitions_for(ping)
        consumer = bus.consumer(pong, auto_offset_reset="earliest", wait=wait)
        send, poll = producer.send, consumer.poll
        wait_start(barrier)
        deadline = time.monotonic() + time_cap
        rtts = []
        for i in range(warmup + round_trips):
            start = perf_ns()
            send(ping, payload)
            reply = poll(timeout=max(0.0, deadline - time.monotonic()))
            end = perf_ns()
            if reply is None:
                raise TimeoutError(f"no pong within the {time_cap}s cap ({i} round trips done)")
            if i >= warmup:
                rtts.append(end - start)
        producer.close()
        consumer.close()
    return rtts


def _shmbus_ponger(bus_name, data_dir, ping, pong, wait, record_bytes, total, *, barrier, time_cap):
    import shmbus
    with shmbus.connect(bus_name, data_dir, autostart=False) as bus:
        producer = bus.producer(timeout=5.0)
        producer.partitions_for(pong)
        consumer = bus.consumer(ping, auto_offset_reset="earliest", wait=wait)
        send, poll = producer.send, consumer.poll
        wait_start(barrier)
        deadline = time.monotonic() + time_cap
        echoed = 0
        while echoed < total:
            message = poll(timeout=max(0.0, deadline - time.monotonic()))
            if message is None:
                break  # the pinger reports the failure
            send(pong, message.value)
            echoed += 1
        producer.close()
        consumer.close()
    return echoed


# ---- shmbus measurements ----

def topic_name(kind):
    return f"bench-{kind}-{os.getpid()}-{time.monotonic_ns() % 1_000_000}"


def shmbus_throughput(bus, record_bytes, count, producers=1, batch=None, partitions=1,
                      ring_bytes=None, wait="spin", time_cap=60.0, mode=None, durable=DURABLE):
    """Throughput of `producers` processes sending `count` records each to one consumer
    process, the way `mode` (a Mode; default: send / poll_many, or send_many / poll_many
    if `batch` is given) sends and reads them, on a topic made for the run and deleted
    after it."""
    if mode is None:
        mode = MODES_BY_KEY["send_many/poll_many"] if batch else BASELINE
    if mode.batched and not batch:
        raise ValueError(f"mode {mode.key} needs a batch size")
    topic = topic_name("tput")
    if ring_bytes is None:
        ring_bytes = ring_bytes_for(record_bytes, count * producers // partitions)
    bus.create_topic(topic, partitions=partitions, ring_bytes=ring_bytes, durable=durable)
    try:
        label = mode.row.replace("(B)", f"({batch})") if mode.batched else mode.row
        return throughput(label, mode.producer,
                          (bus.name, bus.data_dir, topic, batch if mode.batched else None, mode.end_marker),
                          mode.consumer, (bus.name, bus.data_dir, topic, wait, producers),
                          record_bytes, count, producers=producers, time_cap=time_cap,
                          batch=batch if mode.batched else None)
    finally:
        bus.delete_topic(topic)


def shmbus_latency(bus, wait="spin", record_bytes=64, round_trips=20_000, warmup=2_000,
                   time_cap=60.0):
    """Ping-pong between two processes over two one-partition topics made for the run."""
    ping, pong = topic_name("ping"), topic_name("pong")
    bus.create_topic(ping, partitions=1, ring_bytes=16 << 20, durable=DURABLE)
    try:
        bus.create_topic(pong, partitions=1, ring_bytes=16 << 20, durable=DURABLE)
        try:
            args = (bus.name, bus.data_dir, ping, pong, wait)
            return pingpong(f"shmbus ({wait})", _shmbus_pinger, args, _shmbus_ponger, args,
                            record_bytes=record_bytes, round_trips=round_trips, warmup=warmup,
                            time_cap=time_cap)
        finally:
            bus.delete_topic(pong)
    finally:
        bus.delete_topic(ping)


def default_count(record_bytes):
    """Records per run by size, as the peer measurements use: 1,000,000 small
    records, 500,000 up to 16 KiB, 100,000 beyond."""
    if record_bytes <= 256:
        return 1_000_000
    if record_bytes <= 16 << 10:
        return 500_000
    return 100_000
