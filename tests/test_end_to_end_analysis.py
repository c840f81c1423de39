"""The analysis commands on records this session writes: encode -> record -> compare / check / report.

test_compare, test_check and test_report test the analysis itself on shipped and synthetic records (seconds);
these prove that what a fresh run writes goes through it (minutes on 2 cores the first time; corpus embeddings
then come from the test embedding cache, $HARNESS_CACHE). The fresh records are `real_records`: the bundled
all-MiniLM-L6-v2 on NovelEval and the same model truncated to 16 tokens, metrics MRR@10, nDCG@10, Recall@10, MAP.
"""

import json
import re
from xml.etree import ElementTree as ET

import pytest

from harness.cli import main
from harness.reporting import load_report_data
from harness.vocabulary.statistics import StatsOptions
from tests.conftest import REPO, write_suite
from tests.record_fixtures import real_records


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    return real_records(tmp_path_factory)


def test_fresh_truncation_is_a_significant_regression(real, tmp_path):
    """Records written in this process: compare finds the truncation worse, judges their speeds comparable (same
    machine, same process) and, as a gate, fails."""
    out = tmp_path / "comparison.json"
    assert main(["compare", str(real.control), str(real.degraded), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    by_metric = {m["metric"]: m for m in data["metrics"]}
    assert set(by_metric) == {"MRR@10", "nDCG@10", "Recall@10", "MAP"}
    ndcg = by_metric["nDCG@10"]
    assert ndcg["control"] == "all-MiniLM-L6-v2" and ndcg["treatment"] == "truncated-16" and ndcg["n"] == 21
    assert ndcg["delta"] < -0.1 and ndcg["verdict"] == "worse" and ndcg["p_randomization_holm"] < 0.05
    assert data["speed"][0]["comparable"] is True
    assert main(["compare", str(real.control), str(real.degraded), "--fail-on-regression"]) == 1


def test_fresh_recall_curve_matches_the_recall_metric(real):
    """The run stored its per-query Recall@k curve; its mean at k = 10 is the record's Recall@10."""
    data = load_report_data([real.folder], stats=StatsOptions(n_resamples=200))
    record = json.loads((real.control / "record.json").read_text())
    assert record["schema_version"] == 2 and record["files"]["recall_curve"] == "recall_curve.json"
    stored = json.loads((real.control / "recall_curve.json").read_text())
    assert len(stored["per_query"]) == record["dataset"]["counts"]["queries"] == 21
    ks, values = data.recall["noveleval"]["all-MiniLM-L6-v2"]
    assert ks == stored["ks"] and ks[0] == 1 and ks[-1] == 100  # the suite's top_k
    assert values[ks.index(10)] == pytest.approx(record["metrics"]["Recall@10"], abs=1e-12)
    degraded = data.recall["noveleval"]["truncated-16"][1]
    assert degraded[ks.index(10)] < values[ks.index(10)]


def test_report_on_fresh_records_and_a_fresh_profile(tmp_path_factory, tiny_model, tmp_path):
    """A report over the fresh records plus a profile record that `harness profile` writes now."""
    real = real_records(tmp_path_factory)  # a copy of its own: the profile record is added to it
    assert main(["profile", "-m", str(tiny_model), "--engine", "fast,sentence-transformers", "--precision",
                 "fp32,int8", "--batch-size", "1,4,16", "--n", "32", "--warmup", "1", "--min-calls", "5",
                 "--min-seconds", "0", "--output", str(real.folder)]) == 0
    out = tmp_path / "report"
    assert main(["report", str(real.folder), "--output", str(out)]) == 0
    keys = sorted(p.stem.split("--")[0] for p in (out / "plots").glob("*.png"))
    assert keys == ["bars", "deltas", "frontier", "latency", "profile-latency", "recall", "throughput"]
    md = (out / "report.md").read_text()
    for link in re.findall(r"\]\(([^)]+)\)", md):
        assert (out / link).is_file(), link
    assert "| noveleval | truncated-16 |" in md and "▼" in md
    assert "synthetic-77" in md and "(profile)" in md


def test_check_runs_the_suite_when_no_results_are_given(tmp_path, tiny_model, capsys):
    """Without --results, check runs the suite itself (a small real checkpoint on NovelEval)."""
    suite = write_suite(tmp_path / "tiny.yaml", f"""
name: tiny-gate
datasets:
  - name: noveleval
    path: {REPO / "data" / "noveleval"}
encoders:
  - name: tiny
    model: {tiny_model}
    max_seq_length: 32
    device: cpu
    expect:
      noveleval: {{nDCG@10: {{value: 0.99, tolerance: 0.01}}}}
metrics: [nDCG@10]
top_k: 20
""")
    out = tmp_path / "records"
    code = main(["check", str(suite), "--output", str(out), "--cache", str(tmp_path / "cache"), "--no-progress",
                 "--latency-calls", "30"])  # the query latency is not at issue: 30 calls, not the default 1,000
    assert code == 1  # a random-weight model is nowhere near 0.99
    assert "FAIL" in capsys.readouterr().out
    assert len(list(out.glob("*/record.json"))) == 1


def test_runs_keep_per_batch_encode_times_through_the_cache(tmp_path, tiny_model):
    """A real run records every store chunk's encode time and the per-batch pieces in it; a rerun that reads
    the corpus from the cache carries the same (old) times and says so."""
    from harness.scoring.records import load_run_record

    suite = write_suite(tmp_path / "tiny.yaml", f"""
name: tiny-timed
datasets:
  - name: noveleval
    path: {REPO / "data" / "noveleval"}
encoders:
  - name: tiny
    model: {tiny_model}
    max_seq_length: 32
    batch_size: 16
    device: cpu
metrics: [nDCG@10]
top_k: 20
""")
    args = ["run", str(suite), "--cache", str(tmp_path / "cache"), "--chunk-rows", "256", "--no-progress",
            "--latency-calls", "30"]  # the corpus timings are at issue, not the query latency
    assert main([*args, "--output", str(tmp_path / "first")]) == 0
    assert main([*args, "--output", str(tmp_path / "second")]) == 0
    first, second = (load_run_record(next((tmp_path / n).iterdir())) for n in ("first", "second"))
    chunks = first.performance.corpus_chunk_seconds
    assert [c.rows for c in chunks] == [256, 164]  # 420 NovelEval passages in chunks of 256
    for chunk in chunks:
        assert len(chunk.pieces) > 1 and sum(p.rows for p in chunk.pieces) == chunk.rows
        assert sum(p.seconds for p in chunk.pieces) == pytest.approx(chunk.seconds, rel=0.05, abs=0.01)
    assert sum(c.seconds for c in chunks) == pytest.approx(first.performance.corpus_encode_s)
    assert not first.performance.corpus_from_cache and second.performance.corpus_from_cache
    assert second.performance.corpus_chunk_seconds == chunks


@pytest.mark.slow
def test_regression_suite_passes_on_the_current_code(tmp_path, capsys):
    """Our own regression gate, end to end: run the suite now and check it against the shipped baselines."""
    junit = tmp_path / "junit.xml"
    code = main(["check", str(REPO / "suites" / "regression.yaml"), "--output", str(tmp_path / "records"),
                 "--junit", str(junit), "--no-progress"])
    assert code == 0, capsys.readouterr()
    assert not ET.parse(junit).getroot().findall(".//failure")
