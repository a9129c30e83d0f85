"""What a run's Results say: one progress line per result, the tables (medians across
runs, spreads, notes), the ratios to the peers and to issue 8's targets, and the JSON
document. Tables are data (Table); bench/run.py prints them as markdown, `shmbus
bench` through rich.
"""
import os
import platform
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import durable, fixed_rate, harness, idle, peers, shmbus_runs, sleeping, suite
from .harness import format_rate


@dataclass
class Table:
    title: str
    header: List[str]
    rows: List[List[str]] = field(default_factory=list)


# ---- formatting ----

def micros(x):
    if x != x:  # nan
        return "n/a"
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def size_label(size):
    return f"{size // 1024} KiB" if size >= 1024 and size % 1024 == 0 else f"{size}B"


def span(low, high, fmt="{}"):
    """'3' or '3-5': a range across runs, collapsed when all runs agree."""
    return fmt.format(low) if fmt.format(low) == fmt.format(high) else f"{fmt.format(low)}-{fmt.format(high)}"


def describe(result):
    """One line on one result, for the progress output."""
    if isinstance(result, harness.Throughput):
        return (f"{format_rate(result.msg_per_s)} msg/s, {result.mb_per_s:.1f} MB/s"
                + (" (capped)" if result.capped else "")
                + (f" ({result.missed} never arrived)" if result.stalled
                   else f" ({result.missed} overwritten)" if result.missed else ""))
    if isinstance(result, harness.Latency):
        s = result.summary()
        return f"RTT p50 {micros(s['rtt_p50_us'])} us, p99 {micros(s['rtt_p99_us'])} us"
    if isinstance(result, harness.OneWay):
        s = result.summary()
        return f"one-way p50 {micros(s['p50_us'])} us, p99 {micros(s['p99_us'])} us ({s['records']} records)"
    if isinstance(result, fixed_rate.FixedRate):
        p = result.percentiles_us
        kept = "" if result.kept_rate else f"; producer could not keep the rate ({format_rate(result.achieved_rate)}/s)"
        return f"p50 {micros(p['50'])} us, p99 {micros(p['99'])} us, max {micros(result.max_us)} us{kept}"
    if isinstance(result, idle.IdleCost):
        return f"{result.percent_of_core:.2f} % of one core over {result.seconds:.1f} s"
    if isinstance(result, durable.Bandwidth):
        return f"{result.mb_per_s:,.0f} MB/s"
    return str(result)


def summary(result):
    """A result as a flat dict for JSON."""
    if isinstance(result, harness.Throughput):
        return result.as_dict()
    return result.summary()


# ---- medians ----

def median_rate(results, row, size):
    runs = results.get(suite.THROUGHPUT, row, size)
    return statistics.median(r.msg_per_s for r in runs) if runs else None


def median_of(runs, value):
    return statistics.median(value(r) for r in runs) if runs else None


def _shmbus_mode_rows(results):
    modes = {mode.row for mode in results.plan.modes}
    return [row for row in results.rows(suite.THROUGHPUT) if row in modes]


def _peer_throughput_rows(results):
    modes = set(_shmbus_mode_rows(results))
    return [row for row in results.rows(suite.THROUGHPUT) if row not in modes]


# ---- tables ----

def throughput_table(results):
    sizes = results.plan.sizes
    batch = "/".join(str(results.plan.batch_for(s)) for s in sizes)
    counts = " / ".join(f"{results.plan.count(s):,}" for s in sizes)
    producers = results.plan.producers
    table = Table(f"Throughput, {producers} producer process{'es' if producers > 1 else ''} -> 1 consumer "
                  f"process (counted at the consumer; records per run: {counts}; B={batch})",
                  ["transport"] + [h for s in sizes for h in (f"{size_label(s)} msg/s", "MB/s")]
                  + ["spread (min-max msg/s, %)", "notes"])
    for row, by_size in results.rows(suite.THROUGHPUT).items():
        cells, spreads, notes = [], [], []
        for size in sizes:
            runs = by_size.get(size) or []
            if not runs:
                cells += ["n/a", "n/a"]
                spreads.append("-")
                continue
            rates = [r.msg_per_s for r in runs]
            med = statistics.median(rates)
            cells += [format_rate(med), f"{med * size / 1e6:.1f}"]
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
            gone = [r.unaccounted for r in runs if r.unaccounted]
            if gone:
                notes.append(f"{size_label(size)} {span(min(gone), max(gone))} records neither received nor "
                             f"reported missed in {len(gone)}/{len(runs)} run(s)")
            lost = [r.missed / r.target for r in runs if r.missed and not r.stalled]
            if lost:
                notes.append(f"{size_label(size)} overwritten before read "
                             f"{span(100 * min(lost), 100 * max(lost), '{:.0f}')}% in {len(lost)}/{len(runs)} run(s)")
        table.rows.append([row] + cells + ["/".join(spreads), "; ".join(notes)])
    return table


def latency_table(results):
    plan = results.plan
    table = Table(f"Latency, 64 B ping-pong ({plan.round_trips} round trips after {plan.warmup} warm-up), "
                  f"microseconds",
                  ["transport", "RTT p50", "RTT p99", "RTT p99.9", "RTT max", "one-way p50 (RTT/2)",
                   "one-way p99 (RTT/2)", "p50 range across runs"])
    for row, by_key in results.rows(suite.LATENCY).items():
        runs = by_key.get(None) or []
        s = [r.summary() for r in runs]

        def med(key):
            return statistics.median(x[key] for x in s)
        p50s = [x["rtt_p50_us"] for x in s]
        table.rows.append([row, micros(med("rtt_p50_us")), micros(med("rtt_p99_us")), micros(med("rtt_p999_us")),
                           micros(med("rtt_max_us")), micros(med("one_way_p50_us")),
                           micros(med("one_way_p99_us")), f"{micros(min(p50s))}-{micros(max(p50s))}"])
    return table


def sleeping_table(results):
    table = Table(f"Latency to a sleeping consumer: 64 B records paced every {sleeping.INTERVAL * 1000:g} ms, "
                  f"one-way from the record's timestamp to its hand-off (CLOCK_REALTIME), microseconds",
                  ["transport", "records", "one-way p50", "p99", "p99.9", "max", "p50 range across runs"])
    for row, by_key in results.rows(suite.SLEEPING).items():
        runs = by_key.get(None) or []
        s = [r.summary() for r in runs]

        def med(key):
            return statistics.median(x[key] for x in s)
        p50s = [x["p50_us"] for x in s]
        table.rows.append([row, f"{s[0]['records']:,}", micros(med("p50_us")), micros(med("p99_us")),
                           micros(med("p999_us")), micros(med("max_us")), f"{micros(min(p50s))}-{micros(max(p50s))}"])
    return table


def rate_table(results):
    plan = results.plan
    table = Table(f"Latency under load, coordinated-omission corrected: 64 B at a fixed rate for "
                  f"{plan.rate_seconds:g} s, from each record's intended send time to its hand-off, microseconds "
                  f"(first {fixed_rate.WARMUP_FRACTION:.0%} not counted)",
                  ["transport", "rate/s", "p50", "p90", "p99", "p99.9", "p99.99", "max", "achieved rate/s",
                   "producer late p99 / max", "notes"])
    for row, by_rate in results.rows(suite.RATE).items():
        for rate, runs in by_rate.items():
            def med(value):
                return statistics.median(value(r) for r in runs)
            notes = []
            behind = [r for r in runs if not r.kept_rate]
            if behind:
                notes.append(f"the producer could not keep the rate in {len(behind)}/{len(runs)} run(s) "
                             f"(achieved {span(format_rate(min(r.achieved_rate for r in behind)), format_rate(max(r.achieved_rate for r in behind)))}/s)")
            lost = [r.missed for r in runs if r.missed]
            if lost:
                notes.append(f"{span(min(lost), max(lost))} overwritten before read")
            kinds = {r.histogram for r in runs}
            if kinds != {"hdr"}:
                notes.append("exact percentiles (hdrhistogram not installed)")
            table.rows.append([row, f"{rate:,}"] + [micros(med(lambda r, p=p: r.percentiles_us[str(p)]))
                                                    for p in fixed_rate.PERCENTILES]
                              + [micros(med(lambda r: r.max_us)), format_rate(med(lambda r: r.achieved_rate)),
                                 f"{micros(med(lambda r: r.late_p99_us))} / {micros(med(lambda r: r.late_max_us))} us",
                                 "; ".join(notes)])
    return table


def idle_table(results):
    table = Table("Idle cost: CPU time (user + system) of the supervisor and the waiting consumers, "
                  "% of one core",
                  ["setup", "seconds", "supervisor CPU s", "consumers CPU s", "% of one core", "range across runs"])
    for row, by_key in results.rows(suite.IDLE).items():
        runs = by_key.get(None) or []
        pcts = [r.percent_of_core for r in runs]
        table.rows.append([row, f"{statistics.median(r.seconds for r in runs):.1f}",
                           f"{statistics.median(r.supervisor_cpu_s for r in runs):.3f}",
                           f"{statistics.median(sum(r.consumers_cpu_s) for r in runs):.3f}",
                           f"{statistics.median(pcts):.2f}", f"{min(pcts):.2f}-{max(pcts):.2f}"])
    return table


def durable_table(results):
    table = Table("Durable: what archiving costs (the same directory, the same harness)",
                  ["measure", "median", "min-max"])
    for row, by_key in results.rows(suite.DURABLE).items():
        runs = by_key.get(None) or []
        if runs and isinstance(runs[0], durable.Bandwidth):
            values, unit = [r.mb_per_s for r in runs], "MB/s"
        else:
            values, unit = [r.msg_per_s for r in runs], "msg/s"
        table.rows.append([f"{row}, {unit}", f"{statistics.median(values):,.0f}",
                           f"{min(values):,.0f}-{max(values):,.0f}"])
    return table


def peer_ratio_tables(results):
    """shmbus / peer, every shmbus row against every peer row, from the medians."""
    tables = []
    ours, theirs = _shmbus_mode_rows(results), _peer_throughput_rows(results)
    if ours and theirs:
        table = Table("Throughput ratios, shmbus msg/s / peer msg/s (medians of this run; >1: shmbus faster)",
                      ["shmbus row, size"] + [_short(p) for p in theirs])
        for row in ours:
            for size in results.plan.sizes:
                cells = []
                for peer in theirs:
                    a, b = median_rate(results, row, size), median_rate(results, peer, size)
                    cells.append(f"{a / b:.2f}x" if a and b else "n/a")
                table.rows.append([f"{row}, {size_label(size)}"] + cells)
        tables.append(table)
    lat = results.rows(suite.LATENCY)
    ours = [r for r in lat if r.startswith("shmbus")]
    theirs = [r for r in lat if not r.startswith("shmbus")]
    if ours and theirs:
        table = Table("Latency ratios, shmbus RTT p50 / peer RTT p50 (<1: shmbus faster)",
                      ["shmbus"] + theirs)
        for row in ours:
            a = median_of(results.get(suite.LATENCY, row), lambda r: r.percentile_us(50))
            cells = []
            for peer in theirs:
                b = median_of(results.get(suite.LATENCY, peer), lambda r: r.percentile_us(50))
                cells.append(f"{a / b:.3f}x" if a and b else "n/a")
            table.rows.append([row] + cells)
        tables.append(table)
    return tables


def _short(row):
    return row.split(" put")[0].split(" send")[0].split(" (")[0] if "list of" not in row else "Queue, lists of B"


# ---- issue 8's targets ----

@dataclass(frozen=True)
class Target:
    """One ratio issue 8 item 5 sets, as measured in this run."""

    what: str
    value: Callable[[Any], Optional[float]]    # Results -> the ratio (None: not measured)
    goal: str                                  # ">= 3" or "<= 1.1" or "< 0.5"


def _tput_ratio(ours, theirs, size):
    def value(results):
        a, b = median_rate(results, ours, size), median_rate(results, theirs, size)
        return a / b if a and b else None
    return value


def _p50_ratio(section, ours, theirs):
    def value(results):
        a = median_of(results.get(section, ours), lambda r: r.percentile_us(50))
        b = median_of(results.get(section, theirs), lambda r: r.percentile_us(50))
        return a / b if a and b else None
    return value


def _idle_percent(results):
    for row in results.rows(suite.IDLE):
        return median_of(results.get(suite.IDLE, row), lambda r: r.percent_of_core)
    return None


def _durable_ratio(ours, theirs, value_of):
    def value(results):
        a = median_of(results.get(suite.DURABLE, ours), value_of)
        b = median_of(results.get(suite.DURABLE, theirs), value_of)
        return a / b if a and b else None
    return value


_SEND, _MANY, _ITER, _ARRAY, _VIEW = (shmbus_runs.MODES_BY_KEY[k].row for k in (
    "send/poll_many", "send_many/poll_many", "send/iterate", "send_array/poll_batch", "reserve/poll_batch-view"))
_ZMQ, _QLIST, _IOX = "pyzmq PUSH/PULL ipc://", peers.QUEUE_LISTS, peers.ICEORYX2_THROUGHPUT

TARGETS: Tuple[Target, ...] = (
    Target(f"64 B {_ITER} / pyzmq", _tput_ratio(_ITER, _ZMQ, 64), ">= 3"),
    Target(f"64 B {_SEND} / pyzmq", _tput_ratio(_SEND, _ZMQ, 64), ">= 3"),
    Target(f"64 B {_ARRAY} / Queue, lists of 64 distinct", _tput_ratio(_ARRAY, _QLIST, 64), ">= 4"),
    Target(f"64 B {_ARRAY} / pyzmq", _tput_ratio(_ARRAY, _ZMQ, 64), ">= 20"),
    Target(f"1 KiB {_SEND} / pyzmq", _tput_ratio(_SEND, _ZMQ, 1024), ">= 3"),
    Target(f"64 KiB {_SEND} / iceoryx2", _tput_ratio(_SEND, _IOX, 65536), ">= 1.2"),
    Target(f"64 KiB {_VIEW} / iceoryx2", _tput_ratio(_VIEW, _IOX, 65536), ">= 2"),
    Target("ping-pong one-way p50, shmbus wait=busy / iceoryx2 busy-poll",
           _p50_ratio(suite.LATENCY, suite.SHMBUS_BUSY, peers.ICEORYX2_BUSY), "<= 0.5"),
    Target("sleeping consumer one-way p50, shmbus / posix semaphore",
           _p50_ratio(suite.SLEEPING, sleeping.SHMBUS_ROW, sleeping.SEMAPHORE_ROW),
           "<= 1.1"),
    Target("idle: supervisor + 10 waiting consumers, % of one core", _idle_percent, "< 0.5"),
    Target("durable 64 KiB MB/s / dd bs=1M conv=fdatasync",
           _durable_ratio(durable.BULK_ROW, durable.DD_ROW, lambda r: r.mb_per_s), ">= 0.9"),
    Target("64 B durable msg/s / memory-only",
           _durable_ratio(durable.SMALL_DURABLE_ROW, durable.SMALL_MEMORY_ROW, lambda r: r.msg_per_s), ">= 0.9"),
)


def _met(value, goal):
    op, bound = goal.split()
    b = float(bound)
    return {">=": value >= b, "<=": value <= b, "<": value < b, ">": value > b}[op]


def target_rows(results):
    """[(what, value or None, goal, met or None)] for the targets this run measured."""
    rows = []
    for target in TARGETS:
        value = target.value(results)
        if value is not None:
            rows.append((target.what, value, target.goal, _met(value, target.goal)))
    return rows


def targets_table(results):
    table = Table("Issue 8's targets, measured in this run (medians; ratios are shmbus / peer)",
                  ["measure", "this run", "target", "met"])
    for what, value, goal, met in target_rows(results):
        shown = f"{value:.2f} %" if "%" in what else f"{value:.2f}x"
        table.rows.append([what, shown, goal, "yes" if met else "no"])
    return table


def tables(results):
    """Every table this run has data for: the targets and ratios first."""
    out = []
    if target_rows(results):
        out.append(targets_table(results))
    out += peer_ratio_tables(results)
    for section, make in ((suite.THROUGHPUT, throughput_table), (suite.LATENCY, latency_table),
                          (suite.SLEEPING, sleeping_table), (suite.RATE, rate_table),
                          (suite.IDLE, idle_table), (suite.DURABLE, durable_table)):
        if results.rows(section):
            out.append(make(results))
    return out


def markdown(table):
    lines = [f"### {table.title}", "", "| " + " | ".join(table.header) + " |",
             "|" + "---|" * len(table.header)]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    return "\n".join(lines) + "\n"


# ---- the machine, and the JSON document ----

def versions():
    import shmbus
    found = {"shmbus": shmbus.__version__, "Python": platform.python_version()}
    found.update(peers.versions())
    return found


def headline(results):
    plan = results.plan
    load = results.load_before
    return (f"{platform.node()}: {os.cpu_count()} CPUs, {platform.machine()}, "
            + ", ".join(f"{k} {v}" for k, v in versions().items())
            + f"; {plan.runs} run(s), medians; {results.seconds:.0f} s; load average (1/5/15 min) "
            f"{load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f} before, "
            f"{results.load_after[0]:.2f}/{results.load_after[1]:.2f}/{results.load_after[2]:.2f} after")


def document(results, extra=None):
    """Every run's figures and the targets, for scripts."""
    doc: Dict[str, Any] = {
        "host": platform.node(), "cpus": os.cpu_count(), "versions": versions(),
        "runs": results.plan.runs, "seconds": results.seconds,
        "load_before": list(results.load_before), "load_after": list(results.load_after),
    }
    doc.update(extra or {})
    for section in suite.SECTIONS:
        doc[section] = [dict(summary(result), row=row, key=key, run=i + 1)
                        for row, by_key in results.rows(section).items()
                        for key, runs in by_key.items() for i, result in enumerate(runs)]
    doc["targets"] = [{"measure": what, "value": value, "target": goal, "met": met}
                      for what, value, goal, met in target_rows(results)]
    doc["notes"] = list(results.notes)
    doc["failures"] = list(results.failures)
    return doc
