"""`harness profile` on CPU with both engines and the real bundled MiniLM."""

import pytest

from harness.errors import HarnessError
from harness.profile import forward_flops, profile_model, synthetic_texts


def test_synthetic_texts_have_exact_token_counts():
    from harness.encoders import load_sentence_transformer

    model = load_sentence_transformer("bundled:all-MiniLM-L6-v2", device="cpu")
    texts = synthetic_texts(20, 77)
    lengths = {len(ids) for ids in model.tokenizer(texts)["input_ids"]}
    assert lengths == {77}
    assert synthetic_texts(20, 77) == texts  # seeded
    with pytest.raises(HarnessError):
        synthetic_texts(1, 2)


def test_forward_flops_matches_hand_count(tiny_model):
    """tiny BERT: 2 layers, hidden 32, intermediate 64 (+ pooler 32x32)."""
    from harness.encoders import load_sentence_transformer

    model = load_sentence_transformer(str(tiny_model), device="cpu")
    per_layer = 4 * (32 * 32 + 32) + (32 * 64 + 64) + (64 * 32 + 32) + 2 * 2 * 32
    params = 2 * per_layer + 32 * 32 + 32
    n = 10
    assert forward_flops(model, [n]) == 2 * params * n + 4 * 2 * 32 * n * n


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
        assert p.calls >= 3 and len(p.latency_values_ms) == p.calls
        assert p.mean_tokens == 20 and p.tokens_per_s == pytest.approx(20 * p.passages_per_s, rel=1e-9)
        mean_ms = sum(p.latency_values_ms) / p.calls
        assert p.passages_per_s == pytest.approx(p.batch_size / mean_ms * 1000, rel=1e-9)
        assert p.latency_ms["p50"] <= p.latency_ms["p99"] and p.mfu is None  # no MFU on CPU
