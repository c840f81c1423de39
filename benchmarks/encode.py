"""Encoding speed: plain `SentenceTransformer.encode` against harness.encode.engines.FastEngine and the deployment
runtimes (ONNX Runtime, OpenVINO: harness.encode.runtimes), per precision.

Prints the CPU model and the ISA flags a speed ratio depends on (AVX-512, VNNI, bf16, AMX) first: the
ratios hold for that CPU only (oneDNN's gain over MKL differs by vendor and generation).

The sentence-transformers baseline gets its best batch size: for each of its precisions, a sweep over
`--st-batch-sizes` (default 16/32/64/128, best of two passes on the sample) picks the fastest, which the timed
rounds then use. The baselines: fp32; bf16 (a cast copy of the model, what a user would run); int8
(`torch.ao.quantization.quantize_dynamic` on the Linear layers of a copy, what a user would run; CPU only).
Ours is compared with ST fp32 *and* with ST at the same precision.

All engines run in this process on the same real MS MARCO passages (the TREC DL 2019 pool), interleaved:
every round splits the passages into chunks and times each engine on each chunk in a shuffled order, so a
noisy or shared machine slows all alike. Reported: passages/s and tokens/s per engine (median over rounds),
ratios of medians, and the median of the per-chunk paired ratios (the robust figure on a busy machine);
cosines of each engine's embeddings against ST fp32's; and single-query latency at batch 1 (p50/p99), all
engines alternating query by query. The runtimes (`--runtime`, default: those installed; `--runtime none` for
none) run at each precision they support (`ort-fp32`, `ort-int8`, `ov-fp32`, `ov-int8`, `ov-bf16`), CPU only, with
the fast engine's batching; only the transformer call differs.

    PYTHONPATH=. python benchmarks/encode.py                       # both models, CPU (and CUDA if present)
    PYTHONPATH=. python benchmarks/encode.py --model bundled:all-MiniLM-L6-v2 --n 256 --json out.json
    PYTHONPATH=. python benchmarks/encode.py --precision fp32 --precision int8 --runtime onnxruntime --runtime openvino
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import os
import random
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.encode.engines import FastEngine  # noqa: E402
from harness.encode.models import load_sentence_transformer  # noqa: E402
from harness.vocabulary.precision import RUNTIME_ENGINES, precision_problem  # noqa: E402
from harness.vocabulary.timing import Latency, cpu_model, environment, synchronize  # noqa: E402

DL19 = REPO / "data" / "msmarco-trecdl2019-pool"
MODELS = ("bundled:all-MiniLM-L6-v2", "random:distilbert-base")
CORPORA = {"msmarco": DL19, "scifact": REPO / "data" / "scifact"}  # scifact: long abstracts (truncation)
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
ST_BATCH_SIZES = (16, 32, 64, 128)
RUNTIME_PREFIX = {"onnxruntime": "ort", "openvino": "ov"}


def installed_runtimes() -> list[str]:
    import importlib.util

    return [name for name in RUNTIME_ENGINES if importlib.util.find_spec(name) is not None]


def cpu_isa() -> dict[str, bool]:
    """Which of the ISA extensions that decide CPU encoding speed this CPU has (from /proc/cpuinfo)."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = next((set(line.split(":", 1)[1].split()) for line in handle if line.startswith("flags")), set())
    except OSError:
        pass
    return {flag: flag in flags for flag in ISA_FLAGS}


def cpu_line() -> str:
    have = [flag for flag, present in cpu_isa().items() if present]
    missing = [flag for flag, present in cpu_isa().items() if not present]
    return (f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}); "
            f"ISA: {' '.join(have) or 'none of ' + ' '.join(ISA_FLAGS)}"
            + (f"; lacks: {' '.join(missing)}" if missing else ""))


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


def throughput(engines: dict, texts: list[str], tokens: list[int], *, rounds: int, chunk: int, device: str,
               reference: dict[str, str], seed: int = 0) -> dict:
    """Time every engine on every chunk of `texts`, `rounds` times, in a shuffled order per chunk.
    `tokens[i]`: tokens the model sees for text i (after truncation), counted once outside the timing.
    `reference[name]`: the engine `name` is compared with (paired, per chunk), besides "st-fp32"."""
    rng = random.Random(seed)
    starts = range(0, len(texts), chunk)
    seconds = {name: [] for name in engines}  # per round
    taken = {name: [] for name in engines}  # per (round, chunk)
    for _ in range(rounds):
        spent = dict.fromkeys(engines, 0.0)
        for start in starts:
            part = texts[start:start + chunk]
            names = list(engines)
            rng.shuffle(names)
            for name in names:
                synchronize(device)
                began = time.perf_counter()
                engines[name](part)
                synchronize(device)
                elapsed = time.perf_counter() - began
                spent[name] += elapsed
                taken[name].append(elapsed)
        for name in engines:
            seconds[name].append(spent[name])
    median = {name: float(np.median(v)) for name, v in seconds.items()}

    def paired(control: str, name: str) -> list[float]:
        return [c / t for c, t in zip(taken[control], taken[name])]

    result = {}
    for name in engines:
        same = reference.get(name, "st-fp32")
        vs_fp32, vs_same = paired("st-fp32", name), paired(same, name)
        result[name] = {
            "passages_per_s": len(texts) / median[name],
            "tokens_per_s": sum(tokens) / median[name],
            "seconds_per_round": seconds[name],
            "ratio_vs_st_fp32": median["st-fp32"] / median[name],
            "paired_vs_st_fp32": float(np.median(vs_fp32)),
            "paired_vs_st_fp32_iqr": [float(np.percentile(vs_fp32, 25)), float(np.percentile(vs_fp32, 75))],
            "same_precision_st": same,
            "ratio_vs_same_precision_st": median[same] / median[name],
            "paired_vs_same_precision_st": float(np.median(vs_same)),
        }
    return result


def st_model_at(model, precision: str):
    """The model as a sentence-transformers user would run it at `precision`: fp32 as loaded, fp16/bf16 a cast
    copy, int8 a copy with dynamically quantised Linear layers (torch's defaults)."""
    if precision == "fp32":
        return model
    if precision in ("fp16", "bf16"):
        return copy.deepcopy(model).to({"fp16": torch.float16, "bf16": torch.bfloat16}[precision])
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch.ao dynamic quantization is deprecated in favour of torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)


def best_batch_size(st_model, texts: list[str], sizes: tuple[int, ...], device: str) -> tuple[int, dict[int, float]]:
    """The batch size at which `st_model.encode` is fastest on `texts` (best of two passes each)."""
    rates: dict[int, float] = {}
    for size in sizes:
        st_model.encode(texts[:size], batch_size=size, show_progress_bar=False)  # warm-up
        for _ in range(2):
            synchronize(device)
            began = time.perf_counter()
            st_model.encode(texts, batch_size=size, convert_to_numpy=True, show_progress_bar=False)
            synchronize(device)
            rates[size] = max(rates.get(size, 0.0), len(texts) / (time.perf_counter() - began))
    return max(rates, key=rates.get), rates


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
    tokens = [min(len(ids), model.max_seq_length) for ids in model.tokenizer(texts)["input_ids"]]

    precisions = ["fp32", "int8", "bf16"] if device == "cpu" else ["fp32", "fp16", "bf16"]
    if args.precision:
        precisions = args.precision
    fast = {p: FastEngine(model, precision=p, device=device, threads=args.threads, max_tokens=args.max_tokens)
            for p in precisions}
    runtimes = {}
    if device == "cpu":
        from harness.encode.runtimes import ENGINE_CLASSES

        for runtime in args.runtime:
            for p in precisions:
                if precision_problem(p, engine=runtime, device=device) is None:
                    runtimes[f"{RUNTIME_PREFIX[runtime]}-{p}"] = ENGINE_CLASSES[runtime](
                        model, precision=p, threads=args.threads, max_tokens=args.max_tokens)

    # The baseline at each precision, at its best batch size (swept on a sample).
    sample = texts[:min(len(texts), args.sweep_n)]
    st_models, st_batch, st_sweep = {}, {}, {}
    for precision in dict.fromkeys(["fp32", *precisions]):
        if precision == "int8" and device != "cpu":
            continue
        st_models[precision] = st_model_at(model, precision)
        st_batch[precision], st_sweep[precision] = best_batch_size(st_models[precision], sample,
                                                                   tuple(args.st_batch_sizes), device)
        rates = ", ".join(f"b{b} {r:.1f}" for b, r in st_sweep[precision].items())
        print(f"  ST {precision} batch sweep (passages/s on {len(sample)}): {rates} -> batch {st_batch[precision]}",
              flush=True)

    def st_call(st, batch):
        return lambda part: st.encode(part, batch_size=batch, convert_to_numpy=True, show_progress_bar=False)

    calls = {f"st-{p}": st_call(st_models[p], st_batch[p]) for p in st_models}
    calls.update({f"fast-{p}": (lambda engine: lambda part: engine.encode(part))(e) for p, e in fast.items()})
    calls.update({name: (lambda engine: lambda part: engine.encode(part))(e) for name, e in runtimes.items()})
    reference = {f"fast-{p}": f"st-{p}" for p in fast if p in st_models}
    reference.update({name: f"st-{e.precision}" for name, e in runtimes.items() if e.precision in st_models})

    # quality against the baseline's fp32 embeddings, on the first chunk
    sample = texts[:min(len(texts), 128)]
    expected = calls["st-fp32"](sample)
    quality = {}
    for engine, call in calls.items():
        result = call(sample)
        cos = cosines(result.embeddings if hasattr(result, "embeddings") else np.asarray(result, np.float32),
                      expected)
        quality[engine] = {"cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()), "n": len(sample)}
    for call in calls.values():  # warm-up (allocators, oneDNN kernel creation, CUDA context)
        call(texts[:16])

    speed = throughput(calls, texts, tokens, rounds=args.rounds, chunk=args.chunk or len(texts), device=device,
                       reference=reference, seed=args.seed)
    lat_calls = {"st-fp32": lambda part: model.encode(part, batch_size=1, convert_to_numpy=True,
                                                      show_progress_bar=False),
                 **{f"fast-{p}": e.encode for p, e in fast.items() if p in ("fp32", "int8")},
                 **{name: e.encode for name, e in runtimes.items()}}
    lat = latency(lat_calls, queries(), n=args.latency_n, warmup=5, device=device)
    return {"model": name, "device": device, "cpu": cpu_model(), "isa": cpu_isa(), "texts": args.texts,
            "n_passages": len(texts), "max_seq_length": model.max_seq_length,
            "int8_path": fast["int8"].int8_path if "int8" in fast else None,
            "runtimes": {name: e.runtime_info for name, e in runtimes.items()},
            "st_batch_size": st_batch, "st_batch_sweep": st_sweep,
            "throughput": speed, "quality_vs_st_fp32": quality, "latency_ms": lat}


def print_table(results: list[dict]) -> None:
    print()
    print(cpu_line())
    print(f"{'model':28s} {'device':6s} {'engine':10s} {'batch':>5s} {'passages/s':>11s} {'tokens/s':>9s} "
          f"{'vs ST fp32':>10s} {'paired':>7s} {'vs ST same':>10s} {'paired':>7s} {'cos min':>8s} {'cos mean':>8s}")
    for res in results:
        for engine, fig in res["throughput"].items():
            q = res["quality_vs_st_fp32"].get(engine, {})
            batch = str(res["st_batch_size"].get(engine.removeprefix("st-"), "")) if engine.startswith("st-") else "tok"
            same = (f"{fig['ratio_vs_same_precision_st']:10.2f} {fig['paired_vs_same_precision_st']:7.2f}"
                    if not engine.startswith("st-") and fig["same_precision_st"] != "st-fp32" else f"{'':10s} {'':7s}")
            print(f"{res['model'][-28:]:28s} {res['device']:6s} {engine:10s} {batch:>5s} {fig['passages_per_s']:11.1f} "
                  f"{fig['tokens_per_s']:9.0f} {fig['ratio_vs_st_fp32']:10.2f} {fig['paired_vs_st_fp32']:7.2f} {same} "
                  f"{q.get('cosine_min', float('nan')):8.5f} {q.get('cosine_mean', float('nan')):8.5f}")
        for engine, lat in res["latency_ms"].items():
            print(f"{res['model'][-28:]:28s} {res['device']:6s} {engine:10s} single query: p50 {lat['p50']:.2f} ms, "
                  f"p99 {lat['p99']:.2f} ms (n={lat['n']})")
        if res.get("int8_path"):
            print(f"{res['model'][-28:]:28s} fast-int8 kernel path: {res['int8_path']}")
        for engine, info in res.get("runtimes", {}).items():
            print(f"{res['model'][-28:]:28s} {engine}: {info['runtime']}, {info['execution_provider']}, "
                  f"{info['threads']} threads")


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
    parser.add_argument("--threads", type=int, help="threads for the fast engine and the runtimes (default: torch's)")
    parser.add_argument("--runtime", action="append", choices=[*RUNTIME_ENGINES, "none"],
                        help="deployment runtimes to add (repeatable; default: those installed; none: no runtime)")
    parser.add_argument("--max-tokens", type=int, help="fast-engine padded-token budget per batch")
    parser.add_argument("--max-seq-length", type=int)
    parser.add_argument("--latency-n", type=int, default=100, help="single-query calls per engine")
    parser.add_argument("--st-batch-sizes", type=int, nargs="+", default=list(ST_BATCH_SIZES),
                        help="batch sizes swept for the sentence-transformers baseline (default 16 32 64 128)")
    parser.add_argument("--sweep-n", type=int, default=256, help="passages of the baseline's batch-size sweep")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    args.runtime = [r for r in (args.runtime or installed_runtimes()) if r != "none"]
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(cpu_line(), flush=True)
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
