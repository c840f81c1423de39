"""`harness profile` on CPU with both engines and the real bundled MiniLM."""

from pathlib import Path

import numpy as np
import pytest

from harness.pipeline.sweep import forward_flops, profile_model, synthetic_texts
from harness.vocabulary.errors import HarnessError


def test_synthetic_texts_have_exact_token_counts():
    from harness.encode.models import load_sentence_transformer

    model = load_sentence_transformer("bundled:all-MiniLM-L6-v2", device="cpu")
    texts = synthetic_texts(20, 77)
    lengths = {len(ids) for ids in model.tokenizer(texts)["input_ids"]}
    assert lengths == {77}
    assert synthetic_texts(20, 77) == texts  # seeded
    with pytest.raises(HarnessError):
        synthetic_texts(1, 2)


def test_forward_flops_matches_hand_count(tiny_model):
    """tiny BERT: 2 layers, hidden 32, intermediate 64 (+ pooler 32x32)."""
    from harness.encode.models import load_sentence_transformer

    model = load_sentence_transformer(str(tiny_model), device="cpu")
    per_layer = 4 * (32 * 32 + 32) + (32 * 64 + 64) + (64 * 32 + 32) + 2 * 2 * 32
    params = 2 * per_layer + 32 * 32 + 32
    n = 10
    assert forward_flops(model, [n]) == 2 * params * n + 4 * 2 * 32 * n * n
    assert forward_flops(model, np.array([n, 3])) == forward_flops(model, [n]) + forward_flops(model, [3])


def test_profile_sweep_points(tiny_model):
    texts = synthetic_texts(16, 20)
    info, points = profile_model(str(tiny_model), texts, engines=("sentence-transformers", "fast"),
                                 precisions=("fp32", "int8"), batch_sizes=(1, 8), devices=("cpu",),
                                 warmup=1, min_calls=3, min_seconds=0.05)
    # int8 only for the fast engine: 2 engines x 2 batch sizes + 1 engine x 2 batch sizes
    assert len(points) == 6 and len(info["fingerprint"]) == 16
    assert {(p.engine, p.precision) for p in points} == {
        ("sentence-transformers", "fp32"), ("fast", "fp32"), ("fast", "int8")}
    for p in points:
        assert p.calls >= 3 and len(p.latency.values_ms) == p.calls == p.latency.n
        rate = p.throughput.passages_per_s
        assert p.mean_tokens == 20 and p.throughput.tokens_per_s == pytest.approx(20 * rate, rel=1e-9)
        assert rate == pytest.approx(p.batch_size / p.latency.mean * 1000, rel=1e-9)
        assert p.latency.p50 <= p.latency.p99 and p.mfu is None  # no MFU on CPU


def test_sweep_leaves_the_weights_alone_and_reports_skipped_points(tiny_model, monkeypatch):
    """Half-precision baseline points run on a cast copy: the model the sweep loaded keeps its exact fp32
    weights for the points after them (it was once converted in place and back, rounded through bf16)."""
    import torch

    from harness.encode.models import load_sentence_transformer, weights_fingerprint
    from harness.pipeline import sweep

    model = load_sentence_transformer(str(tiny_model), device="cpu")
    before = weights_fingerprint(model)
    monkeypatch.setattr(sweep, "load_sentence_transformer", lambda name, device: model)  # keep a handle on it
    skipped = []
    _, points = sweep.profile_model(str(tiny_model), synthetic_texts(8, 12), engines=("sentence-transformers",),
                                    precisions=("bf16", "fp16", "int8", "fp32"), batch_sizes=(4,),
                                    devices=("cpu",), warmup=0, min_calls=1, min_seconds=0, on_skip=skipped.append)
    assert [p.precision for p in points] == ["bf16", "fp16", "fp32"]
    assert skipped == ["precision int8 needs engine 'fast' (dynamic quantization), 'onnxruntime' or 'openvino'; "
                       "engine 'sentence-transformers' has no int8"]
    assert weights_fingerprint(model) == before and next(model.parameters()).dtype == torch.float32


def test_cli_profile_writes_a_record_both_engines(tiny_model, tmp_path, capsys):
    """`harness profile` on real passages (NovelEval) with both engines: one record, every point timed."""
    from harness.cli import main
    from harness.scoring.records import DataTexts, ProfileRecord, find_records, load

    data = Path(__file__).resolve().parents[1] / "data" / "noveleval"
    code = main(["profile", "--model", str(tiny_model), "--data", str(data), "--n", "24", "--batch-size", "1,8",
                 "--precision", "fp32,int8", "--engine", "fast,sentence-transformers", "--device", "cpu",
                 "--warmup", "1", "--min-calls", "3", "--min-seconds", "0.05", "--output", str(tmp_path)])
    out = capsys.readouterr()
    assert code == 0, out.err
    [path] = find_records([tmp_path])
    record = load(path)
    assert isinstance(record, ProfileRecord) and record.name == "noveleval"
    assert record.texts == DataTexts(path=str(data), n=24)
    combos = {(p.engine, p.precision, p.batch_size) for p in record.points}
    assert combos == {(e, pr, b) for e, pr in [("fast", "fp32"), ("fast", "int8"), ("sentence-transformers", "fp32")]
                      for b in (1, 8)}
    assert record.environment.cpu_model and record.environment.libraries["torch"]
    for point in record.points:
        assert point.calls >= 3 and len(point.latency.values_ms) == point.calls
        assert point.max_seq_length == 128 and point.mean_tokens > 3
    assert "passages/s" in out.out and str(path) in out.err


def test_cli_profile_synthetic_length_sweep(tiny_model, tmp_path):
    from harness.cli import main
    from harness.scoring.records import SyntheticTexts, find_records, load

    assert main(["profile", "-m", str(tiny_model), "--synthetic-tokens", "40", "--max-seq-length", "16,64",
                 "--engine", "fast", "--batch-size", "4", "--n", "8", "--warmup", "0", "--min-calls", "2",
                 "--min-seconds", "0", "--output", str(tmp_path)]) == 0
    record = load(find_records([tmp_path])[0])
    assert record.name == "synthetic-40" and record.texts == SyntheticTexts(tokens=40, n=8)
    by_length = {p.max_seq_length: p.mean_tokens for p in record.points}
    assert by_length == {16: 16, 64: 40}  # truncated to the limit, else the exact synthetic length


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0,8"], "batch sizes must be positive integers"),
    (["--batch-size", "x"], "batch sizes must be positive integers"),
    (["--precision", "fp8"], "unknown precision 'fp8'; choose from fp32, fp16, bf16, int8"),
    (["--engine", "onnx"], "unknown engine 'onnx'"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--data", "/nonexistent/corpus"], "/nonexistent/corpus: not found"),
    (["--precision", "int8", "--engine", "sentence-transformers"],
     "nothing to profile: precision int8 needs engine 'fast'"),
    (["--max-seconds", "0"], "--max-seconds > 0"),
    (["--max-seq-length", "64,100000"], "--max-seq-length 100000: model"),
])
def test_cli_profile_bad_values(tiny_model, tmp_path, capsys, args, message):
    from harness.cli import main

    code = main(["profile", "-m", str(tiny_model), "--min-calls", "1", "--min-seconds", "0", "--n", "2",
                 "--output", str(tmp_path / "out"), *args])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written


def test_cli_profile_unloadable_model(tmp_path, capsys):
    from harness.cli import main

    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    assert main(["profile", "-m", str(not_a_model), "--output", str(tmp_path / "out")]) == 2
    assert str(not_a_model) in capsys.readouterr().err and not (tmp_path / "out").exists()
