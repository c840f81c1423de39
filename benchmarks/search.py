"""Exact top-k search: harness.search.exact.exact_top_k (oneDNN scoring; with torch's own matmul,
`cpu_kernels="aten"`; and without narrowing chunks to the guessed width, "exact_full_k") vs the naive
chunked search MTEB does (full fp32 matmul per chunk, torch.topk per chunk, concatenate, final topk),
same process, same data, interleaved repeats.

    python benchmarks/search.py [--docs 200000] [--queries 1000] [--dim 768] [--k 1000] [--repeats 3]

The corpus is a random fp16 memmap in a temporary folder, as the embedding cache stores it.
Peak RSS is the process high-water mark (it includes memmap pages read), printed after each method.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness.search import exact as retrieval  # noqa: E402
from harness.search.exact import exact_top_k  # noqa: E402
from harness.vocabulary.timing import peak_rss_mb  # noqa: E402


def naive_top_k(queries: np.ndarray, corpus: np.ndarray, k: int, chunk_size: int) -> tuple[np.ndarray, np.ndarray]:
    q = torch.from_numpy(queries)
    values, indices = [], []
    for start in range(0, len(corpus), chunk_size):
        chunk = torch.from_numpy(np.asarray(corpus[start:start + chunk_size], dtype=np.float32))
        scores = q @ chunk.T
        v, i = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        values.append(v)
        indices.append(i + start)
    v, i = torch.topk(torch.cat(values, dim=1), min(k, len(corpus)), dim=1)
    return v.numpy(), torch.cat(indices, dim=1).gather(1, i).numpy()


def write_corpus(path: Path, n_docs: int, dim: int, rng: np.random.Generator) -> np.memmap:
    corpus = np.memmap(path, dtype=np.float16, mode="w+", shape=(n_docs, dim))
    for start in range(0, n_docs, 50_000):
        rows = min(50_000, n_docs - start)
        corpus[start:start + rows] = rng.standard_normal((rows, dim), dtype=np.float32)
    corpus.flush()
    return np.memmap(path, dtype=np.float16, mode="r", shape=(n_docs, dim))


def timed(methods: dict[str, Callable[[], object]], repeats: int
          ) -> tuple[dict[str, list[tuple[float, float]]], dict[str, object]]:
    """(wall, process CPU) seconds per run. The methods alternate within each repeat so a busy machine
    slows both alike; CPU time is the steadier figure when other processes share the cores."""
    for run in methods.values():
        run()  # warm-up: page cache, thread pools, allocator
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
    results: dict[str, object] = {}
    for _ in range(repeats):
        for name, run in methods.items():
            wall, cpu = time.perf_counter(), time.process_time()
            results[name] = run()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return times, results


def full_width(run: Callable[[], object]) -> object:
    """Run with every chunk taken at full k (the search before narrowing), for the same-run ratio."""
    saved = retrieval._next_width
    retrieval._next_width = lambda state, offset, k: k
    try:
        return run()
    finally:
        retrieval._next_width = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--chunk-size", type=int, default=65536)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp) / "corpus.f16", args.docs, args.dim, rng)
        queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
        print(f"corpus {args.docs:,} x {args.dim} fp16 memmap, {args.queries:,} queries, k={args.k}, "
              f"chunk {args.chunk_size:,}, torch {torch.__version__}, {torch.get_num_threads()} threads")
        print(f"peak RSS before searching: {peak_rss_mb():,.0f} MiB")

        ours_only = exact_top_k(queries, corpus, args.k, chunk_size=args.chunk_size)
        print(f"peak RSS after exact_top_k alone: {peak_rss_mb():,.0f} MiB")
        times, results = timed({
            "exact_top_k": lambda: exact_top_k(queries, corpus, args.k, chunk_size=args.chunk_size),
            "exact_aten": lambda: exact_top_k(queries, corpus, args.k, chunk_size=args.chunk_size,
                                              cpu_kernels="aten"),
            "exact_full_k": lambda: full_width(lambda: exact_top_k(queries, corpus, args.k,
                                                                   chunk_size=args.chunk_size)),
            "naive": lambda: naive_top_k(queries, corpus, args.k, args.chunk_size),
        }, args.repeats)
        print(f"peak RSS after both: {peak_rss_mb():,.0f} MiB")
        wall = {name: statistics.median(w for w, _ in runs) for name, runs in times.items()}
        cpu = {name: statistics.median(c for _, c in runs) for name, runs in times.items()}
        for name, runs in times.items():
            print(f"{name:12s} median wall {wall[name]:.2f} s, CPU {cpu[name]:.2f} s;  "
                  f"wall runs {[round(w, 2) for w, _ in runs]}")
        ours, (naive_scores, naive_indices) = results["exact_top_k"], results["naive"]
        assert (ours.indices == ours_only.indices).all()
        same = (ours.indices == naive_indices).mean()
        aten, full = results["exact_aten"], results["exact_full_k"]
        assert (full.indices == ours.indices).all() and (full.scores == ours.scores).all()
        print(f"narrowing vs full k per chunk: wall {wall['exact_full_k'] / wall['exact_top_k']:.2f}x, "
              f"CPU {cpu['exact_full_k'] / cpu['exact_top_k']:.2f}x faster (identical results)")
        print(f"oneDNN vs aten scoring: wall {wall['exact_aten'] / wall['exact_top_k']:.2f}x, "
              f"CPU {cpu['exact_aten'] / cpu['exact_top_k']:.2f}x faster; same row at same rank "
              f"{(ours.indices == aten.indices).mean():.4%}, max score difference "
              f"{np.abs(ours.scores - aten.scores).max():.2e}")
        print(f"speed ratio naive/exact_top_k: wall {wall['naive'] / wall['exact_top_k']:.2f}x, "
              f"CPU {cpu['naive'] / cpu['exact_top_k']:.2f}x  (same row at same rank: {same:.4%}; "
              f"max score difference {np.abs(ours.scores - naive_scores).max():.2e})")


if __name__ == "__main__":
    main()
