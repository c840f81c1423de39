"""MS MARCO rehearsal: the real `suites/msmarco-dev.yaml` path (ir_datasets, streamed corpus, fast engine, fp16
store, exact top-1000, five metrics) end to end on an MS MARCO-shaped synthetic corpus, with the encoder swapped
for `random:bert-tiny` (or `--model random:bert-micro`); per-stage wall seconds and peak RSS sampled from this
(second) process.

    python benchmarks/rehearsal.py --passages 1000000 --output /tmp/rehearsal
    python benchmarks/rehearsal.py --passages 8841823 --output /big/rehearsal          # full size
    python benchmarks/rehearsal.py --passages 20000 --output /tmp/r --kill-at 0.5      # kill -9 mid-encoding, resume
    python benchmarks/rehearsal.py --passages 1000000 --output /tmp/r --executor ray   # Ray Data, local 2 workers

The data (seeded, deterministic for a given --passages and --seed):
* passages 0..N-1 (`collection.tsv`): word counts drawn from the length distribution of the real MS MARCO passages
  shipped in data/msmarco-trecdl2019-pool, words from their unigram distribution;
* queries: the real dev/small query ids (6,980; fewer below 139,600 passages: N // 20, at least 50, so that a small
  rehearsal stays small); each query is 24 words of its relevant passage, in passage order (planted; all of them for
  shorter passages): with random weights, fewer shared words would leave the relevant passage lost among
  millions (MS MARCO's real queries average 5.9 words: query length only changes the query encoding, a small cost);
* qrels (TREC): one relevant passage per query, a second one for 1 query in 15 (MS MARCO: 1.07 on average).
Everything is written under $IR_DATASETS_HOME (default OUTPUT/ir_datasets) where ir_datasets 0.6 reads
`msmarco-passage` and `msmarco-passage/dev/small`, with `irds_version.txt` = v2 (see DESIGN.md).

Output: OUTPUT/rehearsal.json (and a table on stdout): per-stage wall seconds (read, tokenize, encode, store,
search, metrics, record, total), peak RSS of the run's whole process tree (sampled every 0.1 s from this process)
for the run and per stage, the embedding store's bytes, and the sha256 of run.trec; with --kill-at, the resumed
run.trec's sha256 and whether it is byte-identical; `--rerun` adds a second run with everything from the cache.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MSMARCO_PASSAGES = 8_841_823
MSMARCO_QUERIES = 6_980
SOURCE_PASSAGES = REPO / "data" / "msmarco-trecdl2019-pool" / "corpus.jsonl.gz"
SOURCE_QUERIES = REPO / "data" / "msmarco-passage-dev-small" / "queries.jsonl"
SUITE = REPO / "suites" / "msmarco-dev.yaml"
MODELS = ("random:bert-tiny", "random:bert-micro")  # harness.encode.models.RANDOM_ARCHITECTURES
QUERY_WORDS = 24
STAGES = ("read", "tokenize", "encode", "store", "search", "metrics", "record")
_WORD = re.compile(r"\S+")


# ---------------------------------------------------------------------------------------------- data

def queries_for(passages: int) -> int:
    return min(MSMARCO_QUERIES, max(50, passages // 20))


def real_shape() -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """Word counts of the real passages, their vocabulary with unigram probabilities, and the real query ids."""
    import gzip

    lengths, counts = [], Counter()
    with gzip.open(SOURCE_PASSAGES, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            words = _WORD.findall(f"{row.get('title') or ''} {row['text']}")
            lengths.append(len(words))
            counts.update(words)
    vocab = sorted(counts)  # sorted: the draw does not depend on Counter order
    freq = np.array([counts[w] for w in vocab], dtype=np.float64)
    query_ids = [json.loads(line)["_id"] for line in SOURCE_QUERIES.read_text().splitlines() if line.strip()]
    return np.array(lengths), vocab, freq / freq.sum(), sorted(query_ids, key=int)


def write_data(home: Path, passages: int, seed: int) -> dict:
    """Write the rehearsal's ir_datasets files (skipped when the same parameters are already in place)."""
    base = home / "msmarco-passage"
    marker = base / "rehearsal.json"
    params = {"passages": passages, "seed": seed, "queries": queries_for(passages), "version": 2}
    if marker.exists() and json.loads(marker.read_text()).get("params") == params:
        return json.loads(marker.read_text())
    if (base / "collection.tsv").exists() and not marker.exists():
        raise SystemExit(f"{base}/collection.tsv exists and is not a rehearsal corpus: point IR_DATASETS_HOME "
                         "elsewhere (this script never overwrites a real MS MARCO)")
    started = time.perf_counter()
    lengths, vocab, prob, real_qids = real_shape()
    rng = np.random.default_rng(seed)
    n_queries = params["queries"]
    relevant = rng.choice(passages, size=n_queries, replace=False)
    second = np.where(rng.random(n_queries) < 1 / 15, rng.integers(0, passages, n_queries), -1)
    wanted = {int(p): i for i, p in enumerate(relevant)}
    qids = real_qids[:n_queries] if n_queries <= len(real_qids) else [str(i) for i in range(n_queries)]
    query_texts: list[str] = [""] * n_queries
    (base / "dev" / "small").mkdir(parents=True, exist_ok=True)
    vocab_arr = np.array(vocab, dtype=object)
    cdf = np.cumsum(prob)
    block = 100_000
    with open(base / "collection.tsv.tmp", "w", encoding="utf-8") as out:
        for start in range(0, passages, block):
            stop = min(passages, start + block)
            n_words = np.maximum(1, rng.choice(lengths, size=stop - start))
            draws = np.searchsorted(cdf, rng.random(int(n_words.sum())), side="right")
            words = vocab_arr[draws.clip(0, len(vocab) - 1)]
            bounds = np.concatenate([[0], np.cumsum(n_words)])
            lines = []
            for i, pid in enumerate(range(start, stop)):
                text_words = words[bounds[i]:bounds[i + 1]]
                lines.append(f"{pid}\t{' '.join(text_words)}\n")
                if pid in wanted:
                    q = wanted[pid]
                    pick = rng.choice(len(text_words), size=min(QUERY_WORDS, len(text_words)), replace=False)
                    query_texts[q] = " ".join(text_words[sorted(pick)])
            out.write("".join(lines))
    os.replace(base / "collection.tsv.tmp", base / "collection.tsv")
    (base / "irds_version.txt").write_text("v2")
    (base / "dev" / "small" / "queries.tsv").write_text("".join(f"{q}\t{t}\n" for q, t in zip(qids, query_texts)))
    qrels = [f"{q} 0 {int(p)} 1\n" for q, p in zip(qids, relevant)]
    qrels += [f"{q} 0 {int(p)} 1\n" for q, p, r in zip(qids, second, relevant) if p >= 0 and p != r]
    (base / "dev" / "small" / "qrels").write_text("".join(qrels))
    info = {"params": params, "qrels": len(qrels), "generate_s": time.perf_counter() - started,
            "collection_bytes": (base / "collection.tsv").stat().st_size}
    marker.write_text(json.dumps(info))
    return info


def write_suite(path: Path, info: dict, model: str) -> Path:
    """suites/msmarco-dev.yaml with the encoder's model swapped for `model` (a random architecture) and the expected
    counts set to the rehearsal's; nothing else changed."""
    import yaml

    suite = yaml.safe_load(SUITE.read_text())
    suite["name"] = f"{suite['name']}-rehearsal"
    for encoder in suite["encoders"]:
        encoder["name"], encoder["model"] = f"{model.removeprefix('random:')}-random", model
    for dataset in suite["datasets"]:
        dataset["expected_counts"] = {"documents": info["params"]["passages"],
                                      "queries": info["params"]["queries"], "qrels": info["qrels"]}
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


# ------------------------------------------------------------------------------ child: harness run, instrumented

def child_run(args: argparse.Namespace) -> int:
    """`harness run` in this process, with the stages' functions wrapped to log (enter/exit, monotonic time)."""
    sys.path.insert(0, str(REPO))
    import harness.encode.distributed as distributed
    import harness.encode.tokenize as tokenize
    import harness.input.corpus as corpus
    import harness.pipeline.runner as runner
    from harness.cli import main
    from harness.encode.store import EmbeddingStore

    events = open(args.events, "a", buffering=1)
    stack: list[list] = []  # [stage, started, seconds spent in nested stages]
    totals: dict[str, float] = {}

    def wrap(owner, name: str, stage: str) -> None:
        original = getattr(owner, name)

        def timed(*a, **k):
            if stack and stack[-1][0] == stage:  # re-entrant (texts -> texts_at): count once
                return original(*a, **k)
            events.write(f"{time.monotonic():.4f} + {stage}\n")
            stack.append([stage, time.perf_counter(), 0.0])
            try:
                return original(*a, **k)
            finally:
                _, started, nested = stack.pop()
                elapsed = time.perf_counter() - started
                totals[stage] = totals.get(stage, 0.0) + elapsed - nested
                if stack:
                    stack[-1][2] += elapsed
                events.write(f"{time.monotonic():.4f} - {stage} {json.dumps(totals)}\n")

        setattr(owner, name, timed)

    wrap(runner, "load_dataset", "read")
    wrap(corpus.Corpus, "texts", "read")
    wrap(tokenize.TextTokenizer, "__call__", "tokenize")
    wrap(runner, "encode_chunk", "encode")
    wrap(distributed, "encode_on_ray", "encode")
    wrap(EmbeddingStore, "write", "store")
    wrap(runner, "exact_top_k", "search")
    wrap(runner, "score", "metrics")
    wrap(runner, "write_run_record", "record")
    argv = ["run", str(args.suite), "--output", str(args.results), "--cache", str(args.cache),
            "--store-dtype", "fp16", "--chunk-rows", str(args.chunk_rows), "--no-progress", "--fail-fast"]
    if args.executor == "ray":
        argv += ["--executor", "ray"]
    return main(argv)


# ------------------------------------------------------------------------------ driver: run, sample, kill

def tree_rss_mb(pid: int) -> float:
    """RSS of a process and all its descendants (Ray's raylet and workers included), MB."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def store_chunks(cache: Path) -> tuple[int, int]:
    """(chunk files written, bytes) of the embedding stores under a cache directory."""
    files = list(cache.glob("**/chunk-*.npy"))
    return len(files), sum(f.stat().st_size for f in files)


def run_once(args: argparse.Namespace, suite: Path, results: Path, cache: Path, env: dict,
             kill_at_chunk: int | None = None) -> dict:
    events = results.with_suffix(".events")
    events.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--suite", str(suite), "--results",
           str(results), "--cache", str(cache), "--events", str(events), "--executor", args.executor,
           "--chunk-rows", str(args.chunk_rows)]
    samples: list[tuple[float, float]] = []
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, start_new_session=True)
    killed = False
    while proc.poll() is None:
        samples.append((time.monotonic(), tree_rss_mb(proc.pid)))
        if kill_at_chunk is not None and store_chunks(cache)[0] >= kill_at_chunk:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            killed = True
            break
        time.sleep(args.sample_s)
    wall = time.perf_counter() - started
    if not killed and proc.returncode != 0:
        raise SystemExit(f"harness run failed (exit {proc.returncode}): {' '.join(cmd)}")
    stage_s, stage_peak = stage_figures(events, samples)
    return {"wall_s": wall, "killed": killed, "peak_rss_mb": max((r for _, r in samples), default=0.0),
            "stage_s": stage_s, "stage_peak_rss_mb": stage_peak, "samples": len(samples)}


def stage_figures(events: Path, samples: list[tuple[float, float]]) -> tuple[dict, dict]:
    """Per-stage exclusive seconds (the child's totals) and per-stage peak RSS: each sample goes to the innermost
    stage open at its time."""
    intervals: list[tuple[float, float, str]] = []
    stack: list[tuple[str, float]] = []
    totals: dict[str, float] = {}
    if events.exists():
        for line in events.read_text().splitlines():
            parts = line.split(" ", 3)
            if len(parts) < 3:
                continue
            t, sign, stage = float(parts[0]), parts[1], parts[2]
            if sign == "+":
                if stack:
                    intervals.append((stack[-1][1], t, stack[-1][0]))
                stack.append((stage, t))
            else:
                if stack:
                    intervals.append((stack[-1][1], t, stack.pop()[0]))
                if stack:
                    stack[-1] = (stack[-1][0], t)
                if len(parts) == 4:
                    totals = json.loads(parts[3])
    peak: dict[str, float] = {}
    intervals.sort()
    starts = [a for a, _, _ in intervals]
    import bisect

    for t, rss in samples:
        i = bisect.bisect_right(starts, t) - 1
        if i >= 0 and intervals[i][0] <= t <= intervals[i][1]:
            stage = intervals[i][2]
            peak[stage] = max(peak.get(stage, 0.0), rss)
    return ({s: round(totals.get(s, 0.0), 2) for s in STAGES}, {s: round(peak[s], 1) for s in STAGES if s in peak})


def run_trec(results: Path) -> Path:
    found = sorted(results.glob("*/run.trec"))
    if len(found) != 1:
        raise SystemExit(f"expected one run.trec under {results}, found {len(found)}")
    return found[0]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def machine() -> dict:
    sys.path.insert(0, str(REPO))
    from harness.vocabulary.timing import cpu_model

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "ram_gib": round(mem, 1),
            "load_avg_at_start": os.getloadavg()}


def rehearse(args: argparse.Namespace) -> dict:
    out = args.output.resolve()
    out.mkdir(parents=True, exist_ok=True)
    home = Path(os.environ.get("IR_DATASETS_HOME") or out / "ir_datasets").resolve()
    env = {**os.environ, "IR_DATASETS_HOME": str(home), "HARNESS_CACHE": str(out / "cache"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    if args.executor == "ray":
        env.setdefault("HARNESS_RAY_WORKERS", "2")
        env.setdefault("HARNESS_RAY_CPUS_PER_WORKER", "1")
    print(f"data: {args.passages:,} passages under {home} ...", flush=True)
    info = write_data(home, args.passages, args.seed)
    suite = write_suite(out / "msmarco-dev-rehearsal.yaml", info, args.model)
    report = {"passages": args.passages, "queries": info["params"]["queries"], "qrels": info["qrels"],
              "seed": args.seed, "model": args.model, "executor": args.executor, "machine": machine(),
              "data_generate_s": round(info["generate_s"], 1), "collection_bytes": info["collection_bytes"]}
    if args.rerun_only:
        report = json.loads((out / "rehearsal.json").read_text())
        if (report["passages"], report["model"]) != (args.passages, args.model) or not (out / "cache").is_dir():
            raise SystemExit(f"--rerun-only needs {out}/rehearsal.json and cache/ from a cold run of the same "
                             f"--passages and --model: run without --rerun-only first")
        rerun(args, out, suite, env, report)
        return report
    for name in ("results", "cache", "results-resumed", "cache-resumed", "results-rerun"):
        subprocess.run(["rm", "-rf", str(out / name)], check=True)

    print("run: harness run (cold cache) ...", flush=True)
    cold = run_once(args, suite, out / "results", out / "cache", env)
    trec = run_trec(out / "results")
    store_files, store_bytes = store_chunks(out / "cache")
    record = json.loads((trec.parent / "record.json").read_text())
    report.update({
        "stage_s": {**cold["stage_s"], "total": round(cold["wall_s"], 1)},
        "peak_rss_mb": round(cold["peak_rss_mb"], 1), "stage_peak_rss_mb": cold["stage_peak_rss_mb"],
        "store_bytes": store_bytes, "store_chunks": store_files, "run_trec_sha256": sha256(trec),
        "metrics": record["metrics"], "record_peak_rss_mb": record["performance"].get("peak_rss_mb"),
    })
    save(out, report)  # after each phase: a full-size rehearsal takes hours and an interrupted one keeps its figures
    if args.rerun:
        rerun(args, out, suite, env, report)
    if args.kill_at is not None:
        n_chunks = -(-args.passages // args.chunk_rows)
        at = max(1, min(n_chunks - 1, round(n_chunks * args.kill_at)))
        print(f"kill: SIGKILL after {at} of {n_chunks} chunks, then resume ...", flush=True)
        killed = run_once(args, suite, out / "results-resumed", out / "cache-resumed", env, kill_at_chunk=at)
        written = store_chunks(out / "cache-resumed")[0]
        resumed = run_once(args, suite, out / "results-resumed", out / "cache-resumed", env)
        digest = sha256(run_trec(out / "results-resumed"))
        report["kill"] = {"kill_at": args.kill_at, "killed": killed["killed"], "chunks_when_killed": written,
                          "chunks": n_chunks, "resumed_wall_s": round(resumed["wall_s"], 1),
                          "resumed_run_trec_sha256": digest, "identical": digest == report["run_trec_sha256"]}
        save(out, report)
    return report


def rerun(args: argparse.Namespace, out: Path, suite: Path, env: dict, report: dict) -> None:
    print("rerun: everything from the cache ...", flush=True)
    subprocess.run(["rm", "-rf", str(out / "results-rerun")], check=True)
    warm = run_once(args, suite, out / "results-rerun", out / "cache", env)
    same = sha256(run_trec(out / "results-rerun")) == report["run_trec_sha256"]
    report["rerun"] = {"stage_s": {**warm["stage_s"], "total": round(warm["wall_s"], 1)},
                       "peak_rss_mb": round(warm["peak_rss_mb"], 1), "stage_peak_rss_mb": warm["stage_peak_rss_mb"],
                       "run_trec_identical": same, "machine": machine()}
    save(out, report)


def save(out: Path, report: dict) -> None:
    (out / "rehearsal.json").write_text(json.dumps(report, indent=1))
    print(table(report), flush=True)


def table(r: dict) -> str:
    lines = [f"{r['passages']:,} passages, {r['queries']:,} queries, {r['model']}, executor {r['executor']}; "
             f"{r['machine']['cpu']}, {r['machine']['cores']} cores, load {r['machine']['load_avg_at_start'][0]:.1f}",
             "| stage | wall (s) | peak RSS (MB) |", "|---|---:|---:|"]
    for stage in (*STAGES, "total"):
        peak = r["peak_rss_mb"] if stage == "total" else r["stage_peak_rss_mb"].get(stage, "")
        lines.append(f"| {stage} | {r['stage_s'][stage]} | {peak} |")
    metrics = ", ".join(f"{k} {v:.3f}" for k, v in r["metrics"].items())
    lines.append(f"store {r['store_bytes'] / 1e9:.2f} GB in {r['store_chunks']} chunks; run.trec sha256 "
                 f"{r['run_trec_sha256'][:16]}…; metrics {metrics}")
    if "rerun" in r:
        again = r["rerun"]
        lines.append(f"rerun from the cache: {again['stage_s']['total']} s (search {again['stage_s']['search']} s), "
                     f"peak RSS {again['peak_rss_mb']} MB, run.trec identical: {again['run_trec_identical']}")
    if "kill" in r:
        k = r["kill"]
        lines.append(f"kill -9 after {k['chunks_when_killed']}/{k['chunks']} chunks, resumed in "
                     f"{k['resumed_wall_s']} s: run.trec identical: {k['identical']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=lambda s: int(float(s)), default=MSMARCO_PASSAGES)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--kill-at", type=float, default=None, metavar="FRACTION",
                        help="also SIGKILL a second run after this fraction of the store's chunks, resume it, "
                             "and compare its run.trec with the uninterrupted run's")
    parser.add_argument("--executor", choices=("local", "ray"), default="local")
    parser.add_argument("--model", choices=MODELS, default=MODELS[0],
                        help="the random-weight encoder that replaces msmarco-distilbert-dot-v5 (default %(default)s; "
                             "bert-micro: 1 layer, for the full size on a few CPU cores)")
    parser.add_argument("--rerun", action="store_true", help="also rerun with everything from the cache")
    parser.add_argument("--rerun-only", action="store_true",
                        help="only the rerun, from the cache and rehearsal.json an earlier cold run left in OUTPUT")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-rows", type=int, default=16384, help="store chunk rows (harness run's default)")
    parser.add_argument("--sample-s", type=float, default=0.1, help="RSS sampling period (s)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--suite", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--results", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--events", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_run(args)
    if args.output is None:
        parser.error("--output is required")
    if args.kill_at is not None and not 0 < args.kill_at < 1:
        parser.error("--kill-at must be a fraction between 0 and 1")
    rehearse(args)
    print(f"wrote {args.output / 'rehearsal.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
