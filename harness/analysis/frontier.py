"""The quality x cost frontier: which points (runs of one dataset) no other point beats on both speed and quality.

A point is dominated only when another point is faster (higher passages/s) *and* significantly better on the
per-query metric (paired test, unadjusted, at ``alpha``): a faster point whose quality gain is within the noise
does not push a point off the frontier. Pure functions over plain vectors; statistics from
``harness.analysis.stats``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.analysis.stats import PairedComparison, Test, compare_paired


@dataclass(frozen=True)
class Point:
    label: str
    speed: float  # passages/s, higher is faster
    per_query: Sequence[float]  # the metric per query, the same query order for every point

    @property
    def mean(self) -> float:
        return sum(self.per_query) / len(self.per_query)


@dataclass(frozen=True)
class Dominance:
    by: str  # label of the faster, significantly better point
    p: float


@dataclass(frozen=True)
class Step:
    """One frontier point, with the quality change from the previous (slower) frontier point."""

    label: str
    speed: float
    mean: float
    vs_previous: PairedComparison | None  # None for the slowest frontier point


@dataclass(frozen=True)
class Frontier:
    metric: str
    test: Test
    alpha: float
    points: list[Point]
    dominated: dict[str, Dominance]  # label -> the point that dominates it (the one with the lowest p)
    steps: list[Step]  # the frontier, slowest first

    def on_frontier(self, label: str) -> bool:
        return label not in self.dominated


def dominated(points: Sequence[Point], *, alpha: float = 0.05, test: Test = "randomization", seed: int = 0,
              n_resamples: int = 10_000) -> dict[str, Dominance]:
    """For each dominated point, the faster point that is significantly better than it (lowest p wins)."""
    out: dict[str, Dominance] = {}
    for point in points:
        for other in points:
            if other.speed <= point.speed or other.mean <= point.mean:
                continue
            p = compare_paired(point.per_query, other.per_query, seed=seed, n_resamples=n_resamples).p(test)
            if p < alpha and (point.label not in out or p < out[point.label].p):
                out[point.label] = Dominance(other.label, p)
    return out


def frontier(points: Sequence[Point], *, metric: str, alpha: float = 0.05, test: Test = "randomization",
             seed: int = 0, n_resamples: int = 10_000) -> Frontier:
    """The frontier of ``points``: the dominated ones, and the rest in speed order with each step's paired change."""
    labels = [p.label for p in points]
    if len(set(labels)) != len(labels):
        raise ValueError(f"point labels must be unique: {labels}")
    beaten = dominated(points, alpha=alpha, test=test, seed=seed, n_resamples=n_resamples)
    kept = sorted((p for p in points if p.label not in beaten), key=lambda p: p.speed)
    steps = [Step(p.label, p.speed, p.mean, None if i == 0 else
                  compare_paired(kept[i - 1].per_query, p.per_query, seed=seed, n_resamples=n_resamples))
             for i, p in enumerate(kept)]
    return Frontier(metric, test, alpha, list(points), beaten, steps)
