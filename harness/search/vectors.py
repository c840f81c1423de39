"""The embedding store's vectors as an index reads them (`VectorSource`): float32, unit length for cosine, a chunk at a
time, or the rows asked for. Shared by the index cache (`search/index.py`) and its backends."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Store(Protocol):
    """What an index reads of an embedding store (`EmbeddingStore`, `MemoryStore`)."""

    @property
    def key(self) -> str | None: ...

    @property
    def n_rows(self) -> int: ...

    @property
    def chunk_rows(self) -> int: ...

    def chunks(self) -> Iterator[np.ndarray]: ...

    def read(self, index: int) -> np.ndarray: ...


@dataclass(frozen=True)
class VectorSource:
    """The store's vectors as an index build reads them: float32, unit length for cosine, one chunk at a time."""

    store: Store
    dim: int
    cosine: bool

    def chunks(self) -> Iterator[np.ndarray]:
        for chunk in self.store.chunks():
            yield self.prepared(chunk)

    def sample(self, n: int, *, seed: int = 0) -> np.ndarray:
        """`n` distinct rows drawn uniformly (seeded), in row order."""
        rows = np.sort(np.random.default_rng(seed).choice(self.store.n_rows, size=n, replace=False))
        return self.rows(rows)

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of the given corpus rows, in that order."""
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        chunk_of = rows // self.store.chunk_rows
        for chunk in np.unique(chunk_of):
            where = np.flatnonzero(chunk_of == chunk)
            block = self.store.read(int(chunk))
            out[where] = block[rows[where] - int(chunk) * self.store.chunk_rows]
        return self.prepared(out)

    def prepared(self, block: np.ndarray) -> np.ndarray:
        block = np.ascontiguousarray(block, dtype=np.float32)
        if self.cosine:
            norms = np.linalg.norm(block, axis=1, keepdims=True)
            block = block / np.where(norms == 0, 1, norms)
        return block
