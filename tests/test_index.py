"""Approximate indexes in the loop (issue 27): the suite's index: section, FAISS and LanceDB built from the embedding
store, cached and verified, searched in the exact search's tie order, and records that state ANN recall and the
paired change against exact search. Real FAISS and a real embedded LanceDB; vectors are synthetic here (no encoding)
except in the end-to-end runs, which encode NovelEval with a tiny random-weight BERT."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from harness.cli import main
from harness.encode.store import EmbeddingStore, MemoryStore
from harness.input.grid import expand_suite
from harness.input.indexes import IndexSpec, default_nlist, default_pq_m
from harness.input.suite import load_suite
from harness.pipeline import indexed, runner
from harness.pipeline.indexed import ann_recall
from harness.reporting.tracking import run_metrics, run_params
from harness.scoring.records import load, score
from harness.search.exact import TopK, exact_top_k
from harness.search.index import open_index
from harness.vocabulary.errors import HarnessError
from tests.conftest import DATA, REPO, write_suite


def clustered(n: int, dim: int, *, seed: int, centers: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centers, dim)).astype(np.float32)
    rows = c[rng.integers(0, centers, n)] + 0.4 * rng.standard_normal((n, dim)).astype(np.float32)
    return (rows * rng.uniform(0.8, 1.2, (n, 1))).astype(np.float32)  # unnormalised, as dot-product models are


def memory_store(vectors: np.ndarray, chunk_rows: int = 1000) -> MemoryStore:
    store = MemoryStore(len(vectors), chunk_rows=chunk_rows)
    for i in range(store.n_chunks):
        store.write(i, vectors[i * chunk_rows:(i + 1) * chunk_rows], seconds=0.0, tokens=0)
    return store


def disk_store(root, vectors: np.ndarray, chunk_rows: int = 1000) -> EmbeddingStore:
    store = EmbeddingStore(root, {"test": "index", "n": len(vectors)}, n_rows=len(vectors), chunk_rows=chunk_rows,
                           dtype="fp32")
    for i in range(store.n_chunks):
        store.write(i, vectors[i * chunk_rows:(i + 1) * chunk_rows], seconds=0.0, tokens=0)
    return store


CORPUS = clustered(3000, 48, seed=1)
QUERIES = clustered(60, 48, seed=2)


# ---------------------------------------------------------------- the suite's index: section

@pytest.mark.parametrize("index, message", [
    ("{backend: faiss, kind: hnsw, nprobe: 4}", "index setting 'nprobe' has no meaning for faiss hnsw"),
    ("{backend: lancedb, kind: hnsw}", "index kind 'hnsw' is not a kind of backend 'lancedb'"),
    ("{backend: milvus, kind: hnsw}", "backend"),
    ("{backend: faiss, kind: factory}", "index kind 'factory' needs factory"),
    ("{backend: faiss, kind: hnsw, efSearch: 64}", "unknown key 'efSearch'; did you mean 'ef_search'?"),
    ("{backend: faiss, kind: hnsw, ef_search: '64'}", "ef_search"),
    ("{backend: faiss, kind: ivf_pq, pq_nbits: 17}", "pq_nbits"),
])
def test_index_settings_that_mean_nothing_are_refused_at_load(tmp_path, index, message):
    suite = write_suite(tmp_path / "s.yaml", f"""
name: s
datasets: [{{name: d, path: {DATA / "noveleval"}}}]
encoders:
  - {{name: e, model: bundled:all-MiniLM-L6-v2, index: {index}}}
""")
    with pytest.raises(HarnessError) as err:
        load_suite(suite)
    assert message in str(err.value)


def test_build_settings_take_corpus_dependent_defaults_and_search_settings_stay_apart():
    spec = IndexSpec(backend="faiss", kind="ivf_pq", nprobe=16)
    assert spec.resolved_build(1_000_000, 768) == {"backend": "faiss", "kind": "ivf_pq", "pq_nbits": 8,
                                                    "nlist": 4000, "pq_m": 96, "train_rows": 156_000}
    assert spec.settings("search") == {"nprobe": 16}
    assert default_nlist(5183) == 132 and default_nlist(100) == 2  # at most rows / 39
    assert default_pq_m(384) == 48 and default_pq_m(100) == 10  # dim / 8 or the largest divisor below it
    hnsw = IndexSpec(backend="faiss", kind="hnsw", ef_search=32)
    assert hnsw.settings("build") == {"M": 32, "ef_construction": 100}
    assert hnsw.settings("search") == {"ef_search": 32}
    assert hnsw.label() == "faiss-hnsw(ef_search=32)"


# ---------------------------------------------------------------- backends against exact search

@pytest.mark.parametrize("raw", [{"backend": "faiss", "kind": "flat"}, {"backend": "lancedb", "kind": "flat"}])
def test_flat_indexes_equal_exact_search(raw):
    exact = exact_top_k(QUERIES, CORPUS, 50)
    index = open_index(IndexSpec(**raw), memory_store(CORPUS), similarity="dot", cache=None)
    found = index.search(QUERIES, 50)
    assert np.array_equal(found.indices, exact.indices)
    np.testing.assert_allclose(found.scores, exact.scores, rtol=1e-5, atol=1e-4)


def test_cosine_indexes_score_unit_vectors_and_dot_indexes_do_not_normalise():
    cosine = open_index(IndexSpec(backend="faiss", kind="flat"), memory_store(CORPUS), similarity="cosine", cache=None)
    exact = exact_top_k(QUERIES, CORPUS, 20, similarity="cosine")
    assert np.array_equal(cosine.search(QUERIES, 20).indices, exact.indices)
    assert cosine.search(QUERIES, 1).scores.max() <= 1.0 + 1e-5
    dot = open_index(IndexSpec(backend="faiss", kind="hnsw", ef_search=200), memory_store(CORPUS), similarity="dot",
                     cache=None)
    assert dot.search(QUERIES, 1).scores.max() > 2.0  # inner products of unnormalised vectors


@pytest.mark.parametrize("raw, low, high", [
    ({"backend": "faiss", "kind": "hnsw", "M": 16, "ef_search": 128}, 0.95, 1.0),
    ({"backend": "faiss", "kind": "hnsw", "M": 4, "ef_search": 1}, 0.0, 0.9),
    ({"backend": "faiss", "kind": "ivf_flat", "nprobe": 50}, 0.99, 1.0),
    ({"backend": "faiss", "kind": "ivf_pq", "pq_m": 4, "pq_nbits": 4, "nprobe": 4}, 0.0, 0.8),
    ({"backend": "faiss", "kind": "sq8"}, 0.9, 1.0),
    ({"backend": "lancedb", "kind": "ivf_hnsw_sq", "nlist": 4, "ef_search": 100}, 0.9, 1.0),
    ({"backend": "lancedb", "kind": "ivf_pq", "nlist": 8, "pq_m": 6, "nprobe": 1}, 0.0, 0.95),
])
def test_approximate_indexes_lose_what_their_settings_give_up(raw, low, high):
    """Generous settings find (nearly) the exact top 10, aggressive ones measurably less: ANN recall@10 in range."""
    exact = exact_top_k(QUERIES, CORPUS, 10)
    index = open_index(IndexSpec(**raw), memory_store(CORPUS), similarity="dot", cache=None)
    found = index.search(QUERIES, 10)
    recall = ann_recall([str(i) for i in range(len(QUERIES))], exact, found, 10,
                        lambda q, rows: CORPUS[rows] @ QUERIES[q]).mean
    assert low <= recall <= high, recall
    # results come in the exact search's tie order: score descending, then lower row
    for scores, rows in zip(found.scores, found.indices):
        kept = scores[rows >= 0]
        assert np.all(np.diff(kept) <= 1e-6) and np.all(rows[len(kept):] == -1)  # misses (-1) only at the end


def test_rerank_rescores_candidates_exactly_from_the_store():
    spec = IndexSpec(backend="faiss", kind="ivf_pq", pq_m=4, nprobe=8)
    store = memory_store(CORPUS)
    plain = open_index(spec, store, similarity="dot", cache=None).search(QUERIES, 10)
    reranking = open_index(spec.model_copy(update={"rerank": 200}), store, similarity="dot", cache=None)
    reranked = reranking.search(QUERIES, 10)
    exact = exact_top_k(QUERIES, CORPUS, 10)

    def recall(found: TopK) -> float:
        return ann_recall([str(i) for i in range(len(QUERIES))], exact, found, 10,
                          lambda q, rows: CORPUS[rows] @ QUERIES[q]).mean

    assert recall(reranked) > recall(plain)
    rows = reranked.indices[0]
    np.testing.assert_allclose(reranked.scores[0], CORPUS[rows] @ QUERIES[0], rtol=1e-5)  # exact fp32 scores


def test_ann_recall_counts_rows_tied_at_the_cut_as_found():
    exact = TopK(np.array([[3.0, 2.0, 1.0]], dtype=np.float32), np.array([[0, 1, 2]]))
    # row 5 ties row 2's score 1.0 (exact search broke the tie by row); row 7 is a true miss; -1: nothing returned
    found = TopK(np.array([[3.0, 2.0, 1.0]], dtype=np.float32), np.array([[0, 5, -1]]))
    true = {5: 1.0, 7: 0.5}
    got = ann_recall(["q"], exact, found, 3, lambda q, rows: np.array([true[int(r)] for r in rows]))
    assert got.per_query == {"q": pytest.approx(2 / 3)}
    found = TopK(found.scores, np.array([[0, 7, 1]]))
    assert ann_recall(["q"], exact, found, 3, lambda q, rows: np.array([true[int(r)] for r in rows])).mean == \
        pytest.approx(2 / 3)


# ---------------------------------------------------------------- the cache: built once, verified, never half-trusted

def test_a_built_index_is_cached_reused_and_rebuilt_when_damaged(tmp_path, caplog):
    store = disk_store(tmp_path, CORPUS)
    spec = IndexSpec(backend="faiss", kind="hnsw", M=8, ef_search=16)
    first = open_index(spec, store, similarity="dot", cache=tmp_path)
    assert not first.from_cache and first.bytes_on_disk > CORPUS.nbytes  # HNSW keeps the vectors and its graph
    (folder,) = (tmp_path / "indexes").iterdir()
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["build"] == {"backend": "faiss", "kind": "hnsw", "M": 8, "ef_construction": 100}

    # another search setting: the same built index
    again = open_index(spec.model_copy(update={"ef_search": 64}), store, similarity="dot", cache=tmp_path)
    assert again.from_cache and again.key == first.key and again.build_s == first.build_s
    # another build setting: another index
    other = open_index(spec.model_copy(update={"M": 12}), store, similarity="dot", cache=tmp_path)
    assert other.key != first.key and len(list((tmp_path / "indexes").iterdir())) == 2

    index_file = folder / "index" / "index.faiss"
    data = bytearray(index_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    index_file.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        rebuilt = open_index(spec, store, similarity="dot", cache=tmp_path)
    assert not rebuilt.from_cache and "is damaged or incomplete" in caplog.text and str(folder) in caplog.text
    assert np.array_equal(rebuilt.search(QUERIES, 10).indices, first.search(QUERIES, 10).indices)


KILLED_BUILD = """
import sys
import numpy as np
from harness.encode.store import EmbeddingStore
from harness.input.indexes import IndexSpec
from harness.search.index import open_index
root = sys.argv[1]
vectors = np.random.default_rng(0).standard_normal((60000, 64)).astype(np.float32)
store = EmbeddingStore(root, {"test": "kill"}, n_rows=len(vectors), chunk_rows=20000, dtype="fp32")
for i in range(store.n_chunks):
    store.write(i, vectors[i * 20000:(i + 1) * 20000], seconds=0.0, tokens=0)
print("building", flush=True)
open_index(IndexSpec(backend="faiss", kind="hnsw", M=48, ef_construction=400), store, similarity="dot", cache=root)
print("built", flush=True)
"""


def test_a_build_killed_midway_leaves_nothing_a_later_run_trusts(tmp_path):
    script = tmp_path / "build.py"
    script.write_text(KILLED_BUILD)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "building"
    indexes = tmp_path / "indexes"
    deadline = time.monotonic() + 120
    while not (indexes.exists() and any(indexes.glob(".tmp-*/index"))):
        assert proc.poll() is None and time.monotonic() < deadline, "the build process ended before its build"
        time.sleep(0.05)
    time.sleep(0.5)  # inside the HNSW build (seconds at M=48, efConstruction=400)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert [p.name for p in indexes.iterdir() if not p.name.startswith(".tmp-")] == []  # only the writer's folder
    assert any(p.name.startswith(".tmp-") for p in indexes.iterdir())
    store = EmbeddingStore(tmp_path, {"test": "kill"}, n_rows=60000, chunk_rows=20000, dtype="fp32")
    index = open_index(IndexSpec(backend="faiss", kind="flat"), store, similarity="dot", cache=tmp_path)
    assert not index.from_cache
    assert not any(p.name.startswith(".tmp-") for p in indexes.iterdir())  # the dead writer's folder is gone


# ---------------------------------------------------------------- sweeps over index settings

def test_index_grid_keys_sweep_only_the_encoders_whose_index_takes_them(tmp_path):
    suite = load_suite(write_suite(tmp_path / "s.yaml", f"""
name: s
datasets: [{{name: d, path: {DATA / "noveleval"}}}]
encoders:
  - {{name: exact, model: bundled:all-MiniLM-L6-v2}}
  - name: hnsw
    model: bundled:all-MiniLM-L6-v2
    index: {{backend: faiss, kind: hnsw, M: 8}}
    baseline: {{records: r, encoder: exact, noninferior: {{nDCG@10: {{margin: 0.01}}}}}}
  - {{name: pq, model: bundled:all-MiniLM-L6-v2, index: {{backend: faiss, kind: ivf_pq}}}}
grid:
  index.ef_search: [8, 64]
  index.nprobe: [1]
"""))
    swept, skipped = expand_suite(suite, suite.grid)
    names = [e.name for e in swept.encoders]
    assert names == ["exact", "hnsw[ef_search=8]", "hnsw[ef_search=64]", "pq[nprobe=1]"] and skipped == []
    hnsw = swept.encoders[2]
    assert hnsw.index.ef_search == 64 and hnsw.index.M == 8
    # an index-only point keeps the baseline (its margins go into the index records), naming the exact records
    assert hnsw.baseline.encoder == "exact" and hnsw.baseline.noninferior["nDCG@10"].margin == 0.01


# ---------------------------------------------------------------- end to end: records, bad input, gates

def _suite(tmp_path, model, index: str, extra: str = "") -> str:
    return str(write_suite(tmp_path / "suite.yaml", f"""
name: ix
datasets: [{{name: novel, path: {DATA / "noveleval"}}}]
encoders:
  - name: tiny
    model: {model}
    device: cpu
    index: {index}
{extra}
metrics: [nDCG@10, Recall@100]
top_k: 100
"""))


def test_an_index_record_states_its_cost_ann_recall_and_the_change_against_exact(tmp_path, tiny_model):
    suite = _suite(tmp_path, tiny_model, "{backend: faiss, kind: hnsw, M: 4, ef_search: 2}",
                   "    baseline: {records: r, noninferior: {nDCG@10: {margin: 0.005}}}")
    out = tmp_path / "out"
    assert main(["run", suite, "-o", str(out), "--no-progress", "--latency-calls", "50",
                 "--cache", str(tmp_path / "cache")]) == 0
    (folder,) = out.iterdir()
    record = load(folder)
    ix = record.index
    assert (ix.backend, ix.kind, ix.search, ix.from_cache) == ("faiss", "hnsw", {"ef_search": 2}, False)
    assert ix.build == {"backend": "faiss", "kind": "hnsw", "M": 4, "ef_construction": 100}
    assert ix.bytes_on_disk > 0 and ix.bytes_per_vector == pytest.approx(ix.bytes_on_disk / 420)
    assert ix.search_latency.n >= 50 and ix.queries_per_s > 0 and ix.exact.search_latency.n >= 50
    assert [r.k for r in ix.ann_recall] == [10, 100] and set(ix.ann_recall[0].per_query) == set(record.metrics and
                                                                                                 ix.ann_recall[0].per_query)
    recall100 = ix.ann_recall[1].mean
    assert recall100 < 0.9  # ef_search 2 cannot return 100 neighbours
    versus = {v.metric: v for v in ix.versus_exact}
    assert versus["nDCG@10"].index == pytest.approx(record.metrics["nDCG@10"])
    assert versus["nDCG@10"].delta == pytest.approx(record.metrics["nDCG@10"] - ix.exact.metrics["nDCG@10"])
    assert versus["nDCG@10"].margin == 0.005 and versus["nDCG@10"].noninferior is not None
    assert versus["Recall@100"].margin is None and versus["Recall@100"].noninferior is None
    assert versus["Recall@100"].delta < 0 and versus["Recall@100"].p < 0.05  # what the lost neighbours cost
    # the record's own search figures are the index's: its ranking came from it
    assert record.performance.search_s == pytest.approx(ix.search_s)
    # MLflow gets the index settings as params and what it cost as metrics
    params, metrics = run_params(record), run_metrics(record)
    assert (params["index.backend"], params["index.kind"], params["index.M"], params["index.ef_search"]) == \
        ("faiss", "hnsw", "4", "2")
    assert metrics["ann_recall_100"] == pytest.approx(recall100)
    assert metrics["delta_vs_exact_nDCG_at_10"] == pytest.approx(versus["nDCG@10"].delta)


@pytest.mark.parametrize("index, message", [
    ("{backend: faiss, kind: ivf_pq, pq_m: 5}", "index.pq_m 5 does not divide the embedding dimension 32"),
    ("{backend: faiss, kind: ivf_flat, nlist: 1000}", "index.nlist 1000 is larger than the corpus (420 rows)"),
    ("{backend: faiss, kind: factory, factory: 'IVF8,Bogus'}", "FAISS refuses index 'IVF8,Bogus'"),
    ("{backend: faiss, kind: factory, factory: 'Flat', ef_search: 8}", "does not take the search settings"),
])
def test_an_index_faiss_would_refuse_exits_2_before_anything_is_encoded(tmp_path, tiny_model, capsys, index,
                                                                        message):
    cache = tmp_path / "cache"
    code = main(["run", _suite(tmp_path, tiny_model, index), "-o", str(tmp_path / "out"), "--no-progress",
                 "--cache", str(cache), "--fail-fast"])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not any((cache / "embeddings").glob("*/chunk-*")) if (cache / "embeddings").exists() else True
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_gate_holds_an_index_to_exact_search_by_noninferiority(tmp_path, tiny_model, monkeypatch):
    """Exact and two index settings of the same embeddings: the flat index is shown non-inferior to exact at the
    margin (identical rankings), an ef_search=1 HNSW over M=2 is not and fails the gate (exit 1). The exact
    reference of the two index records is searched and scored once."""
    monkeypatch.setattr(indexed, "_EXACT_RUNS", {})  # nothing from earlier tests of the same embeddings
    scored = []
    monkeypatch.setattr(runner, "score", lambda *a, **kw: scored.append(1) or score(*a, **kw))
    records = tmp_path / "records"
    suite = write_suite(tmp_path / "suite.yaml", f"""
name: gate
datasets: [{{name: novel, path: {DATA / "noveleval"}}}]
encoders:
  - {{name: exact, model: {tiny_model}, device: cpu}}
  - name: flat
    model: {tiny_model}
    device: cpu
    index: {{backend: faiss, kind: flat}}
    baseline: {{records: {records}, encoder: exact, noninferior: {{Recall@100: {{margin: 0.05}}}}}}
  - name: aggressive
    model: {tiny_model}
    device: cpu
    index: {{backend: faiss, kind: hnsw, M: 2, ef_construction: 4, ef_search: 1}}
    baseline: {{records: {records}, encoder: exact, noninferior: {{Recall@100: {{margin: 0.05}}}}}}
metrics: [nDCG@10, Recall@100]
top_k: 100
""")
    cache = str(tmp_path / "cache")
    assert main(["run", str(suite), "-o", str(records), "--no-progress", "--latency-calls", "20",
                 "--cache", cache]) == 0
    assert len(scored) == 4  # exact encoder, flat, aggressive, and the exact reference once for both indexes
    flat, aggressive = (load(f).index for f in sorted(records.iterdir()) if "--exact--" not in f.name)
    assert flat.exact == aggressive.exact
    summary = tmp_path / "check.json"
    assert main(["check", str(suite), "--results", str(records), "--json", str(summary)]) == 1
    results = json.loads(summary.read_text())["results"]
    verdicts = {(r["encoder"], r["metric"]): r["status"] for r in results if r["kind"] == "noninferior"}
    assert verdicts == {("flat", "Recall@100"): "OK", ("aggressive", "Recall@100"): "FAIL"}


def test_the_shipped_index_suite_loads_and_sweeps_hnsw_ivfpq_and_lancedb():
    suite = load_suite(REPO / "suites" / "index-sweep.yaml")
    swept, _ = expand_suite(suite, suite.grid)
    kinds = {(e.index.backend, e.index.kind) for e in swept.encoders if e.index}
    assert kinds == {("faiss", "hnsw"), ("faiss", "ivf_pq"), ("lancedb", "ivf_hnsw_sq")}
    assert "exact" in [e.name for e in swept.encoders]
