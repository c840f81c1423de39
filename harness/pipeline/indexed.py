"""The index stage of a run: search through the encoder's `index:` and state what it cost against exact search.

The exact search of the same embeddings runs in the same process (its top k, per-query metric values and batch-1
latency are kept per store and query set, so a sweep over search settings computes them once); the record then
states ANN recall@k against it, and each suite metric's paired change with its CI, p and, where the suite sets a
non-inferiority margin (``baseline.noninferior``), the verdict.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.analysis.stats import compare_paired, noninferiority
from harness.input.indexes import IndexSpec
from harness.scoring.metrics import PerQuery, means
from harness.scoring.records import AnnRecall, ExactReference, IndexInfo, VersusExact
from harness.search.exact import TopK, exact_top_k
from harness.search.index import BuiltIndex, open_index
from harness.search.vectors import Store
from harness.vocabulary import timing
from harness.vocabulary.statistics import DEFAULT_STATS

# Exact batch-1 search latency is timed only where the corpus as fp32 fits in this many bytes (it is held resident
# for the timed calls); beyond, one exact query reads the whole store and the reference latency is left out.
EXACT_LATENCY_MAX_BYTES = 1 << 30
RECALL_KS = (10, 100)  # and the suite's top_k


@dataclass(frozen=True)
class ExactRun:
    top: TopK
    seconds: float
    latency: timing.Latency | None
    scored: dict[tuple[object, ...], PerQuery] = field(default_factory=dict)  # see values()

    def values(self, key: tuple[object, ...] | None, score: Callable[[], PerQuery]) -> PerQuery:
        """The exact ranking's per-query metric values, scored once per `key` (the dataset's fingerprint and what
        scoring depends on: qrels, metrics, relevance level, top_k) rather than once per index setting; no key
        (a dataset without a fingerprint): scored every time."""
        if key is None:
            return score()
        if key not in self.scored:
            self.scored[key] = score()
        return self.scored[key]


_EXACT_RUNS: dict[tuple[object, ...], ExactRun] = {}  # per store x query set x k x similarity, oldest first
EXACT_RUNS_KEPT = 8  # the exact top k of MS MARCO dev (6,980 x 1,000) is 84 MB


def exact_reference(store: Store, queries: np.ndarray, k: int, *, similarity: str, device: str, latency_calls: int,
                    search: Callable[[], tuple[TopK, float]]) -> ExactRun:
    """The exact search of `queries` over `store` (through `search`, the run's own), timed per query as well; kept
    for the rest of the process when the store is on disk (a sweep's index points share it)."""
    memo_key = None
    if store.key is not None:
        memo_key = (store.key, hashlib.sha256(queries.tobytes()).hexdigest(), k, similarity, device, latency_calls)
        if memo_key in _EXACT_RUNS:
            return _EXACT_RUNS[memo_key]
    top, seconds = search()
    latency = None
    if store.n_rows * queries.shape[1] * 4 <= EXACT_LATENCY_MAX_BYTES:
        corpus = np.concatenate([np.asarray(c, dtype=np.float32) for c in store.chunks()])
        latency = timing.measure_latency(
            lambda i: exact_top_k(queries[i % len(queries)][None], corpus, k, similarity=similarity, device=device),
            device=device, min_calls=latency_calls)
    run = ExactRun(top, seconds, latency)
    if memo_key is not None:
        while len(_EXACT_RUNS) >= EXACT_RUNS_KEPT:  # a sweep alternates datasets inside each variant
            del _EXACT_RUNS[next(iter(_EXACT_RUNS))]
        _EXACT_RUNS[memo_key] = run
    return run


@dataclass(frozen=True)
class IndexSearch:
    index: BuiltIndex
    top: TopK
    seconds: float
    latency: timing.Latency


def search_index(spec: IndexSpec, store: Store, queries: np.ndarray, k: int, *, similarity: str, cache: Path | None,
                 latency_calls: int) -> IndexSearch:
    index = open_index(spec, store, similarity=similarity, cache=cache)
    index.search(queries[:1], k)  # warm caches (a LanceDB table's first read)
    started = time.perf_counter()
    top = index.search(queries, k)
    seconds = time.perf_counter() - started
    latency = timing.measure_latency(lambda i: index.search(queries[i % len(queries)][None], k),
                                     min_calls=latency_calls)
    return IndexSearch(index, top, seconds, latency)


def ann_recall(query_ids: Sequence[str], exact: TopK, found: TopK, k: int,
               true_scores: Callable[[int, np.ndarray], np.ndarray]) -> AnnRecall:
    """Per query, the share of the exact top k found in the index's top k. A found row outside the exact top k
    whose true score equals the exact k-th score (a tie at the cut, which exact search broke by row) counts as
    found; `true_scores(query, rows)` scores such rows exactly."""
    k = min(k, exact.indices.shape[1])
    per_query = {}
    for i, qid in enumerate(query_ids):
        truth = exact.indices[i, :k]
        got = found.indices[i, :k]
        got = got[got >= 0]
        outside = got[~np.isin(got, truth)]
        hits = len(got) - len(outside)
        if len(outside):
            cut = exact.scores[i, k - 1]
            scores = true_scores(i, outside)
            hits += int(np.sum(scores >= cut - 1e-6 * max(1.0, abs(float(cut)))))
        per_query[qid] = min(1.0, hits / k)
    return AnnRecall(k=k, mean=float(np.mean(list(per_query.values()))) if per_query else 0.0, per_query=per_query)


def index_info(searched: IndexSearch, exact: ExactRun, *, query_ids: Sequence[str], queries: np.ndarray,
               top_k: int, values: PerQuery, exact_values: PerQuery, metrics: Sequence[str],
               margins: Mapping[str, float]) -> IndexInfo:
    """The record's index section: the build, the search, ANN recall and each metric against exact search."""
    index = searched.index
    prepared = index.vectors.prepared(queries)

    def true_scores(query: int, rows: np.ndarray) -> np.ndarray:
        return index.vectors.rows(rows) @ prepared[query]

    ks = sorted({k for k in (*RECALL_KS, top_k) if k <= top_k})
    stats = DEFAULT_STATS
    versus = []
    for metric in metrics:
        qids = [q for q in exact_values[metric] if q in values[metric]]
        control = [exact_values[metric][q] for q in qids]
        treatment = [values[metric][q] for q in qids]
        paired = compare_paired(control, treatment, seed=stats.seed, n_resamples=stats.n_resamples)
        margin = margins.get(metric)
        ni = noninferiority(control, treatment, margin=margin, alpha=stats.alpha) if margin is not None and \
            len(qids) > 1 else None
        versus.append(VersusExact(
            metric=metric, exact=paired.control_mean, index=paired.treatment_mean, delta=paired.delta,
            delta_ci=paired.delta_ci, p=paired.p(stats.test), test=stats.test, wins=paired.wins, ties=paired.ties,
            losses=paired.losses, margin=margin, lower=ni.lower if ni else None,
            noninferior=ni.noninferior if ni else None))
    n_rows = index.vectors.store.n_rows
    return IndexInfo(
        backend=index.backend, backend_version=index.backend_version, kind=index.spec.kind, label=index.spec.label(),
        build=index.build_settings, search=index.search_settings, key=index.key, from_cache=index.from_cache,
        build_s=index.build_s, train_rows=index.train_rows, bytes_on_disk=index.bytes_on_disk,
        bytes_per_vector=index.bytes_on_disk / n_rows, resident_mb=index.resident_mb,
        build_peak_rss_mb=index.build_peak_rss_mb, search_s=searched.seconds,
        queries_per_s=len(query_ids) / searched.seconds if searched.seconds else float("inf"),
        search_latency=searched.latency,
        ann_recall=[ann_recall(query_ids, exact.top, searched.top, k, true_scores) for k in ks],
        exact=ExactReference(metrics=means(exact_values), search_s=exact.seconds,
                             queries_per_s=len(query_ids) / exact.seconds if exact.seconds else float("inf"),
                             search_latency=exact.latency),
        alpha=stats.alpha, versus_exact=versus,
    )
