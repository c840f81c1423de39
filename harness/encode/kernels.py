"""CPU kernels shared by encoding and exact search: oneDNN linear with packed weights, dynamic int8 linear,
and the switch that decides whether oneDNN is used.

torch's CPU nn.Linear calls MKL's sgemm, which on AMD CPUs takes a slow generic path (docs/engine.md: 74 GFLOP/s
per core there); oneDNN's JIT kernels use AVX-512 on any vendor. Packing each weight once into oneDNN's blocked
layout and calling oneDNN directly gives the same fp32 results 2-3x faster per matmul.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import torch

from harness.vocabulary.errors import HarnessError
from harness.vocabulary.timing import cpuinfo

CPU_KERNELS = ("onednn", "aten")  # "onednn": packed weights; "aten": torch's own matmul (MKL on x86)
PACK_ROWS_HINT = 2048  # oneDNN picks the packed layout for about this many rows; any row count works
INT8_FULL_RANGE, INT8_REDUCED_RANGE = "vnni", "reduce-range"  # the two int8 kernel paths (`int8_path`)
INT8_PATH_ENV = "HARNESS_INT8_PATH"  # auto | vnni | reduce-range


class PackedLinear(torch.nn.Module):
    """`nn.Linear` through oneDNN with the weight pre-packed once (CPU; fp32 or bf16, same math)."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach()
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, PACK_ROWS_HINT)
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, onednn"


class Int8Linear(torch.nn.Module):
    """Dynamic int8 `nn.Linear` (CPU): weights quantised per output channel once, activations per tensor
    at run time (fbgemm). `path` (default: `int8_path()`) picks the activation range: the full 8 bits
    ("vnni": needs VNNI, else int16 accumulation saturates) or the 7 bits torch uses by default
    ("reduce-range": any CPU, slightly less precise)."""

    def __init__(self, linear: torch.nn.Linear, *, path: str | None = None):
        super().__init__()
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        self.in_features, self.out_features = linear.in_features, linear.out_features
        with warnings.catch_warnings():  # torch.ao dynamic quantization is deprecated in favour of torchao
            warnings.simplefilter("ignore")
            quantized = quantize_dynamic(torch.nn.Sequential(linear),
                                         {torch.nn.Linear: per_channel_dynamic_qconfig})[0]
        self.packed = quantized._packed_params._packed_params
        self.path = int8_path(path)
        self.reduce_range = self.path == INT8_REDUCED_RANGE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x, self.packed, self.reduce_range)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 {self.path}"


def convert_linears(net: torch.nn.Module, kind: Callable[[torch.nn.Linear], torch.nn.Module]) -> torch.nn.Module:
    """Replace every `nn.Linear` of `net` (in place; pass a copy) by `kind(linear)`."""
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, name, kind(child))
    return net


_PACKED_OK: bool | None = None


def onednn_kernels(cpu_kernels: str, device: torch.device) -> bool:
    """Whether matrix products run through oneDNN with packed weights: asked for (`cpu_kernels`, "onednn" or
    "aten"), on a CPU, and working in this torch build. Shared by the encoder and exact search."""
    if cpu_kernels not in CPU_KERNELS:
        raise HarnessError(f"unknown cpu_kernels {cpu_kernels!r}; allowed: {', '.join(CPU_KERNELS)}")
    return device.type == "cpu" and cpu_kernels == "onednn" and packed_linear_works()


def packed_linear_works() -> bool:
    """Whether this torch build has oneDNN's packed linear and it agrees with nn.Linear (checked once)."""
    global _PACKED_OK
    if _PACKED_OK is None:
        try:
            generator = torch.Generator().manual_seed(0)
            with torch.random.fork_rng(devices=[]):  # nn.Linear's initialisation draws from the global RNG
                linear = torch.nn.Linear(64, 48)
            x = torch.randn(2, 5, 64, generator=generator)
            with torch.inference_mode():
                _PACKED_OK = bool(torch.allclose(PackedLinear(linear)(x), linear(x), rtol=1e-4, atol=1e-5))
        except (RuntimeError, AttributeError):
            _PACKED_OK = False
    return _PACKED_OK


def cpu_vendor() -> str:
    """/proc/cpuinfo's vendor_id ("GenuineIntel", "AuthenticAMD", ...); "" where it cannot be read."""
    return cpuinfo("vendor_id") or ""


def search_kernels(cpu_kernels: str) -> str:
    """The matmul exact search scores with. "auto": torch's MKL ("aten") on Intel CPUs, where it scored 1.15-1.2x
    faster than oneDNN's packed blocks (benchmarks/RESULTS.md, Intel Xeon, 2026-12-03); oneDNN elsewhere, 1.4-1.5x
    faster than MKL on the AMD EPYC (benchmarks/search.py)."""
    if cpu_kernels not in ("auto", *CPU_KERNELS):
        raise HarnessError(f"unknown cpu_kernels {cpu_kernels!r}; allowed: auto, {', '.join(CPU_KERNELS)}")
    if cpu_kernels != "auto":
        return cpu_kernels
    return "aten" if cpu_vendor() == "GenuineIntel" else "onednn"


def cpu_has_vnni() -> bool:
    """Whether the CPU has AVX-512 VNNI or AVX-VNNI (int8 dot products without int16 saturation)."""
    flags = (cpuinfo("flags") or "").split()
    return "avx512_vnni" in flags or "avx_vnni" in flags


def int8_path(requested: str | None = None) -> str:
    """The int8 kernel path to run: "vnni" (full 8-bit activations) where the CPU has VNNI, else
    "reduce-range" (7-bit activations). `requested` (default: $HARNESS_INT8_PATH, else "auto") forces one:
    "reduce-range" runs anywhere (how a CPU without VNNI computes, testable on one with it); "vnni" is
    refused on a CPU without VNNI, where it would saturate silently."""
    choice = (requested or os.environ.get(INT8_PATH_ENV) or "auto").strip().lower()
    if choice not in ("auto", INT8_FULL_RANGE, INT8_REDUCED_RANGE):
        source = "the caller" if requested else INT8_PATH_ENV
        raise HarnessError(f"int8 kernel path {choice!r} unknown (from {source}); "
                           f"allowed: auto, {INT8_FULL_RANGE}, {INT8_REDUCED_RANGE}")
    if choice == "auto":
        return INT8_FULL_RANGE if cpu_has_vnni() else INT8_REDUCED_RANGE
    if choice == INT8_FULL_RANGE and not cpu_has_vnni():
        raise HarnessError(f"int8 kernel path {INT8_FULL_RANGE!r} needs a CPU with AVX-512 VNNI or AVX-VNNI, which "
                           f"this one lacks; use auto or {INT8_REDUCED_RANGE}")
    return choice
