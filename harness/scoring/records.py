"""Records on disk (DESIGN.md "Record" contract): typed, versioned, read by one loader.

    <output>/<suite>--<dataset>--<encoder>--<UTC time>/
        record.json        RunRecord (schema_version, suite, dataset, encoder, metrics, performance, ...)
        run.trec           the ranking, TREC format
        per_query.json     {metric name as written in the suite: {query id: value}}
        recall_curve.json  RecallCurve: per-query Recall@k at the standard cut-offs (`curve_ks`)

`harness profile` writes a ProfileRecord (record.json only). `load(path)` reads both kinds, schema
1 (upgraded in memory) and 2. Directories are assembled under a hidden temporary name and renamed
into place, so a reader never sees half a record, and an existing record is never overwritten; the
temporary name holds the writer's pid and host, so that the next writer removes what a killed one left.
A record's files (``files``) are plain names inside its folder, joined to it by ``record_file`` only.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import Field, TypeAdapter, ValidationError, field_validator, model_validator

from harness.encode.chunks import EncodingHost
from harness.encode.load import LoadPoint
from harness.encode.settings import DocumentSettings, EncoderSettings, EndpointUsage, ServerInfo
from harness.encode.store import StoreOrigin
from harness.input.corpus import ID_BREAKERS, id_problem
from harness.input.indexes import IndexBackend, IndexKind
from harness.input.suite import ReuseEmbeddings
from harness.scoring.metrics import Holes, PerQuery, per_query_values
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.files import remove_dead_writers_folders, slug, writer_folder
from harness.vocabulary.precision import EngineName, Precision
from harness.vocabulary.statistics import Test
from harness.vocabulary.timing import Latency, PeakRssMethod, Throughput, hardware_key
from harness.vocabulary.validation import StrictModel, explain_errors

if TYPE_CHECKING:
    from harness.input.datasets import Dataset

SCHEMA_VERSION: Literal[2] = 2
READABLE_VERSIONS = (1, 2)
RECORD_FILE = "record.json"
RUN_FILE = "run.trec"
PER_QUERY_FILE = "per_query.json"
RECALL_CURVE_FILE = "recall_curve.json"
RUN_TAG = "harness"  # the TREC run tag of a name with nothing left to slug


# ------------------------------------------------------------------ run records

class SuiteInfo(StrictModel):
    name: str
    path: str | None = None


class BeirSource(StrictModel):
    kind: Literal["beir"] = "beir"
    path: str
    split: str = "test"


class MsmarcoTsvSource(StrictModel):
    kind: Literal["msmarco_tsv"] = "msmarco_tsv"
    collection: str
    queries: str
    qrels: str


class IrDatasetsSource(StrictModel):
    kind: Literal["ir_datasets"] = "ir_datasets"
    id: str


class QrelsSource(StrictModel):
    """Judgments only (`harness evaluate --qrels FILE`): no corpus or query texts are known."""

    kind: Literal["qrels"] = "qrels"
    path: str


DatasetSource = Annotated[BeirSource | MsmarcoTsvSource | IrDatasetsSource | QrelsSource,
                          Field(discriminator="kind")]


class DatasetCounts(StrictModel):
    documents: int | None  # None: a qrels file only, corpus unknown
    queries: int
    qrels: int
    qrels_unknown_documents: int = 0


class CountedWarning(StrictModel):
    """Something odd that did not stop an evaluation, counted: in an external run (``harness evaluate``) or in a
    data set's files."""

    kind: str  # e.g. queries-not-in-qrels, judged-queries-not-in-run, documents-not-in-corpus
    count: int = Field(gt=0)
    message: str
    examples: list[str] = []


class DatasetInfo(StrictModel):
    name: str
    source: DatasetSource
    fingerprint: str
    counts: DatasetCounts
    relevance_level: int = 1
    drop_self_hits: bool = False
    warnings: list[CountedWarning] = []  # what was odd in its files but did not stop the load (repeated qrels lines)

    @classmethod
    def of(cls, dataset: Dataset) -> DatasetInfo:
        return cls(name=dataset.name, source=dataset.source, fingerprint=dataset.fingerprint, counts=dataset.counts,
                   relevance_level=dataset.relevance_level, drop_self_hits=dataset.drop_self_hits,
                   warnings=[CountedWarning(**vars(w)) for w in dataset.warnings])


class DocumentEncoderInfo(StrictModel):
    """The model whose corpus embeddings the record's queries searched, when not the record's own encoder (a
    backward-compatibility run: the suite's ``document_model``)."""

    model: str
    fingerprint: str
    dimension: int
    settings: DocumentSettings
    record: str | None = None  # the record whose stored corpus embeddings were searched (document_model.record)


class VectorAgreement(StrictModel):
    """A sample of texts encoded by the server and by the offline model: how alike the two vectors of each are."""

    texts: int
    cosine_min: float
    cosine_mean: float
    norm_ratio_min: float  # |served| / |offline|
    norm_ratio_max: float
    worst: str  # the id of the text whose vectors agree least


class ServedEquality(StrictModel):
    """The endpoint against the offline model it should serve (`endpoint.reference_model`)."""

    reference_model: str
    reference_fingerprint: str
    min_cosine: float  # the bound each vector's cosine must reach
    passages: VectorAgreement
    queries: VectorAgreement
    verdict: Literal["equal", "differs"]
    reasons: list[str]  # why it differs, in words (empty when equal)


class EndpointInfo(StrictModel):
    """How a served encoder's texts were encoded (`engine: http`): the server as it described itself, the
    client's settings, the requests this record took (retries by kind) and, with a reference model, equality."""

    server: ServerInfo
    concurrency: int
    timeout_s: float
    retries_allowed: int
    usage: EndpointUsage
    tokens_counted_by_server: bool
    equality: ServedEquality | None = None


class EncoderInfo(StrictModel):
    name: str
    model: str  # the model that encoded the queries (and the corpus, unless `documents` says otherwise)
    fingerprint: str
    dimension: int
    settings: EncoderSettings
    documents: DocumentEncoderInfo | None = None  # None: this encoder also encoded the corpus
    revision: str | None = None  # the Hub revision the suite asked for (a branch, tag or commit)
    commit: str | None = None  # the Hub commit the model was loaded from (None: bundled, random or a local folder)
    version: str | None = None  # the version label: the suite's `version:`, a checkpoint's folder, `--label`
    endpoint: EndpointInfo | None = None  # engine http: the server that encoded


class EmbeddingStoreInfo(StrictModel):
    key: str | None  # None: embeddings held in memory only (`harness.evaluate_model`)
    dtype: str
    chunk_rows: int


class TimedRows(StrictModel):
    """A timed piece of corpus encoding: rows encoded and the seconds they took."""

    rows: int = Field(gt=0)
    seconds: float = Field(ge=0)


class ChunkTiming(StrictModel):
    """One embedding-store chunk's encoding time, and the pieces within it as the engine reported progress
    (consecutive batches, merged to at most ``encode.chunks.MAX_TIMED_PIECES`` per chunk; empty when not reported)."""

    rows: int
    seconds: float
    pieces: list[TimedRows] = []


class EmbeddingProvenance(StrictModel):
    """Where a record's corpus embeddings came from: encoded by this run ("this-run"), read from the embedding
    store ("cache"), or both: a store that an interrupted run had partly written, resumed ("cache+this-run")."""

    source: Literal["this-run", "cache", "cache+this-run"]
    reuse: ReuseEmbeddings  # the policy of the run
    chunks: int
    chunks_encoded: int
    versions: dict[str, str | None]  # engine code and libraries (``harness.encode.models.embedding_versions``)
    store: StoreOrigin | None  # None: held in memory only (``harness.evaluate_model``)

    @classmethod
    def of_chunks(cls, *, chunks: int, chunks_encoded: int, reuse: ReuseEmbeddings, versions: dict[str, str | None],
                  store: StoreOrigin | None) -> EmbeddingProvenance:
        return cls(source=cls._source(chunks, chunks_encoded), reuse=reuse, chunks=chunks,
                   chunks_encoded=chunks_encoded, versions=versions, store=store)

    @staticmethod
    def _source(chunks: int, chunks_encoded: int) -> str:
        return "cache" if chunks_encoded == 0 else "this-run" if chunks_encoded == chunks else "cache+this-run"

    @model_validator(mode="after")
    def _source_counts_chunks(self) -> EmbeddingProvenance:
        expected = self._source(self.chunks, self.chunks_encoded)
        if self.source != expected:
            raise ValueError(f"source {self.source!r} with {self.chunks_encoded} of {self.chunks} chunks encoded "
                             f"by this run should be {expected!r}")
        return self


class Performance(StrictModel):
    """What a run cost. Corpus figures come from the run that encoded the corpus (see ``corpus_from_cache``)."""

    corpus_encode_s: float
    corpus_tokens: int
    throughput: Throughput  # corpus encoding
    truncated_documents: int
    corpus_from_cache: bool
    # Who encoded the chunks encoded in this run (empty: all came from the store, or an older record).
    # Corpus passages/s is per encoding process: rows over the summed encode time of the chunks.
    encoding_hosts: list[EncodingHost] = []
    query_latency: Latency  # one query per call, milliseconds
    search_s: float
    queries_per_s_search: float | None
    # The process's resident high-water mark during this dataset x encoder (reset at its start where
    # `peak_rss_method` is "hwm-reset"): what earlier work still holds (models, data sets, earlier results) is in it.
    peak_rss_mb: float
    peak_gpu_mb: float | None
    embedding_store: EmbeddingStoreInfo
    # raw encode times per store chunk (the samples of `harness check`'s speed gate); empty in older records
    corpus_chunk_seconds: list[ChunkTiming] = []
    # Records that predate these fields: process-wide peaks, embedding origin unknown.
    peak_rss_method: PeakRssMethod = "process-peak"
    corpus_embeddings: EmbeddingProvenance | None = None
    # Resident set (MiB) when this dataset x encoder started, and how far its peak rose above that: what it
    # added (peak_rss_mb - rss_start_mb). None in older records; rss_added_mb also where peak_rss_method is
    # "process-peak" (the peak may predate the run).
    rss_start_mb: float | None = None
    rss_added_mb: float | None = None


class GpuInfo(StrictModel):
    name: str
    memory_gb: float
    count: int
    cuda: str | None = None
    capability: str | None = None
    driver: str | None = None


class Environment(StrictModel):
    """What a speed figure depends on (``harness.vocabulary.timing.environment()``)."""

    hostname: str
    platform: str
    python: str
    cpu_model: str
    cpu_count: int | None
    cpu_affinity: int | None
    torch_threads: int
    memory_total_gb: float
    libraries: dict[str, str | None]
    gpu: GpuInfo | None = None

    @property
    def hardware_key(self) -> str:
        """Two speed figures are comparable only when this key matches."""
        return hardware_key(self.model_dump())


_FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


class RecordFiles(StrictModel):
    """The files next to record.json, by role; ``recall_curve`` is None in records that predate it. Each is a
    plain file name in the record's folder (read through ``record_file``)."""

    run: str = RUN_FILE
    per_query: str = PER_QUERY_FILE
    recall_curve: str | None = RECALL_CURVE_FILE

    @field_validator("run", "per_query", "recall_curve")
    @classmethod
    def _plain_name(cls, name: str | None) -> str | None:
        if name is not None and not _FILE_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a file name in the record's folder; a record's files lie beside its "
                             f"record.json: give the plain name (like {RUN_FILE!r}), no folder, no '..'")
        return name


class RunSource(StrictModel):
    """Where a record's ranking came from when this record's run did not encode and search for it: a run file
    from elsewhere ("external": a BM25 baseline, a vendor API, a reranker), or the stored ranking of another
    record, scored again with other measures or judgments ("record")."""

    kind: Literal["external", "record"]
    name: str
    path: str  # the run file read (external) or the record directory scored again (record)
    sha256: str  # of the run file's bytes
    tag: str | None = None  # the TREC run tag (last column of the first line); None for JSON runs
    added_qrels: str | None = None  # a qrels file whose judgments were added to the dataset's
    warnings: list[CountedWarning] = []


class AnnRecall(StrictModel):
    """ANN recall@k: the share of the exact top k (exact search over the same embeddings) that the index returned
    in its top k, per query and its mean. Rows tied with the exact k-th score count as found."""

    k: int
    mean: float
    per_query: dict[str, float]


class ExactReference(StrictModel):
    """Exact search over the same embeddings in the same run: what the index is measured against."""

    metrics: dict[str, float]
    search_s: float
    queries_per_s: float
    search_latency: Latency | None  # batch-1 exact search; None where the corpus is too large to time it per query


class VersusExact(StrictModel):
    """One metric of the index's ranking against exact search's, paired over the queries."""

    metric: str
    exact: float
    index: float
    delta: float  # index - exact
    delta_ci: tuple[float, float]  # 95% paired bootstrap
    p: float  # two-sided, by ``test``
    test: Test
    wins: int
    ties: int
    losses: int
    margin: float | None = None  # the suite's non-inferiority margin for this metric (baseline.noninferior)
    lower: float | None = None  # one-sided (1 - alpha) lower bound of delta (paired t), with the margin
    noninferior: bool | None = None  # lower > -margin; None without a margin


class IndexInfo(StrictModel):
    """What searching through an index cost and what it changed: the record's ranking came from this index."""

    backend: IndexBackend
    backend_version: str
    kind: IndexKind
    label: str
    build: dict[str, int | str]  # resolved build settings (corpus-dependent defaults filled in)
    search: dict[str, int]  # search settings as applied
    key: str  # the built index's cache key (<cache>/indexes/<key>)
    from_cache: bool  # built by an earlier run: build_s is that run's
    build_s: float
    train_rows: int | None  # rows the index trained on (None: no training)
    bytes_on_disk: int
    bytes_per_vector: float
    resident_mb: float | None  # the resident set added by loading it for search
    build_peak_rss_mb: float | None
    search_s: float  # the whole query set, batched
    queries_per_s: float
    search_latency: Latency  # one query per call
    ann_recall: list[AnnRecall]
    exact: ExactReference
    alpha: float
    versus_exact: list[VersusExact]


class RunRecord(StrictModel):
    schema_version: Literal[2] = SCHEMA_VERSION
    kind: Literal["run"] = "run"
    suite: SuiteInfo
    dataset: DatasetInfo
    encoder: EncoderInfo | None = None  # None: an external run (see ``source``)
    metrics: dict[str, float]
    metric_definitions: dict[str, str]
    top_k: int
    performance: Performance | None = None  # None: an external run, nothing was timed
    environment: Environment
    created_at: str
    files: RecordFiles = RecordFiles()
    source: RunSource | None = None  # None: encoded and searched by this record's run
    holes: Holes | None = None  # judgment holes of the top 10; None in records that predate it
    index: IndexInfo | None = None  # None: exact search

    @model_validator(mode="after")
    def _named(self) -> RunRecord:
        if self.encoder is None and self.source is None:
            raise ValueError("a run record names its encoder, or its source when the run came from elsewhere")
        return self

    @property
    def name(self) -> str:
        """What tables and comparisons call it: the encoder's name, or an external run's name."""
        return self.encoder.name if self.encoder is not None else self.source.name  # type: ignore[union-attr]

    @property
    def speed_hardware_key(self) -> str:
        """Where its speed figures were measured: this process's hardware (queries, search) joined with that of
        every host that encoded corpus chunks in the run (Ray workers may run on other machines)."""
        hosts = (h.hardware_key for h in self.performance.encoding_hosts) if self.performance else ()
        return " + ".join(dict.fromkeys([self.environment.hardware_key, *hosts]))


# ------------------------------------------------------------------ profile records

class ProfilePoint(StrictModel):
    """One swept configuration of `harness profile`: calls of one batch each, timed."""

    engine: EngineName
    precision: Precision
    batch_size: int
    max_seq_length: int
    device: str
    calls: int
    throughput: Throughput
    mean_tokens: float
    latency: Latency  # per call (one batch), milliseconds
    peak_rss_mb: float
    peak_gpu_mb: float | None
    tflops: float | None
    mfu: float | None
    mfu_peak: str | None  # what the MFU is relative to (card and datasheet figure)
    runtime: str | None = None  # as in EncoderSettings
    execution_provider: str | None = None
    threads: int | None = None


class ProfiledModel(StrictModel):
    model: str
    fingerprint: str


class DataTexts(StrictModel):
    kind: Literal["data"] = "data"
    path: str
    n: int


class SyntheticTexts(StrictModel):
    kind: Literal["synthetic"] = "synthetic"
    tokens: int
    n: int


ProfileTexts = Annotated[DataTexts | SyntheticTexts, Field(discriminator="kind")]


class ProfileRecord(StrictModel):
    """The result of `harness profile` for one model: one point per swept configuration."""

    schema_version: Literal[2] = SCHEMA_VERSION
    kind: Literal["profile"] = "profile"
    name: str
    model: ProfiledModel
    texts: ProfileTexts
    points: list[ProfilePoint]
    environment: Environment
    created_at: str

    @property
    def label(self) -> str:
        return f"{self.model.model} · {self.name}"


# ------------------------------------------------------------------ serving records

Workload = Literal["query", "ingest"]  # one query per request, as a search service sees it; batches of passages


class ServingRecord(StrictModel):
    """The result of `harness load` for one served encoder x dataset: the server under load, open loop at each
    offered rate and closed loop at each concurrency, with the client's own capacity measured in the same process."""

    schema_version: Literal[2] = SCHEMA_VERSION
    kind: Literal["serving"] = "serving"
    name: str  # the suite encoder's name
    version: str | None = None  # its version label (`version:`, `--label`)
    suite: SuiteInfo
    dataset: str  # the dataset whose texts were sent
    dataset_fingerprint: str
    server: ServerInfo
    workload: Workload
    rows_per_request: int
    texts: int  # distinct texts sent (cycled in order)
    slo_p99_ms: float
    client_capacity_rps: float  # requests/s this client reached against a trivial local endpoint, this run
    server_on_client_host: bool  # the URL names this machine: server and client shared its CPUs
    saturation_rps: float | None  # the highest offered rate up to which every one was sustained (analysis.serving)
    points: list[LoadPoint]
    notes: list[str] = []
    environment: Environment  # the client's host (the server's, where it is elsewhere, is the server's own)
    created_at: str

    @property
    def label(self) -> str:
        return f"{self.name} · {self.server.label}" + (f" · {self.version}" if self.version else "")

    def open_loop(self) -> list[LoadPoint]:
        return sorted((p for p in self.points if p.mode == "open"), key=lambda p: p.offered_rate or 0.0)

    def closed_loop(self) -> list[LoadPoint]:
        return sorted((p for p in self.points if p.mode == "closed"), key=lambda p: p.concurrency or 0)

    def at_rate(self, rate: float) -> LoadPoint | None:
        return next((p for p in self.open_loop() if p.offered_rate is not None
                     and math.isclose(p.offered_rate, rate, rel_tol=1e-9)), None)


Record = Annotated[RunRecord | ProfileRecord | ServingRecord, Field(discriminator="kind")]
_RECORD: TypeAdapter[RunRecord | ProfileRecord | ServingRecord] = TypeAdapter(Record)


# ------------------------------------------------------------------ Recall@k curves

def curve_ks(top_k: int) -> list[int]:
    """The standard cut-offs of a Recall@k curve: 1..10, then about 12 per decade and every power of ten up to
    top_k (at most 1000), and top_k itself."""
    limit = min(top_k, 1000)
    ks = set(range(1, min(10, limit) + 1)) | {limit} | {k for k in (100, 1000) if k <= limit}
    if limit > 10:
        ks |= {int(round(k)) for k in np.logspace(1, math.log10(limit), 12 * int(math.ceil(math.log10(limit))))}
    return sorted(k for k in ks if k <= limit)


class RecallCurve(StrictModel):
    """Recall@k of every judged query at the cut-offs ``ks``: ``per_query[qid][i]`` is Recall@ks[i]."""

    ks: list[int]
    per_query: dict[str, list[float]]

    @model_validator(mode="after")
    def _one_value_per_cutoff(self) -> RecallCurve:
        wrong = next((q for q, v in self.per_query.items() if len(v) != len(self.ks)), None)
        if wrong is not None:
            raise ValueError(f"query {wrong!r} has {len(self.per_query[wrong])} values for {len(self.ks)} cut-offs")
        return self

    def mean(self) -> list[float]:
        """Recall@k averaged over every judged query (trec_eval -c), one value per cut-off."""
        n = len(self.per_query)
        return [math.fsum(v[i] for v in self.per_query.values()) / n if n else 0.0 for i in range(len(self.ks))]


SCORE_BATCH_QUERIES = 1000  # queries per pytrec_eval call: bounds the copy pytrec_eval makes of a large run


def score(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]], metrics: Sequence[str], *,
          relevance_level: int, top_k: int) -> tuple[PerQuery, RecallCurve]:
    """Each metric per query (for every judged query) and the Recall@k curve, in one pytrec_eval pass over a batch
    of queries at a time (``metrics.means`` of the first gives the record's means)."""
    qids = list(qrels)
    ks = curve_ks(top_k)
    curve_names = [f"Recall@{k}" for k in ks]
    names = list(dict.fromkeys([*metrics, *curve_names]))
    values: PerQuery = {m: {} for m in names}
    for start in range(0, len(qids), SCORE_BATCH_QUERIES):
        batch = qids[start:start + SCORE_BATCH_QUERIES]
        sub_run = {q: run[q] for q in batch if q in run}
        scored = per_query_values({q: qrels[q] for q in batch}, sub_run, names, relevance_level=relevance_level)
        for name in names:
            values[name].update(scored[name])
    curve = RecallCurve(ks=ks, per_query={q: [values[n][q] for n in curve_names] for q in qids})
    return {m: values[m] for m in metrics}, curve


def recall_curve(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]], *, top_k: int,
                 relevance_level: int = 1) -> RecallCurve:
    """The Recall@k curve of a run (qid -> docid -> score)."""
    return score(qrels, run, [], relevance_level=relevance_level, top_k=top_k)[1]


# ------------------------------------------------------------------ writing

def write_run_record(
    output: Path,
    record: RunRecord,
    *,
    run: Mapping[str, Sequence[tuple[str, float]]] | Path,
    per_query: dict[str, dict[str, float]],
    recall_curve: RecallCurve,
    tag: str = "",
) -> Path:
    """Write a run record directory atomically under `output`; returns its final path. ``run`` is the ranking,
    or a run file to copy as it is (an external run)."""
    names = (record.suite.name, record.dataset.name, record.name)
    files = record.files

    if files.recall_curve is None:
        raise ValueError("a new run record lists its recall curve file (files.recall_curve)")

    curve_file = files.recall_curve

    def fill(tmp: Path) -> None:
        if isinstance(run, Path):
            shutil.copyfile(run, tmp / files.run)
        else:
            write_trec_run(tmp / files.run, run, tag=tag)
        _write_json(tmp / files.per_query, per_query)
        _write_json(tmp / curve_file, recall_curve.model_dump(mode="json"), indent=None)
        _write_json(tmp / RECORD_FILE, record.model_dump(mode="json"))

    return _write_record_dir(output, names, record.created_at, fill)


def write_profile_record(output: Path, record: ProfileRecord) -> Path:
    names = ("profile", record.name, Path(record.model.model).name)
    return _write_record_dir(output, names, record.created_at,
                             lambda tmp: _write_json(tmp / RECORD_FILE, record.model_dump(mode="json")))


def write_serving_record(output: Path, record: ServingRecord) -> Path:
    names = ("serving", record.suite.name, record.dataset, record.name)
    return _write_record_dir(output, names, record.created_at,
                             lambda tmp: _write_json(tmp / RECORD_FILE, record.model_dump(mode="json")))


def _write_record_dir(output: Path, names: tuple[str, ...], created_at: str, fill: Callable[[Path], None]) -> Path:
    stamp = created_at.replace(":", "").replace("+0000", "Z").replace("+00:00", "Z")
    base = "--".join(slug(s) for s in (*names, stamp))
    try:
        output.mkdir(parents=True, exist_ok=True)
        remove_dead_writers_folders(output)
        tmp = writer_folder(output)
        tmp.mkdir()
    except OSError as exc:
        raise HarnessError(f"{output}: cannot create the results folder ({exc.strerror}); "
                           "choose a writable --output") from None
    try:
        fill(tmp)
        return _rename_unique(tmp, output / base)
    except OSError as exc:
        raise HarnessError(f"{output}: writing the record failed ({exc.strerror}); nothing was kept") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _rename_unique(tmp: Path, target: Path) -> Path:
    for n in range(1, 1000):
        candidate = target if n == 1 else target.with_name(f"{target.name}.{n}")
        try:
            # mkdir claims the name atomically; rename onto an empty directory then replaces it.
            candidate.mkdir()
        except FileExistsError:
            continue
        os.replace(tmp, candidate)
        return candidate
    raise HarnessError(f"{target}: too many records with the same name")


def _write_json(path: Path, data: object, *, indent: int | None = 1) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=indent, sort_keys=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())


def write_trec_run(path: Path, run: Mapping[str, Sequence[tuple[str, float]]], *, tag: str) -> None:
    """Write a ranking as a TREC run that trec_eval and ``datasets.read_run`` read back as exactly this ranking:
    each score as the shortest decimal that gives back its float64, the run tag ``tag`` slugged to one token
    (RUN_TAG when nothing is left). An id that is not one token, a query id that would start a comment line
    ('#'), a document ranked twice and a score that is not finite cannot be written so: HarnessError, naming
    them (the caller removes the partial file: ``write_run_record`` writes into a temporary folder)."""
    tag = slug(tag, fallback=RUN_TAG)
    with open(path, "w", encoding="utf-8") as handle:
        for qid in sorted(run):
            ranking = run[qid]
            docids = [docid for docid, _ in ranking]
            scores = [float(score) for _, score in ranking]
            _check_ranking(path, qid, docids, scores)
            handle.write("".join(f"{qid} Q0 {docid} {rank} {score!r} {tag}\n"
                                 for rank, (docid, score) in enumerate(zip(docids, scores), start=1)))
        handle.flush()
        os.fsync(handle.fileno())


def _check_ranking(path: Path, qid: str, docids: list[str], scores: list[float]) -> None:
    problem = id_problem(qid, query=True)
    if problem:
        raise HarnessError(f"{path.name}: query id {qid!r} {problem}, so it cannot be written to a TREC run; rename "
                           "the query in the data set")
    if not all(docids) or ID_BREAKERS.search("".join(docids)):  # one search per query: runs have millions of lines
        docid, problem = next((d, p) for d in docids if (p := id_problem(d)))
        raise HarnessError(f"{path.name}: document id {docid!r} (query {qid!r}) {problem}, so it cannot be written "
                           "to a TREC run; rename the document in the data set")
    if len(set(docids)) < len(docids):
        docid = next(d for i, d in enumerate(docids) if d in docids[:i])
        raise HarnessError(f"{path.name}: document {docid!r} is ranked twice for query {qid!r}; a run ranks each "
                           "document once")
    if not all(map(math.isfinite, scores)):
        docid, score = next((d, s) for d, s in zip(docids, scores) if not math.isfinite(s))
        raise HarnessError(f"{path.name}: score {score!r} of document {docid!r} (query {qid!r}) is not a finite "
                           "number; trec_eval cannot order by it")


def load(path: Path | str) -> RunRecord | ProfileRecord | ServingRecord:
    """The one record loader: a record directory (or its record.json), schema 1 or 2, run, profile or serving."""
    path = Path(path)
    file = path if path.name == RECORD_FILE and path.is_file() else path / RECORD_FILE
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HarnessError(f"{file}: not found; pass a record directory (it holds {RECORD_FILE})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise HarnessError(f"{file}: a record is a JSON object with schema_version and kind")
    version = data.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise HarnessError(f"{file}: schema_version {version!r} is not one this harness reads "
                           f"({', '.join(map(str, READABLE_VERSIONS))}); upgrade the harness or rerun")
    if version == 1:
        data = _upgrade_v1(data, file)
    try:
        record = _RECORD.validate_python(data)
    except ValidationError as exc:
        raise HarnessError(f"{file}: not a valid {data.get('kind', 'run')} record:\n{explain_errors(exc)}") from None
    if isinstance(record, RunRecord):
        for role in ("run", "per_query", "recall_curve"):
            if getattr(record.files, role) is not None:
                record_file(file.parent, record, role)
    return record


def record_file(directory: Path | str, record: RunRecord, role: Literal["run", "per_query", "recall_curve"]) -> Path:
    """The path of a record's file ``files.<role>``: the one way to join a record folder with a file name, so that
    no record.json makes the harness read outside its folder (through a link either)."""
    directory = Path(directory)
    name = getattr(record.files, role)
    path = directory / name
    target = Path(os.path.realpath(path))
    if target.parent != Path(os.path.realpath(directory)):
        raise HarnessError(f"{directory / RECORD_FILE}: files.{role} {name!r} leads out of the record's folder (to "
                           f"{target}); a record's files lie in its folder: replace the link with the file itself")
    return path


def load_run_record(path: Path | str) -> RunRecord:
    """`load`, for callers that need a run record."""
    record = load(path)
    if not isinstance(record, RunRecord):
        raise HarnessError(f"{path}: a {record.kind} record, not a run record")
    return record


def load_serving_record(path: Path | str) -> ServingRecord:
    """`load`, for callers that need a serving record (`harness load`)."""
    record = load(path)
    if not isinstance(record, ServingRecord):
        raise HarnessError(f"{path}: a {record.kind} record, not a serving record (written by `harness load`)")
    return record


def _upgrade_v1(data: dict[str, Any], file: Path) -> dict[str, Any]:
    """A schema-1 record as schema 2: latency statistics rebuilt from the raw values, throughput grouped."""
    try:
        if data.get("kind", "run") == "profile":
            return {**data, "schema_version": 2, "points": [_point_v1(p) for p in data["points"]]}
        perf = dict(data["performance"])
        performance = {
            **{k: perf.pop(k) for k in ("corpus_encode_s", "corpus_tokens", "truncated_documents",
                                        "corpus_from_cache", "search_s", "queries_per_s_search", "peak_rss_mb",
                                        "peak_gpu_mb", "embedding_store")},
            "throughput": {"passages_per_s": perf.pop("passages_per_s"), "tokens_per_s": perf.pop("tokens_per_s")},
            "query_latency": Latency.from_values(perf.pop("query_latency_values_ms")),
        }
        perf.pop("query_latency_ms")  # the summary, derived again from the values above
    except (KeyError, TypeError, ValueError) as exc:
        raise HarnessError(f"{file}: schema-1 record lacks or garbles field {exc}") from None
    if perf:
        raise HarnessError(f"{file}: schema-1 performance has unknown fields: {', '.join(perf)}")
    files = {"recall_curve": None, **data.get("files", {})}
    return {**data, "schema_version": 2, "kind": "run", "performance": performance, "files": files}


def _point_v1(point: dict[str, Any]) -> dict[str, Any]:
    point = dict(point)
    point.pop("latency_ms")  # the summary, derived again from the values
    latency = Latency.from_values(point.pop("latency_values_ms"))
    throughput = {"passages_per_s": point.pop("passages_per_s"), "tokens_per_s": point.pop("tokens_per_s")}
    return {**point, "latency": latency, "throughput": throughput}


def load_per_query(directory: Path, record: RunRecord) -> dict[str, dict[str, float]]:
    path = record_file(directory, record, "per_query")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise HarnessError(f"{path}: cannot read per-query metrics ({exc})") from None


def load_recall_curve(directory: Path, record: RunRecord) -> RecallCurve | None:
    """The record's Recall@k curve; None for a record that predates them (schema 1)."""
    if record.files.recall_curve is None:
        return None
    path = record_file(directory, record, "recall_curve")
    try:
        return RecallCurve.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read the Recall@k curve ({exc.strerror})") from None
    except ValidationError as exc:
        raise HarnessError(f"{path}: not a valid Recall@k curve:\n{explain_errors(exc)}") from None


def find_records(paths: list[Path]) -> list[Path]:
    """Record directories named directly, or found (non-hidden) under result folders, in a stable order."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if (path / RECORD_FILE).is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p.parent for p in path.rglob(RECORD_FILE)
                                if not any(part.startswith(".") for part in p.relative_to(path).parts)))
        else:
            raise HarnessError(f"{path}: not a record directory or a results folder")
    return found
