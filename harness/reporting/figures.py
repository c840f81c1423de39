"""Draw every plot a report needs from ReportData (via harness.reporting.plots) and save PNG + SVG."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from harness.analysis.churn import Churn
from harness.analysis.stats import LATENCY_QUANTILE, quantile_bound
from harness.encode.load import LoadPoint
from harness.reporting import plots
from harness.reporting.data import EXACT_LABEL, IndexGroup, LoadedServing, ReportData
from harness.scoring.records import ProfilePoint, slug


@dataclass(frozen=True)
class FigureFile:
    # "bars" | "deltas" | "recall" | "churn" | "frontier" | "index-quality" | "index-recall" | "latency" |
    # "throughput" | "profile-latency" | "serving-latency" | "serving-throughput"
    key: str
    dataset: str  # "" for profile figures
    title: str
    png: Path
    svg: Path


@dataclass(frozen=True)
class ReportFigure:
    key: str
    dataset: str
    title: str
    name: str  # file stem
    figure: Figure


def draw_all(data: ReportData, folder: Path) -> list[FigureFile]:
    """Draw every figure and save each as PNG + SVG under ``folder``."""
    files = []
    for f in make_figures(data):
        png, svg = plots.save(f.figure, folder / f.name)
        files.append(FigureFile(f.key, f.dataset, f.title, png, svg))
    return files


def make_figures(data: ReportData) -> list[ReportFigure]:
    """The report's figures, in report order (the notebook displays these)."""
    out: list[ReportFigure] = []

    def keep(fig: Figure, key: str, dataset: str, title: str, *name: str) -> None:
        out.append(ReportFigure(key, dataset, title, _stem(key, *name), fig))

    for dataset in data.datasets:
        runs = data.runs_of(dataset)
        values = {r.label: {m: (r.record.metrics[m], *data.cis[(dataset, r.label, m)]) for m in r.record.metrics}
                  for r in runs}
        keep(plots.metric_bars(values, title=f"{dataset}: metrics with 95% bootstrap CIs"), "bars", dataset,
             f"{dataset}: metric means with 95% CIs", dataset)
        for m in data.comparison.metrics if data.comparison else []:
            if m.dataset == dataset and m.metric == data.primary_metric:
                control = next(r for r in runs if r.label == m.control).per_query[m.metric]
                treatment = next(r for r in runs if r.label == m.treatment).per_query[m.metric]
                deltas = {q: treatment[q] - control[q] for q in control}
                keep(plots.per_query_deltas(deltas, metric=m.metric, control=m.control, treatment=m.treatment),
                     "deltas", dataset, f"{dataset}: per-query Δ {m.metric}, {m.treatment} vs {m.control}",
                     dataset, m.metric, m.treatment)
        if data.recall.get(dataset):
            keep(plots.recall_curves(data.recall[dataset], title=f"{dataset}: Recall@k"), "recall", dataset,
                 f"{dataset}: Recall@k, k = 1…{max(r.record.top_k for r in runs)}", dataset)
        for found in (c for c in data.churn if c.dataset == dataset):
            keep(churn_figure(found), "churn", dataset, f"{dataset}: ranking churn, {found.b} vs {found.a}", dataset,
                 found.b)
        front = data.frontiers.get(dataset)
        if front:
            keep(plots.quality_speed_frontier(_frontier_points(data, dataset), metric=front.metric,
                                              title=f"{dataset}: {front.metric} vs speed",
                                              control=_control(data, dataset)),
                 "frontier", dataset, f"{dataset}: {front.metric} (95% CI) vs passages/s (Pareto frontier dashed) "
                 "and vs query p99 latency", dataset, front.metric)
        for group in (g for g in data.indexes if g.dataset == dataset):
            for key, fig, title in index_figures(group):
                keep(fig, key, dataset, title, *group.names)
        latency = {r.label: list(r.record.performance.query_latency.values_ms) for r in runs
                   if r.record.performance is not None}  # external runs timed nothing
        if latency:
            keep(plots.latency_cdf(latency, title=f"{dataset}: single-query encoding latency"),
                 "latency", dataset, f"{dataset}: query latency distribution (one query per call)", dataset)
    for (dataset, workload, rows), loaded in serving_groups(data).items():
        what = f"{dataset}, {workload}, {rows} text(s) per request"
        opened = {s.label: [_load_point(p) for p in s.record.open_loop()] for s in loaded}
        if any(opened.values()):
            keep(plots.latency_vs_load({k: v for k, v in opened.items() if v}, slo_ms=loaded[0].record.slo_p99_ms,
                                       title=f"{what}: latency vs offered load"),
                 "serving-latency", "", f"{what}: p50 and p99 latency against offered load (open loop)",
                 dataset, workload, str(rows))
        closed = {s.label: [{"concurrency": p.concurrency, "achieved": p.achieved_rate,
                             "p50": None if p.latency is None else p.latency.p50} for p in s.record.closed_loop()]
                  for s in loaded}
        if any(closed.values()):
            keep(plots.throughput_vs_concurrency({k: v for k, v in closed.items() if v},
                                                 title=f"{what}: throughput vs concurrency"),
                 "serving-throughput", "", f"{what}: answered requests/s against concurrent clients (closed loop)",
                 dataset, workload, str(rows))
    for profile in data.profiles:
        points = profile.record.points
        timed = [_plot_point(p) for p in points if p.throughput.passages_per_s]
        if timed:
            keep(plots.throughput_vs_batch(timed, title=f"{profile.label}: throughput vs batch size"),
                 "throughput", "", f"{profile.label}: throughput vs batch size per precision", profile.label)
        latency = {_point_label(p, points): list(p.latency.values_ms) for p in points}
        if latency:
            single = {k: v for k, v in latency.items() if k.endswith(" b1")}
            keep(plots.latency_cdf(dict(list((single or latency).items())[:8]),
                                   title=f"{profile.label}: latency per call"),
                 "profile-latency", "", f"{profile.label}: latency distribution", profile.label)
    return out


def serving_groups(data: ReportData) -> dict[tuple[str, str, int], list[LoadedServing]]:
    """Serving records drawn together: the same dataset, workload and texts per request."""
    groups: dict[tuple[str, str, int], list[LoadedServing]] = {}
    for s in data.serving:
        groups.setdefault((s.record.dataset, s.record.workload, s.record.rows_per_request), []).append(s)
    return groups


def _load_point(point: LoadPoint) -> dict[str, object]:
    lat = point.latency
    if lat is None:
        return {"offered": point.offered_rate, "p50": None, "p99": None}
    return {"offered": point.offered_rate, "p50": lat.p50, "p99": lat.p99,
            "p99_low": quantile_bound(lat.values_ms, LATENCY_QUANTILE, 0.975, "lower"),
            "p99_high": quantile_bound(lat.values_ms, LATENCY_QUANTILE, 0.975, "upper"),
            "client_limited": point.client_limited, "errors": sum(point.errors.values())}


def _stem(key: str, *name: str) -> str:
    return "--".join(slug(n) for n in (key, *name))


def index_figure_stem(key: str, group: IndexGroup) -> str:
    """The file stem of an index group's figure ``key`` (the document finds a group's figures by it)."""
    return _stem(key, *group.names)


def index_figures(group: IndexGroup) -> list[tuple[str, Figure, str]]:
    """An index group's figures as (key, figure, title): its metric against search speed and latency, and ANN
    recall against search speed."""
    out = []
    front = group.frontier
    if front is not None:
        points = []
        for s in group.settings:
            v = s.versus(group.metric)
            if v is None or group.metric not in s.run.per_query:
                continue
            low, high = v.delta_ci
            points.append({"label": s.label, "qps": s.info.queries_per_s, "p99_ms": s.info.search_latency.p99,
                           "mean": v.index, "ci": (v.exact + low, v.exact + high),
                           "frontier": front.on_frontier(s.label)})
        latency = group.exact.search_latency
        exact = {"label": EXACT_LABEL, "qps": group.exact.queries_per_s,
                 "mean": group.exact_value(group.metric),
                 "p99_ms": latency.p99 if latency else None,
                 "frontier": front.on_frontier(EXACT_LABEL) if any(p.label == EXACT_LABEL for p in front.points)
                 else None}
        if points and exact["mean"] is not None:
            out.append(("index-quality", plots.index_quality_speed(points, exact, metric=group.metric,
                                                                   title=f"{group.title}: {group.metric} vs search "
                                                                         "speed, approximate indexes"),
                        f"{group.title}: {group.metric} of each index setting (95% CI of exact + Δ) against search "
                        "queries/s and search p99 latency; exact search is the star (frontier dashed)"))
    recall = group.recall_frontier
    if recall is not None:
        points = [{"label": s.label, "qps": s.info.queries_per_s, "recall": a.mean,
                   "frontier": recall.on_frontier(s.label)}
                  for s in group.settings if (a := s.recall(group.recall_k)) is not None]
        exact = {"label": EXACT_LABEL, "qps": group.exact.queries_per_s, "frontier": recall.on_frontier(EXACT_LABEL)}
        out.append(("index-recall", plots.ann_recall_speed(points, exact, k=group.recall_k,
                                                           title=f"{group.title}: ANN recall@{group.recall_k} vs "
                                                                 "search speed"),
                    f"{group.title}: ANN recall@{group.recall_k} against search queries/s; exact search is the star "
                    "(frontier dashed)"))
    return out


def _control(data: ReportData, dataset: str) -> str | None:
    """The dataset's control in the report's comparison (None without one)."""
    c = data.comparison
    return next((m.control for m in c.metrics if m.dataset == dataset), None) if c else None


def _frontier_points(data: ReportData, dataset: str) -> list[dict[str, object]]:
    """The plain data ``plots.quality_speed_frontier`` draws; ``delta``/``delta_ci``: the paired change from the
    dataset's control (0 for the control itself; None where the comparison has no such entry)."""
    front = data.frontiers[dataset]
    p99 = {r.label: r.record.performance.query_latency.p99 for r in data.runs_of(dataset) if r.record.performance}
    control = _control(data, dataset)
    out: list[dict[str, object]] = []
    for p in front.points:
        m = data.comparison.find(dataset, front.metric, p.label) if data.comparison else None
        delta, delta_ci = ((0.0, (0.0, 0.0)) if p.label == control else
                           (m.stats.delta, m.stats.delta_ci) if m is not None else (None, None))
        out.append({"label": p.label, "speed": p.speed, "mean": p.mean,
                    "ci": data.cis[(dataset, p.label, front.metric)], "frontier": front.on_frontier(p.label),
                    "p99_ms": p99.get(p.label), "delta": delta, "delta_ci": delta_ci})
    return out


def _plot_point(point: ProfilePoint) -> dict[str, object]:
    """The plain data ``plots.throughput_vs_batch`` draws."""
    return {"engine": point.engine, "precision": point.precision, "device": point.device,
            "max_seq_length": point.max_seq_length, "batch_size": point.batch_size,
            "passages_per_s": point.throughput.passages_per_s}


def _point_label(point: ProfilePoint, points: list[ProfilePoint]) -> str:
    """Name a point by the settings that vary among ``points``, ending in its batch size (b1 = one query)."""
    keys = [k for k in ("engine", "device", "precision", "max_seq_length")
            if len({getattr(p, k) for p in points}) > 1]
    parts = [f"len {point.max_seq_length}" if k == "max_seq_length" else str(getattr(point, k)) for k in keys]
    return " ".join(parts + [f"b{point.batch_size}"])


def churn_figure(found: Churn) -> Figure:
    """The distributions of per-query overlap@k and RBO of one churn."""
    return plots.churn_distribution(found.overlaps, found.rbos, k=found.k, p=found.p,
                                    title=f"{found.dataset}: {found.b} vs {found.a}")
