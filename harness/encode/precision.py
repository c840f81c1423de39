"""Which precisions and engines exist, and which combinations run: the one definition of each rule.

Imports nothing heavy (no torch), so the suite schema and the CLI parser can use it.
"""

from __future__ import annotations

from typing import Literal, get_args

Precision = Literal["fp32", "fp16", "bf16", "int8"]
EngineName = Literal["fast", "sentence-transformers"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
ENGINES: tuple[str, ...] = get_args(EngineName)


def precision_problem(precision: str, *, engine: str, device: str) -> str | None:
    """Why `precision` cannot run with `engine` on `device` ("cpu", "cuda", or "auto": not known yet, so only
    the engine is checked); None when it can."""
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}"
    if precision != "int8":
        return None
    if engine != "fast":
        return f"precision int8 needs engine 'fast' (dynamic quantization); engine {engine!r} has no int8"
    if device not in ("cpu", "auto"):
        return f"precision int8 (dynamic quantization) runs on CPU only, not on device {device!r}; use fp16/bf16 there"
    return None
