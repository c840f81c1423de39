"""One GPU session's checks and timings for the fast engine (issue 3), each stage guarded and time-boxed.

Stages, in order (a failing stage is recorded and the rest still run; JSON is rewritten after each):
  correctness   ours fp32 vs SentenceTransformer.encode fp32 (cosine per vector), ours fp16/bf16 vs that fp32
  tokenization  passages/s: the HF tokenizer call (the anchor's method), our TextTokenizer, spawn pool
  latency       single query at batch 1, p50/p99: ST vs ours fp32/bf16, alternating query by query
  e2e           text in -> fp16 .npy on disk, random:distilbert-base on replicated DL19 passages: ours
                bf16/fp16 (whole run) and ST fp32 batch 32 / fp16 batch 256 (on a subset), same process
  forward       model forward only, pre-tokenised, length-sorted, rows per batch 512/2048/8192: bf16 eager
                and torch.compile(dynamic=True); TFLOP/s and MFU against the card's *datasheet* dense bf16
                peak (`harness.pipeline.sweep.datasheet_peak`: H100 SXM 989 TFLOP/s); useful FLOPs as
                `harness profile` counts them (`forward_flops`: 2 x non-embedding params x real tokens + attention)
  topk          harness.search.exact.exact_top_k, top-1000 over 8,841,823 x 768 fp16 (random) with 6,980 queries

    PYTHONPATH=. python benchmarks/gpu_check.py --out $OUT          # on the GPU machine (benchmarks/gpu.sh)
    PYTHONPATH=. python benchmarks/gpu_check.py --device cpu --small  # here: runs every code path, tiny sizes
"""

from __future__ import annotations

import argparse
import copy
import gc
import gzip
import json
import os
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.encode.engines import Batch, FastEngine  # noqa: E402
from harness.encode.models import load_sentence_transformer  # noqa: E402
from harness.encode.tokenize import TextTokenizer, pad_batch  # noqa: E402
from harness.pipeline.sweep import datasheet_peak, forward_flops  # noqa: E402
from harness.vocabulary.timing import Latency, environment, synchronize  # noqa: E402

from encode import cosines, queries  # noqa: E402  (benchmarks/encode.py, next to this file)

DL19 = REPO / "data" / "msmarco-trecdl2019-pool"
MINILM, DISTILBERT = "bundled:all-MiniLM-L6-v2", "random:distilbert-base"
MEASURED_CEILING = 783e12  # DESIGN.md anchor: H100 dense bf16 matmul ceiling measured 2026-11-26


def dl19_passages() -> list[str]:
    with gzip.open(DL19 / "corpus.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    return [(row.get("title", "") + " " + row["text"]).strip() for row in rows]


def replicated(texts: list[str], n: int, seed: int = 0) -> list[str]:
    """n MS MARCO-length passages: the pool repeated and shuffled."""
    out = (texts * (n // len(texts) + 1))[:n]
    random.Random(seed).shuffle(out)
    return out


def load(name: str, device: str):
    """The model; the bundled MiniLM falls back to random:minilm-l6 (same architecture) where its weights
    did not travel (benchmarks/gpu.sh carries only its tokenizer files)."""
    try:
        return name, load_sentence_transformer(name, device=device)
    except Exception as exc:  # noqa: BLE001
        if name != MINILM:
            raise
        print(f"{name} unavailable ({str(exc)[:200]}); using random:minilm-l6", flush=True)
        return "random:minilm-l6", load_sentence_transformer("random:minilm-l6", device=device)


def free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


class Session:
    def __init__(self, args):
        self.args = args
        self.device = args.device
        self.started = time.perf_counter()
        self.results: dict = {"environment": environment(), "device": args.device, "small": args.small,
                              "stages": {}}
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self._passages: list[str] | None = None

    @property
    def passages(self) -> list[str]:
        if self._passages is None:
            self._passages = dl19_passages()
        return self._passages

    def left(self) -> float:
        return self.args.budget_s - (time.perf_counter() - self.started)

    def stage(self, name: str, fn, *, needs_s: float) -> None:
        if self.left() < needs_s:
            self.results["stages"][name] = {"ok": False, "skipped": f"only {self.left():.0f}s of the budget left"}
            print(f"-- {name}: skipped ({self.left():.0f}s left, needs ~{needs_s:.0f}s)", flush=True)
            self.save()
            return
        print(f"-- {name} ({self.left():.0f}s left)", flush=True)
        start = time.perf_counter()
        try:
            data = fn()
            self.results["stages"][name] = {"ok": True, "seconds": time.perf_counter() - start, **data}
        except Exception as exc:  # noqa: BLE001 -- one failing stage must not lose the others
            traceback.print_exc()
            self.results["stages"][name] = {"ok": False, "seconds": time.perf_counter() - start,
                                            "error": f"{type(exc).__name__}: {exc}"}
        free(self.device)
        print(json.dumps(self.results["stages"][name], default=str)[:1500], flush=True)
        self.save()

    def save(self) -> None:
        (self.out / "gpu_check.json").write_text(json.dumps(self.results, indent=1, default=str))


# -- stages --------------------------------------------------------------------------------------------------

def stage_correctness(s: Session) -> dict:
    n = 32 if s.args.small else 512
    texts = replicated(s.passages, n, seed=1)
    halves = ["fp16", "bf16"] if s.device != "cpu" else ["bf16"]
    out = {}
    for name in (MINILM, DISTILBERT):
        name, model = load(name, s.device)
        reference = model.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False)
        row = {}
        for precision in ["fp32", *halves]:
            result = FastEngine(model, precision=precision, device=s.device).encode(texts)
            cos = cosines(result.embeddings, reference)
            row[precision] = {"cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
                              "bar": 0.99999 if precision == "fp32" else 0.999,
                              "pass": bool(cos.min() >= (0.99999 if precision == "fp32" else 0.999))}
        out[name] = row
        del model
        free(s.device)
    return {"n_texts": n, "models": out}


def _tokenize_shard(args):
    tokenizer_dir, texts = args
    from transformers import AutoTokenizer

    block = TextTokenizer(AutoTokenizer.from_pretrained(tokenizer_dir))(texts)
    return block.ids.astype(np.int32), block.offsets


def stage_tokenization(s: Session) -> dict:
    n = 4000 if s.args.small else 145_810
    texts = replicated(s.passages, n)
    model = load_sentence_transformer(DISTILBERT, device="cpu")
    tokenizer = model.tokenizer
    ours = TextTokenizer(tokenizer)
    out = {"n_texts": n, "cpu_count": os.cpu_count(),
           "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM")}
    methods = {
        "hf_call": lambda: tokenizer(texts, truncation=True, max_length=512)["input_ids"],
        "ours_one_call": lambda: ours(texts),
        "ours_blocks_65536": lambda: [ours(texts[i:i + 65536]) for i in range(0, n, 65536)],
    }
    ours(texts[:100])
    for name, fn in methods.items():
        times = []
        for _ in range(2):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        out[name] = {"passages_per_s": n / min(times), "seconds": times}
    # a spawn process pool (never fork after the tokenizer's threads ran), warm, one shard per worker
    import multiprocessing as mp

    workers = max(1, min(16, (os.cpu_count() or 2) - 1))
    tokenizer_dir = str(Path(model[0].tokenizer.name_or_path))
    shards = [texts[i::workers] for i in range(workers)]
    with mp.get_context("spawn").Pool(workers) as pool:
        pool.map(_tokenize_shard, [(tokenizer_dir, shard[:50]) for shard in shards])  # warm: imports
        start = time.perf_counter()
        pool.map(_tokenize_shard, [(tokenizer_dir, shard) for shard in shards])
        out[f"spawn_pool_{workers}"] = {"passages_per_s": n / (time.perf_counter() - start)}
    return out


def stage_latency(s: Session) -> dict:
    texts = queries()
    n = 20 if s.args.small else 300
    out = {"n_calls": n}
    for name in (DISTILBERT, MINILM):
        name, model = load(name, s.device)
        calls = {"st_fp32": lambda q, m=model: m.encode(q, batch_size=1, convert_to_numpy=True,
                                                           show_progress_bar=False)}
        for precision in ["fp32"] + (["bf16", "fp16"] if s.device != "cpu" else []):
            calls[f"ours_{precision}"] = FastEngine(model, precision=precision, device=s.device).encode
        for i in range(10):
            for call in calls.values():
                call([texts[i % len(texts)]])
        values = {k: [] for k in calls}
        for i in range(n):
            names = list(calls) if i % 2 == 0 else list(reversed(calls))
            for key in names:
                synchronize(s.device)
                start = time.perf_counter()
                calls[key]([texts[i % len(texts)]])
                synchronize(s.device)
                values[key].append((time.perf_counter() - start) * 1000)
        out[name] = {k: Latency.from_values(v).summary() for k, v in values.items()}
        del model, calls
        free(s.device)
    return out


def stage_e2e(s: Session) -> dict:
    n = 3000 if s.args.small else s.args.e2e_n
    n_st = 300 if s.args.small else 16_384
    texts = replicated(s.passages, n, seed=2)
    model = load_sentence_transformer(DISTILBERT, device=s.device)
    out = {"n_texts": n, "n_texts_st": n_st, "model": DISTILBERT}
    # (label, precision, max_tokens): the default budget (~3,300 passages a batch) and a 2.5x larger one
    variants = [("bf16", "bf16", None), ("fp16", "fp16", None), ("bf16_655k", "bf16", 655_360)]
    if s.device == "cpu":
        variants = [("fp32", "fp32", None)]
    precisions = [label for label, _, _ in variants]
    with tempfile.TemporaryDirectory() as tmp:  # never under $OUT: the embeddings are hundreds of MB
        for label, precision, max_tokens in variants:
            engine = FastEngine(model, precision=precision, device=s.device, max_tokens=max_tokens)
            engine.encode(texts[:2048])  # warm-up: kernels, allocator, pinned pool
            synchronize(s.device)
            start = time.perf_counter()
            result = engine.encode(texts)
            encoded = time.perf_counter() - start
            np.save(Path(tmp) / f"{label}.npy", result.embeddings.astype(np.float16))
            total = time.perf_counter() - start
            out[f"ours_{label}"] = {"max_tokens": engine.max_tokens, "passages_per_s": n / total,
                                    "tokens_per_s": result.n_tokens / total, "seconds": total,
                                    "seconds_to_host_fp32": encoded, "mean_tokens": result.n_tokens / n}
            del engine, result
            free(s.device)
        subset = texts[:n_st]
        for label, st_model, batch in (("st_fp32_b32", model, 32), ("st_fp16_b256", None, 256)):
            if st_model is None:
                if s.device == "cpu":
                    continue
                st_model = copy.deepcopy(model).half()
            st_model.encode(subset[:256], batch_size=batch, show_progress_bar=False)
            synchronize(s.device)
            start = time.perf_counter()
            emb = st_model.encode(subset, batch_size=batch, convert_to_numpy=True, show_progress_bar=False)
            np.save(Path(tmp) / f"{label}.npy", emb.astype(np.float16))
            total = time.perf_counter() - start
            out[label] = {"passages_per_s": n_st / total, "seconds": total}
            if st_model is not model:
                del st_model
            free(s.device)
    for precision in precisions:
        out[f"ours_{precision}"]["ratio_vs_st_fp32_b32"] = (out[f"ours_{precision}"]["passages_per_s"]
                                                           / out["st_fp32_b32"]["passages_per_s"])
    return out


def stage_forward(s: Session) -> dict:
    n = 512 if s.args.small else 65_536
    sizes = [64, 256] if s.args.small else [512, 2048, 8192]
    precision = "bf16" if s.device != "cpu" else "fp32"
    texts = replicated(s.passages, n, seed=3)
    model = load_sentence_transformer(DISTILBERT, device=s.device)
    tokens = TextTokenizer(model.tokenizer)(texts)
    lengths = tokens.lengths
    order = np.argsort(-lengths, kind="stable")
    flops = forward_flops(model, lengths)
    peak = datasheet_peak(s.device)  # (TFLOP/s, which card) or None on CPU / an unknown card
    out = {"n_texts": n, "precision": precision, "mean_tokens": float(lengths.mean()),
           "peak_tflops_datasheet": peak[0] if peak else None, "peak_source": peak[1] if peak else None,
           "useful_tflop_per_pass": flops / 1e12}

    def batches_of(rows_per_batch: int) -> list[Batch]:
        made = []
        for start in range(0, n, rows_per_batch):
            rows = order[start:start + rows_per_batch]
            ids, mask = pad_batch(tokens, rows, int(model.tokenizer.pad_token_id or 0))
            made.append(Batch(rows, torch.from_numpy(ids).to(s.device), torch.from_numpy(mask).to(s.device),
                              None, int(lengths[rows].sum())))
        return made

    def timed(engine: FastEngine, batches: list[Batch], reps: int) -> float:
        with torch.inference_mode():
            for batch in batches[:2]:
                engine._forward(batch)
            times = []
            for _ in range(reps):
                synchronize(s.device)
                start = time.perf_counter()
                for batch in batches:
                    engine._forward(batch)
                synchronize(s.device)
                times.append(time.perf_counter() - start)
        return float(np.median(times))

    def record(label: str, seconds: float, padded: int) -> None:
        out[label] = {"passages_per_s": n / seconds, "seconds": seconds, "tflops": flops / seconds / 1e12,
                      "mfu_datasheet": flops / seconds / (peak[0] * 1e12) if peak else None,
                      "fraction_of_measured_ceiling": flops / seconds / MEASURED_CEILING,
                      "padding_fraction": 1 - int(lengths.sum()) / padded}

    eager = FastEngine(model, precision=precision, device=s.device)
    for size in sizes:
        batches = batches_of(size)
        padded = sum(b.input_ids.numel() for b in batches)
        record(f"eager_b{size}", timed(eager, batches, reps=3), padded)
        del batches
    del eager
    free(s.device)
    if s.args.compile and s.left() > 150:
        compiled = FastEngine(model, precision=precision, device=s.device, compile=True)
        for size in sizes[1:]:
            batches = batches_of(size)
            padded = sum(b.input_ids.numel() for b in batches)
            start = time.perf_counter()
            with torch.inference_mode():
                for batch in batches[:3]:  # compile (first shapes), then the dynamic graph
                    compiled._forward(batch)
            synchronize(s.device)
            out[f"compile_warmup_b{size}_s"] = time.perf_counter() - start
            record(f"compiled_b{size}", timed(compiled, batches, reps=3), padded)
            del batches
            if s.left() < 90:
                break
    else:
        out["compiled"] = "skipped (--no-compile or too little time left)"
    return out


def stage_topk(s: Session) -> dict:
    from harness.search.exact import exact_top_k

    docs, n_queries, dim, k = (50_000, 64, 768, 1000) if s.args.small else (8_841_823, 6_980, 768, 1000)
    generator = torch.Generator(device=s.device).manual_seed(0)
    corpus = torch.empty((docs, dim), dtype=torch.float16, device=s.device)
    for start in range(0, docs, 1_000_000):
        rows = min(1_000_000, docs - start)
        corpus[start:start + rows] = torch.randn((rows, dim), generator=generator, device=s.device,
                                                 dtype=torch.float32).to(torch.float16)
    queries = torch.randn((n_queries, dim), generator=generator, device=s.device, dtype=torch.float32)
    out = {"docs": docs, "queries": n_queries, "dim": dim, "k": k, "corpus": "torch fp16 on the device"}

    def run(label: str, fn, reps: int = 3) -> None:
        fn()
        times = []
        for _ in range(reps):
            synchronize(s.device)
            start = time.perf_counter()
            fn()
            synchronize(s.device)
            times.append(time.perf_counter() - start)
        out[label] = {"seconds_median": float(np.median(times)), "seconds": times}

    run("exact_top_k", lambda: exact_top_k(queries, corpus, k, device=s.device))
    if s.device != "cpu":
        before = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            run("exact_top_k_tf32", lambda: exact_top_k(queries, corpus, k, device=s.device))
        finally:
            torch.backends.cuda.matmul.allow_tf32 = before

    def naive_fp16() -> None:  # the anchor's method: fp16 matmul per chunk + topk, then merge
        q = queries.to(corpus.dtype)
        values, indices = [], []
        for start in range(0, docs, 262_144):
            scores = q @ corpus[start:start + 262_144].T
            v, i = torch.topk(scores, min(k, scores.shape[1]), dim=1)
            values.append(v.float())
            indices.append(i + start)
        v, i = torch.topk(torch.cat(values, dim=1), k, dim=1)
        torch.cat(indices, dim=1).gather(1, i).cpu()

    if s.device != "cpu":
        run("naive_fp16_chunked", naive_fp16)
    return out  # the corpus (13.6 GB on the device at full size) is freed with this frame


def print_table(results: dict) -> None:
    st = results["stages"]
    rows = []

    def get(stage, *keys):
        value = st.get(stage, {})
        for key in keys:
            value = value.get(key, {}) if isinstance(value, dict) else {}
        return value if isinstance(value, (int, float)) else None

    gpu = (results["environment"].get("gpu") or {}).get("name", "cpu")
    for stage, data in st.items():
        if not data.get("ok"):
            rows.append((stage, "FAILED/SKIPPED", data.get("error") or data.get("skipped", "")))
    for name, row in (st.get("correctness", {}).get("models") or {}).items():
        for precision, figures in row.items():
            rows.append((f"cos {name.split(':')[-1]} {precision}",
                         f"min {figures['cosine_min']:.6f}", "pass" if figures["pass"] else "FAIL"))
    for key in ("hf_call", "ours_one_call", "ours_blocks_65536"):
        value = get("tokenization", key, "passages_per_s")
        if value:
            rows.append((f"tokenize {key}", f"{value:,.0f} p/s", "target >= 60,000"))
    for key, value in st.get("tokenization", {}).items():
        if key.startswith("spawn_pool") and isinstance(value, dict):
            rows.append((f"tokenize {key}", f"{value['passages_per_s']:,.0f} p/s", ""))
    for key in ("ours_bf16", "ours_fp16", "ours_bf16_655k", "ours_fp32", "st_fp32_b32", "st_fp16_b256"):
        value = get("e2e", key, "passages_per_s")
        if value:
            ratio = get("e2e", key, "ratio_vs_st_fp32_b32")
            rows.append((f"e2e text->disk {key}", f"{value:,.0f} p/s",
                         f"{ratio:.1f}x ST" if ratio else ("target >= 50,000" if key.startswith("ours") else "")))
    for key, value in st.get("forward", {}).items():
        if isinstance(value, dict) and "passages_per_s" in value:
            rows.append((f"forward {key}", f"{value['passages_per_s']:,.0f} p/s",
                         f"{value['tflops']:.0f} TFLOP/s"
                         + (f", MFU {value['mfu_datasheet']:.1%} (datasheet)" if value["mfu_datasheet"] else "")))
    for model, lat in (st.get("latency") or {}).items():
        if isinstance(lat, dict) and "st_fp32" in lat:
            for key, figures in lat.items():
                rows.append((f"latency {model.split(':')[-1]} {key}", f"p50 {figures['p50']:.2f} ms",
                             f"p99 {figures['p99']:.2f} ms"))
    for key in ("exact_top_k", "exact_top_k_tf32", "naive_fp16_chunked"):
        value = get("topk", key, "seconds_median")
        if value:
            rows.append((f"top-1000 {key}", f"{value:.3f} s", "target <= 0.3 s"))
    print(f"\n== {gpu}")
    width = max((len(r[0]) for r in rows), default=10)
    for name, figure, note in rows:
        print(f"{name:{width}s}  {figure:>18s}  {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--small", action="store_true", help="tiny sizes: a code-path check, not a benchmark")
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpu-check-out", help="folder for gpu_check.json")
    parser.add_argument("--budget-s", type=float, default=450.0, help="skip stages once this is spent")
    parser.add_argument("--e2e-n", type=int, default=145_810, help="passages for the end-to-end run")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--stages", default="correctness,latency,e2e,forward,tokenization,topk")
    args = parser.parse_args(argv)
    session = Session(args)
    print(json.dumps(session.results["environment"], default=str), flush=True)
    stages = {"correctness": (stage_correctness, 20), "tokenization": (stage_tokenization, 30),
              "latency": (stage_latency, 20), "e2e": (stage_e2e, 40), "forward": (stage_forward, 40),
              "topk": (stage_topk, 30)}
    for name in args.stages.split(","):
        fn, needs = stages[name]
        session.stage(name, lambda fn=fn: fn(session), needs_s=needs)
    session.results["total_seconds"] = time.perf_counter() - session.started
    session.save()
    print_table(session.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
