"""Where exact search's time goes on this CPU: each part of harness.search.exact.exact_top_k timed alone, in one
process, on the clustered data of benchmarks/index.py, against the whole search and FAISS's IndexFlatIP.

    python benchmarks/exact_parts.py [--rows 1000000] [--queries 1000] [--dims 384 768] [--repeats 3]
    OPENBLAS_CORETYPE=SkylakeX python benchmarks/exact_parts.py   # FAISS with OpenBLAS's AVX-512 kernel

Parts (medians of interleaved rounds):
* pack + score: each HEAP_BLOCK-row corpus block packed for oneDNN and scored against all queries (what the
  search does now);
* queries packed once: the same scores as [block x queries] tiles, the queries packed a single time (no per-block
  packing; its tiles are transposed, which FAISS's heaps cannot read);
* heaps, no insertion: FAISS's heaps fed blocks that all score below every query's k-th (the compare per score);
* heaps, real blocks: the same heaps fed the real score blocks, held in memory (compare + insertions);
* the whole search, and IndexFlatIP.search.

Each ratio is a part's time over the whole search's in the same round.
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# isort: off
# torch before faiss: each brings its own OpenMP runtime (benchmarks/index.py)
import torch
import faiss
# isort: on

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from index import clustered, cpu_model, openblas_corename  # noqa: E402

from harness.search.exact import HEAP_BLOCK, _HeapSelect, _scorer, exact_top_k  # noqa: E402

QUERY_BATCH = inspect.signature(exact_top_k).parameters["query_batch"].default


def pack_and_score(queries: torch.Tensor, corpus: torch.Tensor) -> None:
    """The search's own scoring: each block packed by `_scorer` with the search's default query batch as its hint."""
    for start in range(0, len(corpus), HEAP_BLOCK):
        _scorer(corpus[start:start + HEAP_BLOCK], QUERY_BATCH, True)(queries)


def queries_packed_once(queries: torch.Tensor, corpus: torch.Tensor) -> None:
    packed = torch.ops.mkldnn._reorder_linear_weight(queries, HEAP_BLOCK)
    for start in range(0, len(corpus), HEAP_BLOCK):
        torch.ops.mkldnn._linear_pointwise(corpus[start:start + HEAP_BLOCK], packed, None, "none", [], "")


def heaps(blocks: list[torch.Tensor], k: int, first: torch.Tensor | None = None) -> None:
    """Feed `blocks` to FAISS's heaps in row order; `first` (when given) is fed first, to set each query's k-th."""
    select = _HeapSelect(len(blocks[0]), k)
    row = 0
    for block in ([first] if first is not None else []) + blocks:
        select.add(block, first_query=0, first_row=row)
        row += block.shape[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dims", type=int, nargs="+", default=[384, 768])
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    faiss.omp_set_num_threads(2)
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}, faiss {faiss.__version__} "
          f"(OpenBLAS core {openblas_corename()}); {args.rows:,} rows, {args.queries:,} queries, "
          f"blocks of {HEAP_BLOCK:,}, median of {args.repeats} interleaved rounds", flush=True)
    for dim in args.dims:
        corpus, queries = clustered(args.rows, args.queries, dim)
        c, q = torch.from_numpy(corpus), torch.from_numpy(queries)
        index = faiss.IndexFlatIP(dim)
        index.add(corpus)
        with torch.inference_mode():
            blocks = [(q @ c[s:s + HEAP_BLOCK].T).contiguous() for s in range(0, args.rows, HEAP_BLOCK)]
            below = blocks[0] - (blocks[0].max() - blocks[0].min() + 1)  # every score below every query's k-th
        for k in args.ks:
            print_parts(dim, k, time_parts(q, c, index, blocks, below, k, args.repeats))


def time_parts(q: torch.Tensor, c: torch.Tensor, index: faiss.IndexFlatIP, blocks: list[torch.Tensor],
               below: torch.Tensor, k: int, repeats: int) -> dict[str, list[float]]:
    parts: dict[str, Callable[[], object]] = {
        "whole search": lambda: exact_top_k(q, c, k),
        "pack + score": lambda: pack_and_score(q, c),
        "queries packed once": lambda: queries_packed_once(q, c),
        "heaps, no insertion": lambda: heaps([below] * (len(blocks) - 1), k, first=blocks[0]),
        "heaps, real blocks": lambda: heaps(blocks, k),
        "faiss IndexFlatIP": lambda: index.search(q.numpy(), k),
    }
    times: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(repeats):
        for name, run in parts.items():
            with torch.inference_mode():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    return times


def print_parts(dim: int, k: int, times: dict[str, list[float]]) -> None:
    whole = statistics.median(times["whole search"])
    print(f"\nd={dim} k={k}\n{'part':<22} {'s':>6} {'/ whole':>8}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<22} {median:6.2f} {median / whole:8.2f}", flush=True)


if __name__ == "__main__":
    main()
