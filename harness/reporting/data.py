"""What a report shows, computed from records only: comparison, CIs, Recall@k curves, profile points.

Recall@k curves come from each run record's ``recall_curve.json`` (written at run time); a record
without one (schema 1) gets a note instead of a curve. Nothing is re-read from the datasets.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.analysis.churn import Churn
from harness.analysis.churn import churn as ranking_churn
from harness.analysis.compare import Comparison, aligned, compare_pairs, pair_by_dataset
from harness.analysis.frontier import Frontier, Point, frontier
from harness.analysis.stats import bootstrap_ci
from harness.scoring.records import ProfileRecord, RunRecord, find_records, load
from harness.scoring.scored import ScoredRun, label_runs
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.statistics import DEFAULT_STATS, StatsOptions
from harness.vocabulary.tables import html_table, markdown_table, md_escape

UP, DOWN = "▲", "▼"


@dataclass(frozen=True)
class LoadedProfile:
    path: Path
    record: ProfileRecord

    @property
    def label(self) -> str:
        return self.record.label


@dataclass(frozen=True)
class ReportData:
    runs: list[ScoredRun]
    comparison: Comparison | None
    cis: dict[tuple[str, str, str], tuple[float, float]]  # (dataset, label, metric) -> 95% CI of the mean
    recall: dict[str, dict[str, tuple[list[int], list[float]]]]  # dataset -> label -> (ks, recall@k)
    profiles: list[LoadedProfile]
    primary_metric: str
    notes: list[str] = field(default_factory=list)
    churn: list[Churn] = field(default_factory=list)  # each treatment's ranking against its control (--churn)
    frontiers: dict[str, Frontier] = field(default_factory=dict)  # dataset -> quality x speed frontier

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(r.dataset for r in self.runs))

    def runs_of(self, dataset: str) -> list[ScoredRun]:
        return [r for r in self.runs if r.dataset == dataset]

    @property
    def metrics(self) -> list[str]:
        return list(dict.fromkeys(m for r in self.runs for m in r.record.metrics))

    def quality_table(self) -> tuple[list[str], list[list[str]]]:
        """Headers and rows dataset x encoder, a column per metric: mean, significance marker, 95% CI."""
        rows = []
        for run in self.runs:
            cells = []
            for metric in self.metrics:
                if metric not in run.record.metrics:
                    cells.append("-")
                    continue
                low, high = self.cis[(run.dataset, run.label, metric)]
                cells.append(f"{run.record.metrics[metric]:.4f}{self.marker(run.dataset, metric, run.label)} "
                             f"[{low:.3f}, {high:.3f}]")
            rows.append([run.dataset, run.label, *cells])
        return ["dataset", "encoder", *self.metrics], rows

    def holes_table(self) -> tuple[list[str], list[list[str]]]:
        """Headers and rows for the runs of datasets where the top 10 has unjudged documents (records that state
        their holes): Judged@k, nDCG@k with the holes counted not relevant (standard) and relevant, the gap."""
        holed = {r.dataset for r in self.runs if r.record.holes and r.record.holes.unjudged > 0}
        rows = []
        for run in self.runs:
            h = run.record.holes
            if h is None or run.dataset not in holed:
                continue
            rows.append([run.dataset, run.label, f"{h.judged:.4f}", f"{h.ndcg:.4f}", f"{h.ndcg_unjudged_relevant:.4f}",
                         f"{h.ndcg_unjudged_relevant - h.ndcg:+.4f}", str(run.record.dataset.relevance_level)])
        depth = next((r.record.holes.depth for r in self.runs if r.record.holes), 10)
        return (["dataset", "encoder", f"Judged@{depth}", f"nDCG@{depth} (unjudged = not relevant)",
                 f"nDCG@{depth} (unjudged = relevant)", "unknown", "relevance_level"], rows)

    def marker(self, dataset: str, metric: str, label: str) -> str:
        """UP / DOWN when `label` is significantly better / worse than the dataset's control."""
        m = self.comparison.find(dataset, metric, label) if self.comparison else None
        verdict = m.verdict(self.comparison.alpha, self.comparison.test) if m and self.comparison else ""
        return {"better": f" {UP}", "worse": f" {DOWN}"}.get(verdict, "")

    def _render(self, table) -> list[str]:
        parts = []
        if self.runs:
            parts.append(table(*self.quality_table()))
        if self.comparison and self.comparison.metrics:
            parts.append(table(self.comparison.table_headers, self.comparison.table_rows()))
        return parts

    def _summary(self) -> str:
        return (f"{len(self.runs)} run record(s) on {len(self.datasets)} dataset(s), "
                f"{len(self.profiles)} profile record(s)")

    def _repr_markdown_(self) -> str:
        return "\n\n".join([f"**{self._summary()}**", *self._render(markdown_table),
                             *(f"_{md_escape(n)}_" for n in self.notes)])

    def _repr_html_(self) -> str:
        return "\n".join([f"<p><strong>{html.escape(self._summary())}</strong></p>", *self._render(html_table)])


def load_report_data(paths: Sequence[Path], *, control: str | None = None, metric: str | None = None,
                     stats: StatsOptions = DEFAULT_STATS, churn: bool = False) -> ReportData:
    runs, profiles = [], []
    for directory in find_records([Path(p) for p in paths]):
        record = load(directory)
        if isinstance(record, RunRecord):
            runs.append(ScoredRun.of(directory, record))
        else:
            profiles.append(LoadedProfile(directory, record))
    if not runs and not profiles:
        raise HarnessError("no records found in: " + ", ".join(str(p) for p in paths))
    runs = label_runs(runs)
    pairs, notes = pair_by_dataset(runs, control=control)
    comparison = compare_pairs(pairs, stats=stats) if pairs else None
    if comparison:
        notes += comparison.warnings
    cis = {(r.dataset, r.label, m): mean_ci(list(v.values()), stats)
           for r in runs for m, v in r.per_query.items()}
    recall, recall_notes = recall_curves(runs)
    all_metrics = list(dict.fromkeys(m for r in runs for m in r.record.metrics))
    primary = metric or next((m for m in all_metrics if m.lower() == "ndcg@10"), all_metrics[0] if all_metrics else "")
    if metric and metric not in all_metrics:
        raise HarnessError(f"--metric {metric!r} is in no record; metrics: {', '.join(all_metrics)}")
    churns = [ranking_churn(c, t, metrics=[primary] if primary in c.per_query and primary in t.per_query else None,
                            stats=stats) for c, t in pairs] if churn else []
    frontiers, frontier_notes = quality_speed_frontiers(runs, primary, stats)
    return ReportData(runs, comparison, cis, recall, profiles, primary, notes + recall_notes + frontier_notes,
                      churn=churns, frontiers=frontiers)


def quality_speed_frontiers(runs: Sequence[ScoredRun], metric: str, stats: StatsOptions,
                            ) -> tuple[dict[str, Frontier], list[str]]:
    """The `metric` x passages/s frontier of each dataset with at least two timed runs that have the metric
    (external runs timed nothing and are left out), over the runs on the hardware of the dataset's first timed run
    (speeds of other hardware are not comparable; a note names them)."""
    out: dict[str, Frontier] = {}
    notes: list[str] = []
    for dataset in dict.fromkeys(r.dataset for r in runs):
        timed = [r for r in runs if r.dataset == dataset and metric in r.per_query and r.record.performance
                 and r.record.performance.throughput.passages_per_s]
        other = [r for r in timed if r.record.speed_hardware_key != timed[0].record.speed_hardware_key]
        if other:
            notes.append(f"{dataset}: frontier left out {', '.join(r.label for r in other)}: timed on other hardware "
                         f"than {timed[0].label} ({other[0].record.speed_hardware_key})")
            timed = [r for r in timed if r.record.speed_hardware_key == timed[0].record.speed_hardware_key]
        if len(timed) < 2:
            continue
        points = [Point(r.label, speed, aligned(timed[0], r, metric)[1])
                  for r in timed for speed in [_passages_per_s(r)]]
        out[dataset] = frontier(points, metric=metric, alpha=stats.alpha, test=stats.test, seed=stats.seed,
                                n_resamples=stats.n_resamples)
    return out, notes


def _passages_per_s(run: ScoredRun) -> float:
    performance = run.record.performance
    assert performance is not None and performance.throughput.passages_per_s  # timed runs only
    return performance.throughput.passages_per_s


def mean_ci(values: Sequence[float], stats: StatsOptions) -> tuple[float, float]:
    """95% bootstrap CI of a mean: the paired CI of (values - 0), reusing harness.stats."""
    return bootstrap_ci([0.0] * len(values), values, seed=stats.seed, n_resamples=stats.n_resamples)


def recall_curves(runs: Sequence[ScoredRun]) -> tuple[dict[str, dict[str, tuple[list[int], list[float]]]], list[str]]:
    """Mean Recall@k curves stored with the records, by dataset and label; a note for each record without one."""
    curves: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    notes: list[str] = []
    for run in runs:
        curve = run.curve()
        if curve is None:
            notes.append(f"{run.dataset} / {run.label}: no Recall@k curve: record predates schema 2")
        else:
            curves.setdefault(run.dataset, {})[run.label] = (curve.ks, curve.mean())
    return curves, notes
