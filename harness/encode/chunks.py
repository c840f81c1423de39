"""Encode one chunk of the embedding store: the unit of work of both executors (`runner` in this process, the
Ray workers of `harness.encode.distributed`), so that both time it, count its tokens and truncated texts,
and write it the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from harness.profile import timing

if TYPE_CHECKING:
    from harness.encode.models import Encoder


class ChunkStore(Protocol):
    """What `EncodedChunk.write` needs of a store (`cache.EmbeddingStore`, `runner.MemoryStore`)."""

    def write(self, index: int, embeddings: np.ndarray, *, seconds: float, tokens: int, truncated: int = 0,
              ) -> None: ...


@dataclass(frozen=True)
class EncodedChunk:
    """One chunk of the embedding store, encoded: its embeddings and what the store keeps with them. Both
    executors make it with `encode_chunk` (the Ray workers ship its fields back to the driver)."""

    index: int
    embeddings: np.ndarray
    seconds: float  # encode time, the baseline engine's token re-counting excluded
    tokens: int
    truncated: int

    def write(self, store: ChunkStore) -> None:
        store.write(self.index, self.embeddings, seconds=self.seconds, tokens=self.tokens, truncated=self.truncated)


def encode_chunk(encoder: Encoder, texts: Sequence[str], index: int, *,
                 progress: Callable[[int], None] | None = None) -> EncodedChunk:
    """Encode the texts of store chunk `index`, timed (device synchronised), with its token counts."""
    timing.synchronize(encoder.device)
    started = time.perf_counter()
    result = encoder.encode_documents(texts, progress=progress)
    timing.synchronize(encoder.device)
    seconds = time.perf_counter() - started - result.counting_s
    return EncodedChunk(index, result.embeddings, seconds, result.n_tokens, result.n_truncated)


def this_host() -> tuple[str, str]:
    """(host name, hardware key) of this process: where a chunk encoded here was encoded."""
    env = timing.environment()
    return str(env["hostname"]), timing.hardware_key(env)
