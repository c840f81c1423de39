"""Paired significance tests on per-query metric vectors (pure functions, no I/O).

Every function takes ``control`` and ``treatment`` as 1-D float sequences aligned by
query (the per-query vectors of ``harness.scoring.metrics``), never mutates them, and returns
plain Python types. Differences are always ``treatment - control``: a positive delta
means the treatment scores higher. Randomness comes only from an explicit ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from harness.vocabulary.statistics import TESTS, Test

__all__ = [
    "TESTS",
    "NonInferiority",
    "PairedComparison",
    "SpeedRatio",
    "Test",
    "bootstrap_ci",
    "LATENCY_QUANTILE",
    "calls_to_bound",
    "compare_paired",
    "holm",
    "latency_speed_ratio",
    "minimum_detectable_effect",
    "noninferiority",
    "paired_t_test",
    "quantile_bound",
    "queries_needed",
    "randomization_test",
    "throughput_ratio",
    "win_tie_loss",
]


# A vector of per-query values (or of timings): a sequence of floats or a 1-D numpy array
Values = Sequence[float] | np.ndarray

# Resampling works on (batch, n) arrays; cap each batch at ~4M floats (32 MB) so that
# 10,000 resamples of a 7,000-query MS MARCO dev vector stay within bounded memory.
_MAX_BATCH_ELEMENTS = 1 << 22


def _paired(control: Values, treatment: Values) -> tuple[np.ndarray, np.ndarray]:
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


def paired_t_test(control: Values, treatment: Values) -> float:
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
    control: Values,
    treatment: Values,
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
    control: Values,
    treatment: Values,
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


def mean_ci(values: Values, *, seed: int = 0, n_resamples: int = 10_000) -> tuple[float, float]:
    """95% bootstrap CI of a mean: the paired CI of (values - 0)."""
    return bootstrap_ci([0.0] * len(values), values, seed=seed, n_resamples=n_resamples)


def win_tie_loss(
    control: Values, treatment: Values, *, eps: float = 1e-9
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
    mde: float | None  # minimum detectable |delta| on these queries (alpha 0.05 two-sided, power 0.8); None: 1 query

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
    control: Values,
    treatment: Values,
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
    d = t - c
    mde = minimum_detectable_effect(float(np.std(d, ddof=1)), c.size) if c.size >= 2 else None
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
        mde=mde,
    )


# ------------------------------------------------------------------ non-inferiority


@dataclass(frozen=True)
class NonInferiority:
    """Is the treatment not worse than the control by more than ``margin``? (one-sided paired t on per-query deltas)"""

    n: int
    delta: float  # mean of treatment - control
    lower: float  # one-sided (1 - alpha) lower confidence bound of delta
    margin: float
    alpha: float
    p_value: float  # one-sided p of H0: delta <= -margin

    @property
    def noninferior(self) -> bool:
        """True only when the lower bound clears -margin (equivalently p_value < alpha)."""
        return self.lower > -self.margin


def noninferiority(control: Values, treatment: Values, *, margin: float,
                   alpha: float = 0.05) -> NonInferiority:
    """One-sided paired t-test of H0: mean(treatment - control) <= -margin against H1: > -margin.

    lower = mean(d) - t_{1-alpha, n-1} * sd(d) / sqrt(n), with sd the sample standard deviation (ddof 1);
    non-inferior when lower > -margin, which is the same event as p < alpha with
    p = P(T_{n-1} >= (mean(d) + margin) / (sd(d) / sqrt(n))). The t interval is used rather than a bootstrap
    percentile one because it is exact under normal deltas, is not too narrow on tens of queries, and can be
    checked by hand. Degenerate cases: identical differences (sd 0, n >= 2) give lower = mean(d) exactly;
    one query gives no variance estimate, so nothing is established (lower = -inf, p = 1).
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    c, t = _paired(control, treatment)
    d = t - c
    n, mean = int(d.size), float(np.mean(d))
    if n == 1:
        return NonInferiority(n, mean, -math.inf, margin, alpha, 1.0)
    if _is_constant(d):
        clears = mean > -margin
        return NonInferiority(n, mean, mean, margin, alpha, 0.0 if clears else 1.0)
    from scipy import stats

    se = float(np.std(d, ddof=1)) / math.sqrt(n)
    lower = mean - float(stats.t.ppf(1.0 - alpha, n - 1)) * se
    p = float(stats.t.sf((mean + margin) / se, n - 1))
    return NonInferiority(n, mean, lower, margin, alpha, p)


# ------------------------------------------------------------------ power


def _check_power(alpha: float, power: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power}")


def minimum_detectable_effect(sd: float, n: int, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean paired difference that a two-sided paired t-test at ``alpha`` detects with
    probability ``power``, on ``n`` queries whose per-query differences have standard deviation ``sd``:

        MDE = (t_{1-alpha/2, n-1} + t_{power, n-1}) * sd / sqrt(n)

    This is the t-based formula (the usual approximation of the noncentral-t power; the normal one, with z
    quantiles, is too optimistic on tens of queries: 2.80 instead of 2.87 sd/sqrt(n) at n = 43).
    """
    _check_power(alpha, power)
    if n < 2:
        raise ValueError(f"need at least 2 queries for a paired test, got {n}")
    if sd < 0 or not math.isfinite(sd):
        raise ValueError(f"sd must be finite and >= 0, got {sd}")
    from scipy import stats

    factor = float(stats.t.ppf(1.0 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1))
    return factor * sd / math.sqrt(n)


def queries_needed(sd: float, effect: float, *, alpha: float = 0.05, power: float = 0.8) -> int:
    """The fewest queries (>= 2) whose ``minimum_detectable_effect`` is at most ``effect``."""
    _check_power(alpha, power)
    if effect <= 0:
        raise ValueError(f"effect must be > 0, got {effect}")
    if sd == 0:
        return 2
    from scipy import stats

    # Start at the normal approximation, which never exceeds the t-based answer, and walk up.
    z = float(stats.norm.ppf(1.0 - alpha / 2) + stats.norm.ppf(power))
    n = max(2, math.ceil((z * sd / effect) ** 2))
    while minimum_detectable_effect(sd, n, alpha=alpha, power=power) > effect:
        n += 1
    return n


# ------------------------------------------------------------------ speed


@dataclass(frozen=True)
class SpeedRatio:
    """New speed / baseline speed (below 1: slower), with a one-sided bootstrap upper confidence bound."""

    ratio: float
    upper: float  # the (1 - alpha) one-sided upper bound of the ratio
    alpha: float
    n_control: int  # timing samples behind each side
    n_treatment: int

    def slower_than(self, max_slowdown: float) -> bool:
        """Significantly slower than the margin allows: even the upper bound is below 1 - max_slowdown."""
        return self.upper < 1.0 - max_slowdown


def _timing_samples(rows: Values, seconds: Values, what: str) -> tuple[np.ndarray, np.ndarray]:
    r, s = np.array(rows, dtype=np.float64), np.array(seconds, dtype=np.float64)
    if r.ndim != 1 or r.shape != s.shape or r.size == 0:
        raise ValueError(f"{what}: rows and seconds must be non-empty 1-D sequences of one length")
    # a piece may take ~0 s (e.g. the last GPU batches landing together), but not the whole run
    if not (np.all(r > 0) and np.all(s >= 0) and np.isfinite(s).all() and s.sum() > 0):
        raise ValueError(f"{what}: rows must be positive, seconds finite and >= 0 with a positive total")
    return r, s


def _resampled(n: int, n_resamples: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Bootstrap index arrays (batch, n), ``n_resamples`` rows in all, in bounded memory."""
    batch = _batch(n, n_resamples)
    for start in range(0, n_resamples, batch):
        yield rng.integers(0, n, size=(min(batch, n_resamples - start), n))


def _bootstrap_ratio(control_stat, n_control: int, treatment_stat, n_treatment: int, *, alpha: float,
                     n_resamples: int, seed: int) -> float:
    """The (1 - alpha) quantile of treatment_stat / control_stat over independent resamples of each side."""
    _check_resampling(n_resamples, 1.0 - alpha)
    rng = np.random.default_rng(seed)
    control = np.concatenate([control_stat(idx) for idx in _resampled(n_control, n_resamples, rng)])
    treatment = np.concatenate([treatment_stat(idx) for idx in _resampled(n_treatment, n_resamples, rng)])
    return float(np.quantile(treatment / control, 1.0 - alpha))


def throughput_ratio(control_rows: Values, control_seconds: Values,
                     treatment_rows: Values, treatment_seconds: Values, *, alpha: float = 0.05,
                     n_resamples: int = 10_000, seed: int = 0) -> SpeedRatio:
    """Throughput of the treatment over the control's, from timed pieces of work (rows, seconds) of each run.

    Each run's throughput is sum(rows) / sum(seconds) (so pieces of different sizes weigh by their size); the
    bound comes from resampling each run's pieces with replacement, independently (two runs, no pairing).
    """
    cr, cs = _timing_samples(control_rows, control_seconds, "control")
    tr, ts = _timing_samples(treatment_rows, treatment_seconds, "treatment")
    ratio = float((tr.sum() / ts.sum()) / (cr.sum() / cs.sum()))
    upper = _bootstrap_ratio(lambda i: cr[i].sum(1) / cs[i].sum(1), cr.size,
                             lambda i: tr[i].sum(1) / ts[i].sum(1), tr.size,
                             alpha=alpha, n_resamples=n_resamples, seed=seed)
    return SpeedRatio(ratio, upper, alpha, int(cr.size), int(tr.size))


def quantile_bound(values: Values, quantile: float, confidence: float, side: Literal["upper", "lower"]
                   ) -> float:
    """A distribution-free one-sided confidence bound for a quantile: the order statistic X_(r) with
    P(X_(r) >= q-quantile) >= confidence (upper) or P(X_(r) <= q-quantile) >= confidence (lower), from the
    binomial count of values below the quantile. inf (upper) or 0 (lower) when the sample is too small to
    bound it: the bootstrap cannot stand in here, since resampling 100 calls never draws a value beyond their
    maximum, which is all a p99 of 100 calls is."""
    from scipy.stats import binom

    x = np.sort(np.asarray(values, dtype=np.float64))
    n = x.size
    if side == "upper":  # smallest rank r with P(Bin(n, q) <= r - 1) >= confidence
        r = int(binom.ppf(confidence, n, quantile)) + 1
        return float(x[r - 1]) if r <= n else math.inf
    r = int(binom.ppf(1.0 - confidence, n, quantile))  # largest rank r with P(Bin(n, q) <= r - 1) <= 1 - conf
    return float(x[r - 1]) if r >= 1 else 0.0


LATENCY_QUANTILE = 0.99  # the query latency quantile the speed gate judges (p99)


def calls_to_bound(quantile: float, confidence: float) -> int:
    """The fewest calls whose ``quantile`` has a finite upper bound at ``confidence`` (p99 at 97.5%: 368)."""
    return math.ceil(math.log(1.0 - confidence) / math.log(quantile))


def latency_speed_ratio(control_ms: Values, treatment_ms: Values, *,
                        quantile: float = LATENCY_QUANTILE, alpha: float = 0.05) -> SpeedRatio:
    """Speed by a latency quantile: control's / treatment's (below 1: the treatment is slower), with the
    quantile as ``numpy.percentile`` computes it (``Latency.from_values``). The upper bound is the control's
    upper order-statistic bound over the treatment's lower one, each at 1 - alpha/2 (so both hold together
    with probability >= 1 - alpha). Only the control's bound needs many calls: it is inf when the control has
    fewer than ``calls_to_bound``, while a few treatment calls can still show a large slowdown (for a low
    quantile and very few treatment calls its lower bound is 0, and the ratio's bound inf too)."""
    c = np.array(control_ms, dtype=np.float64)
    t = np.array(treatment_ms, dtype=np.float64)
    for name, v in (("control", c), ("treatment", t)):
        if v.ndim != 1 or v.size == 0 or not (np.isfinite(v).all() and np.all(v > 0)):
            raise ValueError(f"{name}: latencies must be a non-empty 1-D sequence of positive numbers")
    # speed = 1 / latency, so treatment speed / control speed = control latency / treatment latency
    ratio = float(np.quantile(c, quantile) / np.quantile(t, quantile))
    confidence = 1.0 - alpha / 2
    lower_t = quantile_bound(t, quantile, confidence, "lower")
    upper = quantile_bound(c, quantile, confidence, "upper") / lower_t if lower_t > 0 else math.inf
    return SpeedRatio(ratio, upper, alpha, int(c.size), int(t.size))
