"""harness sweep: grid parsing and validation, expansion into encoder variants, and a real sweep on NovelEval
through the CLI with its report's quality x speed frontier."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from harness.cli import main
from harness.input.grid import expand_suite, parse_grid_args, validate_grid
from harness.input.suite import load_suite
from harness.reporting import load_report_data
from harness.scoring.records import load
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.statistics import StatsOptions
from tests.conftest import DATA, write_suite

SUITE = f"""
name: sweep-test
datasets:
  - name: noveleval
    path: {DATA / "noveleval"}
encoders:
  - name: minilm
    model: bundled:all-MiniLM-L6-v2
    device: cpu
    expect:
      noveleval:
        nDCG@10: {{value: 0.5, tolerance: 0.5}}
metrics: [nDCG@10, MRR@10]
top_k: 100
"""


def test_grid_args_parse_in_key_order_without_repeats():
    grid = parse_grid_args(["max_seq_length=256,128,256", "engine=fast,onnxruntime", "precision=fp32, int8"])
    assert grid == {"engine": ["fast", "onnxruntime"], "precision": ["fp32", "int8"], "max_seq_length": [256, 128]}


@pytest.mark.parametrize("items, message", [
    (["batch_size=8"], "unknown grid key(s) 'batch_size'; allowed: engine, precision, max_seq_length"),
    (["engine=fast,onnx"], "grid engine: unknown value 'onnx'; allowed: fast, sentence-transformers, onnxruntime"),
    (["precision=fp8"], "grid precision: unknown value 'fp8'; allowed: fp32, fp16, bf16, int8"),
    (["max_seq_length=128,long"], "give positive integers"),
    (["max_seq_length=0"], "max_seq_length: 0 is not a positive integer"),
    (["engine"], "write KEY=V1,V2"),
    (["engine=fast", "engine=onnxruntime"], "names 'engine' twice"),
])
def test_bad_grid_args_are_refused_with_the_fix(items, message):
    with pytest.raises(HarnessError) as info:
        parse_grid_args(items)
    assert message in str(info.value)


def test_empty_grid_is_refused():
    with pytest.raises(ValueError, match="the grid is empty"):
        validate_grid({})


def test_expansion_names_variants_and_skips_combinations_that_cannot_run(tmp_path, caplog):
    suite = load_suite(write_suite(tmp_path / "suite.yaml", SUITE))
    grid = parse_grid_args(["engine=fast,sentence-transformers", "precision=fp32,int8", "max_seq_length=128,256"])
    with caplog.at_level(logging.WARNING, logger="harness.input.grid"):
        swept, skipped = expand_suite(suite, grid)
    names = [e.name for e in swept.encoders]
    assert names == ["minilm[fast,fp32,128]", "minilm[fast,fp32,256]", "minilm[fast,int8,128]",
                     "minilm[fast,int8,256]", "minilm[sentence-transformers,fp32,128]",
                     "minilm[sentence-transformers,fp32,256]"]
    assert len(skipped) == 2 and all("needs engine 'fast'" in s for s in skipped)
    assert skipped[0].startswith("minilm[sentence-transformers,int8,128]: skipped: precision int8")
    assert "minilm[sentence-transformers,int8,256]: skipped" in caplog.text
    v = swept.encoders[2]
    assert (v.engine, v.precision, v.max_seq_length, v.device, v.model) == ("fast", "int8", 128, "cpu",
                                                                            "bundled:all-MiniLM-L6-v2")
    assert v.expect is None and v.baseline is None  # stated for the encoder's own settings, not each point
    assert swept.grid is None and swept.datasets == suite.datasets


def test_a_grid_where_nothing_runs_is_an_error(tmp_path):
    suite = load_suite(write_suite(tmp_path / "suite.yaml", SUITE.replace("device: cpu", "device: cuda")))
    with pytest.raises(HarnessError, match="no grid point can run: .*runs on CPU only"):
        expand_suite(suite, {"precision": ["int8"]})


def test_suite_grid_block_is_validated(tmp_path):
    good = load_suite(write_suite(tmp_path / "good.yaml", SUITE + "grid:\n  precision: [fp32, int8]\n"
                                                                  "  engine: [fast]\n"))
    assert good.grid == {"engine": ["fast"], "precision": ["fp32", "int8"]}
    with pytest.raises(HarnessError, match=r"bad.yaml: invalid suite:\n  grid: unknown grid key\(s\) 'device'"):
        load_suite(write_suite(tmp_path / "bad.yaml", SUITE + "grid:\n  device: [cpu]\n"))
    with pytest.raises(HarnessError, match="grid engine: unknown value 'tensorrt'"):
        load_suite(write_suite(tmp_path / "bad2.yaml", SUITE + "grid:\n  engine: [tensorrt]\n"))


def test_sweep_without_a_grid_is_a_usage_error(tmp_path, capsys):
    assert main(["sweep", str(write_suite(tmp_path / "suite.yaml", SUITE)), "-o", str(tmp_path / "r")]) == 2
    assert "no grid: give --grid KEY=V1,V2" in capsys.readouterr().err


def test_sweep_runs_each_point_and_the_report_draws_the_frontier(tmp_path, capsys):
    """fp32 vs int8 at 128 tokens, from the suite's grid block (the int8 point also through --grid's override)."""
    suite = write_suite(tmp_path / "suite.yaml", SUITE + "grid:\n  precision: [fp32, int8]\n  max_seq_length: [128]\n")
    out = tmp_path / "results"
    assert main(["sweep", str(suite), "-o", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "sweep: 2 variant(s) x 1 dataset(s)" in captured.err
    records = {r.encoder.name: r for r in (load(d) for d in sorted(out.iterdir()))}
    assert set(records) == {"minilm[fp32,128]", "minilm[int8,128]"}
    for name, precision in (("minilm[fp32,128]", "fp32"), ("minilm[int8,128]", "int8")):
        settings = records[name].encoder.settings
        assert (settings.precision, settings.max_seq_length, settings.engine) == (precision, 128, "fast")
        assert records[name].performance.throughput.passages_per_s > 0
        assert 0.3 < records[name].metrics["nDCG@10"] < 0.9
    assert "minilm[int8,128]" in captured.out  # the results table

    # a second sweep of the same point reuses the cached embeddings: no encoding
    again = tmp_path / "again"
    assert main(["sweep", str(suite), "--grid", "precision=int8", "max_seq_length=128", "-o", str(again),
                 "--no-progress"]) == 0
    (record_dir,) = list(again.iterdir())
    rerun = load(record_dir)
    assert rerun.encoder.name == "minilm[int8,128]" and rerun.performance.corpus_from_cache
    assert rerun.metrics["nDCG@10"] == pytest.approx(records["minilm[int8,128]"].metrics["nDCG@10"], abs=1e-9)

    report = tmp_path / "report"
    assert main(["report", str(out), "-o", str(report), "--format", "md"]) == 0
    md = (report / "report.md").read_text(encoding="utf-8")
    assert "## Quality × speed frontier" in md
    assert ("| frontier point (slowest first) | passages/s | nDCG@10 | Δ nDCG@10 vs previous | p (randomization) |"
            in md)
    assert "A record is dominated only when another record" in md
    frontier_section = md.split("## Quality × speed frontier")[1]
    assert "minilm[fp32,128]" in frontier_section and "minilm[int8,128]" in frontier_section
    plots = sorted(p.name for p in (report / "plots").glob("frontier--*"))
    assert plots == ["frontier--noveleval--nDCG-10.png", "frontier--noveleval--nDCG-10.svg"]
    assert "plots/frontier--noveleval--nDCG-10.png" in md

    # a record timed on other hardware is left out of the frontier (speeds not comparable), with a note
    moved = tmp_path / "with-other-hardware"
    shutil.copytree(out, moved)
    (int8_dir,) = [d for d in moved.iterdir() if "int8" in d.name]
    raw = json.loads((int8_dir / "record.json").read_text(encoding="utf-8"))
    raw["environment"]["cpu_model"] = "Another CPU"
    (int8_dir / "record.json").write_text(json.dumps(raw), encoding="utf-8")
    data = load_report_data([moved], stats=StatsOptions(n_resamples=1000))
    assert "noveleval" not in data.frontiers  # one comparable record left
    assert any("frontier left out minilm[int8,128]: timed on other hardware" in n for n in data.notes)
    data = load_report_data([out], stats=StatsOptions(n_resamples=1000))
    assert [p.label for p in data.frontiers["noveleval"].points] == ["minilm[fp32,128]", "minilm[int8,128]"]
