"""Latency to a sleeping consumer: what a record costs when the consumer is asleep in
its wait, the usual case for a bus that carries events rather than a firehose.

The producer sends one record every INTERVAL (2 ms, far longer than any spin, so the
consumer has gone to sleep on its futex before each one). One-way latency of a record
is the consumer's hand-off time (when its receive call returns the record to the
program) minus the timestamp the producer gave it, both CLOCK_REALTIME
(time.time_ns()) on one host:

  shmbus      the record's own timestamp_ns, taken by the producer's append in C just
              before it publishes; the consumer is Consumer.poll with the default wait
              (spin ~50 us, then sleep on the ring's futex)
  semaphore   the floor: a POSIX semaphore (posix_ipc) posted once per record, the
              producer's time.time_ns() written to shared memory just before the post;
              the consumer blocks in sem_wait (one futex wake-up), then reads the
              timestamp. Nothing a bus could do with one wake-up is cheaper.
  peers       with --peers, those whose table entry has a sleeping row (iceoryx2's
              pub/sub with an Event listener: iceoryx2_peer.py)

Both sides of both transports are the same Python process pair on the same harness;
the first WARMUP records are not counted.
"""
import mmap
import struct
import time

from . import harness
from .harness import OneWay, wait_start
from .shmbus_runs import DURABLE, topic_name

INTERVAL = 0.002
WARMUP = 20
_STAMP = struct.Struct("q")


def pace(interval, count, barrier, time_cap, send):
    """Call send() count times, one every interval seconds (a sleep between, so the
    producer does not compete for a core), within time_cap. Returns how many."""
    wait_start(barrier)
    deadline = time.monotonic() + time_cap
    due = time.monotonic() + interval
    sent = 0
    while sent < count and due < deadline:
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        send()
        sent += 1
        due += interval
    return sent


# ---- shmbus ----

SHMBUS_ROW = "shmbus send -> poll (wait=spin, default)"

def _shmbus_producer(bus_name, data_dir, topic, interval, count, *, barrier, time_cap):
    import shmbus
    payload = b"s" * 64
    with shmbus.connect(bus_name, data_dir, autostart=False) as bus:
        producer = bus.producer(timeout=5.0)
        producer.partitions_for(topic)
        send = producer.send
        sent = pace(interval, count, barrier, time_cap, lambda: send(topic, payload))
        producer.close()
    return sent


def _shmbus_consumer(bus_name, data_dir, topic, wait, count, warmup, *, barrier, time_cap):
    import shmbus
    now_ns = time.time_ns
    with shmbus.connect(bus_name, data_dir, autostart=False) as bus:
        consumer = bus.consumer(topic, auto_offset_reset="earliest", wait=wait)
        # Fix the start now: "earliest" is resolved at the first read, and a ring lapped
        # before it would start later, not count what it skipped as missed.
        for tp in consumer.assignment():
            consumer.position(tp)
        poll = consumer.poll
        wait_start(barrier)
        deadline = time.monotonic() + time_cap
        one_way = []
        for i in range(count):
            message = poll(timeout=max(0.0, deadline - time.monotonic()))
            handed_off = now_ns()
            if message is None:
                break  # capped: report what arrived
            if i >= warmup:
                one_way.append(handed_off - message.timestamp_ns)
        consumer.close()
    return one_way


def shmbus_sleeping(bus, records=2_000, warmup=WARMUP, interval=INTERVAL, wait="spin", time_cap=60.0):
    """One run: `warmup + records` 64 B records, one every `interval` s, on a topic made
    for the run; the consumer waits with `wait`."""
    topic = topic_name("paced")
    bus.create_topic(topic, partitions=1, ring_bytes=16 << 20, durable=DURABLE)
    try:
        total = warmup + records
        cap = min(time_cap, total * interval * 2 + 5)
        values = harness.run_workers(
            [("consumer", _shmbus_consumer, (bus.name, bus.data_dir, topic, wait, total, warmup)),
             ("producer", _shmbus_producer, (bus.name, bus.data_dir, topic, interval, total))],
            cap, required=["consumer"])
    finally:
        bus.delete_topic(topic)
    label = SHMBUS_ROW if wait == "spin" else f"shmbus send -> poll (wait={wait})"
    return OneWay(label, 64, interval * 1000, warmup, values["consumer"])


# ---- the floor: a POSIX semaphore and a timestamp in shared memory ----

def _open_semaphore(name):
    import posix_ipc
    semaphore = posix_ipc.Semaphore(name)
    memory = posix_ipc.SharedMemory(name)
    stamp = mmap.mmap(memory.fd, _STAMP.size)
    memory.close_fd()
    return semaphore, stamp


def _semaphore_producer(name, interval, count, *, barrier, time_cap):
    semaphore, stamp = _open_semaphore(name)
    pack_into, now_ns, post = _STAMP.pack_into, time.time_ns, semaphore.release

    def send():
        pack_into(stamp, 0, now_ns())
        post()
    try:
        return pace(interval, count, barrier, time_cap, send)
    finally:
        stamp.close()
        semaphore.close()


def _semaphore_consumer(name, count, warmup, *, barrier, time_cap):
    import posix_ipc
    semaphore, stamp = _open_semaphore(name)
    unpack_from, now_ns, acquire = _STAMP.unpack_from, time.time_ns, semaphore.acquire
    wait_start(barrier)
    deadline = time.monotonic() + time_cap
    one_way = []
    try:
        for i in range(count):
            try:
                acquire(max(0.0, deadline - time.monotonic()))
            except posix_ipc.BusyError:
                break  # capped: report what arrived
            handed_off = now_ns()
            if i >= warmup:
                one_way.append(handed_off - unpack_from(stamp, 0)[0])
    finally:
        stamp.close()
        semaphore.close()
    return one_way


SEMAPHORE_ROW = "PROBE: posix semaphore post/wait + timestamp in shm (wake-up floor)"


def semaphore_sleeping(name, records=2_000, warmup=WARMUP, interval=INTERVAL, time_cap=60.0):
    """The same pace and measurement over a POSIX semaphore named `name` (made for the
    run and unlinked after it)."""
    import posix_ipc
    semaphore = posix_ipc.Semaphore(f"/{name}", posix_ipc.O_CREX, initial_value=0)
    try:
        memory = posix_ipc.SharedMemory(f"/{name}", posix_ipc.O_CREX, size=_STAMP.size)
        memory.close_fd()
        try:
            total = warmup + records
            cap = min(time_cap, total * interval * 2 + 5)
            values = harness.run_workers(
                [("consumer", _semaphore_consumer, (f"/{name}", total, warmup)),
                 ("producer", _semaphore_producer, (f"/{name}", interval, total))],
                cap, required=["consumer"])
        finally:
            memory.unlink()
    finally:
        semaphore.unlink()
        semaphore.close()
    return OneWay(SEMAPHORE_ROW, 8, interval * 1000, warmup, values["consumer"])
