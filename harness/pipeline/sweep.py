"""`harness profile`: sweep engine x precision x batch size x max_seq_length x device for an encoder.

Every point times calls that each encode one batch of `batch_size` texts (warm-up first, then until
both a minimum number of calls and a minimum duration are reached) and keeps the raw latencies;
throughput follows from them. Texts are real passages of a data set or length-controlled synthetic
text. On CUDA each point also reports achieved TFLOP/s and MFU against the card's datasheet dense
bf16 peak.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar, cast

import numpy as np
import torch

from harness.encode.engines import SentenceTransformersEngine, count_tokens
from harness.encode.models import (
    load_sentence_transformer,
    make_engine,
    position_limit,
    resolve_device,
    weights_fingerprint,
)
from harness.input.suite import EncoderSpec
from harness.scoring.records import ProfilePoint, ProfileRecord
from harness.vocabulary import timing
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.precision import precision_problem
from harness.vocabulary.tables import fmt_num, text_table
from harness.vocabulary.timing import utc_now

T = TypeVar("T")

# Datasheet dense bf16 TFLOP/s (no sparsity), matched against torch's device name.
DATASHEET_BF16_TFLOPS = {"H200": 989.4, "H100 SXM": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.4,
                         "A100": 312.0, "L40S": 362.1, "L4": 121.0, "A10G": 70.0, "A10": 125.0, "T4": 65.0}

# Common English words that are one WordPiece each, for length-controlled synthetic text.
_WORDS = ("the of and to in is was for on that with as by at from his an were are which this be has had it "
          "not or have their one first also new after who its but two been other when time there all during "
          "into school year city more over can most some may these would such only used than up them he she "
          "world state where later both between under while well made part since many national team about "
          "through being people known three could group until before each film high called area season "
          "water south north east west music game river public early life home house series war").split()


def synthetic_texts(n: int, tokens: int, *, seed: int = 0) -> list[str]:
    """n texts of exactly `tokens` WordPiece tokens each with [CLS]/[SEP] (uncased BERT vocabulary)."""
    if tokens < 3:
        raise HarnessError("synthetic text needs at least 3 tokens ([CLS] word [SEP])")
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(tokens - 2)) for _ in range(n)]


def dataset_texts(path: Path, n: int, *, seed: int = 0) -> list[str]:
    """n passages drawn (seeded, uniformly) from a BEIR folder or a collection.tsv in one pass: a reservoir
    sample, so memory holds n texts whatever the corpus size (all of them, shuffled, if it has fewer)."""
    from harness.input.datasets import iter_corpus_texts

    texts = reservoir_sample(iter_corpus_texts(path), n, seed=seed)
    if not texts:
        raise HarnessError(f"{path}: the corpus is empty")
    return texts


def reservoir_sample(items: Iterable[T], n: int, *, seed: int = 0) -> list[T]:
    """A uniform sample of n items of a stream, in one pass holding n items (Li's algorithm L: skips are drawn
    geometrically, so the cost per item skipped is one counter step). Seeded; returned in random order."""
    rng = random.Random(seed)
    u = lambda: rng.random() or 5e-324  # noqa: E731  (log needs u > 0)
    it = iter(items)
    sample = list(itertools.islice(it, n))
    if n <= 0:
        return []
    if len(sample) == n:
        w = math.exp(math.log(u()) / n)
        while True:
            skip = int(math.log(u()) / math.log(1 - w))
            nxt = next(itertools.islice(it, skip, None), _END)
            if nxt is _END:
                break
            sample[rng.randrange(n)] = cast(T, nxt)  # not the _END sentinel: an item
            w *= math.exp(math.log(u()) / n)
    rng.shuffle(sample)
    return sample


_END = object()


def datasheet_peak(device: str) -> tuple[float, str] | None:
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(0)
    for key, peak in DATASHEET_BF16_TFLOPS.items():
        if key in name:
            return peak, f"{name}: datasheet dense bf16 {peak} TFLOP/s"
    return None


def forward_flops(model, lengths: Sequence[int] | np.ndarray) -> float:
    """Useful forward FLOPs of a transformer encoder for texts of `lengths` real tokens (padding excluded):
    2 x non-embedding parameters per token, plus attention (QK^T and AV: 4 x layers x hidden per token pair)."""
    net = model[0].auto_model
    config = net.config
    params = sum(p.numel() for name, p in net.named_parameters() if "embeddings" not in name)
    hidden = getattr(config, "hidden_size", None) or config.dim
    layers = getattr(config, "num_hidden_layers", None) or config.n_layers
    tokens = np.asarray(lengths, dtype=np.float64)
    return float(2 * params * tokens.sum() + 4 * layers * hidden * (tokens**2).sum())


def profile_model(
    model_name: str,
    texts: Sequence[str],
    *,
    engines: Sequence[str] = ("sentence-transformers", "fast"),
    precisions: Sequence[str] = ("fp32",),
    batch_sizes: Sequence[int] = (1, 32),
    max_seq_lengths: Sequence[int | None] = (None,),
    devices: Sequence[str] = ("auto",),
    warmup: int = 2,
    min_calls: int = 5,
    min_seconds: float = 2.0,
    max_seconds: float = 60.0,
    on_point: Callable[[ProfilePoint], None] | None = None,
    on_skip: Callable[[str], None] | None = None,
) -> tuple[dict[str, object], list[ProfilePoint]]:
    """Profile one model over the sweep; returns (model info, points). Combinations that cannot run
    (`precision_problem`: int8 outside the fast engine on CPU) are left out, each reported to `on_skip`."""
    if not texts:
        raise HarnessError("profile needs at least one text")
    points = []
    info: dict[str, object] = {"model": model_name}
    for device in dict.fromkeys(resolve_device(d) for d in devices):
        model = load_sentence_transformer(model_name, device=device)
        info.setdefault("fingerprint", weights_fingerprint(model))
        default_length = int(model.max_seq_length)
        limit = position_limit(model)
        too_long = [n for n in max_seq_lengths if n and limit is not None and n > limit]
        if too_long:
            raise HarnessError(f"--max-seq-length {too_long[0]}: model {model_name!r} has positions for {limit} "
                               f"tokens; give lengths up to {limit}")
        peak = datasheet_peak(device)
        for max_len, engine, precision, batch_size in itertools.product(
                max_seq_lengths, engines, precisions, batch_sizes):
            length = max_len or default_length
            model.max_seq_length = length
            problem = precision_problem(precision, engine=engine, device=device)
            if problem:
                if on_skip:
                    on_skip(problem)
                continue
            spec = EncoderSpec(name="profile", model=model_name, engine=engine, precision=precision,
                               batch_size=batch_size, device="cpu" if device == "cpu" else "cuda")
            encoder = make_engine(model, spec, device)
            point = _measure(encoder, model, texts, engine=engine, precision=precision, batch_size=batch_size,
                             length=length, device=device, peak=peak, warmup=warmup, min_calls=min_calls,
                             min_seconds=min_seconds, max_seconds=max_seconds)
            points.append(point)
            if on_point:
                on_point(point)
        del model
    return info, points


def _measure(encoder, model, texts, *, engine, precision, batch_size, length, device, peak, warmup, min_calls,
             min_seconds, max_seconds) -> ProfilePoint:
    batches = [list(itertools.islice(itertools.cycle(texts), i * batch_size, (i + 1) * batch_size))
               for i in range(max(1, len(texts) // batch_size))]
    # Token counts come from one tokenizer pass outside the timed calls, the same for both engines.
    batch_tokens = [count_tokens(model.tokenizer, batch, length)[0] for batch in batches]
    if isinstance(encoder, SentenceTransformersEngine):
        encoder.count = False

    def call(i: int) -> None:
        encoder.encode(batches[i % len(batches)])

    timing.reset_gpu_peak(device)
    latency = timing.measure_latency(call, device=device, warmup=warmup, min_calls=min_calls,
                                        min_seconds=min_seconds, max_seconds=max_seconds)
    timed_tokens = [batch_tokens[i % len(batches)] for i in range(len(latency.values_ms))]  # timed calls restart at 0
    seconds = sum(latency.values_ms) / 1000.0
    calls = len(latency.values_ms)
    tflops = mfu = None
    if device.startswith("cuda"):
        per_batch = [forward_flops(model, [len(ids) for ids in model.tokenizer(
            batch, truncation=True, max_length=length)["input_ids"]]) for batch in batches[:calls]]
        flops = sum(per_batch[i % len(per_batch)] for i in range(calls))
        tflops = flops / seconds / 1e12
        mfu = tflops / peak[0] if peak else None
    return ProfilePoint(
        engine=engine, precision=precision, batch_size=batch_size, max_seq_length=length, device=device,
        calls=calls, throughput=timing.Throughput.from_seconds(seconds, passages=calls * batch_size,
                                                               tokens=sum(timed_tokens)),
        mean_tokens=sum(timed_tokens) / (calls * batch_size), latency=latency, peak_rss_mb=timing.peak_rss_mb(),
        peak_gpu_mb=timing.peak_gpu_mb(device), tflops=tflops, mfu=mfu, mfu_peak=peak[1] if peak else None,
        **encoder.runtime_info,
    )


def profile_record(name: str, info: dict[str, object], texts: dict[str, object],
                   points: Sequence[ProfilePoint]) -> ProfileRecord:
    return ProfileRecord.model_validate({"name": name, "model": info, "texts": texts, "points": list(points),
                                         "environment": timing.environment(), "created_at": utc_now()})


def points_table(points: Sequence[ProfilePoint]) -> str:
    headers = ["engine", "precision", "batch", "max_len", "device", "passages/s", "tokens/s", "p50 ms", "p99 ms",
               "peak RSS MB", "MFU"]
    rows = [[p.engine, p.precision, p.batch_size, p.max_seq_length, p.device, fmt_num(p.throughput.passages_per_s),
             f"{p.throughput.tokens_per_s:,.0f}", f"{p.latency.p50:.1f}", f"{p.latency.p99:.1f}",
             f"{p.peak_rss_mb:,.0f}", f"{p.mfu:.1%}" if p.mfu is not None else "-"] for p in points]
    return text_table(headers, rows)
