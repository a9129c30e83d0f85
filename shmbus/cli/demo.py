"""shmbus demo: the main job on the embedded default bus, end to end, in a few seconds.

Starts (or attaches to) the bus's supervisor, creates a 4-partition topic, runs
sensor-like producer processes (keyed records with headers) and one consumer
process, shows live progress, then measures latency with a short ping-pong,
checks that every record arrived exactly once with consecutive offsets per
partition, and cleans up: the topic, and the supervisor if the demo started it.
"""
import os
import struct
import time
from typing import Any, Dict, List, Optional, Tuple

import click
from rich.live import Live
from rich.table import Table

from .._bench.harness import SPAWN, run_workers, wait_start
from .._bench.shmbus_runs import attach_or_start, ring_bytes_for, shmbus_latency, stop_supervisor
from .._errors import BenchmarkError
from ._format import wide_console
from ._plumbing import CliError, bus_options

PARTITIONS = 4
SENSORS_PER_PRODUCER = 8
# A record's value: producer number, its sequence number, and a reading. The
# consumer checks the first two to prove each record came exactly once.
VALUE = struct.Struct("<IId")
UPDATE_EVERY = 1000  # records between two progress updates a worker publishes
TIME_CAP = 20.0      # the whole demo must finish well under 30 s on 2 cores


def _sensor_key(producer, sensor):
    return f"sensor-{producer}-{sensor}".encode()


def _produce(bus_name, data_dir, topic, progress, index, records, *, barrier, time_cap):
    """A sensor gateway: keyed readings (a key per sensor, so each sensor's readings
    stay in order in one partition) with unit and source headers."""
    import shmbus
    keys = [_sensor_key(index, s) for s in range(SENSORS_PER_PRODUCER)]
    headers = [("unit", b"degC"), ("source", f"gateway-{index}".encode())]
    pack = VALUE.pack
    with shmbus.connect(bus_name, data_dir, autostart=False) as bus, bus.producer(timeout=5.0) as p:
        p.partitions_for(topic)
        send = p.send
        wait_start(barrier)
        deadline = time.monotonic() + time_cap
        sent = 0
        while sent < records and time.monotonic() < deadline:
            end = min(sent + UPDATE_EVERY, records)
            for seq in range(sent, end):
                send(topic, pack(index, seq, 20.0 + (seq % 100) / 10),
                     key=keys[seq % SENSORS_PER_PRODUCER], headers=headers)
            sent = end
            progress[index] = sent
    return sent


def _consume(bus_name, data_dir, topic, progress, slot, producers, records, *, barrier, time_cap):
    """Read everything, checking per partition that offsets are consecutive from 0,
    and per producer that each sequence number arrives exactly once."""
    import shmbus
    total = producers * records
    seen = [bytearray(records) for _ in range(producers)]
    next_offset = [0] * PARTITIONS
    partition_of_key: Dict[Optional[bytes], int] = {}
    gaps, duplicates, bad, wrong_partition = [], 0, 0, 0
    payload_bytes = 0
    unpack = VALUE.unpack
    with shmbus.connect(bus_name, data_dir, autostart=False) as bus, \
            bus.consumer(topic, auto_offset_reset="earliest") as c:
        wait_start(barrier)
        start = time.perf_counter()
        deadline = time.monotonic() + time_cap
        received, last = 0, start
        while received < total and time.monotonic() < deadline:
            batch = c.poll_many(1000, timeout=0.1)
            if not batch:
                continue
            for m in batch:
                if m.offset != next_offset[m.partition]:
                    gaps.append((m.partition, next_offset[m.partition], m.offset))
                next_offset[m.partition] = m.offset + 1
                assert m.value is not None and m.key is not None
                producer, seq, _ = unpack(m.value)
                if producer >= producers or seq >= records or m.headers[:1] != (("unit", b"degC"),):
                    bad += 1
                    continue
                if seen[producer][seq]:
                    duplicates += 1
                seen[producer][seq] = 1
                # Same key, same partition: the first partition seen for a key is its home.
                if partition_of_key.setdefault(m.key, m.partition) != m.partition:
                    wrong_partition += 1
                payload_bytes += len(m.key) + len(m.value) + sum(len(k) + len(v or b"") for k, v in m.headers)
            received += len(batch)
            last = time.perf_counter()
            progress[slot] = received
        # Anything after the last expected record would be a duplicate: look briefly.
        extra = len(c.poll_many(1000, timeout=0.3))
        missed = c.missed()
    missing = sum(len(s) - sum(s) for s in seen)
    return {"received": received, "extra": extra, "seconds": last - start, "missing": missing,
            "duplicates": duplicates, "gaps": gaps[:5], "gap_count": len(gaps), "bad": bad,
            "wrong_partition": wrong_partition, "missed": missed, "payload_bytes": payload_bytes,
            "end_offsets": next_offset}


class _LiveView:
    """The live table: records per process and its rate, from the shared counters.
    A row's rate freezes once its process is done, so the final view is its real rate."""

    def __init__(self, progress, producers, records):
        self.progress = progress
        self.targets = [records] * producers + [records * producers]
        self.names = [f"producer {i}" for i in range(producers)] + ["consumer"]
        self.started_at: Optional[float] = None
        self.finished_at: List[Optional[float]] = [None] * len(self.targets)

    def table(self):
        now = time.monotonic()
        if self.started_at is None and any(self.progress):
            self.started_at = now
        table = Table("PROCESS", "RECORDS", "", "RATE", box=None, title="shmbus demo: live")
        for i, target in enumerate(self.targets):
            done = self.progress[i]
            if done >= target and self.finished_at[i] is None:
                self.finished_at[i] = now
            elapsed = (self.finished_at[i] or now) - (self.started_at or now)
            filled = 30 * min(done, target) // target
            bar = f"[green]{'━' * filled}[/green][grey37]{'━' * (30 - filled)}[/grey37]"
            rate = f"{done / elapsed / 1e3:,.0f}k/s" if elapsed > 0 else "-"
            table.add_row(self.names[i], f"{done:,} / {target:,}", bar, rate)
        return table


@click.command()
@bus_options
@click.option("--producers", type=int, default=3, show_default=True, help="Producer processes.")
@click.option("--records", type=int, default=200_000, show_default=True, help="Records per producer.")
@click.option("--round-trips", type=int, default=5_000, show_default=True,
              help="Ping-pong round trips for the latency figures.")
def demo(bus, data_dir, producers, records, round_trips):
    """Run the main job on the embedded default bus: produce, consume, measure, verify."""
    if producers < 1 or records < 1 or round_trips < 1:
        raise CliError("--producers, --records and --round-trips must be positive")
    console = wide_console()   # off a terminal: lines never wrapped (`shmbus demo > file`)
    b, started = attach_or_start(bus, data_dir)
    topic = f"demo-{os.getpid()}"
    try:
        console.print(f"bus [bold]{b.name}[/bold] at {b.data_dir}: "
                      f"{'started a supervisor' if started else 'attached to the running supervisor'}")
        result, sent, seconds = _run(console, b, topic, producers, records)
        latency = _latency(console, b, round_trips)
    except BenchmarkError as e:
        raise CliError(f"demo failed: {str(e).splitlines()[0]}") from None
    finally:
        _cleanup(b, topic, started)

    total = producers * records
    rate = result["received"] / seconds if seconds > 0 else 0.0
    summary = Table("", "", box=None, title="Results")
    summary.add_row("records", f"{result['received']:,} received of {total:,} sent "
                               f"({producers} producer processes -> 1 consumer process)")
    summary.add_row("throughput", f"{rate:,.0f} msg/s, {result['payload_bytes'] / seconds / 1e6:.1f} MB/s "
                                  f"of key+value+header bytes, counted at the consumer, which also checks every "
                                  f"record ({seconds:.2f} s)")
    s = latency.summary()
    summary.add_row("latency", f"64 B ping-pong, {s['round_trips']:,} round trips: RTT p50 {s['rtt_p50_us']:.1f} us, "
                               f"p99 {s['rtt_p99_us']:.1f} us, p99.9 {s['rtt_p999_us']:.1f} us, "
                               f"max {s['rtt_max_us']:.0f} us; one-way p50 {s['one_way_p50_us']:.1f} us")
    console.print(summary)

    console.print(f"deleted topic {topic}" + ("; stopped the supervisor the demo started" if started else ""))
    problems = _verify(result, sent, total)
    offsets = ", ".join(f"p{p}: 0..{end - 1}" if end else f"p{p}: empty"
                        for p, end in enumerate(result["end_offsets"]))
    if problems:
        console.print(f"[red]check FAILED[/red]: {'; '.join(problems)}")
        raise CliError("demo check failed: " + "; ".join(problems))
    console.print(f"[green]check passed[/green]: all {total:,} records received exactly once "
                  f"(no duplicate, none missing, same key -> same partition); offsets consecutive "
                  f"from 0 in every partition ({offsets}); sum of partition ends = {sum(result['end_offsets']):,}")


def _run(console, b, topic, producers, records):
    """Produce and consume with live progress; returns (consumer result, sent, seconds)."""
    per_partition = records * producers // PARTITIONS
    # The default kind of topic: durable, archived to the data dir (the demo deletes
    # it at the end). A demo record is ~60 bytes of key, headers and value, plus its
    # frame header.
    ring = ring_bytes_for(64, per_partition, floor=8 << 20)
    b.create_topic(topic, partitions=PARTITIONS, ring_bytes=ring)
    console.print(f"created topic [bold]{topic}[/bold]: {PARTITIONS} partitions, "
                  f"{ring >> 20} MiB rings, durable (archived to {b.data_dir})")
    progress = SPAWN.RawArray("q", producers + 1)
    args = (b.name, b.data_dir, topic, progress)
    workers: List[Tuple[str, Any, tuple]] = [("consumer", _consume, (*args, producers, producers, records))]
    workers += [(f"producer{i}", _produce, (*args, i, records)) for i in range(producers)]
    view = _LiveView(progress, producers, records)
    with Live(view.table(), console=console, refresh_per_second=10) as live:
        values = run_workers(workers, TIME_CAP, required=[r for r, _, _ in workers],
                             on_wait=lambda: live.update(view.table()))
        live.update(view.table())
    if not console.is_terminal:
        console.line()  # off a terminal, Live leaves its last line open
    result = values["consumer"]
    sent = [values[f"producer{i}"] for i in range(producers)]
    return result, sent, result["seconds"]


def _latency(console, b, round_trips):
    with console.status(f"latency: {round_trips:,} ping-pong round trips between two processes ..."):
        return shmbus_latency(b, wait="spin", round_trips=round_trips,
                              warmup=max(1, round_trips // 10), time_cap=TIME_CAP)


def _verify(result, sent, total):
    problems = []
    if sum(sent) != total:
        problems.append(f"producers sent {sum(sent):,} of {total:,} within {TIME_CAP:.0f}s")
    if result["missing"]:
        problems.append(f"{result['missing']:,} records missing")
    if result["duplicates"] or result["extra"]:
        problems.append(f"{result['duplicates'] + result['extra']:,} duplicates")
    if result["gap_count"]:
        problems.append(f"{result['gap_count']} offset gaps (partition, expected, got): {result['gaps']}")
    if result["missed"]:
        problems.append(f"{result['missed']:,} records overwritten before they were read")
    if result["bad"]:
        problems.append(f"{result['bad']:,} records with an unexpected value or headers")
    if result["wrong_partition"]:
        problems.append(f"{result['wrong_partition']:,} records of a key outside its partition")
    if sum(result["end_offsets"]) != total:
        problems.append(f"partition ends sum to {sum(result['end_offsets']):,}, not {total:,}")
    return problems


def _cleanup(b, topic, started):
    try:
        if topic in b.topics():
            b.delete_topic(topic)
    finally:
        if started:
            stop_supervisor(b)
        else:
            b.close()
