"""Golden end-to-end scores on real data with the real all-MiniLM-L6-v2 (slow: each encodes a whole set).

Embeddings are cached under $HARNESS_CACHE, so local re-runs take seconds; a fresh CI run encodes
DL19 pool twice (harness + direct baseline) and SciFact once. Both caches are keyed by the engine code and
library versions (`harness.encode.models.embedding_key_parts`): after a change there both sides encode again.
"""

import os

import numpy as np
import pytest
import pytrec_eval

from harness.encode.models import embedding_versions
from harness.input.suite import load_suite
from harness.pipeline.runner import RunOptions, run_suite
from tests.conftest import REPO, reference_embeddings_path

pytestmark = pytest.mark.slow


def _run(suite_name: str, tmp_path_factory):
    suite = load_suite(REPO / "suites" / f"{suite_name}.yaml")
    out = tmp_path_factory.mktemp(f"results-{suite_name}")
    [outcome] = run_suite(suite, RunOptions(output=out, progress=False))
    return suite, outcome


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return _run("demo", tmp_path_factory)


def _direct_embeddings(model, texts: list[str], dataset_fingerprint: str) -> np.ndarray:
    """Plain SentenceTransformer.encode, cached on disk for local re-runs under a versioned key."""
    path = reference_embeddings_path(model, dataset_fingerprint, batch_size=32)
    if path.exists():
        return np.load(path)
    embeddings = model.encode(texts, batch_size=32, convert_to_numpy=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, embeddings)
    os.replace(tmp, path)
    return embeddings


def test_demo_reproduces_a_direct_sentence_transformers_and_pytrec_eval_computation(demo):
    """The harness (fast engine, chunked search, our metric layer) vs the textbook computation."""
    import gzip
    import json

    from sentence_transformers import SentenceTransformer

    from harness.encode.models import bundled_minilm_path

    suite, outcome = demo
    model = SentenceTransformer(str(bundled_minilm_path()), device="cpu")
    folder = REPO / "data" / "msmarco-trecdl2019-pool"
    with gzip.open(folder / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    doc_ids = [r["_id"] for r in rows]
    docs = _direct_embeddings(model, [(r["title"] + " " + r["text"]).strip() for r in rows],
                              outcome.record.dataset.fingerprint)
    with open(folder / "queries.jsonl", encoding="utf-8") as f:
        queries = {q["_id"]: q["text"] for q in map(json.loads, f)}
    qrels: dict[str, dict[str, int]] = {}
    with open(folder / "qrels" / "test.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            qid, did, grade = line.split("\t")
            qrels.setdefault(qid, {})[did] = int(grade)
    qids = sorted(qrels)
    q_emb = model.encode([queries[q] for q in qids], convert_to_numpy=True)
    scores = q_emb @ docs.T
    run, run10 = {}, {}
    for i, qid in enumerate(qids):
        order = np.argsort(-scores[i], kind="stable")[:1000]
        run[qid] = {doc_ids[j]: float(scores[i, j]) for j in order}
        run10[qid] = {doc_ids[j]: float(scores[i, j]) for j in order[:10]}
    main = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100,1000", "map"}, relevance_level=2)
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}, relevance_level=2)
    per_query = main.evaluate(run)
    per_query_rr = rr.evaluate(run10)
    expected = {
        "MRR@10": np.mean([per_query_rr[q]["recip_rank"] for q in qids]),
        "nDCG@10": np.mean([per_query[q]["ndcg_cut_10"] for q in qids]),
        "Recall@100": np.mean([per_query[q]["recall_100"] for q in qids]),
        "Recall@1000": np.mean([per_query[q]["recall_1000"] for q in qids]),
        "MAP": np.mean([per_query[q]["map"] for q in qids]),
    }
    got = outcome.record.metrics
    assert list(got) == suite.metrics
    for metric, value in expected.items():
        assert got[metric] == pytest.approx(value, abs=1e-4), metric
    # A sanity floor, so a broken baseline can't make both sides agree on nonsense.
    assert expected["nDCG@10"] > 0.6


def test_demo_record_carries_performance(demo):
    _, outcome = demo
    perf = outcome.record.performance
    assert perf.corpus_tokens > 14581 * 20
    assert perf.query_latency.n >= 100
    assert 0 < perf.query_latency.p50 <= perf.query_latency.p99
    # The corpus embeddings (fresh or cached) were made by this engine code and these libraries.
    assert perf.corpus_embeddings.versions == embedding_versions("fast")


def test_scifact_matches_mteb_published_ndcg(tmp_path_factory):
    """MTEB publishes nDCG@10 = 0.64508 for all-MiniLM-L6-v2 on SciFact test."""
    _, outcome = _run("scifact", tmp_path_factory)
    assert outcome.record.metrics["nDCG@10"] == pytest.approx(0.6451, abs=5e-4)
