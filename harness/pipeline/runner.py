"""run_suite(): the one place that sequences the stages for every dataset x encoder of a suite.

A dataset that does not load, an encoder that does not load, or a dataset x encoder that fails (NaN
embeddings, a full disk, ...) becomes a failed `RunOutcome` (logged as a warning) and the rest of the
suite still runs; `RunOptions.fail_fast` re-raises the first failure instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
from pydantic import PositiveInt, StrictBool

from harness.encode.chunks import EncodingHost, encode_chunk, this_host
from harness.encode.models import Encoder, embedding_versions
from harness.encode.store import ChunkInfo, EmbeddingStore, MemoryStore, cache_root, cache_write_error
from harness.input.corpus import as_strings
from harness.input.datasets import Dataset, load_dataset
from harness.input.suite import DatasetSpec, EncoderSpec, ReuseEmbeddings, Suite
from harness.pipeline.compat import CorpusSource, check_dimensions, load_encoders
from harness.pipeline.indexed import exact_reference, index_info, search_index
from harness.pipeline.served import endpoint_info, served_equality
from harness.scoring.metrics import PerQuery, holes, means, parse_measure
from harness.scoring.records import (
    ChunkTiming,
    DatasetInfo,
    DocumentEncoderInfo,
    EmbeddingProvenance,
    EmbeddingStoreInfo,
    EncoderInfo,
    EndpointInfo,
    IndexInfo,
    Performance,
    RecallCurve,
    RunRecord,
    SuiteInfo,
    TimedRows,
    score,
    write_run_record,
)
from harness.scoring.scored import RunOutcome, ScoredRun
from harness.search.exact import TopK, exact_top_k
from harness.search.index import check_index
from harness.vocabulary import timing
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.options import DEFAULT_CHUNK_ROWS, Executor, StoreDtype
from harness.vocabulary.progress import progress
from harness.vocabulary.timing import utc_now
from harness.vocabulary.validation import StrictModel

log = logging.getLogger(__name__)

T = TypeVar("T")
V = TypeVar("V")


class _PerQuery(Mapping[str, V]):
    """Query id -> a value built from the query's row of the search's arrays when it is read."""

    def __init__(self, rows: dict[str, int]):
        self._rows = rows

    def __contains__(self, qid: object) -> bool:
        return qid in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


class Ranking(_PerQuery[list[tuple[str, float]]]):
    """Query id -> [(doc id, score)], best first: the exact search's top k kept as its numpy arrays, each query's
    list built when it is asked for. As Python tuples, MS MARCO's 6,980 x 1,000 hits take about 1 GB."""

    def __init__(self, query_ids: Sequence[str], doc_ids: np.ndarray, scores: np.ndarray, indices: np.ndarray,
                 top_k: int, *, drop_self_hits: bool = False):
        super().__init__({qid: row for row, qid in enumerate(query_ids)})
        self._doc_ids, self._scores, self._indices = doc_ids, scores, indices
        self._top_k, self._drop_self_hits = top_k, drop_self_hits

    def __getitem__(self, qid: str) -> list[tuple[str, float]]:
        row = self._rows[qid]
        found = self._indices[row] >= 0  # an index may return fewer than k rows (-1 after them)
        hits: Iterable[tuple[str, float]] = zip(as_strings(self._doc_ids[self._indices[row][found]]),
                                                self._scores[row][found].tolist())
        if self._drop_self_hits:
            hits = ((d, s) for d, s in hits if d != qid)
        return list(hits)[:self._top_k]

    def scored(self) -> Mapping[str, dict[str, float]]:
        """The same ranking as query id -> {doc id: score} (what `score` and `holes` read), built per query."""
        return _Scored(self)


class _Scored(_PerQuery[dict[str, float]]):
    def __init__(self, ranking: Ranking):
        super().__init__(ranking._rows)
        self._ranking = ranking

    def __getitem__(self, qid: str) -> dict[str, float]:
        return dict(self._ranking[qid])


class RunOptions(StrictModel):
    """How a suite runs; built by `harness.api.run_options` (the one place, every field checked)."""

    output: Path | None = None  # where run_suite writes records; None keeps them in memory only
    cache: Path | None = None  # None: $HARNESS_CACHE or ~/.cache/harness
    chunk_rows: PositiveInt = DEFAULT_CHUNK_ROWS
    store_dtype: StoreDtype = "auto"
    latency_calls: PositiveInt = timing.LATENCY_CALLS
    progress: StrictBool = True
    executor: Executor = "local"
    ray_address: str | None = None
    fail_fast: StrictBool = False  # re-raise the first failure instead of recording it and going on
    reuse_embeddings: ReuseEmbeddings | None = None  # None: the suite's `reuse_embeddings`


# From this corpus size on, "auto" stores fp16: half the disk and I/O (13.6 GB instead of 27 GB for MS MARCO),
# where smaller sets keep fp32 so they reproduce a direct sentence-transformers computation to 1e-4.
FP16_STORE_FROM_ROWS = 1_000_000


def store_dtype_for(n_rows: int, requested: StoreDtype) -> str:
    if requested != "auto":
        return requested
    return "fp16" if n_rows >= FP16_STORE_FROM_ROWS else "fp32"


@dataclass(frozen=True)
class _Failed:
    reason: str


def _attempt(action: Callable[[], T], *, fail_fast: bool) -> T | _Failed:
    """The action's value, or (unless fail_fast) why it failed. Ctrl-C is never caught."""
    try:
        return action()
    except Exception as exc:
        if fail_fast:
            raise
        log.debug("failure recorded as data", exc_info=True)
        return _Failed(str(exc) if isinstance(exc, HarnessError) else f"{type(exc).__name__}: {exc}")


def run_suite(suite: Suite, options: RunOptions, *, on_outcome: Callable[[RunOutcome], None] | None = None,
              ) -> list[RunOutcome]:
    """Evaluate every dataset x encoder, in suite order (encoders outer). Datasets load once; each encoder
    loads once. Returns one outcome per dataset x encoder, failed ones included."""
    outcomes: list[RunOutcome] = []

    def add(outcome: RunOutcome) -> None:
        if not outcome.ok:
            log.warning("%s × %s failed: %s", outcome.dataset, outcome.encoder, outcome.error)
        outcomes.append(outcome)
        if on_outcome:
            on_outcome(outcome)

    index_cache = options.cache or cache_root()  # corpus offset indexes live beside the embedding stores
    datasets = {spec.name: _attempt(partial(_load_dataset, spec, index_cache), fail_fast=options.fail_fast)
                for spec in suite.datasets}
    loaded = any(isinstance(d, Dataset) for d in datasets.values())
    for encoder_spec in suite.encoders:
        encoder = _attempt(partial(load_encoders, suite, encoder_spec), fail_fast=options.fail_fast) if loaded else None
        for name, dataset in datasets.items():
            if isinstance(dataset, _Failed):
                add(RunOutcome(name, encoder_spec.name, error=f"dataset {name!r} did not load: {dataset.reason}"))
            elif isinstance(encoder, _Failed):
                add(RunOutcome(name, encoder_spec.name,
                               error=f"encoder {encoder_spec.name!r} did not load: {encoder.reason}"))
            else:
                assert encoder is not None  # a dataset loaded, so the encoder was attempted
                done = _attempt(partial(_run_and_write, suite, dataset, *encoder, options), fail_fast=options.fail_fast)
                add(RunOutcome(name, encoder_spec.name, error=done.reason) if isinstance(done, _Failed)
                    else RunOutcome(name, encoder_spec.name, result=done))
        if isinstance(encoder, tuple):
            encoder[0].close()
    return outcomes


def _load_dataset(spec: DatasetSpec, cache: Path) -> Dataset:
    """The dataset, its corpus index kept in `cache`; a cache that cannot hold the index is named as the fault."""
    try:
        return load_dataset(spec, cache=cache)
    except OSError as exc:
        if exc.filename and Path(exc.filename).is_relative_to(cache):
            raise cache_write_error(cache, exc.filename, exc, "saving the corpus index") from None
        raise


def _run_and_write(suite: Suite, dataset: Dataset, encoder: Encoder, documents: CorpusSource | None,
                   options: RunOptions) -> ScoredRun:
    result = run_one(suite, dataset, encoder, options, documents=documents)
    if options.output is None:
        return result
    assert result.ranking is not None and result.recall_curve is not None  # a fresh run holds both
    path = write_run_record(options.output, result.record, run=result.ranking, per_query=result.per_query,
                            recall_curve=result.recall_curve, tag=encoder.spec.name)
    return replace(result, path=path)


def run_one(suite: Suite, dataset: Dataset, encoder: Encoder, options: RunOptions,
            store: EmbeddingStore | MemoryStore | None = None, documents: CorpusSource | None = None,
            ) -> ScoredRun:
    """Encode (or read from the store), search, evaluate and measure one dataset x encoder. Writes only the
    embedding store (the disk cache unless `store` is given). With `documents` (a suite's document_model) the
    corpus embeddings come from there; `encoder` encodes the queries only."""
    spec: EncoderSpec = encoder.spec
    rss = timing.RssSpan.start()
    timing.reset_gpu_peak(encoder.device)
    label = f"{dataset.name} × {spec.name}"
    reuse = options.reuse_embeddings or suite.reuse_embeddings
    served_before = encoder.engine.endpoint.usage() if spec.endpoint else None

    if spec.index is not None:  # before anything is encoded: a setting the index cannot take is named now
        check_index(spec.index, n_rows=len(dataset.corpus), where=f"{label}: index",
                    dim=int(encoder.encode_queries(dataset.query_texts[:1]).embeddings.shape[1]))
    corpus_encoder = documents.encoder if documents else encoder  # None: a record's stored embeddings, complete
    if documents and documents.record:
        if reuse == "never":
            raise HarnessError(f"{label}: document_model.record searches stored embeddings as they are, which "
                               "reuse_embeddings 'never' forbids; run with reuse_embeddings auto")
        store = documents.stored(dataset, options.cache or cache_root())
    if store is None:
        assert corpus_encoder is not None  # only a record's stored embeddings come without an encoder
        store = EmbeddingStore(
            options.cache or cache_root(), corpus_encoder.store_parts(dataset.fingerprint),
            n_rows=len(dataset.corpus), chunk_rows=options.chunk_rows,
            dtype=store_dtype_for(len(dataset.corpus), options.store_dtype), reuse=reuse == "auto",
        )
    chunks_encoded = len(store.missing())
    if corpus_encoder is None:  # a record's stored embeddings: complete (CorpusSource.stored checks), none to encode
        hosts: list[EncodingHost] = []
    elif options.executor == "ray":
        from harness.encode.distributed import encode_on_ray

        assert isinstance(store, EmbeddingStore)  # Ray workers write to the disk store (evaluate_model runs local)
        hosts = encode_on_ray(dataset, corpus_encoder, store, address=options.ray_address, progress=options.progress)
    else:
        hosts = _encode_corpus(dataset, corpus_encoder, store, label, options.progress)

    query_result = encoder.encode_queries(dataset.query_texts)
    latency = timing.measure_latency(
        lambda i: encoder.encode_queries([dataset.query_texts[i % len(dataset.query_texts)]]),
        device=encoder.device, min_calls=options.latency_calls,
    )
    endpoint = None
    if spec.endpoint is not None:
        equality = served_equality(encoder, dataset) if spec.endpoint.reference_model else None
        endpoint = endpoint_info(encoder, served_before, equality)

    dimension = int(query_result.embeddings.shape[1])
    first_chunk = next(iter(store.chunks()), None) if documents else None
    if documents is not None and first_chunk is not None:
        check_dimensions(encoder, documents, found=(dimension, int(first_chunk.shape[1])))

    k = min(suite.top_k + (1 if dataset.drop_self_hits else 0), len(dataset.corpus))

    def exact_search() -> tuple[TopK, float]:
        with progress(len(dataset.corpus), f"search {label}", enabled=options.progress) as update:
            started = time.perf_counter()
            found = exact_top_k(query_result.embeddings, store.chunks(), k, similarity=spec.similarity,
                                device=encoder.device, progress=update)
            return found, time.perf_counter() - started

    def ranking_of(found: TopK) -> Ranking:
        return Ranking(dataset.query_ids, dataset.corpus.ids, found.scores, found.indices, suite.top_k,
                       drop_self_hits=dataset.drop_self_hits)

    def scored(ranking: Ranking) -> tuple[PerQuery, RecallCurve]:
        return score(dataset.qrels, ranking.scored(), suite.metrics, relevance_level=dataset.relevance_level,
                     top_k=suite.top_k)

    index = None
    if spec.index is None:
        top, search_seconds = exact_search()
    else:
        exact = exact_reference(store, query_result.embeddings, k, similarity=spec.similarity, device=encoder.device,
                                latency_calls=options.latency_calls, search=exact_search)
        searched = search_index(spec.index, store, query_result.embeddings, k, similarity=spec.similarity,
                                cache=options.cache or cache_root(), latency_calls=options.latency_calls)
        top, search_seconds = searched.top, searched.seconds
    run = ranking_of(top)
    ranked = run.scored()
    values, curve = scored(run)
    if spec.index is not None:
        margins = {m: v.margin for m, v in ((spec.baseline.noninferior or {}) if spec.baseline else {}).items()}
        scoring = (dataset.fingerprint, tuple(suite.metrics), dataset.relevance_level, suite.top_k,
                   dataset.drop_self_hits)
        exact_values = exact.values(scoring if dataset.fingerprint else None, lambda: scored(ranking_of(exact.top))[0])
        index = index_info(searched, exact, query_ids=dataset.query_ids, queries=query_result.embeddings,
                           top_k=suite.top_k, values=values, exact_values=exact_values, metrics=suite.metrics,
                           margins=margins)
    record = build_run_record(suite, dataset, encoder, metrics=means(values), store=store, ranking=ranked, index=index,
                              dimension=dimension, latency=latency,
                              documents=documents.info(dimension) if documents else None,
                              search_seconds=search_seconds, encoding_hosts=hosts, rss=rss, endpoint=endpoint,
                              embeddings=EmbeddingProvenance.of_chunks(
                                  chunks=store.n_chunks, chunks_encoded=chunks_encoded, reuse=reuse,
                                  versions=getattr(store, "parts", {}).get("versions")
                                  or embedding_versions((corpus_encoder or encoder).spec.engine),
                                  store=store.origin))
    return ScoredRun(record, values, ranking=run, recall_curve=curve)


def build_run_record(suite: Suite, dataset: Dataset, encoder: Encoder, *, metrics: dict[str, float],
                     store: EmbeddingStore | MemoryStore, dimension: int, latency: timing.Latency,
                     search_seconds: float, rss: timing.RssSpan,
                     embeddings: EmbeddingProvenance, encoding_hosts: Sequence[EncodingHost] = (),
                     ranking: Mapping[str, Mapping[str, float]] | None = None,
                     documents: DocumentEncoderInfo | None = None, index: IndexInfo | None = None,
                     endpoint: EndpointInfo | None = None) -> RunRecord:
    """The record of one dataset x encoder run, from what the stages measured; with the ranking (qid -> docid ->
    score), it also states the judgment holes of the top 10 (`harness.scoring.metrics.holes`)."""
    spec = encoder.spec
    infos = store.infos()
    totals = ChunkInfo.summed(infos)
    peak_rss = timing.peak_rss_mb()
    performance = Performance(
        corpus_encode_s=totals.seconds,
        corpus_tokens=totals.tokens,
        throughput=timing.Throughput.from_seconds(totals.seconds, passages=len(dataset.corpus), tokens=totals.tokens),
        truncated_documents=totals.truncated,
        corpus_from_cache=embeddings.chunks_encoded == 0,
        encoding_hosts=list(encoding_hosts),
        query_latency=latency,
        search_s=search_seconds,
        queries_per_s_search=len(dataset.query_ids) / search_seconds if search_seconds else None,
        peak_rss_mb=peak_rss,
        rss_start_mb=rss.start_mb,
        rss_added_mb=rss.added_mb(peak_rss),
        peak_gpu_mb=timing.peak_gpu_mb(encoder.device),
        embedding_store=EmbeddingStoreInfo(key=store.key, dtype=store.dtype, chunk_rows=store.chunk_rows),
        corpus_chunk_seconds=[ChunkTiming(rows=i.rows, seconds=i.seconds,
                                          pieces=[TimedRows(rows=r, seconds=t) for r, t in i.pieces])
                              for i in infos],
        peak_rss_method=rss.method,
        corpus_embeddings=embeddings,
    )
    return RunRecord(
        suite=SuiteInfo(name=suite.name, path=str(suite.source) if suite.source else None),
        dataset=DatasetInfo.of(dataset),
        encoder=EncoderInfo(name=spec.name, model=spec.model, fingerprint=encoder.fingerprint, dimension=dimension,
                            settings=encoder.settings, documents=documents, revision=spec.revision,
                            commit=encoder.commit, version=spec.version, endpoint=endpoint),
        metrics=metrics,
        metric_definitions={m: parse_measure(m).definition(dataset.relevance_level) for m in suite.metrics},
        top_k=suite.top_k,
        performance=performance,
        environment=timing.environment(),
        created_at=utc_now(),
        holes=None if ranking is None else holes(dataset.qrels, ranking, relevance_level=dataset.relevance_level),
        index=index,
    )


def _encode_corpus(dataset: Dataset, encoder: Encoder, store: EmbeddingStore | MemoryStore, label: str,
                   show_progress: bool) -> list[EncodingHost]:
    """Encode the chunks the store lacks, in this process; returns who encoded them (empty: nothing was)."""
    missing = store.missing()
    if not missing:
        return []
    host, hardware = this_host()
    todo = sum(len(store.rows_of(i)) for i in missing)
    with progress(todo, f"encode {label}", enabled=show_progress) as update:
        for index in missing:
            rows = store.rows_of(index)
            texts = dataset.corpus.texts(rows.start, rows.stop)  # one chunk's texts at a time, streamed
            encode_chunk(encoder, texts, index, progress=update).write(store)
            timing.release_free_heap()
    return [EncodingHost(host=host, hardware_key=hardware, chunks=len(missing), rows=todo)]
