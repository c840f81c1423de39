"""`harness report`'s "Approximate index" section, on hand-made index records (nothing is encoded or searched):
the table's numbers, the cheapest non-inferior setting, the wording without one or without a margin, escaping,
the frontier plots, and no section for records that searched exactly."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from harness.reporting import build_report, load_report_data, plots
from harness.reporting.data import EXACT_LABEL
from harness.reporting.document import build_document
from harness.reporting.render import to_html, to_markdown
from harness.scoring.records import (
    AnnRecall,
    ExactReference,
    IndexInfo,
    RecallCurve,
    VersusExact,
    write_run_record,
)
from harness.vocabulary.statistics import StatsOptions
from harness.vocabulary.timing import Latency
from tests.record_fixtures import synthetic_record, synthetic_run_record

STATS = StatsOptions(n_resamples=200)
QIDS = [f"q{i:02d}" for i in range(12)]
EXACT = {q: 0.40 + 0.04 * i for i, q in enumerate(QIDS)}  # exact search's nDCG@10 per query, mean 0.62
MODEL = "test/shared-model"  # every record below searched the same embeddings


def shifted(by: float) -> dict[str, float]:
    return {q: v + by for q, v in EXACT.items()}


def versus(values: dict[str, float], *, ci: tuple[float, float], p: float, margin: float | None,
           lower: float | None = None, noninferior: bool | None = None) -> VersusExact:
    index, exact = sum(values.values()) / len(values), sum(EXACT.values()) / len(EXACT)
    return VersusExact(metric="nDCG@10", exact=exact, index=index, delta=index - exact, delta_ci=ci, p=p,
                       test="randomization", wins=0, ties=len(values), losses=0, margin=margin, lower=lower,
                       noninferior=noninferior)


def index_record(folder: Path, name: str, *, label: str, qps: float, values: dict[str, float],
                 ni: VersusExact, recall10: float = 0.9, build_s: float = 1.5, bytes_per_vector: float = 96.0,
                 latency_ms: tuple[float, ...] = (0.2, 0.3, 0.4), exact_qps: float = 1000.0) -> Path:
    """An index record (its ranking's per-query nDCG@10 `values`) with a hand-made index section."""
    record = synthetic_run_record(encoder=name, model=MODEL, per_query={"nDCG@10": values})
    info = IndexInfo(
        backend="faiss", backend_version="1.0", kind="hnsw", label=label, build={"M": 8}, search={"ef_search": 4},
        key="key-" + name, from_cache=False, build_s=build_s, train_rows=None, bytes_on_disk=96_000,
        bytes_per_vector=bytes_per_vector, resident_mb=None, build_peak_rss_mb=None, search_s=len(QIDS) / qps,
        queries_per_s=qps, search_latency=Latency.from_values(latency_ms),
        ann_recall=[AnnRecall(k=10, mean=recall10, per_query={q: recall10 for q in QIDS})],
        exact=ExactReference(metrics={"nDCG@10": sum(EXACT.values()) / len(EXACT)}, search_s=len(QIDS) / exact_qps,
                             queries_per_s=exact_qps, search_latency=Latency.from_values([1.0, 2.0, 3.0])),
        alpha=0.05, versus_exact=[ni])
    record = record.model_copy(update={"index": info})
    return write_run_record(folder, record, run={q: [("d1", 1.0)] for q in QIDS}, per_query={"nDCG@10": values},
                            recall_curve=RecallCurve(ks=[1], per_query={q: [0.0] for q in QIDS}), tag=name)


def three_settings(folder: Path, *, margin: float | None = 0.01, all_inferior: bool = False) -> None:
    """A fast setting that is clearly worse (not non-inferior), a mid-speed one within the margin, a slow one
    within the margin."""
    def judged(values, ci, p, lower, ok):
        return versus(values, ci=ci, p=p, margin=margin, lower=lower if margin else None,
                      noninferior=(ok and not all_inferior) if margin else None)

    fast, mid, slow = shifted(-0.10), shifted(-0.001), shifted(0.0)
    # encoder names order the record folders slow, fast, mid: the first one read is not the answer
    index_record(folder, "b-fast", label="hnsw-fast", qps=5000.0, values=fast,
                 ni=judged(fast, (-0.12, -0.08), 0.001, -0.115, False), recall10=0.5)
    index_record(folder, "c-mid", label="hnsw-mid", qps=2000.0, values=mid,
                 ni=judged(mid, (-0.02, 0.01), 0.5, -0.004, True), recall10=0.9, build_s=1.5,
                 latency_ms=(0.2, 0.3, 0.4))
    index_record(folder, "a-slow", label="hnsw-slow", qps=500.0, values=slow,
                 ni=judged(slow, (-0.01, 0.01), 1.0, -0.002, True), recall10=0.99)


def document(folder: Path):
    data = load_report_data([folder], stats=STATS)
    blocks = build_document(data, [])
    return data, to_markdown(blocks, relative_to=folder), to_html(blocks)


def row_of(md: str, label: str) -> list[str]:
    [line] = [line for line in md.splitlines() if line.startswith(f"| {label} |")]
    return [cell.strip() for cell in line.strip("|").split(" | ")]


def test_table_holds_each_settings_numbers_and_one_exact_row(tmp_path):
    three_settings(tmp_path / "r")
    synthetic_record(tmp_path / "r", encoder="exact", model=MODEL, per_query={"nDCG@10": EXACT})  # plain exact
    data, md, _ = document(tmp_path / "r")
    [group] = data.indexes
    section = md[md.index("## Approximate index"):md.index("## Environment")]
    header = row_of(section, "setting")
    assert header == ["setting", "build s", "bytes/vector", "queries/s", "search p50 ms", "search p99 ms",
                      "ANN recall@10", "nDCG@10 (Δ vs exact [95% CI], p)", "nDCG@10 non-inferiority"]
    mid = row_of(section, "hnsw-mid")
    latency = Latency.from_values([0.2, 0.3, 0.4])
    assert mid == ["hnsw-mid", "1.500", "96.0", "2,000.0", f"{latency.p50:.3f}", f"{latency.p99:.3f}", "0.9000",
                   "0.6190 (Δ -0.0010 [-0.020, +0.010], p 0.5000)", "non-inferior at 0.01"]
    fast = row_of(section, "hnsw-fast")
    assert fast[3] == "5,000.0" and fast[6] == "0.5000" and fast[7].startswith("0.5200 (Δ -0.1000 [-0.120, -0.080]")
    assert fast[-1] == "not shown non-inferior"
    exact = row_of(section, f"{EXACT_LABEL} (reference)")
    assert exact[3] == "1,000.0" and exact[5] == f"{Latency.from_values([1.0, 2.0, 3.0]).p99:.3f}"
    assert exact[6] == "1.0000" and exact[7] == "0.6200" and exact[-1] == "—"
    # the plain exact record is the same numbers: no second exact row; it joins the frontier as a point
    assert section.count("| exact") == 1 and group.exact_run is not None
    assert EXACT_LABEL in [p.label for p in group.frontier.points]
    # rows fastest first, after the reference
    labels = [line.split(" | ")[0][2:] for line in section.splitlines() if line.startswith("| ")][1:]
    assert labels == [f"{EXACT_LABEL} (reference)", "hnsw-fast", "hnsw-mid", "hnsw-slow"]


def test_cheapest_noninferior_is_the_fastest_that_passes_not_a_faster_inferior_one(tmp_path):
    three_settings(tmp_path / "r")
    _, md, _ = document(tmp_path / "r")
    [line] = [line for line in md.splitlines() if line.startswith("Cheapest setting")]
    assert "hnsw-mid" in line and "hnsw-fast" not in line and "hnsw-slow" not in line
    assert "on nDCG@10 at margin 0.01" in line and "2,000.0 queries/s" in line
    assert "no faster than exact" not in line


def test_frontier_marks_a_slower_setting_that_a_faster_one_beats(tmp_path):
    """hnsw-fast is worse than both others; a slower setting significantly worse than a faster one is dominated."""
    three_settings(tmp_path / "r")
    worse = shifted(-0.2)
    index_record(tmp_path / "r", "slowest", label="hnsw-slowest", qps=100.0, values=worse,
                 ni=versus(worse, ci=(-0.22, -0.18), p=0.001, margin=0.01, lower=-0.21, noninferior=False))
    data, md, _ = document(tmp_path / "r")
    [group] = data.indexes
    assert set(group.frontier.dominated) == {"hnsw-slowest"}
    assert group.frontier.dominated["hnsw-slowest"].by in {"hnsw-mid", "hnsw-slow", "hnsw-fast"}
    assert EXACT_LABEL not in [p.label for p in group.frontier.points]  # no plain exact record: reference only
    assert "Dominated on nDCG@10: hnsw-slowest (by " in md
    assert "drawn as the reference, not as a frontier point" in md


def test_wording_when_none_is_non_inferior_and_when_no_margin_is_set(tmp_path):
    three_settings(tmp_path / "none", all_inferior=True)
    _, md, _ = document(tmp_path / "none")
    assert "No setting is shown non-inferior to exact search on nDCG@10 at margin 0.01" in md
    assert "Cheapest setting" not in md

    three_settings(tmp_path / "unset", margin=None)
    _, md, html = document(tmp_path / "unset")
    assert "No non-inferiority margin is set" in md and "noninferior: {nDCG@10: {margin: 0.005}}" in md
    assert "Cheapest setting" not in md and "No setting is shown" not in md
    assert "non-inferiority |" not in md  # no verdict column without a margin
    assert "<code>baseline: {records: results, noninferior: {nDCG@10: {margin: 0.005}}}</code>" in html


def test_a_label_from_the_record_is_escaped(tmp_path):
    values = shifted(0.0)
    index_record(tmp_path / "r", "evil", label="<script>alert(1)</script>", qps=3000.0, values=values,
                 ni=versus(values, ci=(-0.01, 0.01), p=1.0, margin=0.01, lower=-0.002, noninferior=True))
    _, md, html = document(tmp_path / "r")
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in md and "Cheapest setting non-inferior to exact search on nDCG@10 at margin 0.01: " \
                                    "&lt;script&gt;" in md


def test_report_folder_holds_the_index_plots(tmp_path):
    three_settings(tmp_path / "r")
    out = tmp_path / "report"
    build_report(load_report_data([tmp_path / "r"], stats=STATS), out)
    for key in ("index-quality", "index-recall"):
        assert (out / "plots" / f"{key}--toy.png").stat().st_size > 1000
        assert (out / "plots" / f"{key}--toy.svg").is_file()
    md = (out / "report.md").read_text()
    section = md[md.index("## Approximate index"):]
    assert re.search(r"\]\(plots/index-quality--toy\.png\)", section)
    assert re.search(r"\]\(plots/index-recall--toy\.png\)", section)


def test_no_index_records_no_section(tmp_path):
    synthetic_record(tmp_path / "r", encoder="a", per_query={"nDCG@10": EXACT})
    synthetic_record(tmp_path / "r", encoder="b", per_query={"nDCG@10": shifted(0.01)}, passages_per_s=300)
    data, md, html = document(tmp_path / "r")
    assert data.indexes == []
    assert "Approximate index" not in md and "Approximate index" not in html
    out = tmp_path / "report"
    build_report(data, out)
    assert not list((out / "plots").glob("index-*"))


def test_index_plots_draw_exact_as_the_reference_on_log_speed():
    points = [{"label": "a", "qps": 100.0, "p99_ms": 2.0, "mean": 0.5, "ci": (0.45, 0.55), "frontier": True},
              {"label": "b", "qps": 5000.0, "p99_ms": 0.2, "mean": 0.4, "ci": (0.35, 0.45), "frontier": True}]
    exact = {"label": EXACT_LABEL, "qps": 800.0, "p99_ms": None, "mean": 0.52, "frontier": None}
    fig = plots.index_quality_speed(points, exact, metric="nDCG@10", title="t")
    speed, latency = fig.axes[:2]
    assert speed.get_xscale() == "log"
    stars = [line for line in speed.get_lines() if line.get_marker() == "*"]
    assert len(stars) == 1 and list(stars[0].get_xdata()) == [800.0] and list(stars[0].get_ydata()) == [0.52]
    assert not [line for line in latency.get_lines() if line.get_marker() == "*"]  # exact not timed per query
    fig = plots.ann_recall_speed([{"label": "a", "qps": 100.0, "recall": 0.8, "frontier": False}],
                                 {"label": EXACT_LABEL, "qps": 800.0, "frontier": True}, k=10, title="t")
    [ax] = fig.axes
    [star] = [line for line in ax.get_lines() if line.get_marker() == "*"]
    assert list(star.get_ydata()) == [1.0] and ax.get_xscale() == "log"
    [dot] = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert dot.get_markerfacecolor() == "white"  # dominated: hollow


def test_an_index_label_equal_to_the_exact_label_stays_apart(tmp_path):
    values = shifted(0.0)
    index_record(tmp_path / "r", "x", label=EXACT_LABEL, qps=3000.0, values=values,
                 ni=versus(values, ci=(-0.01, 0.01), p=1.0, margin=None))
    data, md, _ = document(tmp_path / "r")
    [group] = data.indexes
    assert [s.label for s in group.settings] == ["exact search [x]"]
    assert row_of(md, "exact search [x]")[3] == "3,000.0"


def test_exports_hold_every_setting_and_metric_unrounded(tmp_path):
    three_settings(tmp_path / "r")
    out = tmp_path / "report"
    build_report(load_report_data([tmp_path / "r"], stats=STATS), out)
    rows = json.loads((out / "index.json").read_text())
    with (out / "index.csv").open(newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["setting"] for r in rows] == [r["setting"] for r in csv_rows] == [
        EXACT_LABEL, "hnsw-fast", "hnsw-mid", "hnsw-slow"]
    exact, fast, mid, _ = rows
    assert exact["value"] == exact["exact"] == sum(EXACT.values()) / len(EXACT) and exact["queries_per_s"] == 1000.0
    assert exact["search_p99_ms"] == Latency.from_values([1.0, 2.0, 3.0]).p99 and exact["backend"] is None
    assert mid["metric"] == "nDCG@10" and mid["value"] == sum(shifted(-0.001).values()) / len(QIDS)
    assert mid["delta"] == mid["value"] - exact["value"]
    assert (mid["delta_ci_low"], mid["delta_ci_high"]) == (-0.02, 0.01)
    assert mid["margin"] == 0.01 and mid["lower_bound"] == -0.004 and mid["noninferior"] is True
    assert fast["noninferior"] is False and fast["ann_recall_at_10"] == 0.5 and fast["ann_recall_at_100"] is None
    assert json.loads(mid["build_settings"]) == {"M": 8} and json.loads(mid["search_settings"]) == {"ef_search": 4}
    assert fast["queries_per_s"] == 5000.0 and fast["backend"] == "faiss" and "--b-fast--" in fast["record"]
    assert float(csv_rows[2]["delta"]) == mid["delta"] and csv_rows[0]["backend"] == ""


def test_no_index_records_no_index_export(tmp_path):
    synthetic_record(tmp_path / "r", encoder="a", per_query={"nDCG@10": EXACT})
    out = tmp_path / "report"
    build_report(load_report_data([tmp_path / "r"], stats=STATS), out)
    assert (out / "results.csv").is_file() and not (out / "index.csv").exists() and not (out / "index.json").exists()


def test_the_notebook_view_shows_the_index_table_escaped(tmp_path):
    three_settings(tmp_path / "r")
    values = shifted(0.0)
    index_record(tmp_path / "r", "evil", label="<b>x</b>", qps=3000.0, values=values,
                 ni=versus(values, ci=(-0.01, 0.01), p=1.0, margin=0.01, lower=-0.002, noninferior=True))
    data = load_report_data([tmp_path / "r"], stats=STATS)
    md, page = data._repr_markdown_(), data._repr_html_()
    assert "Approximate index: toy" in md and "| hnsw-mid | 1.500 | 96.0 | 2,000.0 |" in md
    assert "Cheapest setting non-inferior to exact search on nDCG@10 at margin 0.01: &lt;b&gt;x&lt;/b&gt;" in md
    assert "<td>hnsw-mid</td>" in page and "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
