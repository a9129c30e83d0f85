"""Latency under load, corrected for coordinated omission.

A producer sends 64 B records at a fixed rate R: record k is due at t0 + k / R. Its
latency is measured from that *intended* time, not from when the producer got round
to sending it, to the moment the consumer's poll_many hands it to the program. A
producer that falls behind (the bus blocked it, or it is descheduled) thus shows as
latency, instead of silently sending fewer records during the stall and measuring
only the good moments (Gil Tene's "coordinated omission").

  producer  spins until the next record is due (its schedule stays exact; it takes a
            core), then sends every record that is due, oldest first, one send each;
            it reports how late it was against its schedule (p99, max) and the rate
            it achieved: latency the producer's own lateness explains is not the bus's
  consumer  Consumer.poll_many with the default wait; for each batch it keeps (first
            offset, records, hand-off time), nothing per record in the timed loop
  parent    latency of record k = hand-off of its batch - (t0 + k / R), both on
            CLOCK_MONOTONIC, which every process of a host shares; the first
            WARMUP_FRACTION of the run is not counted (fresh ring pages fault in);
            recorded in an HDR histogram (the `hdrhistogram` package, 3 significant
            digits) when it is installed, else summarized exactly from the same counts

Offsets are consecutive from 0 on the topic made for the run, so a record's offset
is its sequence number and the value carries nothing.
"""
import collections
import time
from array import array
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

from . import harness
from .harness import optional
from .harness import wait_start
from .shmbus_runs import CONSUMER_BATCH, DURABLE, ring_bytes_for, topic_name

RATES = (10_000, 100_000, 1_000_000)
WARMUP_FRACTION = 0.1
# A run "kept the rate" when it sent at least this share of R per second.
KEPT = 0.99
PERCENTILES = (50, 90, 99, 99.9, 99.99)
# The percentile curve plots and JSON carry.
CURVE = (0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999, 100)
# Latencies are counted in steps of this many ns before summarizing: far below the HDR
# histogram's own resolution at every latency a Python process can see.
GRAIN_NS = 10
# Most records sent back to back before the producer looks at the clock again.
BURST = 1024
# The producer sleeps (rather than spins) while its next record is due further ahead
# than this: at low rates only (every rate of the suite spins).
SLEEP_ABOVE_NS = 2_000_000


@dataclass
class FixedRate:
    """One fixed-rate run, its latencies from each record's intended send time."""

    transport: str
    rate: int                   # records per second asked for
    record_bytes: int
    seconds: float              # the schedule's length
    target: int                 # records scheduled
    sent: int
    received: int
    missed: int                 # overwritten before read (memory-only ring)
    achieved_rate: float        # records sent / time from t0 to the last send
    late_p99_us: float          # the producer's lateness against its schedule (when it starts
    late_max_us: float          # sending what is due), p99 and worst
    counted: int                # records in the histogram (after the warm-up)
    histogram: str              # "hdr" (hdrhistogram) or "exact" (not installed)
    percentiles_us: Dict[str, float]
    max_us: float
    curve: List[Tuple[float, float]] = field(repr=False)   # (percentile, us)
    hdr: Optional[str] = field(default=None, repr=False)    # the encoded HDR histogram

    @property
    def kept_rate(self):
        return self.achieved_rate >= KEPT * self.rate

    def summary(self):
        d = asdict(self)
        d["kept_rate"] = self.kept_rate
        return d


# ---- workers ----

def _producer(bus_name, data_dir, topic, rate, count, *, barrier, time_cap):
    import shmbus
    payload = b"r" * 64
    now_ns = time.monotonic_ns
    late = array("q")   # how late the first record of each burst was, ns
    with shmbus.connect(bus_name, data_dir, autostart=False) as bus:
        producer = bus.producer(timeout=time_cap)
        producer.partitions_for(topic)
        send = producer.send
        wait_start(barrier)
        t0 = now_ns() + 1_000_000
        deadline = t0 + int(time_cap * 1e9)
        sent = 0
        now = now_ns()
        while sent < count and now < deadline:
            due = (now - t0) * rate // 1_000_000_000 + 1 if now >= t0 else 0
            if due <= sent:
                ahead = t0 + sent * 1_000_000_000 // rate - now
                if ahead > SLEEP_ABOVE_NS:
                    time.sleep((ahead - SLEEP_ABOVE_NS) / 1e9)
                now = now_ns()
                continue
            late.append(now - (t0 + sent * 1_000_000_000 // rate))
            n = min(due, count, sent + BURST) - sent
            for _ in range(n):
                send(topic, payload)
            sent += n
            now = now_ns()
        last = now
        producer.close()
    ordered = sorted(late)
    return {"t0_ns": t0, "sent": sent, "last_ns": last,
            "late_p99_ns": harness.nearest_rank(ordered, 99) if ordered else 0,
            "late_max_ns": ordered[-1] if ordered else 0}


def _consumer(bus_name, data_dir, topic, total, *, barrier, time_cap):
    import shmbus
    now_ns = time.monotonic_ns
    batches = array("q")   # (first offset, records, hand-off ns) per batch
    with shmbus.connect(bus_name, data_dir, autostart=False) as bus:
        consumer = bus.consumer(topic, auto_offset_reset="earliest")
        # Fix the start now: "earliest" is resolved at the first read, and a ring lapped
        # before it would start later, not count what it skipped as missed.
        for tp in consumer.assignment():
            consumer.position(tp)
        poll_many, missed = consumer.poll_many, consumer.missed
        wait_start(barrier)
        deadline = time.monotonic() + time_cap
        received = 0
        last = time.monotonic()
        while received + missed() < total and time.monotonic() < deadline:
            batch = poll_many(CONSUMER_BATCH, timeout=0.1)
            handed_off = now_ns()
            if not batch:
                if time.monotonic() - last > harness.IDLE_TIMEOUT:
                    break
                continue
            last = time.monotonic()
            first = batch[0].offset
            if batch[-1].offset - first + 1 == len(batch):
                batches.extend((first, len(batch), handed_off))
            else:  # a gap inside the batch (records overwritten): one entry per record
                for message in batch:
                    batches.extend((message.offset, 1, handed_off))
            received += len(batch)
        lost = missed()
        consumer.close()
    return {"received": received, "missed": lost, "batches": batches.tobytes()}


# ---- summarizing ----

def _counts(batches, t0, rate, skip):
    """Counter of latency (ns, in GRAIN_NS steps) -> records, from the consumer's batches."""
    entries = array("q")
    entries.frombytes(batches)
    counts: Dict[int, int] = collections.Counter()
    for i in range(0, len(entries), 3):
        first, n, handed_off = entries[i], entries[i + 1], entries[i + 2]
        start = max(first, skip)
        for k in range(start, first + n):
            latency = handed_off - (t0 + k * 1_000_000_000 // rate)
            counts[latency - latency % GRAIN_NS] += 1
    return counts


def _exact(counts):
    """(percentile -> ns function, max ns) from the counts, nearest rank."""
    values = sorted(counts)
    cumulative = []
    running = 0
    for v in values:
        running += counts[v]
        cumulative.append(running)

    def at(p):
        if not values:
            return float("nan")
        rank = max(1, -(-running * p // 100))
        lo, hi = 0, len(values) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if cumulative[mid] >= rank:
                hi = mid
            else:
                lo = mid + 1
        return values[lo]
    return at, (values[-1] if values else float("nan"))


def summarize(transport, rate, seconds, target, produced, consumed):
    """A FixedRate from the workers' reports."""
    t0 = produced["t0_ns"]
    skip = int(produced["sent"] * WARMUP_FRACTION)
    counts = _counts(consumed["batches"], t0, rate, skip)
    counted = sum(counts.values())
    encoded = None
    try:
        HdrHistogram = optional("hdrh.histogram").HdrHistogram
    except ImportError:
        at, top = _exact(counts)
        kind = "exact"
    else:
        histogram = HdrHistogram(1, 3600 * 10**9, 3)
        for value, n in counts.items():
            histogram.record_value(max(1, value), n)
        kind = "hdr"
        encoded = histogram.encode().decode("ascii") if counted else None

        def at(p):
            return histogram.get_value_at_percentile(p) if counted else float("nan")
        top = histogram.get_max_value() if counted else float("nan")
    elapsed = (produced["last_ns"] - t0) / 1e9
    return FixedRate(
        transport=transport, rate=rate, record_bytes=64, seconds=seconds, target=target,
        sent=produced["sent"], received=consumed["received"], missed=consumed["missed"],
        achieved_rate=produced["sent"] / elapsed if elapsed > 0 else 0.0,
        late_p99_us=produced["late_p99_ns"] / 1000, late_max_us=produced["late_max_ns"] / 1000, counted=counted, histogram=kind,
        percentiles_us={str(p): at(p) / 1000 for p in PERCENTILES}, max_us=top / 1000,
        curve=[(p, at(p) / 1000) for p in CURVE], hdr=encoded)


ROW = "shmbus send / poll_many, fixed rate"


def shmbus_fixed_rate(bus, rate, seconds=2.0, time_cap=60.0):
    """One run at `rate` records/s for `seconds`, on a memory-only topic made for it
    (its ring holds the whole run, so nothing is overwritten)."""
    if rate < 1 or seconds <= 0:
        raise ValueError("the rate and the duration must be positive")
    count = max(1, int(rate * seconds))
    topic = topic_name("rate")
    bus.create_topic(topic, partitions=1, ring_bytes=ring_bytes_for(64, count), durable=DURABLE)
    try:
        cap = min(time_cap, seconds * 3 + 10)
        values = harness.run_workers(
            [("consumer", _consumer, (bus.name, bus.data_dir, topic, count)),
             ("producer", _producer, (bus.name, bus.data_dir, topic, rate, count))],
            cap)
    finally:
        bus.delete_topic(topic)
    return summarize(ROW, rate, seconds, count, values["producer"], values["consumer"])
