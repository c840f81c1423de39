"""`harness report`: files, self-contained HTML (checked in headless Chromium), plots, exports; on shipped real
records (MiniLM vs MiniLM truncated to 16 tokens, a `harness profile` record) and hand-made ones.
test_end_to_end_analysis.py reports on records and a profile that a fresh run writes."""

import csv
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest

from harness.api import check, compare
from harness.cli import main
from harness.reporting import load_report_data, plots
from harness.reporting.exports import mteb_key
from harness.scoring.records import load
from harness.vocabulary.statistics import StatsOptions
from tests.conftest import REPO
from tests.record_fixtures import (
    SHIPPED_CONTROL,
    SHIPPED_DEGRADED,
    SHIPPED_METRICS,
    copy_shipped_record,
    shipped_records,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

PROFILE_POINTS = [
    {"engine": engine, "precision": precision, "batch_size": b, "max_seq_length": 256, "device": "cpu",
     "passages_per_s": rate * (1 - 0.5 / b ** 0.5), "tokens_per_s": rate * 80,
     "latency_values_ms": list(np.random.default_rng(b).gamma(4.0, 120.0 * b / rate, 40))}
    for engine, precision, rate in (("fast", "fp32", 60.0), ("fast", "int8", 140.0),
                                    ("sentence-transformers", "fp32", 40.0))
    for b in (1, 4, 16, 64)
]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A report over the shipped real records plus the shipped profile record of the same model."""
    real = shipped_records(tmp_path_factory.mktemp("shipped") / "results")
    copy_shipped_record(REPO / "results" / "profiles", "bundled-all-MiniLM-L6-v2", real.folder)
    out = tmp_path_factory.mktemp("report")
    assert main(["report", str(real.folder), "--output", str(out)]) == 0
    return real, out


@pytest.fixture
def real(tmp_path):
    return shipped_records(tmp_path / "results")


def test_report_files(report):
    real, out = report
    plots_dir = out / "plots"
    keys = sorted(p.stem.split("--")[0] for p in plots_dir.glob("*.png"))
    assert keys == ["bars", "deltas", "frontier", "latency", "profile-latency", "recall", "throughput"]
    for png in plots_dir.glob("*.png"):
        width, height = png_size(png)
        assert width >= 600 and height >= 300
        ET.parse(png.with_suffix(".svg"))  # every plot also as valid SVG
    md = (out / "report.md").read_text()
    for link in re.findall(r"\]\(([^)]+)\)", md):
        assert (out / link).is_file(), link
    assert f"| noveleval | {SHIPPED_DEGRADED} |" in md and "▼" in md
    assert "| (profile) | bundled:all-MiniLM-L6-v2 · msmarco-trecdl2019-pool |" in md


def test_html_is_self_contained(report):
    _, out = report
    text = (out / "report.html").read_text()
    sources = re.findall(r'<img[^>]+src="([^"]+)"', text)
    assert len(sources) == len(list((out / "plots").glob("*.png")))
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(src|href)="(https?:)?//', text) and "<link" not in text and "@import" not in text
    assert SHIPPED_DEGRADED in text and 'class="worse"' in text


def test_exports(report):
    real, out = report
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 2 * len(SHIPPED_METRICS)  # 2 encoders x 5 metrics
    ndcg = next(r for r in rows if r["encoder"] == SHIPPED_DEGRADED and r["metric"] == "nDCG@10")
    assert ndcg["verdict"] == "worse" and float(ndcg["delta"]) < 0 and ndcg["control"] == SHIPPED_CONTROL
    record = json.loads((real.control / "record.json").read_text())
    control = next(r for r in rows if r["encoder"] == SHIPPED_CONTROL and r["metric"] == "nDCG@10")
    assert float(control["value"]) == pytest.approx(record["metrics"]["nDCG@10"])
    assert float(control["ci_low"]) < float(control["value"]) < float(control["ci_high"])
    assert json.loads((out / "results.json").read_text())[0].keys() == rows[0].keys()
    tex = (out / "results.tex").read_text()
    assert r"\begin{tabular}{llrrrrr}" in tex and r"$^{\downarrow}$" in tex and SHIPPED_DEGRADED in tex
    mteb = json.loads((out / "mteb" / SHIPPED_CONTROL / "noveleval.json").read_text())
    scores = mteb["scores"]["test"][0]
    assert scores["ndcg_at_10"] == pytest.approx(record["metrics"]["nDCG@10"])
    assert scores["main_score"] == scores["ndcg_at_10"] and scores["map_at_1000"] == record["metrics"]["MAP"]
    assert mteb["dataset_revision"] == record["dataset"]["fingerprint"]


def test_recall_curve_matches_the_record(real):
    """The report's Recall@k curve is the mean of the stored per-query one; at k = 100 it is the record's
    Recall@100 (and the run's top_k, 1000, is its last cut-off)."""
    data = load_report_data([real.folder], stats=StatsOptions(n_resamples=200))
    record = json.loads((real.control / "record.json").read_text())
    assert record["files"]["recall_curve"] == "recall_curve.json"
    stored = json.loads((real.control / "recall_curve.json").read_text())
    assert len(stored["per_query"]) == record["dataset"]["counts"]["queries"] == 21
    ks, values = data.recall["noveleval"][SHIPPED_CONTROL]
    assert ks == stored["ks"] and ks[0] == 1 and ks[-1] == 1000 and ks == sorted(set(ks))
    assert values == pytest.approx(np.mean(list(stored["per_query"].values()), axis=0), abs=1e-12)
    for k in (100, 1000):
        assert values[ks.index(k)] == pytest.approx(record["metrics"][f"Recall@{k}"], abs=1e-12)
    assert all(a <= b + 1e-12 for a, b in zip(values, values[1:]))  # Recall@k never decreases in k
    degraded = data.recall["noveleval"][SHIPPED_DEGRADED][1]
    assert degraded[ks.index(100)] < values[ks.index(100)]


def test_record_without_a_curve_gets_a_note_and_no_data_is_reread(real):
    """A record without a curve (schema 1 upgraded) gets a note; the report never looks for the dataset (gone)."""
    path = real.control / "record.json"
    record = json.loads(path.read_text())
    record["dataset"]["source"]["path"] = "/nowhere/noveleval"
    record["files"]["recall_curve"] = None  # what loading a schema-1 record gives
    path.write_text(json.dumps(record))
    (real.control / "recall_curve.json").unlink()
    data = load_report_data([real.folder], stats=StatsOptions(n_resamples=100))
    assert list(data.recall["noveleval"]) == [SHIPPED_DEGRADED]
    assert data.notes == [f"noveleval / {SHIPPED_CONTROL}: no Recall@k curve: record predates schema 2"]


def test_shipped_records_keep_their_curves():
    data = load_report_data([REPO / "results" / "baselines", REPO / "results" / "truncation-16"],
                            stats=StatsOptions(n_resamples=100))
    assert sorted(data.recall) == ["dl19-pool", "noveleval", "scifact"] and not data.notes
    ks, values = data.recall["scifact"]["all-MiniLM-L6-v2"]
    assert values[ks.index(100)] == pytest.approx(0.925, abs=1e-12)


def test_comparison_check_and_report_data_render_in_jupyter(real):
    comparison = compare(real.folder, n_resamples=200)
    ndcg = comparison.find("noveleval", "nDCG@10", SHIPPED_DEGRADED)
    markdown = comparison._repr_markdown_()
    assert f"{ndcg.stats.delta:+.4f}" in markdown
    assert f"{SHIPPED_DEGRADED} {ndcg.stats.treatment_mean:.4f}" in markdown
    assert "| noveleval | nDCG@10 |" in markdown and "| worse |" in markdown
    assert f"<td>{ndcg.stats.delta:+.4f}</td>" in comparison._repr_html_()

    report = check(REPO / "suites" / "regression.yaml", results=[REPO / "results" / "baselines"], n_resamples=200)
    scifact = next(r for r in report.results if r.dataset == "scifact" and r.kind == "expect")
    markdown = report._repr_markdown_()
    assert markdown.startswith("**regression: passed (") and f"| {scifact.actual:.4f} |" in markdown
    assert f"<td>{scifact.actual:.4f}</td>" in report._repr_html_()

    data = load_report_data([real.folder], stats=StatsOptions(n_resamples=200))
    control = load(real.control)
    low, high = data.cis[("noveleval", SHIPPED_CONTROL, "nDCG@10")]
    markdown = data._repr_markdown_()
    assert f"{control.metrics['nDCG@10']:.4f} [{low:.3f}, {high:.3f}]" in markdown
    assert f"{ndcg.stats.delta:+.4f}" in markdown and "**2 run record(s) on 1 dataset(s)" in markdown
    assert f"{control.metrics['nDCG@10']:.4f}" in data._repr_html_()


def test_mteb_keys():
    assert [mteb_key(m, 1000) for m in ("nDCG@10", "MRR@10", "Recall@100", "MAP", "P@5", "MAP@100")] == [
        "ndcg_at_10", "mrr_at_10", "recall_at_100", "map_at_1000", "precision_at_5", "map_at_100"]


def test_plot_functions_take_plain_data(tmp_path):
    """Each plot draws what it was given: bar heights, sorted deltas and their colours, one line per series."""
    fig = plots.metric_bars({"a": {"nDCG@10": (0.5, 0.4, 0.6), "MAP": (0.3, 0.2, 0.4)},
                             "b": {"nDCG@10": (0.7, 0.6, 0.8), "MAP": (0.2, 0.1, 0.3)}}, title="t")
    heights = [round(p.get_height(), 3) for p in fig.axes[0].patches]
    assert heights == [0.5, 0.3, 0.7, 0.2]

    fig = plots.per_query_deltas({"q1": -0.2, "q2": 0.3, "q3": 0.0}, metric="nDCG@10", control="a", treatment="b")
    bars = fig.axes[0].patches
    assert [round(p.get_height(), 3) for p in bars] == [0.3, 0.0, -0.2]
    assert [p.get_facecolor()[:3] for p in bars] == [
        tuple(int(c[i:i + 2], 16) / 255 for i in (1, 3, 5)) for c in (plots.WIN, plots.TIE, plots.LOSS)]

    fig = plots.throughput_vs_batch(PROFILE_POINTS, title="t")
    lines = fig.axes[0].get_lines()
    assert len(lines) == 3 and all(list(line.get_xdata()) == [1, 4, 16, 64] for line in lines)
    assert fig.legends[0].get_title().get_text() == "engine · precision"
    assert [line.get_label() for line in lines] == ["fast · fp32", "fast · int8", "sentence-transformers · fp32"]

    fig = plots.latency_cdf({"x": [1.0, 2.0, 3.0, 4.0]}, title="t")
    ys = fig.axes[0].get_lines()[0].get_ydata()
    assert list(ys) == [0.25, 0.5, 0.75, 1.0]

    fig = plots.recall_curves({"a": ([1, 10, 100], [0.1, 0.5, 0.9])}, title="t")
    assert fig.axes[0].get_xscale() == "log"
    assert [p.suffix for p in plots.save(fig, tmp_path / "recall")] == [".png", ".svg"]


def _chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install -y chromium); "
                                             "the HTML report cannot be checked in a real browser")
def test_html_renders_in_headless_chromium(report, tmp_path):
    _, out = report
    html = (out / "report.html").read_text()
    # A probe that records, once the page has loaded, how many images decoded to real pixels.
    probe = ('<script>addEventListener("load", () => { const i = [...document.images]; '
             'document.body.dataset.images = i.length + "/" + '
             'i.filter(x => x.complete && x.naturalWidth > 0).length; });</script></body>')
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", probe))
    dom = _chromium("--virtual-time-budget=10000", "--dump-dom", page.as_uri(), tmp=tmp_path).stdout
    n = len(list((out / "plots").glob("*.png")))
    assert f'data-images="{n}/{n}"' in dom, dom[:500]

    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1280,2000", (out / "report.html").as_uri(), tmp=tmp_path)
    assert shot.is_file() and shot.stat().st_size > 10_000
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (2000, 1280)
    assert pixels[..., :3].std() > 0.05  # not a blank page
    # The top of the page is the white report background with dark text and coloured plots below.
    assert len(np.unique((pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50


def test_speed_from_the_cache_is_labelled_and_comparisons_show_their_mde(tmp_path):
    """A record whose corpus came from the embedding cache: its passages/s is marked with a footnote, never
    shown as this run's; the paired-comparison table has the MDE beside each delta (also in results.csv)."""
    from harness.analysis.compare import CACHED_NOTE
    from harness.reporting.document import build_document
    from harness.reporting.render import to_markdown
    from tests.record_fixtures import synthetic_record

    qids = [f"q{i}" for i in range(8)]
    base = {"nDCG@10": {q: 0.1 * i for i, q in enumerate(qids)}}
    new = {"nDCG@10": {q: 0.1 * i + (0.05 if i % 2 else -0.02) for i, q in enumerate(qids)}}
    synthetic_record(tmp_path / "r", encoder="base", per_query=base, passages_per_s=100)
    synthetic_record(tmp_path / "r", encoder="new", per_query=new, passages_per_s=400, corpus_from_cache=True)
    data = load_report_data([tmp_path / "r"], stats=StatsOptions(n_resamples=200))
    md = to_markdown(build_document(data, []), relative_to=tmp_path)
    assert "| toy | new | 400.0 †" in md and "| toy | base | 100.0 |" in md
    assert CACHED_NOTE in md
    [m] = data.comparison.metrics
    assert f"{m.stats.mde:.4f}" in md and "MDE" in md
    assert m.stats.mde == pytest.approx(compare_mde(base, new))


def compare_mde(base, new) -> float:
    """The t-based MDE (alpha 0.05 two-sided, power 0.8) of the per-query differences, by hand."""
    from scipy.stats import t

    d = [new["nDCG@10"][q] - base["nDCG@10"][q] for q in base["nDCG@10"]]
    n = len(d)
    mean = sum(d) / n
    sd = (sum((x - mean) ** 2 for x in d) / (n - 1)) ** 0.5
    return (t.ppf(0.975, n - 1) + t.ppf(0.8, n - 1)) * sd / n ** 0.5
