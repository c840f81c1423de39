"""Tests for harness.scoring.metrics: hand-computed fixtures, an independent oracle, and trec_eval golden values."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.scoring.metrics import Measure, means, parse_measure, per_query_values
from harness.vocabulary.errors import HarnessError


@dataclasses.dataclass(frozen=True)
class Scored:
    per_query: dict[str, dict[str, float]]
    aggregate: dict[str, float]


def evaluate(qrels, run, metrics, **options) -> Scored:
    """`per_query_values` and the `means` of them, side by side (what these tests compare)."""
    values = per_query_values(qrels, run, metrics, **options)
    return Scored(values, means(values))


DL19 = Path(__file__).resolve().parents[1] / "data" / "msmarco-trecdl2019-pool"
L3 = math.log2(3)  # discount of rank 2
L5 = math.log2(5)  # discount of rank 4

# ---------------------------------------------------------------------------------------
# Hand-computed fixture.
# q1 ranking (scores distinct): d4(0) d3(1) d1(3) d2(2) dx(unjudged); d5 is judged 0, not retrieved.
# q2 is judged but missing from the run; q3 is judged with an empty ranking;
# qx is in the run only (ignored). Means are over q1, q2, q3 -> q1's value / 3.
QRELS = {
    "q1": {"d1": 3, "d2": 2, "d3": 1, "d4": 0, "d5": 0},
    "q2": {"e1": 1},
    "q3": {"f1": 2},
}
RUN = {
    "q1": {"d4": 0.9, "d3": 0.7, "d1": 0.6, "d2": 0.5, "dx": 0.4},
    "q3": {},
    "qx": {"d1": 1.0},
}
# nDCG (trec_eval: linear gain = grade, discount log2(rank + 1)); ideal order 3, 2, 1.
# nDCG@3 = (0/1 + 1/log2(3) + 3/log2(4)) / (3/1 + 2/log2(3) + 1/log2(4))
#        = (0.63093 + 1.5) / (3 + 1.26186 + 0.5) = 2.13093 / 4.76186 = 0.44750
NDCG3 = (1 / L3 + 3 / 2) / (3 + 2 / L3 + 1 / 2)
# nDCG@5 adds d2 (grade 2) at rank 4: 2/log2(5) = 0.86135; ideal has no 4th/5th gain.
#        = (0.63093 + 1.5 + 0.86135) / 4.76186 = 2.99228 / 4.76186 = 0.62839
NDCG5 = (1 / L3 + 3 / 2 + 2 / L5) / (3 + 2 / L3 + 1 / 2)
# relevance_level=1: relevant d3@2, d1@3, d2@4 (R = 3)
#   MRR@10 = 1/2; MRR@1 = 0 (d4 is grade 0)
#   MAP = (1/2 + 2/3 + 3/4) / 3 = 0.63889;  MAP@3 = (1/2 + 2/3) / 3 = 0.38889
#   Recall@3 = 2/3; Recall@4 = 3/3;  P@3 = 2/3; P@10 = 3/10 (trec_eval divides by k)
# relevance_level=2: relevant d1@3, d2@4 (R = 2)
#   MRR@10 = 1/3; MRR@2 = 0
#   MAP = (1/3 + 2/4) / 2 = 0.41667;  MAP@3 = (1/3) / 2 = 0.16667
#   Recall@3 = 1/2; Recall@4 = 2/2;  P@3 = 1/3; P@10 = 2/10
METRICS = ["nDCG@3", "nDCG@5", "MRR@10", "MRR@1", "MRR@2", "MAP", "MAP@3", "Recall@3", "Recall@4", "P@3", "P@10"]
EXPECTED_Q1 = {
    1: {"nDCG@3": NDCG3, "nDCG@5": NDCG5, "MRR@10": 1 / 2, "MRR@1": 0.0, "MRR@2": 1 / 2,
        "MAP": (1 / 2 + 2 / 3 + 3 / 4) / 3, "MAP@3": (1 / 2 + 2 / 3) / 3,
        "Recall@3": 2 / 3, "Recall@4": 1.0, "P@3": 2 / 3, "P@10": 3 / 10},
    2: {"nDCG@3": NDCG3, "nDCG@5": NDCG5, "MRR@10": 1 / 3, "MRR@1": 0.0, "MRR@2": 0.0,
        "MAP": (1 / 3 + 2 / 4) / 2, "MAP@3": (1 / 3) / 2,
        "Recall@3": 1 / 2, "Recall@4": 1.0, "P@3": 1 / 3, "P@10": 2 / 10},
}  # fmt: skip


@pytest.mark.parametrize("level", [1, 2])
def test_hand_computed_fixture(level: int) -> None:
    ev = evaluate(QRELS, RUN, METRICS, relevance_level=level)
    assert set(ev.per_query) == set(ev.aggregate) == set(METRICS)
    for name, expected in EXPECTED_Q1[level].items():
        values = ev.per_query[name]
        assert list(values) == ["q1", "q2", "q3"], name  # qx ignored, q2/q3 kept
        assert values["q1"] == pytest.approx(expected, abs=1e-12), name
        assert values["q2"] == 0.0 and values["q3"] == 0.0, name
        assert ev.aggregate[name] == pytest.approx(expected / 3, abs=1e-12), name


def test_hand_computed_values_are_the_decimals_in_the_comments() -> None:
    assert NDCG3 == pytest.approx(0.44750, abs=5e-6)
    assert NDCG5 == pytest.approx(0.62839, abs=5e-6)


def test_relevance_level_changes_binary_measures_not_ndcg() -> None:
    one = evaluate(QRELS, RUN, METRICS, relevance_level=1).aggregate
    two = evaluate(QRELS, RUN, METRICS, relevance_level=2).aggregate
    for name in ("nDCG@3", "nDCG@5"):
        assert one[name] == two[name]
    for name in ("MRR@10", "MAP", "Recall@3", "P@3"):
        assert one[name] != two[name]


def test_linear_gain_not_exponential() -> None:
    # grade 1 at rank 1, grade 3 at rank 2: linear (1 + 3/log2 3) / (3 + 1/log2 3)
    #   = (1 + 1.89279) / (3 + 0.63093) = 2.89279 / 3.63093 = 0.79671;
    # exponential gains (2^g - 1) would give (1 + 7/log2 3) / (7 + 1/log2 3) = 5.41650 / 7.63093 = 0.70981.
    ev = evaluate({"q": {"a": 1, "b": 3}}, {"q": {"a": 2.0, "b": 1.0}}, ["nDCG@2"])
    assert ev.aggregate["nDCG@2"] == pytest.approx((1 + 3 / L3) / (3 + 1 / L3), abs=1e-12)
    assert ev.aggregate["nDCG@2"] == pytest.approx(0.79671, abs=5e-6)


def test_grade_zero_is_judged_non_relevant() -> None:
    # a (grade 0) ranks 1st, b (grade 1) 2nd. Binary: only b is relevant.
    # MRR@10 = 1/2, P@1 = 0, Recall@1 = 0 (R = 1), MAP = (1/2)/1; nDCG@2 = (0 + 1/log2 3) / 1 = 0.63093
    ev = evaluate({"q": {"a": 0, "b": 1}}, {"q": {"a": 0.9, "b": 0.8}}, ["MRR@10", "P@1", "Recall@1", "MAP", "nDCG@2"])
    assert ev.aggregate == pytest.approx({"MRR@10": 0.5, "P@1": 0.0, "Recall@1": 0.0, "MAP": 0.5, "nDCG@2": 1 / L3})


def test_query_with_only_grade_zero_judgments_scores_zero_and_counts() -> None:
    # q0 has no relevant document at all: every measure is 0 and the mean halves.
    qrels = {"q0": {"a": 0}, "q1": {"a": 1}}
    run = {"q0": {"a": 1.0}, "q1": {"a": 1.0}}
    ev = evaluate(qrels, run, ["MRR@10", "nDCG@10", "Recall@10", "MAP", "P@1"])
    for name, values in ev.per_query.items():
        assert values == {"q0": 0.0, "q1": 1.0}, name
        assert ev.aggregate[name] == 0.5, name


# --- ties: trec_eval ranks equal scores by docid descending ----------------------------


@pytest.mark.parametrize("insertion", [("a", "b"), ("b", "a")])
def test_tie_break_docid_descending_changes_mrr(insertion: tuple[str, str]) -> None:
    # a and b tie at 0.5: order is b (rank 1), a (rank 2) whatever the insertion order.
    # Relevant a -> MRR@1 = 0, MRR@10 = 1/2. (docid-ascending would give 1 and 1.)
    run = {"q": {doc: 0.5 for doc in insertion} | {"c": 0.1}}
    ev = evaluate({"q": {"a": 1}}, run, ["MRR@1", "MRR@10", "nDCG@1"])
    assert ev.aggregate == {"MRR@1": 0.0, "MRR@10": 0.5, "nDCG@1": 0.0}
    # Relevant b -> first.
    ev = evaluate({"q": {"b": 1}}, run, ["MRR@1", "MRR@10"])
    assert ev.aggregate == {"MRR@1": 1.0, "MRR@10": 1.0}


def test_mrr_truncation_breaks_ties_at_the_cutoff_like_trec_eval() -> None:
    # Ranking: x (0.9), then the tie b, a (docid descending). Relevant a is 3rd:
    # MRR@2 = 0, MRR@3 = 1/3. Truncating by insertion order (x, a) would wrongly give 1/2.
    run = {"q": {"x": 0.9, "a": 0.5, "b": 0.5}}
    ev = evaluate({"q": {"a": 1}}, run, ["MRR@2", "MRR@3"])
    assert ev.aggregate == pytest.approx({"MRR@2": 0.0, "MRR@3": 1 / 3})


def test_docids_compare_as_strings() -> None:
    # "d9" > "d10" as strings, so on a tie d9 ranks first: relevant d10 is 2nd.
    ev = evaluate({"q": {"d10": 1}}, {"q": {"d10": 1.0, "d9": 1.0}}, ["MRR@1", "MRR@2"])
    assert ev.aggregate == {"MRR@1": 0.0, "MRR@2": 0.5}


def test_mrr_cutoff_is_applied() -> None:
    # Relevant doc at rank 11: MRR@10 = 0 (pytrec_eval alone would say 1/11), MRR@11 = 1/11.
    run = {"q": {f"n{i:02d}": 100.0 - i for i in range(10)} | {"rel": 50.0}}
    ev = evaluate({"q": {"rel": 1}}, run, ["MRR@10", "MRR@11", "MRR@1000"])
    assert ev.aggregate == pytest.approx({"MRR@10": 0.0, "MRR@11": 1 / 11, "MRR@1000": 1 / 11})


# --- API shape ---------------------------------------------------------------------------


def test_keys_are_names_as_written_and_aliases_agree() -> None:
    names = ["ndcg@3", "RR@10", "MRR@10", "R@4", "Recall@4", "AP", "map", "p@3"]
    ev = evaluate(QRELS, RUN, names)
    assert list(ev.per_query) == list(ev.aggregate) == names
    assert ev.aggregate["RR@10"] == ev.aggregate["MRR@10"]
    assert ev.aggregate["R@4"] == ev.aggregate["Recall@4"]
    assert ev.aggregate["AP"] == ev.aggregate["map"]


def test_inputs_are_not_mutated_and_result_is_frozen() -> None:
    qrels, run = copy.deepcopy(QRELS), copy.deepcopy(RUN)
    ev = evaluate(qrels, run, METRICS, relevance_level=2)
    assert qrels == QRELS and run == RUN
    assert set(ev.per_query) == set(ev.aggregate) == set(METRICS)


def test_bad_metric_name_or_empty_qrels_raise_harness_error() -> None:
    with pytest.raises(HarnessError, match="did you mean 'nDCG@10'"):
        evaluate(QRELS, RUN, ["nDCG@10", "nDGC@10"])
    with pytest.raises(HarnessError, match="no queries"):
        evaluate({}, RUN, ["nDCG@10"])


# --- parse_measure -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("MRR@10", Measure("MRR@10", "MRR", 10)),
        ("RR@10", Measure("MRR@10", "MRR", 10)),
        ("mrr@10", Measure("MRR@10", "MRR", 10)),
        ("nDCG@10", Measure("nDCG@10", "nDCG", 10)),
        ("NDCG@10", Measure("nDCG@10", "nDCG", 10)),
        ("Recall@100", Measure("Recall@100", "Recall", 100)),
        ("R@100", Measure("Recall@100", "Recall", 100)),
        ("recall@100", Measure("Recall@100", "Recall", 100)),
        ("MAP", Measure("MAP", "MAP", None)),
        ("AP", Measure("MAP", "MAP", None)),
        ("map", Measure("MAP", "MAP", None)),
        ("MAP@100", Measure("MAP@100", "MAP", 100)),
        ("P@5", Measure("P@5", "P", 5)),
        ("p@5", Measure("P@5", "P", 5)),
    ],
)
def test_parse_measure_accepts_names_and_aliases(text: str, expected: Measure) -> None:
    assert parse_measure(text) == expected


@pytest.mark.parametrize(
    ("measure", "trec_name"),
    [("nDCG@10", "ndcg_cut.10"), ("Recall@100", "recall.100"), ("P@5", "P.5"), ("MAP", "map"),
     ("MAP@100", "map_cut.100"), ("MRR@10", "recip_rank")],
)  # fmt: skip
def test_trec_names(measure: str, trec_name: str) -> None:
    assert parse_measure(measure).trec_name == trec_name


def test_definitions_pin_trec_eval_semantics() -> None:
    assert parse_measure("MRR@10").definition(2).startswith(
        "recip_rank on run truncated to top 10, relevant = grade >= 2"
    )
    assert parse_measure("Recall@100").definition(1).startswith("recall_100, relevant = grade >= 1")
    assert parse_measure("MAP@10").definition(2).startswith("map_cut_10, relevant = grade >= 2")
    ndcg = parse_measure("nDCG@10").definition(2)
    assert ndcg.startswith("ndcg_cut_10") and "graded" in ndcg and ">= 2" not in ndcg


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [("nDGC@10", "nDCG@10"), ("MPA", "MAP"), ("MRRR@10", "MRR@10"), ("Recal@100", "Recall@100")],
)
def test_unknown_names_suggest_a_close_match(text: str, suggestion: str) -> None:
    with pytest.raises(HarnessError) as info:
        parse_measure(text)
    message = str(info.value)
    assert f"unknown metric {text!r}; did you mean {suggestion!r}?" in message
    assert ("Allowed: MRR@k, nDCG@k, nDCG, Recall@k, MAP, MAP@k, P@k, Success@k, Judged@k, Rprec, Bpref, infAP "
            "(aliases RR@k, R@k, AP, R-prec)") in message
    assert info.value.exit_code == 2


@pytest.mark.parametrize("text", ["", "@10", "BLEU@4", "nDCG 10", "__import__('os')"])
def test_unknown_names_are_rejected(text: str) -> None:
    with pytest.raises(HarnessError) as info:
        parse_measure(text)
    assert str(info.value).startswith(f"unknown metric {text!r}")
    assert "Allowed: MRR@k, nDCG@k" in str(info.value)
    assert "?." not in str(info.value)


@pytest.mark.parametrize("text", ["nDCG@0", "nDCG@-1", "nDCG@x", "nDCG@1.5", "nDCG@", "MRR@10@5", "P@ 5", "MAP@0"])
def test_bad_cutoffs_are_rejected(text: str) -> None:
    with pytest.raises(HarnessError, match="cutoff must be a positive integer"):
        parse_measure(text)


@pytest.mark.parametrize("text", ["MRR", "Recall", "P", "RR", "Success", "Judged"])
def test_missing_cutoff_is_rejected(text: str) -> None:
    with pytest.raises(HarnessError, match="needs a cutoff"):
        parse_measure(text)


# --- independent implementation on random data ---------------------------------------


def _ranking(docs: dict[str, float]) -> list[str]:
    return [d for d, _ in sorted(docs.items(), key=lambda item: (item[1], item[0]), reverse=True)]


def _ref(kind: str, k: int | None, grades: dict[str, int], docs: dict[str, float], level: int) -> float:
    ranked = _ranking(docs)
    top = ranked if k is None else ranked[:k]
    relevant = {d for d, g in grades.items() if g >= level}
    if kind == "nDCG":
        assert k is not None
        dcg = sum(grades.get(d, 0) / math.log2(i + 2) for i, d in enumerate(top) if grades.get(d, 0) > 0)
        ideal = sorted((g for g in grades.values() if g > 0), reverse=True)[:k]
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
        return dcg / idcg if idcg else 0.0
    if kind == "MRR":
        return next((1 / (i + 1) for i, d in enumerate(top) if d in relevant), 0.0)
    if kind == "Recall":
        return sum(d in relevant for d in top) / len(relevant) if relevant else 0.0
    if kind == "P":
        assert k is not None
        return sum(d in relevant for d in top) / k
    if kind == "MAP":  # AP, or AP restricted to the top k (map_cut): both divide by R
        hits, total = 0, 0.0
        for i, d in enumerate(top):
            if d in relevant:
                hits += 1
                total += hits / (i + 1)
        return total / len(relevant) if relevant else 0.0
    raise AssertionError(kind)


DOC_IDS = [f"d{i}" for i in range(13)]  # "d10" < "d2" as strings: exercises string order
grades_st = st.dictionaries(st.sampled_from(DOC_IDS), st.integers(0, 3), min_size=1, max_size=8)
scores_st = st.dictionaries(st.sampled_from(DOC_IDS), st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0]), max_size=13)
RANDOM_METRICS = ["nDCG@1", "nDCG@5", "nDCG@20", "MRR@1", "MRR@3", "MRR@100", "Recall@2", "Recall@10",
                  "P@1", "P@4", "MAP", "MAP@3"]  # fmt: skip


@settings(max_examples=50, deadline=None)
@given(
    qrels=st.dictionaries(st.sampled_from(["q1", "q2", "q3", "q4"]), grades_st, min_size=1),
    run=st.dictionaries(st.sampled_from(["q1", "q2", "q3", "q5"]), scores_st),
    level=st.integers(1, 3),
)
def test_matches_independent_implementation(
    qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], level: int
) -> None:
    ev = evaluate(qrels, run, RANDOM_METRICS, relevance_level=level)
    for name in RANDOM_METRICS:
        m = parse_measure(name)
        assert list(ev.per_query[name]) == list(qrels)
        tol = 1e-6 if m.kind == "nDCG" else 1e-9
        for qid, grades in qrels.items():
            expected = _ref(m.kind, m.cutoff, grades, run.get(qid, {}), level)
            assert 0.0 <= ev.per_query[name][qid] <= 1.0
            assert ev.per_query[name][qid] == pytest.approx(expected, abs=tol), (name, qid)
        mean = sum(ev.per_query[name].values()) / len(qrels)
        assert ev.aggregate[name] == pytest.approx(mean, abs=1e-12)
        assert 0.0 <= ev.aggregate[name] <= 1.0


# --- golden trec_eval values on TREC DL 2019 ------------------------------------------


def _read_trec_run(path: Path) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        qid, _, docid, _, score, _ = line.split()
        run.setdefault(qid, {})[docid] = float(score)
    return run


def _read_trec_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for line in path.read_text().splitlines():
        qid, _, docid, grade = line.split()
        qrels.setdefault(qid, {})[docid] = int(grade)
    return qrels


def _read_beir_qrels(path: Path) -> dict[str, dict[str, int]]:
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == ["query-id", "corpus-id", "score"]
    qrels: dict[str, dict[str, int]] = {}
    for line in lines[1:]:
        qid, docid, grade = line.split("\t")
        qrels.setdefault(qid, {})[docid] = int(grade)
    return qrels


REFERENCE = json.loads((DL19 / "runs" / "REFERENCE_METRICS.json").read_text())
RUN_FILES = sorted(name for name in REFERENCE if name.endswith(".trec"))


@pytest.fixture(scope="module")
def dl19_qrels() -> dict[str, dict[str, dict[str, int]]]:
    return {
        "pool": _read_beir_qrels(DL19 / "qrels" / "test.tsv"),
        "full": _read_trec_qrels(DL19 / "orig" / "qrels.dl19-passage.txt"),
    }


def test_reference_covers_five_runs() -> None:
    assert len(RUN_FILES) == 5


@pytest.mark.parametrize("qrels_name", ["pool", "full"])
@pytest.mark.parametrize("run_file", RUN_FILES)
def test_reproduces_trec_eval_reference(
    run_file: str, qrels_name: str, dl19_qrels: dict[str, dict[str, dict[str, int]]]
) -> None:
    qrels = dl19_qrels[qrels_name]
    run = _read_trec_run(DL19 / "runs" / run_file)
    ref = REFERENCE[run_file][qrels_name]
    rel2 = evaluate(qrels, run, ["nDCG@10", "MRR@10", "Recall@100"], relevance_level=2)
    rel1 = evaluate(qrels, run, ["Recall@100"], relevance_level=1)
    assert len(rel2.per_query["nDCG@10"]) == ref["num_queries"]
    assert rel2.aggregate["nDCG@10"] == pytest.approx(ref["nDCG@10"], abs=5e-5)
    assert rel2.aggregate["MRR@10"] == pytest.approx(ref["MRR@10(rel>=2)"], abs=5e-5)
    assert rel2.aggregate["Recall@100"] == pytest.approx(ref["Recall@100(rel>=2)"], abs=5e-5)
    assert rel1.aggregate["Recall@100"] == pytest.approx(ref["Recall@100(rel>=1)"], abs=5e-5)
