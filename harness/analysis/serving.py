"""A server under load: where it saturates, and whether a new server (version, hardware, settings) is slower.

The saturation rate is the highest offered rate (open loop) up to which the server kept its p99 latency within the
SLO at every offered rate, with no errors. Every delay of the client (a late send, a late read) is part of a latency
measured from the intended send time, so a client-limited point's latency bounds the server's from above: one that
met the SLO shows the server sustained the rate; one that missed it shows nothing about the server. The serving gate
compares two `harness load` records:

* **p99 at a fixed offered rate** (default: the rate the baseline sustained): the speed gate of `harness check`,
  speed = 1 / p99, its ratio bounded by distribution-free order statistics of the two points' per-request
  latencies; FAIL on a slowdown that is significant and beyond `max_slowdown`. A new point with errors FAILs,
  except for the errors a client that fell behind can cause itself (timeouts, unsent requests: SKIP). By the upper
  bound above, a client-limited baseline point still supports a FAIL and a client-limited new point a pass; the
  other verdicts (both points client-limited among them) SKIP.
* **saturation rate**: FAIL when the new server saturates below (1 - max_slowdown) x the baseline's *and* its p99 at
  the baseline's saturation rate is significantly above the SLO (the order-statistic lower bound of its p99 there
  exceeds it) -- a rate grid alone cannot tell a slower server from noise at the edge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from harness.analysis.check import CheckResult, p99_result
from harness.analysis.stats import LATENCY_QUANTILE, calls_to_bound, quantile_bound
from harness.encode.load import LoadPoint, error_counts
from harness.input.suite import SpeedGate
from harness.scoring.records import ServingRecord
from harness.vocabulary.errors import HarnessError


def sustained(point: LoadPoint, slo_p99_ms: float) -> bool:
    """p99 within the SLO and no errors, client-limited or not (module docstring: the client's delays only add)."""
    return (point.mode == "open" and not sum(point.errors.values()) and point.latency is not None
            and point.latency.p99 <= slo_p99_ms)


def saturation_rate(points: Sequence[LoadPoint], slo_p99_ms: float) -> float | None:
    """The highest offered rate up to which every offered rate was sustained (see `sustained`); None when the lowest
    was not. A rate sustained above one that was not (a server whose batching pays off only at higher load) is not
    counted: no rate below the claim may have failed it. `resumed_rates` names such rates."""
    ordered, miss = _first_miss(points, slo_p99_ms)
    return ordered[miss - 1].offered_rate if miss else None


def resumed_rates(points: Sequence[LoadPoint], slo_p99_ms: float) -> list[float]:
    """Offered rates sustained above the first one that was not."""
    ordered, miss = _first_miss(points, slo_p99_ms)
    return [p.offered_rate for p in ordered[miss + 1:] if sustained(p, slo_p99_ms) and p.offered_rate is not None]


def resumed_note(points: Sequence[LoadPoint], slo_p99_ms: float) -> str | None:
    """The record's note where p99 came back within the SLO above the first offered rate that missed it."""
    resumed = resumed_rates(points, slo_p99_ms)
    if not resumed:
        return None
    ordered, miss = _first_miss(points, slo_p99_ms)
    failed = ordered[miss]
    if sum(failed.errors.values()):
        why = f"{sum(failed.errors.values())} errors"
    else:
        why = f"p99 {failed.latency.p99 if failed.latency else float('nan'):.1f} ms > {slo_p99_ms:g} ms"
    if failed.client_limited:
        why += "; the client fell behind there"
    return (f"p99 was within the SLO again at {', '.join(f'{r:g}' for r in resumed)} req/s after "
            f"{failed.offered_rate:g} req/s missed it ({why}): the saturation rate stops at the first miss; a "
            "longer --duration tells a real dip from noise")


def _first_miss(points: Sequence[LoadPoint], slo_p99_ms: float) -> tuple[list[LoadPoint], int]:
    """The open-loop points by offered rate, and the index of the first one not sustained (len when none)."""
    ordered = sorted((p for p in points if p.mode == "open" and p.offered_rate is not None),
                     key=lambda p: p.offered_rate or 0.0)
    return ordered, next((i for i, p in enumerate(ordered) if not sustained(p, slo_p99_ms)), len(ordered))


def serving_results(base: ServingRecord, new: ServingRecord, *, gate: SpeedGate,
                    rate: float | None = None) -> list[CheckResult]:
    """The serving gate (module docstring) of `new` against `base`."""
    if (base.workload, base.rows_per_request) != (new.workload, new.rows_per_request):
        raise HarnessError(f"the serving records load their servers differently ({base.workload} x "
                           f"{base.rows_per_request} vs {new.workload} x {new.rows_per_request} texts per request): "
                           "compare records of the same --workload and --batch")
    common: dict[str, Any] = dict(dataset=new.dataset, encoder=new.name, kind="serving",
                                  tolerance=gate.max_slowdown)
    at = rate if rate is not None else base.saturation_rps
    results = []
    if at is None:
        results.append(CheckResult(**common, metric="p99 ms at a fixed rate", status="SKIP",
                                   message=f"the baseline sustained no offered rate within its SLO of "
                                           f"{base.slo_p99_ms:g} ms: give the rate to compare at (--rate)"))
    else:
        results.append(_p99_at(base, new, at, gate, common))
    results.append(_saturation(base, new, gate, common))
    return results


def _p99_at(base: ServingRecord, new: ServingRecord, rate: float, gate: SpeedGate,
            common: dict[str, Any]) -> CheckResult:
    metric = f"p99 ms at {rate:g} req/s"
    old_point, new_point = base.at_rate(rate), new.at_rate(rate)
    missing = [label for label, point in (("baseline", old_point), ("new", new_point)) if point is None]
    if missing:
        def rates(record: ServingRecord) -> set[float]:
            return {p.offered_rate for p in record.open_loop() if p.offered_rate is not None}

        both = sorted(rates(base) & rates(new))
        raise HarnessError(f"the {' and '.join(missing)} serving record has no open-loop point at {rate:g} req/s; "
                           f"rates both have: {', '.join(f'{r:g}' for r in both) or 'none'} (--rate)")
    assert old_point is not None and new_point is not None
    server_errors = new_point.server_errors()
    if server_errors or (new_point.latency is None and not new_point.client_limited):
        return CheckResult(**common, metric=metric, status="FAIL",
                           expected=None if old_point.latency is None else old_point.latency.p99,
                           message=f"the new server failed {sum(server_errors.values())} of {new_point.sent} requests "
                                   f"at {rate:g} req/s ({error_counts(server_errors) or 'none answered'})")
    if new_point.errors or new_point.latency is None:  # the client fell behind, and only client-causable errors left
        return CheckResult(**common, metric=metric, status="SKIP",
                           message=f"the new client could not keep to its schedule at {rate:g} req/s "
                                   f"({new_point.note}) and "
                                   f"{error_counts(new_point.errors) or 'no request was answered'}: the client may "
                                   "have caused those itself; rerun with the client on a quieter host")
    if old_point.latency is None:
        return CheckResult(**common, metric=metric, status="SKIP",
                           message=f"the baseline answered no request at {rate:g} req/s")
    needed = calls_to_bound(LATENCY_QUANTILE, 1.0 - gate.alpha / 2)
    result = p99_result(old_point.latency, new_point.latency, gate, common, metric=metric, calls="request",
                        baseline="the baseline server",
                        rerun=f"harness load --duration {math.ceil(1.2 * needed / rate)}s or more at {rate:g} req/s")
    # A client-limited point's p99 bounds its server's from above: the baseline's still supports a FAIL, the new's
    # a pass; the verdict that rests on the bound's wrong side does not stand.
    label, point = ("new", new_point) if result.status == "FAIL" else ("baseline", old_point)
    if result.status == "SKIP" or not point.client_limited:
        return result
    return replace(result, status="SKIP",
                   message=f"{result.message}; but the {label} client could not keep to its schedule ({point.note}): "
                           "its p99 bounds the server's only from above, so this verdict does not stand")


def _saturation(base: ServingRecord, new: ServingRecord, gate: SpeedGate, common: dict[str, Any]) -> CheckResult:
    metric = "saturation req/s"
    old, current = base.saturation_rps, new.saturation_rps
    if old is None:
        return CheckResult(**common, metric=metric, status="SKIP", actual=current,
                           message="the baseline sustained no offered rate within its SLO")
    ratio = (current or 0.0) / old
    if ratio >= 1:
        return CheckResult(**common, metric=metric, status="OK", expected=old, actual=current, delta=ratio - 1,
                           message=f"saturates at {current:g} req/s, the baseline at {old:g}")
    point = new.at_rate(old)
    bound = None
    if point is not None and point.latency is not None:
        bound = quantile_bound(point.latency.values_ms, LATENCY_QUANTILE, 1 - gate.alpha, "lower")
    errors = point is not None and sum(point.errors.values()) > 0
    above_slo = bound is not None and bound > base.slo_p99_ms
    shown = f"{current:g}" if current is not None else "no rate"
    if ratio < 1 - gate.max_slowdown and (errors or above_slo):
        assert point is not None
        server_errors = point.server_errors()
        if point.client_limited and not server_errors:
            left = f" and {error_counts(point.errors)} (the client may have caused those itself)" if errors else ""
            return CheckResult(**common, metric=metric, status="SKIP", expected=old, actual=current,
                               delta=ratio - 1, bound=bound,
                               message=f"saturates at {shown} req/s against {old:g}, but at {old:g} req/s the new "
                                       f"client could not keep to its schedule ({point.note}){left}: its p99 there "
                                       "bounds the server's only from above")
        if above_slo and not point.client_limited:
            why = (f"its p99 there is significantly above the SLO ({1 - gate.alpha:.0%} lower bound {bound:.1f} ms > "
                   f"{base.slo_p99_ms:g} ms)")
        else:
            why = f"it fails requests there ({error_counts(server_errors)})"
        return CheckResult(**common, metric=metric, status="FAIL", expected=old, actual=current, delta=ratio - 1,
                           bound=bound, message=f"saturates at {shown} req/s against the baseline's {old:g}; at "
                                                f"{old:g} req/s {why}")
    if point is None:
        return CheckResult(**common, metric=metric, status="SKIP", expected=old, actual=current, delta=ratio - 1,
                           message=f"saturates at {shown} req/s against {old:g}, but the new record has no point at "
                                   f"{old:g} req/s to test it: load both with the same --rates")
    return CheckResult(**common, metric=metric, status="OK-within-tolerance", expected=old, actual=current,
                       delta=ratio - 1, bound=bound,
                       message=f"saturates at {shown} req/s against {old:g}: not significantly beyond the SLO at "
                               f"{old:g} req/s (or within {gate.max_slowdown:.0%})")
