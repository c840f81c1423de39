"""Approximate indexes (issue 27): our exact top-k vs FAISS IndexFlatIP, then FAISS HNSW and IVF-PQ, on synthetic
clustered vectors, in one process run (ratios are meaningful only within one run; the CPU varies between machines).

    python benchmarks/index.py [--rows 1000000] [--queries 1000] [--repeats 3] [--json PATH]
                               [--skip-exact] [--skip-ann]

Data (seeded, the same for every method): 2,000 centers, standard normal in d dimensions normalised to unit length;
each row is a uniformly drawn center plus Gaussian noise of per-coordinate sigma 0.75/sqrt(d) (noise norm about 0.75:
a row's cosine to its center is about 0.8, two rows of one cluster about 0.64, rows of different clusters 0 +- 0.04),
normalised to unit length, then multiplied by a factor drawn uniformly in [0.8, 1.2] (the reference model's
embeddings are unnormalised and scored by dot product). Queries are drawn the same way from the same centers.
numpy PCG64 generators: centers `default_rng([0, d, 0])`, corpus chunk i of 100,000 rows `default_rng([0, d, 1, i])`
(so the first N rows are the same for every --rows), queries `default_rng([0, d, 2])`.

1. Exact: `harness.search.exact.exact_top_k(similarity="dot")` vs `faiss.IndexFlatIP.search` (the index's `add`, a
   copy of the corpus, is timed apart), d = 384 and 768, k = 10 and 1,000, one warm-up on 50 queries, then --repeats
   interleaved rounds (ours, faiss, ours, faiss, ...), medians. Both use 2 threads. Peak RSS of each call above the
   resident size before it (the high-water mark is reset before each call). Top-k sets are compared per query on the
   rows scoring more than 1e-4 above the k-th score. Where the CPU has avx512f, both are measured once more,
   interleaved the same way, in a child process with OPENBLAS_CORETYPE=SkylakeX (its own data, built with the same
   generator); the SkylakeX ratio is FAISS's time over ours in that child, so each ratio comes from one process run.
2. ANN at --rows x 768 (inner product): HNSW M=32, efConstruction=100, efSearch 16..256; IVF-PQ nlist ~ 4*sqrt(N)
   (4,096 at 1M), PQ m = 48 and 96 x 8 bits, trained on 100,000 sampled rows, nprobe 1..64. The coarse quantizer is
   trained once (FAISS k-means on the sample) and given to both PQ indexes; their "train" time is that k-means plus
   their own PQ training (polysemous training off, as the factory's "np" suffix does: search does not use it). All
   indexes are filled 100,000 rows per `add`. If the first HNSW chunk predicts a build over 12 minutes, HNSW is
   built on the first rows only (at most 300,000, about 8 minutes) and its build time is extrapolated. Bytes/vector:
   the length of the index's serialized form (`faiss.serialize_index`; over 1 GiB `faiss.write_index` to a temporary
   file, the same bytes) / rows. Queries/s: the median of --repeats batched searches of all queries (k = 10);
   latency: 200 single-query calls; recall@10 against our exact top-10.
3. MS MARCO (8,841,823 x 768) on paper, from the measured bytes/vector and build rates: an estimate.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

# isort: off
# torch before faiss: each brings its own OpenMP runtime, and with faiss's loaded first torch's matmul ran
# 1.45x slower (400,000 x 384, k 10, Intel Xeon, 2026-12-03; benchmarks/RESULTS.md)
import numpy as np
import torch
import faiss
# isort: on

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness.search.exact import exact_top_k  # noqa: E402
from harness.vocabulary.timing import peak_rss_mb, reset_peak_rss, resident_mb  # noqa: E402

SEED = 0
CENTERS = 2000
SIGMA = 0.75
SCALE = (0.8, 1.2)
CHUNK = 100_000
THREADS = 2
WARMUP_QUERIES = 50
TIE_TOLERANCE = 1e-4
EXACT_DIMS = (384, 768)
EXACT_KS = (10, 1000)
ANN_DIM = 768
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 100
EF_SEARCH = (16, 32, 64, 128, 256)
PQ_MS = (48, 96)
NPROBES = (1, 4, 16, 64)
TRAIN_ROWS = 100_000
SINGLE_CALLS = 200
HNSW_FULL_LIMIT_S = 720.0  # build HNSW on all rows only if the first chunk predicts at most this
HNSW_BUDGET_S = 480.0      # otherwise: as many 100,000-row chunks as this allows at the first chunk's rate
HNSW_MAX_CAPPED_ROWS = 300_000
MSMARCO_ROWS = 8_841_823
MSMARCO_DIM = 768
RAM_GB = 24.0
GENERATOR = (f"{CENTERS} unit centers (normal, normalised); row = center + N(0, ({SIGMA}/sqrt(d))^2 I), normalised, "
             f"x U[{SCALE[0]}, {SCALE[1]}]; numpy default_rng([{SEED}, d, 0]) centers, [{SEED}, d, 1, chunk] corpus "
             f"chunks of {CHUNK:,}, [{SEED}, d, 2] queries")


# ---------------------------------------------------------------- data and machine

def _fill(out: np.ndarray, rng: np.random.Generator, centers: np.ndarray) -> None:
    labels = rng.integers(0, len(centers), len(out))
    rng.standard_normal(dtype=np.float32, out=out)
    out *= np.float32(SIGMA / math.sqrt(out.shape[1]))
    out += centers[labels]
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    out *= rng.uniform(*SCALE, (len(out), 1)).astype(np.float32)


def clustered(rows: int, n_queries: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    centers = np.random.default_rng([SEED, dim, 0]).standard_normal((CENTERS, dim), dtype=np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    corpus = np.empty((rows, dim), dtype=np.float32)
    for i, start in enumerate(range(0, rows, CHUNK)):
        _fill(corpus[start:start + CHUNK], np.random.default_rng([SEED, dim, 1, i]), centers)
    queries = np.empty((n_queries, dim), dtype=np.float32)
    _fill(queries, np.random.default_rng([SEED, dim, 2]), centers)
    return corpus, queries


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def openblas_corename() -> str | None:
    """The core type of the OpenBLAS that FAISS loaded (found in /proc/self/maps), None if not found."""
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as handle:
            path = next(line.split()[-1] for line in handle if "libopenblas" in line and line.split()[-1][0] == "/")
        lib = ctypes.CDLL(path)
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    except (OSError, StopIteration, AttributeError):
        return None


def mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("MemTotal:")) / 2**20
    except (OSError, StopIteration, ValueError):
        return None


def timed_call(run: Callable[[], object]) -> tuple[object, float, float, float]:
    """(result, wall s, process CPU s, peak RSS MiB above the resident size before the call)."""
    reset_peak_rss()
    before = resident_mb() or 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return result, wall, cpu, peak_rss_mb() - before


def index_bytes(index: faiss.Index) -> int:
    if index.ntotal * index.d * 4 < 2**30:
        return len(faiss.serialize_index(index))
    with tempfile.TemporaryDirectory() as tmp:  # write_index writes the bytes serialize_index returns
        path = os.path.join(tmp, "index.faiss")
        faiss.write_index(index, path)
        return os.path.getsize(path)


# ---------------------------------------------------------------- 1. exact

def same_sets(ours_scores: np.ndarray, ours_rows: np.ndarray, their_scores: np.ndarray, their_rows: np.ndarray
              ) -> float:
    """Share of queries whose rows scoring more than TIE_TOLERANCE above their k-th score are the same set."""
    same = 0
    for s1, i1, s2, i2 in zip(ours_scores, ours_rows, their_scores, their_rows):
        same += set(i1[s1 > s1[-1] + TIE_TOLERANCE].tolist()) == set(i2[s2 > s2[-1] + TIE_TOLERANCE].tolist())
    return same / len(ours_scores)


def faiss_flat(corpus: np.ndarray) -> tuple[faiss.IndexFlatIP, float, float]:
    index = faiss.IndexFlatIP(corpus.shape[1])
    _, wall, _, rss = timed_call(lambda: index.add(corpus))
    return index, wall, rss


def skylakex_child(args: argparse.Namespace, dim: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child-faiss", str(dim), "--rows", str(args.rows),
               "--queries", str(args.queries), "--repeats", str(args.repeats)]
    env = dict(os.environ, OPENBLAS_CORETYPE="SkylakeX")
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def child_faiss(args: argparse.Namespace) -> None:
    """--child-faiss DIM: FAISS IndexFlatIP and ours, interleaved in this process (run under another OpenBLAS core;
    torch's matmul does not use OpenBLAS), as one JSON line: each ratio is measured in one run."""
    corpus, queries = clustered(args.rows, args.queries, args.child_faiss)
    index, _, _ = faiss_flat(corpus)
    walls: dict[str, list[float]] = {}
    ours: dict[str, list[float]] = {}
    for k in EXACT_KS:
        _, runs = interleaved_rounds(index, corpus, queries, k, args.repeats)
        ours[str(k)], walls[str(k)] = [r[0] for r in runs["ours"]], [r[0] for r in runs["faiss"]]
    print(json.dumps({"openblas_core": openblas_corename(), "wall_s": walls, "ours_wall_s": ours}))


def interleaved_rounds(index: faiss.IndexFlatIP, corpus: np.ndarray, queries: np.ndarray, k: int, repeats: int
                       ) -> tuple[dict[str, object], dict[str, list[tuple[float, float, float]]]]:
    """Ours and FAISS's exact top-k, one warm-up each on WARMUP_QUERIES, then `repeats` interleaved rounds:
    the last result of each, and each call's (wall s, CPU s, peak RSS MiB above the resident size)."""
    methods = {"ours": lambda: exact_top_k(queries, corpus, k, similarity="dot"),
               "faiss": lambda: index.search(queries, k)}
    exact_top_k(queries[:WARMUP_QUERIES], corpus, k, similarity="dot")
    index.search(queries[:WARMUP_QUERIES], k)
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in methods}
    results: dict[str, object] = {}
    for _ in range(repeats):
        for name, run in methods.items():
            results[name], wall, cpu, rss = timed_call(run)
            runs[name].append((wall, cpu, rss))
    return results, runs


def exact_one_dim(args: argparse.Namespace, corpus: np.ndarray, queries: np.ndarray, skx: dict | None
                  ) -> tuple[list[dict], np.ndarray]:
    """The rows of the exact table for one dimension, and our top-10 (the ground truth for recall)."""
    dim = corpus.shape[1]
    index, add_s, add_rss = faiss_flat(corpus)
    rows_out, truth10 = [], None
    for k in EXACT_KS:
        results, runs = interleaved_rounds(index, corpus, queries, k, args.repeats)
        walls = {name: statistics.median(r[0] for r in rs) for name, rs in runs.items()}
        cpus = {name: statistics.median(r[1] for r in rs) for name, rs in runs.items()}
        ours = results["ours"]
        faiss_scores, faiss_rows = results["faiss"]
        row = {
            "dim": dim, "k": k, "rows": len(corpus), "queries": len(queries),
            "ours_wall_s": walls["ours"], "faiss_wall_s": walls["faiss"],
            "ours_cpu_s": cpus["ours"], "faiss_cpu_s": cpus["faiss"],
            "ratio_wall": walls["faiss"] / walls["ours"], "ratio_cpu": cpus["faiss"] / cpus["ours"],
            "ours_runs_wall_s": [r[0] for r in runs["ours"]], "faiss_runs_wall_s": [r[0] for r in runs["faiss"]],
            "ours_peak_rss_above_mib": max(r[2] for r in runs["ours"]),
            "faiss_search_peak_rss_above_mib": max(r[2] for r in runs["faiss"]),
            "faiss_add_s": add_s, "faiss_add_rss_above_mib": add_rss,
            "same_topk_share": same_sets(ours.scores, ours.indices, faiss_scores, faiss_rows),
            "max_score_diff_same_rank": float(np.abs(ours.scores - faiss_scores).max()),
            "skylakex": "not applicable (no avx512f)",
        }
        if skx is not None:
            skx_wall = statistics.median(skx["wall_s"][str(k)])
            skx_ours = statistics.median(skx["ours_wall_s"][str(k)])
            row["skylakex"] = {"openblas_core": skx["openblas_core"], "faiss_wall_s": skx_wall,
                               "runs_wall_s": skx["wall_s"][str(k)], "ours_wall_s": skx_ours,
                               "ours_runs_wall_s": skx["ours_wall_s"][str(k)], "ratio_wall": skx_wall / skx_ours}
        rows_out.append(row)
        print(f"d={dim} k={k}: ours {walls['ours']:.2f} s, faiss {walls['faiss']:.2f} s, "
              f"ratio {row['ratio_wall']:.2f} (same top-k {row['same_topk_share']:.1%})", flush=True)
        if skx is not None:
            print(f"d={dim} k={k}, child with SkylakeX: ours {row['skylakex']['ours_wall_s']:.2f} s, faiss "
                  f"{row['skylakex']['faiss_wall_s']:.2f} s, ratio {row['skylakex']['ratio_wall']:.2f}", flush=True)
        if k == 10:
            truth10 = ours.indices
    return rows_out, truth10


def exact_section(args: argparse.Namespace, avx512: bool) -> tuple[list[dict], dict]:
    rows_out: list[dict] = []
    keep: dict = {}
    for dim in EXACT_DIMS:
        skx = None
        if avx512:  # before this process holds the data: the child builds its own copy
            print(f"d={dim}: FAISS in a child process with OPENBLAS_CORETYPE=SkylakeX ...", flush=True)
            skx = skylakex_child(args, dim)
        t = time.perf_counter()
        corpus, queries = clustered(args.rows, args.queries, dim)
        print(f"d={dim}: generated {args.rows:,} rows + {args.queries:,} queries in {time.perf_counter() - t:.1f} s",
              flush=True)
        rows, truth10 = exact_one_dim(args, corpus, queries, skx)
        rows_out += rows
        if dim == ANN_DIM:
            keep = {"corpus": corpus, "queries": queries, "truth10": truth10}
        del corpus, queries
    return rows_out, keep


# ---------------------------------------------------------------- 2. ANN

def search_figures(index: faiss.Index, queries: np.ndarray, truth: np.ndarray, repeats: int) -> dict:
    index.search(queries[:WARMUP_QUERIES], 10)
    walls, found = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        _, found = index.search(queries, 10)
        walls.append(time.perf_counter() - t)
    recall = float(((found[:, :, None] == truth[:, None, :10]).any(axis=2).sum(axis=1) / 10).mean())
    latencies = []
    for i in range(SINGLE_CALLS):
        one = queries[i % len(queries):i % len(queries) + 1]
        t = time.perf_counter()
        index.search(one, 10)
        latencies.append((time.perf_counter() - t) * 1000)
    p50, p99 = np.percentile(latencies, [50, 99])
    return {"qps": len(queries) / statistics.median(walls), "batch_runs_wall_s": walls,
            "p50_ms": float(p50), "p99_ms": float(p99), "recall_at_10": recall}


def hnsw_section(args: argparse.Namespace, corpus: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict:
    rows, dim = corpus.shape
    index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    step = min(CHUNK, rows)
    target, capped, predicted_full = rows, False, None
    reset_peak_rss()
    before = resident_mb() or 0.0
    start = time.perf_counter()
    while index.ntotal < target:
        t = time.perf_counter()
        index.add(corpus[index.ntotal:min(index.ntotal + step, target)])
        chunk_s = time.perf_counter() - t
        print(f"HNSW: {index.ntotal:,} rows in {time.perf_counter() - start:.0f} s (last chunk {chunk_s:.0f} s)",
              flush=True)
        if index.ntotal == step and target > step:
            predicted_full = chunk_s * rows / step
            if predicted_full > HNSW_FULL_LIMIT_S:
                target = max(step, min(int(HNSW_BUDGET_S / chunk_s) * step, HNSW_MAX_CAPPED_ROWS, rows))
                capped = True
                print(f"HNSW: the first chunk predicts {predicted_full / 60:.0f} min for {rows:,} rows (linear, a "
                      f"lower bound); building on the first {target:,} rows only", flush=True)
    build_s = time.perf_counter() - start
    out = {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION, "rows": int(index.ntotal), "capped": capped,
           "build_s": build_s, "build_rows_per_s": index.ntotal / build_s,
           "first_chunk_predicted_full_s": predicted_full,
           "build_s_extrapolated_to_rows": build_s * rows / index.ntotal if capped else None,
           "build_peak_rss_above_mib": peak_rss_mb() - before,
           "bytes_per_vector": index_bytes(index) / index.ntotal, "settings": []}
    if capped:
        truth = exact_top_k(queries, corpus[:index.ntotal], 10, similarity="dot").indices
    for ef in EF_SEARCH:
        index.hnsw.efSearch = ef
        figures = {"efSearch": ef, **search_figures(index, queries, truth, args.repeats)}
        out["settings"].append(figures)
        print(f"HNSW efSearch={ef}: {figures['qps']:,.0f} q/s, p50 {figures['p50_ms']:.2f} ms, "
              f"recall@10 {figures['recall_at_10']:.3f}", flush=True)
    return out


def ivfpq_section(args: argparse.Namespace, corpus: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict:
    rows, dim = corpus.shape
    nlist = 2 ** round(math.log2(4 * math.sqrt(rows)))
    n_train = min(TRAIN_ROWS, rows)
    sample = corpus[np.sort(np.random.default_rng([SEED, 3]).choice(rows, n_train, replace=False))]
    coarse = faiss.index_factory(dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    t = time.perf_counter()
    coarse.train(sample)
    coarse_s = time.perf_counter() - t
    centroids = faiss.extract_index_ivf(coarse).quantizer.reconstruct_n(0, nlist)
    del coarse
    print(f"IVF: coarse k-means, {nlist:,} centroids on {n_train:,} rows, {coarse_s:.0f} s", flush=True)
    out = {"nlist": nlist, "train_rows": n_train, "coarse_kmeans_s": coarse_s, "indexes": []}
    for m in PQ_MS:
        index = faiss.index_factory(dim, f"IVF{nlist},PQ{m}x8", faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.extract_index_ivf(index)
        ivf.quantizer.add(centroids)  # trained and full: index.train skips the k-means and trains the PQ
        # The factory turns on polysemous training (a reordering of each codebook for Hamming-distance filtering,
        # which plain ADC search does not use: same codes up to relabelling, same results); it took ~4x the
        # PQ training itself here. Off, as with the factory's "np" suffix.
        index.do_polysemous_training = False
        t = time.perf_counter()
        index.train(sample)
        pq_s = time.perf_counter() - t
        empty_bytes = index_bytes(index)
        reset_peak_rss()
        before = resident_mb() or 0.0
        t = time.perf_counter()
        for start in range(0, rows, CHUNK):
            index.add(corpus[start:start + CHUNK])
        add_s = time.perf_counter() - t
        entry = {"m": m, "nbits": 8, "pq_train_s": pq_s, "train_s": coarse_s + pq_s, "add_s": add_s,
                 "add_rows_per_s": rows / add_s, "add_peak_rss_above_mib": peak_rss_mb() - before,
                 "empty_index_bytes": empty_bytes, "bytes_per_vector": index_bytes(index) / rows, "settings": []}
        entry["bytes_per_added_vector"] = (entry["bytes_per_vector"] * rows - empty_bytes) / rows
        print(f"IVF{nlist},PQ{m}x8: train {coarse_s:.0f} + {pq_s:.0f} s, add {add_s:.0f} s, "
              f"{entry['bytes_per_vector']:.1f} B/vector", flush=True)
        for nprobe in NPROBES:
            ivf.nprobe = nprobe
            figures = {"nprobe": nprobe, **search_figures(index, queries, truth, args.repeats)}
            entry["settings"].append(figures)
            print(f"  nprobe={nprobe}: {figures['qps']:,.0f} q/s, p50 {figures['p50_ms']:.2f} ms, "
                  f"recall@10 {figures['recall_at_10']:.3f}", flush=True)
        out["indexes"].append(entry)
        del index
    return out


# ---------------------------------------------------------------- 3. MS MARCO on paper

def msmarco(exact: list[dict], hnsw: dict | None, ivf: dict | None, rows: int) -> list[dict]:
    n, d = MSMARCO_ROWS, MSMARCO_DIM
    flat_add = next((r for r in exact if r["dim"] == d), None)
    flat_build = flat_add["faiss_add_s"] * n / rows if flat_add else None
    out = [{"index": "Flat fp32", "bytes_per_vector": 4.0 * d, "build_s": flat_build,
            "basis": "4*d bytes (payload of the flat format); build = IndexFlatIP.add rate at d=768"},
           {"index": "Flat fp16", "bytes_per_vector": 2.0 * d, "build_s": None,
            "basis": "2*d bytes; build not measured"}]
    if hnsw is not None:
        out.append({"index": f"HNSW{HNSW_M}", "bytes_per_vector": hnsw["bytes_per_vector"],
                    "build_s": n / hnsw["build_rows_per_s"],
                    "basis": f"measured at {hnsw['rows']:,} rows; build linear in rows: a lower bound (HNSW grows "
                             "slightly super-linearly)"})
    if ivf is not None:
        for entry in ivf["indexes"]:
            out.append({"index": f"IVF{ivf['nlist']},PQ{entry['m']}x8",
                        "bytes": entry["empty_index_bytes"] + entry["bytes_per_added_vector"] * n,
                        "build_s": entry["train_s"] + entry["add_s"] * n / rows,
                        "basis": f"trained index bytes + added bytes/vector x N; train as measured + add linear in "
                                 f"rows, nlist kept at {ivf['nlist']:,} (a larger nlist costs more)"})
    for entry in out:
        size = entry.pop("bytes", None)
        size = size if size is not None else entry["bytes_per_vector"] * n
        entry["bytes_per_vector"] = size / n
        entry["size_gb"] = size / 1e9
        entry["fits_24gb_ram"] = entry["size_gb"] < RAM_GB
    return out


# ---------------------------------------------------------------- output

def table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--skip-exact", action="store_true")
    parser.add_argument("--skip-ann", action="store_true")
    parser.add_argument("--child-faiss", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    torch.set_num_threads(THREADS)
    faiss.omp_set_num_threads(THREADS)
    if args.child_faiss is not None:
        child_faiss(args)
        return

    began = time.perf_counter()
    model, flags = cpu_model(), cpu_flags()
    avx512 = "avx512f" in flags
    info = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu_model": model,
            "cpu_count": os.cpu_count(), "avx512f": avx512, "avx2": "avx2" in flags, "mem_total_gib": mem_total_gib(),
            "load_average_start": os.getloadavg(), "threads": THREADS, "torch": torch.__version__,
            "faiss": faiss.__version__, "numpy": np.__version__, "openblas_core": openblas_corename(),
            "OPENBLAS_CORETYPE_env": os.environ.get("OPENBLAS_CORETYPE"), "generator": GENERATOR,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "child_faiss"}}
    print(f"CPU (lscpu Model name): {model}, {os.cpu_count()} cores, avx512f {'yes' if avx512 else 'no'}, "
          f"{info['mem_total_gib']:.1f} GiB; torch {torch.__version__}, faiss {faiss.__version__} "
          f"(OpenBLAS core {info['openblas_core']}), {THREADS} threads; load average {os.getloadavg()[0]:.2f}")
    print(f"data: {GENERATOR}", flush=True)

    exact: list[dict] = []
    keep: dict = {}
    if not args.skip_exact:
        exact, keep = exact_section(args, avx512)
    hnsw = ivf = None
    if not args.skip_ann:
        if "corpus" not in keep:
            keep["corpus"], keep["queries"] = clustered(args.rows, args.queries, ANN_DIM)
            keep["truth10"] = exact_top_k(keep["queries"], keep["corpus"], 10, similarity="dot").indices
        hnsw = hnsw_section(args, keep["corpus"], keep["queries"], keep["truth10"])
        ivf = ivfpq_section(args, keep["corpus"], keep["queries"], keep["truth10"])
    paper = msmarco(exact, hnsw, ivf, args.rows)
    info["load_average_end"] = os.getloadavg()
    info["total_s"] = time.perf_counter() - began

    if exact:
        print(f"\n1. exact top-k vs FAISS IndexFlatIP, {args.rows:,} rows, {args.queries:,} queries, median of "
              f"{args.repeats} interleaved rounds; ratio = FAISS s / ours s (>1: ours faster)")
        table(["d", "k", "ours s", "faiss s", "ratio", "CPU ratio", "SkylakeX ratio", "same top-k", "ours +MiB",
               "faiss +MiB (add+search)"],
              [[str(r["dim"]), str(r["k"]), f"{r['ours_wall_s']:.2f}", f"{r['faiss_wall_s']:.2f}",
                f"{r['ratio_wall']:.2f}", f"{r['ratio_cpu']:.2f}",
                f"{r['skylakex']['ratio_wall']:.2f}" if isinstance(r["skylakex"], dict) else "n/a",
                f"{r['same_topk_share']:.1%}", f"{r['ours_peak_rss_above_mib']:,.0f}",
                f"{r['faiss_add_rss_above_mib']:,.0f}+{r['faiss_search_peak_rss_above_mib']:,.0f}"] for r in exact])
        if not avx512:
            print("SkylakeX OpenBLAS: not applicable (the CPU has no avx512f)")
    if hnsw is not None and ivf is not None:
        print(f"\n2. ANN, d={ANN_DIM}, inner product, k=10, {args.queries:,} queries batched ({THREADS} threads), "
              f"{SINGLE_CALLS} single-query calls; recall@10 vs our exact top-10")
        note = (f" (first {hnsw['rows']:,} rows only; extrapolated to {args.rows:,}: "
                f"{hnsw['build_s_extrapolated_to_rows']:.0f} s, a lower bound)" if hnsw["capped"] else "")
        print(f"HNSW M={HNSW_M} efConstruction={HNSW_EF_CONSTRUCTION}: {hnsw['rows']:,} rows, build "
              f"{hnsw['build_s']:.0f} s{note}")
        print(f"IVF-PQ nlist={ivf['nlist']:,}, coarse k-means on {ivf['train_rows']:,} rows "
              f"{ivf['coarse_kmeans_s']:.0f} s (shared by both m), {args.rows:,} rows")
        lines = []
        for s in hnsw["settings"]:
            lines.append([f"HNSW{HNSW_M}", f"{hnsw['rows']:,}", f"efSearch={s['efSearch']}", f"{hnsw['build_s']:.0f}",
                          "", f"{hnsw['bytes_per_vector']:.1f}", f"{s['qps']:,.0f}", f"{s['p50_ms']:.2f}",
                          f"{s['p99_ms']:.2f}", f"{s['recall_at_10']:.3f}"])
        for entry in ivf["indexes"]:
            for s in entry["settings"]:
                lines.append([f"IVF{ivf['nlist']},PQ{entry['m']}x8", f"{args.rows:,}", f"nprobe={s['nprobe']}",
                              f"{entry['train_s']:.0f}", f"{entry['add_s']:.0f}", f"{entry['bytes_per_vector']:.1f}",
                              f"{s['qps']:,.0f}", f"{s['p50_ms']:.2f}", f"{s['p99_ms']:.2f}",
                              f"{s['recall_at_10']:.3f}"])
        table(["index", "rows", "setting", "build/train s", "add s", "B/vector", "q/s", "p50 ms", "p99 ms",
               "recall@10"], lines)
    print(f"\n3. MS MARCO on paper ({MSMARCO_ROWS:,} x {MSMARCO_DIM}): an ESTIMATE from the figures above")
    table(["index", "B/vector", "size GB", f"fits {RAM_GB:.0f} GB", "build (est.)"],
          [[p["index"], f"{p['bytes_per_vector']:.1f}", f"{p['size_gb']:.1f}",
            "yes" if p["fits_24gb_ram"] else "no",
            "-" if p["build_s"] is None else f"{p['build_s'] / 60:,.0f} min"] for p in paper])
    print(f"fits: the index alone below {RAM_GB:.0f} GB (1e9 bytes); the process and the OS need room besides")
    for p in paper:
        print(f"  {p['index']}: {p['basis']}")
    print(f"\ntotal {info['total_s'] / 60:.1f} min; load average at start {info['load_average_start'][0]:.2f}, "
          f"at end {info['load_average_end'][0]:.2f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"info": info, "exact": exact, "hnsw": hnsw, "ivfpq": ivf, "msmarco": paper},
                                        indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
