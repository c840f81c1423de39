"""Deployment runtimes as engines: `engine: onnxruntime` and `engine: openvino` (CPU).

The transformer of the loaded sentence-transformers model is exported once to ONNX with `torch.onnx` (the dynamo
exporter; dynamic batch and sequence axes) and cached under the harness cache root, keyed by the weights and config
fingerprint x the exporter version (torch, onnxscript and this module's export code), so a second run loads the
file. Everything else is the fast engine's (`FastEngine`, subclassed): tokenisation once per block, length-sorted
token-budget batches with the padding bound, and the model's **own** remaining modules (Pooling, Dense, Normalize)
run in torch on the runtime's last hidden state -- only the transformer call changes.

int8: ONNX Runtime dynamic quantisation (int8 per-channel weights, uint8 activations quantised per tensor at run
time: MatMulInteger); OpenVINO int8 weight compression with NNCF (`nncf.compress_weights`, asymmetric per-channel
int8 weights, activations stay fp32). OpenVINO also runs bf16 (`INFERENCE_PRECISION_HINT`). fp32 runs fp32 on both:
OpenVINO would otherwise pick bf16 by itself on a CPU that has it.

Threads are set explicitly (default: torch's intra-op thread count) and recorded with the runtime's version and
execution provider (`runtime_info`).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.encode.engines import FastEngine, direct_path_problem, weights_fingerprint
from harness.encode.store import cache_root
from harness.input.suite import EncoderSpec
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.precision import RUNTIME_EXTRAS
from harness.vocabulary.timing import library_version

INPUTS = ("input_ids", "attention_mask")
EXPORT_FILE = "transformer.onnx"


def _require(module: str, engine: str):
    try:
        return __import__(module)
    except ImportError:
        raise HarnessError(f"engine {engine!r} needs the package {module!r}: "
                           f"pip install 'harness[{RUNTIME_EXTRAS[engine]}]' (or pip install {module})") from None


# ------------------------------------------------------------------ export (cached)

class _LastHiddenState(torch.nn.Module):
    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.net(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state


def export_transformer(net: torch.nn.Module, path: Path) -> None:
    """Export a Hugging Face transformer (fp32, CPU) to ONNX: inputs input_ids and attention_mask (int64,
    [batch, sequence], both axes dynamic), output last_hidden_state. The dynamo exporter: the TorchScript one
    traces the attention mask path of transformers 5 into constants (wrong outputs for other shapes)."""
    _require("onnxscript", "onnxruntime")
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    example = (torch.ones(2, 16, dtype=torch.long), torch.ones(2, 16, dtype=torch.long))
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(_LastHiddenState(net).eval(), example, input_names=list(INPUTS),
                                    output_names=["last_hidden_state"], dynamo=True, external_data=True,
                                    dynamic_shapes={name: {0: batch, 1: sequence} for name in INPUTS}, verbose=False)
    assert program is not None  # the dynamo exporter always returns its program
    program.save(str(path), external_data=True)


@functools.cache
def exporter_version() -> str:
    """What the exported file depends on besides the weights: the exporter libraries and the export code."""
    code = inspect.getsource(export_transformer) + inspect.getsource(_LastHiddenState)
    parts = {"torch": torch.__version__, "onnxscript": library_version("onnxscript"),
             "onnx": library_version("onnx"), "code": hashlib.sha256(code.encode()).hexdigest()[:12]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def transformer_fingerprint(net: torch.nn.Module) -> str:
    """Weights and config of the transformer: what its export is keyed by (with `exporter_version`)."""
    hf: Any = net  # a transformers model: its .config is a PretrainedConfig (torch types attributes as Tensor | Module)
    config = hf.config.to_json_string(use_diff=False) if hasattr(net, "config") else ""
    return hashlib.sha256((weights_fingerprint(net) + config).encode()).hexdigest()[:16]


def export_dir(net: torch.nn.Module) -> Path:
    return cache_root() / "onnx" / f"{transformer_fingerprint(net)}-{exporter_version()}"


def cached(folder: Path, build: Callable[[Path], None]) -> Path:
    """`folder`, built once by `build(tmp)` into a temporary sibling and renamed into place (atomic: a crash
    leaves no half-written folder, and of two processes building at once the first rename wins)."""
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        build(tmp)
        tmp.rename(folder)
    except OSError:
        if not folder.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def onnx_export(net: torch.nn.Module) -> Path:
    """The cached ONNX export of `net` (exported now if missing)."""
    folder = cached(export_dir(net) / "fp32", lambda tmp: export_transformer(net, tmp / EXPORT_FILE))
    return folder / EXPORT_FILE


def _ort_quantize(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True, use_external_data_format=True)


def _ov_compress(source: Path, target: Path) -> None:
    import openvino as ov

    nncf = _require("nncf", "openvino")
    model = nncf.compress_weights(ov.Core().read_model(str(source)), mode=nncf.CompressWeightsMode.INT8_ASYM)
    ov.save_model(model, str(target), compress_to_fp16=False)


# ------------------------------------------------------------------ engines

class RuntimeEngine(FastEngine):
    """The fast engine with the transformer run by another runtime from its ONNX export (subclasses say which)."""

    runtime = ""  # the package

    def __init__(self, model, *, precision: str = "fp32", threads: int | None = None, **options):
        problem = direct_path_problem(model)
        if problem:
            raise HarnessError(f"engine {self.name!r} runs the transformer alone and cannot run this model "
                               f"({problem}); use engine 'fast' or 'sentence-transformers'")
        _require(self.runtime, self.name)
        self.threads_used = int(threads or torch.get_num_threads())
        super().__init__(model, precision=precision, device="cpu", threads=threads, **options)

    def _precision_copy(self, net: torch.nn.Module):
        if next(net.parameters()).device.type != "cpu":
            raise HarnessError(f"engine {self.name!r} runs on CPU; load the model on the CPU (device: cpu)")
        return self._session(net)

    def _session(self, net: torch.nn.Module):
        raise NotImplementedError

    def key_settings(self) -> dict[str, object]:
        return {"runtime": {self.runtime: library_version(self.runtime), "exporter": exporter_version()}}


class OnnxRuntimeEngine(RuntimeEngine):
    name = "onnxruntime"
    runtime = "onnxruntime"
    provider = "CPUExecutionProvider"

    def _session(self, net: torch.nn.Module):
        import onnxruntime as ort

        path = onnx_export(net)
        if self.precision == "int8":
            folder = cached(path.parent.parent / "onnxruntime-int8",
                            lambda tmp: _ort_quantize(path, tmp / EXPORT_FILE))
            path = folder / EXPORT_FILE
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads_used
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        return ort.InferenceSession(str(path), options, providers=[self.provider])

    def _hidden(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.net.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        return torch.from_numpy(hidden)

    @property
    def runtime_info(self) -> dict[str, object]:
        return {"runtime": f"onnxruntime {library_version('onnxruntime')}", "execution_provider": self.provider,
                "threads": self.threads_used}


class OpenVinoEngine(RuntimeEngine):
    name = "openvino"
    runtime = "openvino"
    INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: weights only; activations fp32

    def _session(self, net: torch.nn.Module):
        import openvino as ov

        core = ov.Core()
        if self.precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise HarnessError("engine 'openvino' with precision bf16: this CPU has no bf16 instructions (OpenVINO's "
                               "CPU capabilities: " + ", ".join(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
                               + "), so OpenVINO would run fp32 under a bf16 label; use precision fp32 or int8, or "
                               "engine fast for bf16")
        path = onnx_export(net)
        if self.precision == "int8":
            folder = cached(path.parent.parent / "openvino-int8", lambda tmp: _ov_compress(path, tmp / "model.xml"))
            path = folder / "model.xml"
        config = {"INFERENCE_NUM_THREADS": self.threads_used, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_PRECISION_HINT": self.INFERENCE_PRECISION[self.precision]}
        compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        return compiled.create_infer_request()

    def _hidden(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.net.infer({"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        return torch.from_numpy(np.array(self.net.get_output_tensor(0).data, copy=True))

    @property
    def runtime_info(self) -> dict[str, object]:
        hint = self.INFERENCE_PRECISION[self.precision]
        return {"runtime": f"openvino {library_version('openvino')}", "execution_provider": f"CPU ({hint})",
                "threads": self.threads_used}


ENGINE_CLASSES = {"onnxruntime": OnnxRuntimeEngine, "openvino": OpenVinoEngine}


def runtime_engine(model, spec: EncoderSpec, device: str) -> RuntimeEngine:
    if device != "cpu":
        raise HarnessError(f"engine {spec.engine!r} runs on CPU only here, not on {device!r}; use device: cpu")
    return ENGINE_CLASSES[spec.engine](model, precision=spec.precision, batch_size=spec.batch_size)
