"""Known-value tests for harness.stats (paired significance tests on per-query vectors)."""

from __future__ import annotations

import itertools
import json
import math
import statistics

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import t as t_dist

from harness.analysis.stats import (
    TESTS,
    PairedComparison,
    bootstrap_ci,
    calls_to_bound,
    compare_paired,
    holm,
    latency_speed_ratio,
    minimum_detectable_effect,
    noninferiority,
    paired_t_test,
    quantile_bound,
    queries_needed,
    randomization_test,
    throughput_ratio,
    win_tie_loss,
)

# The degenerate cases must be handled, not papered over by scipy warnings.
pytestmark = pytest.mark.filterwarnings("error")

# Student's sleep data (Cushny & Peebles 1905), R's `t.test(extra ~ group, sleep, paired=TRUE)`:
# t = -4.0621, df = 9, p-value = 0.002833, mean difference -1.58.
SLEEP_DRUG_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_DRUG_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def exact_sign_flip_p(control: list[float], treatment: list[float]) -> float:
    """Two-sided p of the paired randomization test by enumerating all 2^n sign flips."""
    d = [t - c for c, t in zip(control, treatment)]
    observed = abs(sum(d))
    extreme = sum(
        abs(sum(s * x for s, x in zip(signs, d))) >= observed - 1e-12
        for signs in itertools.product((1, -1), repeat=len(d))
    )
    return extreme / 2 ** len(d)


def shifted(n: int, shift: float, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    control = rng.uniform(0.0, 1.0, n)
    return control, control + shift + rng.normal(0.0, noise, n)


# --- paired t-test -------------------------------------------------------------------


def test_t_test_matches_formula_by_hand():
    control = [0.2, 0.4, 0.5, 0.1, 0.6]
    treatment = [0.3, 0.7, 0.5, 0.4, 0.5]
    d = [0.1, 0.3, 0.0, 0.3, -0.1]  # treatment - control
    n = len(d)
    t = statistics.mean(d) / (statistics.stdev(d) / math.sqrt(n))  # 0.12 / (0.17889/sqrt 5)
    expected = 2 * t_dist.sf(abs(t), df=n - 1)
    assert t == pytest.approx(1.5, rel=1e-9)
    assert paired_t_test(control, treatment) == pytest.approx(expected, rel=1e-9)
    assert paired_t_test(treatment, control) == pytest.approx(expected, rel=1e-9)  # two-sided


def test_t_test_textbook_sleep_data():
    assert paired_t_test(SLEEP_DRUG_1, SLEEP_DRUG_2) == pytest.approx(0.002833, abs=5e-7)


def test_t_test_degenerate_cases():
    assert paired_t_test([0.3, 0.5, 0.9], [0.3, 0.5, 0.9]) == 1.0  # identical
    assert paired_t_test([0.0, 0.5, 1.0], [0.25, 0.75, 1.25]) == 0.0  # constant shift
    assert paired_t_test([0.1, 0.2], [0.2, 0.3]) == 0.0  # shift with float noise, no warning
    assert paired_t_test([0.4], [0.4]) == 1.0  # one query
    assert paired_t_test([0.4], [0.6]) == 0.0


# --- randomization test --------------------------------------------------------------

RAND_CONTROL = [0.30, 0.50, 0.20, 0.60, 0.40]
RAND_TREATMENT = [0.45, 0.55, 0.10, 0.90, 0.60]  # d = 0.15, 0.05, -0.10, 0.30, 0.20


def test_randomization_exact_for_tiny_n():
    # |sum d| >= 0.6 only when the flipped |d| sum to <= 0.1 ({}, {.05}, {.10}) or their
    # mirror images: 6 of 32 sign patterns.
    exact = exact_sign_flip_p(RAND_CONTROL, RAND_TREATMENT)
    assert exact == pytest.approx(6 / 32)
    # 2^5 <= n_resamples, so all flips are enumerated and the p-value is exact.
    assert randomization_test(RAND_CONTROL, RAND_TREATMENT) == pytest.approx(exact)
    # Sleep data: 9 non-zero differences -> 4 of 1024 patterns at least as extreme.
    assert randomization_test(SLEEP_DRUG_1, SLEEP_DRUG_2) == pytest.approx(4 / 1024)


def test_randomization_monte_carlo_close_to_exact():
    control, treatment = shifted(14, 0.03, 0.1, seed=3)
    control, treatment = control.tolist(), treatment.tolist()
    exact = exact_sign_flip_p(control, treatment)  # 16,384 patterns
    assert 0.02 < exact < 0.5  # an informative, non-boundary case
    p = randomization_test(control, treatment, n_resamples=10_000, seed=1)  # 10,000 < 2^14
    assert p != pytest.approx(exact, abs=1e-12)  # really Monte Carlo ...
    assert p == pytest.approx(exact, abs=0.015)  # ... within ~4 standard errors


def test_randomization_identical_vectors():
    values = [0.1, 0.7, 0.0, 1.0, 0.5]
    assert randomization_test(values, values) == 1.0
    assert randomization_test([0.4], [0.9]) == 1.0  # one query: both flips equally extreme


def test_randomization_strong_improvement():
    control, treatment = shifted(50, 0.1, 0.05, seed=0)
    assert randomization_test(control, treatment) < 0.001
    assert randomization_test(treatment, control) < 0.001


def test_randomization_seed_determinism():
    control, treatment = shifted(30, 0.02, 0.1, seed=7)
    p0 = randomization_test(control, treatment, n_resamples=2_000, seed=0)
    assert randomization_test(control, treatment, n_resamples=2_000, seed=0) == p0
    p1 = randomization_test(control, treatment, n_resamples=2_000, seed=1)
    assert p1 != p0
    assert p1 == pytest.approx(p0, abs=0.05)


def test_randomization_agrees_with_t_test_for_moderate_n():
    control, treatment = shifted(200, 0.01, 0.1, seed=11)
    p_t = paired_t_test(control, treatment)
    assert 0.01 < p_t < 0.5  # neither trivially significant nor null
    assert randomization_test(control, treatment) == pytest.approx(p_t, abs=0.03)


# --- bootstrap CI --------------------------------------------------------------------


def test_bootstrap_contains_true_difference_and_excludes_zero():
    control, treatment = shifted(400, 0.1, 0.05, seed=0)
    low, high = bootstrap_ci(control, treatment)
    assert low < float(np.mean(treatment - control)) < high
    assert low < 0.1 < high  # the population shift
    assert 0.0 < low  # a consistent improvement
    low_r, high_r = bootstrap_ci(treatment, control)  # sign convention: treatment - control
    assert high_r < 0.0
    assert (low_r, high_r) == pytest.approx((-high, -low), abs=0.002)


def test_bootstrap_width_matches_normal_theory_and_shrinks_with_n():
    def width(n: int, confidence: float = 0.95) -> float:
        low, high = bootstrap_ci(*shifted(n, 0.0, 0.1, seed=n), confidence=confidence)
        return high - low

    # sd of d is ~0.1, so the 95% width is ~2 * 1.96 * 0.1 / sqrt(n).
    assert width(800) == pytest.approx(2 * 1.96 * 0.1 / math.sqrt(800), rel=0.1)
    assert width(50) > 2.5 * width(800)  # ~4x narrower with 16x the queries
    assert width(200, 0.99) > width(200, 0.95) > width(200, 0.80)


def test_bootstrap_percentile_interval_follows_skew():
    # Right-skewed differences: 38 queries +0.01, 2 big wins of +0.8. A resample holds
    # ~Binomial(40, 0.05) big wins (0 at the 2.5% end, ~5 at the 97.5% end), so the
    # percentile CI reaches further above the mean than below it; a "basic" interval
    # (2 * mean - percentiles) would be skewed the other way.
    d = [0.8] * 2 + [0.01] * 38
    low, high = bootstrap_ci([0.0] * 40, d)
    mean = statistics.mean(d)
    assert low == pytest.approx(0.01)  # resamples without a big win
    assert high - mean > 1.3 * (mean - low)


def test_bootstrap_zero_variance():
    assert bootstrap_ci([0.2, 0.5, 0.7], [0.3, 0.6, 0.8]) == pytest.approx((0.1, 0.1))
    assert bootstrap_ci([0.2, 0.5], [0.2, 0.5]) == (0.0, 0.0)
    assert bootstrap_ci([0.2], [0.7]) == pytest.approx((0.5, 0.5))


def test_bootstrap_seed_determinism():
    control, treatment = shifted(60, 0.02, 0.1, seed=5)
    assert bootstrap_ci(control, treatment, seed=3) == bootstrap_ci(control, treatment, seed=3)
    assert bootstrap_ci(control, treatment, seed=3) != bootstrap_ci(control, treatment, seed=4)


# --- win / tie / loss ----------------------------------------------------------------


def test_win_tie_loss():
    control = [0.5, 0.2, 0.3, 0.9, 0.0, 0.4]
    treatment = [0.6, 0.2, 0.1, 0.9 + 1e-12, 0.0, 0.3]
    assert win_tie_loss(control, treatment) == (1, 3, 2)
    assert win_tie_loss(treatment, control) == (2, 3, 1)
    # 0.1 and -0.1 (within eps) become ties, -0.2 stays a loss
    assert win_tie_loss(control, treatment, eps=0.15) == (0, 5, 1)
    # a difference of exactly eps is a tie (0.75 - 0.5 and 0.25 - 0.5 are exact in binary)
    assert win_tie_loss([0.5, 0.5], [0.75, 0.25], eps=0.25) == (0, 2, 0)


# --- Holm-Bonferroni -----------------------------------------------------------------


def test_holm_hand_computed():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.02, 0.02, 0.5]) == pytest.approx([0.06, 0.06, 0.5])  # ties
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped
    assert holm([0.2]) == [0.2]
    assert holm([]) == []
    with pytest.raises(ValueError):
        holm([0.1, 1.5])


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=30))
def test_holm_properties(p_values):
    adjusted = holm(p_values)
    m = len(p_values)
    assert len(adjusted) == m
    for p, a in zip(p_values, adjusted):
        assert p <= a <= min(1.0, m * p) + 1e-12  # between raw and Bonferroni
    for i, j in itertools.product(range(m), repeat=2):
        if p_values[i] <= p_values[j]:
            assert adjusted[i] <= adjusted[j]  # monotone in the raw p-values
    assert holm(list(reversed(p_values))) == list(reversed(adjusted))  # input order kept


# --- compare_paired and shared contract ----------------------------------------------


def test_compare_paired_consistent():
    control, treatment = shifted(40, 0.05, 0.1, seed=2)
    result = compare_paired(control, treatment, seed=0, n_resamples=2_000)
    assert result.n == 40
    assert result.delta == pytest.approx(result.treatment_mean - result.control_mean)
    assert result.control_mean == pytest.approx(float(np.mean(control)))
    assert result.wins + result.ties + result.losses == result.n
    assert result.delta_ci[0] < result.delta < result.delta_ci[1]
    assert result.p_t_test == pytest.approx(paired_t_test(control, treatment))
    assert result.p_randomization == randomization_test(
        control, treatment, n_resamples=2_000, seed=0
    )
    assert result.delta_ci == bootstrap_ci(control, treatment, n_resamples=2_000, seed=0)


def test_compare_paired_json_round_trip():
    result = compare_paired(SLEEP_DRUG_1, SLEEP_DRUG_2, n_resamples=1_000)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["delta"] == pytest.approx(1.58)
    assert (data["wins"], data["ties"], data["losses"]) == (9, 1, 0)
    assert PairedComparison.from_dict(data) == result


def test_compare_paired_single_query():
    result = compare_paired([0.2], [0.5])
    assert (result.n, result.wins, result.p_t_test, result.p_randomization) == (1, 1, 0.0, 1.0)
    assert result.delta_ci == pytest.approx((0.3, 0.3))


@pytest.mark.parametrize(
    "fn", [paired_t_test, randomization_test, bootstrap_ci, win_tie_loss, compare_paired]
)
def test_mismatched_or_empty_inputs_raise(fn):
    with pytest.raises(ValueError, match=r"3.*2"):
        fn([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ValueError):
        fn([], [])
    with pytest.raises(ValueError):
        fn([0.1, float("nan")], [0.1, 0.2])


def test_plain_return_types_and_no_mutation():
    control = np.array([0.1, 0.4, 0.35, 0.8])
    treatment = np.array([0.2, 0.3, 0.5, 0.9])
    before = (control.copy(), treatment.copy())
    assert type(paired_t_test(control, treatment)) is float
    assert type(randomization_test(control, treatment)) is float
    ci = bootstrap_ci(control, treatment, n_resamples=500)
    assert type(ci) is tuple and all(type(x) is float for x in ci)
    assert all(type(x) is int for x in win_tie_loss(control, treatment))
    assert all(type(x) is float for x in holm(np.array([0.01, 0.2])))
    result = compare_paired(control, treatment, n_resamples=500)
    assert type(result.n) is int and type(result.delta) is float
    np.testing.assert_array_equal(control, before[0])
    np.testing.assert_array_equal(treatment, before[1])


def test_one_list_of_test_names():
    """The suite's baseline `test:`, the CLI's --test and the verdicts all take the names of stats.Test."""
    from harness.cli import build_parser
    from harness.input.suite import Baseline

    assert TESTS == ("randomization", "t-test")
    result = compare_paired(SLEEP_DRUG_1, SLEEP_DRUG_2, n_resamples=1000)
    assert [result.p(t) for t in TESTS] == [result.p_randomization, result.p_t_test]
    assert Baseline(records="x", test="t-test").test == "t-test"
    with pytest.raises(ValueError, match="'randomization' or 't-test'"):
        Baseline(records="x", test="wilcoxon")
    parser = build_parser()
    for command in (["compare", "a"], ["report", "a", "-o", "out"]):
        assert parser.parse_args([*command, "--test", "t-test"]).test == "t-test"
        with pytest.raises(Exception, match="invalid choice: 'wilcoxon'"):
            parser.parse_args([*command, "--test", "wilcoxon"])


# --- non-inferiority -----------------------------------------------------------------

# d = treatment - control = [0.1, 0.3, 0.0, 0.3, -0.1]: mean 0.12, sample variance 0.128 / 4 = 0.032,
# so se = sqrt(0.032 / 5) = 0.08 exactly; t_{0.95, 4} = 2.131847 (tables), lower = 0.12 - 0.170548 = -0.050548.
NI_CONTROL = [0.2, 0.4, 0.5, 0.1, 0.6]
NI_TREATMENT = [0.3, 0.7, 0.5, 0.4, 0.5]


def test_noninferiority_lower_bound_by_hand():
    result = noninferiority(NI_CONTROL, NI_TREATMENT, margin=0.06, alpha=0.05)
    assert result.n == 5 and result.delta == pytest.approx(0.12)
    assert result.lower == pytest.approx(0.12 - 2.131847 * 0.08, abs=1e-6)
    assert result.noninferior  # -0.0505 > -0.06
    assert result.p_value == pytest.approx(t_dist.sf((0.12 + 0.06) / 0.08, 4)) and result.p_value < 0.05


def test_noninferiority_fails_when_the_bound_touches_the_margin():
    # margin 0.05: t = (0.12 + 0.05) / 0.08 = 2.125 < 2.131847, so the lower bound -0.0505 is below -0.05.
    result = noninferiority(NI_CONTROL, NI_TREATMENT, margin=0.05, alpha=0.05)
    assert not result.noninferior and result.lower < -0.05
    assert 0.05 < result.p_value < 0.051  # the same verdict from the p-value side
    # A better mean is not enough: the verdict rests on the bound, so a noisy gain can still fail.
    assert result.delta > 0


def test_noninferiority_degenerate_cases():
    same = noninferiority([0.5, 0.2, 0.9], [0.5, 0.2, 0.9], margin=0.01)
    assert same.noninferior and same.lower == 0.0 and same.p_value == 0.0
    shifted_down = noninferiority([0.5, 0.2, 0.9], [0.48, 0.18, 0.88], margin=0.01)  # every query -0.02
    assert not shifted_down.noninferior and shifted_down.lower == pytest.approx(-0.02)
    one = noninferiority([0.5], [0.9], margin=0.5)
    assert not one.noninferior and one.lower == -math.inf and one.p_value == 1.0
    with pytest.raises(ValueError, match="margin"):
        noninferiority([0.1, 0.2], [0.1, 0.2], margin=-0.1)


# --- power ----------------------------------------------------------------------------


def test_minimum_detectable_effect_by_hand():
    # t_{0.975, 9} = 2.262157, t_{0.80, 9} = 0.883404 (tables): MDE = 3.145561 * 0.1 / sqrt(10)
    assert minimum_detectable_effect(0.1, 10) == pytest.approx(3.145561 * 0.1 / math.sqrt(10), abs=1e-6)
    # alpha and power move it the right way; more queries shrink it as 1/sqrt(n) (roughly)
    assert minimum_detectable_effect(0.1, 10, alpha=0.01) > minimum_detectable_effect(0.1, 10)
    assert minimum_detectable_effect(0.1, 10, power=0.9) > minimum_detectable_effect(0.1, 10)
    assert minimum_detectable_effect(0.1, 40) < minimum_detectable_effect(0.1, 10) / 2
    assert minimum_detectable_effect(0.0, 10) == 0.0
    with pytest.raises(ValueError, match="at least 2 queries"):
        minimum_detectable_effect(0.1, 1)


def test_queries_needed_by_hand():
    # sd 0.1, effect 0.05. n = 33: (t_{.975,32} 2.036933 + t_{.8,32} 0.852998) * 0.1 / sqrt(33) = 0.050307 > 0.05;
    # n = 34: (2.034515 + 0.852649) * 0.1 / sqrt(34) = 0.049514 <= 0.05. (The normal approximation says 32.)
    assert queries_needed(0.1, 0.05) == 34
    assert minimum_detectable_effect(0.1, 34) <= 0.05 < minimum_detectable_effect(0.1, 33)
    assert queries_needed(0.0, 0.05) == 2
    with pytest.raises(ValueError, match="effect"):
        queries_needed(0.1, 0.0)


def test_compare_paired_reports_the_mde_of_its_deltas():
    result = compare_paired(NI_CONTROL, NI_TREATMENT, n_resamples=200)
    # sd of d = sqrt(0.032); t_{0.975,4} = 2.776445, t_{0.8,4} = 0.940965
    assert result.mde == pytest.approx((2.776445 + 0.940965) * math.sqrt(0.032) / math.sqrt(5), abs=1e-6)
    assert PairedComparison.from_dict(json.loads(json.dumps(result.to_dict()))) == result


# --- speed ratios ---------------------------------------------------------------------


def test_throughput_ratio_weighs_pieces_by_their_rows():
    # control: 100 rows in 4 s = 25/s (the mean of the per-piece rates, 20/s, would be wrong); treatment 25/s
    result = throughput_ratio([10, 90], [1.0, 3.0], [50], [2.0], n_resamples=500)
    assert result.ratio == pytest.approx(1.0)
    constant = throughput_ratio([10] * 20, [0.1] * 20, [10] * 20, [0.2] * 20, n_resamples=500)
    assert constant.ratio == pytest.approx(0.5) and constant.upper == pytest.approx(0.5)
    assert constant.slower_than(0.10) and not constant.slower_than(0.6)


def test_speed_ratio_bound_separates_noise_from_a_slowdown():
    rng = np.random.default_rng(7)
    rows = [32] * 40
    base = list(rng.gamma(20.0, 0.01, 40))  # ~0.2 s per batch, +-22%
    same = list(rng.gamma(20.0, 0.01, 40))
    slower = list(rng.gamma(20.0, 0.017, 40))  # ~0.59x the speed
    unchanged = throughput_ratio(rows, base, rows, same, seed=1)
    assert not unchanged.slower_than(0.10) and unchanged.upper > 0.9
    lost = throughput_ratio(rows, base, rows, slower, seed=1)
    assert lost.slower_than(0.10) and lost.ratio < lost.upper < 0.9
    assert throughput_ratio(rows, base, rows, slower, seed=1) == lost  # seeded: the same bound again


def test_quantile_bounds_are_the_binomial_order_statistics():
    from scipy.stats import binom

    values = np.arange(1000, 0, -1, dtype=np.float64)  # unsorted on purpose: ranks are of the sorted values
    # P(Bin(1000, .99) <= 996) >= .975 > P(... <= 995): the 997th value bounds the p99 from above
    assert binom.cdf(996, 1000, 0.99) >= 0.975 > binom.cdf(995, 1000, 0.99)
    assert quantile_bound(values, 0.99, 0.975, "upper") == 997.0
    # P(Bin <= 982) <= .025 < P(Bin <= 983): the 983rd value bounds it from below
    assert binom.cdf(982, 1000, 0.99) <= 0.025 < binom.cdf(983, 1000, 0.99)
    assert quantile_bound(values, 0.99, 0.975, "lower") == 983.0
    # 367 calls cannot bound a p99 from above at 97.5% (0.99 ** 367 > 0.025); 368 can, with the maximum
    assert calls_to_bound(0.99, 0.975) == 368
    assert quantile_bound(np.arange(1.0, 368.0), 0.99, 0.975, "upper") == math.inf
    assert quantile_bound(np.arange(1.0, 369.0), 0.99, 0.975, "upper") == 368.0


def test_quantile_bounds_cover_the_true_quantile():
    rng = np.random.default_rng(7)
    true_p99 = -math.log(0.01)  # exponential(1)
    samples = rng.exponential(1.0, size=(400, 1000))
    upper = np.array([quantile_bound(x, 0.99, 0.975, "upper") for x in samples])
    lower = np.array([quantile_bound(x, 0.99, 0.975, "lower") for x in samples])
    assert (upper >= true_p99).mean() >= 0.96 and (lower <= true_p99).mean() >= 0.96
    assert np.all(lower <= upper)


def test_latency_speed_ratio_is_inverse_p99():
    rng = np.random.default_rng(3)
    control = rng.gamma(20.0, 0.2, 1000)
    treatment = 2.0 * control  # every call twice as long
    result = latency_speed_ratio(control, treatment)
    assert result.ratio == pytest.approx(np.percentile(control, 99) / np.percentile(treatment, 99)) == \
        pytest.approx(0.5)
    assert result.ratio < result.upper < 0.9 and result.slower_than(0.10)
    assert result.n_control == result.n_treatment == 1000
    same = latency_speed_ratio(control, rng.permutation(control))
    assert same.ratio == pytest.approx(1.0) and same.upper > 1.0 and not same.slower_than(0.0)
    # The bootstrap this replaced bounded a p99 of 100 calls (their maximum) as if it were known to 3%;
    # order statistics say plainly that 100 calls cannot bound it.
    few = latency_speed_ratio(control[:100], treatment[:100])
    assert few.ratio == pytest.approx(0.5) and few.upper == math.inf and not few.slower_than(0.10)
    # only the control's p99 needs an upper bound: 100 calls of a new run that is twice as slow still show it
    assert latency_speed_ratio(control, treatment[:100]).slower_than(0.10)
    # a median of 2 calls has no lower bound at 97.5% (its smallest value is below it with probability 0.75)
    assert latency_speed_ratio(control, treatment[:2], quantile=0.5).upper == math.inf
    with pytest.raises(ValueError, match="positive"):
        latency_speed_ratio([1.0, -1.0], [1.0])
