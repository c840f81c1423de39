"""Encoding speed: plain `SentenceTransformer.encode` (batch 32, fp32) against harness.encode.engines.FastEngine.

Both run in this process on the same real MS MARCO passages (the TREC DL 2019 pool), interleaved: every round
splits the passages into chunks and times each engine on each chunk in a shuffled order, so a noisy or shared
machine slows both alike. Reported: passages/s and tokens/s per engine (median over rounds), the ratio of
medians, and the median of the per-chunk paired ratios (the robust figure on a busy machine); for int8 (CPU)
and half precision also the cosine of its embeddings against the baseline's fp32 ones; and single-query
latency at batch 1 (p50/p99), the two engines alternating query by query.

    PYTHONPATH=. python benchmarks/encode.py                       # both models, CPU (and CUDA if present)
    PYTHONPATH=. python benchmarks/encode.py --model bundled:all-MiniLM-L6-v2 --n 512 --json out.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.encode.models import load_sentence_transformer  # noqa: E402
from harness.encode.engines import FastEngine  # noqa: E402
from harness.profile.timing import Latency, environment, synchronize  # noqa: E402

DL19 = REPO / "data" / "msmarco-trecdl2019-pool"
MODELS = ("bundled:all-MiniLM-L6-v2", "random:distilbert-base")
CORPORA = {"msmarco": DL19, "scifact": REPO / "data" / "scifact"}  # scifact: long abstracts (truncation)


def passages(n: int, seed: int = 0, corpus: Path = DL19) -> list[str]:
    with gzip.open(corpus / "corpus.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    texts = [(row.get("title", "") + " " + row["text"]).strip() for row in rows]
    rng = random.Random(seed)
    return [texts[i] for i in rng.sample(range(len(texts)), n)] if n <= len(texts) else \
        [texts[rng.randrange(len(texts))] for _ in range(n)]


def queries() -> list[str]:
    with open(DL19 / "queries.jsonl", encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line in handle]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def throughput(engines: dict, texts: list[str], *, rounds: int, chunk: int, device: str, seed: int = 0) -> dict:
    """Time every engine on every chunk of `texts`, `rounds` times, in a shuffled order per chunk."""
    rng = random.Random(seed)
    chunks = [texts[i:i + chunk] for i in range(0, len(texts), chunk)]
    seconds = {name: [] for name in engines}  # per round
    paired = {name: [] for name in engines}  # per chunk: baseline seconds / this engine's seconds
    tokens = {}
    for _ in range(rounds):
        spent = dict.fromkeys(engines, 0.0)
        for part in chunks:
            names = list(engines)
            rng.shuffle(names)
            taken = {}
            for name in names:
                synchronize(device)
                start = time.perf_counter()
                n_tokens = engines[name](part)
                synchronize(device)
                taken[name] = time.perf_counter() - start
                tokens.setdefault(name, {})[id(part)] = n_tokens
            for name in names:
                spent[name] += taken[name]
                paired[name].append(taken["baseline"] / taken[name])
        for name in engines:
            seconds[name].append(spent[name])
    result = {}
    base = float(np.median(seconds["baseline"]))
    for name in engines:
        median = float(np.median(seconds[name]))
        n_tokens = sum(tokens[name].values())
        result[name] = {
            "passages_per_s": len(texts) / median,
            "tokens_per_s": n_tokens / median,
            "seconds_per_round": seconds[name],
            "ratio": base / median,
            "paired_ratio_median": float(np.median(paired[name])),
            "paired_ratio_iqr": [float(np.percentile(paired[name], 25)), float(np.percentile(paired[name], 75))],
        }
    return result


def latency(calls: dict, texts: list[str], *, n: int, warmup: int, device: str) -> dict:
    """Single-text latency, the engines alternating text by text."""
    for i in range(warmup):
        for call in calls.values():
            call([texts[i % len(texts)]])
    values = {name: [] for name in calls}
    for i in range(n):
        text = [texts[i % len(texts)]]
        names = list(calls) if i % 2 == 0 else list(reversed(calls))
        for name in names:
            synchronize(device)
            start = time.perf_counter()
            calls[name](text)
            synchronize(device)
            values[name].append((time.perf_counter() - start) * 1000.0)
    return {name: Latency.from_values(v).summary() for name, v in values.items()}


def bench_model(name: str, device: str, args) -> dict:
    model = load_sentence_transformer(name, device=device)
    if args.max_seq_length:
        model.max_seq_length = args.max_seq_length
    texts = passages(args.n, seed=args.seed, corpus=CORPORA[args.texts])
    tokenizer = model.tokenizer

    def st_call(part):
        model.encode(part, batch_size=32, convert_to_numpy=True, show_progress_bar=False)
        return sum(min(len(ids), model.max_seq_length) for ids in tokenizer(part)["input_ids"])

    precisions = ["fp32", "int8", "bf16"] if device == "cpu" else ["fp32", "fp16", "bf16"]
    if args.precision:
        precisions = args.precision
    engines = {p: FastEngine(model, precision=p, device=device, threads=args.threads,
                             max_tokens=args.max_tokens) for p in precisions}
    calls = {"baseline": st_call}
    calls.update({f"fast-{p}": (lambda e: lambda part: e.encode(part).n_tokens)(e) for p, e in engines.items()})

    # quality against the baseline's fp32 embeddings, on the first chunk
    sample = texts[:min(len(texts), 128)]
    reference = model.encode(sample, batch_size=32, convert_to_numpy=True, show_progress_bar=False)
    quality = {}
    for precision, engine in engines.items():
        cos = cosines(engine.encode(sample).embeddings, reference)
        quality[f"fast-{precision}"] = {"cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
                                        "n": len(sample)}
    for call in calls.values():  # warm-up (allocators, oneDNN kernel creation, CUDA context)
        call(texts[:16])

    speed = throughput(calls, texts, rounds=args.rounds, chunk=args.chunk or len(texts), device=device,
                       seed=args.seed)
    lat_calls = {"baseline": lambda part: model.encode(part, batch_size=1, convert_to_numpy=True,
                                                       show_progress_bar=False),
                 "fast-fp32": engines.get("fp32", next(iter(engines.values()))).encode}
    lat = latency(lat_calls, queries(), n=args.latency_n, warmup=5, device=device)
    return {"model": name, "device": device, "texts": args.texts, "n_passages": len(texts),
            "max_seq_length": model.max_seq_length,
            "throughput": speed, "quality_vs_fp32_baseline": quality, "latency_ms": lat}


def print_table(results: list[dict]) -> None:
    print()
    print(f"{'model':28s} {'device':6s} {'engine':10s} {'passages/s':>11s} {'tokens/s':>10s} {'ratio':>6s} "
          f"{'paired':>7s} {'cos min':>8s} {'cos mean':>8s}")
    for res in results:
        for engine, fig in res["throughput"].items():
            q = res["quality_vs_fp32_baseline"].get(engine, {})
            print(f"{res['model'][-28:]:28s} {res['device']:6s} {engine:10s} {fig['passages_per_s']:11.1f} "
                  f"{fig['tokens_per_s']:10.0f} {fig['ratio']:6.2f} {fig['paired_ratio_median']:7.2f} "
                  f"{q.get('cosine_min', float('nan')):8.5f} {q.get('cosine_mean', float('nan')):8.5f}")
        for engine, lat in res["latency_ms"].items():
            print(f"{res['model'][-28:]:28s} {res['device']:6s} {engine:10s} single query: p50 {lat['p50']:.2f} ms, "
                  f"p99 {lat['p99']:.2f} ms (n={lat['n']})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", help=f"model (repeatable; default: {', '.join(MODELS)})")
    parser.add_argument("--n", type=int, default=512, help="passages per round (default 512)")
    parser.add_argument("--texts", choices=sorted(CORPORA), default="msmarco",
                        help="MS MARCO passages of the DL19 pool (default) or SciFact abstracts")
    parser.add_argument("--device", action="append", help="cpu / cuda (repeatable; default: cpu, and cuda if present)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=128, help="passages per timed call (0: all at once)")
    parser.add_argument("--precision", action="append", help="fast-engine precisions (default by device)")
    parser.add_argument("--threads", type=int, help="torch threads for the fast engine (default: torch's)")
    parser.add_argument("--max-tokens", type=int, help="fast-engine padded-token budget per batch")
    parser.add_argument("--max-seq-length", type=int)
    parser.add_argument("--latency-n", type=int, default=100, help="single-query calls per engine")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    results = []
    for device in devices:
        for name in args.model or MODELS:
            print(f"== {name} on {device}", flush=True)
            res = bench_model(name, device, args)
            results.append(res)
            print(json.dumps({k: v for k, v in res.items() if k != "throughput"}, indent=1)[:2000], flush=True)
    print_table(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"environment": environment(), "args": {k: str(v) for k, v in
                                                                                  vars(args).items()},
                                         "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
