"""The names of the choices a run takes (where corpus chunks are encoded, the dtype the embedding store keeps)."""

from __future__ import annotations

from typing import Literal, get_args

# "auto": fp16 from FP16_STORE_FROM_ROWS corpus rows (half the disk and I/O), else fp32.
StoreDtype = Literal["auto", "fp32", "fp16"]
STORE_DTYPE_CHOICES: tuple[StoreDtype, ...] = get_args(StoreDtype)
# Where corpus chunks are encoded: this process, or Ray Data workers.
Executor = Literal["local", "ray"]
EXECUTORS: tuple[Executor, ...] = get_args(Executor)
DEFAULT_CHUNK_ROWS = 16384  # corpus rows per embedding-store chunk
