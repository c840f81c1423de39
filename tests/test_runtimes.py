"""The deployment-runtime engines (harness.encode.runtimes): ONNX Runtime and OpenVINO against plain
`SentenceTransformer.encode` on real text, the export cache, int8 floors, records and `harness run`/`profile`.

Skipped where the extras are not installed (`pip install -e '.[onnx,openvino]'`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytest.importorskip("openvino")

from test_engine import FP32_BAR, cosines, read_texts, reference  # noqa: E402

from harness.encode import runtimes  # noqa: E402
from harness.encode.engines import count_tokens  # noqa: E402
from harness.encode.models import load_sentence_transformer  # noqa: E402
from harness.vocabulary.errors import HarnessError  # noqa: E402
from harness.vocabulary.precision import precision_problem  # noqa: E402

from conftest import DATA, write_suite  # noqa: E402

ENGINES = {"onnxruntime": runtimes.OnnxRuntimeEngine, "openvino": runtimes.OpenVinoEngine}
# int8 floors, cosine to the fp32 embeddings (MiniLM at 256 tokens), measured 2026-11-27 on a 2-core Intel Xeon
# (lscpu "Intel(R) Xeon(R) Processor", family 6 model 207: AVX-512 VNNI, AMX) on 200 DL19-pool passages: ONNX
# Runtime dynamic quantisation (per-channel int8 weights, uint8 activations) min 0.9845 / mean 0.9941; OpenVINO
# NNCF int8 weight compression (activations fp32) min 0.9992 / mean 0.9995; OpenVINO bf16 min 0.99997.
INT8_FLOORS = {"onnxruntime": (0.975, 0.990), "openvino": (0.998, 0.9990)}
BF16_FLOOR = 0.9999


@pytest.fixture(scope="module")
def minilm():
    model = load_sentence_transformer("bundled:all-MiniLM-L6-v2", device="cpu")
    model.max_seq_length = 256
    return model


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return (read_texts(DATA / "msmarco-trecdl2019-pool" / "corpus.jsonl.gz", 120)
            + read_texts(DATA / "scifact" / "corpus.jsonl.gz", 40))


@pytest.fixture(scope="module")
def st_reference(minilm, texts) -> np.ndarray:
    return reference(minilm, texts)


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_fp32_equals_sentence_transformers(engine, minilm, texts, st_reference):
    """Per-vector cosine >= 0.99999 and equal norms on real passages and long (truncated) abstracts, the same
    token counts as a tokenizer pass, and the same vectors for a query encoded alone (batch 1)."""
    runner = ENGINES[engine](minilm, precision="fp32")
    result = runner.encode(texts)
    assert result.embeddings.shape == st_reference.shape and result.embeddings.dtype == np.float32
    assert cosines(result.embeddings, st_reference).min() >= FP32_BAR
    np.testing.assert_allclose(np.linalg.norm(result.embeddings, axis=1), np.linalg.norm(st_reference, axis=1),
                               atol=1e-4)
    assert (result.n_tokens, result.n_truncated) == count_tokens(minilm.tokenizer, texts, 256)
    assert result.n_truncated > 0  # the abstracts reach the limit: truncation is exercised
    alone = runner.encode(texts[:1]).embeddings
    assert cosines(alone, st_reference[:1]).min() >= FP32_BAR


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_int8_cosine_floor(engine, minilm, texts, st_reference):
    cos = cosines(ENGINES[engine](minilm, precision="int8").encode(texts).embeddings, st_reference)
    low, mean = INT8_FLOORS[engine]
    assert cos.min() >= low and cos.mean() >= mean, (cos.min(), cos.mean())
    assert cos.mean() < 0.99999  # really quantised, not the fp32 file again


def test_openvino_bf16_is_close_and_not_fp32(minilm, texts, st_reference):
    """Where the CPU has bf16, OpenVINO runs it (close, yet not the fp32 numbers); where it has none, OpenVINO
    would run fp32 under the bf16 label, so the engine refuses."""
    import openvino as ov

    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        with pytest.raises(HarnessError, match="this CPU has no bf16 instructions .* would run fp32 under a bf16 "
                                               "label; use precision fp32 or int8"):
            runtimes.OpenVinoEngine(minilm, precision="bf16").encode(texts)
        return
    cos = cosines(runtimes.OpenVinoEngine(minilm, precision="bf16").encode(texts).embeddings, st_reference)
    assert BF16_FLOOR <= cos.min() and cos.mean() < 0.9999999


def test_export_is_cached_per_weights_and_exporter(minilm, tiny_model, monkeypatch, tmp_path):
    """A second engine loads the cached export (the exporter is not called again); other weights get their own."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    calls = []
    export = runtimes.export_transformer
    monkeypatch.setattr(runtimes, "export_transformer", lambda net, path: (calls.append(path), export(net, path)))
    tiny = load_sentence_transformer(str(tiny_model), device="cpu")
    first = runtimes.OnnxRuntimeEngine(tiny).encode(["a first text", "and a second"]).embeddings
    assert len(calls) == 1
    again = runtimes.OnnxRuntimeEngine(tiny).encode(["a first text", "and a second"]).embeddings
    runtimes.OpenVinoEngine(tiny)
    assert len(calls) == 1 and np.array_equal(first, again)
    folders = list((tmp_path / "onnx").iterdir())
    assert [f.name for f in folders] == [f"{runtimes.transformer_fingerprint(tiny[0].auto_model)}-"
                                         f"{runtimes.exporter_version()}"]
    assert not [p for p in (tmp_path / "onnx").rglob(".*")]  # no temporary folder left behind
    runtimes.OnnxRuntimeEngine(minilm)
    assert len(calls) == 2 and len(list((tmp_path / "onnx").iterdir())) == 2


def test_records_say_what_ran(minilm):
    info = runtimes.OnnxRuntimeEngine(minilm).runtime_info
    import onnxruntime

    assert info == {"runtime": f"onnxruntime {onnxruntime.__version__}", "execution_provider": "CPUExecutionProvider",
                    "threads": __import__("torch").get_num_threads()}
    engine = runtimes.OpenVinoEngine(minilm, precision="fp32", threads=1)  # bf16 runs only where the CPU has it
    assert engine.runtime_info["threads"] == 1 and engine.runtime_info["execution_provider"] == "CPU (f32)"
    assert engine.net.get_compiled_model().get_property("INFERENCE_NUM_THREADS") == 1
    key = runtimes.OnnxRuntimeEngine(minilm).key_settings()
    assert key["runtime"]["onnxruntime"] == onnxruntime.__version__ and key["runtime"]["exporter"]


def test_precision_and_device_rules():
    assert precision_problem("int8", engine="onnxruntime", device="cpu") is None
    assert precision_problem("bf16", engine="openvino", device="auto") is None
    assert "runs precision fp32, int8, not 'bf16'" in precision_problem("bf16", engine="onnxruntime", device="cpu")
    assert "CPU only" in precision_problem("fp32", engine="openvino", device="cuda")
    assert "has no int8" in precision_problem("int8", engine="sentence-transformers", device="cpu")


def test_missing_runtime_names_the_extra(minilm, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # what an environment without the package raises
    with pytest.raises(HarnessError, match=r"engine 'openvino' needs the package 'openvino': pip install "
                                           r"'harness\[openvino\]'"):
        runtimes.OpenVinoEngine(minilm)


def test_harness_run_and_profile(tmp_path, capsys):
    """`harness run` with both runtimes on NovelEval: the shipped fast-engine record's metrics (fp32 equal), and
    engine, runtime, provider and threads in each record; then `harness profile` over the runtimes."""
    from harness.cli import main
    from harness.scoring.records import find_records, load

    suite = write_suite(tmp_path / "suite.yaml", f"""
name: runtimes
datasets:
  - name: noveleval
    path: {DATA / "noveleval"}
encoders:
  - name: ort
    model: bundled:all-MiniLM-L6-v2
    engine: onnxruntime
  - name: ov
    model: bundled:all-MiniLM-L6-v2
    engine: openvino
metrics: [nDCG@10, MRR@10]
top_k: 100
""")
    assert main(["run", str(suite), "--output", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    shipped = json.loads(next(Path(DATA.parent / "results" / "baselines").glob(
        "regression--noveleval--all-MiniLM-L6-v2--*/record.json")).read_text())
    records = {r.encoder.name: r for r in map(load, find_records([tmp_path / "out"]))}
    assert set(records) == {"ort", "ov"}
    for name, record in records.items():
        settings = record.encoder.settings
        assert settings.engine == {"ort": "onnxruntime", "ov": "openvino"}[name] and settings.device == "cpu"
        assert settings.runtime.startswith(settings.engine + " ") and settings.threads >= 1
        assert settings.execution_provider == {"ort": "CPUExecutionProvider", "ov": "CPU (f32)"}[name]
        for metric in ("nDCG@10", "MRR@10"):
            assert record.metrics[metric] == pytest.approx(shipped["metrics"][metric], abs=1e-4)

    capsys.readouterr()
    code = main(["profile", "--model", "bundled:all-MiniLM-L6-v2", "--data", str(DATA / "noveleval"), "--n", "8",
                 "--batch-size", "1,4", "--precision", "fp32,int8", "--engine", "onnxruntime,openvino",
                 "--warmup", "1", "--min-calls", "2", "--min-seconds", "0", "--output", str(tmp_path / "profile")])
    assert code == 0, capsys.readouterr().err
    [path] = find_records([tmp_path / "profile"])
    points = load(path).points
    assert {(p.engine, p.precision, p.batch_size) for p in points} == {
        (e, pr, b) for e in ("onnxruntime", "openvino") for pr in ("fp32", "int8") for b in (1, 4)}
    assert all(p.device == "cpu" and p.runtime.startswith(p.engine) and p.threads for p in points)


def test_embedding_cache_key_holds_the_runtime_version(tiny_model, monkeypatch):
    """Another onnxruntime version (or exporter) re-keys the corpus embeddings; the fast engine's key has neither."""
    from harness.encode.models import Encoder
    from harness.encode.store import store_key
    from harness.input.suite import EncoderSpec

    def key(engine: str) -> tuple[dict, str]:
        encoder = Encoder(EncoderSpec(name="e", model=str(tiny_model), device="cpu", engine=engine))
        return encoder.embedding_settings.engine_key, store_key(encoder.store_parts("data"))

    settings, before = key("onnxruntime")
    assert settings["runtime"] == {"onnxruntime": __import__("onnxruntime").__version__,
                                   "exporter": runtimes.exporter_version()}
    assert "runtime" not in key("fast")[0]
    real = runtimes.library_version
    monkeypatch.setattr(runtimes, "library_version", lambda name: "0.0.1" if name == "onnxruntime" else real(name))
    assert key("onnxruntime")[1] != before
