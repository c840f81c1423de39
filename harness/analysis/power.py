"""How small a change can a dataset see? (`harness power`): the minimum detectable paired effect per dataset
and metric, from the per-query variance of records, and the queries a given effect needs.

What a paired test sees is the spread of the per-query differences d = new - old. With two or more records of
a dataset, each record after the first (the control) is paired with it and sd(d) is measured. With one record,
sd(d) is taken to be the per-query standard deviation of its metric: the value when the two systems' per-query
scores correlate at rho = 0.5 (var d = 2 sd^2 (1 - rho)). Versions of one model usually correlate more, so
that estimate errs on the cautious side (a larger MDE).
"""

from __future__ import annotations

import html
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.analysis.compare import aligned, pair_by_dataset
from harness.analysis.stats import minimum_detectable_effect, queries_needed
from harness.scoring.scored import ScoredRun, load_scored_runs
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.tables import html_table, markdown_table, text_table


@dataclass(frozen=True)
class PowerRow:
    dataset: str
    metric: str
    basis: str  # "<label> (one record, rho 0.5)" or "<treatment> vs <control> (paired)"
    n: int  # judged queries
    sd: float  # standard deviation of the per-query differences (sample, ddof 1)
    mde: float | None  # None: fewer than 2 queries
    needed: int | None  # queries needed for the requested effect (None when no effect was asked for)


@dataclass(frozen=True)
class PowerReport:
    rows: list[PowerRow]
    alpha: float
    power: float
    effect: float | None

    HEADERS = ("dataset", "metric", "basis", "queries", "sd of Δ", "MDE")

    @property
    def headers(self) -> list[str]:
        return [*self.HEADERS, *([f"queries for Δ={self.effect:g}"] if self.effect is not None else [])]

    def table_rows(self) -> list[list[str]]:
        return [[r.dataset, r.metric, r.basis, str(r.n), f"{r.sd:.4f}", "-" if r.mde is None else f"{r.mde:.4f}",
                 *([str(r.needed)] if self.effect is not None else [])] for r in self.rows]

    def footnote(self) -> str:
        return (f"MDE: the smallest mean paired difference a two-sided paired t-test at alpha {self.alpha} detects "
                f"with power {self.power}, (t[1-alpha/2, n-1] + t[power, n-1]) x sd / sqrt(n); a smaller change that "
                "is 'not significant' is not evidence of no change")

    def to_table(self) -> str:
        return f"{text_table(self.headers, self.table_rows())}\n\n{self.footnote()}"

    def _repr_markdown_(self) -> str:
        return f"{markdown_table(self.headers, self.table_rows())}\n\n_{self.footnote()}_"

    def _repr_html_(self) -> str:
        return f"{html_table(self.headers, self.table_rows())}<p><em>{html.escape(self.footnote())}</em></p>"

    def to_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "power": self.power, "effect": self.effect, "test": "paired t (t-based MDE)",
                "rows": [asdict(r) for r in self.rows]}


def power_rows(runs: Sequence[ScoredRun], *, alpha: float = 0.05, power: float = 0.8, effect: float | None = None,
               metrics: Sequence[str] | None = None) -> PowerReport:
    """One row per dataset x metric (x treatment, when a dataset has several records)."""
    if effect is not None and effect <= 0:
        raise HarnessError(f"--effect must be > 0, got {effect}")
    if not (0 < alpha < 1 and 0 < power < 1):
        raise HarnessError(f"--alpha and --power must be in (0, 1), got {alpha} and {power}")
    pairs, _ = pair_by_dataset(runs)
    paired = {t.dataset for _, t in pairs}
    samples: list[tuple[str, str, str, list[float]]] = []  # dataset, metric, basis, per-query differences
    for control, treatment in pairs:
        for metric in _metrics(control, metrics):
            if metric in treatment.per_query:
                c, t = aligned(control, treatment, metric)
                samples.append((control.dataset, metric, f"{treatment.label} vs {control.label} (paired)",
                                [b - a for a, b in zip(c, t)]))
    for run in runs:
        if run.dataset not in paired:
            for metric in _metrics(run, metrics):
                samples.append((run.dataset, metric, f"{run.label} (one record, rho 0.5)",
                                list(run.per_query[metric].values())))
    rows = []
    for dataset, metric, basis, values in samples:
        n = len(values)
        sd = statistics.stdev(values) if n >= 2 else 0.0
        mde = minimum_detectable_effect(sd, n, alpha=alpha, power=power) if n >= 2 else None
        needed = queries_needed(sd, effect, alpha=alpha, power=power) if effect is not None else None
        rows.append(PowerRow(dataset, metric, basis, n, sd, mde, needed))
    return PowerReport(rows, alpha, power, effect)


def _metrics(run: ScoredRun, wanted: Sequence[str] | None) -> list[str]:
    if not wanted:
        return list(run.record.metrics)
    missing = [m for m in wanted if m not in run.per_query]
    if missing:
        raise HarnessError(f"{run.where}: no per-query {', '.join(missing)} (it has {', '.join(run.per_query)})")
    return list(wanted)


def power_report(paths: Sequence[Path], *, alpha: float = 0.05, power: float = 0.8, effect: float | None = None,
                 metrics: Sequence[str] | None = None) -> PowerReport:
    """`harness power`: load run records and tabulate their minimum detectable effects."""
    runs = load_scored_runs(paths)
    if not runs:
        raise HarnessError("no run records found in: " + ", ".join(str(p) for p in paths))
    return power_rows(runs, alpha=alpha, power=power, effect=effect, metrics=metrics)
