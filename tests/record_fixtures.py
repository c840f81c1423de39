"""Real run records shared by the compare/check/report/notebook tests, made once per test session.

The bundled all-MiniLM-L6-v2 on NovelEval (21 queries x 420 web passages), as `suites/quick.yaml`
runs it, and a deliberately degraded variant that truncates every text to 16 tokens. On NovelEval
the truncation costs about 0.26 nDCG@10 and is significant (randomization p ~ 2e-4, Holm-adjusted
over the suite's metrics ~ 1e-3). Corpus embeddings land in the test embedding cache
($HARNESS_CACHE), so later sessions only re-run search and evaluation.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import DATA, write_suite

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
class RealRecords:
    folder: Path  # holds both record directories
    control: Path  # all-MiniLM-L6-v2
    degraded: Path  # truncated-16
    suite: Path


_made: dict[str, RealRecords] = {}


def real_records(tmp_path_factory) -> RealRecords:
    """Run the two encoders once per session; callers get a fresh copy they may add files to."""
    if "records" not in _made:
        from harness.runner import RunOptions, run_suite
        from harness.suite import load_suite

        base = tmp_path_factory.mktemp("real-records")
        suite_path = write_suite(base / "suite.yaml", SUITE)
        outcomes = run_suite(load_suite(suite_path),
                             RunOptions(output=base / "results", progress=False, latency_min_calls=30))
        _made["records"] = RealRecords(base / "results", outcomes[0].path, outcomes[1].path, suite_path)
    made = _made["records"]
    copy = tmp_path_factory.mktemp("records-copy") / "results"
    shutil.copytree(made.folder, copy)
    return RealRecords(copy, copy / made.control.name, copy / made.degraded.name, made.suite)


ENV = {"cpu_model": "Test CPU", "torch_threads": 2, "gpu": None, "libraries": {"torch": "2.x"}}


def synthetic_record(folder: Path, *, encoder: str, per_query: dict[str, dict[str, float]],
                     dataset: str = "toy", fingerprint: str = "fp-toy", suite: str = "toy-suite",
                     environment: dict | None = None, passages_per_s: float = 100.0,
                     definitions: dict[str, str] | None = None, model: str | None = None,
                     created_at: str = "2026-01-01T00:00:00+00:00") -> Path:
    """A record written by harness.records with hand-chosen per-query values (means follow from them)."""
    from harness.records import RunRecord, write_run_record

    metrics = {m: sum(v.values()) / len(v) for m, v in per_query.items()}
    record = RunRecord(
        suite={"name": suite, "path": None},
        dataset={"name": dataset, "source": {"kind": "beir", "path": "/nonexistent", "split": "test"},
                 "fingerprint": fingerprint, "counts": {"queries": len(next(iter(per_query.values())))},
                 "relevance_level": 1},
        encoder={"name": encoder, "model": model or f"test/{encoder}", "fingerprint": "w", "dimension": 8,
                 "settings": {"engine": "fast", "precision": "fp32", "batch_size": 32}},
        metrics=metrics,
        metric_definitions=definitions or {m: f"definition of {m}" for m in per_query},
        top_k=10,
        performance={"passages_per_s": passages_per_s, "tokens_per_s": passages_per_s * 50,
                     "query_latency_ms": {"p50": 5.0, "p99": 9.0}, "query_latency_values_ms": [4.0, 5.0, 9.0],
                     "peak_rss_mb": 500.0, "peak_gpu_mb": None, "corpus_from_cache": False},
        environment=environment or ENV,
        created_at=created_at,
    )
    run = {q: [("d1", 1.0)] for q in next(iter(per_query.values()))}
    return write_run_record(folder, record, run=run, per_query=per_query, tag=encoder)
