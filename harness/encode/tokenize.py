"""Tokenise once per block and plan padding-bounded, token-budget batches (used by the fast engine)."""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

_NO_TRUNCATION = 10**9  # tokenizers use a huge model_max_length (1e30) to mean "no limit"


@dataclass(frozen=True)
class TokenBlock:
    """Token ids of a block of texts, without padding: row i is `ids[offsets[i]:offsets[i + 1]]`."""

    ids: np.ndarray  # int64, all rows concatenated
    offsets: np.ndarray  # int64 [n + 1]
    n_truncated: int = 0  # rows that were longer than the limit and cut to it

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1


def full_rows(width: int, max_tokens: int, max_rows: int | None = None) -> int:
    """The rows of a full batch padded to `width` tokens: as many as `max_tokens` allows (at least one), at most
    `max_rows`."""
    rows = max(1, max_tokens // max(width, 1))
    return rows if max_rows is None else min(rows, max_rows)


def plan_batches(lengths: np.ndarray, max_tokens: int, max_rows: int | None = None,
                 min_fill: float = 0.0) -> list[np.ndarray]:
    """Split positions into batches, longest first, each costing at most `max_tokens` padded tokens
    (rows × longest row; a single text longer than the budget gets a batch of its own) and at most
    `max_rows` rows. A text shorter than `min_fill` × its batch's longest starts a new batch, which bounds
    the compute spent on padding where lengths fall off quickly (a small call, the tail of a block).
    Every position appears in exactly one batch."""
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    ordered = lengths[order]
    batches = []
    start = 0
    while start < len(order):
        longest = max(int(ordered[start]), 1)
        rows = full_rows(longest, max_tokens, max_rows)
        if min_fill > 0:  # the first position (after this batch's first) whose text is too short
            rows = min(rows, 1 + int(np.searchsorted(-ordered[start + 1:], -min_fill * ordered[start], side="right")))
        batches.append(order[start:start + rows])
        start += rows
    return batches


def pad_batch(block: TokenBlock, rows: np.ndarray, pad_id: int, total_rows: int | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded [len(rows), longest] id and mask arrays for some rows of a token block. With `total_rows`,
    filler rows follow up to that many: one unmasked pad token each (a fully masked row can give NaN), for the
    caller to drop from the output."""
    lengths = block.lengths[rows]
    width = int(lengths.max()) if len(rows) else 0
    total = max(len(rows), total_rows or 0)
    mask = np.zeros((total, width), dtype=bool)
    mask[:len(rows)] = np.arange(width) < lengths[:, None]
    mask[len(rows):, :1] = True
    ids = np.full((total, width), pad_id, dtype=np.int64)
    # the mask fills row by row, so gather the rows' tokens back to back: position p of row r's run
    # reads block.ids[offsets[rows[r]] + p]
    before = np.cumsum(lengths) - lengths
    gather = np.arange(int(lengths.sum())) + np.repeat(block.offsets[rows] - before, lengths)
    ids[:len(rows)][mask[:len(rows)]] = block.ids[gather]
    return ids, mask.astype(np.int64)


class TextTokenizer:
    """Tokenises like the sentence-transformers Transformer module (truncation 'longest_first' at the
    tokenizer's `model_max_length`, special tokens added), without padding.

    Uses the Rust backend's `encode_batch_fast` when its output is verified identical to the tokenizer call
    on the first texts it sees; otherwise calls the tokenizer itself.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._backend: Any = None  # a copy of the Rust `tokenizers.Tokenizer` (untyped); None: call the tokenizer
        self._checked = False
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if getattr(tokenizer, "is_fast", False) and backend is not None:
            self._backend = copy.deepcopy(backend)
            self._backend.no_padding()
        self._truncation: int | None = -1  # forces configuration on first use

    @property
    def max_length(self) -> int | None:
        limit = self.tokenizer.model_max_length
        return None if limit is None or limit >= _NO_TRUNCATION else int(limit)

    def _configure_backend(self) -> None:
        limit = self.max_length
        if limit == self._truncation:
            return
        if limit is None:
            self._backend.no_truncation()
        else:
            self._backend.enable_truncation(limit, strategy="longest_first",
                                            direction=getattr(self.tokenizer, "truncation_side", "right"))
        self._truncation = limit

    def _reference(self, texts: list[str]) -> tuple[list[list[int]], int]:
        limit = self.max_length
        rows = [list(ids) for ids in self.tokenizer(texts, truncation="longest_first", padding=False,
                                                     max_length=limit)["input_ids"]]
        if limit is None:  # nothing was cut
            return rows, 0
        at_limit = [text for text, ids in zip(texts, rows) if len(ids) == limit]
        full = (self.tokenizer(at_limit, truncation=False, padding=False, verbose=False)["input_ids"]
                if at_limit else [])
        return rows, sum(len(ids) > limit for ids in full)

    def _fast(self, texts: list[str]) -> tuple[list[list[int]], int]:
        self._configure_backend()
        encode = getattr(self._backend, "encode_batch_fast", None) or self._backend.encode_batch
        encodings = encode(texts, add_special_tokens=True)
        return [e.ids for e in encodings], sum(1 for e in encodings if e.overflowing)

    def token_ids(self, texts: list[str]) -> tuple[list[list[int]], int]:
        """Token ids per text and the number of texts truncated."""
        if self._backend is not None and not self._checked:
            probe = texts[:16]
            self._checked = True
            if probe and self._fast(probe)[0] != self._reference(probe)[0]:
                self._backend = None
        if self._backend is None:
            return self._reference(texts)
        return self._fast(texts)

    def __call__(self, texts: list[str]) -> TokenBlock:
        rows, n_truncated = self.token_ids(texts)
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(offsets[-1]))
        return TokenBlock(ids, offsets, n_truncated)
