"""The report as a list of blocks (headings, paragraphs, tables, figures), rendered to Markdown and HTML."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

from harness.analysis.compare import fmt_p, speed_figures
from harness.profile.timing import hardware_key
from harness.records import utc_now
from harness.report.data import ReportData
from harness.report.figures import FigureFile

UP, DOWN = "▲", "▼"


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Para:
    text: str
    style: Literal["plain", "note"] = "plain"


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]


Block = Union[Heading, Para, Table, FigureFile]


def build_document(data: ReportData, figures: list[FigureFile]) -> list[Block]:
    blocks: list[Block] = [Heading("Retrieval evaluation report", 1), Para(_summary(data))]
    if data.runs:
        blocks += [Heading("Quality"), _metric_table(data), Para(_legend(data), "note")]
    for dataset in data.datasets:
        blocks.append(Heading(dataset, 3))
        blocks += [f for f in figures if f.dataset == dataset and f.key in ("bars", "deltas", "recall")]
    if data.comparison and data.comparison.metrics:
        blocks += [Heading("Paired comparisons"), _comparison_table(data)]
    if data.runs or data.profiles:
        blocks += [Heading("Speed"), *_speed_blocks(data, figures)]
    blocks += [Heading("Environment"), _environment_table(data)]
    if data.notes:
        blocks += [Heading("Notes"), *(Para(n, "note") for n in data.notes)]
    return blocks


def _summary(data: ReportData) -> str:
    parts = [f"Generated {utc_now()} from {len(data.runs)} run record(s)"]
    if data.profiles:
        parts.append(f" and {len(data.profiles)} profile record(s)")
    return "".join(parts) + f" on {len(data.datasets)} dataset(s)."


def _legend(data: ReportData) -> str:
    c = data.comparison
    if not c:
        return "Each cell: mean over all judged queries [95% bootstrap CI of the mean]."
    return (f"Each cell: mean over all judged queries [95% bootstrap CI of the mean]. {UP} / {DOWN}: significantly "
            f"higher / lower than the first record of the dataset (the control) by a paired {c.test} test, "
            f"Holm-adjusted over {len(c.metrics)} comparisons, alpha {c.alpha}.")


def _marker(data: ReportData, dataset: str, metric: str, label: str) -> str:
    m = data.comparison.find(dataset, metric, label) if data.comparison else None
    verdict = m.verdict(data.comparison.alpha, data.comparison.test) if m and data.comparison else ""
    return {"better": f" {UP}", "worse": f" {DOWN}"}.get(verdict, "")


def _metric_table(data: ReportData) -> Table:
    metrics = list(dict.fromkeys(m for r in data.runs for m in r.record.metrics))
    rows = []
    for run in data.runs:
        cells = []
        for metric in metrics:
            if metric not in run.record.metrics:
                cells.append("-")
                continue
            low, high = data.cis[(run.dataset, run.label, metric)]
            cells.append(f"{run.record.metrics[metric]:.4f}{_marker(data, run.dataset, metric, run.label)} "
                         f"[{low:.3f}, {high:.3f}]")
        rows.append([run.dataset, run.label, *cells])
    return Table(["dataset", "encoder", *metrics], rows)


def _comparison_table(data: ReportData) -> Table:
    c = data.comparison
    assert c is not None
    rows = [[m.dataset, m.metric, m.control, m.treatment, f"{m.stats.delta:+.4f}",
             f"[{m.stats.delta_ci[0]:+.4f}, {m.stats.delta_ci[1]:+.4f}]", fmt_p(m.stats.p_t_test),
             fmt_p(m.stats.p_randomization), fmt_p(m.p_holm[c.test]), f"{m.stats.wins}/{m.stats.ties}/{m.stats.losses}",
             m.verdict(c.alpha, c.test)] for m in c.metrics]
    return Table(["dataset", "metric", "control", "treatment", "Δ", "95% CI of Δ", "p t-test", "p randomization",
                  f"p Holm ({c.test})", "W/T/L", "verdict"], rows)


def _speed_blocks(data: ReportData, figures: list[FigureFile]) -> list[Block]:
    keys = list(dict.fromkeys(hardware_key(r.record.environment) for r in data.runs))
    names = {k: chr(ord("A") + i) for i, k in enumerate(keys)}
    rows = []
    for run in data.runs:
        f = speed_figures(run.record)
        tokens = run.record.performance.get("tokens_per_s")
        rows.append([run.dataset, run.label, *(_num(f[k]) for k in ("passages_per_s",)), _num(tokens),
                     *(_num(f[k]) for k in ("query_p50_ms", "query_p99_ms", "peak_rss_mb", "peak_gpu_mb")),
                     names[hardware_key(run.record.environment)]])
    blocks: list[Block] = []
    if rows:
        blocks.append(Table(["dataset", "encoder", "passages/s", "tokens/s", "query p50 ms", "query p99 ms",
                             "peak RSS MB", "peak GPU MB", "hardware"], rows))
        legend = "; ".join(f"{n} = {k}" for k, n in names.items())
        blocks.append(Para(f"Speed figures are comparable only within the same hardware group ({legend}).", "note"))
    blocks += [f for f in figures if f.key == "latency"]
    if data.profiles:
        blocks += [f for f in figures if f.key in ("throughput", "profile-latency")]
    else:
        blocks.append(Para("No profile records: throughput-vs-batch-size panels appear when the results include "
                           "`harness profile` records.", "note"))
    return blocks


def _environment_table(data: ReportData) -> Table:
    rows = []
    for label, dataset, env, settings, created, path in (
            [(r.label, r.dataset, r.record.environment, r.record.encoder.get("settings", {}), r.record.created_at,
              r.path) for r in data.runs]
            + [(p.label, "(profile)", p.environment, {}, "", p.path) for p in data.profiles]):
        gpu = env.get("gpu")
        libraries = env.get("libraries") or {}
        rows.append([dataset, label, str(env.get("cpu_model", "-")), str(env.get("torch_threads", "-")),
                     gpu.get("name", "-") if isinstance(gpu, dict) else "none",
                     " ".join(f"{k} {v}" for k, v in libraries.items()
                              if k in ("torch", "transformers", "sentence-transformers") and v),
                     " ".join(f"{k}={settings[k]}" for k in ("engine", "precision", "batch_size", "max_seq_length",
                                                             "device") if k in settings),
                     created, path.name])
    return Table(["dataset", "encoder", "CPU", "threads", "GPU", "libraries", "settings", "created", "record"], rows)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"
