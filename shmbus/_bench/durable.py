"""What archiving to disk costs, against what the disk can do and against memory only.

  bulk    64 KiB records into a durable topic by one producer process, flushed at the
          end: MB/s from the first send to flush() returning (every record fsynced),
          next to `dd if=/dev/zero bs=1M count=N conv=fdatasync` of the same volume
          into the same directory (the bus's data dir), timed around the command
  small   64 B records, one send each, 1 producer process -> 1 consumer process
          (poll_many), on a durable topic next to a memory-only one: the throughput
          harness of every other row, with only the topic's `durable` changed
"""
import os
import subprocess
import time
from dataclasses import asdict, dataclass

from . import harness
from .harness import wait_start
from .shmbus_runs import ring_bytes_for, shmbus_throughput, topic_name

BULK_RECORD = 64 << 10
BULK_MIB = 1024


@dataclass
class Bandwidth:
    """One timed write of `nbytes`."""

    transport: str
    nbytes: int
    seconds: float

    @property
    def mb_per_s(self):
        return self.nbytes / self.seconds / 1e6 if self.seconds > 0 else 0.0

    def summary(self):
        d = asdict(self)
        d["mb_per_s"] = self.mb_per_s
        return d


def _bulk_producer(bus_name, data_dir, topic, record_bytes, count, *, barrier, time_cap):
    import shmbus
    value = b"x" * record_bytes
    with shmbus.connect(bus_name, data_dir, autostart=False) as bus:
        producer = bus.producer(timeout=time_cap)
        producer.partitions_for(topic)
        send = producer.send
        wait_start(barrier)
        start = time.perf_counter()
        for _ in range(count):
            send(topic, value)
        producer.flush(timeout=time_cap)
        seconds = time.perf_counter() - start
        producer.close()
    return seconds


BULK_ROW = "shmbus durable 64 KiB send, flush (fsynced)"
DD_ROW = "dd bs=1M conv=fdatasync, same directory"


def durable_bulk(bus, mib=BULK_MIB, record_bytes=BULK_RECORD, time_cap=600.0):
    """`mib` MiB of `record_bytes` records into a durable topic made for the run."""
    count = max(1, (mib << 20) // record_bytes)
    topic = topic_name("durable")
    bus.create_topic(topic, partitions=1, ring_bytes=64 << 20, durable=True)
    try:
        values = harness.run_workers(
            [("producer", _bulk_producer, (bus.name, bus.data_dir, topic, record_bytes, count))], time_cap)
    finally:
        bus.delete_topic(topic)
    return Bandwidth(BULK_ROW, count * record_bytes, values["producer"])


def dd_bulk(directory, mib=BULK_MIB, time_cap=600.0):
    """`dd ... conv=fdatasync` of `mib` MiB into `directory`, timed around the command."""
    path = os.path.join(directory, f"dd-{os.getpid()}-{time.monotonic_ns()}")
    try:
        start = time.perf_counter()
        subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}", "conv=fdatasync"],
                       check=True, capture_output=True, timeout=time_cap)
        return Bandwidth(DD_ROW, mib << 20, time.perf_counter() - start)
    finally:
        if os.path.exists(path):
            os.unlink(path)


SMALL_DURABLE_ROW = "shmbus 64 B send / poll_many, durable topic"
SMALL_MEMORY_ROW = "shmbus 64 B send / poll_many, memory-only topic"


def small(bus, durable, count=1_000_000, time_cap=60.0):
    """64 B per-record throughput on a durable or a memory-only topic, the same ring."""
    result = shmbus_throughput(bus, 64, count, ring_bytes=ring_bytes_for(64, count), durable=durable,
                               time_cap=time_cap)
    result.transport = SMALL_DURABLE_ROW if durable else SMALL_MEMORY_ROW
    return result
