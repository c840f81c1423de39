"""Score rankings this harness did not produce, and score stored rankings again (`harness evaluate`).

    harness evaluate --qrels QRELS --run RUN [--run RUN ...] --output DIR     # an external run -> a record
    harness evaluate RECORD_DIR [...] --metrics MAP,P@5 [--qrels MORE]         # a record's ranking, scored again

A run file (TREC, plain or gzipped, or JSON ``{qid: {docid: score}}``; read by ``datasets.read_run``) becomes a
record directory like `harness run` writes: record.json with ``source`` (kind "external": the file, its sha256,
its tag, counted warnings) and no ``encoder`` or ``performance`` (nothing was encoded or timed), the run file
itself (copied unchanged), per-query values and the Recall@k curve. `compare`, `check` and `report` read it like
any other record. Scoring the stored ranking of a record again reads only its run file and its data set's
judgments: nothing is encoded.

Queries are scored in batches, so a run of MS MARCO dev's shape (7M lines) is never copied whole into
pytrec_eval: the per-query values are those of ``metrics.evaluate`` and the means are over every judged query.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.input.datasets import Dataset, load_dataset, read_qrels, read_qrels_with_warnings, read_run
from harness.input.suite import DEFAULT_METRICS, DatasetSpec, load_suite, shipped_folder
from harness.scoring.metrics import holes, means, parse_measure
from harness.scoring.records import (
    CountedWarning,
    DatasetCounts,
    DatasetInfo,
    EncoderInfo,
    Environment,
    Performance,
    QrelsSource,
    RecordFiles,
    RunRecord,
    RunSource,
    SuiteInfo,
    find_records,
    load,
    record_file,
    score,
    write_run_record,
)
from harness.scoring.scored import ScoredRun, ordered
from harness.vocabulary.digest import file_sha256
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.timing import utc_now
from harness.vocabulary.validation import validated

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
EXAMPLES = 5
_RUN_SUFFIXES = (".trec", ".txt", ".run", ".tsv", ".json")


# ---------------------------------------------------------------- judgments


@dataclass(frozen=True)
class Judgments:
    """What a ranking is scored against: the record's dataset description, its qrels, and the data set itself
    (texts, corpus ids) when the source has one."""

    info: DatasetInfo
    qrels: dict[str, dict[str, int]]
    dataset: Dataset | None = None


def load_judgments(qrels: PathLike | None = None, *, suite: PathLike | None = None, dataset: str | None = None,
                   split: str = "test", name: str | None = None, relevance_level: int | None = None) -> Judgments:
    """Judgments from a qrels file (TREC or BEIR), a BEIR folder, or a dataset of a suite (``suite`` + ``dataset``).
    A data set (folder or suite) is loaded whole, so that its records pair with `harness run`'s (same
    fingerprint); a qrels file stands alone (source kind "qrels")."""
    if suite is not None or dataset is not None:
        if qrels is not None or suite is None or dataset is None:
            raise HarnessError("give either --qrels, or --suite with --dataset (the dataset's name in the suite)")
        loaded_suite = load_suite(suite)
        spec = next((d for d in loaded_suite.datasets if d.name == dataset), None)
        if spec is None:
            names = ", ".join(d.name for d in loaded_suite.datasets)
            raise HarnessError(f"{suite}: no dataset named {dataset!r} (it has: {names})")
        updates: dict[str, object] = {"relevance_level": relevance_level} if relevance_level is not None else {}
        if name:
            updates["name"] = name
        return of_dataset(load_dataset(spec.model_copy(update=updates)))
    if qrels is None:
        raise HarnessError("no judgments: give --qrels (a qrels file or BEIR folder) or --suite and --dataset")
    path = Path(qrels)
    if path.is_dir():
        spec = _validated_spec({"name": name or path.resolve().name, "path": path.resolve(), "split": split,
                                "relevance_level": 1 if relevance_level is None else relevance_level})
        return of_dataset(load_dataset(spec))
    if not path.is_file():
        raise HarnessError(f"{path}: qrels not found; give a TREC or BEIR qrels file, or a BEIR folder")
    judged, warnings = read_qrels_with_warnings(path)
    info = DatasetInfo(name=name or _stem(path), source=QrelsSource(path=str(path.resolve())),
                       fingerprint=qrels_fingerprint(judged), counts=_qrels_counts(judged),
                       relevance_level=1 if relevance_level is None else relevance_level,
                       warnings=[CountedWarning(**vars(w)) for w in warnings])
    return Judgments(info, judged)


def of_dataset(dataset: Dataset) -> Judgments:
    return Judgments(DatasetInfo.of(dataset), dataset.qrels, dataset)


def judgments_of_record(directory: Path, record: RunRecord, *, texts: bool = False) -> Judgments:
    """The judgments a record was scored against, read again from its dataset source (whose fingerprint must
    still match: scores against changed files would not be the record's). ``texts``: the data set is needed."""
    info = record.dataset
    source = info.source
    if isinstance(source, QrelsSource):
        path = _existing(Path(source.path), directory, what="qrels file")
        judged = read_qrels(path)
        fingerprint = qrels_fingerprint(judged)
        dataset = None
    else:
        raw = source.model_dump()
        kind = raw.pop("kind")
        if kind == "beir":
            raw["path"] = _existing(Path(raw["path"]), directory, what="dataset folder")
        elif kind == "ir_datasets":
            raw = {"ir_datasets": raw["id"]}
        else:
            raw = {k: _existing(Path(v), directory, what=f"MS MARCO {k} file") for k, v in raw.items()}
        spec = _validated_spec({"name": info.name, **raw, "relevance_level": info.relevance_level,
                                "drop_self_hits": info.drop_self_hits})
        dataset = load_dataset(spec)
        judged, fingerprint = dataset.qrels, dataset.fingerprint
    if fingerprint != info.fingerprint:
        raise HarnessError(f"{directory}: its dataset {info.name!r} has changed since the record was written "
                           f"(fingerprint {fingerprint}, record {info.fingerprint}); scores against other data "
                           "would not be this record's: rerun it, or evaluate its run file with --qrels")
    if texts and dataset is None:
        assert isinstance(source, QrelsSource)  # every other source loads its dataset
        raise HarnessError(f"{directory}: scored against a qrels file only ({source.path}), so no document texts "
                           "are known; pass --data with the BEIR folder that holds its corpus")
    return Judgments(info, judged, dataset)


def with_added_qrels(judgments: Judgments, path: PathLike) -> Judgments:
    """Judgments with those of a qrels file added (a pair judged in both takes the file's grade)."""
    added = read_qrels(path)
    merged = {qid: dict(docs) for qid, docs in judgments.qrels.items()}
    for qid, docs in added.items():
        merged.setdefault(qid, {}).update(docs)
    fingerprint = hashlib.sha256(f"{judgments.info.fingerprint}+{qrels_fingerprint(added)}".encode()).hexdigest()
    counts = judgments.info.counts.model_copy(update={"queries": len(merged),
                                                      "qrels": sum(len(d) for d in merged.values())})
    info = judgments.info.model_copy(update={"fingerprint": fingerprint[:16], "counts": counts})
    return Judgments(info, merged, judgments.dataset)


def qrels_fingerprint(qrels: Mapping[str, Mapping[str, int]]) -> str:
    digest = hashlib.sha256()
    for qid in sorted(qrels):
        for docid, grade in sorted(qrels[qid].items()):
            digest.update(f"{qid}\t{docid}\t{grade}\n".encode())
    return digest.hexdigest()[:16]


def _qrels_counts(qrels: Mapping[str, Mapping[str, int]]) -> DatasetCounts:
    return DatasetCounts(documents=None, queries=len(qrels), qrels=sum(len(d) for d in qrels.values()))


def _validated_spec(raw: dict[str, object]) -> DatasetSpec:
    return validated(DatasetSpec, raw, "dataset options")


def _existing(path: Path, directory: Path, *, what: str) -> Path:
    """A path stored in a record; a record written in another checkout still finds a shipped data set."""
    if path.exists():
        return path
    for part in range(len(path.parts) - 1, 0, -1):  # .../data/<name>/...: the same file under this checkout
        if path.parts[part - 1] == "data":
            for root in (Path("data"), shipped_folder("data")):
                candidate = root.joinpath(*path.parts[part:])
                if candidate.exists():
                    return candidate.resolve()
            break
    raise HarnessError(f"{directory}: the record's {what} {path} is not there any more; restore it, or evaluate "
                       "the record's run file with --qrels")


# ---------------------------------------------------------------- run files


@dataclass(frozen=True)
class RunFile:
    path: Path
    run: dict[str, dict[str, float]]
    sha256: str
    tag: str | None


def read_run_file(path: PathLike) -> RunFile:
    """A run file read and validated (``datasets.read_run``), with its sha256 and its tag."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{path}: run file not found")
    run = read_run(path)
    return RunFile(path, run, file_sha256(path), None if _is_json(path) else _tag(path))


def _is_json(path: Path) -> bool:
    return path.name.endswith((".json", ".json.gz"))


def _tag(path: Path) -> str | None:
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            cells = line.split()
            if cells and not cells[0].startswith("#"):
                return cells[5] if len(cells) > 5 else None
    return None


def _stem(path: Path) -> str:
    name = path.name.removesuffix(".gz")
    for suffix in _RUN_SUFFIXES:
        name = name.removesuffix(suffix)
    return name or path.name


def _stored_name(path: Path) -> str:
    """The run file's name inside a record: run.trec / run.json, gzipped if the source was."""
    base = "run.json" if _is_json(path) else "run.trec"
    return base + ".gz" if path.suffix == ".gz" else base


# ---------------------------------------------------------------- checks


def run_warnings(run: Mapping[str, Mapping[str, float]], judgments: Judgments, *, where: str) -> list[CountedWarning]:
    """What is odd about a run against these judgments, counted; a run that cannot be about them is an error."""
    qrels = judgments.qrels
    shared = [q for q in run if q in qrels]
    if not shared:
        raise HarnessError(f"{where}: none of its {len(run)} query ids is in the qrels of {judgments.info.name!r} "
                           f"(run: {_examples(run)}; qrels: {_examples(qrels)}); is it a run of another topic set?")
    if not any(d in qrels[q] for q in shared for d in run[q]):
        docs = sorted({d for q in shared for d in list(run[q])[:2]})
        raise HarnessError(f"{where}: its queries match the qrels but none of the documents it ranks is judged "
                           f"(run: {docs[:EXAMPLES]}; qrels: {_examples({d for q in shared for d in qrels[q]})}); "
                           "are the document ids of another collection?")
    warnings = []
    extra = [q for q in run if q not in qrels]
    if extra:
        warnings.append(CountedWarning(kind="queries-not-in-qrels", count=len(extra), examples=sorted(extra)[:EXAMPLES],
                                       message=f"{len(extra)} of the run's {len(run)} queries are not in the qrels; "
                                               "they are not scored"))
    missing = [q for q in qrels if q not in run]
    if missing:
        warnings.append(CountedWarning(kind="judged-queries-not-in-run", count=len(missing),
                                       examples=sorted(missing)[:EXAMPLES],
                                       message=f"{len(missing)} of {len(qrels)} judged queries have no ranking in "
                                               "the run; they score 0 (means are over every judged query)"))
    if judgments.dataset is not None:
        corpus = set(judgments.dataset.doc_ids)
        unknown = {d for docs in run.values() for d in docs if d not in corpus}
        if unknown:
            lines = sum(1 for docs in run.values() for d in docs if d not in corpus)
            warnings.append(CountedWarning(kind="documents-not-in-corpus", count=lines,
                                           examples=sorted(unknown)[:EXAMPLES],
                                           message=f"{lines} ranked documents ({len(unknown)} distinct) are not in "
                                                   f"the corpus of {judgments.info.name!r}; they count as unjudged"))
    for warning in warnings:
        log.warning("%s: %s (e.g. %s)", where, warning.message, ", ".join(warning.examples))
    return warnings


def _examples(ids: Iterable[str]) -> list[str]:
    return sorted(ids)[:EXAMPLES]


# ---------------------------------------------------------------- records


def evaluate_runs(
    runs: Sequence[PathLike],
    *,
    qrels: PathLike | None = None,
    suite: PathLike | None = None,
    dataset: str | None = None,
    split: str = "test",
    dataset_name: str | None = None,
    metrics: Sequence[str] | None = None,
    relevance_level: int | None = None,
    names: Sequence[str] | None = None,
    output: PathLike | None = None,
) -> list[ScoredRun]:
    """Score run files (TREC, plain or gzipped, or JSON ``{qid: {docid: score}}``) against judgments: a qrels file
    or BEIR folder (``qrels``), or a dataset of a suite (``suite`` + ``dataset``). Each run becomes a record
    (written under ``output`` if given) named ``names[i]`` or after its file. ``metrics`` default to the suite's
    (or the harness defaults); ``relevance_level`` to the dataset's (1 for a qrels file)."""
    if not runs:
        raise HarnessError("give at least one run file (--run)")
    if names is not None and len(names) != len(runs):
        raise HarnessError(f"{len(names)} names for {len(runs)} runs; give one --name per --run, in order")
    metric_names = _metric_names(metrics, suite)
    judgments = load_judgments(qrels, suite=suite, dataset=dataset, split=split, name=dataset_name,
                               relevance_level=relevance_level)
    suite_info = SuiteInfo(name=load_suite(suite).name, path=str(suite)) if suite else SuiteInfo(name="external")
    environment = _environment()
    results = []
    for i, path in enumerate(runs):
        run_file = read_run_file(path)
        warnings = run_warnings(run_file.run, judgments, where=str(path))
        name = names[i] if names else _stem(run_file.path)
        source = RunSource(kind="external", name=name, path=str(run_file.path.resolve()), sha256=run_file.sha256,
                           tag=run_file.tag, warnings=warnings)
        files = RecordFiles(run=_stored_name(run_file.path))
        results.append(_scored(run_file.run, judgments, metric_names, suite=suite_info, source=source, files=files,
                               environment=environment, encoder=None, performance=None, copy_run=run_file.path,
                               output=output))
    return results


def evaluate_run(run: PathLike, *, name: str | None = None, **options) -> ScoredRun:
    """`evaluate_runs` for one run file (same options)."""
    return evaluate_runs([run], names=None if name is None else [name], **options)[0]


def rescore(
    records: Sequence[PathLike] | PathLike,
    *,
    metrics: Sequence[str] | None = None,
    qrels: PathLike | None = None,
    relevance_level: int | None = None,
    output: PathLike | None = None,
) -> list[ScoredRun]:
    """Score the stored ranking of record directories again, with other ``metrics`` (default: the record's) and/or
    more judgments (``qrels``: a qrels file whose judgments are added to the dataset's). Nothing is encoded; the
    new record keeps the original's encoder and timings and says what it was scored from (``source``)."""
    if isinstance(records, (str, os.PathLike)):
        records = [records]
    results = []
    environment = _environment()
    for directory in find_records([Path(r) for r in records]):
        record = load(directory)
        if not isinstance(record, RunRecord):
            continue  # a profile record has no ranking
        judgments = judgments_of_record(directory, record)
        if relevance_level is not None:
            judgments = Judgments(judgments.info.model_copy(update={"relevance_level": relevance_level}),
                                  judgments.qrels, judgments.dataset)
        if qrels is not None:
            judgments = with_added_qrels(judgments, qrels)
        run_path = record_file(directory, record, "run")
        run_file = read_run_file(run_path)
        warnings = run_warnings(run_file.run, judgments, where=str(run_path))
        origin = record.source
        source = RunSource(kind="record", name=record.name, path=str(directory.resolve()), sha256=run_file.sha256,
                           tag=origin.tag if origin else run_file.tag,
                           added_qrels=str(Path(qrels).resolve()) if qrels is not None else None, warnings=warnings)
        files = RecordFiles(run=_stored_name(run_path))
        results.append(_scored(run_file.run, judgments, _metric_names(metrics or list(record.metrics), None),
                               suite=record.suite, source=source, files=files, environment=environment,
                               encoder=record.encoder, performance=record.performance, copy_run=run_path,
                               output=output, top_k=record.top_k))
    if not results:
        raise HarnessError(f"no run records under {', '.join(map(str, records))}")
    return results


def _scored(run: dict[str, dict[str, float]], judgments: Judgments, metrics: list[str], *, suite: SuiteInfo,
            source: RunSource, files: RecordFiles, environment: Environment, encoder: EncoderInfo | None,
            performance: Performance | None, copy_run: Path, output: PathLike | None,
            top_k: int | None = None) -> ScoredRun:
    level = judgments.info.relevance_level
    # The depth of the ranking scored: that of the judged queries (the others are not scored, however long).
    depth = top_k or max(len(run.get(qid, ())) for qid in judgments.qrels)
    values, curve = score(judgments.qrels, run, metrics, relevance_level=level, top_k=depth)
    record = RunRecord(suite=suite, dataset=judgments.info, encoder=encoder, metrics=means(values),
                       metric_definitions={m: parse_measure(m).definition(level) for m in metrics}, top_k=depth,
                       performance=performance, environment=environment, created_at=utc_now(), files=files,
                       source=source, holes=holes(judgments.qrels, run, relevance_level=level))
    if output is None:
        ranking = {qid: [(doc, run[qid][doc]) for doc in ids] for qid, ids in ordered(run).items()}
        return ScoredRun(record, values, ranking=ranking, recall_curve=curve)
    path = write_run_record(Path(output), record, run=copy_run, per_query=values, recall_curve=curve)
    return ScoredRun(record, values, recall_curve=curve, path=path)


def _metric_names(metrics: Sequence[str] | None, suite: PathLike | None) -> list[str]:
    if metrics:
        names = list(dict.fromkeys(metrics))
    else:
        names = list(load_suite(suite).metrics) if suite else list(DEFAULT_METRICS)
    for name in names:
        parse_measure(name)  # unknown names fail before any file is read
    return names


def _environment() -> Environment:
    from harness.vocabulary import timing

    return Environment.model_validate(timing.environment())
