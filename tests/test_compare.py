"""`harness compare`: matching, refusal, Holm, verdicts, speed comparability, exit codes, JSON.

The statistics themselves are tested against known values in test_stats.py; here we test how
compare composes them, on hand-made records and on shipped real records (MiniLM vs MiniLM truncated
to 16 tokens). test_end_to_end_analysis.py compares records that a fresh run writes.
"""

import json

import pytest

from harness.analysis.stats import compare_paired, holm
from harness.api import compare
from harness.cli import main
from harness.scoring.records import Environment
from harness.vocabulary.errors import HarnessError
from tests.record_fixtures import (
    ENV,
    SHIPPED_CONTROL,
    SHIPPED_DEGRADED,
    SHIPPED_METRICS,
    gpu_environment,
    shipped_records,
    synthetic_record,
)

QIDS = [f"q{i}" for i in range(12)]
GOOD = {"nDCG@10": {q: 0.8 for q in QIDS}, "MAP": {q: 0.5 + 0.01 * i for i, q in enumerate(QIDS)}}
# nDCG@10 much worse on every query; MAP the same.
BAD = {"nDCG@10": {q: 0.3 + 0.01 * (i % 3) for i, q in enumerate(QIDS)}, "MAP": dict(GOOD["MAP"])}


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    return shipped_records(tmp_path_factory.mktemp("shipped"))


def test_real_truncation_is_a_significant_regression(real, capsys, tmp_path):
    out = tmp_path / "comparison.json"
    assert main(["compare", str(real.control), str(real.degraded), "--json", str(out)]) == 0  # informational
    table = capsys.readouterr().out
    assert "noveleval" in table and SHIPPED_DEGRADED in table and "worse" in table
    data = json.loads(out.read_text())
    by_metric = {m["metric"]: m for m in data["metrics"]}
    assert set(by_metric) == set(SHIPPED_METRICS)
    ndcg = by_metric["nDCG@10"]
    assert ndcg["control"] == SHIPPED_CONTROL and ndcg["treatment"] == SHIPPED_DEGRADED
    assert ndcg["delta"] < -0.1 and ndcg["delta_ci"][1] < 0 and ndcg["verdict"] == "worse"
    assert ndcg["p_randomization_holm"] < 0.05 and ndcg["p_t_test_holm"] < 0.05
    assert ndcg["losses"] > ndcg["wins"] and ndcg["n"] == 21
    # Every query reaches Recall@1000 = 1 with either model: no difference, no verdict.
    recall = by_metric["Recall@1000"]
    assert recall["delta"] == 0 and recall["ties"] == 21 and recall["verdict"] == "n.s."
    # Holm over the 5 comparisons: adjusted p >= raw p, and exactly holm() of the raw p-values.
    raw = [m["p_randomization"] for m in data["metrics"]]
    assert [m["p_randomization_holm"] for m in data["metrics"]] == pytest.approx(holm(raw))
    assert data["speed"][0]["comparable"] is True  # both measured on the same machine
    # --fail-on-regression turns the same comparison into a failing gate.
    assert main(["compare", str(real.control), str(real.degraded), "--fail-on-regression"]) == 1


def test_real_order_decides_the_control(real):
    """Treatment first: the good model is now the treatment and shows as better."""
    comparison = compare(real.degraded, real.control)
    ndcg = comparison.find("noveleval", "nDCG@10", SHIPPED_CONTROL)
    assert ndcg is not None and ndcg.verdict(0.05, "randomization") == "better"
    assert not comparison.regressions()


def test_results_folder_and_control_option(real):
    """A results folder holds both records; --control picks which is the control."""
    comparison = compare(real.folder, control=SHIPPED_DEGRADED)
    assert {m.control for m in comparison.metrics} == {SHIPPED_DEGRADED}
    assert main(["compare", str(real.folder), "--control", SHIPPED_DEGRADED, "--fail-on-regression"]) == 0


def test_statistics_are_the_stats_module_on_aligned_vectors(tmp_path):
    a = synthetic_record(tmp_path / "a", encoder="base", per_query=GOOD)
    b = synthetic_record(tmp_path / "b", encoder="new", per_query=BAD)
    comparison = compare(a, b, seed=3, n_resamples=2000)
    ndcg = comparison.find("toy", "nDCG@10", "new")
    expected = compare_paired([GOOD["nDCG@10"][q] for q in sorted(QIDS)], [BAD["nDCG@10"][q] for q in sorted(QIDS)],
                              seed=3, n_resamples=2000)
    assert ndcg.stats == expected
    same = comparison.find("toy", "MAP", "new")
    assert same.stats.delta == 0 and same.stats.ties == 12 and same.verdict(0.05, "randomization") == "n.s."
    assert ndcg.p_holm["t-test"] == pytest.approx(min(1.0, 2 * ndcg.stats.p_t_test))  # smallest of 2: x2
    assert comparison.regressions() == [ndcg]


def test_different_dataset_fingerprints_are_refused(tmp_path, capsys):
    a = synthetic_record(tmp_path / "a", encoder="base", per_query=GOOD)
    b = synthetic_record(tmp_path / "b", encoder="new", per_query=BAD, fingerprint="fp-other")
    with pytest.raises(HarnessError, match="different data"):
        compare(a, b)
    assert main(["compare", str(a), str(b)]) == 2
    assert "fingerprints fp-toy vs fp-other" in capsys.readouterr().err


def test_different_metric_definitions_warn(tmp_path):
    a = synthetic_record(tmp_path / "a", encoder="base", per_query=GOOD)
    b = synthetic_record(tmp_path / "b", encoder="new", per_query=BAD,
                         definitions={"nDCG@10": "something else", "MAP": "definition of MAP"})
    comparison = compare(a, b)
    assert any("nDCG@10 is defined differently" in w for w in comparison.warnings)


def test_different_query_sets_are_refused(tmp_path):
    a = synthetic_record(tmp_path / "a", encoder="base", per_query=GOOD)
    fewer = {m: {q: v for q, v in values.items() if q != "q0"} for m, values in BAD.items()}
    b = synthetic_record(tmp_path / "b", encoder="new", per_query=fewer)
    with pytest.raises(HarnessError, match="scored different queries"):
        compare(a, b)


def test_records_are_matched_by_dataset(tmp_path):
    """Two datasets in each folder: each dataset's pair is compared; Holm spans all of them."""
    for folder, values in (("a", GOOD), ("b", BAD)):
        synthetic_record(tmp_path / folder, encoder=f"enc-{folder}", per_query=values, dataset="toy")
        synthetic_record(tmp_path / folder, encoder=f"enc-{folder}", per_query=values, dataset="other",
                         fingerprint="fp-other")
    synthetic_record(tmp_path / "b", encoder="enc-b", per_query=BAD, dataset="lonely", fingerprint="fp-l")
    comparison = compare(tmp_path / "a", tmp_path / "b")
    assert sorted({(m.dataset, m.control, m.treatment) for m in comparison.metrics}) == [
        ("other", "enc-a", "enc-b"), ("toy", "enc-a", "enc-b")]
    assert len(comparison.metrics) == 4
    assert [m.p_holm["randomization"] for m in comparison.metrics] == pytest.approx(
        holm([m.stats.p_randomization for m in comparison.metrics]))
    assert any("lonely" in w and "nothing to compare" in w for w in comparison.warnings)


def test_same_encoder_name_in_two_folders_gets_distinct_labels(tmp_path):
    a = synthetic_record(tmp_path / "old", encoder="minilm", per_query=GOOD)
    b = synthetic_record(tmp_path / "new", encoder="minilm", per_query=BAD)
    assert {(m.control, m.treatment) for m in compare(a, b).metrics} == {("minilm", "minilm [new]")}


def test_speed_is_compared_only_on_the_same_hardware(tmp_path):
    a = synthetic_record(tmp_path / "a", encoder="base", per_query=GOOD, passages_per_s=100)
    b = synthetic_record(tmp_path / "b", encoder="new", per_query=BAD, passages_per_s=150)
    gpu_env = gpu_environment("NVIDIA H100 80GB HBM3")
    c = synthetic_record(tmp_path / "c", encoder="gpu", per_query=BAD, passages_per_s=9000, environment=gpu_env)
    [same] = compare(a, b).speed
    assert same.comparable and same.ratio("passages_per_s") == pytest.approx(1.5)
    [other] = compare(a, c).speed
    assert not other.comparable and other.ratio("passages_per_s") is None
    assert "different hardware" in other.reason and "H100" in other.reason
    assert "not comparable" in compare(a, c).to_table()


def test_fewer_than_two_records_is_bad_input(tmp_path, capsys):
    a = synthetic_record(tmp_path / "a", encoder="base", per_query=GOOD)
    assert main(["compare", str(a)]) == 2
    assert "need at least two run records" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "missing"), str(a)]) == 2


def test_cached_corpus_speed_is_marked_and_every_comparison_shows_its_mde(tmp_path):
    a = synthetic_record(tmp_path / "a", encoder="base", per_query=GOOD, passages_per_s=100)
    b = synthetic_record(tmp_path / "b", encoder="new", per_query=BAD, passages_per_s=300, corpus_from_cache=True)
    comparison = compare(a, b)
    [speed] = comparison.speed
    assert speed.treatment_cached and not speed.control_cached
    rows = {r[1]: r for r in comparison.speed_rows()}
    assert rows["new"][2].endswith("†") and not rows["base"][2].endswith("†") and rows["ratio"][2].endswith("†")
    assert "† corpus embeddings came from the embedding cache" in comparison.to_table()
    assert comparison.to_dict()["speed"][0]["treatment_corpus_from_cache"] is True
    # MDE beside each comparison: the t-based MDE of that comparison's per-query differences
    headers = comparison.table_headers
    for m, row in zip(comparison.metrics, comparison.table_rows()):
        assert row[headers.index("MDE")] == f"{m.stats.mde:.4f}"
    fresh = compare(a, synthetic_record(tmp_path / "c", encoder="c", per_query=BAD))
    assert "†" not in fresh.to_table()


def test_speed_of_a_run_encoded_on_other_hosts_is_not_compared_with_a_local_one(tmp_path):
    """Same driver machine, but the corpus was encoded by a Ray worker on another CPU: passages/s differ in kind."""
    here = {"host": "vm", "hardware_key": Environment.model_validate(ENV).hardware_key, "chunks": 1, "rows": 10}
    there = {"host": "gpu-node", "hardware_key": "AMD EPYC 9654 | 96 threads | NVIDIA H100", "chunks": 1, "rows": 10}
    a, b, remote = (synthetic_record(tmp_path / name, encoder=name, per_query=GOOD, encoding_hosts=[host])
                    for name, host in (("a", here), ("b", here), ("remote", there)))
    [local_speed] = compare(a, b).speed
    assert local_speed.comparable
    [remote_speed] = compare(a, remote).speed
    assert not remote_speed.comparable and "NVIDIA H100" in remote_speed.reason
