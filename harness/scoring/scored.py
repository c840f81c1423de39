"""The one result type: a scored run.

Whatever produced it (an encoder run by the pipeline, a run file made elsewhere, a record folder read back), a
`ScoredRun` holds the record, every metric per query, the ranking, the Recall@k curve and where it lives on disk.
Analysis and reporting read nothing else. A run read from disk loads its ranking and curve only when asked."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from harness.input.datasets import read_run
from harness.scoring.records import (
    RecallCurve,
    RunRecord,
    find_records,
    load,
    load_per_query,
    load_recall_curve,
    record_file,
)
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.tables import markdown_table, md_escape

__all__ = ["Ranking", "RunOutcome", "ScoredRun", "label_runs", "load_scored_runs", "ordered"]

# qid -> [(docid, score)], best first (trec_eval's order)
Ranking = Mapping[str, Sequence[tuple[str, float]]]


@dataclass(frozen=True)
class ScoredRun:
    """One dataset × encoder (or external run), scored.

    ``per_query``: metric name as the suite wrote it -> query id -> value, for every judged query. ``ranking``: held
    in memory by a fresh run; None for a run read from disk, whose ranking is its record folder's run file (see
    `ranked_ids`). ``path``: the record folder, None when nothing was written. ``label`` names the run in tables
    and plots (`label_runs`; the encoder's name by default)."""

    record: RunRecord
    per_query: dict[str, dict[str, float]]
    ranking: Ranking | None = None
    recall_curve: RecallCurve | None = None
    path: Path | None = None
    label: str = ""

    @classmethod
    def load(cls, directory: Path | str) -> ScoredRun:
        """A run record folder: its record and per-query values (the ranking and curve are read when asked)."""
        directory = Path(directory)
        record = load(directory)
        if not isinstance(record, RunRecord):
            raise HarnessError(f"{directory}: a {record.kind} record, not a run record; it holds no scored run")
        return cls.of(directory, record)

    @classmethod
    def of(cls, directory: Path, record: RunRecord) -> ScoredRun:
        """The scored run of a record already read from ``directory``."""
        return cls(record, load_per_query(directory, record), path=directory)

    @property
    def dataset(self) -> str:
        return self.record.dataset.name

    @property
    def encoder(self) -> str:
        """The encoder's name, or an external run's (``RunRecord.name``)."""
        return self.record.name

    @property
    def metrics(self) -> dict[str, float]:
        """Each metric's mean over all judged queries, keyed as the suite wrote it."""
        return self.record.metrics

    @property
    def where(self) -> str:
        """The record folder, or 'in memory'."""
        return str(self.path) if self.path is not None else "in memory"

    def named(self, label: str) -> ScoredRun:
        return replace(self, label=label)

    def curve(self) -> RecallCurve | None:
        """The Recall@k curve: in memory, else the record folder's (None for records that predate curves)."""
        if self.recall_curve is not None or self.path is None:
            return self.recall_curve
        return load_recall_curve(self.path, self.record)

    def ranked_ids(self) -> dict[str, list[str]]:
        """qid -> document ids, best first: the ranking in memory, else the record folder's run file."""
        if self.ranking is not None:
            return {qid: [doc for doc, _ in hits] for qid, hits in self.ranking.items()}
        if self.path is None:
            raise HarnessError(f"{self.dataset} × {self.encoder}: no ranking in memory and no record folder")
        path = record_file(self.path, self.record, "run")
        if not path.is_file():
            raise HarnessError(f"{path}: the record's run file is missing; this needs the stored ranking")
        return ordered(read_run(path))

    def _repr_markdown_(self) -> str:
        table = markdown_table(["metric", "mean"], [[name, f"{value:.4f}"] for name, value in self.metrics.items()])
        return f"**{md_escape(self.dataset)} × {md_escape(self.encoder)}** ({md_escape(self.where)})\n\n{table}\n"


@dataclass(frozen=True)
class RunOutcome:
    """What became of one dataset x encoder of a suite: its scored run (with its record folder when the suite
    writes records), or the reason it failed."""

    dataset: str
    encoder: str
    result: ScoredRun | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def path(self) -> Path | None:
        """The record folder written, if any."""
        return self.result.path if self.result is not None else None

    @property
    def record(self) -> RunRecord:
        if self.result is None:
            raise HarnessError(f"{self.dataset} × {self.encoder} failed, so it has no record: {self.error}")
        return self.result.record


def ordered(run: Mapping[str, Mapping[str, float]]) -> dict[str, list[str]]:
    """qid -> document ids, best first, in trec_eval's order (score descending, ties by document id descending)."""
    return {qid: sorted(docs, key=lambda d: (docs[d], d), reverse=True) for qid, docs in run.items()}


def load_scored_runs(paths: Iterable[Path | str | os.PathLike[str]]) -> list[ScoredRun]:
    """Run records named directly or found under result folders (profile and serving records are skipped), labelled."""
    runs = []
    for directory in find_records([Path(p) for p in paths]):
        record = load(directory)
        if isinstance(record, RunRecord):
            runs.append(ScoredRun.of(directory, record))
    return label_runs(runs)


def label_runs(runs: Sequence[ScoredRun]) -> list[ScoredRun]:
    """Label each run by its encoder name; a name that repeats within a dataset gets its folder added."""
    taken: set[tuple[str, str]] = set()
    labelled = []
    for run in runs:
        label = run.encoder
        folder = run.path.parent.name if run.path is not None else "in memory"
        for n in range(1, len(runs) + 2):
            if (run.dataset, label) not in taken:
                break
            label = f"{run.encoder} [{folder}]" + (f" ({n})" if n > 1 else "")
        taken.add((run.dataset, label))
        labelled.append(run.named(label))
    return labelled
