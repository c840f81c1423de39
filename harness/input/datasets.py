"""Load a BEIR folder, an ir_datasets id or MS MARCO TSV files into one `Dataset`.

Every loader checks what it reads (duplicate ids, empty splits, bad encodings, dangling qrels)
and raises `HarnessError` naming the file, the line and the fix.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from harness.input.corpus import (
    Corpus,
    IndexDir,
    as_strings,
    check_id,
    decode_line,
    file_stat,
    iter_file_docs,
    line_error,
    memory_corpus,
    open_docs_corpus,
    open_file_corpus,
    parse_line,
    raw_lines,
)
from harness.input.suite import DatasetSpec
from harness.vocabulary.errors import HarnessError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataWarning:
    """Something odd in a data file that did not stop the load, counted (the record keeps it as a CountedWarning)."""

    kind: str  # duplicate-qrels
    count: int
    message: str
    examples: list[str]


@dataclass(frozen=True)
class Dataset:
    """A retrieval test collection, canonically ordered.

    Documents are sorted by id, descending: exact search breaks score ties by lower row index,
    so this order makes our rankings break ties the way trec_eval does (docno descending).
    The corpus keeps the ids (a numpy array) and streams the texts in that order (`harness.input.corpus`).
    Only the queries judged in the chosen qrels split are kept, sorted by id. `warnings`: what is odd in the
    files but did not stop the load, counted (repeated qrels lines).
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
    warnings: list[DataWarning] = field(default_factory=list, compare=False)

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
    saved there for the next load (`harness.input.corpus`); without, plain corpus files are indexed in memory."""
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
    qrels: tuple[dict[str, dict[str, int]], list[DataWarning]],
    relevance_level: int = 1,
    drop_self_hits: bool = False,
    where: str = "",
    index: IndexDir | None = None,
) -> Dataset:
    """Assemble and validate a Dataset from a Corpus (or (id, text) pairs, held in memory), a (qid, text) stream
    and the qrels with their warnings (`collect_qrels`). `index`, where the corpus has a saved index, caches the
    fingerprint."""
    where = where or name
    corpus = docs if isinstance(docs, Corpus) else memory_corpus(docs, where=where)
    judged, warnings = qrels
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
        warnings=warnings,
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
# The rules for TREC qrels and runs, and where they are stricter than trec_eval: docs/design.md, "Reading TREC
# qrels and runs".

EXAMPLES = 5
# Whitespace that Python's str.split() splits on and trec_eval's (C isspace: space, \t, \n, \v, \f, \r) does not,
# e.g. U+00A0, U+2003, U+001F; and NUL, which ends a C string. _C0: the ASCII ones, for a quick check per line.
_NOT_TREC_SPACE = re.compile(r"[^\S \t\n\v\f\r]|\x00")
_C0 = b"\x00\x1c\x1d\x1e\x1f"
_INTEGER = re.compile(r"[+-]?[0-9]+")
_TREC_QRELS = "qid 0 docid grade"
_BEIR_QRELS = "query-id<TAB>corpus-id<TAB>score"


def _open_text(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line number, line) of a text file (optionally gzipped), strictly UTF-8, a leading BOM skipped."""
    for number, _, raw in raw_lines(path):
        yield number, decode_line(path, number, raw)


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def read_jsonl(path: Path, *, what: str) -> Iterator[tuple[str, str]]:
    for number, line in _open_text(path):
        if line.strip():
            yield parse_line(path, number, line, "beir", what)


def read_tsv_pairs(path: Path) -> Iterator[tuple[str, str]]:
    for number, line in _open_text(path):
        if line.strip():
            yield parse_line(path, number, line, "tsv", "query")


def _trec_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, columns) of the lines of a TREC qrels or run file that carry data: blank lines and comments
    (first non-blank character '#') are skipped; columns are split where trec_eval splits them."""
    for number, _, raw in raw_lines(path):
        line = decode_line(path, number, raw)
        cells = line.split()
        if not cells or cells[0].startswith("#"):
            continue
        if not raw.isascii() or len(raw.translate(None, _C0)) < len(raw):  # else the search cannot match
            odd = _NOT_TREC_SPACE.search(line)
            if odd:
                raise line_error(path, number, f"contains {odd.group()!r}: Python would split the line there and "
                                               "trec_eval would not (or, for NUL, end it), so ids cannot hold it; "
                                               "replace it")
        yield number, cells


def _grade(path: Path, number: int, cell: str, expected: str) -> int:
    if not _INTEGER.fullmatch(cell):
        raise line_error(path, number, f"expected '{expected}' with an integer grade, got {cell!r} (trec_eval "
                                       "would read its leading digits only, or 0)")
    return int(cell)


def read_beir_qrels(path: Path) -> Iterator[tuple[int, str, str, int]]:
    """(line number, qid, docid, grade) of a BEIR qrels file: three tab-separated columns, header optional."""
    for number, line in _open_text(path):
        if not line.strip() or _is_comment(line):
            continue
        cells = line.rstrip("\r\n").split("\t")
        if number == 1 and cells[:2] == ["query-id", "corpus-id"]:
            continue
        if len(cells) != 3:
            raise line_error(path, number, f"expected '{_BEIR_QRELS}', got {cells!r}")
        where = f"{path}:{number}"
        yield (number, check_id(cells[0], where, "query"), check_id(cells[1], where),
               _grade(path, number, cells[2], _BEIR_QRELS))


def read_trec_qrels(path: Path) -> Iterator[tuple[int, str, str, int]]:
    """(line number, qid, docid, grade) of a TREC qrels file: four columns, the second ignored."""
    for number, cells in _trec_lines(path):
        if len(cells) != 4:
            raise line_error(path, number, f"expected '{_TREC_QRELS}' (four columns; trec_eval reports any other "
                                           f"line as malformed), got {cells!r}")
        yield number, cells[0], cells[2], _grade(path, number, cells[3], _TREC_QRELS)


def collect_qrels(rows: Iterable[tuple[int, str, str, int]], *, where: str,
                  ) -> tuple[dict[str, dict[str, int]], list[DataWarning]]:
    """qid -> docid -> grade from (line number, qid, docid, grade) rows, and the warnings about them. A pair judged
    twice with two grades is refused (trec_eval's result would depend on its sort); a line repeating an earlier
    one is counted in a warning (also logged) and the pair counts once. For ir_datasets the line number is the
    row's position in qrels_iter()."""
    qrels: dict[str, dict[str, int]] = {}
    lines: dict[str, dict[str, int]] = {}
    repeats: list[str] = []
    for number, qid, docid, grade in rows:
        judged = qrels.setdefault(qid, {})
        if docid not in judged:
            judged[docid] = grade
            lines.setdefault(qid, {})[docid] = number
        elif judged[docid] == grade:
            repeats.append(f"{qid} {docid}")
        else:
            raise HarnessError(f"{where}:{number}: query {qid!r}, document {docid!r} is judged {grade} here and "
                               f"{judged[docid]} at line {lines[qid][docid]}; keep the right one of the two lines")
    if not repeats:
        return qrels, []
    warning = DataWarning(kind="duplicate-qrels", count=len(repeats), examples=repeats[:EXAMPLES],
                          message=f"{len(repeats)} qrels lines repeat an earlier line (same query, document and "
                                  "grade); each pair counts once")
    log.warning("%s: %s (e.g. %s)", where, warning.message, ", ".join(warning.examples))
    return qrels, [warning]


def read_qrels_with_warnings(path: str | os.PathLike[str]) -> tuple[dict[str, dict[str, int]], list[DataWarning]]:
    """A qrels file as qid -> docid -> grade, and its warnings (`collect_qrels`): TREC (``qid 0 docid grade``) or
    BEIR (``query-id<TAB>corpus-id<TAB>score``, header optional), told apart by the column count of the first
    line that is not blank or a comment; plain or gzipped."""
    path = Path(path)
    first = next(((n, line) for n, line in _open_text(path) if line.strip() and not _is_comment(line)), None)
    if first is None:
        raise HarnessError(f"{path}: the qrels file has no judgments")
    number, line = first
    columns = len(line.split())
    if columns == 4:
        rows = read_trec_qrels(path)
    elif columns == 3 or line.startswith("query-id"):
        rows = read_beir_qrels(path)
    else:
        raise HarnessError(f"{path}:{number}: not a qrels line ({columns} columns); expected TREC '{_TREC_QRELS}' "
                           f"or BEIR '{_BEIR_QRELS}'")
    return collect_qrels(rows, where=str(path))


def read_qrels(path: str | os.PathLike[str]) -> dict[str, dict[str, int]]:
    """`read_qrels_with_warnings` without the warnings (they are logged)."""
    return read_qrels_with_warnings(path)[0]


def read_run(path: str | os.PathLike[str]) -> dict[str, dict[str, float]]:
    """A ranking as qid -> docid -> score: a TREC run (``qid Q0 docid rank score tag``, plain or gzipped), or
    JSON ``{qid: {docid: score}}`` (a ``.json`` file).

    TREC lines are read as trec_eval reads them (``get_trec_results.c``): blank lines and lines starting with
    ``#`` are skipped, text after the tag is ignored, the Q0 and rank columns are not used (the order comes
    from the scores). Where trec_eval would fail or guess, this raises HarnessError at ``file:line``: fewer
    than six columns, a score that is not a finite decimal number (trec_eval's ``atof`` would read ``high`` as 0
    and ``1_000`` as 1), whitespace inside a column that trec_eval does not split on, and a document ranked twice
    for one query (trec_eval stops with "duplicate docs").
    """
    path = Path(path)
    if path.name.endswith((".json", ".json.gz")):
        return _json_run(path)
    run: dict[str, dict[str, float]] = {}
    for number, cells in _trec_lines(path):
        if len(cells) < 6:
            raise line_error(path, number, f"expected 'qid Q0 docid rank score tag', got {cells!r}")
        qid, _, docid, _, score = cells[:5]
        value = _decimal(score)
        if not math.isfinite(value):
            raise line_error(path, number, f"score {score!r} of document {docid!r} (query {qid!r}) is not a number "
                                           "that trec_eval and Python read alike; the fifth column must be the "
                                           "retrieval score, a finite decimal such as 12, -1.5e3 or .5")
        docs = run.setdefault(qid, {})
        if docid in docs:
            raise HarnessError(f"{path}:{number}: document {docid!r} is ranked twice for query {qid!r}; "
                               "trec_eval refuses such a run too (\"duplicate docs\"): keep one line per document")
        docs[docid] = value
    if not run:
        raise HarnessError(f"{path}: the run is empty")
    return run


def _decimal(cell: str) -> float:
    """A score in the decimal notation that C's strtod and Python's float read alike (``12``, ``-1.5e3``,
    ``.5``); NaN for anything else: Python also reads ``1_000``, ``inf``, ``nan`` and non-ASCII digits."""
    try:
        value = float(cell)
    except ValueError:
        return math.nan
    return value if cell.isascii() and "_" not in cell and math.isfinite(value) else math.nan


def _json_run(path: Path) -> dict[str, dict[str, float]]:
    text = "".join(line for _, line in _open_text(path))
    shape = f"{path}: expected JSON {{query id: {{document id: score}}}}"

    def unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
        keys = [key for key, _ in pairs]
        if len(set(keys)) < len(keys):  # json.loads would keep the last silently
            twice = next(k for i, k in enumerate(keys) if k in keys[:i])
            raise HarnessError(f"{path}: key {twice!r} appears twice in one object (a document ranked twice for a "
                               "query, or a query given twice); keep one")
        return dict(pairs)

    try:
        data = json.loads(text, object_pairs_hook=unique)
    except json.JSONDecodeError as exc:
        raise HarnessError(f"{shape} ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(docs, dict) for docs in data.values()):
        raise HarnessError(f"{shape}, got {text.strip()[:60]!r}")
    run = {}
    for qid, docs in data.items():
        check_id(qid, str(path), "query")
        run[qid] = {check_id(docid, str(path)): _json_score(shape, qid, docid, score) for docid, score in docs.items()}
    if not run:
        raise HarnessError(f"{path}: the run is empty")
    return run


def _json_score(shape: str, qid: str, docid: str, score: object) -> float:
    """A JSON number that is finite; not a string such as "15.7", true or null (nor NaN, which json accepts)."""
    if type(score) is int or type(score) is float:  # bool is a subclass of int
        try:
            value = float(score)
        except OverflowError:  # an integer beyond a double's range
            value = math.inf
        if math.isfinite(value):
            return value
    raise HarnessError(f"{shape}: the score of document {docid!r} (query {qid!r}) is {json.dumps(score)}, not a "
                       "finite JSON number")


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
        qrels=collect_qrels(read_beir_qrels(qrels), where=str(qrels)),
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
        qrels=collect_qrels(read_trec_qrels(spec.qrels), where=str(spec.qrels)),
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
    where = f"ir_datasets:{dataset_id}"
    try:
        # Read here so that a download failure surfaces inside this try block. The corpus is spilled once into
        # the cache (ids + offset index), keyed by the docs namespace and the files ir_datasets reads.
        docs, index = open_docs_corpus(
            lambda: ((check_id(d.doc_id, f"{where} docs"), _doc_text(d)) for d in source.docs_iter()),
            _ir_datasets_key(source, dataset_id), cache=cache, where=where)
        queries = [(check_id(q.query_id, f"{where} queries", "query"), q.text) for q in source.queries_iter()]
        judged = f"{where} qrels"
        qrels = collect_qrels(((n, check_id(r.query_id, judged, "query"), check_id(r.doc_id, judged), int(r.relevance))
                               for n, r in enumerate(source.qrels_iter(), start=1)), where=judged)
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
        where=where,
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
