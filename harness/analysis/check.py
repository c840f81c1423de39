"""Check run records against what a suite declares: expected scores and a baseline (``harness check``).

Outcomes, per check (Pyserini's two-click reproductions use the first three):

* ``OK``: the expected score is met (equal within 5e-5, i.e. to the 4 printed decimals, or the
  tolerance if smaller); no drop against the baseline; a speed floor is met.
* ``OK-within-tolerance``: within the declared tolerance; or a drop against the baseline that is
  not both larger than ``max_drop`` and significant.
* ``FAIL``: outside the tolerance; a drop larger than ``max_drop`` that is significant at ``alpha``
  (Holm-adjusted over every baseline comparison of the check); a speed floor missed.
* ``SKIP``: a speed floor that cannot be judged (different hardware, no figure).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree as ET

from harness.analysis.compare import (
    LoadedRun,
    MetricComparison,
    compare_pairs,
    compare_speed,
    fmt_p,
    label_runs,
    load_runs,
    text_table,
)
from harness.errors import HarnessError
from harness.analysis.stats import holm
from harness.suite import EncoderSpec, Expectation, Suite

Status = Literal["OK", "OK-within-tolerance", "FAIL", "SKIP"]
EXACT = 5e-5  # half a unit in the 4th decimal: "the same number" in every table we print


@dataclass(frozen=True)
class CheckResult:
    dataset: str
    encoder: str
    kind: Literal["expect", "baseline", "speed"]
    metric: str
    status: Status
    expected: float | None = None
    actual: float | None = None
    delta: float | None = None
    tolerance: float | None = None
    p_value: float | None = None
    message: str = ""

    @property
    def name(self) -> str:
        return f"{self.dataset} / {self.encoder} / {self.kind} {self.metric}"


@dataclass(frozen=True)
class CheckReport:
    suite: str
    results: list[CheckResult]
    records: dict[str, str]  # "dataset / encoder" -> record directory

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "FAIL"]

    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.results) for s in ("OK", "OK-within-tolerance", "FAIL", "SKIP")}

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "passed": not self.failed, "counts": self.counts(), "records": self.records,
                "results": [asdict(r) for r in self.results]}

    def to_table(self) -> str:
        def num(x: float | None, fmt: str = ".4f") -> str:
            return "-" if x is None else format(x, fmt)

        rows = [[r.status, r.dataset, r.encoder, r.kind, r.metric, num(r.expected), num(r.actual),
                 num(r.delta, "+.4f"), num(r.tolerance), "-" if r.p_value is None else fmt_p(r.p_value), r.message]
                for r in self.results]
        table = text_table(["status", "dataset", "encoder", "check", "metric", "expected", "actual", "delta",
                            "tolerance", "p", "note"], rows)
        counts = ", ".join(f"{n} {s}" for s, n in self.counts().items())
        return f"{table}\n\n{self.suite}: {'FAILED' if self.failed else 'passed'} ({counts})"

    def _repr_markdown_(self) -> str:  # Jupyter: the table is Markdown already
        return self.to_table()

    def to_junit(self) -> str:
        """JUnit XML: one testcase per check, FAIL as <failure>, SKIP as <skipped>."""
        counts = self.counts()
        suite = ET.Element("testsuite", name=f"harness check {self.suite}", tests=str(len(self.results)),
                           failures=str(counts["FAIL"]), skipped=str(counts["SKIP"]), errors="0")
        for r in self.results:
            case = ET.SubElement(suite, "testcase", classname=f"{self.suite}.{r.dataset}.{r.encoder}",
                                 name=f"{r.kind} {r.metric}")
            detail = describe(r)
            if r.status == "FAIL":
                ET.SubElement(case, "failure", message=detail, type="regression").text = detail
            elif r.status == "SKIP":
                ET.SubElement(case, "skipped", message=detail)
            else:
                ET.SubElement(case, "system-out").text = f"{r.status}: {detail}"
        root = ET.Element("testsuites")
        root.append(suite)
        ET.indent(root)
        return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def describe(r: CheckResult) -> str:
    parts = [f"{k} {v:.4f}" for k, v in (("expected", r.expected), ("actual", r.actual)) if v is not None]
    if r.delta is not None:
        parts.append(f"delta {r.delta:+.4f}")
    if r.tolerance is not None:
        parts.append(f"tolerance {r.tolerance:.4f}")
    if r.p_value is not None:
        parts.append(f"p {fmt_p(r.p_value)}")
    return ", ".join(parts) + (f" ({r.message})" if r.message else "")


def check_expectation(expected: Expectation, actual: float) -> tuple[Status, float]:
    """Pure: the outcome of one expected score, and the delta actual - expected."""
    delta = actual - expected.value
    slack = 1e-12 * max(1.0, abs(expected.value))  # float noise of the subtraction itself
    if abs(delta) <= min(EXACT, expected.tolerance) + slack:
        return "OK", delta
    if abs(delta) <= expected.tolerance + slack:
        return "OK-within-tolerance", delta
    return "FAIL", delta


def pick_record(runs: Sequence[LoadedRun], *, dataset: str, encoder: str, suite: str | None = None,
                ) -> LoadedRun | None:
    """The newest record of dataset x encoder, preferring records of the named suite."""
    found = [r for r in runs if r.dataset == dataset and r.encoder == encoder]
    same_suite = [r for r in found if r.record.suite.get("name") == suite]
    candidates = same_suite or found
    return max(candidates, key=lambda r: r.record.created_at) if candidates else None


def select_records(suite: Suite, runs: Sequence[LoadedRun], where: str) -> dict[tuple[str, str], LoadedRun]:
    """One record per dataset x encoder of the suite; a missing one is an input error."""
    chosen = {}
    for encoder in suite.encoders:
        for dataset in suite.datasets:
            run = pick_record(runs, dataset=dataset.name, encoder=encoder.name, suite=suite.name)
            if run is None:
                raise HarnessError(f"{where}: no record of dataset {dataset.name!r} x encoder {encoder.name!r}; "
                                   f"run `harness run {suite.source or 'SUITE'}` first or drop --results")
            if run.record.encoder.get("model") != encoder.model:
                raise HarnessError(f"{run.path}: record of model {run.record.encoder.get('model')!r}, but the suite's "
                                   f"encoder {encoder.name!r} is {encoder.model!r}")
            chosen[(dataset.name, encoder.name)] = run
    return chosen


def check_suite(suite: Suite, records: dict[tuple[str, str], LoadedRun], *, seed: int = 0,
                n_resamples: int = 10_000) -> CheckReport:
    results: list[CheckResult] = []
    for encoder in suite.encoders:
        for dataset, metrics in (encoder.expect or {}).items():
            run = records[(dataset, encoder.name)]
            for metric, expected in metrics.items():
                if metric not in run.record.metrics:
                    raise HarnessError(f"{run.path}: the record has no {metric} (it has "
                                       f"{', '.join(run.record.metrics)}); rerun with this suite")
                actual = run.record.metrics[metric]
                status, delta = check_expectation(expected, actual)
                results.append(CheckResult(dataset, encoder.name, "expect", metric, status, expected.value, actual,
                                           delta, expected.tolerance))
    results += check_baselines(suite, records, seed=seed, n_resamples=n_resamples)
    return CheckReport(suite.name, results, {f"{d} / {e}": str(r.path) for (d, e), r in records.items()})


def check_baselines(suite: Suite, records: dict[tuple[str, str], LoadedRun], *, seed: int,
                    n_resamples: int) -> list[CheckResult]:
    pairs: list[tuple[LoadedRun, LoadedRun, EncoderSpec]] = []
    for encoder in suite.encoders:
        if encoder.baseline is None:
            continue
        baseline_runs = load_runs([encoder.baseline.records])
        for dataset in suite.datasets:
            wanted = encoder.baseline.encoder or encoder.name
            base = pick_record(baseline_runs, dataset=dataset.name, encoder=wanted, suite=suite.name)
            if base is None:
                raise HarnessError(f"{encoder.baseline.records}: no baseline record of dataset {dataset.name!r} x "
                                   f"encoder {wanted!r} (set baseline.encoder if it ran under another name)")
            current = records[(dataset.name, encoder.name)]
            base, current = label_runs([base, current])  # the same encoder name twice: labels must differ
            pairs.append((base, current, encoder))
    # Paired statistics per pair and metric; Holm then adjusts across every baseline comparison of the check.
    compared: list[tuple[LoadedRun, LoadedRun, EncoderSpec, MetricComparison]] = []
    for base, current, encoder in pairs:
        spec = encoder.baseline
        assert spec is not None
        metrics = spec.metrics or [m for m in suite.metrics if m in base.per_query]
        comparison = compare_pairs([(base, current)], metrics=metrics, seed=seed, n_resamples=n_resamples)
        compared += [(base, current, encoder, m) for m in comparison.metrics]
    adjusted = holm([m.p(e.baseline.test) for _, _, e, m in compared if e.baseline])
    results = []
    for (base, current, encoder, m), p_holm in zip(compared, adjusted):
        spec = encoder.baseline
        assert spec is not None
        results.append(baseline_result(m.stats.control_mean, m.stats.treatment_mean, p_holm, max_drop=spec.max_drop,
                                       alpha=spec.alpha, dataset=base.dataset, encoder=encoder.name,
                                       metric=m.metric, test=spec.test))
    for base, current, encoder in pairs:
        if encoder.baseline and encoder.baseline.min_passages_per_s is not None:
            results.append(speed_result(base, current, encoder.baseline.min_passages_per_s, encoder.name))
    return results


def baseline_result(baseline: float, actual: float, p_holm: float, *, max_drop: float, alpha: float, dataset: str,
                    encoder: str, metric: str, test: str) -> CheckResult:
    """Pure: FAIL only for a drop that is both larger than max_drop and significant at alpha."""
    delta = actual - baseline
    significant = p_holm < alpha
    if delta < -max_drop and significant:
        status: Status = "FAIL"
        note = f"significant drop ({test}, Holm) larger than max_drop"
    elif delta < 0:
        status = "OK-within-tolerance"
        note = "drop within max_drop" if delta >= -max_drop else f"drop not significant at alpha {alpha}"
    else:
        status, note = "OK", "no drop"
    return CheckResult(dataset, encoder, "baseline", metric, status, baseline, actual, delta, max_drop, p_holm,
                       note)


def speed_result(base: LoadedRun, current: LoadedRun, floor: float, encoder: str) -> CheckResult:
    speed = compare_speed(base, current)
    name = "passages_per_s"
    expected = base.record.performance.get(name)
    actual = current.record.performance.get(name)
    common = dict(dataset=base.dataset, encoder=encoder, kind="speed", metric="passages/s", tolerance=floor)
    if not speed.comparable:
        return CheckResult(**common, status="SKIP", expected=expected, actual=actual,
                           message=f"not comparable: {speed.reason}")
    ratio = speed.ratio(name)
    if ratio is None or not math.isfinite(ratio):
        return CheckResult(**common, status="SKIP", message="no passages/s figure in a record")
    status: Status = "OK" if ratio >= floor else "FAIL"
    cached = " (corpus embeddings came from the cache: the figure is the run that encoded them)" \
        if current.record.performance.get("corpus_from_cache") else ""
    return CheckResult(**common, status=status, expected=expected, actual=actual,
                       message=f"{ratio:.2f}x the baseline's passages/s; floor {floor:.2f}x{cached}")


def write_outputs(report: CheckReport, *, json_path: Path | None, junit_path: Path | None) -> None:
    for path, text in ((json_path, lambda: json.dumps(report.to_dict(), indent=1) + "\n"),
                       (junit_path, report.to_junit)):
        if path is None:
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text(), encoding="utf-8")
        except OSError as exc:
            raise HarnessError(f"{path}: cannot write ({exc.strerror})") from None
