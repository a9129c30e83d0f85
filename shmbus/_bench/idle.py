"""Idle cost: what a bus with nothing to do burns.

A supervisor and CONSUMERS consumer processes, each waiting in Consumer.poll with the
default wait on a durable topic of its own that nobody writes to. After every
consumer has started and SETTLE seconds have passed, a meter process reads the CPU
time (user + system, psutil's cpu_times) of the supervisor and of every consumer,
sleeps SECONDS, and reads it again; the cost is the CPU time spent in between as a
percentage of one core. Then it sends one record to each topic, which ends the
consumers (they are also bounded by the run's time cap).
"""
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, List, Tuple

from . import harness
from .harness import wait_start
from .shmbus_runs import topic_name

CONSUMERS = 10
SECONDS = 30.0
SETTLE = 1.0


@dataclass
class IdleCost:
    """One idle run: CPU seconds over `seconds` of wall time."""

    transport: str
    consumers: int
    seconds: float
    supervisor_cpu_s: float
    consumers_cpu_s: List[float]

    @property
    def percent_of_core(self):
        used = self.supervisor_cpu_s + sum(self.consumers_cpu_s)
        return 100 * used / self.seconds if self.seconds > 0 else float("nan")

    def summary(self):
        d = asdict(self)
        d["percent_of_core"] = self.percent_of_core
        return d


def _consumer(bus_name, data_dir, topic, pids, index, *, barrier, time_cap):
    import shmbus
    with shmbus.connect(bus_name, data_dir, autostart=False) as bus:
        consumer = bus.consumer(topic, auto_offset_reset="latest")
        consumer.poll(timeout=0)  # positioned before the meter starts
        pids[index] = os.getpid()
        wait_start(barrier)
        # The same wait as `for msg in consumer`: a poll blocked until a record comes.
        message = consumer.poll(timeout=time_cap)
        consumer.close()
    return message is not None


def _cpu_seconds(pid):
    import psutil
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _meter(bus_name, data_dir, topics, pids, seconds, settle, *, barrier, time_cap):
    import shmbus
    with shmbus.connect(bus_name, data_dir, autostart=False) as bus:
        supervisor = bus.call("ping")["pid"]
        wait_start(barrier)
        time.sleep(settle)
        watched = [supervisor] + list(pids)
        before = [_cpu_seconds(pid) for pid in watched]
        start = time.monotonic()
        time.sleep(seconds)
        after = [_cpu_seconds(pid) for pid in watched]
        elapsed = time.monotonic() - start
        with bus.producer(timeout=5.0) as producer:
            for topic in topics:
                producer.send(topic, b"stop")
    used = [a - b for a, b in zip(after, before)]
    return {"seconds": elapsed, "supervisor": used[0], "consumers": used[1:]}


ROW = "shmbus: supervisor + consumers waiting on durable topics"


def shmbus_idle(bus, consumers=CONSUMERS, seconds=SECONDS, settle=SETTLE):
    """One idle run on `bus`, with `consumers` durable topics made for it."""
    topics = [topic_name(f"idle{i}") for i in range(consumers)]
    made = []
    try:
        for topic in topics:
            bus.create_topic(topic, partitions=1, ring_bytes=1 << 20, durable=True)
            made.append(topic)
        pids = harness.SPAWN.RawArray("q", consumers)
        workers: List[Tuple[str, Callable[..., Any], Tuple[Any, ...]]] = [(f"consumer{i}", _consumer, (bus.name, bus.data_dir, topic, pids, i))
                   for i, topic in enumerate(topics)]
        workers.append(("meter", _meter, (bus.name, bus.data_dir, topics, pids, seconds, settle)))
        values = harness.run_workers(workers, settle + seconds + 10, required=["meter"])
    finally:
        for topic in made:
            bus.delete_topic(topic)
    meter = values["meter"]
    return IdleCost(f"{ROW} ({consumers})", consumers, meter["seconds"], meter["supervisor"],
                    meter["consumers"])
