"""End to end through the CLI on real data (NovelEval) with a small real checkpoint."""

import subprocess
import sys

import pytest

from harness.api import evaluate
from harness.cli import main
from harness.input.datasets import read_run
from harness.scoring.records import load_per_query, load_run_record
from tests.conftest import DATA, REPO, write_suite

SUITE = """
name: smoke
datasets:
  - name: noveleval
    path: {data}
    relevance_level: {level}
encoders:
  - name: tiny
    model: {model}
    max_seq_length: 64
    device: cpu
    engine: {engine}
metrics: [MRR@10, nDCG@10, R@50, AP]
top_k: 50
"""


def suite_file(tmp_path, model, *, data=DATA / "noveleval", engine="fast", level=2, name="suite.yaml"):
    return write_suite(tmp_path / name, SUITE.format(data=data, model=model, engine=engine, level=level))


def records_in(folder):
    return sorted(p for p in folder.iterdir() if (p / "record.json").exists()) if folder.exists() else []


@pytest.mark.parametrize("engine", ["fast", "sentence-transformers"])
def test_run_writes_a_complete_record(tmp_path, tiny_model, capsys, engine):
    out = tmp_path / "results"
    assert main(["run", str(suite_file(tmp_path, tiny_model, engine=engine)), "--output", str(out),
                 "--cache", str(tmp_path / "cache"), "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "| noveleval | tiny" in table and "MRR@10" in table and "R@50" in table

    [record_dir] = records_in(out)
    record = load_run_record(record_dir)
    assert list(record.metrics) == ["MRR@10", "nDCG@10", "R@50", "AP"]  # names exactly as the suite writes them
    assert record.dataset.counts.documents == 420 and record.dataset.relevance_level == 2
    assert record.encoder.settings.engine == engine and record.encoder.dimension == 32
    assert len(record.encoder.fingerprint) == 16
    perf = record.performance
    assert perf.throughput.passages_per_s > 0 and perf.throughput.tokens_per_s > perf.throughput.passages_per_s
    assert perf.query_latency.n >= 1000 and perf.query_latency.p50 > 0  # LATENCY_CALLS: a p99 the gate can bound
    assert perf.peak_rss_mb > 100 and perf.search_s > 0
    assert perf.embedding_store.dtype == "fp32"  # auto: fp32 below 1M passages
    assert record.environment.cpu_model and record.environment.libraries["torch"]

    # The TREC run on disk re-evaluates to the record's numbers; per-query values average to them.
    run = read_run(record_dir / "run.trec")
    assert len(run) == 21 and all(len(docs) == 50 for docs in run.values())
    from harness.input.datasets import load_dataset
    from harness.input.suite import DatasetSpec
    qrels = load_dataset(DatasetSpec(name="n", path=DATA / "noveleval")).qrels
    again = evaluate(qrels, run, list(record.metrics), relevance_level=2)
    per_query = load_per_query(record_dir, record)
    for metric, value in record.metrics.items():
        assert again[metric] == pytest.approx(value, abs=1e-12)
        assert sum(per_query[metric].values()) / 21 == pytest.approx(value, abs=1e-12)


def test_second_run_never_overwrites_and_reuses_the_cache(tmp_path, tiny_model):
    out, cache = tmp_path / "results", tmp_path / "cache"
    args = ["run", str(suite_file(tmp_path, tiny_model)), "--output", str(out), "--cache", str(cache), "--no-progress"]
    assert main(args) == 0 and main(args) == 0
    first, second = (load_run_record(d) for d in records_in(out))
    assert first.metrics == second.metrics
    assert not first.performance.corpus_from_cache and second.performance.corpus_from_cache
    assert (records_in(out)[0] / "run.trec").read_bytes() == (records_in(out)[1] / "run.trec").read_bytes()


def test_missing_dataset_folder_exits_2_and_writes_nothing(tmp_path, tiny_model, capsys):
    out = tmp_path / "results"
    code = main(["run", str(suite_file(tmp_path, tiny_model, data=tmp_path / "absent")), "--output", str(out)])
    assert code == 2
    assert "absent not found; a BEIR folder holds corpus.jsonl" in capsys.readouterr().err
    assert records_in(out) == [] and not out.exists()


def test_encoder_producing_nan_exits_2_and_writes_nothing(tmp_path, nan_model, capsys):
    out = tmp_path / "results"
    code = main(["run", str(suite_file(tmp_path, nan_model)), "--output", str(out), "--cache", str(tmp_path / "c"),
                 "--no-progress"])
    assert code == 2
    assert "produced NaN/inf embeddings for 420 texts" in capsys.readouterr().err
    assert records_in(out) == []


def test_model_path_that_is_not_a_model(tmp_path, capsys):
    (tmp_path / "empty-model").mkdir()
    code = main(["run", str(suite_file(tmp_path, tmp_path / "empty-model")), "--output", str(tmp_path / "r")])
    assert code == 2
    assert "exists but is not a sentence-transformers or transformers model folder" in capsys.readouterr().err


def test_hub_id_without_network_says_how_to_use_a_local_copy(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(["run", str(suite_file(tmp_path, "sentence-transformers/msmarco-distilbert-dot-v5")),
                 "--output", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2
    assert "is not a local folder and downloading it from the Hugging Face Hub failed" in err
    assert "set `model: DIR` in the suite" in err


def test_bad_usage_exits_2(capsys):
    assert main(["run"]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["run", "quick", "--latency-calls", "0"]) == 2
    assert "--latency-calls must be a positive integer (got '0')" in capsys.readouterr().err


def test_latency_calls_sets_the_timed_query_calls(tmp_path, tiny_model):
    out = tmp_path / "results"
    assert main(["run", str(suite_file(tmp_path, tiny_model)), "--output", str(out), "--cache", str(tmp_path / "c"),
                 "--no-progress", "--latency-calls", "400"]) == 0
    [record_dir] = records_in(out)
    latency = load_run_record(record_dir).performance.query_latency
    assert latency.n >= 400 and len(latency.values_ms) == latency.n
    # Timing stops at the first call by which 400 were timed and a second had passed: more than 400 only when
    # they took under a second (a fast machine times more of the tiny model's calls).
    assert latency.n == 400 or sum(latency.values_ms[:-1]) < 1000


def test_list_shows_shipped_suites_and_data(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("suites/demo.yaml", "suites/quick.yaml", "suites/scifact.yaml", "suites/msmarco-dev.yaml",
                 "data/msmarco-trecdl2019-pool"):
        assert name in out
    assert "INVALID" not in out


def test_console_script_exit_code_for_bad_suite(tmp_path):
    bad = write_suite(tmp_path / "bad.yaml", "name: x\ntop_kk: 3\n")
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(bad)], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 2
    assert "unknown key 'top_kk'; did you mean 'top_k'?" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_store_dtype_auto_is_fp16_from_a_million_passages():
    from harness.pipeline.runner import store_dtype_for

    assert [store_dtype_for(n, "auto") for n in (420, 999_999, 1_000_000, 8_841_823)] == [
        "fp32", "fp32", "fp16", "fp16"]
    assert store_dtype_for(8_841_823, "fp32") == "fp32" and store_dtype_for(10, "fp16") == "fp16"


def test_shipped_suites_resolve_from_any_directory_and_a_local_file_wins(tmp_path, monkeypatch, capsys):
    from harness.input.suite import load_suite

    monkeypatch.chdir(tmp_path)
    shipped = (REPO / "suites" / "quick.yaml").resolve()
    assert load_suite("suites/quick.yaml").source.resolve() == shipped
    assert load_suite("quick").source.resolve() == shipped
    assert load_suite("quick").datasets[0].path == (REPO / "data" / "noveleval").resolve()
    local = write_suite((tmp_path / "suites").mkdir() or tmp_path / "suites" / "quick.yaml",
                        SUITE.format(data=DATA / "noveleval", model="m", engine="fast", level=1))
    found = load_suite("suites/quick.yaml")
    assert found.name == "smoke" and found.source == local.relative_to(tmp_path)
    assert main(["run", "suites/nope.yaml"]) == 2
    err = capsys.readouterr().err
    assert "suites/nope.yaml: suite file not found; shipped suites (`harness list`): " in err
    assert "demo, index-sweep, msmarco-dev, quick, regression" in err
