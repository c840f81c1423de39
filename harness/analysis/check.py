"""Check run records against what a suite declares: expected scores and a baseline (``harness check``).

Outcomes, per check (Pyserini's two-click reproductions use the first three):

* ``OK``: the expected score is met (equal within 5e-5, i.e. to the 4 printed decimals, or the
  tolerance if smaller); no drop against the baseline; non-inferiority shown; no slowdown.
* ``OK-within-tolerance``: within the declared tolerance; or a drop against the baseline that is
  not both larger than ``max_drop`` and significant; or a slowdown that is not both significant and
  beyond ``max_slowdown``.
* ``FAIL``: outside the tolerance; a drop larger than ``max_drop`` that is significant at ``alpha``
  (Holm-adjusted over every baseline comparison of the check); non-inferiority not shown (the lower
  bound of Δ is at or below -margin); a slowdown beyond ``max_slowdown`` that is significant.
* ``SKIP``: a speed check that cannot be judged: different hardware, a corpus read from the embedding
  cache (its passages/s is an older run's), or a record without raw timings.

Non-inferiority needs no multiplicity correction: the gate passes only if *every* metric x dataset
shows it (an intersection-union test), so the chance of a false pass stays at most alpha.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree as ET

from harness.analysis.compare import MetricComparison, aligned, compare_pairs, compare_speed
from harness.analysis.query_changes import QueryChanges, query_changes
from harness.analysis.stats import (
    LATENCY_QUANTILE,
    SpeedRatio,
    Test,
    calls_to_bound,
    holm,
    latency_speed_ratio,
    noninferiority,
    throughput_ratio,
)
from harness.input.suite import EncoderSpec, Expectation, NonInferiorityMargin, SpeedGate, Suite
from harness.scoring.records import Performance
from harness.scoring.scored import ScoredRun, label_runs, load_scored_runs
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.files import write_file
from harness.vocabulary.statistics import DEFAULT_STATS, StatsOptions
from harness.vocabulary.tables import fmt_p, html_table, markdown_table, md_escape, text_table
from harness.vocabulary.timing import Latency

Status = Literal["OK", "OK-within-tolerance", "FAIL", "SKIP"]
SUMMARY_QUERIES = 3  # queries listed per failed quality gate in the pull-request summary
SUMMARY_HEADERS = ("status", "dataset", "encoder", "check", "expected", "actual", "delta", "tolerance", "bound", "p")
EXACT = 5e-5  # half a unit in the 4th decimal: "the same number" in every table we print


@dataclass(frozen=True)
class CheckResult:
    dataset: str
    encoder: str
    kind: Literal["expect", "baseline", "noninferior", "speed", "serving"]
    metric: str
    status: Status
    expected: float | None = None
    actual: float | None = None
    delta: float | None = None
    tolerance: float | None = None
    p_value: float | None = None
    message: str = ""
    # speed checks: delta is the relative change in speed (new / baseline - 1; for latency speed = 1 / p99)
    bound: float | None = None  # the confidence bound a verdict rests on: lower bound of Δ (noninferior),
    #                             upper bound of the speed ratio new / baseline (speed)

    @property
    def name(self) -> str:
        return f"{self.dataset} / {self.encoder} / {self.kind} {self.metric}"


@dataclass(frozen=True)
class CheckReport:
    suite: str
    results: list[CheckResult]
    records: dict[str, str]  # "dataset / encoder" -> record directory
    regressed: list[QueryChanges] = field(default_factory=list)  # per failed quality gate: the queries lost most
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "FAIL"]

    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.results) for s in ("OK", "OK-within-tolerance", "FAIL", "SKIP")}

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "passed": not self.failed, "counts": self.counts(), "records": self.records,
                "results": [asdict(r) for r in self.results]}

    TABLE_HEADERS = ("status", "dataset", "encoder", "check", "metric", "expected", "actual", "delta", "tolerance",
                     "bound", "p", "note")

    def table_rows(self) -> list[list[str]]:
        def num(x: float | None, fmt: str = ".4f") -> str:
            return "-" if x is None else format(x, fmt)

        return [[r.status, r.dataset, r.encoder, r.kind, r.metric, num(r.expected), num(r.actual),
                 num(r.delta, "+.4f"), num(r.tolerance), num(r.bound, "+.4f" if r.kind == "noninferior" else ".4f"),
                 "-" if r.p_value is None else fmt_p(r.p_value), r.message]
                for r in self.results]

    def verdict(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in self.counts().items())
        return f"{self.suite}: {'FAILED' if self.failed else 'passed'} ({counts})"

    def to_table(self) -> str:
        return f"{text_table(self.TABLE_HEADERS, self.table_rows())}\n\n{self.verdict()}"

    def _repr_markdown_(self) -> str:
        return f"**{md_escape(self.verdict())}**\n\n{markdown_table(self.TABLE_HEADERS, self.table_rows())}"

    def _repr_html_(self) -> str:
        return (f"<p><strong>{html.escape(self.verdict())}</strong></p>"
                f"{html_table(self.TABLE_HEADERS, self.table_rows())}")

    def to_summary(self, *, report: str | None = None) -> str:
        """GitHub-flavoured Markdown for a pull-request comment or $GITHUB_STEP_SUMMARY: the verdict, a table of
        every check, the failing gates with their numbers, the queries each failed quality gate lost most, and where
        the full report is (``report``: a link or path) and which records were checked."""
        mark = ":x:" if self.failed else ":white_check_mark:"
        lines = [f"### {mark} {md_escape(self.verdict())}", "",
                 markdown_table(SUMMARY_HEADERS, [[r.status, r.dataset, r.encoder, f"{r.kind} {r.metric}",
                                                   *row[5:11]] for r, row in zip(self.results, self.table_rows())])]
        if self.failed:
            lines += ["", "**Failing gates**", ""]
            lines += [f"- {md_escape(r.name)}: {md_escape(describe(r))}" for r in self.failed]
        for changes in self.regressed:
            lines += ["", f"<details><summary>{md_escape(changes.title)}: the {len(changes.losses)} queries lost "
                          "most</summary>", "", *changes.markdown_list(changes.losses), "", "</details>"]
        lines += [""] + [f"_{md_escape(n)}_" for n in self.notes]
        if report:
            link = report.startswith(("http://", "https://")) and not any(c in report for c in " <>()[]")
            lines.append(f"Full report: {f'[{md_escape(report)}]({report})' if link else md_escape(report)}")
        lines.append("Records: " + ", ".join(md_escape(where) for where in dict.fromkeys(self.records.values())))
        return "\n".join(lines).strip() + "\n"

    def to_junit(self) -> str:
        """JUnit XML: one testcase per check, FAIL as <failure>, SKIP as <skipped>."""
        counts = self.counts()
        suite = ET.Element("testsuite", name=_xml(f"harness check {self.suite}"), tests=str(len(self.results)),
                           failures=str(counts["FAIL"]), skipped=str(counts["SKIP"]), errors="0")
        for r in self.results:
            case = ET.SubElement(suite, "testcase", classname=_xml(f"{self.suite}.{r.dataset}.{r.encoder}"),
                                 name=_xml(f"{r.kind} {r.metric}"))
            detail = _xml(describe(r))
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


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    """Text for the JUnit XML: ElementTree escapes ``<``, ``&`` and quotes but writes characters that XML 1.0
    forbids (control characters such as ESC) as they are, which leaves a file no CI can parse; they become U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


def describe(r: CheckResult) -> str:
    parts = [f"{k} {v:.4f}" for k, v in (("expected", r.expected), ("actual", r.actual)) if v is not None]
    if r.delta is not None:
        parts.append(f"delta {r.delta:+.4f}")
    if r.tolerance is not None:
        parts.append(f"tolerance {r.tolerance:.4f}")
    if r.bound is not None:
        parts.append(f"bound {r.bound:+.4f}")
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


def pick_record(runs: Sequence[ScoredRun], *, dataset: str, encoder: str, suite: str | None = None,
                ) -> ScoredRun | None:
    """The newest record of dataset x encoder, preferring records of the named suite."""
    found = [r for r in runs if r.dataset == dataset and r.encoder == encoder]
    same_suite = [r for r in found if r.record.suite.name == suite]
    candidates = same_suite or found
    return max(candidates, key=lambda r: r.record.created_at) if candidates else None


def select_records(suite: Suite, runs: Sequence[ScoredRun], where: str) -> dict[tuple[str, str], ScoredRun]:
    """One record per dataset x encoder of the suite; a missing one is an input error."""
    chosen = {}
    for encoder in suite.encoders:
        for dataset in suite.datasets:
            run = pick_record(runs, dataset=dataset.name, encoder=encoder.name, suite=suite.name)
            if run is None:
                raise HarnessError(f"{where}: no record of dataset {dataset.name!r} x encoder {encoder.name!r}; "
                                   f"run `harness run {suite.source or 'SUITE'}` first or drop --results")
            # an external run has no model to check; it stands in for the suite's encoder by name
            if run.record.encoder is not None and run.record.encoder.model != encoder.model:
                raise HarnessError(f"{run.where}: record of model {run.record.encoder.model!r}, but the suite's "
                                   f"encoder {encoder.name!r} is {encoder.model!r}")
            chosen[(dataset.name, encoder.name)] = run
    return chosen


def check_suite(suite: Suite, records: dict[tuple[str, str], ScoredRun], *,
                stats: StatsOptions = DEFAULT_STATS) -> CheckReport:
    """Every expectation and baseline of the suite on ``records``. ``stats`` gives the seed and resamples; the
    alpha and test of each baseline comparison are its encoder's ``baseline`` block's."""
    results: list[CheckResult] = []
    for encoder in suite.encoders:
        for dataset, metrics in (encoder.expect or {}).items():
            run = records[(dataset, encoder.name)]
            for metric, expected in metrics.items():
                if metric not in run.record.metrics:
                    raise HarnessError(f"{run.where}: the record has no {metric} (it has "
                                       f"{', '.join(run.record.metrics)}); rerun with this suite")
                actual = run.record.metrics[metric]
                status, delta = check_expectation(expected, actual)
                results.append(CheckResult(dataset, encoder.name, "expect", metric, status, expected.value, actual,
                                           delta, expected.tolerance))
    pairs = baseline_pairs(suite, records)
    results += check_baselines(pairs, suite_metrics=suite.metrics, stats=stats)
    regressed, notes = regressed_queries(results, pairs)
    return CheckReport(suite.name, results, {f"{d} / {e}": r.where for (d, e), r in records.items()}, regressed,
                       notes)


def regressed_queries(results: Sequence[CheckResult], pairs: Sequence[BaselinePair], n: int = SUMMARY_QUERIES,
                      ) -> tuple[list[QueryChanges], list[str]]:
    """For each failed quality gate (baseline, noninferior), the queries that lost most against the baseline; a
    note instead where their texts cannot be read (the data set moved)."""
    found: list[QueryChanges] = []
    notes: list[str] = []
    for r in results:
        if r.status != "FAIL" or r.kind not in ("baseline", "noninferior"):
            continue
        pair = next(((b, c) for b, c, e in pairs if b.dataset == r.dataset and e.name == r.encoder), None)
        if pair is None or any(q.dataset == r.dataset and q.treatment == pair[1].label and q.metric == r.metric
                               for q in found):
            continue
        try:
            found.append(query_changes(*pair, metric=r.metric, n=n))
        except HarnessError as exc:
            notes.append(f"{r.dataset} / {r.encoder}: the regressed queries cannot be listed: {exc}")
    return found, notes


BaselinePair = tuple[ScoredRun, ScoredRun, EncoderSpec]  # (baseline record, new record, the encoder)


def baseline_pairs(suite: Suite, records: dict[tuple[str, str], ScoredRun]) -> list[BaselinePair]:
    """Each encoder with a baseline, per dataset: its baseline record and the record checked against it."""
    pairs: list[BaselinePair] = []
    for encoder in suite.encoders:
        if encoder.baseline is None:
            continue
        baseline_runs = load_scored_runs([encoder.baseline.records])
        for dataset in suite.datasets:
            wanted = encoder.baseline.encoder or encoder.name
            base = pick_record(baseline_runs, dataset=dataset.name, encoder=wanted, suite=suite.name)
            if base is None:
                raise HarnessError(f"{encoder.baseline.records}: no baseline record of dataset {dataset.name!r} x "
                                   f"encoder {wanted!r} (set baseline.encoder if it ran under another name)")
            current = records[(dataset.name, encoder.name)]
            base, current = label_runs([base, current])  # the same encoder name twice: labels must differ
            pairs.append((base, current, encoder))
    return pairs


def check_baselines(pairs: Sequence[BaselinePair], *, suite_metrics: Sequence[str],
                    stats: StatsOptions) -> list[CheckResult]:
    # Paired statistics per pair and metric; Holm then adjusts across every baseline comparison of the check.
    compared: list[tuple[ScoredRun, ScoredRun, EncoderSpec, MetricComparison]] = []
    for base, current, encoder in pairs:
        spec = encoder.baseline
        assert spec is not None
        metrics = spec.metrics or [m for m in suite_metrics if m in base.per_query]
        comparison = compare_pairs([(base, current)], metrics=metrics,
                                   stats=replace(stats, alpha=spec.alpha, test=spec.test))
        compared += [(base, current, encoder, m) for m in comparison.metrics]
    adjusted = holm([m.stats.p(e.baseline.test) for _, _, e, m in compared if e.baseline])
    results = []
    for (base, _current, encoder, m), p_holm in zip(compared, adjusted):
        spec = encoder.baseline
        assert spec is not None
        results.append(baseline_result(m.stats.control_mean, m.stats.treatment_mean, p_holm, max_drop=spec.max_drop,
                                       alpha=spec.alpha, dataset=base.dataset, encoder=encoder.name,
                                       metric=m.metric, test=spec.test))
    for base, current, encoder in pairs:
        spec = encoder.baseline
        assert spec is not None
        for metric, margin in (spec.noninferior or {}).items():
            results.append(noninferior_result(base, current, metric, margin, alpha=spec.alpha, encoder=encoder.name))
        if spec.speed is not None:
            results += speed_results(base, current, spec.speed, encoder=encoder.name, stats=stats)
    return results


def baseline_result(baseline: float, actual: float, p_holm: float, *, max_drop: float, alpha: float, dataset: str,
                    encoder: str, metric: str, test: Test) -> CheckResult:
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


def noninferior_result(base: ScoredRun, current: ScoredRun, metric: str, margin: NonInferiorityMargin, *,
                       alpha: float, encoder: str) -> CheckResult:
    """PASS (OK) only when the one-sided lower confidence bound of mean(new - baseline) is above -margin."""
    if metric not in base.per_query or metric not in current.per_query:
        raise HarnessError(f"{current.where if metric not in current.per_query else base.where}: no per-query "
                           f"{metric}, which baseline.noninferior names; rerun with this suite")
    c, t = aligned(base, current, metric)
    result = noninferiority(c, t, margin=margin.margin, alpha=alpha)
    level = f"{1 - alpha:.0%} lower bound of Δ"
    if result.noninferior:
        status: Status = "OK"
        note = f"non-inferior: {level} {result.lower:+.4f} > -{margin.margin:g} (one-sided paired t, n={result.n})"
    else:
        status = "FAIL"
        note = (f"non-inferiority not shown: {level} {result.lower:+.4f} <= -{margin.margin:g} "
                f"(one-sided paired t, n={result.n})")
    return CheckResult(base.dataset, encoder, "noninferior", metric, status, sum(c) / len(c), sum(t) / len(t),
                       result.delta, margin.margin, result.p_value, note, bound=result.lower)


def encode_timings(performance: Performance) -> tuple[list[int], list[float]]:
    """The corpus encode timing samples of a record, (rows, seconds): the timed pieces within each store chunk
    when every chunk has them, else one sample per chunk; empty for records written before they were kept."""
    chunks = performance.corpus_chunk_seconds
    if chunks and all(c.pieces for c in chunks):
        pieces = [p for c in chunks for p in c.pieces]
        return [p.rows for p in pieces], [p.seconds for p in pieces]
    return [c.rows for c in chunks], [c.seconds for c in chunks]


def speed_verdict(ratio: SpeedRatio, gate: SpeedGate) -> tuple[Status, str]:
    """Pure: FAIL only for a slowdown that is significant and beyond the margin (upper bound < 1 - margin)."""
    bound = f"{1 - gate.alpha:.0%} upper bound {ratio.upper:.2f}x"
    if ratio.slower_than(gate.max_slowdown):
        return "FAIL", f"{ratio.ratio:.2f}x the baseline: slower than {1 - gate.max_slowdown:.2f}x ({bound})"
    if ratio.ratio < 1:
        return "OK-within-tolerance", (f"{ratio.ratio:.2f}x the baseline: not significantly slower than "
                                       f"{1 - gate.max_slowdown:.2f}x ({bound})")
    return "OK", f"{ratio.ratio:.2f}x the baseline: no slowdown"


def speed_results(base: ScoredRun, current: ScoredRun, gate: SpeedGate, *, encoder: str,
                  stats: StatsOptions = DEFAULT_STATS) -> list[CheckResult]:
    """Throughput and query p99 latency against the baseline on the same hardware (see ``SpeedGate``)."""
    old, new = base.record.performance, current.record.performance
    common: dict[str, Any] = dict(dataset=base.dataset, encoder=encoder, kind="speed", tolerance=gate.max_slowdown)
    if old is None or new is None:
        external = " and ".join(f"{label} record ({run.label})" for label, run in (("baseline", base), ("new", current))
                                if run.record.performance is None)
        return [CheckResult(**common, metric=m, status="SKIP", expected=None, actual=None,
                            message=f"no speed figures: the {external} is an external run (harness evaluate), "
                                    "which timed nothing") for m in ("passages/s", "query p99 ms")]
    speed = compare_speed(base, current)
    figures = [("passages/s", old.throughput.passages_per_s, new.throughput.passages_per_s),
               ("query p99 ms", old.query_latency.p99, new.query_latency.p99)]
    if not speed.comparable:
        return [CheckResult(**common, metric=m, status="SKIP", expected=e, actual=a,
                            message=f"not comparable: {speed.reason}") for m, e, a in figures]
    results = []
    (_, old_pps, new_pps), (_, old_p99, new_p99) = figures
    old_t, new_t = encode_timings(old), encode_timings(new)
    cached = [label for label, perf in (("baseline", old), ("new", new)) if perf.corpus_from_cache]
    untimed = [label for label, samples in (("baseline", old_t), ("new", new_t)) if not samples[0]]
    skip = ""
    if cached:
        skip = (f"corpus embeddings of the {' and '.join(cached)} record{'s' if len(cached) > 1 else ''} came from "
                "the embedding cache: passages/s is the figure of the run that encoded them; rerun with a fresh "
                "cache to measure it")
    elif untimed:
        skip = (f"no raw encode times in the {' and '.join(untimed)} record{'s' if len(untimed) > 1 else ''} "
                "(written before records kept them); rerun to gate throughput")
    if skip:
        results.append(CheckResult(**common, metric="passages/s", status="SKIP", expected=old_pps, actual=new_pps,
                                   message=skip))
    else:
        ratio = throughput_ratio(*old_t, *new_t, alpha=gate.alpha, n_resamples=stats.n_resamples, seed=stats.seed)
        status, note = speed_verdict(ratio, gate)
        message = f"{note}; {ratio.n_control} vs {ratio.n_treatment} timed pieces"
        results.append(CheckResult(**common, metric="passages/s", status=status, expected=old_pps, actual=new_pps,
                                   delta=ratio.ratio - 1, bound=ratio.upper, message=message))
    results.append(p99_result(old.query_latency, new.query_latency, gate, common, metric="query p99 ms",
                              calls="query", baseline="the baseline"))
    return results + search_latency_results(base, current, gate, common)


def p99_result(old: Latency, new: Latency, gate: SpeedGate, common: dict[str, Any], *, metric: str, calls: str,
               baseline: str, rerun: str = "harness run --latency-calls {n}") -> CheckResult:
    """The p99 speed gate on two sets of per-call latencies (order-statistic bounds): SKIP when ``baseline``'s calls
    are too few to bound its p99 at the gate's alpha, else the verdict of ``speed_verdict``."""
    ratio = latency_speed_ratio(old.values_ms, new.values_ms, alpha=gate.alpha)
    if math.isinf(ratio.upper):
        needed = calls_to_bound(LATENCY_QUANTILE, 1.0 - gate.alpha / 2)
        message = (f"{baseline}'s {ratio.n_control} timed {calls} calls cannot bound its p99 at alpha {gate.alpha}: "
                   f"rerun {baseline} with at least {needed} ({rerun.format(n=needed)})")
        return CheckResult(**common, metric=metric, status="SKIP", expected=old.p99, actual=new.p99,
                           delta=ratio.ratio - 1, message=message)
    status, note = speed_verdict(ratio, gate)
    against = "" if baseline == "the baseline" else f" against {baseline}"
    message = f"{note}{against} (speed = 1 / p99 latency); {ratio.n_control} vs {ratio.n_treatment} calls"
    return CheckResult(**common, metric=metric, status=status, expected=old.p99, actual=new.p99,
                       delta=ratio.ratio - 1, bound=ratio.upper, message=message)


def search_latency_results(base: ScoredRun, current: ScoredRun, gate: SpeedGate, common: dict[str, Any],
                           ) -> list[CheckResult]:
    """Batch-1 search p99 where a record searched through an index: against the baseline index's, or, for an exact
    baseline, against the exact search that the new record's run timed on the same embeddings and hardware."""
    old_index, new_index = base.record.index, current.record.index
    if new_index is None and old_index is None:
        return []
    metric = "search p99 ms"
    if new_index is None:
        assert old_index is not None
        return [CheckResult(**common, metric=metric, status="SKIP", expected=old_index.search_latency.p99,
                            actual=None, message="the new record searched exactly: its batch-1 search was not timed")]
    old: Latency | None
    if old_index is not None:
        old, baseline = old_index.search_latency, "the baseline"
    else:
        old, baseline = new_index.exact.search_latency, "the new record's exact search"
    if old is None:
        return [CheckResult(**common, metric=metric, status="SKIP", expected=None, actual=new_index.search_latency.p99,
                            message="no batch-1 exact search latency (the corpus is too large to time it per query)")]
    return [p99_result(old, new_index.search_latency, gate, common, metric=metric, calls="search",
                       baseline=baseline)]


def write_outputs(report: CheckReport, *, json_path: Path | None, junit_path: Path | None,
                  summary_path: Path | None = None, report_link: str | None = None) -> None:
    if summary_path is not None:
        text = report.to_summary(report=report_link)
        if os.environ.get("GITHUB_STEP_SUMMARY") and Path(os.environ["GITHUB_STEP_SUMMARY"]) == summary_path:
            try:  # GitHub's step summary collects what every step appends
                with summary_path.open("a", encoding="utf-8") as f:
                    f.write(text)
            except OSError as exc:
                raise HarnessError(f"{summary_path}: cannot append the check summary ({exc.strerror})") from None
        else:
            write_file(summary_path, text, what="the check summary")
    if json_path is not None:
        write_file(json_path, json.dumps(report.to_dict(), indent=1) + "\n", what="the check summary")
    if junit_path is not None:
        write_file(junit_path, report.to_junit(), what="the JUnit XML")
