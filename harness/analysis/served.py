"""`harness served-check`: is the served model the offline model? Per dataset x served encoder, the vectors'
agreement (the record's `encoder.endpoint.equality`) and every metric through the server against the same metric
computed in process, paired over the queries.

A pair DIFFERS when the vectors do (cosine below the bound, or other lengths under dot-product scoring), or when a
metric moved by more than `tolerance` and significantly so (Holm-adjusted paired test at alpha): float noise that
flips a near-tie moves a metric without a significant change, a server that pools or normalises otherwise does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.analysis.compare import MetricComparison, compare_pairs
from harness.scoring.records import ServedEquality
from harness.scoring.scored import ScoredRun
from harness.vocabulary.statistics import StatsOptions
from harness.vocabulary.tables import fmt_p, markdown_table, text_table


@dataclass(frozen=True)
class ServedPair:
    dataset: str
    served: str  # encoder names
    offline: str
    equality: ServedEquality | None
    metrics: list[MetricComparison]
    reasons: list[str]  # why it differs (empty: equal)

    @property
    def verdict(self) -> str:
        return "differs" if self.reasons else "equal"


@dataclass(frozen=True)
class ServedCheck:
    pairs: list[ServedPair]
    tolerance: float
    stats: StatsOptions

    @property
    def ok(self) -> bool:
        return all(not p.reasons for p in self.pairs)

    headers = ["dataset", "served", "metric", "offline", "served value", "Δ", "p (Holm)", "verdict"]

    def rows(self) -> list[list[str]]:
        out = []
        for pair in self.pairs:
            for m in pair.metrics:
                s = m.stats
                moved = abs(s.delta) > self.tolerance and m.p_holm[self.stats.test] < self.stats.alpha
                out.append([pair.dataset, pair.served, m.metric, f"{s.control_mean:.4f}", f"{s.treatment_mean:.4f}",
                            f"{s.delta:+.6f}", fmt_p(m.p_holm[self.stats.test]), "DIFFERS" if moved else "equal"])
        return out

    def lines(self) -> list[str]:
        out = []
        for pair in self.pairs:
            e = pair.equality
            vectors = ("" if e is None else
                       f": passages cosine min {e.passages.cosine_min:.6f} (mean {e.passages.cosine_mean:.6f}), "
                       f"queries {e.queries.cosine_min:.6f}, |served|/|offline| {e.passages.norm_ratio_min:.4f}–"
                       f"{e.passages.norm_ratio_max:.4f}")
            out.append(f"{pair.dataset} × {pair.served}: {pair.verdict.upper()}{vectors}")
            out += [f"  - {reason}" for reason in pair.reasons]
        return out

    def to_text(self) -> str:
        verdict = "the served model equals the offline model" if self.ok else "the served model DIFFERS"
        return "\n".join([text_table(self.headers, self.rows()), "", *self.lines(), "", f"served-check: {verdict}"])

    def to_markdown(self) -> str:
        return "\n".join([markdown_table(self.headers, self.rows()), "", *(f"- {line.strip(' -')}"
                                                                           for line in self.lines())])

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "tolerance": self.tolerance, "alpha": self.stats.alpha, "test": self.stats.test,
                "pairs": [{"dataset": p.dataset, "served": p.served, "offline": p.offline, "verdict": p.verdict,
                           "reasons": p.reasons,
                           "equality": None if p.equality is None else p.equality.model_dump(mode="json"),
                           "metrics": [m.to_dict() for m in p.metrics]} for p in self.pairs]}


def served_check(pairs: Sequence[tuple[ScoredRun, ScoredRun]], *, tolerance: float,
                 stats: StatsOptions) -> ServedCheck:
    """`pairs`: (offline run, served run) of the same dataset."""
    comparison = compare_pairs(pairs, stats=stats)
    out = []
    for offline, served in pairs:
        metrics = [m for m in comparison.metrics if (m.dataset, m.control, m.treatment)
                   == (served.dataset, offline.label, served.label)]
        endpoint = served.record.encoder.endpoint if served.record.encoder else None
        equality = endpoint.equality if endpoint else None
        reasons = list(equality.reasons) if equality else []
        reasons += [f"{m.metric} moved by {m.stats.delta:+.6f} ({m.stats.control_mean:.4f} offline, "
                    f"{m.stats.treatment_mean:.4f} served), beyond the tolerance {tolerance} and significant "
                    f"(p {fmt_p(m.p_holm[stats.test])} < {stats.alpha})"
                    for m in metrics if abs(m.stats.delta) > tolerance and m.p_holm[stats.test] < stats.alpha]
        out.append(ServedPair(served.dataset, served.label, offline.label, equality, metrics, reasons))
    return ServedCheck(out, tolerance, stats)
