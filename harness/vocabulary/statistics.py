"""The names of the paired significance tests, and the options every statistical verdict shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from harness.vocabulary.errors import HarnessError

# The paired significance tests behind verdicts (compare, check, a suite's baseline, the CLI's --test).
Test = Literal["randomization", "t-test"]
TESTS: tuple[Test, ...] = get_args(Test)

DEFAULT_ALPHA = 0.05
DEFAULT_RESAMPLES = 10_000


@dataclass(frozen=True)
class StatsOptions:
    """How a verdict is reached: the paired ``test``, its level ``alpha``, and the ``seed`` and ``n_resamples`` of
    the randomization test and of every bootstrap CI (so the same records always give the same verdict)."""

    alpha: float = DEFAULT_ALPHA
    test: Test = "randomization"
    seed: int = 0
    n_resamples: int = DEFAULT_RESAMPLES

    def __post_init__(self) -> None:
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0 < self.alpha < 1:
            raise HarnessError(f"alpha={self.alpha!r}: give a significance level between 0 and 1, e.g. 0.05")
        if self.test not in TESTS:
            raise HarnessError(f"test={self.test!r}: choose one of {', '.join(TESTS)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise HarnessError(f"seed={self.seed!r}: give a whole number")
        if isinstance(self.n_resamples, bool) or not isinstance(self.n_resamples, int) or self.n_resamples < 1:
            raise HarnessError(f"n_resamples={self.n_resamples!r}: give a positive whole number, e.g. 10000")


DEFAULT_STATS = StatsOptions()
