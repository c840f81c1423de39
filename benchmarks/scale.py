"""Scale benchmark: exact top-k search streaming an on-disk fp16 embedding store, at 10^5..10^7 passages.

    python benchmarks/scale.py [--sizes 1e5,1e6,1e7] [--queries 6980] [--large-queries 250]
                               [--device auto|cpu|cuda|both] [--chunk-rows 16384] [--k 1000]
                               [--workdir DIR] [--keep] [--pipeline-suite suites/quick.yaml | --no-pipeline]
                               [--json out.json]

For each size a synthetic corpus (768-dim fp16, Gaussian, seeded per chunk) is written chunk by chunk
into a real `harness.encode.store.EmbeddingStore` (so generation needs one chunk of RAM), then a *fresh
subprocess* opens the store, verifies its checksums (timed apart) and runs `harness.search.exact.exact_top_k`
over `store.chunks()` -- exactly what `harness run` does -- and reports wall time, CPU time and its own
peak RSS (getrusage RUSAGE_SELF; a fresh process per size, so each peak belongs to one size). Peak RSS
counts the memmapped pages of the chunk being read.

Sizes at or above --large-from (default 10^7) run with --large-queries queries (default 250) so that the
default run stays within ~15 minutes on 2 CPU cores. The smallest size is then also measured with that
reduced query count: this gives peak RSS across corpus sizes at equal query count, and the measured
ratio t(all queries)/t(reduced) that scales the large size's time to --queries (time per chunk is a
fixed part -- fp16->fp32 widening, finiteness check -- plus a part linear in queries, so a plain
linear factor would over-estimate; it is kept in the JSON as an upper bound). Scaled figures are
marked "(scaled)". Pass --large-queries 6980 to measure the
full figure. Each search also records the process's RSS after every chunk: the max over the first
and over the second half of the stream shows whether memory grows along the corpus.

The pipeline step runs `harness run SUITE` (fresh cache, fp16 store) in a subprocess and reports its
peak RSS: encoding + search + evaluation on a real set.

The table ends with a linear extrapolation to MS MARCO (8,841,823 passages, 6,980 queries) from the
largest measured size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MSMARCO_PASSAGES = 8_841_823
MSMARCO_QUERIES = 6_980
SEED = 20261126


# --------------------------------------------------------------------------------------------- children

def _store(workdir: Path, n: int, dim: int, chunk_rows: int):
    from harness.encode.store import EmbeddingStore

    return EmbeddingStore(workdir, {"synthetic": "gaussian", "n": n, "dim": dim, "seed": SEED},
                          n_rows=n, chunk_rows=chunk_rows, dtype="fp16")


def child_generate(args: argparse.Namespace) -> dict:
    """Write the missing chunks of the synthetic store, one chunk in RAM at a time."""
    import numpy as np

    from harness.vocabulary.timing import peak_rss_mb

    store = _store(args.workdir, args.n, args.dim, args.chunk_rows)
    started = time.perf_counter()
    missing = store.missing()
    for index in missing:
        rows = len(store.rows_of(index))
        rng = np.random.default_rng([SEED, 0, index])
        store.write(index, rng.standard_normal((rows, args.dim), dtype=np.float32), seconds=0.0, tokens=0)
    return {"generated_chunks": len(missing), "generate_s": time.perf_counter() - started,
            "store_path": str(store.path), "store_bytes": sum(f.stat().st_size for f in store.path.iterdir()),
            "peak_rss_mb": peak_rss_mb()}


def child_search(args: argparse.Namespace) -> dict:
    import numpy as np
    import psutil
    import torch

    from harness.search.exact import exact_top_k
    from harness.vocabulary import timing

    store = _store(args.workdir, args.n, args.dim, args.chunk_rows)
    queries = np.random.default_rng([SEED, 1, 0]).standard_normal((args.queries, args.dim), dtype=np.float32)
    if args.device == "cuda":
        torch.cuda.init()
    # Warm-up on a sliver of the first chunk (loads the BLAS/top-k kernels' code pages, thread pools,
    # CUDA context) -- not timed, and small, so the RSS measured next is the fixed cost of the process.
    exact_top_k(queries[:8], [np.array(store.read(0)[:2048])], min(args.k, 2048), device=args.device)
    timing.synchronize(args.device)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    baseline_rss = psutil.Process().memory_info().rss / 2**20  # code + queries, before any chunk is held

    started = time.perf_counter()
    missing = store.missing()  # reads every chunk once: sha256 check, as the first run over a store does
    verify_s = time.perf_counter() - started
    if missing:
        raise SystemExit(f"store {store.path} lacks {len(missing)} chunks")
    rss_after_verify = psutil.Process().memory_info().rss / 2**20

    wall, cpu = time.perf_counter(), time.process_time()
    process, rss_trace = psutil.Process(), []  # current RSS after each chunk: does it grow along the stream?
    top = exact_top_k(queries, store.chunks(), args.k, device=args.device,
                      progress=lambda rows: rss_trace.append(process.memory_info().rss / 2**20))
    timing.synchronize(args.device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    half = max(1, len(rss_trace) // 2)
    assert top.indices.shape == (args.queries, min(args.k, args.n))
    return {"search_s": wall, "search_cpu_s": cpu, "verify_s": verify_s, "baseline_rss_mb": baseline_rss,
            "rss_after_verify_mb": rss_after_verify, "peak_rss_mb": timing.peak_rss_mb(),
            "peak_gpu_mb": timing.peak_gpu_mb(args.device), "threads": torch.get_num_threads(),
            "chunks": len(rss_trace), "rss_max_first_half_mb": max(rss_trace[:half]),
            "rss_max_second_half_mb": max(rss_trace[half:] or rss_trace[:half])}


def child_pipeline(args: argparse.Namespace) -> dict:
    from harness.cli import main
    from harness.scoring.records import load_run_record
    from harness.vocabulary.timing import peak_rss_mb

    with tempfile.TemporaryDirectory(prefix="scale-pipeline-") as tmp:
        started = time.perf_counter()
        code = main(["run", str(args.suite), "--output", f"{tmp}/results", "--cache", f"{tmp}/cache",
                     "--store-dtype", "fp16", "--no-progress"])
        wall = time.perf_counter() - started
        records = sorted(Path(tmp, "results").glob("*/record.json"))
        loaded = [load_run_record(r.parent) for r in records]
        perf = [r.performance for r in loaded]
        counts = [r.dataset.counts.model_dump() for r in loaded]
    return {"exit_code": code, "wall_s": wall, "peak_rss_mb": peak_rss_mb(), "records": len(records),
            "counts": counts, "corpus_encode_s": [p.corpus_encode_s for p in perf],
            "search_s": [p.search_s for p in perf]}


# --------------------------------------------------------------------------------------------- driver

def _spawn(mode: str, **kwargs) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode]
    for key, value in kwargs.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} child failed (exit {proc.returncode}): {' '.join(cmd)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _size(text: str) -> int:
    return int(float(text))


def _human(n: int) -> str:
    for exp in range(9, 2, -1):
        if n % 10**exp == 0 and n >= 10**exp:
            return f"10^{exp}" if n == 10**exp else f"{n // 10**exp}x10^{exp}"
    return f"{n:,}"


def machine() -> dict:
    import torch

    from harness.vocabulary.timing import cpu_model

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "ram_gib": round(mem, 1), "gpu": gpu,
            "torch": torch.__version__, "python": platform.python_version(),
            "load_avg_at_start": os.getloadavg()}


def run(args: argparse.Namespace) -> dict:
    import torch

    sizes = sorted(_size(s) for s in args.sizes.split(","))
    if args.device == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    elif args.device == "both":
        devices = ["cpu", "cuda"]
    else:
        devices = [args.device]
    args.workdir.mkdir(parents=True, exist_ok=True)
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM, GPU: {info['gpu'] or 'none'}; "
          f"load average at start {info['load_avg_at_start'][0]:.1f}", flush=True)
    results = {"machine": info, "settings": {"dim": args.dim, "k": args.k, "chunk_rows": args.chunk_rows,
                                             "queries": args.queries, "large_queries": args.large_queries,
                                             "large_from": args.large_from, "store_dtype": "fp16"},
               "sizes": [], "skipped": []}
    for n in sizes:
        need = n * args.dim * 2
        existing = _store(args.workdir, n, args.dim, args.chunk_rows)
        have = sum(f.stat().st_size for f in existing.path.glob("chunk-*.npy"))
        free = shutil.disk_usage(args.workdir).free
        if need - have + args.disk_margin_gb * 2**30 > free:
            message = (f"{_human(n)}: skipped -- its store needs {need / 1e9:.1f} GB, {args.workdir} has "
                       f"{free / 1e9:.1f} GB free (keeping {args.disk_margin_gb} GB spare); use --workdir elsewhere")
            print(message, flush=True)
            results["skipped"].append({"n": n, "reason": message})
            continue
        print(f"{_human(n)}: writing the fp16 store ({need / 1e9:.2f} GB) ...", flush=True)
        gen = _spawn("generate", n=n, dim=args.dim, chunk_rows=args.chunk_rows, workdir=args.workdir)
        query_counts = [args.large_queries] if n >= args.large_from else [args.queries]
        if n == sizes[0] < args.large_from <= sizes[-1] and args.large_queries != args.queries:
            query_counts.append(args.large_queries)  # the largest size's query count: RSS vs corpus size alone
        for queries, device in [(q, d) for q in query_counts for d in devices]:
            print(f"{_human(n)}: searching {queries:,} queries, top-{args.k}, {device} ...", flush=True)
            res = _spawn("search", n=n, dim=args.dim, chunk_rows=args.chunk_rows, workdir=args.workdir,
                         queries=queries, k=args.k, device=device)
            bound = working_set_mb(queries, args.dim, args.k, args.chunk_rows)
            row = {"n": n, "device": device, "queries": queries, "store_gb": gen["store_bytes"] / 1e9,
                   "generate_s": gen["generate_s"], **res, "scaled": queries != args.queries,
                   "working_set_model_mb": bound, "rss_above_baseline_mb": res["peak_rss_mb"] - res["baseline_rss_mb"]}
            results["sizes"].append(row)
            print(f"   {row['search_s']:.1f} s wall ({row['search_cpu_s']:.1f} s CPU), checksum pass "
                  f"{row['verify_s']:.1f} s, peak RSS {row['peak_rss_mb']:.0f} MB = {row['baseline_rss_mb']:.0f} MB "
                  f"before the first chunk + {row['rss_above_baseline_mb']:.0f} MB (one chunk + queries + top-k "
                  f"state; model {bound:.0f} MB); store {row['store_gb']:.2f} GB", flush=True)
        if not args.keep:
            shutil.rmtree(existing.path, ignore_errors=True)
    if args.pipeline_suite:
        print(f"pipeline: harness run {args.pipeline_suite} (fresh cache, fp16 store) ...", flush=True)
        results["pipeline"] = {"suite": str(args.pipeline_suite),
                               **_spawn("pipeline", suite=args.pipeline_suite)}
    return finish(results)


def finish(results: dict) -> dict:
    """Scale reduced-query timings to the full query count, then extrapolate to MS MARCO."""
    scale_queries(results)
    results["extrapolation"] = extrapolate(results["sizes"], results["settings"]["queries"],
                                           results["settings"]["dim"])
    return results


def scale_queries(results: dict) -> None:
    """Time per chunk is affine in the query count (a fixed fp16->fp32 widening + checks, plus matmul and
    merge per query), so a plain Q/q factor over-estimates. Where the smallest size was measured at both
    query counts, its measured ratio t(Q)/t(q) is the factor; otherwise Q/q (an upper bound)."""
    full_q = results["settings"]["queries"]
    for r in results["sizes"]:
        mine = [x for x in results["sizes"] if x["device"] == r["device"]]
        smallest = min(x["n"] for x in mine)
        at_full = [x for x in mine if x["n"] == smallest and x["queries"] == full_q]
        at_q = [x for x in mine if x["n"] == smallest and x["queries"] == r["queries"]]
        if r["queries"] == full_q:
            factor, how = {"search_s": 1.0, "search_cpu_s": 1.0}, "measured"
        elif at_full and at_q and smallest < r["n"]:
            factor = {key: at_full[0][key] / at_q[0][key] for key in ("search_s", "search_cpu_s")}
            how = f"by the ratio measured at {smallest:,} passages ({full_q:,} vs {r['queries']:,} queries)"
        else:
            factor = {key: full_q / r["queries"] for key in ("search_s", "search_cpu_s")}
            how = "linear in queries (upper bound)"
        r["search_s_full_queries"] = r["search_s"] * factor["search_s"]
        r["search_cpu_s_full_queries"] = r["search_cpu_s"] * factor["search_cpu_s"]
        r["search_s_full_queries_linear_bound"] = r["search_s"] * full_q / r["queries"]
        r["query_scaling"] = how


def working_set_mb(queries: int, dim: int, k: int, chunk_rows: int, query_batch: int = 4096) -> float:
    """What exact_top_k holds at once by construction (allocator slack comes on top): one chunk (fp16 pages,
    fp32 copy, oneDNN-packed fp32 copy on CPU), one query
    batch's score block, the fp32 queries, and the top-k state (scores fp32 + rows int64) with the
    merge's temporaries (state + chunk top-k concatenated, sorted, gathered: ~3 copies of 2k columns)."""
    chunk = chunk_rows * dim * (2 + 4 + 4)
    scores = min(queries, query_batch) * chunk_rows * 4
    topk_state = queries * k * (4 + 8)
    merge = 3 * min(queries, query_batch) * 2 * k * (4 + 8)
    return (chunk + scores + queries * dim * 4 + topk_state + merge) / 2**20


def extrapolate(rows: list[dict], full_queries: int, dim: int) -> list[dict]:
    """Search time is linear in corpus size (one matmul + one merge per chunk): scale the largest size
    measured with all the queries, and the largest size overall (whose time may itself be query-scaled)."""
    out = []
    for device in sorted({r["device"] for r in rows}):
        mine = [r for r in rows if r["device"] == device]
        full = [r for r in mine if not r["scaled"]]
        bases = [max(full, key=lambda r: r["n"])] if full else []
        largest = max(mine, key=lambda r: (r["n"], not r["scaled"]))
        if largest not in bases:
            bases.append(largest)
        for r in bases:
            base = r["n"]
            factor = MSMARCO_PASSAGES / base
            out.append({"device": device, "from_n": base, "from_scaled": r["scaled"], "n": MSMARCO_PASSAGES,
                        "queries": full_queries, "search_s": r["search_s_full_queries"] * factor,
                        "search_cpu_s": r["search_cpu_s_full_queries"] * factor,
                        "store_gb": MSMARCO_PASSAGES * dim * 2 / 1e9,
                        "peak_rss_mb": max(x["peak_rss_mb"] for x in (full or mine))})
    return out


def table(results: dict) -> str:
    q = results["settings"]["queries"]
    lines = ["| passages | device | queries measured | search wall (s) | search CPU (s) | "
             f"wall for {q:,} queries (s) | checksum pass (s) | peak RSS (MB) | above baseline (MB) | "
             "working set model (MB) | RSS after chunks, max 1st / 2nd half (MB) | fp16 store (GB) |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["sizes"]:
        full = f"{r['search_s_full_queries']:.1f}"
        if r["query_scaling"].startswith("linear"):
            full = f"≤ {full} (linear)"
        elif r["query_scaling"] != "measured":
            full += " (scaled)"
        gpu = f" (GPU {r['peak_gpu_mb']:.0f})" if r.get("peak_gpu_mb") else ""
        lines.append(f"| {r['n']:,} | {r['device']} | {r['queries']:,} | {r['search_s']:.1f} | {r['search_cpu_s']:.1f} "
                     f"| {full} | {r['verify_s']:.1f} | {r['peak_rss_mb']:.0f}{gpu} | {r['rss_above_baseline_mb']:.0f} "
                     f"| {r['working_set_model_mb']:.0f} | {r['rss_max_first_half_mb']:.0f} / "
                     f"{r['rss_max_second_half_mb']:.0f} ({r['chunks']} chunks) | {r['store_gb']:.2f} |")
    for e in results["extrapolation"]:
        how = f"from {e['from_n']:,}" + (", query-scaled" if e["from_scaled"] else "")
        lines.append(f"| **{e['n']:,}** (extrapolated {how}) | {e['device']} | -- | -- | {e['search_cpu_s']:.0f} | "
                     f"**{e['search_s']:.0f}** | -- | ~{e['peak_rss_mb']:.0f} | -- | -- | -- | {e['store_gb']:.2f} |")
    pipe = results.get("pipeline")
    if pipe:
        counts = pipe["counts"][0] if pipe["counts"] else {}
        lines.append("")
        lines.append(f"Whole pipeline, `harness run {Path(pipe['suite']).name}` "
                     f"({counts.get('documents', '?')} passages, {counts.get('queries', '?')} queries, fresh cache, "
                     f"fp16 store): exit {pipe['exit_code']}, "
                     f"{pipe['wall_s']:.1f} s wall, peak RSS {pipe['peak_rss_mb']:.0f} MB.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1e5,1e6,1e7", help="comma-separated corpus sizes (default 1e5,1e6,1e7)")
    parser.add_argument("--queries", type=int, default=MSMARCO_QUERIES)
    parser.add_argument("--large-queries", type=int, default=250,
                        help="queries measured at sizes >= --large-from (time also reported scaled to --queries)")
    parser.add_argument("--large-from", type=_size, default=10**7)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--chunk-rows", type=int, default=16384, help="store chunk rows (harness run's default)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "both"), default="auto")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "harness-scale")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic stores for the next run")
    parser.add_argument("--disk-margin-gb", type=float, default=2.0)
    parser.add_argument("--pipeline-suite", type=Path, default=REPO / "suites" / "quick.yaml")
    parser.add_argument("--no-pipeline", dest="pipeline_suite", action="store_const", const=None)
    parser.add_argument("--json", type=Path, help="write all figures as JSON here")
    parser.add_argument("--table-from", type=Path, metavar="JSON",
                        help="measure nothing: recompute scaling/extrapolation and print the table of a --json file")
    # internal: one measurement per fresh process
    parser.add_argument("--child", choices=("generate", "search", "pipeline"), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--suite", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        result = {"generate": child_generate, "search": child_search, "pipeline": child_pipeline}[args.child](args)
        print(json.dumps(result))
        return 0

    if args.table_from:
        results = finish(json.loads(args.table_from.read_text()))
        print(table(results))
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        return 0
    results = run(args)
    print()
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
