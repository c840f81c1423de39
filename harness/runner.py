"""run_suite(): the one place that sequences the stages for every dataset x encoder of a suite."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from harness.profile import timing
from harness.cache import EmbeddingStore
from harness.datasets import Dataset, load_dataset
from harness.encode.models import Encoder
from harness.cache import cache_root
from harness.metrics import Evaluation, evaluate, parse_measure
from harness.records import (
    DatasetInfo,
    EmbeddingStoreInfo,
    EncoderInfo,
    Performance,
    RunRecord,
    SuiteInfo,
    recall_curve,
    utc_now,
    write_run_record,
)
from harness.retrieval import exact_top_k
from harness.suite import DatasetSpec, EncoderSpec, Suite

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    output: Path
    cache: Path | None = None
    chunk_rows: int = 16384
    store_dtype: str = "auto"  # "auto" | "fp32" | "fp16"
    latency_min_calls: int = 100
    progress: bool = True
    executor: str = "local"  # "local" | "ray"
    ray_address: str | None = None


# From this corpus size on, "auto" stores fp16: half the disk and I/O (13.6 GB instead of 27 GB for MS MARCO),
# where smaller sets keep fp32 so they reproduce a direct sentence-transformers computation to 1e-4.
FP16_STORE_FROM_ROWS = 1_000_000


def store_dtype_for(n_rows: int, requested: str) -> str:
    if requested != "auto":
        return requested
    return "fp16" if n_rows >= FP16_STORE_FROM_ROWS else "fp32"


@dataclass(frozen=True)
class RunOutcome:
    path: Path
    record: RunRecord


def run_suite(suite: Suite, options: RunOptions, *, on_record: Callable[[RunOutcome], None] | None = None,
              ) -> list[RunOutcome]:
    """Evaluate every dataset x encoder. Datasets load once; each encoder loads once."""
    datasets = {spec.name: load_dataset(spec) for spec in suite.datasets}
    outcomes = []
    for encoder_spec in suite.encoders:
        encoder = Encoder(encoder_spec)
        for dataset_spec in suite.datasets:
            outcome = run_one(suite, dataset_spec, datasets[dataset_spec.name], encoder, options)
            outcomes.append(outcome)
            if on_record:
                on_record(outcome)
    return outcomes


def run_one(suite: Suite, dataset_spec: DatasetSpec, dataset: Dataset, encoder: Encoder,
            options: RunOptions) -> RunOutcome:
    spec: EncoderSpec = encoder.spec
    timing.reset_gpu_peak(encoder.device)
    label = f"{dataset.name} × {spec.name}"

    store = EmbeddingStore(
        options.cache or cache_root(),
        {"model": encoder.fingerprint, "dataset": dataset.fingerprint, "encoder": encoder.settings_key},
        n_rows=len(dataset.doc_ids), chunk_rows=options.chunk_rows,
        dtype=store_dtype_for(len(dataset.doc_ids), options.store_dtype),
    )
    if options.executor == "ray":
        from harness.encode.distributed import encode_on_ray

        encoded_now = encode_on_ray(dataset, encoder, store, address=options.ray_address, progress=options.progress)
    else:
        encoded_now = _encode_corpus(dataset, encoder, store, label, options.progress)

    query_result = encoder.encode_queries(dataset.query_texts)
    latency = timing.measure_latency(
        lambda i: encoder.encode_queries([dataset.query_texts[i % len(dataset.query_texts)]]),
        device=encoder.device, min_calls=options.latency_min_calls,
    )

    k = min(suite.top_k + (1 if dataset.drop_self_hits else 0), len(dataset.doc_ids))
    with tqdm(total=len(dataset.doc_ids), desc=f"search {label}", unit="doc", disable=not options.progress,
              leave=False) as bar:
        started = time.perf_counter()
        top = exact_top_k(query_result.embeddings, store.chunks(), k, similarity=spec.similarity,
                          device=encoder.device, progress=bar.update)
        search_seconds = time.perf_counter() - started
    run = _ranking(dataset, top.scores, top.indices, suite.top_k)

    ranked = {q: dict(r) for q, r in run.items()}
    evaluation = evaluate(dataset.qrels, ranked, suite.metrics, relevance_level=dataset.relevance_level)
    record = build_run_record(suite, dataset, encoder, evaluation=evaluation, store=store,
                              encoded_now=encoded_now, dimension=int(query_result.embeddings.shape[1]),
                              latency=latency, search_seconds=search_seconds)
    curve = recall_curve(dataset.qrels, ranked, top_k=suite.top_k, relevance_level=dataset.relevance_level)
    path = write_run_record(options.output, record, run=run, per_query=evaluation.per_query, recall_curve=curve,
                            tag=spec.name)
    return RunOutcome(path, record)


def build_run_record(suite: Suite, dataset: Dataset, encoder: Encoder, *, evaluation: Evaluation,
                     store: EmbeddingStore, encoded_now: bool, dimension: int, latency: timing.Latency,
                     search_seconds: float) -> RunRecord:
    """The record of one dataset x encoder run, from what the stages measured."""
    spec = encoder.spec
    totals = store.totals()
    performance = Performance(
        corpus_encode_s=totals.seconds,
        corpus_tokens=totals.tokens,
        throughput=timing.Throughput.from_seconds(totals.seconds, passages=len(dataset.doc_ids), tokens=totals.tokens),
        truncated_documents=totals.truncated,
        corpus_from_cache=not encoded_now,
        query_latency=latency,
        search_s=search_seconds,
        queries_per_s_search=len(dataset.query_ids) / search_seconds if search_seconds else None,
        peak_rss_mb=timing.peak_rss_mb(),
        peak_gpu_mb=timing.peak_gpu_mb(encoder.device),
        embedding_store=EmbeddingStoreInfo(key=store.key, dtype=store.dtype, chunk_rows=store.chunk_rows),
    )
    return RunRecord(
        suite=SuiteInfo(name=suite.name, path=str(suite.source) if suite.source else None),
        dataset=DatasetInfo(name=dataset.name, source=dataset.source, fingerprint=dataset.fingerprint,
                            counts=dataset.counts, relevance_level=dataset.relevance_level,
                            drop_self_hits=dataset.drop_self_hits),
        encoder=EncoderInfo(name=spec.name, model=spec.model, fingerprint=encoder.fingerprint, dimension=dimension,
                            settings=encoder.settings),
        metrics=evaluation.aggregate,
        metric_definitions={m: parse_measure(m).definition(dataset.relevance_level) for m in suite.metrics},
        top_k=suite.top_k,
        performance=performance,
        environment=timing.environment(),
        created_at=utc_now(),
    )


def _encode_corpus(dataset: Dataset, encoder: Encoder, store: EmbeddingStore, label: str, progress: bool) -> bool:
    """Encode the chunks the store lacks; returns whether anything was encoded."""
    missing = store.missing()
    if not missing:
        return False
    todo = sum(len(store.rows_of(i)) for i in missing)
    with tqdm(total=todo, desc=f"encode {label}", unit="doc", disable=not progress, leave=False) as bar:
        for index in missing:
            rows = store.rows_of(index)
            texts = dataset.doc_texts[rows.start:rows.stop]
            timing.synchronize(encoder.device)
            started = time.perf_counter()
            result = encoder.encode_documents(texts, progress=bar.update)
            timing.synchronize(encoder.device)
            seconds = time.perf_counter() - started - result.counting_s
            store.write(index, result.embeddings, seconds=seconds, tokens=result.n_tokens, truncated=result.n_truncated)
    return True


def _ranking(dataset: Dataset, scores: np.ndarray, indices: np.ndarray, top_k: int,
             ) -> dict[str, list[tuple[str, float]]]:
    run = {}
    for row, qid in enumerate(dataset.query_ids):
        hits = [(dataset.doc_ids[i], float(s)) for i, s in zip(indices[row], scores[row])]
        if dataset.drop_self_hits:
            hits = [(d, s) for d, s in hits if d != qid]
        run[qid] = hits[:top_k]
    return run
