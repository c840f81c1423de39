"""`harness evaluate` of runs made elsewhere, scoring stored rankings again, and `harness pool`.

Real data: the five DL19 runs shipped in data/msmarco-trecdl2019-pool/runs/ (BM25 ... SPLADE++, over the full
8.8M collection) with their reference values, and the shipped all-MiniLM-L6-v2 record on the pool.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import pytrec_eval

import harness
from harness.analysis.check import check_suite, select_records
from harness.cli import main
from harness.input.datasets import read_qrels, read_run
from harness.input.suite import load_suite
from harness.scoring.records import find_records, load, load_per_query, load_recall_curve, load_run_record, recall_curve
from harness.scoring.scored import load_scored_runs
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.statistics import StatsOptions
from tests.conftest import DATA, REPO, write_beir, write_suite

POOL = DATA / "msmarco-trecdl2019-pool"
RUNS = sorted((POOL / "runs").glob("*.trec"))
FULL_QRELS = POOL / "orig" / "qrels.dl19-passage.txt"
POOL_QRELS = POOL / "qrels" / "test.tsv"
REFERENCE = json.loads((POOL / "runs" / "REFERENCE_METRICS.json").read_text())
MINILM = next((REPO / "results" / "baselines").glob("regression--dl19-pool--*"))


def records_in(folder: Path) -> list[Path]:
    return find_records([folder]) if folder.exists() else []


def by_run_file(folder: Path) -> dict[str, Path]:
    return {Path(load_run_record(d).source.path).name: d for d in records_in(folder)}


# ---------------------------------------------------------------- the DL19 reference values


@pytest.mark.parametrize("which, qrels", [("full", FULL_QRELS), ("pool", POOL_QRELS)])
def test_reference_metrics_of_the_five_dl19_runs(tmp_path, which, qrels, capsys):
    assert len(RUNS) == 5
    runs = [arg for path in RUNS for arg in ("--run", str(path))]
    # TREC DL convention (REFERENCE_METRICS.json "_about"): MRR@10 and Recall at grade >= 2; nDCG graded
    assert main(["evaluate", "--qrels", str(qrels), *runs, "--metrics", "nDCG@10,MRR@10,Recall@100",
                 "--relevance-level", "2", "--output", str(tmp_path / "rel2")]) == 0
    assert main(["evaluate", "--qrels", str(qrels), *runs, "--metrics", "Recall@100", "--relevance-level", "1",
                 "--output", str(tmp_path / "rel1")]) == 0
    assert "BM25.dl19" in capsys.readouterr().out
    rel2, rel1 = by_run_file(tmp_path / "rel2"), by_run_file(tmp_path / "rel1")
    assert sorted(rel2) == sorted(rel1) == [p.name for p in RUNS]
    for name, expected in ((n, REFERENCE[n][which]) for n in rel2):
        a, b = load_run_record(rel2[name]), load_run_record(rel1[name])
        got = {"nDCG@10": a.metrics["nDCG@10"], "MRR@10(rel>=2)": a.metrics["MRR@10"],
               "Recall@100(rel>=2)": a.metrics["Recall@100"], "Recall@100(rel>=1)": b.metrics["Recall@100"]}
        for key, value in got.items():
            assert value == pytest.approx(expected[key], abs=1e-4), (name, key)
        assert len(load_per_query(rel2[name], a)["nDCG@10"]) == expected["num_queries"] == 43
    bm25 = load_run_record(rel2["BM25.dl19.trec"])
    if which == "full":
        assert round(bm25.metrics["nDCG@10"], 4) == 0.5058  # Pyserini's published DL19 BM25 baseline


def test_an_external_record_says_where_its_ranking_came_from(tmp_path):
    [result] = harness.evaluate_runs([RUNS[0]], qrels=FULL_QRELS, relevance_level=2, output=tmp_path)
    record = load(result.path)
    assert record == result.record  # JSON round trip
    assert record.encoder is None and record.performance is None and record.name == "BM25.dl19"
    source = record.source
    assert source.kind == "external" and source.tag == "rank" and source.warnings == []
    assert source.sha256 == hashlib.sha256(RUNS[0].read_bytes()).hexdigest()
    assert (result.path / record.files.run).read_bytes() == RUNS[0].read_bytes()  # stored unchanged
    assert record.dataset.source.kind == "qrels" and record.dataset.counts.documents is None
    assert record.dataset.counts.queries == 43 and record.dataset.counts.qrels == 9260
    assert record.top_k == 100 and record.suite.name == "external"
    # BM25's top 10 is fully judged by the official qrels (TREC pooled it), so no hole changes its nDCG@10
    assert record.holes.judged == 1.0 and record.holes.unjudged == 0.0
    assert record.holes.ndcg == record.holes.ndcg_unjudged_relevant == pytest.approx(0.5058, abs=5e-5)
    # the per-query values average to the record's means; the curve ends at the run's depth
    per_query = load_per_query(result.path, record)
    for metric, mean in record.metrics.items():
        assert sum(per_query[metric].values()) / 43 == pytest.approx(mean, abs=1e-12)
    curve = load_recall_curve(result.path, record)
    assert curve.ks[-1] == 100 and curve.mean()[-1] == pytest.approx(record.metrics["Recall@100"], abs=1e-12)
    assert curve == recall_curve(read_qrels(FULL_QRELS), read_run(RUNS[0]), top_k=100, relevance_level=2)


def test_gzip_json_and_trailing_text_score_alike(tmp_path):
    plain = harness.evaluate_run(RUNS[0], qrels=POOL_QRELS, relevance_level=2).record.metrics
    text = RUNS[0].read_text()
    (tmp_path / "bm25.trec.gz").write_bytes(gzip.compress(text.encode()))
    # trec_eval ignores whatever follows the tag
    (tmp_path / "bm25-notes.trec").write_text("".join(f"{line} extra words here\n" for line in text.splitlines()))
    (tmp_path / "bm25.json").write_text(json.dumps(read_run(RUNS[0])))
    for name in ("bm25.trec.gz", "bm25-notes.trec", "bm25.json"):
        result = harness.evaluate_run(tmp_path / name, qrels=POOL_QRELS, relevance_level=2, output=tmp_path / "out")
        assert result.record.metrics == pytest.approx(plain, abs=1e-12), name
        assert result.record.source.tag == (None if name.endswith(".json") else "rank")
        assert result.record.files.run == {"bm25.trec.gz": "run.trec.gz", "bm25-notes.trec": "run.trec",
                                           "bm25.json": "run.json"}[name]
        assert result.record.name == name.split(".")[0]
    # each stored run file scores again to the same values (harness evaluate RECORD)
    for again in harness.rescore(tmp_path / "out"):
        assert again.record.metrics == pytest.approx(plain, abs=1e-12)


def hand_qrels(folder: Path) -> Path:
    path = folder / "qrels.txt"
    path.write_text("q1 0 d1 1\nq1 0 d3 0\nq2 0 d2 2\n")
    return path


def test_hand_computed_means_and_counted_warnings(tmp_path):
    """q1: d1 (relevant) ranked 2nd -> RR 1/2, nDCG@10 = (1/log2 3) / 1; q2 judged but not in the run -> 0;
    q9 not judged -> not scored, counted."""
    run = tmp_path / "run.trec"
    run.write_text("q1 Q0 d2 1 0.9 mine\nq1 Q0 d1 2 0.8 mine\nq9 Q0 d1 1 5.0 mine\n")
    result = harness.evaluate_run(run, qrels=hand_qrels(tmp_path), metrics=["MRR@10", "nDCG@10", "Recall@1"],
                                  name="mine", output=tmp_path / "out")
    assert result.per_query["MRR@10"] == {"q1": 0.5, "q2": 0.0}
    assert result.record.metrics["MRR@10"] == pytest.approx(0.25)
    assert result.record.metrics["nDCG@10"] == pytest.approx((1 / 1.584962500721156) / 2)
    assert result.record.metrics["Recall@1"] == 0.0
    warnings = {w.kind: w for w in result.record.source.warnings}
    assert set(warnings) == {"queries-not-in-qrels", "judged-queries-not-in-run"}
    assert warnings["queries-not-in-qrels"].count == 1 and warnings["queries-not-in-qrels"].examples == ["q9"]
    assert warnings["judged-queries-not-in-run"].count == 1 and warnings["judged-queries-not-in-run"].examples == ["q2"]
    assert load(result.path).source.warnings == result.record.source.warnings  # kept in the record on disk
    assert result.record.name == "mine"


def test_documents_outside_the_corpus_are_counted(tmp_path):
    folder = write_beir(tmp_path / "toy", docs=[("d1", "a"), ("d2", "b")], queries=[("q1", "x")],
                        qrels=[("q1", "d1", 1)])
    run = tmp_path / "run.trec"
    run.write_text("q1 Q0 d1 1 2 t\nq1 Q0 zz 2 1 t\n")
    result = harness.evaluate_run(run, qrels=folder)
    [warning] = result.record.source.warnings
    assert (warning.kind, warning.count, warning.examples) == ("documents-not-in-corpus", 1, ["zz"])
    assert result.record.dataset.source.kind == "beir" and result.record.dataset.counts.documents == 2


# ---------------------------------------------------------------- bad input: exit 2, file:line, nothing written


@pytest.mark.parametrize("lines, message", [
    ("q1 Q0 d1 1 0.9 t\nq1 Q0 d2 2\n", r"run.trec:2: expected 'qid Q0 docid rank score tag'"),
    ("q1 Q0 d1 1 0.9 t\nq1 Q0 d2 2 high t\n", r"run.trec:2: score 'high' of document 'd2' .* is not a number"),
    ("q1 Q0 d1 1 0.9 t\nq1 Q0 d2 2 0.5 t\nq1 Q0 d1 3 0.1 t\n",
     r"run.trec:3: document 'd1' is ranked twice for query 'q1'"),
    ("x1 Q0 d1 1 0.9 t\nx2 Q0 d2 1 0.5 t\n", r"none of its 2 query ids is in the qrels .*another topic set"),
    ("q1 Q0 zz1 1 0.9 t\nq2 Q0 zz2 1 0.5 t\n", r"none of the documents it ranks is judged .*another collection"),
])
def test_bad_runs_are_refused_with_their_place(tmp_path, capsys, lines, message):
    run = tmp_path / "run.trec"
    run.write_text(lines)
    out = tmp_path / "out"
    assert main(["evaluate", "--qrels", str(hand_qrels(tmp_path)), "--run", str(run), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert pytest.importorskip("re").search(message, err), err
    assert records_in(out) == []


def test_bad_json_runs(tmp_path):
    qrels = hand_qrels(tmp_path)
    (tmp_path / "dup.json").write_text('{"q1": {"d1": 1.0, "d1": 2.0}}')
    with pytest.raises(HarnessError, match=r"dup.json: key 'd1' appears twice"):
        harness.evaluate_run(tmp_path / "dup.json", qrels=qrels)
    (tmp_path / "text.json").write_text('{"q1": {"d1": "high"}}')
    with pytest.raises(HarnessError, match=r"text.json: expected JSON \{query id: \{document id: score\}\}"):
        harness.evaluate_run(tmp_path / "text.json", qrels=qrels)


def test_usage_errors(tmp_path, capsys):
    run = str(RUNS[0])
    assert main(["evaluate", "--run", run]) == 2
    assert "no judgments" in capsys.readouterr().err
    assert main(["evaluate", "--qrels", str(POOL_QRELS), "--run", run, "--metrics", "nDGC@10"]) == 2
    assert "unknown metric" in capsys.readouterr().err
    assert main(["evaluate", "--suite", str(REPO / "suites" / "regression.yaml"), "--dataset", "nope",
                 "--run", run]) == 2
    assert "no dataset named 'nope' (it has: noveleval, scifact, dl19-pool)" in capsys.readouterr().err
    assert main(["evaluate", str(MINILM), "--run", run]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["evaluate", "--qrels", str(POOL_QRELS), "--run", str(tmp_path / "none.trec")]) == 2
    assert "none.trec: run file not found" in capsys.readouterr().err


# ---------------------------------------------------------------- compare, check, report treat them alike


@pytest.fixture(scope="module")
def external_on_pool(tmp_path_factory) -> Path:
    """The five runs scored against the pool as a dataset of the regression suite (pairs with MiniLM's record)."""
    out = tmp_path_factory.mktemp("external")
    results = harness.evaluate_runs(RUNS, suite=REPO / "suites" / "regression.yaml", dataset="dl19-pool", output=out)
    assert {r.record.dataset.fingerprint for r in results} == {load_run_record(MINILM).dataset.fingerprint}
    return out


def test_compare_pairs_external_runs_with_an_encoder(external_on_pool):
    comparison = harness.compare(MINILM, external_on_pool, metrics=["nDCG@10"], n_resamples=1000)
    rows = {m.treatment: m for m in comparison.metrics}
    assert set(rows) == {"BM25.dl19", "BM25_RM3.dl19", "D_BERT_KD_TASB.dl19", "OPEN_AI_ADA2.dl19",
                         "SPLADE_P_P_ENSEMBLE_DISTIL.dl19"}
    assert rows["BM25.dl19"].stats.treatment_mean == pytest.approx(REFERENCE["BM25.dl19.trec"]["pool"]["nDCG@10"],
                                                                   abs=1e-4)
    assert rows["BM25.dl19"].stats.control_mean == pytest.approx(0.6427, abs=1e-4)
    assert comparison.speed == []  # nothing was timed for the external runs
    assert "BM25.dl19" in comparison.to_table()


def test_check_skips_speed_against_an_external_baseline(tmp_path, external_on_pool):
    suite_path = write_suite(tmp_path / "suite.yaml", f"""
name: regression
datasets:
  - name: dl19-pool
    path: {POOL}
    relevance_level: 2
encoders:
  - name: all-MiniLM-L6-v2
    model: bundled:all-MiniLM-L6-v2
    baseline:
      records: {external_on_pool}
      encoder: BM25.dl19
      max_drop: 0.002
      speed: {{max_slowdown: 0.1}}
metrics: [nDCG@10]
""")
    suite = load_suite(suite_path)
    runs = load_scored_runs([REPO / "results" / "baselines"])
    report = check_suite(suite, select_records(suite, runs, "results/baselines"), stats=StatsOptions(n_resamples=1000))
    statuses = {(r.kind, r.metric): r for r in report.results}
    assert statuses[("baseline", "nDCG@10")].status == "OK"  # MiniLM beats BM25 on the pool
    for metric in ("passages/s", "query p99 ms"):
        skipped = statuses[("speed", metric)]
        assert skipped.status == "SKIP" and "baseline record (BM25.dl19" in skipped.message
        assert "external run" in skipped.message


def test_report_shows_external_runs_without_speed(tmp_path, external_on_pool):
    written = harness.report([MINILM, external_on_pool], output=tmp_path / "report", formats=["md"], n_resamples=200)
    text = written.markdown.read_text()
    assert "| dl19-pool | SPLADE_P_P_ENSEMBLE_DISTIL.dl19 | 0.7332" in text
    assert "No speed figures for BM25.dl19, BM25_RM3.dl19" in text
    assert "run=BM25.dl19.trec" in text  # environment table: where the ranking came from
    # the speed table lists only the encoder; plots of per-query deltas exist for every external run
    speed_rows = [line for line in text.splitlines() if line.startswith("| dl19-pool |") and "Xeon" not in line
                  and "A |" in line]
    assert all("all-MiniLM-L6-v2" in row for row in speed_rows) and speed_rows
    assert (tmp_path / "report" / "plots" / "deltas--dl19-pool--nDCG-10--BM25.dl19.png").exists()
    csv = (tmp_path / "report" / "results.csv").read_text()
    assert "run file BM25.dl19.trec" in csv


# ---------------------------------------------------------------- scoring a record again


def test_rescoring_a_record_reproduces_it_and_adds_measures(tmp_path):
    original = load_run_record(MINILM)
    [same] = harness.rescore(MINILM)
    assert same.record.metrics == original.metrics  # the stored ranking and the same judgments
    [more] = harness.rescore(MINILM, metrics=["P@5", "MAP"], output=tmp_path)
    qrels = read_qrels(POOL_QRELS)
    direct = pytrec_eval.RelevanceEvaluator(qrels, {"P.5"}, relevance_level=2).evaluate(read_run(MINILM / "run.trec"))
    assert more.record.metrics["P@5"] == pytest.approx(sum(v["P_5"] for v in direct.values()) / 43, abs=1e-12)
    record = load(more.path)
    assert record.encoder == original.encoder and record.performance == original.performance
    assert record.source.kind == "record" and record.source.path == str(MINILM.resolve())
    assert record.dataset.fingerprint == original.dataset.fingerprint


def test_rescoring_encodes_nothing(tmp_path):
    # Records name their encoder's settings and store with the typed values of harness.encode.settings, .store and
    # .chunks; no model, engine, tokenizer, kernel or search module may load (torch itself may: the new record's
    # environment states its version and threads, as every record's does).
    code = (f"import sys, harness; harness.rescore({str(MINILM)!r}, metrics=['P@5']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sentence_transformers', 'transformers') "
            "or m.startswith(('harness.encode.models', 'harness.encode.engines', "
            "'harness.encode.runtimes', 'harness.encode.kernels', 'harness.encode.tokenize', "
            "'harness.encode.distributed', 'harness.search.exact', 'harness.pipeline.runner'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_record_from_another_checkout_finds_the_shipped_data(tmp_path):
    moved = tmp_path / MINILM.name
    shutil.copytree(MINILM, moved)
    data = json.loads((moved / "record.json").read_text())
    data["dataset"]["source"]["path"] = "/elsewhere/checkout/data/msmarco-trecdl2019-pool"
    (moved / "record.json").write_text(json.dumps(data))
    [again] = harness.rescore(moved)
    assert again.record.metrics == load_run_record(MINILM).metrics
    data["dataset"]["fingerprint"] = "0000000000000000"  # the data it was run on is not what is there now
    (moved / "record.json").write_text(json.dumps(data))
    with pytest.raises(HarnessError, match="has changed since the record was written"):
        harness.rescore(moved)


# ---------------------------------------------------------------- pool, judge, score again


def top(run: dict[str, float], k: int) -> list[str]:
    return [d for d, _ in sorted(run.items(), key=lambda item: (item[1], item[0]), reverse=True)[:k]]


def test_pool_then_judgments_added_back_rescore_without_encoding(tmp_path, external_on_pool, capsys):
    bm25 = by_run_file(external_on_pool)["BM25.dl19.trec"]
    out = tmp_path / "pool.tsv"
    assert main(["pool", str(MINILM), str(bm25), "--depth", "10", "--output", str(out)]) == 0
    assert "unjudged (query, document) pairs" in capsys.readouterr().out
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "query-id\tcorpus-id\ttext"
    rows = [line.split("\t") for line in lines[1:]]

    # independently: the top 10 of both runs, judged queries only, minus judged pairs, once each
    qrels = read_qrels(POOL_QRELS)
    runs = [read_run(MINILM / "run.trec"), read_run(RUNS[0])]
    expected = {(q, d) for run in runs for q in qrels for d in top(run.get(q, {}), 10) if d not in qrels[q]}
    assert {(q, d) for q, d, _ in rows} == expected and len(rows) == len(expected) > 0
    corpus = {json.loads(line)["_id"]: json.loads(line)["text"]
              for line in gzip.open(POOL / "corpus.jsonl.gz", "rt", encoding="utf-8")}
    assert all(text == " ".join(corpus[d].split()) for _, d, text in rows)

    # the assessor's grades (here: every pooled document highly relevant) go back as a qrels file
    judged = tmp_path / "new.qrels"
    judged.write_text("".join(f"{q} 0 {d} 2\n" for q, d, _ in rows))
    assert main(["evaluate", str(MINILM), "--qrels", str(judged), "--metrics", "nDCG@10,MRR@10",
                 "--output", str(tmp_path / "again")]) == 0
    [again] = records_in(tmp_path / "again")
    record = load_run_record(again)
    merged = {q: dict(docs) for q, docs in qrels.items()}
    for q, d, _ in rows:
        merged[q][d] = 2
    direct = pytrec_eval.RelevanceEvaluator(merged, {"ndcg_cut.10"}).evaluate(runs[0])
    assert record.metrics["nDCG@10"] == pytest.approx(sum(v["ndcg_cut_10"] for v in direct.values()) / 43, abs=1e-12)
    assert record.metrics["nDCG@10"] > load_run_record(MINILM).metrics["nDCG@10"]  # holes were relevant
    assert record.source.added_qrels == str(judged.resolve())
    assert record.dataset.fingerprint != load_run_record(MINILM).dataset.fingerprint
    assert record.dataset.counts.qrels == 4337 + len(rows)
    # with those judgments nothing in the top 10 is unjudged any more
    assert harness.pool([MINILM, bm25], depth=10, qrels=judged).rows == []


def test_pool_needs_texts_and_one_data_set(tmp_path, external_on_pool):
    [full] = harness.evaluate_runs([RUNS[0]], qrels=FULL_QRELS, relevance_level=2, output=tmp_path / "full")
    with pytest.raises(HarnessError, match="scored against a qrels file only .* pass --data"):
        harness.pool([full.path])
    pooled = harness.pool([full.path], data=POOL, depth=5)  # judged by the full qrels, texts from the pool
    full_qrels = read_qrels(FULL_QRELS)
    run = read_run(RUNS[0])
    assert {(q, d) for q, d, _ in pooled.rows} == {(q, d) for q in full_qrels for d in top(run.get(q, {}), 5)
                                                   if d not in full_qrels[q]}
    with pytest.raises(HarnessError, match="different judgments"):
        harness.pool([full.path, external_on_pool])


def test_check_an_external_run_as_the_checked_record(tmp_path, external_on_pool):
    """A suite encoder may stand for an external run (by name): expectations and baselines apply, speed SKIPs."""
    suite_path = write_suite(tmp_path / "suite.yaml", f"""
name: regression
datasets:
  - name: dl19-pool
    path: {POOL}
    relevance_level: 2
encoders:
  - name: BM25.dl19
    model: external
    expect:
      dl19-pool:
        nDCG@10: {{value: 0.5071, tolerance: 0.0005}}
    baseline:
      records: {REPO / "results" / "baselines"}
      encoder: all-MiniLM-L6-v2
      speed: {{max_slowdown: 0.1}}
metrics: [nDCG@10]
""")
    summary = tmp_path / "check.json"
    assert main(["check", str(suite_path), "--results", str(external_on_pool), "--resamples", "500",
                 "--json", str(summary)]) == 1  # BM25 is significantly worse than MiniLM on the pool
    results = {(r["kind"], r["metric"]): r for r in json.loads(summary.read_text())["results"]}
    assert results[("expect", "nDCG@10")]["status"] == "OK"
    assert results[("baseline", "nDCG@10")]["status"] == "FAIL"
    assert results[("speed", "passages/s")]["status"] == "SKIP"
    assert "the new record (BM25.dl19) is an external run" in results[("speed", "query p99 ms")]["message"]


def test_order_comes_from_scores_and_ties_from_document_ids(tmp_path):
    """trec_eval ignores the rank column and breaks score ties by document id, descending."""
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("q1 0 d2 1\nq2 0 d1 1\n")
    run = tmp_path / "run.trec"
    # q1: d1 and d2 tie (d2 first by id); q2: the rank column claims d1 first, but its score is the lower
    run.write_text("q1 Q0 d1 1 1.0 t\nq1 Q0 d2 2 1.0 t\nq2 Q0 d1 1 0.1 t\nq2 Q0 d3 2 0.9 t\n")
    result = harness.evaluate_run(run, qrels=qrels, metrics=["MRR@10"])
    assert result.per_query["MRR@10"] == {"q1": 1.0, "q2": 0.5}
