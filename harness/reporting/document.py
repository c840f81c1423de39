"""The report as a list of blocks (headings, paragraphs, tables, figures), rendered to Markdown and HTML."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.analysis.compare import CACHED_MARK, CACHED_NOTE, SPEED_HEADERS, SpeedFigures
from harness.analysis.query_changes import QueryChanges
from harness.reporting.data import (
    DOWN,
    EXACT_LABEL,
    SERVING_HEADERS,
    UP,
    IndexGroup,
    ReportData,
    saturation_line,
    serving_rows,
)
from harness.reporting.figures import FigureFile, index_figure_stem
from harness.scoring.records import RunRecord
from harness.vocabulary.tables import fmt_num, fmt_p
from harness.vocabulary.timing import utc_now


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


@dataclass(frozen=True)
class Details:
    """A collapsible block (HTML <details>; in Markdown a bold line and a list)."""

    summary: str
    lines: list[str]


Block = Heading | Para | Table | FigureFile | Details


def query_change_blocks(changes: QueryChanges) -> list[Block]:
    """A title line, then per query that lost or gained most one collapsible block: what moved and the new top."""
    blocks: list[Block] = [Heading(changes.title, 3)]
    for heading, items in changes.sections():
        blocks.append(Para(f"{heading}: none" if not items else f"{heading}:"))
        blocks += [Details(q.title(changes.metric), q.lines()) for q in items]
    return blocks


def build_document(data: ReportData, figures: list[FigureFile]) -> list[Block]:
    blocks: list[Block] = [Heading("Retrieval evaluation report", 1), Para(_summary(data))]
    if data.runs:
        blocks += [Heading("Quality"), metric_table(data), Para(_legend(data), "note")]
        holes = data.holes_table()
        if holes[1]:
            blocks += [Heading("Judgment holes", 3), Table(*holes), Para(HOLES_NOTE, "note")]
    for dataset in data.datasets:
        blocks.append(Heading(dataset, 3))
        blocks += [f for f in figures if f.dataset == dataset and f.key in ("bars", "deltas", "recall")]
    if data.comparison and data.comparison.metrics:
        c = data.comparison
        blocks += [Heading("Paired comparisons"), Table(c.table_headers, c.table_rows()),
                   Para("MDE: the minimum detectable effect of each comparison, the smallest |Δ| a paired t-test on "
                        "these queries detects with 80% power at alpha 0.05 (`harness power`); an n.s. Δ below it "
                        "is not evidence that nothing changed.", "note")]
    if data.churn:
        blocks += [Heading("Ranking churn"), Table(data.churn[0].headers, [c.row() for c in data.churn]),
                   Para(data.churn[0].footnote() + "; A = the dataset's control, B = each other record", "note"),
                   *(f for f in figures if f.key == "churn")]
    if data.runs or data.profiles:
        blocks += [Heading("Speed"), *_speed_blocks(data, figures)]
    if data.serving:
        blocks += [Heading("Serving"), *_serving_blocks(data, figures)]
    if data.frontiers:
        blocks += [Heading("Quality × speed frontier"), *_frontier_blocks(data, figures)]
    if data.indexes:
        blocks += [Heading("Approximate index"), *_index_blocks(data.indexes, figures)]
    if data.changes:
        blocks += [Heading("Queries that changed most"), Para(QUERIES_NOTE, "note"),
                   *(b for c in data.changes for b in query_change_blocks(c))]
    blocks += [Heading("Environment"), _environment_table(data)]
    if data.notes:
        blocks += [Heading("Notes"), *(Para(n, "note") for n in data.notes)]
    return blocks


QUERIES_NOTE = ("Per treatment against its dataset's control, on the report's primary metric: the queries that "
                "lost and gained most, each with every judged-relevant document's rank before → after (not in the "
                "top k: beyond the record's top_k) and the treatment's new top documents with their judgment.")

HOLES_NOTE = (
    "Pooled qrels judge only some documents; a retrieved document without a judgment counts as not relevant in "
    "standard nDCG@10, so an apparent drop can be nothing but holes. Judged@10: the share of each query's top 10 "
    "that has a qrels entry (any grade), mean over all judged queries. nDCG@10 (unjudged = relevant): nDCG@10 "
    "on the qrels completed with every unjudged document of each query's top 10 at grade relevance_level (its "
    "gain), the ideal DCG recomputed on the completed qrels: the score if every hole were relevant, an optimistic "
    "estimate (it is not a strict maximum: a hole ranked low can raise the ideal DCG more than the run's DCG). "
    "unknown: the difference, how much of nDCG@10 the holes leave open. Shown for datasets where some top 10 has "
    "unjudged documents.")


def _summary(data: ReportData) -> str:
    parts = [f"Generated {utc_now()} from {len(data.runs)} run record(s)"]
    if data.profiles:
        parts.append(f" and {len(data.profiles)} profile record(s)")
    if data.serving:
        parts.append(f" and {len(data.serving)} serving record(s)")
    return "".join(parts) + f" on {len(data.datasets)} dataset(s)."


def _legend(data: ReportData) -> str:
    c = data.comparison
    if not c:
        return "Each cell: mean over all judged queries [95% bootstrap CI of the mean]."
    return (f"Each cell: mean over all judged queries [95% bootstrap CI of the mean]. {UP} / {DOWN}: significantly "
            f"higher / lower than the first record of the dataset (the control) by a paired {c.test} test, "
            f"Holm-adjusted over {len(c.metrics)} comparisons, alpha {c.alpha}.")


def metric_table(data: ReportData) -> Table:
    return Table(*data.quality_table())


def _speed_blocks(data: ReportData, figures: list[FigureFile]) -> list[Block]:
    timed = [r for r in data.runs if r.record.performance is not None]  # external runs timed nothing
    keys = list(dict.fromkeys(r.record.speed_hardware_key for r in timed))
    names = {k: chr(ord("A") + i) for i, k in enumerate(keys)}
    rows = []
    for run in timed:
        perf = run.record.performance
        assert perf is not None
        passages, *rest = SpeedFigures.of(perf).values()
        cells = list(map(fmt_num, (passages, perf.throughput.tokens_per_s, *rest)))
        if perf.corpus_from_cache:  # an older run's encoding figures: mark them, never pass them off as this run's
            cells[0], cells[1] = f"{cells[0]} {CACHED_MARK}", f"{cells[1]} {CACHED_MARK}"
        rows.append([run.dataset, run.label, *cells, names[run.record.speed_hardware_key]])
    blocks: list[Block] = []
    if rows:
        blocks.append(Table(["dataset", "encoder", SPEED_HEADERS[0], "tokens/s", *SPEED_HEADERS[1:], "hardware"],
                            rows))
        legend = "; ".join(f"{n} = {k}" for k, n in names.items())
        blocks.append(Para(f"Speed figures are comparable only within the same hardware group ({legend}).", "note"))
        if any(r.record.performance is not None and r.record.performance.corpus_from_cache for r in timed):
            blocks.append(Para(CACHED_NOTE, "note"))
    external = [r.label for r in data.runs if r.record.performance is None]
    if external:
        blocks.append(Para(f"No speed figures for {', '.join(dict.fromkeys(external))}: external runs scored by "
                           "`harness evaluate`, which timed nothing.", "note"))
    blocks += [f for f in figures if f.key == "latency"]
    if data.profiles:
        blocks += [f for f in figures if f.key in ("throughput", "profile-latency")]
    else:
        blocks.append(Para("No profile records: throughput-vs-batch-size panels appear when the results include "
                           "`harness profile` records.", "note"))
    return blocks


def _serving_blocks(data: ReportData, figures: list[FigureFile]) -> list[Block]:
    """Per serving record: its load points and its saturation rate; then the hockey stick and the closed-loop
    throughput figures."""
    blocks: list[Block] = []
    for serving in data.serving:
        blocks += [Heading(f"{serving.record.dataset} × {serving.label}", 3),
                   Table(SERVING_HEADERS, serving_rows(serving)), Para(saturation_line(serving))]
        blocks += [Para(n, "note") for n in serving.record.notes]
    blocks += [f for f in figures if f.key in ("serving-latency", "serving-throughput")]
    blocks.append(Para(SERVING_NOTE, "note"))
    return blocks


SERVING_NOTE = (
    "Open loop: requests sent on a Poisson schedule at the offered rate whatever the server does, each latency taken "
    "from the request's intended send time, so that queueing in the server or a stalled client shows (no coordinated "
    "omission). Closed loop: each of N clients sends its next request when the previous answer arrives. p99 95% "
    "bounds: distribution-free order-statistic bounds (∞: too few requests to bound it). A client-limited point is "
    "one this client could not generate (beyond 80% of the rate it reaches against a trivial local endpoint, or it "
    "fell behind its schedule): its latency holds the client's delays too, so it bounds the server's only from "
    "above (within the SLO, it still shows the server sustained the rate). Latency includes HTTP and JSON on both "
    "sides.")


def _frontier_blocks(data: ReportData, figures: list[FigureFile]) -> list[Block]:
    """Per dataset: the frontier plot, and a table of the frontier in speed order with each step's quality change."""
    blocks: list[Block] = []
    for dataset, front in data.frontiers.items():
        rows = []
        for step in front.steps:
            c = step.vs_previous
            rows.append([step.label, fmt_num(step.speed), f"{step.mean:.4f}",
                         "-" if c is None else f"{c.delta:+.4f}", "-" if c is None else fmt_p(c.p(front.test))])
        blocks += [Heading(dataset, 3), *(f for f in figures if f.key == "frontier" and f.dataset == dataset),
                   Table(["frontier point (slowest first)", "passages/s", front.metric,
                          f"Δ {front.metric} vs previous", f"p ({front.test})"], rows)]
        beaten = [f"{label} (by {d.by}, p {fmt_p(d.p)})" for label, d in front.dominated.items()]
        if beaten:
            blocks.append(Para(f"Dominated: {'; '.join(beaten)}.", "note"))
    blocks.append(Para(
        "A record is dominated only when another record of the dataset encodes faster (higher passages/s) and is "
        f"significantly better on per-query {data.primary_metric} (paired {next(iter(data.frontiers.values())).test} "
        f"test, unadjusted, alpha {next(iter(data.frontiers.values())).alpha}); a faster record whose gain is within "
        "the noise leaves it on the frontier. Each step's Δ and p compare a frontier point with the previous, slower "
        "one. Records without speed figures (external runs) are left out; passages/s marked as cached are those of "
        "the run that encoded the corpus.", "note"))
    return blocks


def _index_blocks(groups: list[IndexGroup], figures: list[FigureFile]) -> list[Block]:
    """Per dataset x embeddings with index records: the settings against exact search, the cheapest non-inferior
    setting, the frontier plots and what is dominated."""
    blocks: list[Block] = []
    for group in groups:
        blocks += [Heading(group.title, 3), Table(*group.table()), Para(group.cheapest_line())]
        blocks += [f for f in figures if f.dataset == group.dataset and f.key in ("index-quality", "index-recall")
                   and f.png.stem == index_figure_stem(f.key, group)]
        blocks += [Para(line, "note") for line in group.dominated_lines()]
        if group.frontier is not None and group.exact_run is None:
            blocks.append(Para(f"{EXACT_LABEL.capitalize()} is drawn as the reference, not as a frontier point: its "
                               "per-query values are not stored with the index records; a plain exact-search record "
                               "of the same embeddings in the results adds it.", "note"))
        blocks += [Para(n, "note") for n in group.notes]
    first = groups[0].frontier or groups[0].recall_frontier
    test, alpha = (first.test, first.alpha) if first else ("randomization", 0.05)
    blocks.append(Para(
        "Each index record's ranking came from an approximate index; the exact search row is the exact search of the "
        "same embeddings measured in the same run. queries/s: the whole query set searched in one batch; search "
        "p50/p99: one query per call. ANN recall@k: the share of the exact top k the index returned in its top k "
        "(1 for exact search by definition). Each metric: the setting's mean, its paired change against exact "
        "search (Δ, 95% bootstrap CI, p by the record's test). Non-inferiority: shown when the one-sided lower "
        "bound of Δ (paired t) is above -margin, the suite's `baseline.noninferior` margin; — where no margin was "
        f"set. A setting is dominated when another is faster (higher queries/s) and significantly better per query "
        f"(paired {test} test, unadjusted, alpha {alpha}).", "note"))
    return blocks


def _environment_table(data: ReportData) -> Table:
    rows = []
    for label, dataset, env, settings, created, path in (
            [(r.label, r.dataset, r.record.environment, _settings(r.record), r.record.created_at, r.path)
             for r in data.runs]
            + [(p.label, "(profile)", p.record.environment, {}, "", p.path) for p in data.profiles]
            + [(s.label, s.record.dataset, s.record.environment, {"engine": "http"}, s.record.created_at, s.path)
               for s in data.serving]):
        assert path is not None  # a report's runs are read from their record folders
        rows.append([dataset, label, env.cpu_model, str(env.torch_threads), env.gpu.name if env.gpu else "none",
                     " ".join(f"{k} {v}" for k, v in env.libraries.items()
                              if k in ("torch", "transformers", "sentence-transformers") and v),
                     " ".join(f"{k}={settings[k]}" for k in ("engine", "precision", "batch_size", "max_seq_length",
                                                             "device", "run") if k in settings),
                     created, path.name])
    return Table(["dataset", "encoder", "CPU", "threads", "GPU", "libraries", "settings", "created", "record"], rows)


def _settings(record: RunRecord) -> dict[str, object]:
    """The encoder settings a report lists; for an external run, the run file it came from."""
    if record.encoder is not None:
        return record.encoder.settings.model_dump()
    return {"run": Path(record.source.path).name} if record.source else {}
