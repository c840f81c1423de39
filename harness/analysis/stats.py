"""Paired significance tests on per-query metric vectors (pure functions, no I/O).

Every function takes ``control`` and ``treatment`` as 1-D float sequences aligned by
query (the per-query vectors of ``harness.metrics``), never mutates them, and returns
plain Python types. Differences are always ``treatment - control``: a positive delta
means the treatment scores higher. Randomness comes only from an explicit ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import numpy as np

__all__ = [
    "TESTS",
    "PairedComparison",
    "Test",
    "bootstrap_ci",
    "compare_paired",
    "holm",
    "paired_t_test",
    "randomization_test",
    "win_tie_loss",
]

# The paired significance tests behind verdicts (compare, check, a suite's baseline, the CLI's --test).
Test = Literal["randomization", "t-test"]
TESTS: tuple[Test, ...] = get_args(Test)

# Resampling works on (batch, n) arrays; cap each batch at ~4M floats (32 MB) so that
# 10,000 resamples of a 7,000-query MS MARCO dev vector stay within bounded memory.
_MAX_BATCH_ELEMENTS = 1 << 22


def _paired(control: Sequence[float], treatment: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 copies of both vectors."""
    c = np.array(control, dtype=np.float64)
    t = np.array(treatment, dtype=np.float64)
    if c.ndim != 1 or t.ndim != 1:
        raise ValueError(f"control and treatment must be 1-D, got shapes {c.shape} and {t.shape}")
    if c.size != t.size:
        raise ValueError(
            f"control and treatment must be aligned by query: lengths {c.size} and {t.size} differ"
        )
    if c.size == 0:
        raise ValueError("control and treatment are empty: need at least one query")
    if not (np.isfinite(c).all() and np.isfinite(t).all()):
        raise ValueError("control and treatment must contain only finite values")
    return c, t


def _tolerance(d: np.ndarray) -> float:
    """Below this, differences count as identical (float noise, e.g. 0.3-0.2 vs 0.2-0.1)."""
    return 1e-12 * max(1.0, float(np.max(np.abs(d))))


def _is_constant(d: np.ndarray) -> bool:
    return float(np.ptp(d)) <= _tolerance(d)


def _batch(n: int, n_resamples: int) -> int:
    return max(1, min(n_resamples, _MAX_BATCH_ELEMENTS // n))


def _check_resampling(n_resamples: int, confidence: float | None = None) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if confidence is not None and not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(y - x, axis=axis)


def paired_t_test(control: Sequence[float], treatment: Sequence[float]) -> float:
    """Two-sided p-value of the paired Student t-test (``scipy.stats.ttest_rel``).

    Degenerate case: when every per-query difference is the same value (including all
    zero, and n = 1) the sample variance is 0, t = d/0 is undefined and scipy returns
    nan. We return the limit instead: p = 1.0 if that difference is 0 (the systems are
    identical on every query, no evidence of a difference), else p = 0.0 (a perfectly
    consistent shift: t -> infinity). A nan would silently fail every ``p < alpha`` gate.
    """
    c, t = _paired(control, treatment)
    d = t - c
    if _is_constant(d):
        return 1.0 if abs(float(np.mean(d))) <= _tolerance(d) else 0.0
    from scipy import stats  # imported on use: suite files name a Test without paying for scipy

    return float(stats.ttest_rel(t, c).pvalue)


def randomization_test(
    control: Sequence[float],
    treatment: Sequence[float],
    *,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> float:
    """Two-sided paired randomization (Fisher sign-flip) test on the mean difference.

    Under H0 the two systems are exchangeable on each query, so each query's pair may be
    swapped (its difference's sign flipped). Uses ``scipy.stats.permutation_test`` with
    ``permutation_type="samples"``: when ``2**n <= n_resamples`` it enumerates all sign
    flips and the p-value is exact; otherwise it draws ``n_resamples`` flips from
    ``np.random.default_rng(seed)`` and the p-value counts the observed arrangement
    (never 0). Deterministic for a fixed seed.
    """
    _check_resampling(n_resamples)
    c, t = _paired(control, treatment)
    d = t - c
    if c.size == 1 or np.all(np.abs(d) <= _tolerance(d)):
        # Exact answers scipy does not give: with one query the two flips (d, -d) are
        # both as extreme as the observed d; with all-zero d every flip gives 0.
        return 1.0
    from scipy import stats

    result = stats.permutation_test(
        (c, t),
        _mean_difference,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        batch=_batch(c.size, n_resamples),
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(result.pvalue)


def bootstrap_ci(
    control: Sequence[float],
    treatment: Sequence[float],
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Paired-bootstrap percentile CI of the mean difference (treatment - control).

    Queries are resampled with replacement, keeping each query's pair together. The mean
    difference depends on a pair only through d = treatment - control, so bootstrapping
    the 1-D vector d is the same paired bootstrap with half the memory. When all
    differences are equal every resample has the same mean, so the CI is (d, d); that case
    is returned directly (scipy would need n >= 2 and may warn).
    """
    _check_resampling(n_resamples, confidence)
    c, t = _paired(control, treatment)
    d = t - c
    if _is_constant(d):
        m = float(np.mean(d))
        return (m, m)
    from scipy import stats

    result = stats.bootstrap(
        (d,),
        np.mean,
        n_resamples=n_resamples,
        batch=_batch(d.size, n_resamples),
        vectorized=True,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    ci = result.confidence_interval
    return (float(ci.low), float(ci.high))


def win_tie_loss(
    control: Sequence[float], treatment: Sequence[float], *, eps: float = 1e-9
) -> tuple[int, int, int]:
    """Per-query counts: wins (treatment > control + eps), ties (|diff| <= eps), losses."""
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    c, t = _paired(control, treatment)
    d = t - c
    wins = int(np.count_nonzero(d > eps))
    losses = int(np.count_nonzero(d < -eps))
    return (wins, c.size - wins - losses, losses)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in input order.

    With the m p-values sorted ascending, p_(i) becomes max_{j<=i} min(1, (m-j+1) p_(j)):
    the running maximum keeps the adjusted values monotone in the raw ones.
    """
    p = np.array(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values must be 1-D, got shape {p.shape}")
    if p.size and not np.all((p >= 0.0) & (p <= 1.0)):
        raise ValueError(f"p-values must lie in [0, 1], got {p.tolist()}")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return [float(x) for x in adjusted]


@dataclass(frozen=True)
class PairedComparison:
    """Everything a verdict needs about treatment vs control on one metric."""

    n: int
    control_mean: float
    treatment_mean: float
    delta: float  # treatment_mean - control_mean
    delta_ci: tuple[float, float]  # paired-bootstrap percentile CI of delta
    p_t_test: float
    p_randomization: float
    wins: int
    ties: int
    losses: int

    def p(self, test: Test) -> float:
        """The p-value of the named test."""
        return self.p_randomization if test == "randomization" else self.p_t_test

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``delta_ci`` as a 2-item list); inverse of ``from_dict``."""
        out = asdict(self)
        out["delta_ci"] = list(self.delta_ci)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairedComparison:
        low, high = data["delta_ci"]
        return cls(**{**data, "delta_ci": (float(low), float(high))})


def compare_paired(
    control: Sequence[float],
    treatment: Sequence[float],
    *,
    seed: int = 0,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
) -> PairedComparison:
    """All paired statistics at once; ``seed`` drives both the randomization test and CI."""
    c, t = _paired(control, treatment)
    control_mean = float(np.mean(c))
    treatment_mean = float(np.mean(t))
    wins, ties, losses = win_tie_loss(c, t)
    return PairedComparison(
        n=int(c.size),
        control_mean=control_mean,
        treatment_mean=treatment_mean,
        delta=treatment_mean - control_mean,
        delta_ci=bootstrap_ci(c, t, confidence=confidence, n_resamples=n_resamples, seed=seed),
        p_t_test=paired_t_test(c, t),
        p_randomization=randomization_test(c, t, n_resamples=n_resamples, seed=seed),
        wins=wins,
        ties=ties,
        losses=losses,
    )
