"""Measures for pooled judgments (Judged@k, Rprec, Bpref, infAP, Success@k, nDCG without cutoff) and the judgment
holes every run record states: hand-computed fixtures, pytrec_eval called directly, the real DL19 pool."""

from __future__ import annotations

import json
import math

import pytest
import pytrec_eval
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.input.datasets import read_qrels, read_run
from harness.scoring.metrics import Measure, holes, parse_measure
from harness.vocabulary.errors import HarnessError
from tests.conftest import DATA, write_suite
from tests.test_metrics import evaluate

DL19 = DATA / "msmarco-trecdl2019-pool"
L = math.log2  # trec_eval's discount of rank r is log2(r + 1)

# ---------------------------------------------------------------------------------------------- fixture
# q1 ranking, ties broken by docid descending (trec_eval): d1(3) dx(-) [d4(0) d3(1) tie at 0.7: "d4" > "d3"]
#     [dy(-) d2(2) tie at 0.5: "dy" > "d2"] d5(0); d6 (grade 2) is judged but not retrieved. "-" = unjudged.
# q2 is judged and ranked nothing; q3 has judgments but no relevant document; q4 is judged, missing from the
# run (and has no document of grade >= 2); q5 ranks hz(-) then [h2(0) h1(2) tie at 1.0: "h2" > "h1"].
# qx is in the run only (ignored). Every mean is over q1..q5.
QRELS = {
    "q1": {"d1": 3, "d2": 2, "d3": 1, "d4": 0, "d5": 0, "d6": 2},
    "q2": {"e1": 1},
    "q3": {"f1": 0, "f2": 0},
    "q4": {"g1": 1},
    "q5": {"h1": 2, "h2": 0},
}
RUN = {
    "q1": {"d1": 0.9, "dx": 0.8, "d3": 0.7, "d4": 0.7, "d2": 0.5, "dy": 0.5, "d5": 0.1},
    "q2": {},
    "q3": {"f1": 0.5, "zz": 0.4},
    "q5": {"h1": 1.0, "h2": 1.0, "hz": 2.0},
    "qx": {"d1": 1.0},
}
ZERO = dict.fromkeys(["Judged@1", "Judged@2", "Judged@5", "Judged@10", "Rprec", "R-prec", "Bpref", "infAP", "nDCG",
                      "Success@1", "Success@2", "Success@3"], 0.0)
# Judged@k: judged documents of the top k / min(k, ranked). q1: J U J J U J J -> @1 1, @2 1/2, @5 3/5, @10 5/7
# (7 ranked). With ties in ascending order q1's top 5 would hold d2, not dy: 4/5. q5: U J J.
JUDGED = {
    "q1": {"Judged@1": 1.0, "Judged@2": 1 / 2, "Judged@5": 3 / 5, "Judged@10": 5 / 7},
    "q3": {"Judged@1": 1.0, "Judged@2": 1 / 2, "Judged@5": 1 / 2, "Judged@10": 1 / 2},
    "q5": {"Judged@1": 0.0, "Judged@2": 1 / 2, "Judged@5": 2 / 3, "Judged@10": 2 / 3},
}
# nDCG (whole ranking, gain = grade, whatever relevance_level): q1 gains 3 . 0 1 . 2 0 at ranks 1..7, ideal
# 3 2 2 1; q5 gain 2 at rank 3, ideal 2.
NDCG_Q1 = (3 + 1 / L(5) + 2 / L(7)) / (3 + 2 / L(3) + 2 / L(4) + 1 / L(5))
# relevance_level 1, q1: relevant d1 d3 d2 (+ d6 unretrieved), R = 4; judged non-relevant d4 d5, N = 2.
#   Rprec: top 4 = d1 dx d4 d3 -> 2/4.
#   Bpref: sum over retrieved relevant of 1 - min(non-relevant above, R) / min(R, N), over R:
#          d1: 1; d3 (d4 above): 1 - 1/2; d2: 1 - 1/2  -> 2/4.  (ascending ties put d3 above d4: 2.5/4)
#   infAP (trec_eval, no -1 grades: unjudged = unpooled): relevant at rank k adds
#          1/k + (k-1)/k * (judged above / (k-1)) * (relevant above / judged above):
#          d1 @1: 1; d3 @4: 1/4 + 3/4 * 2/3 * 1/2 = 1/2; d2 @6: 1/6 + 5/6 * 3/5 * 2/3 = 1/2  -> 2/4.
# relevance_level 2, q1: relevant d1 d2 (+ d6), R = 3; non-relevant d3 d4 d5, N = 3.
#   Rprec: top 3 = d1 dx d4 -> 1/3.   Bpref: d1: 1; d2 (d4, d3 above): 1 - 2/3  -> (4/3) / 3 = 4/9.
#   infAP: d1: 1; d2 @6: 1/6 + 5/6 * 3/5 * 1/3 = 1/3  -> (4/3) / 3 = 4/9.
# q5 (h1 relevant at both levels, R = 1, N = 1): Rprec 0 (top 1 = hz); Bpref: h2 above h1 -> 1 - 1/1 = 0;
#   infAP: h1 @3: 1/3 + 2/3 * 1/2 * 0/1 = 1/3; nDCG 2/log2(4) / 2 = 1/2; Success@1 0, @2 0 (hz h2), @3 1.
# q2 (empty ranking), q3 (no relevant document), q4 (missed): 0 on every measure but Judged@k of q3.
EXPECTED = {
    1: {"q1": {**JUDGED["q1"], "Rprec": 2 / 4, "R-prec": 2 / 4, "Bpref": 2 / 4, "infAP": 2 / 4, "nDCG": NDCG_Q1,
               "Success@1": 1.0, "Success@2": 1.0, "Success@3": 1.0},
        "q2": ZERO, "q3": {**ZERO, **JUDGED["q3"]}, "q4": ZERO,
        "q5": {**JUDGED["q5"], "Rprec": 0.0, "R-prec": 0.0, "Bpref": 0.0, "infAP": 1 / 3, "nDCG": 1 / 2,
               "Success@1": 0.0, "Success@2": 0.0, "Success@3": 1.0}},
    2: {"q1": {**JUDGED["q1"], "Rprec": 1 / 3, "R-prec": 1 / 3, "Bpref": 4 / 9, "infAP": 4 / 9, "nDCG": NDCG_Q1,
               "Success@1": 1.0, "Success@2": 1.0, "Success@3": 1.0}},
}  # fmt: skip
EXPECTED[2].update({q: EXPECTED[1][q] for q in ("q2", "q3", "q4", "q5")})
METRICS = list(ZERO)


def _tol(name: str) -> float:
    return 1e-4 if name == "infAP" else 1e-9  # trec_eval's infAP smooths with epsilon 1e-5


@pytest.mark.parametrize("level", [1, 2])
def test_hand_computed_values_per_query_and_means(level: int) -> None:
    ev = evaluate(QRELS, RUN, METRICS, relevance_level=level)
    for name in METRICS:
        assert list(ev.per_query[name]) == list(QRELS)  # every judged query, in qrels order; qx ignored
        for qid in QRELS:
            assert ev.per_query[name][qid] == pytest.approx(EXPECTED[level][qid][name], abs=_tol(name)), (name, qid)
        mean = sum(EXPECTED[level][q][name] for q in QRELS) / len(QRELS)
        assert ev.aggregate[name] == pytest.approx(mean, abs=_tol(name)), name


def test_values_do_not_depend_on_insertion_order() -> None:
    reversed_run = {q: dict(reversed(list(docs.items()))) for q, docs in RUN.items()}
    assert evaluate(QRELS, reversed_run, METRICS) == evaluate(QRELS, RUN, METRICS)


def test_an_empty_run_scores_zero_on_every_measure() -> None:
    for run in ({}, {q: {} for q in QRELS}):
        ev = evaluate(QRELS, run, METRICS, relevance_level=2)
        assert ev.aggregate == dict.fromkeys(METRICS, 0.0)
        assert all(list(v) == list(QRELS) for v in ev.per_query.values())


def test_judged_divides_by_the_documents_ranked_when_fewer_than_k() -> None:
    qrels = {"q": {"a": 0, "b": 2}}
    assert evaluate(qrels, {"q": {"a": 1.0, "z": 0.5}}, "Judged@10").aggregate["Judged@10"] == 1 / 2
    assert evaluate(qrels, {"q": {"a": 1.0, "b": 0.5}}, "Judged@10").aggregate["Judged@10"] == 1.0
    # a grade-0 or negative entry is a judgment too (ir_measures: any qrels entry)
    assert evaluate({"q": {"a": -1}}, {"q": {"a": 1.0}}, "Judged@1").aggregate["Judged@1"] == 1.0


@pytest.mark.parametrize(
    ("text", "measure", "trec_name"),
    [("Rprec", Measure("Rprec", "Rprec", None), "Rprec"), ("R-prec", Measure("Rprec", "Rprec", None), "Rprec"),
     ("rprec", Measure("Rprec", "Rprec", None), "Rprec"), ("Bpref", Measure("Bpref", "Bpref", None), "bpref"),
     ("infAP", Measure("infAP", "infAP", None), "infAP"), ("nDCG", Measure("nDCG", "nDCG", None), "ndcg"),
     ("Success@20", Measure("Success@20", "Success", 20), "success.20"),
     ("Judged@10", Measure("Judged@10", "Judged", 10), "judged")],
)  # fmt: skip
def test_names_follow_ir_measures(text: str, measure: Measure, trec_name: str) -> None:
    assert parse_measure(text) == measure
    assert parse_measure(text).trec_name == trec_name


@pytest.mark.parametrize("text", ["Rprec@10", "Bpref@5", "infAP@100", "R-prec@3"])
def test_measures_without_cutoff_reject_one(text: str) -> None:
    with pytest.raises(HarnessError, match="takes no cutoff"):
        parse_measure(text)


@pytest.mark.parametrize(("text", "suggestion"),
                         [("Judge@10", "Judged@10"), ("Sucess@10", "Success@10"), ("bpre", "Bpref"),
                          ("infAB", "infAP"), ("Rprecc", "Rprec"), ("nDGC", "nDCG")])
def test_close_match_hint_knows_the_new_measures(text: str, suggestion: str | None) -> None:
    with pytest.raises(HarnessError) as info:
        parse_measure(text)
    if suggestion:
        assert f"did you mean {suggestion!r}?" in str(info.value)
    assert "Success@k, Judged@k, Rprec, Bpref, infAP" in str(info.value)


def test_definitions() -> None:
    judged = parse_measure("Judged@10").definition(2)
    assert "any qrels entry" in judged and "min(10, documents ranked)" in judged and "not trec_eval" in judged
    assert parse_measure("Success@5").definition(2).startswith("success_5, relevant = grade >= 2")
    assert parse_measure("Rprec").definition(1).startswith("Rprec (precision at rank R")
    assert "relevant = grade >= 2" in parse_measure("Bpref").definition(2)
    assert "-1 = pooled but unjudged" in parse_measure("infAP").definition(1)
    ndcg = parse_measure("nDCG").definition(2)
    assert ndcg.startswith("ndcg (whole ranking, no cutoff)") and ">= 2" not in ndcg
    # the old measures keep their definitions (records compare them)
    assert parse_measure("nDCG@10").definition(2).startswith("ndcg_cut_10, gain = graded")


# ------------------------------------------------------------------------- pytrec_eval, called directly

TREC = {"Rprec": "Rprec", "Bpref": "bpref", "infAP": "infAP", "nDCG": "ndcg", "Success@1": "success_1",
        "Success@5": "success_5", "Success@20": "success_20"}


def _direct(qrels, run, level: int) -> dict[str, dict[str, float]]:
    """pytrec_eval on the same data; judged queries it leaves out (absent from the run) score 0 (-c)."""
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"Rprec", "bpref", "infAP", "ndcg", "success.1,5,20"},
                                               relevance_level=level)
    values = evaluator.evaluate(run)
    return {name: {q: values.get(q, {}).get(key, 0.0) for q in qrels} for name, key in TREC.items()}


def _judged_by_hand(qrels, run, k: int) -> dict[str, float]:
    out = {}
    for qid, judged in qrels.items():
        top = sorted(run.get(qid, {}).items(), key=lambda item: (item[1], item[0]), reverse=True)[:k]
        out[qid] = sum(d in judged for d, _ in top) / len(top) if top else 0.0
    return out


DOC_IDS = [f"d{i}" for i in range(12)]


@settings(max_examples=60, deadline=None)
@given(
    qrels=st.dictionaries(st.sampled_from(["q1", "q2", "q3", "q4"]),
                          st.dictionaries(st.sampled_from(DOC_IDS), st.integers(0, 3), min_size=1, max_size=8),
                          min_size=1),
    run=st.dictionaries(st.sampled_from(["q1", "q2", "q3", "q5"]),
                        st.dictionaries(st.sampled_from(DOC_IDS), st.sampled_from([0.0, 0.5, 1.0]), max_size=12)),
    level=st.integers(1, 3),
)
def test_random_data_matches_pytrec_eval_and_a_plain_judged(qrels, run, level) -> None:
    ev = evaluate(qrels, run, [*TREC, "Judged@3", "Judged@10"], relevance_level=level)
    for name, values in _direct(qrels, run, level).items():
        assert ev.per_query[name] == pytest.approx(values, abs=1e-12), name
    for k in (3, 10):
        assert ev.per_query[f"Judged@{k}"] == pytest.approx(_judged_by_hand(qrels, run, k), abs=1e-12)


@pytest.mark.parametrize("qrels_file", ["qrels/test.tsv", "orig/qrels.dl19-passage.txt"])
@pytest.mark.parametrize("level", [1, 2])
def test_real_dl19_run_matches_pytrec_eval(qrels_file: str, level: int) -> None:
    """BM25 (TREC DL 2019, full 8.8M collection) against the pool qrels and the official full qrels."""
    qrels = read_qrels(DL19 / qrels_file)
    run = read_run(DL19 / "runs" / "BM25.dl19.trec")
    ev = evaluate(qrels, run, [*TREC, "Judged@10"], relevance_level=level)
    assert len(ev.per_query["Rprec"]) == 43
    for name, values in _direct(qrels, run, level).items():
        assert ev.per_query[name] == pytest.approx(values, abs=1e-12), name
        assert ev.aggregate[name] == pytest.approx(sum(values.values()) / 43, abs=1e-12)
    assert ev.per_query["Judged@10"] == pytest.approx(_judged_by_hand(qrels, run, 10), abs=1e-12)
    # DL19 was pooled from runs like this one: BM25's top 10 is almost entirely judged.
    assert ev.aggregate["Judged@10"] > 0.95


# ------------------------------------------------------------------------------------- holes()

def test_holes_hand_computed() -> None:
    """Top 10: q1 d1 dx d4 d3 dy d2 d5 (2 of 7 unjudged); q3 f1 zz (1 of 2); q5 hz h2 h1 (1 of 3); q2 and q4
    ranked nothing."""
    h = holes(QRELS, RUN, depth=10, relevance_level=2)
    assert h.depth == 10
    assert h.judged == pytest.approx((5 / 7 + 1 / 2 + 2 / 3) / 5)
    assert h.unjudged == pytest.approx((2 / 7 + 1 / 2 + 1 / 3) / 5)
    assert h.ndcg == pytest.approx((NDCG_Q1 + 1 / 2) / 5)
    # Holes at grade 2. q1: gains 3 2 0 1 2 2 0, ideal 3 2 2 2 2 1; q3: zz (2) at rank 2, ideal 2;
    # q5: hz (2) at rank 1, h1 (2) at rank 3, ideal 2 2.
    q1 = (3 + 2 / L(3) + 1 / L(5) + 2 / L(6) + 2 / L(7)) / (3 + 2 / L(3) + 2 / L(4) + 2 / L(5) + 2 / L(6) + 1 / L(7))
    q3 = (2 / L(3)) / 2
    q5 = (2 + 2 / L(4)) / (2 + 2 / L(3))
    assert h.ndcg_unjudged_relevant == pytest.approx((q1 + q3 + q5) / 5)
    assert h.ndcg_unjudged_relevant > h.ndcg


def test_holes_count_only_the_top_depth_and_the_ideal_is_recomputed() -> None:
    qrels = {"q": {"a": 1, "n1": 0, "n2": 0}}
    # a hole below depth changes nothing
    assert holes(qrels, {"q": {"a": 4.0, "n1": 3.0, "z": 1.0}}, depth=2).ndcg_unjudged_relevant == 1.0
    # a hole at rank 4 under two judged non-relevant documents: the completed ideal (1, 1) grows more than the
    # run's DCG, so the value falls below the standard one; the report's note says it is no strict maximum
    h = holes(qrels, {"q": {"a": 4.0, "n1": 3.0, "n2": 2.0, "z": 1.0}}, depth=10)
    assert h.ndcg == 1.0
    assert h.ndcg_unjudged_relevant == pytest.approx((1 + 1 / L(5)) / (1 + 1 / L(3)))
    assert h.unjudged == 1 / 4 and h.judged == 3 / 4


# ------------------------------------------------------------------ a real record on the DL19 pool

SUITE = f"""
name: pooled
datasets:
  - name: dl19-pool
    path: {DL19}
    relevance_level: 2
encoders:
  - name: all-MiniLM-L6-v2
    model: bundled:all-MiniLM-L6-v2
    max_seq_length: 256
    device: cpu
metrics: [nDCG@10, Judged@10, Rprec, Bpref, infAP, nDCG, Success@10]
top_k: 100
"""


@pytest.fixture(scope="module")
def dl19_record(tmp_path_factory):
    from harness.input.suite import load_suite
    from harness.pipeline.runner import RunOptions, run_suite

    base = tmp_path_factory.mktemp("pooled")
    suite = load_suite(write_suite(base / "suite.yaml", SUITE))
    [outcome] = run_suite(suite, RunOptions(output=base / "results", progress=False, latency_calls=5,
                                            fail_fast=True))
    return base / "results", outcome


def test_dl19_record_states_its_holes(dl19_record) -> None:
    from harness.scoring.records import load

    _, outcome = dl19_record
    record = load(outcome.path)
    assert record.holes is not None and record.holes == outcome.record.holes
    qrels = read_qrels(DL19 / "qrels" / "test.tsv")
    run = {qid: dict(hits) for qid, hits in outcome.result.ranking.items()}
    # independently: sort each ranking, count the holes, complete the qrels, call pytrec_eval
    judged = _judged_by_hand(qrels, run, 10)
    completed = {}
    for qid, grades in qrels.items():
        top = sorted(run.get(qid, {}).items(), key=lambda item: (item[1], item[0]), reverse=True)[:10]
        completed[qid] = {**grades, **{d: 2 for d, _ in top if d not in grades}}
    ndcg = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    optimistic = pytrec_eval.RelevanceEvaluator(completed, {"ndcg_cut.10"}).evaluate(run)
    h = record.holes
    assert h.depth == 10
    assert h.judged == pytest.approx(sum(judged.values()) / 43, abs=1e-12)
    assert h.unjudged == pytest.approx(1 - h.judged, abs=1e-12)  # every query ranks 100 documents
    assert h.ndcg == pytest.approx(sum(v["ndcg_cut_10"] for v in ndcg.values()) / 43, abs=1e-12)
    assert h.ndcg == pytest.approx(record.metrics["nDCG@10"], abs=1e-12)
    assert h.ndcg_unjudged_relevant == pytest.approx(sum(v["ndcg_cut_10"] for v in optimistic.values()) / 43,
                                                     abs=1e-12)
    # the pool holds the judged documents of DL19, but MiniLM's top 10 over it still has holes
    assert 0.0 < h.unjudged < 0.5 and h.ndcg_unjudged_relevant > h.ndcg + 0.01
    assert record.metrics["Judged@10"] == pytest.approx(h.judged, abs=1e-12)
    for name, values in _direct(qrels, run, 2).items():
        if name in record.metrics:
            assert record.metrics[name] == pytest.approx(sum(values.values()) / 43, abs=1e-12), name
    assert "any qrels entry" in record.metric_definitions["Judged@10"]


def test_report_shows_ndcg_both_ways_and_judged(dl19_record, tmp_path) -> None:
    from harness.cli import main

    results, outcome = dl19_record
    h = outcome.record.holes
    assert main(["report", str(results), "--output", str(tmp_path / "report"), "--format", "md"]) == 0
    text = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "### Judgment holes" in text
    section = text.split("### Judgment holes", 1)[1]
    row = next(line for line in section.splitlines() if line.startswith("| dl19-pool"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:] == [f"{h.judged:.4f}", f"{h.ndcg:.4f}", f"{h.ndcg_unjudged_relevant:.4f}",
                         f"{h.ndcg_unjudged_relevant - h.ndcg:+.4f}", "2"]
    assert "Judged@10 | nDCG@10 (unjudged = not relevant) | nDCG@10 (unjudged = relevant)" in text
    assert "at grade relevance_level" in text
    mteb = json.loads(next((tmp_path / "report" / "mteb").rglob("*.json")).read_text(encoding="utf-8"))
    assert "ndcg_at_10" in mteb["scores"]["test"][0] and "ndcg_at_100" in mteb["scores"]["test"][0]


def test_report_leaves_out_the_table_without_holes(dl19_record) -> None:
    from harness.reporting.data import ReportData
    from harness.scoring.scored import ScoredRun

    _, outcome = dl19_record
    full = outcome.record.holes.model_copy(update={"judged": 1.0, "unjudged": 0.0})
    run = ScoredRun(outcome.record.model_copy(update={"holes": full}), {}, label="a")
    assert ReportData([run], None, {}, {}, [], "nDCG@10").holes_table()[1] == []
    run = ScoredRun(outcome.record, {}, label="a")
    assert len(ReportData([run], None, {}, {}, [], "nDCG@10").holes_table()[1]) == 1


def test_mteb_export_keeps_only_measures_mteb_knows() -> None:
    from harness.reporting.exports import mteb_key

    assert mteb_key("nDCG", 100) == "ndcg_at_100"  # the whole ranking: the top_k retrieved
    assert [mteb_key(m, 100) for m in ("Judged@10", "Rprec", "R-prec", "Bpref", "infAP", "Success@10")] == [None] * 6
