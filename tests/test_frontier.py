"""The quality x speed frontier's dominance rule, on hand-made per-query vectors."""

from __future__ import annotations

import pytest

from harness.analysis.frontier import Point, dominated, frontier
from harness.analysis.stats import compare_paired

BASE = [0.10, 0.25, 0.30, 0.45, 0.50, 0.55, 0.60, 0.62, 0.70, 0.75, 0.80, 0.85]  # 12 queries: 2**12 = 4096 flips,
# fewer than the 10,000 resamples, so the randomization test enumerates them all and p is exact.
SLOW = Point("slow", 100.0, BASE)
# 0.2 better on every query: the only flips as extreme are all-plus and all-minus, p = 2 / 4096
FAST_BETTER = Point("fast-better", 200.0, [v + 0.2 for v in BASE])
# a little better on average than fast-better, but up on some queries and down on others: not significant
FASTER_NOISY = Point("faster-noisy", 300.0, [v + 0.2 + (0.1 if i % 2 else -0.09) for i, v in enumerate(BASE)])
# slower than everything and best of all
SLOWEST_BEST = Point("slowest-best", 50.0, [v + 0.5 for v in BASE])


def test_faster_and_significantly_better_dominates():
    beaten = dominated([SLOW, FAST_BETTER])
    assert list(beaten) == ["slow"]
    assert beaten["slow"].by == "fast-better"
    assert beaten["slow"].p == pytest.approx(2 / 4096)


def test_faster_but_not_significantly_better_does_not_dominate():
    assert FASTER_NOISY.mean > FAST_BETTER.mean  # higher mean and faster, yet within the noise
    p = compare_paired(FAST_BETTER.per_query, FASTER_NOISY.per_query).p("randomization")
    assert p > 0.05
    assert dominated([FAST_BETTER, FASTER_NOISY]) == {}


def test_slower_and_significantly_better_does_not_dominate():
    assert dominated([SLOWEST_BEST, SLOW]) == {}  # slowest-best is better but slower: both stay


def test_frontier_steps_in_speed_order_with_paired_changes():
    front = frontier([SLOW, FASTER_NOISY, SLOWEST_BEST, FAST_BETTER], metric="nDCG@10")
    assert set(front.dominated) == {"slow"}  # by fast-better or faster-noisy, both faster and better on all queries
    assert [s.label for s in front.steps] == ["slowest-best", "fast-better", "faster-noisy"]
    assert front.steps[0].vs_previous is None
    step = front.steps[1].vs_previous
    assert step.delta == pytest.approx(-0.3)
    assert step.p("randomization") == pytest.approx(2 / 4096)
    assert front.steps[2].vs_previous.p("randomization") > 0.05
    assert front.on_frontier("fast-better") and not front.on_frontier("slow")


def test_t_test_and_alpha_are_honoured():
    # with alpha 1e-4 even a 0.2 gain on every query (randomization p = 2/4096) is not enough
    assert dominated([SLOW, FAST_BETTER], alpha=1e-4) == {}
    assert dominated([SLOW, FAST_BETTER], test="t")["slow"].by == "fast-better"


def test_labels_must_be_unique():
    with pytest.raises(ValueError, match="unique"):
        frontier([SLOW, Point("slow", 5.0, BASE)], metric="nDCG@10")
