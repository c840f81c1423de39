"""The unjudged documents of records' top-k, for assessment (`harness pool`).

    harness pool RECORD... --depth 10 --output pool.tsv
    # assess pool.tsv, write the grades as qrels (qid 0 docid grade), then score again without encoding:
    harness evaluate RECORD... --qrels new.qrels

Pooled judgments (TREC DL) leave most of a new model's top 10 unjudged; those holes read as non-relevant.
The pool is every (query, document) in the top ``depth`` of any given record that the record's judgments
(plus ``qrels``, judgments collected since) do not cover, once, with the document's text from the record's
data set. Only judged queries are pooled: the others cannot be scored anyway.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.scoring.external import Judgments, judgments_of_record, load_judgments, with_added_qrels
from harness.scoring.scored import load_scored_runs
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.files import write_file

PathLike = str | os.PathLike[str]
HEADER = "query-id\tcorpus-id\ttext"


@dataclass(frozen=True)
class Pool:
    """Unjudged (query id, document id, text) rows, by query id then first appearance."""

    rows: list[tuple[str, str, str]]
    records: list[Path]
    depth: int
    ranked: int  # (query, document) pairs in the records' top-depth, judged queries only, before deduplication
    missing_texts: int  # documents whose id the data set's corpus lacks (written with an empty text)

    def write(self, path: PathLike) -> Path:
        """Write the pool as TSV (a header, then query-id, corpus-id, text), atomically."""
        lines = [HEADER, *(f"{qid}\t{docid}\t{' '.join(text.split())}" for qid, docid, text in self.rows)]
        return write_file(path, "\n".join(lines) + "\n", what="the pool")


def pool(records: Sequence[PathLike], *, depth: int = 10, qrels: PathLike | None = None,
         data: PathLike | None = None) -> Pool:
    """The unjudged pool of the records' top ``depth``. Judgments and texts come from the records' data set
    (they must share one); ``data`` (a BEIR folder) supplies texts for records scored against a qrels file only;
    ``qrels`` adds judgments collected since."""
    if depth <= 0:
        raise HarnessError(f"--depth must be a positive integer, got {depth}")
    loaded = load_scored_runs(records)
    if not loaded:
        raise HarnessError(f"no run records under {', '.join(map(str, records))}")
    fingerprints = {run.record.dataset.fingerprint for run in loaded}
    if len(fingerprints) > 1:
        names = ", ".join(sorted({f"{run.dataset} ({run.record.dataset.fingerprint})" for run in loaded}))
        raise HarnessError(f"the records were scored against different judgments ({names}); pool one data set at "
                           "a time")
    first = loaded[0]
    assert first.path is not None  # read from a record folder
    judgments = judgments_of_record(first.path, first.record, texts=data is None)
    if data is not None:
        texts = load_judgments(data).dataset
        if texts is None:
            raise HarnessError(f"--data {data}: give a BEIR folder (corpus.jsonl[.gz], queries.jsonl, qrels/), "
                               "not a qrels file: the pool needs the documents' texts")
        judgments = Judgments(judgments.info, judgments.qrels, texts)
    if qrels is not None:
        judgments = with_added_qrels(judgments, qrels)
    assert judgments.dataset is not None
    seen: dict[str, dict[str, None]] = {}
    ranked = 0
    for scored in loaded:
        ranked_ids = scored.ranked_ids()
        for qid, judged in judgments.qrels.items():
            top = ranked_ids.get(qid, [])[:depth]
            ranked += len(top)
            unjudged = seen.setdefault(qid, {})
            for docid in top:
                if docid not in judged:
                    unjudged[docid] = None
    corpus = judgments.dataset.corpus.lookup({docid for docs in seen.values() for docid in docs})  # streamed
    rows = [(qid, docid, corpus.get(docid, "")) for qid in sorted(seen) for docid in seen[qid]]
    return Pool(rows, [run.path for run in loaded if run.path is not None], depth, ranked,
                sum(1 for _, d, _ in rows if d not in corpus))
