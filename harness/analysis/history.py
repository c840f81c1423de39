"""Model versions as a stream: every record of one dataset × encoder lineage in version order, each metric's mean
with its CI, the change from the previous version, and a gate against a pinned baseline version.

A lineage is one dataset (same data: same fingerprint) × one encoder name, a checkpoint series counting as one
encoder (`run@step-500`, `run@step-2000` are versions of `run`, harness.input.versions). Versions are ordered by
their label (`version:`, a checkpoint's folder, `harness run --label`) in natural order when every record of the
lineage has one, else by record time; each lineage says which. Two records of one version: the newest is used.

The gate of each version against the baseline (the first version unless named): with a non-inferiority margin
for the metric, PASS when the one-sided lower bound of Δ clears −margin (paired t, as `harness check`); without
one, FAIL when the version is significantly worse (the paired test at alpha). Each version is tested on its own,
with no correction across versions: the first failure is what a nightly gate would have caught.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from harness.analysis.compare import aligned
from harness.analysis.query_changes import QueryChanges, query_changes
from harness.analysis.stats import NonInferiority, PairedComparison, compare_paired, mean_ci, noninferiority
from harness.input.versions import SERIES_SEPARATOR, natural_key
from harness.scoring.scored import ScoredRun
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.statistics import DEFAULT_STATS, StatsOptions, Test

ORDER_BY_LABEL = "version label (natural order: step-2000 before step-10000)"
ORDER_BY_TIME = "record time (not every record has a version label)"
PASS, FAIL, BASELINE = "PASS", "FAIL", "baseline"


def lineage_name(run: ScoredRun) -> str:
    """The encoder a record is a version of: a checkpoint series' name, else the encoder's (or external run's)."""
    return run.encoder.split(SERIES_SEPARATOR)[0]


def version_label(run: ScoredRun) -> str | None:
    encoder = run.record.encoder
    return encoder.version if encoder is not None else None


@dataclass(frozen=True)
class Gate:
    """One version's gate on one metric against the baseline version."""

    status: str  # PASS, FAIL or BASELINE
    versus: PairedComparison | None  # None for the baseline itself
    noninferiority: NonInferiority | None  # with a margin
    p: float | None = None  # the paired test's p against the baseline

    def describe(self) -> str:
        if self.versus is None:
            return BASELINE
        v = self.versus
        if self.noninferiority is not None:
            ni = self.noninferiority
            return f"{self.status} (Δ {v.delta:+.4f}, lower {ni.lower:+.4f} vs −{ni.margin:g})"
        return f"{self.status} (Δ {v.delta:+.4f}, p {self.p:.3g})"


@dataclass(frozen=True)
class VersionPoint:
    run: ScoredRun
    version: str  # what the ledger and the plots call it
    means: dict[str, float]
    cis: dict[str, tuple[float, float]]  # 95% bootstrap CI of each mean
    from_previous: dict[str, PairedComparison]  # empty for the first version
    gates: dict[str, Gate]

    @property
    def commit(self) -> str | None:
        return self.run.record.encoder.commit if self.run.record.encoder is not None else None

    @property
    def passages_per_s(self) -> float | None:
        performance = self.run.record.performance
        return performance.throughput.passages_per_s if performance is not None else None

    @property
    def corpus_from_cache(self) -> bool:
        performance = self.run.record.performance
        return performance is not None and performance.corpus_from_cache

    @property
    def query_p99_ms(self) -> float | None:
        performance = self.run.record.performance
        return performance.query_latency.p99 if performance is not None else None


@dataclass(frozen=True)
class Lineage:
    dataset: str
    name: str
    order: str  # ORDER_BY_LABEL or ORDER_BY_TIME
    metrics: list[str]
    baseline: str  # the baseline version's label
    margins: dict[str, float]
    alpha: float
    test: Test
    points: list[VersionPoint]
    notes: list[str] = field(default_factory=list)
    changes: dict[str, QueryChanges] = field(default_factory=dict)  # version -> what moved since the previous one

    @property
    def title(self) -> str:
        return f"{self.dataset} × {self.name}"

    def first_failure(self, metric: str) -> VersionPoint | None:
        return next((p for p in self.points if p.gates[metric].status == FAIL), None)

    def gate_line(self, metric: str) -> str:
        """Where the gate on `metric` first failed, or that it never did."""
        first = self.first_failure(metric)
        margin = self.margins.get(metric)
        rule = (f"the baseline's non-inferiority bound (margin {margin:g})" if margin is not None
                else f"the baseline (significantly worse at alpha {self.alpha:g})")
        if first is None:
            return f"{metric}: no version falls below {rule}; baseline {self.baseline}."
        gate = first.gates[metric]
        assert gate.versus is not None
        later = [p.version for p in self.points[self.points.index(first) + 1:] if p.gates[metric].status == FAIL]
        also = f"; it fails again at {', '.join(later)}" if later else ""
        return (f"{metric} first fell below {rule} at {first.version}: {gate.describe()}, baseline "
                f"{self.baseline}{also}.")

    def ledger(self) -> tuple[list[str], list[list[str]]]:
        """Headers and rows, one per version: commit, each metric with CI and its change from the previous version
        (▲/▼ where significant), passages/s, query p99, and the gate per metric."""
        headers = ["version", "commit", "recorded", *self.metrics, "passages/s", "query p99 ms",
                   *(f"gate {m}" for m in self.metrics)]
        rows = []
        for p in self.points:
            cells = []
            for m in self.metrics:
                low, high = p.cis[m]
                cells.append(f"{p.means[m]:.4f}{self.mark(p, m)} [{low:.3f}, {high:.3f}]")
            speed = "-" if p.passages_per_s is None else f"{p.passages_per_s:,.1f}"
            if p.corpus_from_cache and p.passages_per_s is not None:
                speed += " (cached)"
            p99 = "-" if p.query_p99_ms is None else f"{p.query_p99_ms:.2f}"
            rows.append([p.version, (p.commit or "-")[:12], p.run.record.created_at, *cells, speed, p99,
                         *(p.gates[m].describe() for m in self.metrics)])
        return headers, rows

    def mark(self, point: VersionPoint, metric: str) -> str:
        """▲ / ▼ where the change from the previous version is significant at alpha."""
        change = point.from_previous.get(metric)
        if change is None or change.p(self.test) >= self.alpha:
            return ""
        return " ▲" if change.delta > 0 else " ▼"


def history(runs: Sequence[ScoredRun], *, metrics: Sequence[str] | None = None, baseline: str | None = None,
            margins: Mapping[str, float] | None = None, stats: StatsOptions = DEFAULT_STATS,
            queries: int = 0) -> list[Lineage]:
    """The lineages of `runs` (record folders read as ScoredRuns) with at least one record each. ``queries``: at
    each version whose change from the previous one is significant on the lineage's first metric, the that many
    queries that lost and gained most (`harness.analysis.query_changes`)."""
    margins = dict(margins or {})
    groups: dict[tuple[str, str, str], list[ScoredRun]] = {}
    for run in runs:
        groups.setdefault((run.dataset, run.record.dataset.fingerprint, lineage_name(run)), []).append(run)
    names = [(d, n) for d, _, n in groups]
    lineages = []
    for (dataset, fingerprint, name), members in groups.items():
        lineage = _lineage(dataset, name, members, metrics, baseline, margins, stats)
        if names.count((dataset, name)) > 1:
            lineage.notes.append(f"{dataset} × {name} was run on more than one version of the data; this lineage "
                                 f"holds the records of dataset fingerprint {fingerprint} only")
        if queries:
            first = lineage.metrics[0]
            for before, point in zip(lineage.points, lineage.points[1:]):
                if lineage.mark(point, first):
                    lineage.changes[point.version] = query_changes(before.run, point.run, metric=first, n=queries)
        lineages.append(lineage)
    if baseline is not None and not any(lin.baseline == baseline for lin in lineages):
        versions = sorted({p.version for lin in lineages for p in lin.points}, key=natural_key)
        raise HarnessError(f"baseline version {baseline!r} is in no lineage; versions found: {', '.join(versions)}")
    unknown = sorted(set(margins) - {m for lin in lineages for m in lin.metrics})
    if unknown:
        raise HarnessError(f"a margin is set for {', '.join(unknown)}, which no lineage's records have")
    return lineages


def _lineage(dataset: str, name: str, members: list[ScoredRun], metrics: Sequence[str] | None,
             baseline: str | None, margins: dict[str, float], stats: StatsOptions) -> Lineage:
    notes: list[str] = []
    labelled = all(version_label(r) for r in members)
    by_version: dict[str, ScoredRun] = {}
    repeats: dict[str, int] = {}
    for run in sorted(members, key=lambda r: r.record.created_at):
        label = version_label(run) if labelled else run.record.created_at
        assert label is not None
        repeats[label] = repeats.get(label, 0) + 1
        by_version[label] = run
    notes += [f"version {label}: {n} records; the newest ({by_version[label].where}) is used"
              for label, n in repeats.items() if n > 1]
    order = sorted(by_version, key=natural_key) if labelled else sorted(by_version)
    chosen = [by_version[v] for v in order]
    wanted = list(metrics) if metrics else list(dict.fromkeys(m for r in chosen for m in r.record.metrics))
    shared = [m for m in wanted if all(m in r.per_query for r in chosen)]
    if metrics and len(shared) < len(wanted):
        missing = [m for m in wanted if m not in shared]
        raise HarnessError(f"{dataset} × {name}: metric(s) {', '.join(missing)} missing from some versions")
    if len(shared) < len(wanted):
        notes.append(f"not in every version, left out: {', '.join(m for m in wanted if m not in shared)}")
    base = baseline if baseline in by_version else order[0]
    base_run = by_version[base]
    points = []
    for i, (version, run) in enumerate(zip(order, chosen)):
        means = {m: run.record.metrics[m] for m in shared}
        cis = {m: mean_ci(list(run.per_query[m].values()), seed=stats.seed, n_resamples=stats.n_resamples)
               for m in shared}
        previous = {m: _paired(chosen[i - 1], run, m, stats) for m in shared} if i else {}
        gates = {m: _gate(base_run, run, m, margins.get(m), stats) if run is not base_run
                 else Gate(BASELINE, None, None) for m in shared}
        points.append(VersionPoint(run, version, means, cis, previous, gates))
    for before, point in zip(points, points[1:]):
        a, b = before.run.record.encoder, point.run.record.encoder
        if a is not None and b is not None and a.fingerprint == b.fingerprint and a.settings == b.settings:
            notes.append(f"{point.version} has the same weights and settings as {before.version} (fingerprint "
                         f"{b.fingerprint}): the same model twice")
    return Lineage(dataset, name, ORDER_BY_LABEL if labelled else ORDER_BY_TIME, shared, base,
                   {m: v for m, v in margins.items() if m in shared}, stats.alpha, stats.test, points, notes)


def _paired(control: ScoredRun, treatment: ScoredRun, metric: str, stats: StatsOptions) -> PairedComparison:
    c, t = aligned(control, treatment, metric)
    return compare_paired(c, t, seed=stats.seed, n_resamples=stats.n_resamples)


def _gate(base: ScoredRun, run: ScoredRun, metric: str, margin: float | None, stats: StatsOptions) -> Gate:
    c, t = aligned(base, run, metric)
    versus = compare_paired(c, t, seed=stats.seed, n_resamples=stats.n_resamples)
    if margin is not None:
        ni = noninferiority(c, t, margin=margin, alpha=stats.alpha)
        return Gate(PASS if ni.noninferior else FAIL, versus, ni, versus.p(stats.test))
    worse = versus.delta < 0 and versus.p(stats.test) < stats.alpha
    return Gate(FAIL if worse else PASS, versus, None, versus.p(stats.test))
