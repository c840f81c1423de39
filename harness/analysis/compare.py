"""Compare run records: paired per-query statistics, Holm correction, speed side by side.

Records are grouped by dataset name (in the order given); in each group the first record, or the
one whose encoder is named ``control``, is the control and every other record is a treatment.
Records of different data (dataset fingerprints differ) are refused; differing metric settings
only warn. Statistics come from ``harness.analysis.stats``; this module only matches and composes.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from harness.analysis.query_changes import QueryChanges, default_metric, query_changes
from harness.analysis.stats import PairedComparison, compare_paired, holm
from harness.scoring.records import Performance
from harness.scoring.scored import ScoredRun, label_runs
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.statistics import DEFAULT_STATS, TESTS, StatsOptions, Test
from harness.vocabulary.tables import fmt_num, fmt_p, fmt_ratio, html_table, markdown_table, text_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricComparison:
    dataset: str
    metric: str
    control: str
    treatment: str
    stats: PairedComparison
    p_holm: dict[str, float]  # test -> Holm-adjusted p over every comparison of the same Comparison

    def verdict(self, alpha: float, test: Test) -> str:
        """'better' / 'worse' when the Holm-adjusted p is below alpha, else 'n.s.'."""
        if self.p_holm[test] >= alpha or self.stats.delta == 0:
            return "n.s."
        return "better" if self.stats.delta > 0 else "worse"

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "metric": self.metric, "control": self.control,
                "treatment": self.treatment, **self.stats.to_dict(),
                "p_t_test_holm": self.p_holm["t-test"], "p_randomization_holm": self.p_holm["randomization"]}

    def row(self, alpha: float, test: Test) -> list[str]:
        """This comparison as a row of ``Comparison.table_headers`` (terminal, notebook and report tables)."""
        s = self.stats
        return [self.dataset, self.metric, f"{self.control} {s.control_mean:.4f}",
                f"{self.treatment} {s.treatment_mean:.4f}", f"{s.delta:+.4f}",
                f"[{s.delta_ci[0]:+.4f}, {s.delta_ci[1]:+.4f}]", "-" if s.mde is None else f"{s.mde:.4f}",
                fmt_p(s.p_t_test), fmt_p(s.p_randomization),
                fmt_p(self.p_holm[test]), f"{s.wins}/{s.ties}/{s.losses}", self.verdict(alpha, test)]


CACHED_MARK = "†"
CACHED_NOTE = (f"{CACHED_MARK} corpus embeddings came from the embedding cache: passages/s (and tokens/s) are the "
               "figures of the run that encoded them, not of this run; rerun with a fresh cache to measure them")


@dataclass(frozen=True)
class SpeedFigures:
    """The speed figures compared side by side (from a record's ``performance``)."""

    passages_per_s: float | None
    query_p50_ms: float
    query_p99_ms: float
    peak_rss_mb: float
    rss_added_mb: float | None  # what the record added to what the process held at its start
    peak_gpu_mb: float | None

    @classmethod
    def of(cls, performance: Performance) -> SpeedFigures:
        return cls(passages_per_s=performance.throughput.passages_per_s, query_p50_ms=performance.query_latency.p50,
                   query_p99_ms=performance.query_latency.p99, peak_rss_mb=performance.peak_rss_mb,
                   rss_added_mb=performance.rss_added_mb, peak_gpu_mb=performance.peak_gpu_mb)

    @staticmethod
    def names() -> list[str]:
        return [f.name for f in fields(SpeedFigures)]

    def values(self) -> list[float | None]:
        return [getattr(self, name) for name in self.names()]


SPEED_HEADERS = ["passages/s", "query p50 ms", "query p99 ms", "peak RSS MB", "RSS added MB", "peak GPU MB"]


@dataclass(frozen=True)
class SpeedComparison:
    dataset: str
    control: str
    treatment: str
    comparable: bool
    reason: str  # why not comparable (empty when comparable)
    control_figures: SpeedFigures
    treatment_figures: SpeedFigures
    control_cached: bool = False  # corpus from the embedding cache: its passages/s is an older run's
    treatment_cached: bool = False

    @property
    def cached(self) -> bool:
        return self.control_cached or self.treatment_cached

    def ratio(self, figure: str) -> float | None:
        c, t = getattr(self.control_figures, figure), getattr(self.treatment_figures, figure)
        return t / c if self.comparable and c and t is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "control": self.control, "treatment": self.treatment,
                "comparable": self.comparable, "reason": self.reason,
                "control_figures": asdict(self.control_figures), "treatment_figures": asdict(self.treatment_figures),
                "control_corpus_from_cache": self.control_cached, "treatment_corpus_from_cache": self.treatment_cached,
                "ratios": {f: self.ratio(f) for f in SpeedFigures.names()}}


@dataclass(frozen=True)
class Comparison:
    metrics: list[MetricComparison]
    speed: list[SpeedComparison]
    stats: StatsOptions
    warnings: list[str] = field(default_factory=list)
    changes: list[QueryChanges] = field(default_factory=list)  # the queries that moved most (compare --queries)

    @property
    def alpha(self) -> float:
        return self.stats.alpha

    @property
    def test(self) -> Test:
        return self.stats.test

    def regressions(self) -> list[MetricComparison]:
        return [m for m in self.metrics if m.verdict(self.alpha, self.test) == "worse"]

    def find(self, dataset: str, metric: str, treatment: str) -> MetricComparison | None:
        return next((m for m in self.metrics
                     if (m.dataset, m.metric, m.treatment) == (dataset, metric, treatment)), None)

    def to_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "test": self.test, "seed": self.stats.seed, "n_resamples": self.stats.n_resamples,
                "correction": "holm", "confidence": 0.95, "warnings": self.warnings,
                "metrics": [{**m.to_dict(), "verdict": m.verdict(self.alpha, self.test)} for m in self.metrics],
                "speed": [s.to_dict() for s in self.speed]}

    @property
    def table_headers(self) -> list[str]:
        return ["dataset", "metric", "control", "treatment", "Δ", "95% CI of Δ", "MDE", "p t-test", "p rand.",
                f"p Holm ({self.test})", "W/T/L", "verdict"]

    def table_rows(self) -> list[list[str]]:
        return [m.row(self.alpha, self.test) for m in self.metrics]

    def speed_rows(self) -> list[list[str]]:
        rows = []
        for s in self.speed:
            note = "comparable" if s.comparable else f"not comparable: {s.reason}"
            for name, figures, cached in ((s.control, s.control_figures, s.control_cached),
                                          (s.treatment, s.treatment_figures, s.treatment_cached)):
                cells = list(map(fmt_num, figures.values()))
                if cached:
                    cells[0] += f" {CACHED_MARK}"
                rows.append([s.dataset, name, *cells, note])
            if s.comparable:
                ratios = [fmt_ratio(s.ratio(f)) for f in SpeedFigures.names()]
                if s.cached:
                    ratios[0] += f" {CACHED_MARK}"
                rows.append([s.dataset, "ratio", *ratios, ""])
        return rows

    def footnote(self) -> str:
        notes = [f"significance: {self.test} test (seed {self.stats.seed}), Holm-adjusted over {len(self.metrics)} "
                 f"comparisons, alpha {self.alpha}; W/T/L = treatment wins/ties/losses; MDE = the smallest |Δ| a "
                 f"paired t-test on these queries detects with 80% power at alpha 0.05 (`harness power`): a "
                 f"smaller Δ that is n.s. is not evidence of no change"]
        if any(s.cached for s in self.speed):
            notes.append(CACHED_NOTE)
        return "; ".join(notes)

    def _render(self, table) -> list[str]:
        parts = [table(self.table_headers, self.table_rows())]
        if self.speed:
            parts.append(table(["dataset", "system", *SPEED_HEADERS, "speed"], self.speed_rows()))
        return parts

    def to_table(self) -> str:
        return "\n\n".join([*self._render(text_table), self.footnote(), *(c.to_text() for c in self.changes)])

    def _repr_markdown_(self) -> str:
        return "\n\n".join([*self._render(markdown_table), f"_{self.footnote()}_",
                             *(c.to_markdown() for c in self.changes)])

    def _repr_html_(self) -> str:
        return "\n".join([*self._render(html_table), f"<p><em>{html.escape(self.footnote())}</em></p>",
                          *(c.to_html() for c in self.changes)])


def pair_by_dataset(runs: Sequence[ScoredRun], *, control: str | None = None,
                    ) -> tuple[list[tuple[ScoredRun, ScoredRun]], list[str]]:
    """(control, treatment) pairs per dataset, and warnings for datasets with nothing to compare."""
    groups: dict[str, list[ScoredRun]] = {}
    for run in runs:
        groups.setdefault(run.dataset, []).append(run)
    pairs: list[tuple[ScoredRun, ScoredRun]] = []
    warnings: list[str] = []
    for dataset, group in groups.items():
        chosen = group[0]
        if control is not None:
            named = [r for r in group if control in (r.label, r.encoder)]
            if not named:
                warnings.append(f"{dataset}: no record of control {control!r}; skipped")
                continue
            chosen = named[0]
        others = [r for r in group if r is not chosen]
        if not others:
            warnings.append(f"{dataset}: only one record ({chosen.label}); nothing to compare it with")
        pairs.extend((chosen, other) for other in others)
    return pairs, warnings


def compare_runs(runs: Sequence[ScoredRun], *, control: str | None = None, metrics: Sequence[str] | None = None,
                 stats: StatsOptions = DEFAULT_STATS, queries: int = 0) -> Comparison:
    """Label, pair by dataset (the first record, or the encoder named ``control``, is the control), compare;
    ``queries``: also the that many queries each treatment lost and gained most on (the first of ``metrics``, else
    nDCG@10 or the first metric)."""
    runs = label_runs(list(runs))
    if len(runs) < 2:
        raise HarnessError(f"need at least two run records to compare, found {len(runs)}")
    pairs, warnings = pair_by_dataset(runs, control=control)
    if not pairs:
        raise HarnessError("no two records share a dataset name, so nothing can be compared: " + "; ".join(warnings))
    comparison = compare_pairs(pairs, metrics=metrics, stats=stats)
    changes = [query_changes(c, t, metric=default_metric(c, list(metrics or [])), n=queries) for c, t in pairs
               ] if queries else []
    return replace(comparison, warnings=warnings + comparison.warnings, changes=changes)


def compare_pairs(
    pairs: Sequence[tuple[ScoredRun, ScoredRun]],
    *,
    metrics: Sequence[str] | None = None,
    stats: StatsOptions = DEFAULT_STATS,
) -> Comparison:
    """Paired statistics for every (control, treatment) pair x shared metric; Holm over all of them."""
    raw: list[tuple[str, str, str, str, PairedComparison]] = []
    warnings: list[str] = []
    for control, treatment in pairs:
        warnings += check_comparable(control, treatment)
        for metric in shared_metrics(control, treatment, metrics, warnings):
            c, t = aligned(control, treatment, metric)
            raw.append((control.dataset, metric, control.label, treatment.label,
                        compare_paired(c, t, seed=stats.seed, n_resamples=stats.n_resamples)))
    adjusted = {t: holm([r[4].p(t) for r in raw]) for t in TESTS}
    results = [MetricComparison(*r, p_holm={k: v[i] for k, v in adjusted.items()}) for i, r in enumerate(raw)]
    # an external run (no performance) has no speed figures to set side by side
    speed = [compare_speed(c, t) for c, t in pairs if c.record.performance and t.record.performance]
    for w in warnings:
        log.warning(w)
    return Comparison(results, speed, stats, warnings)


def check_comparable(control: ScoredRun, treatment: ScoredRun) -> list[str]:
    """Refuse different data; return warnings for different metric settings."""
    a, b = control.record, treatment.record
    if a.dataset.fingerprint != b.dataset.fingerprint:
        raise HarnessError(
            f"dataset {control.dataset!r}: {control.where} and {treatment.where} were run on different data "
            f"(fingerprints {a.dataset.fingerprint} vs {b.dataset.fingerprint}); per-query "
            "comparisons need the same queries, documents and qrels")
    warnings = []
    where = f"{control.dataset}: {control.label} vs {treatment.label}"
    for metric in set(a.metric_definitions) & set(b.metric_definitions):
        if a.metric_definitions[metric] != b.metric_definitions[metric]:
            warnings.append(f"{where}: {metric} is defined differently "
                            f"({a.metric_definitions[metric]!r} vs {b.metric_definitions[metric]!r})")
    if a.top_k != b.top_k:
        warnings.append(f"{where}: top_k differs ({a.top_k} vs {b.top_k})")
    return warnings


def shared_metrics(control: ScoredRun, treatment: ScoredRun, wanted: Sequence[str] | None,
                   warnings: list[str]) -> list[str]:
    names = list(wanted) if wanted else list(control.record.metrics)
    missing = [m for m in names if m not in control.per_query or m not in treatment.per_query]
    if missing:
        if wanted:
            raise HarnessError(f"{control.dataset}: metric(s) {', '.join(missing)} missing from "
                               f"{control.label} or {treatment.label}")
        warnings.append(f"{control.dataset}: {', '.join(missing)} only in {control.label}; not compared")
    return [m for m in names if m not in missing]


def aligned(control: ScoredRun, treatment: ScoredRun, metric: str) -> tuple[list[float], list[float]]:
    """Per-query vectors of both runs in the same query order."""
    c, t = control.per_query[metric], treatment.per_query[metric]
    if set(c) != set(t):
        only = sorted(set(c) ^ set(t))
        raise HarnessError(f"{control.dataset} {metric}: {control.label} and {treatment.label} scored different "
                           f"queries ({len(only)} differ, e.g. {only[:3]})")
    qids = sorted(c)
    return [c[q] for q in qids], [t[q] for q in qids]


def compare_speed(control: ScoredRun, treatment: ScoredRun) -> SpeedComparison:
    """The speed figures of two timed runs side by side (external runs are not timed: compare_pairs leaves them
    out)."""
    old, new = control.record.performance, treatment.record.performance
    assert old is not None and new is not None
    a, b = control.record.speed_hardware_key, treatment.record.speed_hardware_key
    reason = "" if a == b else f"different hardware ({a} vs {b})"
    return SpeedComparison(control.dataset, control.label, treatment.label, a == b, reason,
                           SpeedFigures.of(old), SpeedFigures.of(new),
                           control_cached=old.corpus_from_cache, treatment_cached=new.corpus_from_cache)
