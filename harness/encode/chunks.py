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

from harness.vocabulary import timing
from harness.vocabulary.validation import StrictModel

if TYPE_CHECKING:
    from harness.encode.models import Encoder


class EncodingHost(StrictModel):
    """A machine that encoded corpus chunks of a record in its run (a Ray run may use several)."""

    host: str
    hardware_key: str  # `timing.hardware_key` of the encoding process: CPU model | torch threads | GPU
    chunks: int
    rows: int


class ChunkStore(Protocol):
    """What `EncodedChunk.write` needs of a store (`store.EmbeddingStore`, `store.MemoryStore`)."""

    def write(self, index: int, embeddings: np.ndarray, *, seconds: float, tokens: int, truncated: int = 0,
              pieces: tuple[tuple[int, float], ...] = ()) -> None: ...


@dataclass(frozen=True)
class EncodedChunk:
    """One chunk of the embedding store, encoded: its embeddings and what the store keeps with them. Both
    executors make it with `encode_chunk` (the Ray workers ship its fields back to the driver)."""

    index: int
    embeddings: np.ndarray
    seconds: float  # encode time, the baseline engine's token re-counting excluded
    tokens: int
    truncated: int
    pieces: tuple[tuple[int, float], ...] = ()  # (rows, seconds) per timed piece; see `MAX_TIMED_PIECES`

    def write(self, store: ChunkStore) -> None:
        store.write(self.index, self.embeddings, seconds=self.seconds, tokens=self.tokens, truncated=self.truncated,
                    pieces=self.pieces)


def encode_chunk(encoder: Encoder, texts: Sequence[str], index: int, *,
                 progress: Callable[[int], None] | None = None) -> EncodedChunk:
    """Encode the texts of store chunk `index`, timed (device synchronised), with its token counts."""
    timing.synchronize(encoder.device)
    started = time.perf_counter()
    pieces = _PieceTimer(started, progress)
    result = encoder.encode_documents(texts, progress=pieces)
    timing.synchronize(encoder.device)
    seconds = time.perf_counter() - started - result.counting_s
    return EncodedChunk(index, result.embeddings, seconds, result.n_tokens, result.n_truncated,
                        merge_pieces(pieces.pieces, MAX_TIMED_PIECES))


# Speed gates need many timing samples even when the corpus is one store chunk: the engine reports progress
# after every batch, and the time between two reports is one sample. Batches are the engine's own unit, so timing
# them changes nothing about the work (splitting a chunk into smaller encode calls would: shorter length sorts,
# more padding, the small-input path). Long chunks merge consecutive batches to bound the record's size.
MAX_TIMED_PIECES = 64


class _PieceTimer:
    """A progress callback that also records (rows, seconds since the previous report)."""

    def __init__(self, started: float, update: Callable[[int], None] | None):
        self.last, self.update = started, update
        self.pieces: list[tuple[int, float]] = []

    def __call__(self, rows: int) -> None:
        now = time.perf_counter()
        self.pieces.append((rows, now - self.last))
        self.last = now
        if self.update:
            self.update(rows)


def merge_pieces(pieces: list[tuple[int, float]], limit: int) -> tuple[tuple[int, float], ...]:
    """At most `limit` pieces: consecutive ones summed in groups of near-equal count, order kept."""
    if len(pieces) <= limit:
        return tuple(pieces)
    bounds = np.linspace(0, len(pieces), limit + 1).round().astype(int)
    return tuple((sum(r for r, _ in pieces[a:b]), sum(t for _, t in pieces[a:b]))
                 for a, b in zip(bounds[:-1], bounds[1:]))


def this_host() -> tuple[str, str]:
    """(host name, hardware key) of this process: where a chunk encoded here was encoded."""
    env = timing.environment()
    return str(env["hostname"]), timing.hardware_key(env)
