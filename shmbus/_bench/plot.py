"""The picture of a run (--plot FILE.png): latency percentile curves and throughput bars.

Latency curves are drawn on the usual "nines" axis (50 %, 90 %, 99 %, 99.9 % ...
evenly spaced), one curve per row from its median run (by p50): the ping-pong's
one-way times (RTT / 2), the sleeping consumer's one-way times, and the fixed-rate
runs' corrected latencies. Throughput is one group of bars per record size, one bar
per row (median msg/s, log scale). matplotlib comes with the `bench` extra.
"""
import math
import statistics

from .._errors import BenchmarkError
from . import fixed_rate, harness, suite
from .harness import optional

MISSING = "--plot needs matplotlib: pip install 'shmbus[bench]' (the bench extra)"


def require():
    """Fail before a run, not after it, when matplotlib is missing."""
    try:
        optional("matplotlib")
    except ImportError:
        raise BenchmarkError(MISSING) from None


def _resolved(p, n):
    """A percentile the n samples say something about (and the max)."""
    return p == 100 or (100 - p) * n / 100 >= 1


def _curve(result):
    """[(percentile, us)] of one latency result."""
    if isinstance(result, fixed_rate.FixedRate):
        return [(p, us) for p, us in result.curve if us == us and _resolved(p, result.counted)]
    samples = result.one_way_us()
    return [(p, harness.nearest_rank(samples, p)) for p in fixed_rate.CURVE if samples and _resolved(p, len(samples))]


def _median_run(runs):
    ordered = sorted(runs, key=lambda r: r.percentile_us(50) if hasattr(r, "percentile_us")
                     else r.percentiles_us["50"])
    return ordered[len(ordered) // 2]


def _nines(p):
    """Position of percentile p on the nines axis (p = 100 is drawn one decade past 99.999)."""
    return math.log10(1 / max(1e-6, 1 - p / 100))


def _latency_axis(ax, curves, title, colors):
    ax.set_prop_cycle(color=colors)   # 20 colours: one per curve, shmbus solid, peers dashed
    for label, points in curves:
        if points:
            ax.plot([_nines(p) for p, _ in points], [max(us, 1e-3) for _, us in points], marker=".",
                    linestyle="-" if "shmbus" in label else "--", label=label)
    ticks = [50, 90, 99, 99.9, 99.99, 99.999, 100]
    ax.set_xticks([_nines(p) for p in ticks], [f"{p:g}%" if p < 100 else "max" for p in ticks])
    ax.set_yscale("log")
    ax.set_xlabel("percentile")
    ax.set_ylabel("microseconds")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def write(results, path):
    """Draw the run's figures into `path` (PNG)."""
    require()
    optional("matplotlib").use("Agg")
    plt = optional("matplotlib.pyplot")

    one_way = []
    for section, prefix in ((suite.LATENCY, "ping-pong "), (suite.SLEEPING, "sleeping ")):
        for row, by_key in results.rows(section).items():
            runs = by_key.get(None) or []
            if runs:
                one_way.append((prefix + row, _curve(_median_run(runs))))
    corrected = []
    for row, by_rate in results.rows(suite.RATE).items():
        for rate, runs in by_rate.items():
            corrected.append((f"{row} {harness.format_rate(rate)}/s", _curve(_median_run(runs))))
    tput = results.rows(suite.THROUGHPUT)
    panels = [p for p in (one_way and "one_way", corrected and "corrected", tput and "tput") if p]
    if not panels:
        raise BenchmarkError("nothing to plot: the run measured no latency or throughput")
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 5 * len(panels)), squeeze=False)
    for ax, panel in zip(axes[:, 0], panels):
        if panel == "one_way":
            _latency_axis(ax, one_way, "One-way latency (ping-pong: RTT/2; sleeping consumer: timestamp to hand-off)",
                          plt.cm.tab20.colors)
        elif panel == "corrected":
            _latency_axis(ax, corrected, "Latency at a fixed rate, from the intended send time (CO-corrected)",
                          plt.cm.tab20.colors)
        else:
            sizes = list(results.plan.sizes)
            rows = list(tput)
            width = 0.8 / max(1, len(rows))
            for i, row in enumerate(rows):
                heights = []
                for size in sizes:
                    runs = tput[row].get(size) or []
                    heights.append(statistics.median(r.msg_per_s for r in runs) if runs else 0)
                ax.bar([j + i * width for j in range(len(sizes))], heights, width, label=row)
            ax.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(sizes))],
                          [f"{s // 1024} KiB" if s >= 1024 else f"{s} B" for s in sizes])
            ax.set_yscale("log")
            ax.set_ylabel("records/s (median)")
            ax.set_title("Throughput, 1 producer process -> 1 consumer process", fontsize=10)
            ax.grid(True, axis="y", which="both", alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
