"""Load a BEIR folder, an ir_datasets id or MS MARCO TSV files into one `Dataset`.

Every loader checks what it reads (duplicate ids, empty splits, bad encodings, dangling qrels)
and raises `HarnessError` naming the file, the line and the fix.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from harness.corpus import (Corpus, IndexDir, as_strings, file_stat, iter_file_docs, memory_corpus, open_docs_corpus,
                            open_file_corpus)
from harness.errors import HarnessError
from harness.suite import DatasetSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dataset:
    """A retrieval test collection, canonically ordered.

    Documents are sorted by id, descending: exact search breaks score ties by lower row index,
    so this order makes our rankings break ties the way trec_eval does (docno descending).
    The corpus keeps the ids (a numpy array) and streams the texts in that order (`harness.corpus`).
    Only the queries judged in the chosen qrels split are kept, sorted by id.
    """

    name: str
    source: dict[str, str]
    corpus: Corpus = field(compare=False)
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]
    relevance_level: int = 1
    drop_self_hits: bool = False
    unknown_qrels_docs: int = 0
    fingerprint: str = field(default="", compare=False)

    @property
    def doc_ids(self) -> np.ndarray:
        """The corpus ids as a numpy unicode array, canonical order. The corpus may hold them as ASCII bytes (a
        quarter of the memory): this then decodes a copy, which the pipeline avoids (`corpus.ids`, `as_strings`)."""
        ids = self.corpus.ids
        return ids.astype(str) if ids.dtype.kind == "S" else ids

    @property
    def doc_texts(self) -> list[str]:
        """Every corpus text, canonical order: reads the whole corpus into memory (small sets, tests); the
        pipeline streams `corpus.chunks()` instead."""
        return self.corpus.texts(0, len(self.corpus))

    @property
    def counts(self) -> dict[str, int]:
        return {
            "documents": len(self.corpus),
            "queries": len(self.query_ids),
            "qrels": sum(len(judged) for judged in self.qrels.values()),
            "qrels_unknown_documents": self.unknown_qrels_docs,
        }


def load_dataset(spec: DatasetSpec, *, cache: Path | None = None) -> Dataset:
    """Load and validate a data set. With `cache` (a directory), the corpus's offset index and fingerprint are
    saved there for the next load (`harness.corpus`); without, plain corpus files are indexed in memory."""
    if spec.kind == "beir":
        dataset = _load_beir(spec, cache)
    elif spec.kind == "ir_datasets":
        dataset = _load_ir_datasets(spec, cache)
    else:
        dataset = _load_msmarco_tsv(spec, cache)
    _check_expected_counts(spec, dataset)
    return dataset


def build_dataset(
    *,
    name: str,
    source: dict[str, str],
    docs: Iterable[tuple[str, str]] | Corpus,
    queries: Iterable[tuple[str, str]],
    qrels: Iterable[tuple[str, str, int]],
    relevance_level: int = 1,
    drop_self_hits: bool = False,
    where: str = "",
    index: IndexDir | None = None,
) -> Dataset:
    """Assemble and validate a Dataset from a Corpus (or (id, text) pairs, held in memory) and (qid, text),
    (qid, docid, grade) streams. `index`, where the corpus has a saved index, caches the fingerprint."""
    where = where or name
    corpus = docs if isinstance(docs, Corpus) else memory_corpus(docs, where=where)
    judged: dict[str, dict[str, int]] = {}
    for qid, docid, grade in qrels:
        judged.setdefault(qid, {})[docid] = grade
    if not judged:
        raise HarnessError(f"{where}: the qrels split has no queries; check the split name and the qrels file")
    all_queries = _unique(queries, what="query", where=where)
    missing = sorted(set(judged) - set(all_queries))
    if missing:
        raise HarnessError(
            f"{where}: {len(missing)} judged queries have no text in the queries file "
            f"(first: {missing[:5]}); every query in the qrels split needs a line in the queries file"
        )
    unknown = corpus.count_missing(d for q in judged.values() for d in q)
    if unknown:
        log.warning(
            "%s: %d qrels lines name documents absent from the corpus; they still count as judged "
            "(as trec_eval counts them), so recall cannot reach 1 for those queries", where, unknown,
        )
    query_ids = sorted(judged)
    dataset = Dataset(
        name=name,
        source=source,
        corpus=corpus,
        query_ids=query_ids,
        query_texts=[all_queries[q] for q in query_ids],
        qrels={q: judged[q] for q in query_ids},
        relevance_level=relevance_level,
        drop_self_hits=drop_self_hits,
        unknown_qrels_docs=unknown,
    )
    return replace(dataset, fingerprint=fingerprint(dataset, index))


def _unique(pairs: Iterable[tuple[str, str]], *, what: str, where: str) -> dict[str, str]:
    items: dict[str, str] = {}
    for key, text in pairs:
        if key in items:
            raise HarnessError(f"{where}: duplicate {what} id {key!r}; ids must be unique")
        items[key] = text
    return items


def fingerprint(dataset: Dataset, index: IndexDir | None = None) -> str:
    """sha256 of the canonical corpus ("id\ttext\n" per document), queries and qrels, streamed chunk by chunk.
    With a saved corpus index it is remembered there, keyed by a digest of the queries and qrels part."""
    rest = hashlib.sha256()
    _hash_queries_and_qrels(rest, dataset)
    rest_digest = rest.hexdigest()
    known = index.fingerprint(rest_digest) if index else None
    if known:
        return known
    digest = hashlib.sha256()
    for start, texts in dataset.corpus.chunks():
        ids = as_strings(dataset.corpus.ids[start:start + len(texts)])
        digest.update("".join(f"{key}\t{text}\n" for key, text in zip(ids, texts)).encode())
    digest.update(b"\x00")
    _hash_queries_and_qrels(digest, dataset)
    value = digest.hexdigest()[:16]
    if index:
        index.remember(rest_digest, value)
    return value


def _hash_queries_and_qrels(digest: hashlib._Hash, dataset: Dataset) -> None:
    for key, text in zip(dataset.query_ids, dataset.query_texts):
        digest.update(f"{key}\t{text}\n".encode())
    digest.update(b"\x00")
    for qid in dataset.query_ids:
        for docid, grade in sorted(dataset.qrels[qid].items()):
            digest.update(f"{qid}\t{docid}\t{grade}\n".encode())


def _check_expected_counts(spec: DatasetSpec, dataset: Dataset) -> None:
    for key, expected in (spec.expected_counts or {}).items():
        actual = dataset.counts[key]
        if actual != expected:
            raise HarnessError(
                f"dataset {spec.name!r}: expected {expected:,} {key} but loaded {actual:,}; "
                "the local files are incomplete or a different version"
            )


# ---------------------------------------------------------------- file readers


def _open_text(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line number, line) of a text file (optionally gzipped), strictly UTF-8."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    yield number, raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise HarnessError(
                        f"{path}:{number}: not valid UTF-8 at byte {exc.start} of the line ({exc.reason}); "
                        "re-encode the file as UTF-8"
                    ) from None
    except (OSError, EOFError) as exc:
        raise HarnessError(f"{path}: cannot read: {exc}") from None


def read_jsonl(path: Path, *, what: str) -> Iterator[tuple[str, str]]:
    for number, line in _open_text(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            key = str(row["_id"])
            text = f"{row.get('title') or ''} {row.get('text') or ''}".strip()
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise HarnessError(
                f"{path}:{number}: each line must be a JSON object with '_id' and 'text' ({what}): {exc}"
            ) from None
        yield key, text


def read_tsv_pairs(path: Path) -> Iterator[tuple[str, str]]:
    for number, line in _open_text(path):
        line = line.rstrip("\r\n")
        if not line:
            continue
        key, sep, text = line.partition("\t")
        if not sep:
            raise HarnessError(f"{path}:{number}: expected 'id<TAB>text'")
        yield key, text.strip()


def read_beir_qrels(path: Path) -> Iterator[tuple[str, str, int]]:
    rows = ((n, line.rstrip("\r\n").split("\t")) for n, line in _open_text(path) if line.strip())
    for number, cells in rows:
        if number == 1 and cells[:2] == ["query-id", "corpus-id"]:
            continue
        yield _qrel(path, number, cells, columns=(0, 1, 2), expected="query-id<TAB>corpus-id<TAB>score")


def read_trec_qrels(path: Path) -> Iterator[tuple[str, str, int]]:
    for number, line in _open_text(path):
        cells = line.split()
        if cells:
            yield _qrel(path, number, cells, columns=(0, 2, 3), expected="qid 0 docid grade")


def read_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """A qrels file as qid -> docid -> grade: TREC (``qid 0 docid grade``) or BEIR (``query-id<TAB>corpus-id<TAB>
    score``, header optional), told apart by the column count of the first line; plain or gzipped."""
    path = Path(path)
    first = next((line for _, line in _open_text(path) if line.strip()), None)
    if first is None:
        raise HarnessError(f"{path}: the qrels file is empty")
    columns = len(first.split())
    if columns == 4:
        rows = read_trec_qrels(path)
    elif columns == 3 or first.startswith("query-id"):
        rows = read_beir_qrels(path)
    else:
        raise HarnessError(f"{path}:1: not a qrels line ({columns} columns); expected TREC 'qid 0 docid grade' "
                           "or BEIR 'query-id<TAB>corpus-id<TAB>score'")
    qrels: dict[str, dict[str, int]] = {}
    for qid, docid, grade in rows:
        qrels.setdefault(qid, {})[docid] = grade
    return qrels


def read_run(path: str | Path) -> dict[str, dict[str, float]]:
    """A ranking as qid -> docid -> score: a TREC run (``qid Q0 docid rank score tag``, plain or gzipped), or
    JSON ``{qid: {docid: score}}`` (a ``.json`` file).

    TREC lines are read as trec_eval reads them (``get_trec_results.c``): blank lines and lines starting with
    ``#`` are skipped, text after the tag is ignored, the Q0 and rank columns are not used (the order comes
    from the scores). Where trec_eval would fail or guess, this raises HarnessError at ``file:line``: fewer
    than six columns, a score that is not a number (trec_eval's ``atof`` would read it as 0) or is NaN, and a
    document ranked twice for one query (trec_eval stops with "duplicate docs").
    """
    path = Path(path)
    if path.name.endswith((".json", ".json.gz")):
        return _json_run(path)
    run: dict[str, dict[str, float]] = {}
    for number, line in _open_text(path):
        cells = line.split()
        if not cells or cells[0].startswith("#"):
            continue
        if len(cells) < 6:
            raise HarnessError(f"{path}:{number}: expected 'qid Q0 docid rank score tag', got {cells!r}")
        qid, _, docid, _, score = cells[:5]
        try:
            value = float(score)
        except ValueError:
            value = math.nan
        if math.isnan(value):
            raise HarnessError(f"{path}:{number}: score {score!r} of document {docid!r} (query {qid!r}) is not a "
                               "number; the fifth column must be the retrieval score")
        docs = run.setdefault(qid, {})
        if docid in docs:
            raise HarnessError(f"{path}:{number}: document {docid!r} is ranked twice for query {qid!r}; "
                               "trec_eval refuses such a run too (\"duplicate docs\"): keep one line per document")
        docs[docid] = value
    if not run:
        raise HarnessError(f"{path}: the run is empty")
    return run


def _json_run(path: Path) -> dict[str, dict[str, float]]:
    text = "".join(line for _, line in _open_text(path))

    def unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
        keys = [key for key, _ in pairs]
        if len(set(keys)) < len(keys):  # json.loads would keep the last silently
            twice = next(k for i, k in enumerate(keys) if k in keys[:i])
            raise HarnessError(f"{path}: key {twice!r} appears twice in one object (a document ranked twice for a "
                               "query, or a query given twice); keep one")
        return dict(pairs)

    try:
        data = json.loads(text, object_pairs_hook=unique)
        run = {str(qid): {str(docid): float(score) for docid, score in docs.items()} for qid, docs in data.items()}
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
        raise HarnessError(f"{path}: expected JSON {{query id: {{document id: score}}}} ({exc})") from None
    bad = next(((q, d, s) for q, docs in run.items() for d, s in docs.items() if math.isnan(s)), None)
    if bad:
        raise HarnessError(f"{path}: score of document {bad[1]!r} (query {bad[0]!r}) is not a number")
    if not run:
        raise HarnessError(f"{path}: the run is empty")
    return run


def _qrel(path: Path, number: int, cells: list[str], *, columns: tuple[int, int, int], expected: str):
    q, d, g = columns
    try:
        return cells[q], cells[d], int(cells[g])
    except (IndexError, ValueError):
        raise HarnessError(f"{path}:{number}: expected '{expected}', got {cells!r}") from None


def _require(path: Path, hint: str) -> Path:
    if not path.exists():
        raise HarnessError(f"{path}: not found; {hint}")
    return path


# ---------------------------------------------------------------- BEIR folder

BEIR_LAYOUT = "a BEIR folder holds corpus.jsonl[.gz], queries.jsonl[.gz] and qrels/<split>.tsv"


def _load_beir(spec: DatasetSpec, cache: Path | None) -> Dataset:
    folder = spec.path
    assert folder is not None
    if not folder.is_dir():
        raise HarnessError(f"dataset {spec.name!r}: folder {folder} not found; {BEIR_LAYOUT}")
    corpus = _first_existing(folder, "corpus.jsonl")
    queries = _first_existing(folder, "queries.jsonl")
    qrels = folder / "qrels" / f"{spec.split}.tsv"
    if not qrels.exists():
        splits = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise HarnessError(
            f"{qrels}: not found; split {spec.split!r} has no qrels file "
            f"(available splits: {', '.join(splits) or 'none'}); {BEIR_LAYOUT}"
        )
    docs, index = open_file_corpus(corpus, "beir", cache=cache, where=str(folder))
    return build_dataset(
        name=spec.name,
        source={"kind": "beir", "path": str(folder), "split": spec.split},
        docs=docs,
        index=index,
        queries=read_jsonl(queries, what="query"),
        qrels=read_beir_qrels(qrels),
        relevance_level=spec.relevance_level,
        drop_self_hits=spec.drop_self_hits,
        where=str(folder),
    )


def _first_existing(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.exists():
            return candidate
    raise HarnessError(f"{folder / name}: not found (nor {name}.gz); {BEIR_LAYOUT}")


def corpus_file(path: Path) -> tuple[Path, str]:
    """The passage file of a BEIR folder or an MS MARCO collection.tsv, and its line format."""
    if path.is_dir():
        return _first_existing(path, "corpus.jsonl"), "beir"
    if path.is_file():
        return path, "tsv"
    raise HarnessError(f"{path}: not found; give a BEIR folder (with corpus.jsonl) or a collection.tsv")


def iter_corpus_texts(path: Path) -> Iterator[str]:
    """The passage texts of a BEIR folder or an MS MARCO collection.tsv, file order, one at a time."""
    file, fmt = corpus_file(path)
    return (text for _, text in iter_file_docs(file, fmt))


# ---------------------------------------------------------------- MS MARCO TSV files


def _load_msmarco_tsv(spec: DatasetSpec, cache: Path | None) -> Dataset:
    assert spec.collection and spec.queries and spec.qrels
    hint = "MS MARCO TSV sources are collection.tsv (pid<TAB>text), queries.*.tsv (qid<TAB>text), qrels.*.tsv"
    for path in (spec.collection, spec.queries, spec.qrels):
        _require(path, hint)
    docs, index = open_file_corpus(spec.collection, "tsv", cache=cache, where=str(spec.collection.parent))
    return build_dataset(
        name=spec.name,
        source={"kind": "msmarco_tsv", "collection": str(spec.collection), "queries": str(spec.queries),
                "qrels": str(spec.qrels)},
        docs=docs,
        index=index,
        queries=read_tsv_pairs(spec.queries),
        qrels=read_trec_qrels(spec.qrels),
        relevance_level=spec.relevance_level,
        drop_self_hits=spec.drop_self_hits,
        where=str(spec.collection.parent),
    )


# ---------------------------------------------------------------- ir_datasets

# Where ir_datasets looks for already-extracted files, relative to $IR_DATASETS_HOME (see DESIGN.md).
IR_DATASETS_FILES: dict[str, list[str]] = {
    "msmarco-passage/dev/small": [
        "msmarco-passage/irds_version.txt (containing: v2)",
        "msmarco-passage/collection.tsv",
        "msmarco-passage/dev/small/queries.tsv",
        "msmarco-passage/dev/small/qrels",
    ],
    "msmarco-passage/trec-dl-2019/judged": [
        "msmarco-passage/irds_version.txt (containing: v2)",
        "msmarco-passage/collection.tsv",
        "msmarco-passage/trec-dl-2019/queries.tsv",
        "msmarco-passage/trec-dl-2019/qrels",
    ],
    "msmarco-passage/trec-dl-2020/judged": [
        "msmarco-passage/irds_version.txt (containing: v2)",
        "msmarco-passage/collection.tsv",
        "msmarco-passage/trec-dl-2020/queries.tsv.gz",
        "msmarco-passage/trec-dl-2020/qrels",
    ],
}


def ir_datasets_home() -> Path:
    return Path(os.environ.get("IR_DATASETS_HOME") or Path.home() / ".ir_datasets")


def offline() -> bool:
    return any(os.environ.get(var) == "1" for var in ("HARNESS_OFFLINE", "HF_HUB_OFFLINE"))


def missing_ir_datasets_files(dataset_id: str) -> list[str]:
    home = ir_datasets_home()
    return [f for f in IR_DATASETS_FILES.get(dataset_id, []) if not (home / f.split(" ")[0]).exists()]


def _offline_hint(dataset_id: str) -> str:
    files = IR_DATASETS_FILES.get(dataset_id)
    if not files:
        return "run once with network access, or set IR_DATASETS_HOME to a folder where ir_datasets has the files"
    listed = "\n".join(f"  $IR_DATASETS_HOME/{f}" for f in files)
    return f"place these files (IR_DATASETS_HOME={ir_datasets_home()}):\n{listed}"


def _load_ir_datasets(spec: DatasetSpec, cache: Path | None) -> Dataset:
    dataset_id = spec.ir_datasets
    assert dataset_id is not None
    import ir_datasets

    missing = missing_ir_datasets_files(dataset_id)
    if missing and offline():
        raise HarnessError(
            f"dataset {spec.name!r}: ir_datasets id {dataset_id!r} is not available offline "
            f"(missing: {', '.join(m.split(' ')[0] for m in missing)}); {_offline_hint(dataset_id)}"
        )
    try:
        source = ir_datasets.load(dataset_id)
    except KeyError:
        raise HarnessError(
            f"dataset {spec.name!r}: unknown ir_datasets id {dataset_id!r}; "
            "see https://ir-datasets.com for ids, e.g. msmarco-passage/dev/small"
        ) from None
    try:
        # Read here so that a download failure surfaces inside this try block. The corpus is spilled once into
        # the cache (ids + offset index), keyed by the docs namespace and the files ir_datasets reads.
        docs, index = open_docs_corpus(lambda: ((d.doc_id, _doc_text(d)) for d in source.docs_iter()),
                                       _ir_datasets_key(source, dataset_id), cache=cache,
                                       where=f"ir_datasets:{dataset_id}")
        queries = [(q.query_id, q.text) for q in source.queries_iter()]
        qrels = [(r.query_id, r.doc_id, int(r.relevance)) for r in source.qrels_iter()]
    except HarnessError:
        raise
    except Exception as exc:  # ir_datasets raises requests/OS/Runtime errors when a download fails
        raise HarnessError(
            f"dataset {spec.name!r}: ir_datasets could not provide {dataset_id!r} "
            f"({type(exc).__name__}: {exc}); {_offline_hint(dataset_id)}"
        ) from None
    return build_dataset(
        name=spec.name,
        source={"kind": "ir_datasets", "id": dataset_id},
        docs=docs,
        index=index,
        queries=queries,
        qrels=qrels,
        relevance_level=spec.relevance_level,
        drop_self_hits=spec.drop_self_hits,
        where=f"ir_datasets:{dataset_id}",
    )


def _ir_datasets_key(source, dataset_id: str) -> list:
    """What identifies an ir_datasets corpus: its docs namespace (subsets share one corpus), the home folder, and
    size and mtime of the corpus files we know it reads."""
    namespace = [dataset_id.split("/")[0], getattr(source, "docs_namespace", lambda: None)()]
    home = ir_datasets_home()
    files = sorted({f.split(" ")[0] for f in IR_DATASETS_FILES.get(dataset_id, []) if "collection" in f})
    return [*namespace, str(home.resolve()), *[file_stat(home / f) for f in files if (home / f).exists()]]


def _doc_text(doc: object) -> str:
    title = getattr(doc, "title", "") or ""
    return f"{title} {getattr(doc, 'text', '') or ''}".strip()
