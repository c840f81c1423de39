"""Measurement primitives: latency statistics from raw values, timers, memory peaks, the environment.

torch is imported only where a function needs it, so records, comparisons and reports (which read
`hardware_key`) load without it.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator


class Latency(BaseModel):
    """Statistics derived from raw per-call latencies (milliseconds); the raw values are kept.

    Build it with ``from_values``; reading a stored one back checks that ``n`` counts the values.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    values_ms: tuple[float, ...]
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    stdev: float
    n: int

    @classmethod
    def from_values(cls, values_ms: Sequence[float]) -> Latency:
        if not len(values_ms):
            raise ValueError("no latency values")
        v = np.asarray(values_ms, dtype=np.float64)
        p50, p90, p95, p99 = np.percentile(v, [50, 90, 95, 99])
        return cls(values_ms=tuple(float(x) for x in v), mean=float(v.mean()), p50=float(p50), p90=float(p90),
                   p95=float(p95), p99=float(p99), stdev=float(v.std()), n=int(v.size))

    @model_validator(mode="after")
    def _n_counts_the_values(self) -> Latency:
        if self.n != len(self.values_ms):
            raise ValueError(f"n is {self.n} but there are {len(self.values_ms)} latency values")
        return self

    def summary(self) -> dict[str, float]:
        return self.model_dump(exclude={"values_ms"})


class Throughput(BaseModel):
    """Items per second over a timed span; None where nothing was timed (e.g. a corpus read from the cache)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    passages_per_s: float | None
    tokens_per_s: float | None

    @classmethod
    def from_seconds(cls, seconds: float, *, passages: int, tokens: int) -> Throughput:
        if seconds <= 0:
            return cls(passages_per_s=None, tokens_per_s=None)
        # no tokens: not counted (a server that does not report them), never a real corpus
        return cls(passages_per_s=passages / seconds, tokens_per_s=tokens / seconds if tokens > 0 else None)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


# Single-query calls timed per record: enough for a p99 with a finite confidence bound (368 at 97.5%), so
# that the speed gate can judge it, and tight enough there (the 990th of 1,000 calls lies between the 983rd
# and the 997th) to see a 10% slowdown.
LATENCY_CALLS = 1000


def measure_latency(
    call: Callable[[int], object],
    *,
    device: str = "cpu",
    warmup: int = 10,
    min_calls: int = 100,
    min_seconds: float = 1.0,
    max_seconds: float = 60.0,
) -> Latency:
    """Time `call(i)` after `warmup` calls until both `min_calls` and `min_seconds` are reached.

    `max_seconds` bounds the run on very slow hardware, but never below `min_calls` calls.
    """
    for i in range(warmup):
        call(i)
    synchronize(device)
    values: list[float] = []
    started = time.perf_counter()
    i = 0
    while True:
        elapsed = time.perf_counter() - started
        enough = len(values) >= min_calls and elapsed >= min_seconds
        if enough or (len(values) >= min_calls and elapsed >= max_seconds):
            break
        t0 = time.perf_counter()
        call(i)
        synchronize(device)
        values.append((time.perf_counter() - t0) * 1000.0)
        i += 1
    return Latency.from_values(values)


# How a peak RSS figure was measured: since `reset_peak_rss` cleared the kernel's high-water mark, or the
# process's peak since it started (earlier work included) where the reset is not allowed.
PeakRssMethod = Literal["hwm-reset", "process-peak"]
CLEAR_REFS = Path("/proc/self/clear_refs")
PROC_STATUS = Path("/proc/self/status")


def reset_peak_rss() -> PeakRssMethod:
    """Reset this process's resident high-water mark (Linux: "5" into /proc/self/clear_refs), so that
    `peak_rss_mb` reads the peak from now on. Returns how the next `peak_rss_mb` is to be read: "hwm-reset",
    or "process-peak" where the reset is not allowed (not Linux, a locked-down /proc)."""
    try:
        with open(CLEAR_REFS, "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        return "process-peak"
    return "hwm-reset"


def peak_rss_mb() -> float:
    """Peak resident set size (MiB) since the last `reset_peak_rss`, or since the process started."""
    peak = _proc_status_mb("VmHWM:")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB


def resident_mb() -> float | None:
    """Resident set size (MiB) now, or None where /proc/self/status is not readable."""
    return _proc_status_mb("VmRSS:")


def _proc_status_mb(field: str) -> float | None:
    try:
        with open(PROC_STATUS, encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


@dataclass(frozen=True)
class RssSpan:
    """The resident memory of one span of work (a dataset x encoder): `start` resets the high-water mark and
    notes what the process holds at that moment, so that the span's peak splits into what earlier work still
    holds (`start_mb`: loaded models and data sets, earlier records' results) and what the span added."""

    method: PeakRssMethod
    start_mb: float | None

    @classmethod
    def start(cls) -> RssSpan:
        release_free_heap()  # else pages freed by earlier work count as held, and reusing them looks free
        return cls(reset_peak_rss(), resident_mb())

    def added_mb(self, peak_mb: float) -> float | None:
        """How far `peak_mb` (`peak_rss_mb()` at the span's end) rose above the start; None where the peak may
        predate the span ("process-peak") or the start is unknown."""
        if self.method != "hwm-reset" or self.start_mb is None:
            return None
        return max(peak_mb - self.start_mb, 0.0)


def release_free_heap() -> None:
    """Hand the free pages of the C heap back to the system (glibc's `malloc_trim`; nothing elsewhere).
    Encoding allocates and frees buffers of many sizes; glibc keeps the freed pages resident, and over a long
    run they added ≈ 150 MB to the RSS (docs/scale.md §5). Costs milliseconds; call it between chunks."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    if platform.system() != "Linux":
        return None
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # musl and other C libraries have no malloc_trim
        return None


def peak_gpu_mb(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.max_memory_allocated() / 2**20


def reset_gpu_peak(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()


def cpuinfo(field: str) -> str | None:
    """The first `field` line of /proc/cpuinfo ("model name", "vendor_id", "flags"), None where there is none."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return cpuinfo("model name") or platform.processor() or platform.machine()


def library_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, object]:
    """What a speed figure depends on: hardware, threads, library versions."""
    import torch

    env: dict[str, object] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "memory_total_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "libraries": {name: library_version(name) for name in (
            "torch", "transformers", "sentence-transformers", "tokenizers", "numpy", "pytrec-eval-terrier",
            "ir-datasets")},
        "gpu": None,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = {
            "name": props.name,
            "memory_gb": round(props.total_memory / 2**30, 1),
            "count": torch.cuda.device_count(),
            "cuda": torch.version.cuda,
            "capability": f"{props.major}.{props.minor}",
            "driver": _nvidia_driver(),
        }
    return env


def _nvidia_driver() -> str | None:
    try:
        with open("/proc/driver/nvidia/version", encoding="utf-8") as handle:
            return handle.readline().strip()
    except OSError:
        return None


def hardware_key(env: dict[str, object]) -> str:
    """Two speed figures are comparable only when this key matches."""
    gpu = env.get("gpu")
    gpu_name = gpu.get("name") if isinstance(gpu, dict) else "no-gpu"
    return f"{env.get('cpu_model')}|{env.get('torch_threads')}|{gpu_name}"


def utc_now() -> str:
    """Now, in UTC, to the second (ISO 8601): the time stamp of records, stores and reports."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
