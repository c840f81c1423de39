"""`harness power`: minimum detectable paired effect per dataset and metric, against a hand computation
(the t-based formula MDE = (t[1-alpha/2, n-1] + t[power, n-1]) * sd / sqrt(n), t quantiles from tables)."""

import json
import math

import pytest

from harness.cli import main
from tests.conftest import REPO
from tests.record_fixtures import synthetic_record

QIDS = ["q1", "q2", "q3", "q4", "q5"]
BASE = {"MAP": dict(zip(QIDS, [0.2, 0.4, 0.5, 0.1, 0.6])), "nDCG@10": dict(zip(QIDS, [0.5] * 5))}
NEW = {"MAP": dict(zip(QIDS, [0.3, 0.7, 0.5, 0.4, 0.5])), "nDCG@10": dict(zip(QIDS, [0.5] * 5))}
T_975_4, T_80_4 = 2.776445, 0.940965  # t quantiles, 4 degrees of freedom
T_975_3, T_80_3 = 3.182446, 0.978472  # 3 degrees of freedom


def _power(tmp_path, *args: str) -> dict:
    out = tmp_path / "power.json"
    assert main(["power", *args, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_one_record_uses_the_per_query_spread(tmp_path, capsys):
    """One record: sd(d) is the metric's per-query sd (rho 0.5). MAP values: mean 0.36, sample variance 0.043."""
    synthetic_record(tmp_path / "one", encoder="base", per_query=BASE)
    data = _power(tmp_path, str(tmp_path / "one"), "--metric", "MAP")
    [row] = data["rows"]
    assert row["n"] == 5 and row["sd"] == pytest.approx(math.sqrt(0.043))
    assert row["mde"] == pytest.approx((T_975_4 + T_80_4) * math.sqrt(0.043) / math.sqrt(5), abs=1e-6)
    assert "one record, rho 0.5" in row["basis"] and row["needed"] is None
    out = capsys.readouterr().out
    assert "0.3447" in out and "MDE" in out


def test_two_records_use_the_paired_differences_and_count_queries_needed(tmp_path, capsys):
    """d = [0.1, 0.3, 0.0, 0.3, -0.1]: sample variance 0.032. MDE at n = 5 is 0.2974 <= 0.3, at n = 4 it is
    (3.182446 + 0.978472) * sqrt(0.032) / 2 = 0.3722 > 0.3: an effect of 0.3 needs 5 queries."""
    synthetic_record(tmp_path / "base", encoder="base", per_query=BASE)
    synthetic_record(tmp_path / "new", encoder="new", per_query=NEW)
    data = _power(tmp_path, str(tmp_path / "base"), str(tmp_path / "new"), "--effect", "0.3")
    rows = {r["metric"]: r for r in data["rows"]}
    assert set(rows) == {"MAP", "nDCG@10"} and rows["MAP"]["basis"] == "new vs base (paired)"
    assert rows["MAP"]["mde"] == pytest.approx((T_975_4 + T_80_4) * math.sqrt(0.032) / math.sqrt(5), abs=1e-6)
    assert (T_975_3 + T_80_3) * math.sqrt(0.032) / 2 > 0.3 and rows["MAP"]["needed"] == 5
    assert rows["nDCG@10"]["sd"] == 0.0 and rows["nDCG@10"]["mde"] == 0.0 and rows["nDCG@10"]["needed"] == 2
    assert "queries for Δ=0.3" in capsys.readouterr().out
    # alpha and power are honoured: a stricter test needs a larger effect
    strict = _power(tmp_path, str(tmp_path / "base"), str(tmp_path / "new"), "--alpha", "0.01", "--power", "0.9")
    assert {r["metric"]: r for r in strict["rows"]}["MAP"]["mde"] > rows["MAP"]["mde"]


def test_shipped_records_dl19_pool_43_queries(tmp_path):
    """The shipped DL19-pool records: 43 queries cannot see the 0.0028 nDCG@10 drop that truncation to 64
    tokens causes (MDE 0.021 from the paired differences)."""
    data = _power(tmp_path, str(REPO / "results" / "baselines"), str(REPO / "results" / "truncation-64"),
                  "--metric", "nDCG@10")
    row = next(r for r in data["rows"] if r["dataset"] == "dl19-pool")
    assert row["n"] == 43 and 0.015 < row["mde"] < 0.025 and row["mde"] > 0.0028


def test_bad_input_exits_2(tmp_path, capsys):
    synthetic_record(tmp_path / "one", encoder="base", per_query=BASE)
    assert main(["power", str(tmp_path / "one"), "--effect", "0"]) == 2
    assert "--effect must be > 0" in capsys.readouterr().err
    assert main(["power", str(tmp_path / "one"), "--metric", "MRR@10"]) == 2
    assert "no per-query MRR@10" in capsys.readouterr().err
    assert main(["power", str(tmp_path / "nowhere")]) == 2
