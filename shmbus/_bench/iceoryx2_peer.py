"""iceoryx2 (the `iceoryx2` pip package), the zero-copy shared-memory middleware, as a
peer: publish-subscribe of byte slices between two processes.

How it is driven, the way its Python API is meant to be used for bytes:
  publisher   loan_slice_uninit(n) -> memmove the value into the sample -> assume_init
              -> send (one loan and one copy per record)
  subscriber  busy-poll receive() (it returns None when nothing is there), then copy
              the payload into `bytes` (ctypes.string_at: one copy, as shmbus's reads)
The service is lossless for throughput (safe overflow off, the publisher retries
until delivered, so a full subscriber queue blocks the producer as the other peers
do); its queue holds QUEUE samples. Latency is a ping-pong on two services,
busy-polled, and once more with an Event service beside each: the sender notifies
after send, the receiver blocks in Listener.timed_wait when receive() finds nothing
(iceoryx2's blocking wake-up). The same blocking pair carries the sleeping-consumer
measurement (sleeping.py), the producer's time.time_ns() in the first 8 bytes.
"""
import ctypes
import time

from . import harness
from .harness import OneWay, optional
from .sleeping import pace

ICEORYX2_THROUGHPUT = "iceoryx2 pub/sub (loan+memmove+send; busy-poll receive+copy)"
ICEORYX2_BUSY = "iceoryx2 pub/sub, busy-poll"
ICEORYX2_EVENT = "iceoryx2 pub/sub + Event listener (blocking)"
ICEORYX2_SLEEPING = "iceoryx2 pub/sub + Event listener (blocking), timestamp in the payload"
# Samples the subscriber's queue holds (and so the publisher may have in flight).
QUEUE = 1024
# Empty polls between two looks at the clock in the busy loops.
POLLS_PER_CHECK = 4096


def _node():
    iox2 = optional("iceoryx2")
    iox2.set_log_level(iox2.LogLevel.Error)
    return iox2, iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)


def _service(iox2, node, name, queue):
    """Open or create the pub/sub service (both sides race to create it)."""
    builder = (node.service_builder(iox2.ServiceName.new(name))
               .publish_subscribe(iox2.Slice[ctypes.c_uint8])
               .enable_safe_overflow(False).history_size(0)
               .subscriber_max_buffer_size(queue).max_publishers(1).max_subscribers(1))
    for attempt in range(50):
        try:
            return builder.open_or_create()
        except Exception:
            if attempt == 49:
                raise
            time.sleep(0.02)


def _event(iox2, node, name):
    for attempt in range(50):
        try:
            return node.service_builder(iox2.ServiceName.new(name)).event().open_or_create()
        except Exception:
            if attempt == 49:
                raise
            time.sleep(0.02)


def _publisher(iox2, service, max_bytes):
    return (service.publisher_builder().initial_max_slice_len(max(1, max_bytes))
            .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered).create())


def _sender(publisher):
    """send(value): loan, copy in, send."""
    loan, memmove = publisher.loan_slice_uninit, ctypes.memmove

    def send(value):
        n = len(value)
        sample = loan(n)
        memmove(sample.payload_ptr, value, n)
        sample.assume_init().send()
    return send


def _receiver(subscriber):
    """try_recv() -> the next value copied into bytes, or None if there is none now."""
    receive, string_at = subscriber.receive, ctypes.string_at

    def try_recv():
        sample = receive()
        if sample is None:
            return None
        value = string_at(sample.payload_ptr, sample.header.number_of_elements)
        sample.delete()
        return value
    return try_recv


# ---- throughput ----

def _producer(service_name, index, record_bytes, count, *, barrier, time_cap):
    iox2, node = _node()
    service = _service(iox2, node, service_name, QUEUE)
    publisher = _publisher(iox2, service, record_bytes)
    send = _sender(publisher)
    payload = b"x" * record_bytes
    # The subscriber must be connected before the first send, or it is not delivered.
    deadline = time.monotonic() + harness.SETUP_TIMEOUT
    while service.dynamic_config.number_of_subscribers < 1:
        if time.monotonic() > deadline:
            raise TimeoutError("the iceoryx2 subscriber never connected")
        time.sleep(0.005)
    publisher.update_connections()
    harness.wait_start(barrier)
    deadline = time.monotonic() + time_cap
    sent = 0
    while sent < count and time.monotonic() < deadline:
        n = min(harness.CHECK_EVERY, count - sent)
        for _ in range(n):
            send(payload)
        sent += n
    send(b"")  # the end marker
    publisher.delete()
    return sent


def _consumer(service_name, total, record_bytes, *, barrier, time_cap):
    iox2, node = _node()
    service = _service(iox2, node, service_name, QUEUE)
    subscriber = service.subscriber_builder().buffer_size(QUEUE).create()
    try_recv = _receiver(subscriber)
    harness.wait_start(barrier)
    start = time.perf_counter()
    deadline = time.monotonic() + time_cap
    received = empty = 0
    last = start
    capped = stalled = False
    while received < total:
        value = try_recv()
        if value is None:
            empty += 1
            if empty % POLLS_PER_CHECK == 0:
                if time.monotonic() > deadline:
                    capped = True
                    break
                if time.perf_counter() - last > harness.IDLE_TIMEOUT:
                    stalled = True
                    break
            continue
        if not value:
            break  # the producer's end marker: it was capped
        received += 1
        last = time.perf_counter()
        if received % harness.CHECK_EVERY == 0 and time.monotonic() > deadline:
            capped = True
            break
    subscriber.delete()
    capped = capped or (received < total and not stalled)
    return {"received": received, "missed": total - received if stalled else 0,
            "seconds": last - start, "capped": capped, "stalled": stalled}


def throughput(service_name, record_bytes, count, time_cap):
    return harness.throughput(ICEORYX2_THROUGHPUT, _producer, (service_name,), _consumer, (service_name,),
                              record_bytes, count, time_cap=time_cap)


# ---- ping-pong ----

class _Side:
    """One end of a ping-pong: sends on one service, receives on the other; with
    events, notifies after each send and blocks on its listener when idle."""

    def __init__(self, name, out, into, events, record_bytes):
        self.iox2, node = _node()
        iox2 = self.iox2
        self.out_service = _service(iox2, node, f"{name}/{out}", 16)
        self.in_service = _service(iox2, node, f"{name}/{into}", 16)
        self.publisher = _publisher(iox2, self.out_service, record_bytes)
        self.subscriber = self.in_service.subscriber_builder().buffer_size(16).create()
        self.send_sample = _sender(self.publisher)
        self.try_recv = _receiver(self.subscriber)
        self.notifier = self.listener = None
        if events:
            self.notifier = _event(iox2, node, f"{name}/{out}-ev").notifier_builder().create()
            self.listener = _event(iox2, node, f"{name}/{into}-ev").listener_builder().create()
        # Both sides connected before the first message.
        deadline = time.monotonic() + harness.SETUP_TIMEOUT
        while self.out_service.dynamic_config.number_of_subscribers < 1:
            if time.monotonic() > deadline:
                raise TimeoutError("the other side never subscribed")
            time.sleep(0.005)
        self.publisher.update_connections()

    def send(self, value):
        self.send_sample(value)
        if self.notifier is not None:
            self.notifier.notify()

    def recv(self, deadline):
        try_recv, listener = self.try_recv, self.listener
        wait = self.iox2.Duration.from_millis(100)
        polls = 0
        while True:
            value = try_recv()
            if value is not None:
                return value
            if listener is not None:
                listener.timed_wait(wait)
                if time.monotonic() > deadline:
                    raise TimeoutError("no reply within the time cap")
                continue
            polls += 1
            if polls % POLLS_PER_CHECK == 0 and time.monotonic() > deadline:
                raise TimeoutError("no reply within the time cap")

    def close(self):
        for port in (self.publisher, self.subscriber, self.notifier, self.listener):
            if port is not None:
                port.delete()


def _pinger(name, events, record_bytes, round_trips, warmup, *, barrier, time_cap):
    side = _Side(name, "ping", "pong", events, record_bytes)
    perf_ns = time.perf_counter_ns
    payload = b"p" * record_bytes
    send, recv = side.send, side.recv
    harness.wait_start(barrier)
    deadline = time.monotonic() + time_cap
    rtts = []
    for i in range(warmup + round_trips):
        start = perf_ns()
        send(payload)
        recv(deadline)
        if i >= warmup:
            rtts.append(perf_ns() - start)
    side.close()
    return rtts


def _ponger(name, events, record_bytes, total, *, barrier, time_cap):
    side = _Side(name, "pong", "ping", events, record_bytes)
    send, recv = side.send, side.recv
    harness.wait_start(barrier)
    deadline = time.monotonic() + time_cap
    for _ in range(total):
        send(recv(deadline))
    side.close()
    return total


def latency(name, events, round_trips, warmup, time_cap):
    args = (name, events)
    return harness.pingpong(ICEORYX2_EVENT if events else ICEORYX2_BUSY, _pinger, args, _ponger, args,
                            record_bytes=64, round_trips=round_trips, warmup=warmup, time_cap=time_cap)


# ---- latency to a sleeping consumer ----

def _paced_producer(name, interval, count, *, barrier, time_cap):
    iox2, node = _node()
    service = _service(iox2, node, name, 16)
    publisher = _publisher(iox2, service, 64)
    notifier = _event(iox2, node, f"{name}-ev").notifier_builder().create()
    send_sample, notify, now_ns = _sender(publisher), notifier.notify, time.time_ns
    pad = b"s" * 56
    deadline = time.monotonic() + harness.SETUP_TIMEOUT
    while service.dynamic_config.number_of_subscribers < 1:
        if time.monotonic() > deadline:
            raise TimeoutError("the iceoryx2 subscriber never connected")
        time.sleep(0.005)
    publisher.update_connections()

    def send():
        send_sample(now_ns().to_bytes(8, "little") + pad)
        notify()
    try:
        return pace(interval, count, barrier, time_cap, send)
    finally:
        notifier.delete()
        publisher.delete()


def _paced_consumer(name, count, warmup, *, barrier, time_cap):
    iox2, node = _node()
    service = _service(iox2, node, name, 16)
    subscriber = service.subscriber_builder().buffer_size(16).create()
    listener = _event(iox2, node, f"{name}-ev").listener_builder().create()
    try_recv, wait, now_ns = _receiver(subscriber), listener.timed_wait, time.time_ns
    slice_ = iox2.Duration.from_millis(100)
    harness.wait_start(barrier)
    deadline = time.monotonic() + time_cap
    one_way = []
    received = 0
    while received < count and time.monotonic() < deadline:
        value = try_recv()
        if value is None:
            wait(slice_)
            continue
        handed_off = now_ns()
        if received >= warmup:
            one_way.append(handed_off - int.from_bytes(value[:8], "little"))
        received += 1
    listener.delete()
    subscriber.delete()
    return one_way


def sleeping(name, records, warmup, interval, time_cap):
    total = warmup + records
    values = harness.run_workers(
        [("consumer", _paced_consumer, (name, total, warmup)),
         ("producer", _paced_producer, (name, interval, total))],
        min(time_cap, total * interval * 2 + 5), required=["consumer"])
    return OneWay(ICEORYX2_SLEEPING, 64, interval * 1000, warmup, values["consumer"])
