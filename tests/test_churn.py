"""Ranking churn: overlap@k and RBO_ext on hand-made rankings (values computed by hand below), RBO against a
brute-force reimplementation (naive prefix overlaps summed as the explicit infinite series), the records' stored
rankings, the CLI's exit codes and files, and the report section."""

from __future__ import annotations

import json
import random
from fractions import Fraction

import pytest

import harness
from harness.analysis.churn import overlap_at_k, rbo_ext
from harness.cli import main
from harness.scoring.records import RecallCurve, write_run_record
from harness.scoring.scored import ordered
from harness.vocabulary.errors import HarnessError
from tests.record_fixtures import real_records, synthetic_run_record

# --------------------------------------------------------------------------- the measures, by hand

def test_overlap_at_k_by_hand():
    assert overlap_at_k(["a", "b", "c"], ["c", "d", "a"], 3) == pytest.approx(2 / 3)
    assert overlap_at_k(["a", "b", "c"], ["c", "d", "a"], 1) == 0.0
    assert overlap_at_k(["a", "b", "c", "x"], ["b", "a", "y", "c"], 2) == 1.0  # order inside the top k is free
    assert overlap_at_k(["a"], ["a"], 10) == pytest.approx(0.1)  # k is the denominator, however short the lists


def test_rbo_ext_even_lists_by_hand():
    # S = a b c d, T = b a c e, p = 1/2: X_1..X_4 = 0, 2, 3, 3 (X_d: items shared by the two top-d prefixes)
    # (1-p)/p * sum_d X_d/d p^d = 1 * (0 + 1/4 + 1/8 + 3/64) = 27/64; tail X_4/4 p^4 = 3/64; RBO_ext = 30/64 = 15/32
    assert rbo_ext(list("abcd"), list("bace"), 0.5) == pytest.approx(float(Fraction(15, 32)), abs=1e-15)


def test_rbo_ext_uneven_lists_by_hand_and_symmetric():
    # S = a b (s = 2), L = a c b d (l = 4), p = 1/2. X_1..X_4 = 1, 1, 2, 2 (S counts as a whole beyond depth 2),
    # X_s = 1. sum_d X_d/d p^d = 1/2 + 1/8 + 1/12 + 1/32; extrapolated agreement of the short list's unseen
    # items, sum_{d=3,4} X_s (d-s)/(s d) p^d = 1/48 + 1/64; tail ((X_l - X_s)/l + X_s/s) p^l = 3/4 * 1/16 = 3/64.
    # (1-p)/p = 1, so RBO_ext = 158/192 = 79/96.
    expected = float(Fraction(79, 96))
    assert rbo_ext(list("ab"), list("acbd"), 0.5) == pytest.approx(expected, abs=1e-15)
    assert rbo_ext(list("acbd"), list("ab"), 0.5) == pytest.approx(expected, abs=1e-15)


def test_rbo_ext_bounds_and_empty_rankings():
    assert rbo_ext(list("abcdef"), list("abcdef"), 0.9) == 1.0
    assert rbo_ext(list("abc"), list("xyz"), 0.9) == 0.0
    assert rbo_ext([], [], 0.9) == 1.0  # both retrieved nothing: identical
    assert rbo_ext([], list("abc"), 0.9) == 0.0
    # one swap at the very top costs more than one at the bottom
    assert rbo_ext(list("abcdef"), list("bacdef"), 0.9) < rbo_ext(list("abcdef"), list("abcdfe"), 0.9)
    with pytest.raises(HarnessError, match=r"p must be in \(0, 1\)"):
        rbo_ext(list("ab"), list("ab"), 1.0)


def brute_force_rbo_ext(a: list[str], b: list[str], p: float) -> float:
    """RBO_ext as its definition reads: (1-p) * sum_{d>=1} A_d p^(d-1) with the agreement A_d from naive prefix
    intersections up to the longer list's length l (the shorter list's unseen items agreeing at its rate X_s/s),
    then the agreement at l held for ever (summed explicitly until p^d vanishes)."""
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    s, l = len(short), len(long)  # noqa: E741 (s and l as Webber et al. name them)

    def x(d: int) -> int:
        return len(set(short[:d]) & set(long[:d]))

    agreements = [x(d) / d + (x(s) * (d - s) / (s * d) if d > s else 0.0) for d in range(1, l + 1)]
    beyond = (x(l) - x(s)) / l + x(s) / s
    agreements += [beyond] * 2000
    return sum((1 - p) * value * p ** (d - 1) for d, value in enumerate(agreements, start=1))


def test_rbo_ext_matches_a_brute_force_reimplementation_on_random_rankings():
    rng = random.Random(7)
    pool = [f"d{i}" for i in range(40)]
    for _ in range(300):
        a = rng.sample(pool, rng.randint(1, 30))
        b = rng.sample(pool, rng.randint(1, 30))
        if rng.random() < 0.3:  # often a perturbed copy, as two model versions give
            b = a[:]
            i, j = rng.randrange(len(b)), rng.randrange(len(b))
            b[i], b[j] = b[j], b[i]
            b = b[:rng.randint(1, len(b))]
        p = rng.choice([0.5, 0.8, 0.9, 0.95])
        assert rbo_ext(a, b, p) == pytest.approx(brute_force_rbo_ext(a, b, p), abs=1e-10), (a, b, p)


def test_rankings_are_ordered_as_trec_eval_orders_them():
    # score descending, ties by document id descending (trec_eval's comparator)
    assert ordered({"q": {"a": 1.0, "b": 1.0, "c": 2.0, "d": 0.5}}) == {"q": ["c", "b", "a", "d"]}


# --------------------------------------------------------------------------- records with hand-made rankings

A_RUN = {"q1": list("abcdefghij"), "q2": list("abcd"), "q3": list("xy")}
B_RUN = {"q1": list("abcdefghij"), "q2": list("bace")}  # q3: retrieved nothing
A_NDCG = {"q1": 0.5, "q2": 0.4, "q3": 0.3}
B_NDCG = {"q1": 0.5, "q2": 0.6, "q3": 0.0}


def hand_record(folder, encoder: str, run: dict[str, list[str]], ndcg: dict[str, float], **options):
    per_query = {"nDCG@10": ndcg}
    record = synthetic_run_record(encoder=encoder, per_query=per_query, **options)
    scored = {q: [(d, float(len(docs) - i)) for i, d in enumerate(docs)] for q, docs in run.items()}
    curve = RecallCurve(ks=[1], per_query={q: [0.0] for q in ndcg})
    return write_run_record(folder, record, run=scored, per_query=per_query, recall_curve=curve, tag=encoder)


@pytest.fixture
def hand_records(tmp_path):
    return (hand_record(tmp_path / "a", "old", A_RUN, A_NDCG), hand_record(tmp_path / "b", "new", B_RUN, B_NDCG))


def test_churn_of_hand_made_records(hand_records):
    found = harness.churn(*hand_records, k=10, p=0.5, n_resamples=200)
    by_query = {q.qid: q for q in found.queries}
    assert [(q, by_query[q].overlap, by_query[q].identical) for q in ("q1", "q2", "q3")] == [
        ("q1", 1.0, True), ("q2", 0.3, False), ("q3", 0.0, False)]
    assert by_query["q1"].rbo == 1.0
    assert by_query["q2"].rbo == pytest.approx(15 / 32)
    assert by_query["q3"].rbo == 0.0
    assert {q: v.deltas["nDCG@10"] for q, v in by_query.items()} == pytest.approx({"q1": 0.0, "q2": 0.2, "q3": -0.3})
    summary = found.summary()
    assert summary["overlap_mean"] == pytest.approx(1.3 / 3)
    assert summary["overlap_median"] == pytest.approx(0.3)
    assert summary["rbo_mean"] == pytest.approx((1 + 15 / 32) / 3)
    assert summary["identical_top_k"] == pytest.approx(1 / 3)
    assert found.depth == 10 and (found.a, found.b) == ("old", "new")
    assert any("no ranking in new" in w for w in found.warnings)
    metric = found.comparison.metrics[0]  # the paired comparison of `harness compare`
    assert metric.stats.delta == pytest.approx((0.0 + 0.2 - 0.3) / 3)
    assert (metric.stats.wins, metric.stats.ties, metric.stats.losses) == (1, 1, 1)


def test_cli_churn_writes_json_csv_and_plot(hand_records, tmp_path, capsys):
    out = tmp_path / "churn"
    assert main(["churn", str(hand_records[0]), str(hand_records[1]), "--p", "0.5", "--resamples", "200",
                 "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "overlap@10 mean" in printed and "0.4333" in printed and "nDCG@10" in printed
    data = json.loads((out / "churn.json").read_text())
    assert data["rbo"] == {"variant": "RBO_ext (Webber, Moffat & Zobel 2010, eq. 32)", "p": 0.5, "depth": 10}
    assert data["per_query"]["q2"]["rbo"] == pytest.approx(15 / 32)
    rows = (out / "churn.csv").read_text().splitlines()
    assert rows[0] == "qid,overlap@10,rbo,identical,delta nDCG@10" and rows[1].startswith("q1,1.0,1.0,1,0.0")
    assert (out / "churn.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_churn_exit_codes_for_bad_input(hand_records, tmp_path, capsys):
    a, b = map(str, hand_records)
    other_data = hand_record(tmp_path / "c", "other", B_RUN, B_NDCG, fingerprint="fp-other")
    other_name = hand_record(tmp_path / "d", "other", B_RUN, B_NDCG, dataset="elsewhere")
    cases = [
        ([a, str(other_data)], "different data"),
        ([a, str(other_name)], "churn compares two rankings of the same queries"),
        ([a, b, "--k", "11"], "deeper than the records' rankings"),
        ([a, b, "--p", "1.5"], r"p must be in (0, 1)"),
        ([a, str(tmp_path / "missing")], "not a record directory"),
        ([str(tmp_path), b], "holds 4 run records"),
        ([a, b, "--k", "0"], "--k must be a positive integer"),
    ]
    for args, message in cases:
        assert main(["churn", *args]) == 2, args
        assert message in capsys.readouterr().err, args


def test_report_churn_section(hand_records, tmp_path):
    report = harness.report(list(hand_records), output=tmp_path / "report", formats=["md"], n_resamples=200,
                            churn=True)
    text = report.markdown.read_text()
    assert "## Ranking churn" in text and "| toy | old | new | 3 | 0.4333 |" in text
    assert (tmp_path / "report" / "plots" / "churn--toy--new.png").is_file()
    plain = harness.report(list(hand_records), output=tmp_path / "plain", formats=["md"], n_resamples=200)
    assert "Ranking churn" not in plain.markdown.read_text()


# --------------------------------------------------------------------------- real records

def test_churn_of_real_records_reads_their_run_files(tmp_path_factory):
    records = real_records(tmp_path_factory)
    found = harness.churn(records.control, records.degraded, k=10, n_resamples=500)
    loaded = {p.name: harness.load_run(p / "run.trec") for p in (records.control, records.degraded)}
    a, b = (ordered(loaded[p.name]) for p in (records.control, records.degraded))
    for q in found.queries:
        assert q.overlap == len(set(a[q.qid][:10]) & set(b[q.qid][:10])) / 10
        assert q.rbo == pytest.approx(brute_force_rbo_ext(a[q.qid], b[q.qid], 0.9), abs=1e-9)
    summary = found.summary()
    assert 0.0 < summary["overlap_mean"] < 0.9  # truncating every text to 16 tokens reorders most top 10s
    assert summary["identical_top_k"] < 0.5
    assert harness.churn(records.control, records.control, n_resamples=100).summary()["rbo_mean"] == 1.0
