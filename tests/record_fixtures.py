"""Records for the compare/check/report/notebook tests: shipped, synthetic, or made once per test session.

`shipped_records` copies real records that `harness run` wrote (results/): nothing is encoded, so the
analysis tests take seconds. `synthetic_record` writes hand-chosen per-query values through the real
record writer. `real_records` runs the bundled all-MiniLM-L6-v2 on NovelEval (21 queries x 420 web
passages), as `suites/quick.yaml` runs it, and a deliberately degraded variant that truncates every text
to 16 tokens. On NovelEval the truncation costs about 0.26 nDCG@10 and is significant (randomization
p ~ 2e-4, Holm-adjusted over the suite's metrics ~ 1e-3). Corpus embeddings land in the test embedding
cache ($HARNESS_CACHE), so later sessions only re-run search and evaluation.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import DATA, REPO, write_suite

SUITE = f"""
name: quick-vs-truncated
datasets:
  - name: noveleval
    path: {DATA / "noveleval"}
encoders:
  - name: all-MiniLM-L6-v2
    model: bundled:all-MiniLM-L6-v2
    device: cpu
  - name: truncated-16
    model: bundled:all-MiniLM-L6-v2
    device: cpu
    max_seq_length: 16
metrics: [MRR@10, nDCG@10, Recall@10, MAP]
top_k: 100
"""


@dataclass(frozen=True)
class RecordPair:
    folder: Path  # holds both record directories
    control: Path  # all-MiniLM-L6-v2
    degraded: Path  # the same model with its texts truncated


@dataclass(frozen=True)
class RealRecords(RecordPair):
    suite: Path


SHIPPED_CONTROL = "all-MiniLM-L6-v2"  # results/baselines
SHIPPED_DEGRADED = "all-MiniLM-L6-v2-trunc16"  # results/truncation-16: every text cut to 16 tokens
SHIPPED_METRICS = ["nDCG@10", "MRR@10", "Recall@100", "Recall@1000", "MAP"]  # suites/regression.yaml, top_k 1000


def shipped_records(folder: Path, *, dataset: str = "noveleval") -> RecordPair:
    """Copies under `folder` of the shipped records of all-MiniLM-L6-v2 and of its 16-token truncation on
    `dataset`: real per-query values, rankings and Recall@k curves (schema 1, as `harness run` wrote them).

    On NovelEval (21 queries) the truncation costs 0.26 nDCG@10 (randomization p ~ 2e-4, Holm-adjusted over
    the 5 metrics ~ 1e-3); both were measured on the same machine, so their speeds are comparable.
    """
    folder.mkdir(parents=True, exist_ok=True)
    control, degraded = (copy_shipped_record(REPO / "results" / results, dataset, folder)
                         for results in ("baselines", "truncation-16"))
    return RecordPair(folder, control, degraded)


def copy_shipped_record(results: Path, name_part: str, folder: Path) -> Path:
    """A copy under `folder` of the one record directory of `results` whose name holds `--name_part--`."""
    [source] = [p for p in results.iterdir() if f"--{name_part}--" in p.name]
    return Path(shutil.copytree(source, folder / source.name))


_made: dict[str, RealRecords] = {}


def real_records(tmp_path_factory) -> RealRecords:
    """Run the two encoders once per session; callers get a fresh copy they may add files to."""
    if "records" not in _made:
        from harness.input.suite import load_suite
        from harness.pipeline.runner import RunOptions, run_suite

        base = tmp_path_factory.mktemp("real-records")
        suite_path = write_suite(base / "suite.yaml", SUITE)
        outcomes = run_suite(load_suite(suite_path),
                             RunOptions(output=base / "results", progress=False, latency_calls=30))
        _made["records"] = RealRecords(base / "results", outcomes[0].path, outcomes[1].path, suite_path)
    made = _made["records"]
    copy = tmp_path_factory.mktemp("records-copy") / "results"
    shutil.copytree(made.folder, copy)
    return RealRecords(copy, copy / made.control.name, copy / made.degraded.name, made.suite)


ENV = {"hostname": "test-host", "platform": "Linux-test", "python": "3.12.0", "cpu_model": "Test CPU",
       "cpu_count": 2, "cpu_affinity": 2, "torch_threads": 2, "memory_total_gb": 8.0,
       "libraries": {"torch": "2.x"}, "gpu": None}


def gpu_environment(name: str) -> dict:
    """ENV on a machine with the named GPU (speed figures of ENV and this one are not comparable)."""
    return {**ENV, "gpu": {"name": name, "memory_gb": 79.1, "count": 1}}


def synthetic_run_record(*, encoder: str, per_query: dict[str, dict[str, float]], dataset: str = "toy",
                         fingerprint: str = "fp-toy", suite: str = "toy-suite", environment: dict | None = None,
                         passages_per_s: float = 100.0, definitions: dict[str, str] | None = None,
                         model: str | None = None, created_at: str = "2026-01-01T00:00:00+00:00",
                         pieces: list[tuple[int, float]] | None = None, latencies_ms: list[float] | None = None,
                         corpus_from_cache: bool = False, encoding_hosts: list[dict] | None = None):
    """A RunRecord with hand-chosen per-query values (metric means follow from them).

    The speed figures are those of 1,000 passages encoded in 1000 / passages_per_s seconds (as the timed
    `pieces` (rows, seconds) of one store chunk when given, else none kept); the query latencies are
    `latencies_ms` (default 4, 5 and 9 ms); `encoding_hosts` are the machines that encoded the corpus
    (`harness.encode.chunks.EncodingHost` fields; default none: this process).
    """
    from harness.scoring.records import RunRecord
    from harness.vocabulary.timing import Latency, Throughput

    n_queries = len(next(iter(per_query.values())))
    seconds = 1000 / passages_per_s
    chunks = []
    if pieces:
        seconds = sum(t for _, t in pieces)
        passages_per_s = 1000 / seconds
        chunks = [{"rows": 1000, "seconds": seconds, "pieces": [{"rows": r, "seconds": t} for r, t in pieces]}]
    return RunRecord.model_validate(dict(
        suite={"name": suite, "path": None},
        dataset={"name": dataset, "source": {"kind": "beir", "path": "/nonexistent", "split": "test"},
                 "fingerprint": fingerprint, "counts": {"documents": 1000, "queries": n_queries, "qrels": n_queries},
                 "relevance_level": 1},
        encoder={"name": encoder, "model": model or f"test/{encoder}", "fingerprint": "w", "dimension": 8,
                 "settings": {"similarity": "dot", "engine": "fast", "precision": "fp32", "batch_size": 32,
                              "max_seq_length": 256, "device": "cpu"}},
        metrics={m: sum(v.values()) / len(v) for m, v in per_query.items()},
        metric_definitions=definitions or {m: f"definition of {m}" for m in per_query},
        top_k=10,
        performance={"corpus_encode_s": seconds, "corpus_tokens": 50_000,
                     "throughput": Throughput.from_seconds(seconds, passages=1000, tokens=50_000),
                     "truncated_documents": 0, "corpus_from_cache": corpus_from_cache,
                     "encoding_hosts": encoding_hosts or [],
                     "query_latency": Latency.from_values(latencies_ms or [4.0, 5.0, 9.0]), "search_s": 0.5,
                     "queries_per_s_search": n_queries / 0.5, "peak_rss_mb": 500.0, "peak_gpu_mb": None,
                     "embedding_store": {"key": "k", "dtype": "fp32", "chunk_rows": 16384},
                     "corpus_chunk_seconds": chunks},
        environment=environment or ENV,
        created_at=created_at,
    ))


def synthetic_record(folder: Path, *, encoder: str, per_query: dict[str, dict[str, float]], **options) -> Path:
    """`synthetic_run_record` written by harness.scoring.records (each query ranks one document, d1)."""
    from harness.scoring.records import RecallCurve, write_run_record

    record = synthetic_run_record(encoder=encoder, per_query=per_query, **options)
    qids = list(next(iter(per_query.values())))
    run = {q: [("d1", 1.0)] for q in qids}
    curve = RecallCurve(ks=[1], per_query={q: [0.0] for q in qids})
    return write_run_record(folder, record, run=run, per_query=per_query, recall_curve=curve, tag=encoder)
