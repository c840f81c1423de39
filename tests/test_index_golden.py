"""Indexes on real data with the real all-MiniLM-L6-v2 (slow: it encodes SciFact and the DL19 pool unless the golden
tests' embeddings are cached, which they are when test_golden ran first in the same cache).

On both sets: the FAISS Flat record equals the exact record (same rankings up to ties, metrics within 1e-6), a
generous HNSW setting is shown non-inferior to exact at margin 0.005 nDCG@10 by the gate, an aggressive one is
not and fails it (exit 1), and LanceDB runs for real beside them.
"""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.scoring.records import load
from tests.conftest import DATA, write_suite

pytestmark = pytest.mark.slow

MINILM = "model: bundled:all-MiniLM-L6-v2\n    max_seq_length: 256\n    device: cpu"


def _index_encoder(name: str, index: str, records) -> str:
    return f"""  - name: {name}
    {MINILM}
    index: {index}
    baseline: {{records: {records}, encoder: exact, noninferior: {{nDCG@10: {{margin: 0.005}}}}}}
"""


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("index-golden")
    records = tmp / "records"
    suite = write_suite(tmp / "suite.yaml", f"""
name: index-golden
datasets:
  - {{name: scifact, path: {DATA / "scifact"}, split: test}}
  - {{name: dl19-pool, path: {DATA / "msmarco-trecdl2019-pool"}, split: test, relevance_level: 2}}
encoders:
  - name: exact
    {MINILM}
{_index_encoder("flat", "{backend: faiss, kind: flat}", records)}\
{_index_encoder("hnsw-generous", "{backend: faiss, kind: hnsw, M: 32, ef_construction: 200, ef_search: 256}", records)}\
{_index_encoder("hnsw-aggressive", "{backend: faiss, kind: hnsw, M: 4, ef_construction: 8, ef_search: 2}", records)}\
{_index_encoder("lancedb", "{backend: lancedb, kind: ivf_hnsw_sq, nlist: 4, ef_search: 200}", records)}\
metrics: [nDCG@10, MRR@10, Recall@100]
top_k: 100
""")
    assert main(["run", str(suite), "-o", str(records), "--no-progress", "--latency-calls", "400"]) == 0
    by_name = {}
    for folder in sorted(records.iterdir()):
        record = load(folder)
        by_name[(record.dataset.name, record.encoder.name)] = (record, folder)
    return suite, records, by_name


@pytest.mark.parametrize("dataset", ["scifact", "dl19-pool"])
def test_faiss_flat_equals_exact_search(indexed, dataset):
    _, _, by_name = indexed
    exact, exact_dir = by_name[(dataset, "exact")]
    flat, flat_dir = by_name[(dataset, "flat")]
    for metric, value in exact.metrics.items():
        assert flat.metrics[metric] == pytest.approx(value, abs=1e-6), metric
    assert all(a.mean == pytest.approx(1.0) for a in flat.index.ann_recall)

    def ranking(folder) -> dict[str, list[tuple[str, float]]]:
        out: dict[str, list[tuple[str, float]]] = {}
        for line in (folder / "run.trec").read_text().splitlines():
            qid, _, doc, _, score, _ = line.split()
            out.setdefault(qid, []).append((doc, float(score)))
        return out

    ours, theirs = ranking(exact_dir), ranking(flat_dir)
    assert ours.keys() == theirs.keys()
    for qid, hits in ours.items():
        other = theirs[qid]
        assert {d for d, _ in hits} == {d for d, _ in other} or hits[-1][1] == pytest.approx(other[-1][1], abs=1e-5)
        for (doc, score), (other_doc, other_score) in zip(hits, other):
            assert score == pytest.approx(other_score, abs=1e-5)  # a different document only where scores tie
            if doc != other_doc:
                assert abs(score - other_score) < 1e-5


@pytest.mark.parametrize("dataset", ["scifact", "dl19-pool"])
def test_index_records_state_recall_and_the_change_against_exact(indexed, dataset):
    _, _, by_name = indexed
    exact = by_name[(dataset, "exact")][0]
    generous = by_name[(dataset, "hnsw-generous")][0].index
    aggressive = by_name[(dataset, "hnsw-aggressive")][0].index
    lance = by_name[(dataset, "lancedb")][0].index
    assert generous.exact.metrics == pytest.approx(exact.metrics, abs=1e-9)  # the same embeddings, same run
    assert generous.ann_recall[0].mean > 0.99 > 0.9 > aggressive.ann_recall[0].mean
    ndcg = {v.metric: v for v in generous.versus_exact}["nDCG@10"]
    assert ndcg.noninferior and ndcg.margin == 0.005
    worse = {v.metric: v for v in aggressive.versus_exact}["nDCG@10"]
    assert worse.delta < -0.005 and worse.p < 0.05 and not worse.noninferior
    assert lance.backend == "lancedb" and lance.ann_recall[0].mean > 0.9 and lance.search_latency.n >= 400


def test_the_gate_passes_the_generous_index_and_fails_the_aggressive_one(indexed, tmp_path):
    suite, records, _ = indexed
    summary = tmp_path / "check.json"
    assert main(["check", str(suite), "--results", str(records), "--json", str(summary)]) == 1
    verdicts = {(r["dataset"], r["encoder"]): r["status"] for r in json.loads(summary.read_text())["results"]
                if r["kind"] == "noninferior"}
    for dataset in ("scifact", "dl19-pool"):
        assert verdicts[(dataset, "flat")] == "OK"
        assert verdicts[(dataset, "hnsw-generous")] == "OK"
        assert verdicts[(dataset, "hnsw-aggressive")] == "FAIL"
