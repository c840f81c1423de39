"""`harness history`: the version lineages of `harness.analysis.history` as a report folder (written in one step,
as `harness report` is): per lineage the ledger table, one line per metric naming where its gate first failed,
and the trend plot; history.md, a self-contained history.html, history.csv / history.json (one row per lineage ×
version × metric) and the plots as PNG and SVG."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.analysis.history import BASELINE, FAIL, Lineage, history
from harness.reporting import plots
from harness.reporting.document import Block, Heading, Para, Table, query_change_blocks
from harness.reporting.exports import to_csv
from harness.reporting.figures import FigureFile
from harness.reporting.folder import write_report_folder
from harness.reporting.render import write_documents
from harness.scoring.records import slug
from harness.scoring.scored import load_scored_runs
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.statistics import DEFAULT_STATS, StatsOptions
from harness.vocabulary.tables import html_table, markdown_table, md_escape
from harness.vocabulary.timing import utc_now

FORMATS = ("html", "md")
ROW_FIELDS = ["dataset", "lineage", "version", "order", "commit", "revision", "recorded", "metric", "mean", "ci_low",
              "ci_high", "delta_previous", "p_previous", "significant_change", "baseline", "delta_baseline",
              "delta_baseline_ci_low", "delta_baseline_ci_high", "p_baseline", "margin", "lower_bound", "gate",
              "passages_per_s", "corpus_from_cache", "query_p99_ms", "record"]


@dataclass(frozen=True)
class History:
    """The lineages found in some results folders, and the files written for them (`harness.history`)."""

    lineages: list[Lineage]
    files: list[Path] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        return history_rows(self.lineages)

    def failing(self) -> list[str]:
        """'<lineage>: <metric> at <version>' for each lineage whose newest version fails a metric's gate."""
        return [f"{lin.title}: {m} at {lin.points[-1].version}" for lin in self.lineages for m in lin.metrics
                if lin.points[-1].gates[m].status == FAIL]

    def _repr_markdown_(self) -> str:
        parts = [f"**{len(self.lineages)} lineage(s)**"]
        for lineage in self.lineages:
            parts += [f"**{md_escape(lineage.title)}** (ordered by {md_escape(lineage.order)})",
                      markdown_table(*lineage.ledger()), *(md_escape(lineage.gate_line(m)) for m in lineage.metrics)]
        return "\n\n".join(parts)

    def _repr_html_(self) -> str:
        parts = [f"<p><strong>{len(self.lineages)} lineage(s)</strong></p>"]
        for lineage in self.lineages:
            parts += [f"<h4>{html.escape(lineage.title)}</h4>",
                      f"<p>ordered by {html.escape(lineage.order)}</p>", html_table(*lineage.ledger()),
                      *(f"<p>{html.escape(lineage.gate_line(m))}</p>" for m in lineage.metrics)]
        return "\n".join(parts)


def load_history(paths: Sequence[Path], *, metrics: Sequence[str] | None = None, baseline: str | None = None,
                 margins: Mapping[str, float] | None = None, stats: StatsOptions = DEFAULT_STATS,
                 queries: int = 0) -> History:
    runs = load_scored_runs(paths)
    if not runs:
        raise HarnessError("no run records found in: " + ", ".join(str(p) for p in paths))
    return History(history(runs, metrics=metrics, baseline=baseline, margins=margins, stats=stats, queries=queries))


def build_history(data: History, output: Path, *, formats: Sequence[str] = FORMATS) -> History:
    """Write the history folder ``output`` in one step; returns ``data`` with the files written."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise HarnessError(f"unknown history format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")

    def fill(folder: Path) -> list[Path]:
        figures = _draw(data.lineages, folder / "plots")
        blocks = history_blocks(data.lineages, figures)
        written = [p for f in figures for p in (f.png, f.svg)]
        written += write_documents(blocks, folder, "history", formats, title="Model version history")
        rows = history_rows(data.lineages)
        written += [folder / "history.csv", folder / "history.json"]
        written[-2].write_text(to_csv(rows, ROW_FIELDS), encoding="utf-8")
        written[-1].write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
        return written

    return History(data.lineages, write_report_folder(output, fill))


def history_blocks(lineages: Sequence[Lineage], figures: Sequence[FigureFile]) -> list[Block]:
    blocks: list[Block] = [
        Heading("Model version history", 1),
        Para(f"Generated {utc_now()}: {len(lineages)} lineage(s), "
             f"{sum(len(lin.points) for lin in lineages)} version record(s)."),
        Para("Each cell: mean over all judged queries [95% bootstrap CI]; ▲ / ▼: significantly higher / lower than "
             "the previous version (paired test at alpha). Gate: against the baseline version; with a "
             "non-inferiority margin PASS needs the one-sided lower bound of Δ above −margin, without one FAIL "
             "means significantly worse. Each version is tested on its own (no correction across versions). "
             "passages/s \"(cached)\": the corpus came from the embedding cache, so the figure is the run that "
             "encoded it.", "note")]
    for i, lineage in enumerate(lineages):
        blocks += [Heading(lineage.title), Para(f"Versions ordered by {lineage.order}; baseline {lineage.baseline}."),
                   Table(*lineage.ledger()), *(Para(lineage.gate_line(m)) for m in lineage.metrics)]
        blocks += [f for f in figures if f.key == f"trend-{i}"]
        for version, changes in lineage.changes.items():
            blocks += [Para(f"At {version}, significantly changed from the version before:"),
                       *query_change_blocks(changes)]
        blocks += [Para(n, "note") for n in lineage.notes]
    return blocks


def history_rows(lineages: Sequence[Lineage]) -> list[dict[str, Any]]:
    rows = []
    for lineage in lineages:
        for p in lineage.points:
            encoder = p.run.record.encoder
            for m in lineage.metrics:
                prev, gate = p.from_previous.get(m), p.gates[m]
                v, ni = gate.versus, gate.noninferiority
                rows.append({
                    "dataset": lineage.dataset, "lineage": lineage.name, "version": p.version,
                    "order": lineage.order, "commit": p.commit, "revision": encoder.revision if encoder else None,
                    "recorded": p.run.record.created_at, "metric": m, "mean": p.means[m], "ci_low": p.cis[m][0],
                    "ci_high": p.cis[m][1], "delta_previous": prev.delta if prev else None,
                    "p_previous": prev.p(lineage.test) if prev else None,
                    "significant_change": lineage.mark(p, m).strip() or None, "baseline": lineage.baseline,
                    "delta_baseline": v.delta if v else None, "delta_baseline_ci_low": v.delta_ci[0] if v else None,
                    "delta_baseline_ci_high": v.delta_ci[1] if v else None, "p_baseline": gate.p,
                    "margin": lineage.margins.get(m), "lower_bound": ni.lower if ni else None,
                    "gate": gate.status, "passages_per_s": p.passages_per_s,
                    "corpus_from_cache": p.corpus_from_cache, "query_p99_ms": p.query_p99_ms,
                    "record": p.run.where})
    return rows


def trend_figure(lineage: Lineage):
    metrics = {}
    for m in lineage.metrics:
        base = next(p for p in lineage.points if p.gates[m].status == BASELINE)
        first = lineage.first_failure(m)
        margin = lineage.margins.get(m)
        metrics[m] = {
            "means": [p.means[m] for p in lineage.points], "lows": [p.cis[m][0] for p in lineage.points],
            "highs": [p.cis[m][1] for p in lineage.points],
            "changes": [{"▲": 1, "▼": -1}.get(lineage.mark(p, m).strip(), 0) for p in lineage.points],
            "baseline": base.means[m], "bound": None if margin is None else base.means[m] - margin,
            "first_failure": None if first is None else lineage.points.index(first)}
    speed = {"passages_per_s": [p.passages_per_s for p in lineage.points],
             "query_p99_ms": [p.query_p99_ms for p in lineage.points]}
    primary = lineage.metrics[0]
    changes = [p.from_previous.get(primary) for p in lineage.points]
    steps = {"metric": primary, "deltas": [c.delta if c else None for c in changes],
             "lows": [c.delta_ci[0] if c else None for c in changes],
             "highs": [c.delta_ci[1] if c else None for c in changes],
             "significant": [bool(lineage.mark(p, primary)) for p in lineage.points]}
    return plots.version_trend([p.version for p in lineage.points], metrics, speed, steps=steps,
                               title=f"{lineage.title}: versions in order")


def _draw(lineages: Sequence[Lineage], folder: Path) -> list[FigureFile]:
    files, taken = [], set()
    for i, lineage in enumerate(lineages):
        stem = slug(f"trend--{lineage.dataset}--{lineage.name}")
        while stem in taken:
            stem += "-"
        taken.add(stem)
        png, svg = plots.save(trend_figure(lineage), folder / stem)
        files.append(FigureFile(f"trend-{i}", lineage.dataset, f"{lineage.title}: metrics and speed by version",
                                png, svg))
    return files
