"""Report plots: pure functions from plain data to matplotlib Figures (Agg, no pyplot state).

Every function takes lists/dicts of numbers (so profile records, run records or a user's own data
can feed it), returns a ``Figure``, and never touches global matplotlib settings. ``save`` writes
a figure as PNG and SVG.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

WIN, LOSS, TIE = "#1b7837", "#c2352b", "#9a9a9a"  # green / red / grey, distinct in greyscale print too
PALETTE = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000"]  # Okabe-Ito
MARKERS = "osD^vP*X"


def _figure(width: float = 7.0, height: float = 4.0) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig


def _plain_log_ticks(axis) -> None:
    """Label a log axis 1, 10, 100, 1,000 (and 0.5, 2, 20 ...) rather than 10^k."""
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))


def _title(ax, title: str, width: int = 60) -> None:
    """A title that wraps instead of running off the figure."""
    ax.set_title("\n".join(textwrap.wrap(title, width)) if len(title) > width else title)


def save(fig: Figure, stem: Path) -> list[Path]:
    """Write ``stem``.png (150 dpi) and ``stem``.svg; returns both paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(f"{stem.name}.png"), stem.with_name(f"{stem.name}.svg")]  # names may hold dots (BM25.dl19)
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    return paths


def metric_bars(values: Mapping[str, Mapping[str, tuple[float, float, float]]], *, title: str) -> Figure:
    """Grouped bars: one group per metric, one bar per system; error bars are the 95% CI of the mean.

    ``values[system][metric] = (mean, ci_low, ci_high)``.
    """
    systems = list(values)
    metrics = list(dict.fromkeys(m for by_metric in values.values() for m in by_metric))
    fig = _figure(min(9.0, 3.0 + 1.2 * len(metrics)), 4.2)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(systems))
    x = np.arange(len(metrics))
    for i, system in enumerate(systems):
        triples = [values[system].get(m, (np.nan, np.nan, np.nan)) for m in metrics]
        means = np.array([t[0] for t in triples])
        err = np.array([[t[0] - t[1] for t in triples], [t[2] - t[0] for t in triples]])
        ax.bar(x + (i - (len(systems) - 1) / 2) * width, means, width, yerr=err, capsize=3,
               color=PALETTE[i % len(PALETTE)], label=system, error_kw={"elinewidth": 1, "ecolor": "#333333"})
    ax.set_xticks(x, metrics)
    ax.set_ylabel("score (mean over queries)")
    ax.set_ylim(0, min(1.05, max(1e-3, np.nanmax([t[2] for s in values.values() for t in s.values()])) * 1.15))
    _title(ax, title)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    fig.legend(loc="outside lower center", ncols=legend_columns(systems, fig.get_figwidth(), most=4), frameon=False)
    return fig


def legend_columns(labels: Sequence[str], width_in: float, *, most: int, fontsize: float = 10.0) -> int:
    """As many legend columns as fit the figure's width for the longest label (a legend wider than its figure is
    cut at both edges): about 0.55 x fontsize points per character, plus the marker and the gaps."""
    longest = max((len(str(label)) for label in labels), default=1)
    column_in = longest * 0.55 * fontsize / 72 + 0.7
    return max(1, min(most, len(labels), int(width_in // column_in)))


def per_query_deltas(deltas: Mapping[str, float], *, metric: str, control: str, treatment: str,
                     eps: float = 1e-9) -> Figure:
    """Sorted per-query bars of treatment - control: wins green, losses red, ties grey."""
    items = sorted(deltas.items(), key=lambda kv: (-kv[1], kv[0]))
    d = np.array([v for _, v in items], dtype=float)
    colors = [WIN if v > eps else LOSS if v < -eps else TIE for v in d]
    wins, losses = int((d > eps).sum()), int((d < -eps).sum())
    fig = _figure(7.0, 3.8)
    ax = fig.add_subplot()
    ax.bar(np.arange(len(d)), d, width=1.0 if len(d) > 60 else 0.8, color=colors, linewidth=0)
    ax.axhline(0, color="#333333", linewidth=0.8)
    if len(d):
        ax.axhline(float(d.mean()), color="#333333", linewidth=1, linestyle="--")
    ax.set_xlim(-0.6, len(d) - 0.4)
    low, high = min(0.0, float(d.min(initial=0))), max(0.0, float(d.max(initial=0)))
    pad = 0.06 * ((high - low) or 1.0)
    ax.set_ylim(low - pad, high + pad)
    if len(d) <= 30:
        ax.set_xticks(np.arange(len(d)), [q for q, _ in items], rotation=90, fontsize=7)
        ax.set_xlabel("query id (sorted by Δ)")
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{len(d)} queries, sorted by Δ")
    ax.set_ylabel(f"Δ {metric} (treatment − control)")
    _title(ax, f"{metric}: {treatment} vs {control}")
    handles = [Patch(color=WIN, label=f"wins ({wins})"), Patch(color=TIE, label=f"ties ({len(d) - wins - losses})"),
               Patch(color=LOSS, label=f"losses ({losses})"),
               ax.lines[-1] if len(d) else Patch(color="white")]
    if len(d):
        handles[-1].set_label(f"mean Δ {d.mean():+.4f}")
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return fig


def recall_curves(curves: Mapping[str, tuple[Sequence[int], Sequence[float]]], *, title: str) -> Figure:
    """Recall@k against k (log scale), one line per system."""
    fig = _figure(6.5, 4.2)
    ax = fig.add_subplot()
    for i, (label, (ks, values)) in enumerate(curves.items()):
        ax.plot(ks, values, color=PALETTE[i % len(PALETTE)], linewidth=1.8, label=label)
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("k (cut-off, log scale)")
    ax.set_ylabel("Recall@k (mean over queries)")
    ax.set_ylim(0, 1.02)
    _title(ax, title)
    ax.grid(which="both", alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def throughput_vs_batch(points: Sequence[Mapping[str, Any]], *, title: str) -> Figure:
    """Passages/s against batch size, one line per precision (and engine/device/length when they vary).

    Each point needs ``batch_size``, ``passages_per_s`` and ``precision``; ``engine``, ``device``,
    ``max_seq_length`` are used in the line labels when present and not all equal. Lines keep the order
    of first appearance, so a latency CDF of the same points (in the same order) uses the same colours.
    """
    keys = [k for k in ("engine", "device", "max_seq_length") if len({p.get(k) for p in points}) > 1]
    order = [k for k in ("engine", "precision", "device", "max_seq_length") if k == "precision" or k in keys]
    series: dict[str, list[tuple[float, float]]] = {}
    for p in points:
        label = " · ".join(f"len {p.get(k)}" if k == "max_seq_length" else str(p.get(k)) for k in order)
        series.setdefault(label, []).append((float(p["batch_size"]), float(p["passages_per_s"])))
    fig = _figure(6.5, 4.2 + 0.2 * len(series))
    ax = fig.add_subplot()
    for i, (label, xy) in enumerate(series.items()):
        xy.sort()
        ax.plot([a for a, _ in xy], [b for _, b in xy], marker=MARKERS[i % len(MARKERS)],
                color=PALETTE[i % len(PALETTE)], label=label)
    ax.set_xscale("log", base=2)
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("batch size (passages, log₂ scale)")
    ax.set_ylabel("throughput (passages/s)")
    ax.set_ylim(bottom=0)
    _title(ax, title)
    ax.grid(which="both", alpha=0.3)
    fig.legend(title=" · ".join("max length" if k == "max_seq_length" else k for k in order),
               loc="outside lower center", ncols=2 if len(series) > 3 else 1, fontsize=8, frameon=False)
    return fig


def latency_cdf(series: Mapping[str, Sequence[float]], *, title: str) -> Figure:
    """Empirical CDF of per-call latencies (ms), one line per series; p50 and p99 guides."""
    fig = _figure(6.5, 4.0 + 0.2 * len(series))
    ax = fig.add_subplot()
    lows, highs = [], []
    for i, (label, values) in enumerate(series.items()):
        v = np.sort(np.asarray(values, dtype=float))
        if not v.size:
            continue
        lows.append(v[0])
        highs.append(v[-1])
        p50, p99 = np.percentile(v, [50, 99])
        ax.step(v, np.arange(1, v.size + 1) / v.size, where="post", color=PALETTE[i % len(PALETTE)],
                linewidth=1.6, label=f"{label} (p50 {p50:.1f}, p99 {p99:.1f} ms)")
    for q in (0.5, 0.99):
        ax.axhline(q, color="#777777", linewidth=0.8, linestyle=":")
        ax.annotate(f"p{int(q * 100)}", xy=(0.0, q), xycoords=("axes fraction", "data"), xytext=(3, -10),
                    textcoords="offset points", fontsize=7, color="#555555")
    if lows and max(highs) / max(min(lows), 1e-9) > 20:
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("latency per call (ms)")
    ax.set_ylabel("fraction of calls ≤ latency")
    ax.set_ylim(0, 1.02)
    _title(ax, title)
    ax.grid(which="both", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=1, fontsize=8,
               frameon=False)
    return fig


def churn_distribution(overlaps: Sequence[float], rbos: Sequence[float], *, k: int, p: float, title: str) -> Figure:
    """Ranking churn per query: how many queries share 0..k of their top k documents (left), and the
    distribution of rank-biased overlap (right); dashed lines are the means."""
    fig = _figure(8.0, 3.6)
    left, right = fig.subplots(1, 2)
    shared = np.rint(np.asarray(overlaps, dtype=float) * k).astype(int)
    left.bar(np.arange(k + 1), np.bincount(shared, minlength=k + 1)[:k + 1], width=0.8, color=PALETTE[0])
    left.set_xticks(np.arange(k + 1) if k <= 20 else np.linspace(0, k, 6).round().astype(int))
    left.set_xlabel(f"documents shared in the top {k}")
    left.set_ylabel("queries")
    right.set_ylabel("queries")
    values = np.asarray(rbos, dtype=float)
    right.hist(values, bins=np.linspace(0, 1, 21), color=PALETTE[1], edgecolor="white")
    right.set_xlim(0, 1)
    right.set_xlabel(f"rank-biased overlap (RBO_ext, p = {p:g})")
    for ax, mean in ((left, float(np.mean(shared)) if len(shared) else None),
                     (right, float(values.mean()) if len(values) else None)):
        if mean is not None:
            ax.axvline(mean, color="#333333", linewidth=1, linestyle="--")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    if len(values):
        left.set_title(f"overlap@{k}: mean {np.mean(shared) / k:.3f}", fontsize=10)
        right.set_title(f"RBO: mean {values.mean():.3f}", fontsize=10)
    fig.suptitle("\n".join(textwrap.wrap(title, 80)))
    return fig


def quality_speed_frontier(points: Sequence[Mapping[str, Any]], *, metric: str, title: str,
                           control: str | None = None) -> Figure:
    """A metric (with its 95% CI) against passages/s, one marker per point, the frontier drawn as a line through
    the points on it (filled markers; dominated points hollow); beside it the same markers against query p99
    latency where points have one. With ``control`` (and each point's ``delta`` / ``delta_ci``), a second row
    shows each point's paired change from the control with its paired 95% CI: on few queries the absolute CIs
    of every point overlap while the paired ones need not.

    Each point needs ``label``, ``speed`` (passages/s), ``mean``, ``ci`` (low, high) and ``frontier`` (bool);
    ``p99_ms``, ``delta`` and ``delta_ci`` are optional.
    """
    with_p99 = all(p.get("p99_ms") for p in points)
    paired = control is not None and all(p.get("delta") is not None for p in points)
    columns = [("speed", "corpus encoding throughput (passages/s, higher is faster)")]
    if with_p99:
        columns.append(("p99_ms", "query encoding latency p99 (ms, lower is faster)"))
    rows = [("mean", "ci", f"{metric} (mean, 95% CI)")]
    if paired:
        rows.append(("delta", "delta_ci", f"Δ {metric} vs {textwrap.shorten(str(control), 24)} (paired 95% CI)"))
    fig = _figure(11.0 if with_p99 else 6.5, (3.4 if paired else 4.2) * len(rows) + 0.2 * len(points))
    axes = fig.subplots(len(rows), len(columns), sharex="col", sharey="row", squeeze=False)
    for r, (y, band, ylabel) in enumerate(rows):
        for c, (x, xlabel) in enumerate(columns):
            ax = axes[r][c]
            for i, p in enumerate(points):
                low, high = p[band]
                # colour varies fastest, the marker once per round of colours: distinct for 64 points (a grid sweep)
                colour, marker = PALETTE[i % len(PALETTE)], MARKERS[(i // len(PALETTE)) % len(MARKERS)]
                on = bool(p["frontier"])
                ax.errorbar([p[x]], [p[y]], yerr=[[max(0.0, p[y] - low)], [max(0.0, high - p[y])]],
                            fmt=marker, color=colour, markerfacecolor=colour if on else "white",
                            markersize=8, capsize=3, label=f"{p['label']}{'' if on else ' (dominated)'}")
            if x == "speed":
                front = sorted((p for p in points if p["frontier"]), key=lambda p: float(p["speed"]))
                if len(front) > 1:
                    ax.plot([p["speed"] for p in front], [p[y] for p in front], color="#333333", linewidth=1.2,
                            linestyle="--", zorder=0, label="frontier")
            if y == "delta":
                ax.axhline(0.0, color="#555555", linewidth=1)
            _log_if_wide(ax, [float(p[x]) for p in points])
            if r == len(rows) - 1:
                ax.set_xlabel(xlabel)
            ax.grid(which="both", alpha=0.3)
        axes[r][0].set_ylabel(ylabel)
    _title(axes[0][0], title)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2 if len(points) > 4 else 1, fontsize=8,
               frameon=False)
    return fig


EXACT_COLOUR = "#000000"


def _exact_marker(ax, x: float | None, y: float, *, label: str, on: bool | None) -> None:
    """The exact-search reference: a black star (hollow when it is a frontier point that is dominated) and a dotted
    line at its value."""
    ax.axhline(y, color=EXACT_COLOUR, linewidth=0.8, linestyle=":", zorder=0)
    if x is not None:
        ax.plot([x], [y], marker="*", markersize=15, linestyle="none", color=EXACT_COLOUR,
                markerfacecolor=EXACT_COLOUR if on is not False else "white",
                label=f"{label} (reference{', dominated' if on is False else ''})")


def _frontier_line(ax, points: Sequence[Mapping[str, Any]], y: str) -> None:
    front = sorted((p for p in points if p["frontier"]), key=lambda p: float(p["qps"]))
    if len(front) > 1:
        ax.plot([p["qps"] for p in front], [p[y] for p in front], color="#333333", linewidth=1.2, linestyle="--",
                zorder=0, label="frontier")


def _log_if_wide(ax, values: Sequence[float], *, always: bool = False) -> None:
    values = [v for v in values if v and v > 0]
    if values and (always or max(values) / max(min(values), 1e-12) > 20):
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)


def index_quality_speed(points: Sequence[Mapping[str, Any]], exact: Mapping[str, Any], *, metric: str,
                        title: str) -> Figure:
    """Approximate-index settings: a metric (with the 95% CI of the setting's value against exact search) against
    search queries/s (log scale), and beside it against batch-1 search latency p99; exact search is the reference
    (a black star and a dotted line at its value). The frontier is a dashed line through the points on it (filled
    markers; dominated points hollow).

    Each point needs ``label``, ``qps``, ``p99_ms``, ``mean``, ``ci`` (low, high) and ``frontier`` (bool); ``exact``
    needs ``label``, ``qps``, ``mean``, ``p99_ms`` (None: not timed per query) and ``frontier`` (None when exact
    search is no point of the frontier, the reference only).
    """
    fig = _figure(11.0, 4.4 + 0.2 * len(points))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, x, exact_x, xlabel in (
            (axes[0], "qps", exact["qps"], "search throughput (queries/s, whole query set, higher is faster)"),
            (axes[1], "p99_ms", exact.get("p99_ms"), "search latency p99 (ms, one query per call, lower is faster)")):
        for i, p in enumerate(points):
            low, high = p["ci"]
            colour, marker = PALETTE[i % len(PALETTE)], MARKERS[(i // len(PALETTE)) % len(MARKERS)]
            on = bool(p["frontier"])
            ax.errorbar([p[x]], [p["mean"]], yerr=[[max(0.0, p["mean"] - low)], [max(0.0, high - p["mean"])]],
                        fmt=marker, color=colour, markerfacecolor=colour if on else "white", markersize=8,
                        capsize=3, label=f"{p['label']}{'' if on else ' (dominated)'}")
        _exact_marker(ax, exact_x, float(exact["mean"]), label=str(exact["label"]), on=exact.get("frontier"))
        if x == "qps":
            _frontier_line(ax, [*points, *([{**exact, "frontier": True}] if exact.get("frontier") else [])], "mean")
        _log_if_wide(ax, [float(p[x]) for p in points] + ([float(exact_x)] if exact_x else []), always=x == "qps")
        ax.set_xlabel(xlabel)
        ax.grid(which="both", alpha=0.3)
    axes[0].set_ylabel(f"{metric} (mean; 95% CI of exact + Δ)")
    _title(axes[0], title)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2 if len(labels) > 4 else 1, fontsize=8,
               frameon=False)
    return fig


def ann_recall_speed(points: Sequence[Mapping[str, Any]], exact: Mapping[str, Any], *, k: int, title: str) -> Figure:
    """ANN recall@k against search queries/s (log scale), one marker per index setting, exact search as the
    reference at recall 1 (the ann-benchmarks plot); the frontier dashed through the points on it (dominated
    points hollow).

    Each point needs ``label``, ``qps``, ``recall`` and ``frontier`` (bool); ``exact`` needs ``label``, ``qps`` and
    ``frontier`` (bool, or None when it is the reference only).
    """
    wide = max((len(str(p["label"])) for p in points), default=0) > 28  # two legend columns would not fit
    fig = _figure(8.0, 4.4 + (0.25 if wide else 0.15) * len(points))
    ax = fig.add_subplot()
    for i, p in enumerate(points):
        colour, marker = PALETTE[i % len(PALETTE)], MARKERS[(i // len(PALETTE)) % len(MARKERS)]
        on = bool(p["frontier"])
        ax.plot([p["qps"]], [p["recall"]], marker=marker, markersize=8, linestyle="none", color=colour,
                markerfacecolor=colour if on else "white", label=f"{p['label']}{'' if on else ' (dominated)'}")
    _exact_marker(ax, float(exact["qps"]), 1.0, label=str(exact["label"]), on=exact.get("frontier"))
    _frontier_line(ax, [*points, *([{**exact, "recall": 1.0, "frontier": True}] if exact.get("frontier") else [])],
                   "recall")
    _log_if_wide(ax, [float(p["qps"]) for p in points] + [float(exact["qps"])], always=True)
    ax.set_xlabel("search throughput (queries/s, higher is faster)")
    ax.set_ylabel(f"ANN recall@{k} (mean over queries)")
    ax.set_ylim(0, 1.05)
    _title(ax, title)
    ax.grid(which="both", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2 if len(points) > 4 and not wide else 1, fontsize=8, frameon=False)
    return fig


def version_trend(versions: Sequence[str], metrics: Mapping[str, Mapping[str, Any]],
                  speed: Mapping[str, Sequence[float | None]], *, title: str,
                  steps: Mapping[str, Any] | None = None) -> Figure:
    """A metric per panel across versions in order (x: the versions, evenly spaced), its 95% CI as a band; the
    baseline's value dotted and, with a margin, its non-inferiority bound dashed; a ▲/▼ where the change from the
    previous version is significant; the first version whose gate fails marked by a red vertical line. Below,
    speed on its own panel: corpus passages/s (left axis) and query p99 ms (right axis).

    ``metrics[name]`` needs ``means``, ``lows``, ``highs`` (one per version), ``changes`` (one per version: +1, -1
    or 0 for a significant rise, fall, or neither), ``baseline`` (value), ``bound`` (None without a margin) and
    ``first_failure`` (a version index or None); ``speed`` holds ``passages_per_s`` and ``query_p99_ms`` (None where
    a version has none). ``steps`` (optional) adds a panel of one metric's paired change from the previous version
    with its 95% paired CI (overlapping absolute CIs hide what the paired test sees): ``metric``, ``deltas``,
    ``lows``, ``highs`` (None for the first version) and ``significant`` (bools).
    """
    x = np.arange(len(versions))
    panels = len(metrics) + 1 + (steps is not None)
    fig = _figure(max(7.0, 2.5 + 0.5 * len(versions)), 2.6 * panels + 0.8)
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    for ax, (name, m) in zip(axes, metrics.items()):
        means = np.asarray(m["means"], dtype=float)
        ax.fill_between(x, m["lows"], m["highs"], color=PALETTE[0], alpha=0.18, linewidth=0, label="95% CI")
        ax.plot(x, means, marker="o", color=PALETTE[0], label=name)
        ax.axhline(m["baseline"], color="#555555", linestyle=":", linewidth=1, label="baseline")
        if m["bound"] is not None:
            ax.axhline(m["bound"], color=LOSS, linestyle="--", linewidth=1, label="non-inferiority bound")
        for i, change in enumerate(m["changes"]):
            if change:
                ax.plot([x[i]], [means[i]], marker="^" if change > 0 else "v", markersize=11, linestyle="none",
                        color=WIN if change > 0 else LOSS)
        if m["first_failure"] is not None:
            ax.axvline(m["first_failure"], color=LOSS, linewidth=1.5)
            ax.annotate("gate fails", (m["first_failure"], 1.0), xycoords=("data", "axes fraction"),
                        xytext=(3, -12), textcoords="offset points", color=LOSS, fontsize=8)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best", frameon=False)
    _title(axes[0], title)
    if steps is not None:
        ax = axes[len(metrics)]
        for i, (d, low, high, significant) in enumerate(zip(steps["deltas"], steps["lows"], steps["highs"],
                                                            steps["significant"])):
            if d is None:
                continue
            colour = (WIN if d > 0 else LOSS) if significant else TIE
            ax.errorbar([x[i]], [d], yerr=[[max(0.0, d - low)], [max(0.0, high - d)]], fmt="o", color=colour,
                        capsize=4, markersize=7)
        ax.axhline(0.0, color="#555555", linewidth=1)
        ax.set_ylabel(f"Δ {steps['metric']} vs previous")
        ax.grid(alpha=0.3)
    ax = axes[-1]
    pps = [np.nan if v is None else v for v in speed["passages_per_s"]]
    p99 = [np.nan if v is None else v for v in speed["query_p99_ms"]]
    ax.plot(x, pps, marker="s", color=PALETTE[2], label="corpus passages/s")
    ax.set_ylabel("passages/s", color=PALETTE[2])
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    twin.plot(x, p99, marker="D", color=PALETTE[5], label="query p99 ms")
    twin.set_ylabel("query p99 ms", color=PALETTE[5])
    ax.set_xticks(x, [textwrap.shorten(v, 24, placeholder="…") for v in versions], rotation=30, ha="right")
    ax.set_xlabel("version")
    return fig


def latency_vs_load(series: Mapping[str, Sequence[Mapping[str, Any]]], *, slo_ms: float, title: str) -> Figure:
    """The hockey stick: p50 (dashed) and p99 (solid) latency against offered rate, one colour per server; each
    point {"offered", "p50", "p99", "p99_low", "p99_high", "client_limited", "errors"}. The p99's order-statistic
    bounds are the error bars; client-limited points are hollow (the client, not the server, set them), points
    with errors are crossed; the SLO is the dotted line."""
    fig = _figure(7.0, 4.4)
    ax = fig.add_subplot()
    highs = []
    for i, (label, points) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        points = [p for p in points if p.get("p99") is not None]
        if not points:
            continue
        x = [p["offered"] for p in points]
        ax.plot(x, [p["p50"] for p in points], color=colour, linestyle="--", linewidth=1.2)
        ax.plot(x, [p["p99"] for p in points], color=colour, linewidth=1.8, label=f"{label} p99 (p50 dashed)")
        for p in points:
            low, high = p.get("p99_low"), p.get("p99_high")
            if low is not None and high is not None and np.isfinite(high):
                ax.errorbar([p["offered"]], [p["p99"]], yerr=[[p["p99"] - low], [high - p["p99"]]], color=colour,
                            capsize=3, linewidth=1)
            ax.plot([p["offered"]], [p["p99"]], marker="x" if p.get("errors") else "o", markersize=6,
                    markerfacecolor="white" if p.get("client_limited") else colour, color=colour)
            highs.append(p["p99"])
    ax.axhline(slo_ms, color="#aa3333", linewidth=1, linestyle=":")
    ax.annotate(f"SLO p99 {slo_ms:g} ms", xy=(0.0, slo_ms), xycoords=("axes fraction", "data"), xytext=(4, 3),
                textcoords="offset points", fontsize=8, color="#aa3333")
    if highs and max(highs) / max(min(highs), 1e-9) > 20:
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
    offered = [p["offered"] for points in series.values() for p in points if p.get("offered")]
    if offered and max(offered) / min(offered) > 8:
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("offered load (requests/s, open loop, Poisson arrivals)")
    ax.set_ylabel("latency from intended send (ms)")
    _title(ax, title)
    ax.grid(which="both", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=1, fontsize=8, frameon=False)
    return fig


def throughput_vs_concurrency(series: Mapping[str, Sequence[Mapping[str, Any]]], *, title: str) -> Figure:
    """Closed loop: answered requests/s (left axis, solid) and p50 latency (right axis, dashed) against the number of
    concurrent clients; each point {"concurrency", "achieved", "p50"}."""
    fig = _figure(7.0, 4.2)
    ax = fig.add_subplot()
    right = ax.twinx()
    for i, (label, points) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        x = [p["concurrency"] for p in points]
        ax.plot(x, [p["achieved"] for p in points], color=colour, marker="o", linewidth=1.8, label=label)
        right.plot(x, [p["p50"] if p["p50"] is not None else np.nan for p in points], color=colour,
                   linestyle="--", linewidth=1.1)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("concurrent clients (closed loop)")
    ax.set_ylabel("answered requests/s")
    right.set_ylabel("p50 latency (ms, dashed)")
    ax.set_ylim(bottom=0)
    right.set_ylim(bottom=0)
    _title(ax, title)
    ax.grid(which="both", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=1, fontsize=8, frameon=False)
    return fig
