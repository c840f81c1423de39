"""Exact top-k retrieval by dot or cosine score, one corpus chunk at a time (bounded memory).

Ties are pinned (DESIGN.md, "Metric semantics"): among equal scores the LOWER corpus row ranks first,
at the k boundary and across chunk boundaries alike. Each chunk yields its own top-k in ascending row
order, and the running top-k (sorted by score, then row) is merged with it by a stable sort: rows of
the running state all precede the chunk's rows, so equal scores meet in ascending row order.

On CPU, where faiss imports (the `index` extra), each chunk's scores are fed block by block to FAISS's
C++ top-k heaps (`_HeapSelect`) instead of torch.topk and a merge: one pass, a compare per score, no
sort. Its heaps order equal scores by id, so rows enter as ids -2 - row (the heap keeps and lists the
lower row first, as above; -1 is its "empty" id). Results are identical to the torch path's.

Scores are fp32 on every device. fp16 chunks are widened to fp32 on the host for CPU scoring (fp16
matmul on CPU is ~5x slower) and scored through oneDNN or MKL, by CPU vendor (`_scorer`, `search_kernels`);
for CUDA they are copied in fp16 (half the transfer) and widened on the GPU, and the matmul follows torch's
global TF32 setting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from numbers import Integral
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from harness.encode.kernels import onednn_kernels, search_kernels
from harness.vocabulary.errors import HarnessError

SIMILARITIES = ("dot", "cosine")
SELECTIONS = ("auto", "faiss", "torch")
# Rows scored per heap update: the [queries x block] scores stay in cache between the matmul and the heaps
# (4,096 was 1.1-1.2x faster than 16,384 and 65,536 at 200,000 x 768, 1,000 queries, on the Intel Xeon).
HEAP_BLOCK = 4096

Chunk = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class TopK:
    scores: np.ndarray   # float32 [n_queries, k'], descending per row, k' = min(k, n_docs)
    indices: np.ndarray  # int64 [n_queries, k'], row indices into the corpus


def exact_top_k(queries: Chunk, corpus: Chunk | Iterable[Chunk], k: int, *, similarity: str = "dot",
                chunk_size: int = 65536, query_batch: int = 4096, device: str = "cpu",
                progress: Callable[[int], None] | None = None, cpu_kernels: str = "auto",
                selection: str = "auto") -> TopK:
    """The k best corpus rows for every query, scored in fp32 without building the full score matrix.

    `corpus` is a 2-D array (np.ndarray, np.memmap, torch.Tensor) read `chunk_size` rows at a time,
    or an iterable of 2-D chunks in corpus order (a streaming store); chunks larger than `chunk_size`
    are split. `progress(rows)` is called after each chunk. On CUDA, chunks given as pinned torch CPU
    tensors are copied asynchronously. `cpu_kernels`: "onednn" (packed chunks), "aten" (torch's own matmul) or
    "auto" (`search_kernels`: by CPU vendor).
    `selection`: "faiss" (CPU only; needs faiss), "torch", or "auto" (faiss on CPU where it imports).
    """
    if similarity not in SIMILARITIES:
        raise HarnessError(f"similarity {similarity!r} unknown; allowed: {', '.join(SIMILARITIES)}")
    for name, value in (("k", k), ("chunk_size", chunk_size), ("query_batch", query_batch)):
        if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
            raise HarnessError(f"{name} must be a positive integer, got {value!r}")
    dev = _device(device)
    cosine = similarity == "cosine"
    onednn = onednn_kernels(search_kernels(cpu_kernels), dev)
    heaps = _heap_selection(selection, dev)

    with torch.inference_mode():
        if getattr(queries, "ndim", None) != 2:
            raise HarnessError(f"query embeddings must be a 2-D array, got shape {tuple(np.shape(queries))}")
        q = _to_fp32(queries, dev, "query embeddings", first_row=0)
        if cosine:
            q = F.normalize(q, dim=1)  # a zero vector stays zero, so its cosine scores are 0
        batches = list(q.split(query_batch))
        states = [(q.new_empty((len(b), 0)), torch.empty((len(b), 0), dtype=torch.int64, device=dev))
                  for b in batches]
        widths = [k] * len(batches)
        heap = _HeapSelect(len(q), k) if heaps else None

        n_docs = 0
        for chunk in _chunks(corpus, chunk_size, q.shape[1]):
            c = _to_fp32(chunk, dev, "corpus embeddings", first_row=n_docs)
            if cosine:
                c = F.normalize(c, dim=1)
            if heap is not None:
                for start in range(0, len(c), HEAP_BLOCK):
                    block = c[start:start + HEAP_BLOCK]
                    scores = _scorer(block, query_batch, onednn)
                    first = 0
                    for batch in batches:
                        heap.add(scores(batch), first_query=first, first_row=n_docs + start)
                        first += len(batch)
            else:
                scores = _scorer(c, query_batch, onednn)
                for i, batch in enumerate(batches):
                    states[i], widths[i] = _add_chunk(states[i], scores(batch), k, widths[i], n_docs)
            n_docs += len(c)
            if progress is not None:
                progress(len(c))

    if n_docs == 0:
        raise HarnessError("the corpus is empty: there is nothing to retrieve")
    if heap is not None:
        return heap.result(n_docs)
    return TopK(torch.cat([s for s, _ in states]).cpu().numpy(), torch.cat([i for _, i in states]).cpu().numpy())


def _heap_selection(selection: str, dev: torch.device) -> bool:
    if selection not in SELECTIONS:
        raise HarnessError(f"selection {selection!r} unknown; allowed: {', '.join(SELECTIONS)}")
    if selection == "torch" or (selection == "auto" and dev.type != "cpu"):
        return False
    if dev.type != "cpu":
        raise HarnessError(f"selection 'faiss' runs on the CPU only, not on {dev}; use selection 'auto' or 'torch'")
    try:
        import faiss  # noqa: F401
    except ImportError:
        if selection == "faiss":
            raise HarnessError("selection 'faiss' needs faiss: pip install 'harness[index]' (faiss-cpu)") from None
        return False
    return True


class _HeapSelect:
    """FAISS's per-query top-k min-heaps over [queries x k] arrays, fed score blocks in row order."""

    def __init__(self, n_queries: int, k: int):
        import faiss

        self._faiss = faiss
        self.scores = np.empty((n_queries, k), dtype=np.float32)
        self.ids = np.empty((n_queries, k), dtype=np.int64)
        heaps = faiss.float_minheap_array_t()
        heaps.k, heaps.nh = k, n_queries
        heaps.val, heaps.ids = faiss.swig_ptr(self.scores), faiss.swig_ptr(self.ids)
        heaps.heapify()
        self.heaps = heaps

    def add(self, scores: torch.Tensor, *, first_query: int, first_row: int) -> None:
        block = np.ascontiguousarray(scores.numpy(), dtype=np.float32)
        ids = -2 - np.arange(first_row, first_row + block.shape[1], dtype=np.int64)
        ptr = self._faiss.swig_ptr
        # id stride 0: every query's heap reads the same row ids
        self.heaps.addn_with_ids(block.shape[1], ptr(block), ptr(ids), 0, first_query,  # type: ignore[call-arg]
                                 block.shape[0])

    def result(self, n_docs: int) -> TopK:
        self.heaps.reorder()
        width = min(self.scores.shape[1], n_docs)
        return TopK(self.scores[:, :width].copy(), -2 - self.ids[:, :width])


def _device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise HarnessError(f"device {device!r} is not a torch device; use 'cpu' or 'cuda'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise HarnessError(f"device {device!r} requested but CUDA is not available; use device 'cpu'")
    return dev


def _chunks(corpus: Chunk | Iterable[Chunk], chunk_size: int, dim: int) -> Iterator[Chunk]:
    """2-D slices of at most `chunk_size` rows, in corpus order, each checked for the query dimension."""
    if hasattr(corpus, "ndim"):  # one array (numpy, torch, a memmap), not an iterable of blocks
        array = cast(Chunk, corpus)
        if array.ndim != 2:
            raise HarnessError(f"corpus embeddings must be a 2-D array, got shape {tuple(array.shape)}")
        blocks: Iterable[Chunk] = [array]
    else:
        blocks = corpus
    for block in blocks:
        if not isinstance(block, torch.Tensor):
            block = np.asarray(block)
        if block.ndim != 2:
            raise HarnessError(f"corpus chunks must be 2-D arrays, got shape {tuple(block.shape)}")
        if block.shape[1] != dim:
            raise HarnessError(f"query embeddings have dimension {dim} but corpus embeddings have dimension "
                               f"{block.shape[1]}; encode queries and corpus with the same model")
        for start in range(0, block.shape[0], chunk_size):
            yield block[start:start + chunk_size]


def _to_fp32(array: Chunk, dev: torch.device, what: str, *, first_row: int) -> torch.Tensor:
    """A 2-D block as an fp32 tensor on `dev`, rejecting NaN/inf (`first_row` numbers rows in messages)."""
    if isinstance(array, torch.Tensor):
        t = array.detach()
    else:
        arr = np.asarray(array)
        host_dtype = np.float16 if dev.type == "cuda" and arr.dtype == np.float16 else np.float32
        if arr.dtype != host_dtype or not arr.flags.writeable or not arr.flags.c_contiguous:
            arr = np.array(arr, dtype=host_dtype, order="C")  # also reads a read-only memmap's pages
        t = torch.from_numpy(arr)
    t = t.to(dev, non_blocking=t.is_pinned()).float()
    # One reduction is the cheap test: a finite sum proves every value finite (an overflow is re-checked by row).
    if not torch.isfinite(t.sum()):
        bad = (~torch.isfinite(t).all(dim=1)).nonzero().flatten()
        if len(bad):
            raise HarnessError(f"{what} contain NaN or inf in {len(bad)} of rows {first_row}..{first_row + len(t) - 1} "
                               f"(first: row {first_row + int(bad[0])}); the encoder produced invalid vectors -- "
                               "check the model weights and precision")
    return t


def _scorer(chunk: torch.Tensor, rows_hint: int, onednn: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """batch -> batch @ chunk.T in fp32. With `onednn` (CPU) the chunk is packed once for all query batches
    and scored through oneDNN: faster than torch's MKL matmul on the AMD host measured (benchmarks/search.py),
    same fp32 math; identical vectors still get identical scores, so ties stay ties."""
    if onednn:
        packed = torch.ops.mkldnn._reorder_linear_weight(chunk, rows_hint)
        return lambda batch: torch.ops.mkldnn._linear_pointwise(batch, packed, None, "none", [], "")
    return lambda batch: batch @ chunk.T


def _add_chunk(state: tuple[torch.Tensor, torch.Tensor], scores: torch.Tensor, k: int, width: int, offset: int,
               ) -> tuple[tuple[torch.Tensor, torch.Tensor], int]:
    """Merge one chunk's scores into a query batch's running top-k; returns the new state and the width
    to try on the next chunk.

    Once the state holds k rows, a chunk entry can only enter by beating the row's current k-th score (on
    a tie the state's lower row wins), and after the first chunks only a few per row do. So each chunk
    first takes only its top `width` (guessed from the previous chunk: twice the most rows any query took
    from it, plus 16) and checks the guess: when some row's (width+1)-th best still beats its k-th score,
    the chunk is redone at full k. The result is exactly the full computation's; torch.topk and the
    merge's sort cost grow with the width.
    """
    n = scores.shape[1]
    full = state[0].shape[1] >= k
    if full and width < min(k, n):
        top = torch.topk(scores, width + 1, dim=1)
        if not (top.values[:, width] > state[0][:, k - 1]).any():
            merged = _merge(state, _chunk_top_k(scores, width, top), offset, k)
            return merged, _next_width(merged, offset, k)
    merged = _merge(state, _chunk_top_k(scores, k), offset, k)
    return merged, _next_width(merged, offset, k) if full else k


def _next_width(state: tuple[torch.Tensor, torch.Tensor], offset: int, k: int) -> int:
    taken = int((state[1] >= offset).sum(dim=1).max()) if state[1].numel() else k
    return min(k, 2 * taken + 16)


def _chunk_top_k(scores: torch.Tensor, k: int, top=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's top-k (ties to the lower column) as (scores, columns), columns ascending per row.
    `top`: torch.topk(scores, k + 1) when the caller has it already."""
    n = scores.shape[1]
    if k >= n:
        return scores, torch.arange(n, device=scores.device).expand(len(scores), n)
    # One extra value reveals a tie at the cut (k-th == (k+1)-th), among which torch.topk picks
    # arbitrarily; only those rows are redone.
    vals, idx = top if top is not None else torch.topk(scores, k + 1, dim=1)
    tied = vals[:, k - 1] == vals[:, k]
    idx = idx[:, :k]
    if tied.any():
        rows = tied.nonzero().flatten()
        sub, sub_cut = scores[rows], vals[rows, k - 1:k]
        above, at = sub > sub_cut, sub == sub_cut
        room = k - above.sum(dim=1, keepdim=True)
        keep = above | (at & (at.cumsum(dim=1, dtype=torch.int32) <= room))
        idx[rows] = keep.nonzero()[:, 1].view(len(rows), k)
    idx = idx.sort(dim=1).values
    return scores.gather(1, idx), idx


def _merge(state: tuple[torch.Tensor, torch.Tensor], chunk: tuple[torch.Tensor, torch.Tensor],
           offset: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    scores = torch.cat([state[0], chunk[0]], dim=1)
    rows = torch.cat([state[1], chunk[1] + offset], dim=1)
    scores, order = torch.sort(scores, dim=1, descending=True, stable=True)
    return scores[:, :k], rows.gather(1, order[:, :k])
