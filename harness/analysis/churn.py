"""Ranking churn between two run records of the same queries: how much does the ranking change with the model?

Per query, from the records' stored rankings (``run.trec``, ordered as trec_eval orders them: score descending,
ties by document id descending):

- overlap@k = |top-k(A) ∩ top-k(B)| / k (k in the denominator even when a ranking is shorter than k);
- rank-biased overlap, RBO_ext of Webber, Moffat & Zobel (2010, "A similarity measure for indefinite rankings",
  ACM TOIS 28(4), eq. 32: the extrapolated point estimate, uneven lengths handled), with persistence ``p``
  (default 0.9: the top 10 ranks carry 86% of the weight), evaluated to the depth both records stored (the
  smaller top_k). Two empty rankings count as identical (1), one empty ranking against another as disjoint (0).

Plus, for each metric both records have, the paired comparison that `harness compare` computes (mean Δ, CI,
p-values, W/T/L) and the per-query Δ (B - A). Nothing is re-encoded or re-scored.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.analysis.compare import Comparison, compare_pairs
from harness.scoring.scored import ScoredRun, label_runs
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.files import write_file
from harness.vocabulary.statistics import DEFAULT_STATS, StatsOptions
from harness.vocabulary.tables import html_table, markdown_table, text_table

DEFAULT_K = 10
DEFAULT_P = 0.9
RBO_VARIANT = "RBO_ext (Webber, Moffat & Zobel 2010, eq. 32)"


def overlap_at_k(a: Sequence[str], b: Sequence[str], k: int) -> float:
    """|top-k(a) ∩ top-k(b)| / k."""
    if k < 1:
        raise HarnessError(f"k must be a positive integer, got {k}")
    return len(set(a[:k]) & set(b[:k])) / k


def rbo_ext(a: Sequence[str], b: Sequence[str], p: float = DEFAULT_P) -> float:
    """Extrapolated rank-biased overlap of two rankings without ties or repeated items (Webber et al. 2010,
    eq. 32). With S the shorter ranking (length s), L the longer (length l) and X_d = |S[:d] ∩ L[:d]|:

        RBO_ext = (1-p)/p * (sum_{d=1..l} X_d/d p^d + sum_{d=s+1..l} X_s (d-s)/(s d) p^d)
                  + ((X_l - X_s)/l + X_s/s) p^l
    """
    if not 0 < p < 1:
        raise HarnessError(f"RBO persistence p must be in (0, 1), got {p}")
    if list(a) == list(b):  # exactly 1, without the sum's rounding
        return 1.0
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    s, l = len(short), len(long)  # noqa: E741 (s and l as Webber et al. name them)
    if s == 0:
        return 0.0
    seen_short: set[str] = set()
    seen_long: set[str] = set()
    x = x_s = 0
    total, weight = 0.0, 1.0
    for d in range(1, l + 1):
        weight *= p
        item_l = long[d - 1]
        if d <= s:
            item_s = short[d - 1]
            x += 1 if item_s == item_l else (item_s in seen_long) + (item_l in seen_short)
            seen_short.add(item_s)
            seen_long.add(item_l)
            x_s = x
            total += x / d * weight
        else:
            x += item_l in seen_short
            total += (x / d + x_s * (d - s) / (s * d)) * weight
    return min(1.0, (1 - p) / p * total + ((x - x_s) / l + x_s / s) * p ** l)


@dataclass(frozen=True)
class QueryChurn:
    qid: str
    overlap: float  # overlap@k
    rbo: float
    identical: bool  # the same top k documents in the same order
    deltas: dict[str, float]  # metric -> B - A (metrics both records scored for this query)


@dataclass(frozen=True)
class Churn:
    """Ranking churn of B against A on one dataset: per query, summary, and the paired metric comparison."""

    dataset: str
    a: str  # labels of the two records
    b: str
    paths: tuple[str, str]
    k: int
    p: float
    depth: int  # RBO evaluated to this depth
    queries: list[QueryChurn]
    comparison: Comparison | None
    warnings: list[str] = field(default_factory=list)

    @property
    def overlaps(self) -> list[float]:
        return [q.overlap for q in self.queries]

    @property
    def rbos(self) -> list[float]:
        return [q.rbo for q in self.queries]

    def summary(self) -> dict[str, float]:
        n = len(self.queries)
        return {"queries": n,
                "overlap_mean": math.fsum(self.overlaps) / n, "overlap_median": statistics.median(self.overlaps),
                "rbo_mean": math.fsum(self.rbos) / n, "rbo_median": statistics.median(self.rbos),
                "identical_top_k": sum(q.identical for q in self.queries) / n,
                "same_set_top_k": sum(q.overlap == 1.0 for q in self.queries) / n}

    @property
    def headers(self) -> list[str]:
        k = self.k
        return ["dataset", "A", "B", "queries", f"overlap@{k} mean", f"overlap@{k} median", f"identical top-{k}",
                f"RBO mean (p={self.p:g})", "RBO median"]

    def row(self) -> list[str]:
        s = self.summary()
        return [self.dataset, self.a, self.b, str(s["queries"]), f"{s['overlap_mean']:.4f}",
                f"{s['overlap_median']:.4f}", f"{s['identical_top_k']:.1%}", f"{s['rbo_mean']:.4f}",
                f"{s['rbo_median']:.4f}"]

    def footnote(self) -> str:
        return (f"overlap@{self.k} = |top-{self.k}(A) ∩ top-{self.k}(B)| / {self.k}; identical top-{self.k}: same "
                f"documents in the same order; RBO: {RBO_VARIANT}, p = {self.p:g}, to depth {self.depth}; "
                "Δ = B - A per query")

    def _render(self, table) -> list[str]:
        parts = [table(self.headers, [self.row()])]
        if self.comparison and self.comparison.metrics:
            parts.append(table(self.comparison.table_headers, self.comparison.table_rows()))
        return parts

    def to_table(self) -> str:
        return "\n\n".join([*self._render(text_table), self.footnote(), *self.warnings])

    def _repr_markdown_(self) -> str:
        return "\n\n".join([*self._render(markdown_table), f"_{self.footnote()}_"])

    def _repr_html_(self) -> str:
        return "\n".join([*self._render(html_table), f"<p><em>{html.escape(self.footnote())}</em></p>"])

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "a": self.a, "b": self.b, "records": list(self.paths), "k": self.k,
                "rbo": {"variant": RBO_VARIANT, "p": self.p, "depth": self.depth},
                "summary": self.summary(), "warnings": self.warnings,
                "comparison": self.comparison.to_dict() if self.comparison else None,
                "per_query": {q.qid: {"overlap": q.overlap, "rbo": q.rbo, "identical": q.identical,
                                      "deltas": q.deltas} for q in self.queries}}

    def save(self, output: Path) -> list[Path]:
        """churn.json (everything) and churn.csv (per query) under ``output`` (``harness.reporting.save_churn`` adds
        the plots)."""
        metrics = list(dict.fromkeys(m for q in self.queries for m in q.deltas))
        rows = io.StringIO()
        writer = csv.writer(rows)
        writer.writerow(["qid", f"overlap@{self.k}", "rbo", "identical", *(f"delta {m}" for m in metrics)])
        for q in self.queries:
            writer.writerow([q.qid, q.overlap, q.rbo, int(q.identical), *(q.deltas.get(m, "") for m in metrics)])
        return [write_file(output / "churn.json", json.dumps(self.to_dict(), indent=1) + "\n", what="the churn"),
                write_file(output / "churn.csv", rows.getvalue(), what="the churn per query")]


def churn(a: ScoredRun, b: ScoredRun, *, k: int = DEFAULT_K, p: float = DEFAULT_P,
          metrics: Sequence[str] | None = None, stats: StatsOptions = DEFAULT_STATS) -> Churn:
    """Churn of B against A (same dataset): their rankings in memory, else their records' stored run files."""
    if not isinstance(k, int) or k < 1:
        raise HarnessError(f"k must be a positive integer, got {k!r}")
    if not 0 < p < 1:
        raise HarnessError(f"RBO persistence p must be in (0, 1), got {p}")
    if a.dataset != b.dataset:
        raise HarnessError(f"{a.where} is a record of dataset {a.dataset!r}, {b.where} of {b.dataset!r}: churn "
                           "compares two rankings of the same queries")
    a, b = label_runs([a, b])
    warnings: list[str] = []
    depth = min(a.record.top_k, b.record.top_k)
    if k > depth:
        raise HarnessError(f"k = {k} is deeper than the records' rankings (top_k {depth}); choose k <= {depth}")
    ranked_a, ranked_b = a.ranked_ids(), b.ranked_ids()
    qids = sorted(set(ranked_a) | set(ranked_b))
    if not qids:
        raise HarnessError(f"{a.where} and {b.where}: both rankings are empty")
    for run, ranked, other in ((a, ranked_a, ranked_b), (b, ranked_b, ranked_a)):
        absent = [q for q in other if q not in ranked]
        if absent:
            warnings.append(f"{len(absent)} queries have no ranking in {run.label} (e.g. {absent[0]!r}): "
                            "counted as empty (overlap 0, RBO 0)")
    comparison = compare_pairs([(a, b)], metrics=metrics, stats=stats)
    shared = [m.metric for m in comparison.metrics]
    queries = []
    for qid in qids:
        x, y = list(ranked_a.get(qid, ()))[:depth], list(ranked_b.get(qid, ()))[:depth]
        deltas = {m: b.per_query[m][qid] - a.per_query[m][qid] for m in shared
                  if qid in a.per_query[m] and qid in b.per_query[m]}
        queries.append(QueryChurn(qid, overlap_at_k(x, y, k), rbo_ext(x, y, p), x[:k] == y[:k], deltas))
    return Churn(a.dataset, a.label, b.label, (a.where, b.where), k, p, depth, queries, comparison,
                 warnings + comparison.warnings)
