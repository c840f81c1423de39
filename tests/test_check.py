"""`harness check`: expected scores, baselines (significant drop, max_drop), speed floors, exit codes,
JSON and JUnit outputs; on hand-made records and on real ones (MiniLM vs truncated MiniLM)."""

import json
from xml.etree import ElementTree as ET

import pytest

from harness.analysis.check import baseline_result, check_expectation
from harness.cli import main
from harness.errors import HarnessError
from harness.analysis.stats import holm, randomization_test
from harness.suite import Expectation, load_suite
from tests.conftest import REPO, write_suite
from tests.record_fixtures import gpu_environment, real_records, synthetic_record

QIDS = [f"q{i}" for i in range(12)]
BASE = {"nDCG@10": {q: 0.8 for q in QIDS}, "MAP": {q: 0.5 + 0.01 * i for i, q in enumerate(QIDS)}}
WORSE = {"nDCG@10": {q: 0.3 + 0.01 * (i % 3) for i, q in enumerate(QIDS)}, "MAP": dict(BASE["MAP"])}


@pytest.mark.parametrize("value, tolerance, actual, status", [
    (0.6451, 0.002, 0.6451, "OK"),
    (0.6451, 0.002, 0.64514, "OK"),  # the same to 4 decimals
    (0.6451, 0.002, 0.6466, "OK-within-tolerance"),
    (0.6451, 0.002, 0.6431, "OK-within-tolerance"),  # exactly at the tolerance
    (0.6451, 0.002, 0.6430, "FAIL"),
    (0.6451, 0.0, 0.64514, "FAIL"),  # tolerance 0 means exactly
    (0.6451, 0.0, 0.6451, "OK"),
])
def test_expectation_outcomes(value, tolerance, actual, status):
    got, delta = check_expectation(Expectation(value=value, tolerance=tolerance), actual)
    assert got == status and delta == pytest.approx(actual - value)


@pytest.mark.parametrize("delta, p, status", [
    (+0.01, 0.001, "OK"),
    (-0.01, 0.001, "FAIL"),  # significant and larger than max_drop
    (-0.01, 0.2, "OK-within-tolerance"),  # a drop, but not significant
    (-0.001, 0.001, "OK-within-tolerance"),  # significant, but within max_drop
])
def test_baseline_outcomes(delta, p, status):
    result = baseline_result(0.5, 0.5 + delta, p, max_drop=0.005, alpha=0.05, dataset="d", encoder="e",
                             metric="m", test="randomization")
    assert result.status == status and result.p_value == p and result.tolerance == 0.005


def _suite(tmp_path, body: str, name="suite.yaml"):
    return write_suite(tmp_path / name, f"""
name: toy-suite
datasets:
  - name: toy
    path: data/toy
encoders:
  - name: new
    model: test/new
{body}
metrics: [nDCG@10, MAP]
top_k: 10
""")


def test_expectations_and_outputs(tmp_path, capsys):
    results = tmp_path / "results"
    synthetic_record(results, encoder="new", per_query=BASE)  # nDCG@10 0.8, MAP 0.555
    suite = _suite(tmp_path, """    expect:
      toy:
        nDCG@10: {value: 0.8, tolerance: 0.001}
        MAP: {value: 0.5600, tolerance: 0.01}""")
    junit, summary = tmp_path / "junit.xml", tmp_path / "check.json"
    assert main(["check", str(suite), "--results", str(results), "--junit", str(junit), "--json", str(summary)]) == 0
    out = capsys.readouterr().out
    assert "OK-within-tolerance" in out and "passed" in out
    data = json.loads(summary.read_text())
    assert data["passed"] and data["counts"] == {"OK": 1, "OK-within-tolerance": 1, "FAIL": 0, "SKIP": 0}
    cases = ET.parse(junit).getroot().findall("./testsuite/testcase")
    assert len(cases) == 2 and not ET.parse(junit).getroot().findall(".//failure")

    failing = _suite(tmp_path, """    expect:
      toy: {nDCG@10: {value: 0.85, tolerance: 0.01}}""", name="failing.yaml")
    assert main(["check", str(failing), "--results", str(results), "--junit", str(junit)]) == 1
    [failure] = ET.parse(junit).getroot().findall(".//failure")
    assert "expected 0.8500, actual 0.8000, delta -0.0500, tolerance 0.0100" in failure.get("message")
    assert "FAIL" in capsys.readouterr().out


def test_baseline_drop_fails_and_identical_run_passes(tmp_path):
    baseline = synthetic_record(tmp_path / "baseline", encoder="new", per_query=BASE)
    synthetic_record(tmp_path / "same", encoder="new", per_query=BASE)
    synthetic_record(tmp_path / "worse", encoder="new", per_query=WORSE)
    suite = _suite(tmp_path, f"""    baseline:
      records: {baseline.parent}
      max_drop: 0.01
      alpha: 0.05""")
    summary = tmp_path / "check.json"
    assert main(["check", str(suite), "--results", str(tmp_path / "same"), "--json", str(summary)]) == 0
    assert {r["status"] for r in json.loads(summary.read_text())["results"]} == {"OK"}

    assert main(["check", str(suite), "--results", str(tmp_path / "worse"), "--json", str(summary)]) == 1
    results = {r["metric"]: r for r in json.loads(summary.read_text())["results"]}
    assert results["nDCG@10"]["status"] == "FAIL" and results["nDCG@10"]["p_value"] < 0.05
    assert results["nDCG@10"]["expected"] == pytest.approx(0.8) and results["nDCG@10"]["delta"] < -0.4
    assert results["MAP"]["status"] == "OK"
    # The p-value is the randomization test's, Holm-adjusted over both baseline comparisons (MAP's p is 1).
    qids = sorted(QIDS)
    raw = randomization_test([BASE["nDCG@10"][q] for q in qids], [WORSE["nDCG@10"][q] for q in qids])
    assert results["nDCG@10"]["p_value"] == pytest.approx(holm([raw, 1.0])[0]) == pytest.approx(2 * raw)


def test_speed_floor_needs_the_same_hardware(tmp_path):
    baseline = synthetic_record(tmp_path / "baseline", encoder="new", per_query=BASE, passages_per_s=100)
    synthetic_record(tmp_path / "slow", encoder="new", per_query=BASE, passages_per_s=60)
    gpu = gpu_environment("NVIDIA H100")
    synthetic_record(tmp_path / "elsewhere", encoder="new", per_query=BASE, passages_per_s=10, environment=gpu)
    suite = _suite(tmp_path, f"""    baseline:
      records: {baseline.parent}
      min_passages_per_s: 0.8""")
    summary = tmp_path / "check.json"
    assert main(["check", str(suite), "--results", str(tmp_path / "slow"), "--json", str(summary)]) == 1
    [speed] = [r for r in json.loads(summary.read_text())["results"] if r["kind"] == "speed"]
    assert speed["status"] == "FAIL" and "0.60x" in speed["message"]
    assert main(["check", str(suite), "--results", str(tmp_path / "elsewhere"), "--json", str(summary)]) == 0
    [speed] = [r for r in json.loads(summary.read_text())["results"] if r["kind"] == "speed"]
    assert speed["status"] == "SKIP" and "different hardware" in speed["message"]


def test_newest_record_of_the_suite_is_checked(tmp_path):
    results = tmp_path / "results"
    synthetic_record(results, encoder="new", per_query=WORSE, created_at="2026-01-01T00:00:00+00:00")
    synthetic_record(results, encoder="new", per_query=BASE, created_at="2026-02-01T00:00:00+00:00")
    suite = _suite(tmp_path, """    expect:
      toy: {nDCG@10: {value: 0.8}}""")
    assert main(["check", str(suite), "--results", str(results)]) == 0


def test_bad_input_exits_2(tmp_path, capsys):
    results = tmp_path / "results"
    synthetic_record(results, encoder="other", per_query=BASE)
    suite = _suite(tmp_path, "")
    assert main(["check", str(suite), "--results", str(results)]) == 2
    assert "no record of dataset 'toy' x encoder 'new'" in capsys.readouterr().err
    synthetic_record(results, encoder="new", per_query=BASE)
    missing = _suite(tmp_path, f"""    baseline: {{records: {tmp_path / 'nowhere'}}}""", name="missing.yaml")
    assert main(["check", str(missing), "--results", str(results)]) == 2
    different_data = tmp_path / "other-data"
    synthetic_record(different_data, encoder="new", per_query=BASE, fingerprint="changed")
    changed = _suite(tmp_path, f"""    baseline: {{records: {different_data}}}""", name="changed.yaml")
    assert main(["check", str(changed), "--results", str(results)]) == 2
    assert "different data" in capsys.readouterr().err


def test_suite_validation_of_expect_and_baseline(tmp_path):
    with pytest.raises(HarnessError, match="expect names dataset 'nope'"):
        load_suite(_suite(tmp_path, "    expect: {nope: {MAP: {value: 0.5}}}"))
    with pytest.raises(HarnessError, match="metrics the suite does not compute: MRR@10"):
        load_suite(_suite(tmp_path, "    expect: {toy: {MRR@10: {value: 0.5}}}"))
    with pytest.raises(HarnessError, match="unknown key 'max_dorp'; did you mean 'max_drop'"):
        load_suite(_suite(tmp_path, "    baseline: {records: x, max_dorp: 0.1}"))
    suite = load_suite(_suite(tmp_path, "    baseline: {records: results/base, alpha: 0.01}"))
    assert suite.encoders[0].baseline.records == (tmp_path / "results" / "base").resolve()
    assert suite.encoders[0].baseline.test == "randomization" and suite.encoders[0].baseline.max_drop == 0


def test_real_degraded_model_fails_against_the_real_baseline(tmp_path_factory, tmp_path):
    real = real_records(tmp_path_factory)
    control = json.loads((real.control / "record.json").read_text())
    suite = write_suite(tmp_path / "gate.yaml", f"""
name: gate
datasets:
  - name: noveleval
    path: {REPO / "data" / "noveleval"}
encoders:
  - name: candidate
    model: bundled:all-MiniLM-L6-v2
    expect:
      noveleval: {{nDCG@10: {{value: {control["metrics"]["nDCG@10"]:.4f}, tolerance: 0.01}}}}
    baseline:
      records: {real.control}
      encoder: all-MiniLM-L6-v2
      max_drop: 0.01
metrics: [MRR@10, nDCG@10, Recall@10, MAP]
top_k: 100
""")
    # The candidate is the truncated model: copy its record under the candidate's name.
    candidate = tmp_path / "candidate"
    record = json.loads((real.degraded / "record.json").read_text())
    record["encoder"]["name"] = "candidate"
    (candidate / real.degraded.name).mkdir(parents=True)
    for name in ("run.trec", "per_query.json"):
        (candidate / real.degraded.name / name).write_bytes((real.degraded / name).read_bytes())
    (candidate / real.degraded.name / "record.json").write_text(json.dumps(record))
    summary = tmp_path / "check.json"
    assert main(["check", str(suite), "--results", str(candidate), "--json", str(summary)]) == 1
    results = {(r["kind"], r["metric"]): r for r in json.loads(summary.read_text())["results"]}
    assert results[("expect", "nDCG@10")]["status"] == "FAIL"
    assert results[("baseline", "nDCG@10")]["status"] == "FAIL" and results[("baseline", "nDCG@10")]["p_value"] < 0.05

    # The control itself, under the candidate's name, passes every check.
    record = json.loads((real.control / "record.json").read_text())
    record["encoder"]["name"] = "candidate"
    same = tmp_path / "same" / "r"
    same.mkdir(parents=True)
    for name in ("run.trec", "per_query.json"):
        (same / name).write_bytes((real.control / name).read_bytes())
    (same / "record.json").write_text(json.dumps(record))
    assert main(["check", str(suite), "--results", str(same.parent), "--json", str(summary)]) == 0


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
    code = main(["check", str(suite), "--output", str(out), "--cache", str(tmp_path / "cache"), "--no-progress"])
    assert code == 1  # a random-weight model is nowhere near 0.99
    assert "FAIL" in capsys.readouterr().out
    assert len(list(out.glob("*/record.json"))) == 1


BASELINES = REPO / "results" / "baselines"


def test_shipped_baselines_satisfy_the_regression_suite(tmp_path):
    """The shipped records meet the regression suite's expectations (and trivially their own baseline)."""
    summary = tmp_path / "check.json"
    assert main(["check", str(REPO / "suites" / "regression.yaml"), "--results", str(BASELINES),
                 "--json", str(summary)]) == 0
    data = json.loads(summary.read_text())
    kinds = {(r["kind"], r["dataset"]) for r in data["results"]}
    assert {("expect", d) for d in ("noveleval", "scifact", "dl19-pool")} <= kinds
    assert {("baseline", d) for d in ("noveleval", "scifact", "dl19-pool")} <= kinds
    [mteb] = [r for r in data["results"] if (r["kind"], r["dataset"], r["metric"]) == ("expect", "scifact", "nDCG@10")]
    assert mteb["expected"] == 0.6451 and mteb["status"] == "OK"  # MTEB's published all-MiniLM-L6-v2 score


@pytest.mark.parametrize("variant, must_fail, passes", [
    # 64 tokens: SciFact abstracts lose most of their text (significant); DL19 passages (~77 tokens) barely
    # change, and the harness rightly finds no significant drop there.
    ("64", {("baseline", "scifact", "nDCG@10")}, {("baseline", "dl19-pool", "nDCG@10")}),
    ("16", {("baseline", "scifact", "nDCG@10"), ("baseline", "dl19-pool", "MAP"),
            ("baseline", "dl19-pool", "Recall@1000")}, set()),
])
def test_shipped_truncation_records_against_the_regression_gate(tmp_path, variant, must_fail, passes):
    """Degraded models (texts truncated to 64 / 16 tokens) checked against the shipped baselines."""
    summary = tmp_path / "check.json"
    suite = (REPO / "suites" / "regression.yaml").read_text().replace(
        "name: all-MiniLM-L6-v2\n", f"name: all-MiniLM-L6-v2-trunc{variant}\n", 1)
    suite = suite.replace("records: ../results/baselines",
                          "records: ../results/baselines\n      encoder: all-MiniLM-L6-v2")
    path = write_suite(tmp_path / "gate.yaml", suite.replace("../", f"{REPO}/"))
    results_dir = REPO / "results" / f"truncation-{variant}"
    assert main(["check", str(path), "--results", str(results_dir), "--json", str(summary)]) == 1
    status = {(r["kind"], r["dataset"], r["metric"]): r["status"] for r in json.loads(summary.read_text())["results"]}
    assert all(status[key] == "FAIL" for key in must_fail), status
    assert all(status[key] != "FAIL" for key in passes), status


@pytest.mark.slow
def test_regression_suite_passes_on_the_current_code(tmp_path, capsys):
    """Our own regression gate, end to end: run the suite now and check it against the shipped baselines."""
    junit = tmp_path / "junit.xml"
    code = main(["check", str(REPO / "suites" / "regression.yaml"), "--output", str(tmp_path / "records"),
                 "--junit", str(junit), "--no-progress"])
    assert code == 0, capsys.readouterr()
    assert not ET.parse(junit).getroot().findall(".//failure")
