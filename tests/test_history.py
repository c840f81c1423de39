"""`harness history` (issue 24): records of one dataset × encoder lineage in version order, each metric with its
CI and its change from the previous version, the gate against a pinned baseline and where it first failed; the
ledger, trend plots and exports. Hand-made records (nothing is encoded): the numbers below follow from them."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import harness
from harness.analysis.history import FAIL, ORDER_BY_LABEL, ORDER_BY_TIME, PASS, history
from harness.cli import main
from harness.reporting import plots
from harness.scoring.records import RecallCurve, write_run_record
from harness.scoring.scored import load_scored_runs
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.statistics import StatsOptions
from tests.record_fixtures import synthetic_run_record

STATS = StatsOptions(n_resamples=500)
QIDS = [f"q{i:02d}" for i in range(40)]
BASE = dict(zip(QIDS, np.random.default_rng(0).uniform(0.2, 0.8, len(QIDS)).round(4).tolist()))


def shifted(by: float, *, noise: float = 0.0, seed: int = 1) -> dict[str, float]:
    jitter = np.random.default_rng(seed).normal(0, noise, len(QIDS)) if noise else np.zeros(len(QIDS))
    return {q: float(v + by + j) for (q, v), j in zip(BASE.items(), jitter)}


def version_record(folder, encoder: str, values: dict[str, float], *, version: str | None, created_at: str,
                   fingerprint: str = "fp-toy", commit: str | None = None, passages_per_s: float = 100.0):
    record = synthetic_run_record(encoder=encoder, per_query={"nDCG@10": values, "MRR@10": values},
                                  created_at=created_at, fingerprint=fingerprint, passages_per_s=passages_per_s)
    record = record.model_copy(update={"encoder": record.encoder.model_copy(
        update={"version": version, "commit": commit})})
    return write_run_record(folder, record, run={q: [("d1", 1.0)] for q in QIDS},
                            per_query={"nDCG@10": values, "MRR@10": values},
                            recall_curve=RecallCurve(ks=[1], per_query={q: [0.0] for q in QIDS}), tag=encoder)


def checkpoint_series(folder):
    """step-500 (the baseline), step-2000 (+0.002: within a 0.005 margin), step-10000 (−0.05: a clear loss),
    step-24000 (back to +0.001); written out of order, their record times out of order too."""
    version_record(folder, "run@step-10000", shifted(-0.05, noise=0.01), version="step-10000",
                   created_at="2026-01-01T00:00:00+00:00", passages_per_s=90.0)
    version_record(folder, "run@step-500", BASE, version="step-500", created_at="2026-01-03T00:00:00+00:00",
                   commit="a" * 40)
    version_record(folder, "run@step-24000", shifted(0.001, noise=0.001, seed=3), version="step-24000",
                   created_at="2026-01-02T00:00:00+00:00")
    version_record(folder, "run@step-2000", shifted(0.002, noise=0.001, seed=2), version="step-2000",
                   created_at="2026-01-04T00:00:00+00:00")


def test_versions_in_natural_order_with_gates_and_the_first_failure(tmp_path):
    checkpoint_series(tmp_path)
    [lineage] = history(load_scored_runs([tmp_path]), margins={"nDCG@10": 0.005}, stats=STATS)
    assert (lineage.dataset, lineage.name, lineage.order) == ("toy", "run", ORDER_BY_LABEL)
    assert [p.version for p in lineage.points] == ["step-500", "step-2000", "step-10000", "step-24000"]
    assert lineage.baseline == "step-500" and lineage.metrics == ["nDCG@10", "MRR@10"]
    gates = [p.gates["nDCG@10"].status for p in lineage.points]
    assert gates == ["baseline", PASS, FAIL, PASS]
    first = lineage.first_failure("nDCG@10")
    assert first is not None and first.version == "step-10000"
    line = lineage.gate_line("nDCG@10")
    assert line.startswith("nDCG@10 first fell below the baseline's non-inferiority bound (margin 0.005) at "
                           "step-10000: FAIL (Δ -0.05")
    # MRR@10 has no margin: gated by a significant loss, which step-10000 also is
    assert lineage.gate_line("MRR@10").startswith("MRR@10 first fell below the baseline (significantly worse")
    step10k = lineage.points[2]
    assert step10k.means["nDCG@10"] == pytest.approx(np.mean(list(shifted(-0.05, noise=0.01).values())))
    assert step10k.from_previous["nDCG@10"].delta == pytest.approx(
        step10k.means["nDCG@10"] - lineage.points[1].means["nDCG@10"])
    assert lineage.mark(step10k, "nDCG@10") == " ▼" and lineage.mark(lineage.points[3], "nDCG@10") == " ▲"
    assert lineage.mark(lineage.points[1], "nDCG@10") in ("", " ▲")  # +0.002 with tiny noise
    low, high = step10k.cis["nDCG@10"]
    assert low < step10k.means["nDCG@10"] < high
    headers, rows = lineage.ledger()
    assert headers[:3] == ["version", "commit", "recorded"] and rows[0][1] == "a" * 12
    assert rows[2][headers.index("passages/s")] == "90.0" and rows[2][headers.index("gate nDCG@10")].startswith(
        "FAIL (Δ -0.05")


def test_without_labels_versions_follow_record_time_and_a_named_baseline_is_pinned(tmp_path):
    version_record(tmp_path, "enc", shifted(-0.03, noise=0.005), version=None, created_at="2026-02-02T00:00:00+00:00")
    version_record(tmp_path, "enc", BASE, version=None, created_at="2026-02-01T00:00:00+00:00")
    [lineage] = history(load_scored_runs([tmp_path]), stats=STATS)
    assert lineage.order == ORDER_BY_TIME
    assert [p.version for p in lineage.points] == ["2026-02-01T00:00:00+00:00", "2026-02-02T00:00:00+00:00"]
    assert [p.gates["nDCG@10"].status for p in lineage.points] == ["baseline", FAIL]
    [pinned] = history(load_scored_runs([tmp_path]), baseline="2026-02-02T00:00:00+00:00", stats=STATS)
    assert [p.gates["nDCG@10"].status for p in pinned.points] == [PASS, "baseline"]  # the older one is better
    with pytest.raises(HarnessError, match="baseline version 'v9' is in no lineage"):
        history(load_scored_runs([tmp_path]), baseline="v9", stats=STATS)
    with pytest.raises(HarnessError, match="a margin is set for P@5"):
        history(load_scored_runs([tmp_path]), margins={"P@5": 0.01}, stats=STATS)


def test_a_repeated_version_keeps_the_newest_and_other_data_is_another_lineage(tmp_path):
    version_record(tmp_path, "enc", BASE, version="v1", created_at="2026-03-01T00:00:00+00:00")
    version_record(tmp_path, "enc", shifted(0.1), version="v1", created_at="2026-03-02T00:00:00+00:00")
    version_record(tmp_path, "enc", BASE, version="v2", created_at="2026-03-03T00:00:00+00:00",
                   fingerprint="fp-other")
    lineages = history(load_scored_runs([tmp_path]), stats=STATS)
    assert len(lineages) == 2
    first = next(lin for lin in lineages if len(lin.points) == 1 and lin.points[0].version == "v1")
    assert first.points[0].means["nDCG@10"] == pytest.approx(np.mean(list(shifted(0.1).values())))
    assert any("version v1: 2 records; the newest" in n for n in first.notes)
    assert all(any("more than one version of the data" in n for n in lin.notes) for lin in lineages)


def test_the_history_folder_holds_ledger_gate_lines_plots_and_exports(tmp_path):
    checkpoint_series(tmp_path / "r")
    version_record(tmp_path / "r", "run@<b>x</b>", BASE, version="<b>x</b>", created_at="2026-01-05T00:00:00+00:00")
    found = harness.history(tmp_path / "r", output=tmp_path / "h", margins={"nDCG@10": 0.005}, n_resamples=500)
    out = tmp_path / "h"
    md, page = (out / "history.md").read_text(), (out / "history.html").read_text()
    assert "## toy × run" in md and "Versions ordered by version label" in md
    assert "nDCG@10 first fell below the baseline's non-inferiority bound (margin 0.005) at step-10000" in md
    assert "| step-10000 |" in md and "](plots/trend--toy--run.png)" in md
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page and "data:image/png;base64," in page
    assert (out / "plots" / "trend--toy--run.png").stat().st_size > 1000 and (out / "plots" /
                                                                              "trend--toy--run.svg").is_file()
    rows = json.loads((out / "history.json").read_text())
    with (out / "history.csv").open(newline="") as f:
        assert len(list(csv.DictReader(f))) == len(rows) == 5 * 2  # versions x metrics
    step10k = next(r for r in rows if r["version"] == "step-10000" and r["metric"] == "nDCG@10")
    assert step10k["gate"] == FAIL and step10k["margin"] == 0.005 and step10k["significant_change"] == "▼"
    assert step10k["lower_bound"] < -0.005 < 0 and step10k["delta_baseline"] == pytest.approx(
        step10k["mean"] - next(r["mean"] for r in rows if r["version"] == "step-500" and r["metric"] == "nDCG@10"))
    assert {p.name for p in found.files} >= {"history.md", "history.html", "history.csv", "history.json"}
    assert "step-10000" in found._repr_markdown_() and "&lt;b&gt;" in found._repr_html_()


def test_the_command_prints_the_ledger_and_fails_on_a_newest_version_that_fails(tmp_path, capsys):
    checkpoint_series(tmp_path / "r")
    assert main(["history", str(tmp_path / "r"), "--margin", "nDCG@10=0.005", "--resamples", "300",
                 "--fail-on-gate"]) == 0  # the newest, step-24000, passes
    printed = capsys.readouterr().out
    assert "toy × run (ordered by version label" in printed
    assert [line.split("|")[1].strip() for line in printed.splitlines() if "| step-" in line] == [
        "step-500", "step-2000", "step-10000", "step-24000"]
    version_record(tmp_path / "r", "run@step-30000", shifted(-0.04, noise=0.01), version="step-30000",
                   created_at="2026-01-06T00:00:00+00:00")
    assert main(["history", str(tmp_path / "r"), "--margin", "nDCG@10=0.005", "--resamples", "300",
                 "--fail-on-gate", "-o", str(tmp_path / "h")]) == 1
    assert "newest version fails its gate: toy × run: nDCG@10 at step-30000" in capsys.readouterr().err
    assert main(["history", str(tmp_path / "r"), "--margin", "nDCG@10=-1"]) == 2
    assert main(["history", str(tmp_path / "empty")]) == 2


def test_the_trend_plot_has_a_panel_per_metric_and_one_for_speed():
    metric = {"means": [0.5, 0.52, 0.45], "lows": [0.45, 0.47, 0.4], "highs": [0.55, 0.57, 0.5],
              "changes": [0, 0, -1], "baseline": 0.5, "bound": 0.495, "first_failure": 2}
    fig = plots.version_trend(["a", "b", "c"], {"nDCG@10": metric, "MRR@10": {**metric, "bound": None,
                                                                               "first_failure": None}},
                              {"passages_per_s": [100.0, None, 90.0], "query_p99_ms": [5.0, 6.0, 7.0]}, title="t")
    axes = [ax for ax in fig.axes if ax.get_ylabel()]
    assert [ax.get_ylabel() for ax in axes] == ["nDCG@10", "MRR@10", "passages/s", "query p99 ms"]
    stepped = plots.version_trend(["a", "b", "c"], {"nDCG@10": metric}, {"passages_per_s": [1.0] * 3,
                                                                        "query_p99_ms": [1.0] * 3}, title="t",
                                  steps={"metric": "nDCG@10", "deltas": [None, 0.02, -0.07],
                                         "lows": [None, -0.01, -0.1], "highs": [None, 0.05, -0.04],
                                         "significant": [False, False, True]})
    panel = next(ax for ax in stepped.axes if ax.get_ylabel() == "Δ nDCG@10 vs previous")
    points = [(list(line.get_xdata()), list(line.get_ydata()), line.get_color()) for line in panel.get_lines()
              if line.get_marker() == "o"]
    assert points == [([1], [0.02], plots.TIE), ([2], [-0.07], plots.LOSS)]  # n.s. grey, significant loss red
    falls = [line for line in axes[0].get_lines() if line.get_marker() == "v"]
    assert len(falls) == 1 and list(falls[0].get_xdata()) == [2]
    vertical = [line for line in axes[0].get_lines() if list(line.get_xdata()) == [2, 2]]
    assert len(vertical) == 1  # the first failure
    assert not [line for line in axes[1].get_lines() if list(line.get_xdata()) == [2, 2]]


def test_the_bar_legend_fits_its_figure_with_long_names():
    """Seven systems, one of 31 characters: the legend takes as many columns as fit, and none is cut."""
    names = ["all-MiniLM-L6-v2", "all-MiniLM-L6-v2-trunc16", "BM25.dl19", "BM25_RM3.dl19", "D_BERT_KD_TASB.dl19",
             "OPEN_AI_ADA2.dl19", "SPLADE_P_P_ENSEMBLE_DISTIL.dl19"]
    fig = plots.metric_bars({n: {m: (0.5, 0.4, 0.6) for m in ("nDCG@10", "MRR@10", "MAP")} for n in names},
                            title="t")
    fig.canvas.draw()
    [legend] = fig.legends
    box = legend.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width
    assert plots.legend_columns(names, 9.0, most=4) == 2 and plots.legend_columns(["a", "b"], 9.0, most=4) == 2


def test_the_frontier_plot_adds_the_paired_change_from_the_control():
    points = [{"label": "control", "speed": 100.0, "mean": 0.60, "ci": (0.50, 0.70), "frontier": True,
               "p99_ms": 5.0, "delta": 0.0, "delta_ci": (0.0, 0.0)},
              {"label": "fast", "speed": 400.0, "mean": 0.57, "ci": (0.47, 0.67), "frontier": True,
               "p99_ms": 2.0, "delta": -0.03, "delta_ci": (-0.05, -0.01)}]
    fig = plots.quality_speed_frontier(points, metric="nDCG@10", title="t", control="control")
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels == ["nDCG@10 (mean, 95% CI)", "Δ nDCG@10 vs control (paired 95% CI)"]
    paired = next(ax for ax in fig.axes if ax.get_ylabel().startswith("Δ"))
    bars = [c for c in paired.collections if len(c.get_segments()) == 1]  # the error bars, one segment each
    assert sorted(tuple(np.round(seg[:, 1], 3)) for c in bars for seg in c.get_segments()) == [(-0.05, -0.01),
                                                                                               (0.0, 0.0)]
    alone = plots.quality_speed_frontier(points, metric="nDCG@10", title="t")
    assert [ax.get_ylabel() for ax in alone.axes if ax.get_ylabel()] == ["nDCG@10 (mean, 95% CI)"]
