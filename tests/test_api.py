"""The public API (`import harness`): readers, metrics, evaluate_model on a loaded model, suites whose
failures are data, compare/check on real records. Real models, real data, real pytrec_eval."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest

import harness
from harness.cli import main
from harness.vocabulary.errors import HarnessError
from tests.conftest import DATA, REPO, write_suite

NOVELEVAL_QRELS = DATA / "noveleval" / "qrels" / "test.tsv"


def test_import_is_fast_and_loads_no_torch():
    code = ("import sys, harness; assert 'torch' not in sys.modules; "
            f"q = harness.load_qrels({str(NOVELEVAL_QRELS)!r}); "
            "e = harness.evaluate(q, {'1': {'x': 1.0}}, ['nDCG@10']); "
            "assert 'torch' not in sys.modules, 'readers and metrics must not load torch'; "
            "assert set(harness.__all__) <= set(dir(harness)); print(len(q))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "21"
    for name in harness.__all__:  # every exported name resolves
        assert getattr(harness, name) is not None
    with pytest.raises(AttributeError):
        harness.no_such_thing  # noqa: B018


def test_api_functions_stay_functions_after_their_modules_are_imported():
    # importing a submodule binds it as an attribute of its package: no public function may share a module's name
    code = ("import importlib, pkgutil, harness; "
            "[importlib.import_module(m.name) for m in pkgutil.walk_packages(harness.__path__, 'harness.') "
            "if not m.name.startswith(('harness.encode.runtimes', 'harness.encode.distributed', "
            "'harness.reporting.tracking'))]; "
            "import harness.api as api; "
            "bad = [n for n in harness.__all__ "
            "       if callable(getattr(api, n, None)) and getattr(harness, n) is not getattr(api, n)]; "
            "print(bad)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_load_qrels_reads_trec_and_beir_alike(tmp_path):
    beir = harness.load_qrels(NOVELEVAL_QRELS)
    trec = tmp_path / "qrels.txt"
    trec.write_text("".join(f"{q} 0 {d} {g}\n" for q, docs in beir.items() for d, g in docs.items()))
    assert harness.load_qrels(trec) == beir
    assert len(beir) == 21 and all(isinstance(g, int) for docs in beir.values() for g in docs.values())
    bad = tmp_path / "bad.txt"
    bad.write_text("q1 0 d1 1\nq2 0 d2 high\n")
    with pytest.raises(HarnessError, match=r"bad.txt:2: expected 'qid 0 docid grade'"):
        harness.load_qrels(bad)


def test_load_run_reads_trec_gzip_and_json_alike(tmp_path):
    run = {"q1": {"d1": 2.5, "d2": 1.0}, "q2": {"d3": 0.25}}
    lines = "".join(f"{q} Q0 {d} {r} {s} tag\n" for q, docs in run.items() for r, (d, s) in enumerate(docs.items(), 1))
    (tmp_path / "run.trec").write_text(lines)
    with gzip.open(tmp_path / "run.trec.gz", "wt") as handle:
        handle.write(lines)
    (tmp_path / "run.json").write_text(json.dumps(run))
    for name in ("run.trec", "run.trec.gz", "run.json"):
        assert harness.load_run(tmp_path / name) == run, name
    (tmp_path / "short.trec").write_text("q1 Q0 d1 1 0.5\n")
    with pytest.raises(HarnessError, match=r"short.trec:1: expected 'qid Q0 docid rank score tag'"):
        harness.load_run(tmp_path / "short.trec")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(HarnessError, match=r"list.json: expected JSON"):
        harness.load_run(tmp_path / "list.json")


def test_evaluate_hand_computed_with_numpy_scores_and_a_missing_query():
    qrels = {"q1": {"a": 1, "b": 0}, "q2": {"c": 2}}
    run = {"q1": {"a": np.float32(0.5), "b": np.float32(0.9)}}  # q2 not retrieved at all: scores 0, stays in
    assert harness.evaluate_per_query(qrels, run, ["MRR@10", "P@1"])["MRR@10"] == {"q1": 0.5, "q2": 0.0}
    assert harness.evaluate(qrels, run, ["MRR@10", "P@1"]) == {"MRR@10": 0.25, "P@1": 0.0}
    assert harness.evaluate(qrels, run, "MRR@1") == {"MRR@1": 0.0}  # one name, not its letters
    with pytest.raises(HarnessError, match="unknown metric 'nDGC@10'; did you mean 'nDCG@10'"):
        harness.evaluate(qrels, run, ["nDGC@10"])


@pytest.fixture(scope="module")
def loaded_tiny(tiny_model):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_model), device="cpu")


def test_evaluate_model_on_a_loaded_model_writes_nothing_and_leaves_the_model_as_it_was(
        loaded_tiny, tiny_model, tmp_path, monkeypatch):
    from harness.encode.models import weights_fingerprint

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    model = loaded_tiny.train()  # as in a training loop
    before = (weights_fingerprint(model), model.max_seq_length, next(model.parameters()).dtype)

    result = harness.evaluate_model(model, DATA / "noveleval", metrics=["nDCG@10", "MRR@10"], top_k=20,
                                    relevance_level=2, latency_calls=3, progress=False)
    assert list(tmp_path.iterdir()) == []  # no record, no embedding cache
    assert all(m.training for m in model.modules())  # train mode is back
    assert (weights_fingerprint(model), model.max_seq_length, next(model.parameters()).dtype) == before
    assert list(result.metrics) == ["nDCG@10", "MRR@10"] and 0 < result.metrics["nDCG@10"] < 1
    assert len(result.ranking) == 21 and all(len(hits) == 20 for hits in result.ranking.values())
    for metric, mean in result.metrics.items():
        assert sum(result.per_query[metric].values()) / 21 == pytest.approx(mean, abs=1e-12)
    assert result.record.encoder.model == str(tiny_model)  # what the model was loaded from

    # The same numbers as loading the model by path, and as re-scoring the returned ranking.
    by_path = harness.evaluate_model(str(tiny_model), str(DATA / "noveleval"), metrics=["nDCG@10", "MRR@10"],
                                     top_k=20, relevance_level=2, device="cpu", latency_calls=3, progress=False)
    assert by_path.metrics == pytest.approx(result.metrics, abs=1e-6)
    qrels = harness.load_dataset(DATA / "noveleval").qrels
    again = harness.evaluate(qrels, {q: dict(h) for q, h in result.ranking.items()}, ["nDCG@10", "MRR@10"],
                             relevance_level=2)
    assert again == pytest.approx(result.metrics, abs=1e-12)
    assert "| nDCG@10 |" in result._repr_markdown_()


def test_the_baseline_engine_at_half_precision_leaves_a_loaded_model_bit_identical(loaded_tiny):
    from harness.encode.models import weights_fingerprint

    before = (weights_fingerprint(loaded_tiny), next(loaded_tiny.parameters()).dtype)
    result = harness.evaluate_model(loaded_tiny, DATA / "noveleval", metrics=["nDCG@10"], precision="bf16",
                                    engine="sentence-transformers", latency_calls=1, progress=False)
    assert 0 < result.metrics["nDCG@10"] <= 1
    assert (weights_fingerprint(loaded_tiny), next(loaded_tiny.parameters()).dtype) == before


def test_evaluate_model_refuses_a_cutoff_above_top_k_before_encoding(tiny_model):
    """The default metrics include Recall@1000: with top_k=100 it would equal Recall@100."""
    with pytest.raises(harness.HarnessError, match=r"evaluate_model\(metrics=\.\.\., top_k=100\): metric "
                                                   r"Recall@1000 cuts above top_k 100.*raise top_k to 1000"):
        harness.evaluate_model(str(tiny_model), "no/such/folder", top_k=100)


@pytest.mark.parametrize("top_k", [True, "10", 0, 2.5])
def test_evaluate_model_takes_top_k_as_a_positive_whole_number_only(tiny_model, top_k):
    with pytest.raises(harness.HarnessError, match=r"top_k must be a positive whole number"):
        harness.evaluate_model(str(tiny_model), "no/such/folder", metrics=["nDCG@10"], top_k=top_k)


def test_evaluate_model_refuses_to_change_a_loaded_model(loaded_tiny):
    with pytest.raises(HarnessError, match="does not change a model it is given"):
        harness.evaluate_model(loaded_tiny, DATA / "noveleval", max_seq_length=16)
    with pytest.raises(HarnessError, match="does not move a model it is given"):
        harness.evaluate_model(loaded_tiny, DATA / "noveleval", device="cuda")
    with pytest.raises(HarnessError, match=r"invalid encoder options:\s+precision"):
        harness.evaluate_model(loaded_tiny, DATA / "noveleval", precision="int4")
    with pytest.raises(HarnessError, match="a BEIR folder holds corpus.jsonl"):
        harness.evaluate_model(loaded_tiny, DATA / "absent")


FAILING_SUITE = """
name: partly-broken
datasets:
  - name: noveleval
    path: {data}
    relevance_level: 2
  - name: absent
    path: {absent}
encoders:
  - name: tiny
    model: {tiny}
    device: cpu
  - name: nan
    model: {nan}
    device: cpu
  - name: not-a-model
    model: {empty}
    device: cpu
metrics: [nDCG@10, MRR@10]
top_k: 20
"""


@pytest.fixture
def failing_suite(tmp_path, tiny_model, nan_model):
    (tmp_path / "empty-model").mkdir()
    return write_suite(tmp_path / "suite.yaml", FAILING_SUITE.format(
        data=DATA / "noveleval", absent=tmp_path / "absent", tiny=tiny_model, nan=nan_model,
        empty=tmp_path / "empty-model"))


def test_run_suite_records_each_failure_and_runs_the_rest(failing_suite, tmp_path):
    out = tmp_path / "results"
    result = harness.run_suite(failing_suite, output=out, cache=tmp_path / "cache", progress=False)
    assert [(o.dataset, o.encoder, o.ok) for o in result.outcomes] == [
        ("noveleval", "tiny", True), ("absent", "tiny", False), ("noveleval", "nan", False),
        ("absent", "nan", False), ("noveleval", "not-a-model", False), ("absent", "not-a-model", False)]
    errors = {(o.dataset, o.encoder): o.error for o in result.failures}
    assert "absent not found; a BEIR folder holds corpus.jsonl" in errors[("absent", "tiny")]
    assert "produced NaN/inf embeddings for 420 texts" in errors[("noveleval", "nan")]
    assert "not a sentence-transformers or transformers model folder" in errors[("noveleval", "not-a-model")]
    assert not result.ok and result.paths == [result.outcomes[0].path]
    assert [p.name for p in out.iterdir()] == [result.outcomes[0].path.name]  # only the complete record
    assert "FAILED noveleval × nan: encoder 'nan' produced NaN" in result.to_table()
    with pytest.raises(HarnessError, match="failed, so it has no record"):
        result.outcomes[1].record  # noqa: B018


def test_cli_run_exits_2_naming_each_failure_and_fail_fast_stops_at_the_first(failing_suite, tmp_path, capsys):
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(failing_suite), "-o", str(out),
                           "--cache", str(tmp_path / "cache")], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 2
    assert "| noveleval | tiny" in proc.stdout  # the successful run is still reported
    assert "error: 5 of 6 dataset x encoder run(s) failed:" in proc.stderr
    assert "  noveleval × nan: encoder 'nan' produced NaN/inf embeddings" in proc.stderr
    assert "  absent × tiny: dataset 'absent' did not load:" in proc.stderr
    # not on a terminal: a few progress lines, no carriage-return redraws (ours or Hugging Face's)
    assert "\r" not in proc.stderr and "encode noveleval × tiny: 420/420 docs (100%" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len([p for p in out.iterdir()]) == 1

    fast_out = tmp_path / "fast"
    assert main(["run", str(failing_suite), "-o", str(fast_out), "--cache", str(tmp_path / "cache"),
                 "--fail-fast", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "absent not found; a BEIR folder holds corpus.jsonl" in err and "FAILED" not in err
    assert not fast_out.exists()  # the broken dataset stops the suite before anything runs


def test_in_memory_suite_results_compare_with_evaluate_model(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    suite = write_suite(tmp_path / "s.yaml", f"""
name: two
datasets: [{{name: noveleval, path: {DATA / "noveleval"}, relevance_level: 2}}]
encoders:
  - {{name: tiny, model: {tiny_model}, device: cpu}}
  - {{name: tiny-16, model: {tiny_model}, device: cpu, max_seq_length: 16}}
metrics: [nDCG@10, MRR@10]
top_k: 20
""")
    ran = harness.run_suite(suite, progress=False)
    assert ran.ok and ran.paths == [] and len(ran.results) == 2  # no output: records stay in memory
    comparison = harness.compare(ran)
    [ndcg] = [m for m in comparison.metrics if m.metric == "nDCG@10"]
    assert (ndcg.control, ndcg.treatment) == ("tiny", "tiny-16")
    assert ndcg.stats.delta == pytest.approx(ran.results[1].metrics["nDCG@10"] - ran.results[0].metrics["nDCG@10"])
    assert "| noveleval | nDCG@10 |" in comparison._repr_markdown_()
    with pytest.raises(HarnessError, match="need at least two run records"):
        harness.compare(ran.results[0])


def test_check_and_compare_read_the_shipped_records():
    report = harness.check(REPO / "suites" / "regression.yaml", results=[REPO / "results" / "baselines"],
                           n_resamples=1000)
    assert not report.failed and "regression: passed" in report._repr_markdown_()
    comparison = harness.compare(REPO / "results" / "baselines", REPO / "results" / "truncation-16",
                                 metrics=["nDCG@10"], n_resamples=1000)
    assert {m.dataset for m in comparison.metrics} == {"noveleval", "scifact", "dl19-pool"}
    assert all(m.verdict(comparison.alpha, comparison.test) == "worse" for m in comparison.metrics)


def test_progress_lines_off_a_terminal(capsys):
    from harness.vocabulary.progress import progress

    with progress(1000, "encode x") as update:
        for _ in range(1000):
            update(1)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10 and lines[-1].startswith("encode x: 1,000/1,000 docs (100%")
    assert lines[0].startswith("encode x: 100/1,000 docs (10%")
