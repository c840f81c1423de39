"""The fast engine (harness.encode.engines) against plain `SentenceTransformer.encode` on real text.

Equality bar (issue 3): fp32 cosine >= 0.99999 per vector, fp16/bf16 >= 0.999; int8 has a floor per kernel
path. Samples are small so the file runs in about two minutes on 2 cores; the real-text sets include SciFact abstracts
long enough to hit truncation.
"""

from __future__ import annotations

import gzip
import json
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.encode.engines import FastEngine, _prefetched, count_tokens
from harness.encode.kernels import INT8_PATH_ENV, Int8Linear, cpu_has_vnni, int8_path
from harness.encode.models import load_sentence_transformer, weights_fingerprint
from harness.encode.tokenize import TextTokenizer, TokenBlock, full_rows, pad_batch, plan_batches
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.precision import precision_problem

from conftest import DATA

FP32_BAR = 0.99999
HALF_BAR = 0.999


def read_texts(path, n: int, seed: int = 0) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    rows = [(row.get("title", "") + " " + row["text"]).strip() for row in rows]
    return random.Random(seed).sample(rows, n)


@pytest.fixture(scope="module")
def msmarco() -> list[str]:
    return read_texts(DATA / "msmarco-trecdl2019-pool" / "corpus.jsonl.gz", 200)


@pytest.fixture(scope="module")
def scifact() -> list[str]:
    return read_texts(DATA / "scifact" / "corpus.jsonl.gz", 100)


@pytest.fixture(scope="module")
def minilm():
    return load_sentence_transformer("bundled:all-MiniLM-L6-v2", device="cpu")


@pytest.fixture(scope="module")
def tiny(tiny_model):
    """A 2-layer, 32-wide random BERT (conftest): fast, for order/batching/pipeline checks."""
    return load_sentence_transformer(str(tiny_model), device="cpu")


@pytest.fixture(scope="module")
def distilbert():
    return load_sentence_transformer("random:distilbert-base", device="cpu")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def reference(model, texts: list[str]) -> np.ndarray:
    return model.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False)


def assert_equal_to_st(model, texts: list[str], **engine_options) -> None:
    engine = FastEngine(model, device="cpu", **engine_options)
    assert engine.path == "direct", engine.problem
    done = []
    result = engine.encode(texts, progress=done.append)
    expected = reference(model, texts)
    assert result.embeddings.dtype == np.float32 and result.embeddings.shape == expected.shape
    assert cosines(result.embeddings, expected).min() >= FP32_BAR
    np.testing.assert_allclose(np.linalg.norm(result.embeddings, axis=1), np.linalg.norm(expected, axis=1),
                               rtol=1e-4)
    assert (result.n_tokens, result.n_truncated) == count_tokens(model.tokenizer, texts, model.max_seq_length)
    assert sum(done) == len(texts)


# -- equality with SentenceTransformer.encode (fp32) --------------------------------------------------------

def test_minilm_msmarco_and_scifact_match(minilm, msmarco, scifact):
    assert minilm.max_seq_length == 256
    assert_equal_to_st(minilm, msmarco + scifact)


def test_small_token_budget_matches(tiny, msmarco, scifact):
    # many tiny batches, including texts longer than the budget (a batch of one each)
    # (aten kernels: oneDNN builds a kernel per new matrix shape, ~1 ms each, which would dominate a tiny model)
    assert_equal_to_st(tiny, msmarco[:60] + scifact[:20], max_tokens=100, batch_size=3, cpu_kernels="aten")


def test_aten_kernels_match(minilm, msmarco):
    assert_equal_to_st(minilm, msmarco[:24], cpu_kernels="aten")


@pytest.mark.parametrize("max_seq_length,n_msmarco,n_scifact", [(512, 32, 8), (32, 200, 100)])
def test_distilbert_matches_with_and_without_truncation(distilbert, msmarco, scifact, max_seq_length,
                                                       n_msmarco, n_scifact):
    before = distilbert.max_seq_length
    distilbert.max_seq_length = max_seq_length
    try:
        texts = msmarco[:n_msmarco] + sorted(scifact, key=len, reverse=True)[:n_scifact]
        lengths = TextTokenizer(distilbert.tokenizer)(texts).lengths
        if max_seq_length == 32:
            assert (lengths == 32).mean() > 0.5  # truncation really happens
        else:
            assert lengths.max() == 512  # a SciFact abstract reaches the 512 limit
        assert_equal_to_st(distilbert, texts)
    finally:
        distilbert.max_seq_length = before


def test_module_path_matches(msmarco):
    """A model the direct path does not accept runs through its own preprocess + forward, still equal."""
    model = load_sentence_transformer("bundled:all-MiniLM-L6-v2", device="cpu")
    model[0].processing_kwargs = {"text": {"truncation": "longest_first"}}
    engine = FastEngine(model, device="cpu")
    assert engine.path == "modules" and "processing_kwargs" in engine.problem
    texts = msmarco[:24]
    result = engine.encode(texts)
    assert cosines(result.embeddings, reference(model, texts)).min() >= FP32_BAR
    assert (result.n_tokens, result.n_truncated) == count_tokens(model.tokenizer, texts, model.max_seq_length)


# -- order, edge cases, token counts --------------------------------------------------------------------------

def test_input_order_is_preserved(tiny, msmarco, scifact):
    texts = msmarco[:60] + scifact[:20] + ["", "a", "short query"]
    random.Random(1).shuffle(texts)
    engine = FastEngine(tiny, device="cpu", max_tokens=512, block=16, cpu_kernels="aten")
    together = engine.encode(texts).embeddings
    one_by_one = np.concatenate([engine.encode([t]).embeddings for t in texts])
    assert cosines(together, one_by_one).min() >= FP32_BAR
    permutation = np.random.default_rng(0).permutation(len(texts))
    permuted = engine.encode([texts[i] for i in permutation]).embeddings
    assert cosines(permuted, together[permutation]).min() >= FP32_BAR


def test_many_texts_take_the_prefetch_path_and_match(tiny):
    texts = [f"passage number {i} " + "word " * (i % 150) for i in range(600)]
    assert_equal_to_st(tiny, texts, block=64)  # several tokenisation blocks, prefetch threads on
    assert count_tokens(tiny.tokenizer, texts, tiny.max_seq_length)[1] > 0  # some hit max_seq_length 128


def test_odd_sized_batches_get_filler_rows_and_the_same_embeddings(tiny, msmarco, scifact):
    # oneDNN caches kernels per row count: only full batches' shapes may reach the model (docs/scale.md §5)
    texts = msmarco + scifact
    engine = FastEngine(tiny, device="cpu", max_tokens=512, block=128)
    assert engine.fill_rows
    seen: list[tuple[int, int]] = []
    hook = engine.net.register_forward_pre_hook(
        lambda _, args, kwargs: seen.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    full = lambda width: full_rows(width, engine.max_tokens, engine.max_rows)  # noqa: E731
    try:
        filled = engine.encode(texts).embeddings
        assert seen and all(rows == full(width) for rows, width in seen)
        seen.clear()
        engine.fill_rows = False
        unfilled = engine.encode(texts).embeddings
        assert any(rows < full(width) for rows, width in seen)  # there were odd batches to fill
        seen.clear()
        engine.fill_rows = True
        engine.encode(texts[:3])  # a small call (latency) is not filled
        assert sum(rows for rows, _ in seen) == 3
    finally:
        hook.remove()
    np.testing.assert_allclose(filled, unfilled, rtol=0, atol=1e-6)
    assert not FastEngine(tiny, device="cpu", cpu_kernels="aten").fill_rows  # no oneDNN caches to bound


def test_empty_input(minilm, distilbert):
    for model, dim in ((minilm, 384), (distilbert, 768)):
        result = FastEngine(model, device="cpu").encode([])
        assert result.embeddings.shape == (0, dim) and result.embeddings.dtype == np.float32
        assert result.n_tokens == 0 and result.n_truncated == 0


def test_tokenizer_equals_the_tokenizer_call(minilm, msmarco, scifact):
    texts = msmarco[:50] + scifact[:20] + ["", " ", "Ünïcödé — 東京 ☃", "x" * 5000]
    for limit in (8, 128, 512):
        before = minilm.tokenizer.model_max_length
        minilm.tokenizer.model_max_length = limit
        try:
            block = TextTokenizer(minilm.tokenizer)(texts)
            expected = minilm.tokenizer(texts, truncation="longest_first")["input_ids"]
            full = minilm.tokenizer(texts)["input_ids"]
        finally:
            minilm.tokenizer.model_max_length = before
        assert [block.ids[s:e].tolist() for s, e in zip(block.offsets[:-1], block.offsets[1:])] == expected
        assert block.n_truncated == sum(len(ids) > limit for ids in full) > 0


def test_tokenizer_falls_back_when_the_backend_disagrees(minilm, monkeypatch):
    tokenizer = TextTokenizer(minilm.tokenizer)
    monkeypatch.setattr(tokenizer, "_fast", lambda texts: ([[0] for _ in texts], 0))
    minilm.tokenizer.model_max_length, before = 4, minilm.tokenizer.model_max_length
    try:
        block = tokenizer(["hello world", "another longer text"])
    finally:
        minilm.tokenizer.model_max_length = before
    assert tokenizer._backend is None
    assert block.lengths.tolist() == [4, 4] and block.n_truncated == 1


# -- precisions -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_on_cpu(minilm, distilbert, msmarco, precision):
    texts = msmarco[:3]
    for model in (minilm, distilbert):
        before = weights_fingerprint(model)
        engine = FastEngine(model, device="cpu", precision=precision)
        result = engine.encode(texts)
        assert result.embeddings.dtype == np.float32
        if precision == "bf16":  # packed oneDNN bf16 needs the CPU's bf16 instructions; aten's emulation otherwise
            packed = torch.ops.mkldnn._is_mkldnn_bf16_supported()
            assert engine.runtime_info["execution_provider"] == ("cpu-onednn" if packed else "cpu-aten")
        assert cosines(result.embeddings, reference(model, texts)).min() >= HALF_BAR
        assert weights_fingerprint(model) == before  # the caller's model is untouched (a copy is cast)
        assert next(model.parameters()).dtype == torch.float32


# int8 vs fp32 floors per kernel path: all-MiniLM-L6-v2, the 32 MS MARCO passages below, measured on an
# "Intel(R) Xeon(R) Processor" (lscpu: family 6, model 207, stepping 2; AVX-512 VNNI, AMX) with torch 2.13:
#   vnni          cosine min 0.9902, mean 0.9948  (AMD Zen 5, an earlier host: min 0.987, mean 0.995)
#   reduce-range  cosine min 0.9728, mean 0.9826  (7-bit activations: what a CPU without VNNI runs)
# The 7-bit path does exact integer math on every CPU (no int16 saturation), so its floor holds without VNNI.
INT8_FLOORS = {"vnni": (0.985, 0.993), "reduce-range": (0.965, 0.978)}  # (min, mean)


@pytest.mark.parametrize("path", sorted(INT8_FLOORS))
def test_int8_quality_per_kernel_path(minilm, msmarco, path, record_property):
    if path == "vnni" and not cpu_has_vnni():
        pytest.skip("this CPU has no VNNI: only the reduce-range path runs here")
    texts = msmarco[:32]
    before = weights_fingerprint(minilm)
    engine = FastEngine(minilm, device="cpu", precision="int8", int8_path=path)
    assert engine.int8_path == path
    assert {m.reduce_range for m in engine.net.modules() if isinstance(m, Int8Linear)} == {path == "reduce-range"}
    cos = cosines(engine.encode(texts).embeddings, reference(minilm, texts))
    record_property(f"int8_{path}_cosine_min", float(cos.min()))
    record_property(f"int8_{path}_cosine_mean", float(cos.mean()))
    print(f"int8 {path} vs fp32 (all-MiniLM-L6-v2, {len(texts)} MS MARCO passages): "
          f"cosine min {cos.min():.4f}, mean {cos.mean():.4f}")
    floor_min, floor_mean = INT8_FLOORS[path]  # regression floors; the ranking delta decides (docs/engine.md)
    assert cos.min() >= floor_min and cos.mean() >= floor_mean
    assert weights_fingerprint(minilm) == before


def test_int8_kernel_path_is_chosen_by_the_cpu_and_forced_by_the_environment(tiny, monkeypatch):
    """Default: the full 8-bit path where the CPU has VNNI. $HARNESS_INT8_PATH=reduce-range runs the path a
    CPU without VNNI runs (on any CPU), and it really computes differently."""
    texts = ["a short passage", "another, somewhat longer passage about retrieval evaluation"] * 4
    monkeypatch.delenv(INT8_PATH_ENV, raising=False)
    default = FastEngine(tiny, device="cpu", precision="int8")
    assert default.int8_path == int8_path() == ("vnni" if cpu_has_vnni() else "reduce-range")
    assert FastEngine(tiny, device="cpu", precision="fp32").int8_path is None
    monkeypatch.setenv(INT8_PATH_ENV, "reduce-range")
    forced = FastEngine(tiny, device="cpu", precision="int8")
    assert forced.int8_path == "reduce-range"
    assert all(m.reduce_range for m in forced.net.modules() if isinstance(m, Int8Linear))
    if cpu_has_vnni():
        assert not np.array_equal(default.encode(texts).embeddings, forced.encode(texts).embeddings)
    monkeypatch.setenv(INT8_PATH_ENV, "avx2")
    with pytest.raises(HarnessError, match=r"int8 kernel path 'avx2' unknown \(from HARNESS_INT8_PATH\); allowed"):
        FastEngine(tiny, device="cpu", precision="int8")


def test_int8_on_gpu_and_unknown_precision_are_refused(minilm):
    with pytest.raises(HarnessError, match="CPU only"):
        FastEngine(minilm, device="cuda", precision="int8")
    with pytest.raises(HarnessError, match="unknown precision"):
        FastEngine(minilm, device="cpu", precision="fp8")


def test_one_precision_rule_for_engines_and_suites(minilm, tmp_path):
    """`precision_problem` is the rule; the baseline engine and the suite schema both apply it."""
    from harness.encode.engines import SentenceTransformersEngine
    from harness.input.suite import EncoderSpec, parse_suite

    assert precision_problem("int8", engine="fast", device="cpu") is None
    assert precision_problem("int8", engine="fast", device="auto") is None  # decided once the device is known
    assert "CPU only" in precision_problem("int8", engine="fast", device="cuda")
    assert "needs engine 'fast'" in precision_problem("int8", engine="sentence-transformers", device="cpu")
    assert all(precision_problem(p, engine=e, device=d) is None for p in ("fp32", "fp16", "bf16")
               for e in ("fast", "sentence-transformers") for d in ("cpu", "cuda", "auto"))
    with pytest.raises(HarnessError, match="needs engine 'fast'"):
        SentenceTransformersEngine(minilm, EncoderSpec.model_construct(precision="int8", batch_size=8), "cpu")
    raw = {"name": "s", "datasets": [{"name": "d", "path": "d"}],
           "encoders": [{"name": "e", "model": "m", "precision": "int8", "engine": "sentence-transformers"}]}
    with pytest.raises(HarnessError, match=r"suite\.yaml: invalid suite:\n  encoders\.0: precision int8 needs"):
        parse_suite(raw, source=tmp_path / "suite.yaml")
    raw["encoders"][0].update(engine="fast", device="cuda")
    with pytest.raises(HarnessError, match="encoders\\.0: precision int8 .* runs on CPU only"):
        parse_suite(raw, source=tmp_path / "suite.yaml")


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_baseline_engine_casts_a_copy_and_leaves_the_callers_model_alone(tiny_model, precision):
    """The sentence-transformers baseline at fp16/bf16 runs a cast copy: the caller's weights stay
    bit-identical (and fp32) after encoding; at fp32 it runs the caller's model itself."""
    from harness.encode.engines import SentenceTransformersEngine
    from harness.input.suite import EncoderSpec

    model = load_sentence_transformer(str(tiny_model), device="cpu")
    before = weights_fingerprint(model)
    texts = ["a short passage", "another, somewhat longer passage about retrieval evaluation"]
    fp32 = SentenceTransformersEngine(model, EncoderSpec(name="st", model="m", engine="sentence-transformers"), "cpu")
    assert fp32.model is model
    spec = EncoderSpec(name="st", model="m", engine="sentence-transformers", precision=precision)
    half = SentenceTransformersEngine(model, spec, "cpu")
    result = half.encode(texts)
    assert next(half.model.parameters()).dtype == {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    assert cosines(result.embeddings, fp32.encode(texts).embeddings).min() >= 0.99
    assert weights_fingerprint(model) == before and next(model.parameters()).dtype == torch.float32


def test_the_kernel_check_leaves_the_global_rng_alone():
    """The one-time oneDNN check (run when the first CPU engine or search starts) draws no global random numbers."""
    import subprocess
    import sys

    code = ("import torch; torch.manual_seed(5); state = torch.random.get_rng_state(); "
            "from harness.encode.kernels import packed_linear_works; packed_linear_works(); "
            "print(torch.equal(state, torch.random.get_rng_state()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=DATA.parent, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_random_model_is_seeded_without_touching_the_global_rng(tmp_path, monkeypatch):
    """random:minilm-l6 has the same weights whatever the caller's RNG state, and leaves that state as it was."""
    from harness.encode.models import random_model_dir

    weights = []
    for seed in (1, 2):
        monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / f"cache-{seed}"))
        torch.manual_seed(seed)
        state = torch.random.get_rng_state()
        folder = random_model_dir("minilm-l6")
        assert torch.equal(torch.random.get_rng_state(), state)
        weights.append((folder / "model.safetensors").read_bytes())
    assert weights[0] == weights[1]


def test_baseline_engine_counts_tokens_outside_its_encode_time(minilm, msmarco):
    """The baseline re-tokenises only to count tokens; that time is reported apart so runs can exclude it."""
    from harness.encode.engines import SentenceTransformersEngine
    from harness.input.suite import EncoderSpec

    spec = EncoderSpec(name="st", model="m", engine="sentence-transformers")
    engine = SentenceTransformersEngine(minilm, spec, "cpu")
    result = engine.encode(msmarco[:40])
    assert (result.n_tokens, result.n_truncated) == count_tokens(minilm.tokenizer, msmarco[:40], 256)
    assert result.counting_s > 0
    assert FastEngine(minilm, device="cpu").encode(msmarco[:40]).counting_s == 0  # counts come with its tokens


# -- batch planning, padding, prefetch ----------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(lengths=st.lists(st.integers(min_value=0, max_value=600), max_size=300),
       max_tokens=st.integers(min_value=1, max_value=5000),
       max_rows=st.one_of(st.none(), st.integers(min_value=1, max_value=64)),
       min_fill=st.sampled_from([0.0, 0.5, 0.85, 1.0]))
def test_plan_batches_covers_every_text_once_within_budget(lengths, max_tokens, max_rows, min_fill):
    lengths = np.array(lengths, dtype=np.int64)
    batches = plan_batches(lengths, max_tokens, max_rows, min_fill)
    order = np.concatenate(batches) if batches else np.array([], dtype=np.int64)
    assert sorted(order.tolist()) == list(range(len(lengths)))
    assert np.all(np.diff(lengths[order]) <= 0)  # longest first
    for i, rows in enumerate(batches):
        assert len(rows) >= 1
        assert len(rows) == 1 or len(rows) * lengths[rows].max() <= max_tokens
        assert max_rows is None or len(rows) <= max_rows
        longest = int(lengths[rows].max())
        assert lengths[rows].min() >= min_fill * longest  # padding bounded
        if i + 1 < len(batches) and len(rows) < (max_rows or len(lengths)) and \
                (len(rows) + 1) * max(longest, 1) <= max_tokens:  # cut early: only because the next text was too short
            assert lengths[batches[i + 1][0]] < min_fill * longest


def test_plan_batches_bounds_padding():
    lengths = np.array([40, 60, 70, 80, 90, 100, 150, 220])
    as_lengths = lambda batches: [lengths[b].tolist() for b in batches]  # noqa: E731
    assert as_lengths(plan_batches(lengths, 2048)) == [[220, 150, 100, 90, 80, 70, 60, 40]]
    assert as_lengths(plan_batches(lengths, 2048, min_fill=0.75)) == [[220], [150], [100, 90, 80], [70, 60], [40]]


def test_pad_batch_right_pads_with_the_pad_id():
    rows = [[101, 7, 102], [101, 102], [101, 5, 6, 7, 102]]
    offsets = np.cumsum([0] + [len(r) for r in rows])
    block = TokenBlock(np.array(sum(rows, []), dtype=np.int64), offsets.astype(np.int64))
    ids, mask = pad_batch(block, np.array([2, 0, 1]), pad_id=9)
    assert ids.tolist() == [[101, 5, 6, 7, 102], [101, 7, 102, 9, 9], [101, 102, 9, 9, 9]]
    assert mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]
    ids, mask = pad_batch(block, np.array([0, 1]), pad_id=9, total_rows=4)  # filler: one unmasked pad token
    assert ids.tolist() == [[101, 7, 102], [101, 102, 9], [9, 9, 9], [9, 9, 9]]
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 0, 0]]


def test_prefetch_thread_passes_items_and_errors_through():
    assert list(_prefetched(iter(range(10)), depth=2)) == list(range(10))

    def failing():
        yield 1
        raise ValueError("tokenizer broke")

    with pytest.raises(ValueError, match="tokenizer broke"):
        list(_prefetched(failing(), depth=1))
    items = _prefetched(iter(range(1000)), depth=1)
    assert next(items) == 0
    items.close()  # the consumer stops early: the producer thread must end, not hang
