"""Which precisions and engines exist, and which combinations run: the one definition of each rule.

Imports nothing heavy (no torch), so the suite schema and the CLI parser can use it.
"""

from __future__ import annotations

from typing import Literal, get_args

Precision = Literal["fp32", "fp16", "bf16", "int8"]
EngineName = Literal["fast", "sentence-transformers", "onnxruntime", "openvino", "http"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
ENGINES: tuple[str, ...] = get_args(EngineName)
# Engines that run an ONNX export of the transformer in another runtime (harness.encode.runtimes), CPU only,
# each behind an optional extra; and the precisions each runs.
RUNTIME_ENGINES: dict[str, tuple[str, ...]] = {"onnxruntime": ("fp32", "int8"), "openvino": ("fp32", "bf16", "int8")}
RUNTIME_EXTRAS = {"onnxruntime": "onnx", "openvino": "openvino"}
# An embedding server behind an HTTP API (harness.encode.endpoint): it runs the model at its own precision.
ENDPOINT_ENGINE = "http"
LOCAL_ENGINES: tuple[str, ...] = tuple(e for e in ENGINES if e != ENDPOINT_ENGINE)  # engines that load the model here


def precision_problem(precision: str, *, engine: str, device: str) -> str | None:
    """Why `precision` cannot run with `engine` on `device` ("cpu", "cuda", or "auto": not known yet, so only
    the engine is checked); None when it can."""
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}"
    if engine == ENDPOINT_ENGINE:
        if precision != "fp32":
            return (f"engine 'http' sends texts to a server, which runs the model at the precision it was started "
                    f"with; precision {precision!r} cannot be asked of it: leave precision out and set it on the "
                    "server")
        return None
    if engine in RUNTIME_ENGINES:
        if precision not in RUNTIME_ENGINES[engine]:
            return (f"engine {engine!r} runs precision {', '.join(RUNTIME_ENGINES[engine])}, not {precision!r}; "
                    "use engine 'fast' for the others")
        if device not in ("cpu", "auto"):
            return f"engine {engine!r} runs on CPU only here, not on device {device!r}; use device: cpu or auto"
        return None
    if precision != "int8":
        return None
    if engine != "fast":
        return (f"precision int8 needs engine 'fast' (dynamic quantization), 'onnxruntime' or 'openvino'; "
                f"engine {engine!r} has no int8")
    if device not in ("cpu", "auto"):
        return f"precision int8 (dynamic quantization) runs on CPU only, not on device {device!r}; use fp16/bf16 there"
    return None
