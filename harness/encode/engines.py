"""The two encoding engines and their result (`EncodeResult`): the fast engine (`FastEngine`) and the baseline
(`SentenceTransformersEngine`, plain `SentenceTransformer.encode`). `harness.encode.models.make_engine` picks
one of them (or a runtime engine, `harness.encode.runtimes`) for a suite encoder.

The fast engine gives the same embeddings as `SentenceTransformer.encode`, computed with less waste.

What it does differently from `SentenceTransformer.encode` (docs/engine.md has the measurements):

* Tokenises once per block of texts with the Rust tokenizer (`encode_batch_fast`, no padding, no offsets),
  instead of once per batch through the Python tokenizer call.
* Sorts by *token* length and builds **token-budget batches**: a batch holds as many texts as fit in
  `max_tokens` padded tokens, so short texts run in large batches and long ones in small batches, and each
  batch is padded only to its own longest text. The input order is restored at the end. On CPU with oneDNN
  kernels, a batch with fewer rows than its length allows (the end of a block, a length drop) gets filler rows
  up to that count: oneDNN compiles and caches kernels per row count, and without this every new odd-sized
  batch added to a cache that grew by hundreds of MB over a long corpus (docs/scale.md §5); filler costs ≈ 2.7%
  more padded tokens on MS MARCO passages.
* Calls the Hugging Face model directly under `torch.inference_mode()` and then runs the model's own
  remaining sentence-transformers modules (Pooling, Dense, Normalize, ...) on the output, so pooling and
  normalisation are exactly the model's. Models whose first module is not a plain text Transformer
  (custom processors, chat templates, flash-attention unpadding, ...) run through the model's own
  `preprocess` + `forward` on our batches instead, which is slower but always faithful.
* CPU kernels: every `nn.Linear` runs through oneDNN with its weight packed once (same fp32 math; torch's default
  MKL sgemm is 2-3x slower on the AMD host measured). `cpu_kernels="aten"` turns this off.
* Precision: fp32 keeps fp32 weights (on CPU a packed copy); fp16/bf16 run a cast *copy* of the transformer
  (pooling and later modules stay fp32); int8 (CPU only) runs a dynamically quantised copy (per-channel int8
  weights, fbgemm). The caller's model is never modified.
* A pipeline: one thread tokenises blocks ahead, another pads (on CUDA: into pinned memory) batches ahead, while
  the model runs; on CUDA copies are asynchronous, results come back through pinned buffers with CUDA events,
  and `compile=True` wraps the transformer in `torch.compile(dynamic=True)`.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from harness.encode.kernels import Int8Linear, PackedLinear, convert_linears, onednn_kernels
from harness.encode.kernels import int8_path as _int8_path
from harness.encode.tokenize import TextTokenizer, TokenBlock, full_rows, pad_batch, plan_batches
from harness.input.suite import EncoderSpec
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.precision import precision_problem

Progress = Callable[[int], None]
T = TypeVar("T")

HALF_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
# Padded tokens per batch. CPU: small batches stay in cache (docs/engine.md: 2-4k tokens measured best on
# the 2-core host); GPU: large batches keep the tensor cores busy (≈3,400 MS MARCO passages per batch).
DEFAULT_MAX_TOKENS = {"cpu": 2048, "cuda": 262_144}
# Padding bound (plan_batches' min_fill): on CPU a batch never pads a text by more than 1/0.85 of its length
# (measured: 1.3-1.6x on batches of 8-32 random MS MARCO passages, docs/engine.md). On CUDA, where more and
# smaller batches cost launches, it stays off until measured there.
DEFAULT_MIN_FILL = {"cpu": 0.85, "cuda": 0.0}
# Texts tokenised per call; on CUDA the next block is tokenised while the GPU encodes this one.
DEFAULT_BLOCK = 65_536
# Below this many texts everything runs in the calling thread (no prefetch thread, no pinned memory):
# single-query latency is dominated by fixed overheads.
SMALL_INPUT = 64


@dataclass(frozen=True)
class EncodeResult:
    embeddings: np.ndarray  # float32 [n, dim]
    n_tokens: int  # tokens actually fed to the model (after truncation, incl. special tokens)
    n_truncated: int = 0  # texts longer than max_seq_length tokens, cut to it
    counting_s: float = 0.0  # time spent only to count tokens (the baseline re-tokenises): not encode time


@dataclass
class Batch:
    rows: np.ndarray  # positions in the encode() input
    input_ids: torch.Tensor | None  # [b, L] padded (direct path)
    attention_mask: torch.Tensor | None
    texts: list[str] | None  # raw texts (module path: the model's own preprocess tokenises them)
    n_tokens: int  # tokens fed to the model, padding excluded (-1: count from the attention mask)
    n_truncated: int = 0  # texts of this batch's block cut to max_seq_length (carried by its first batch)


def direct_path_problem(model) -> str | None:
    """Why the transformer cannot be called directly (None: it can). The direct path must produce exactly
    what the first module's own preprocess + forward would."""
    first = model[0]
    if not hasattr(first, "auto_model") or getattr(first, "tokenizer", None) is None:
        return f"first module {type(first).__name__} is not a Hugging Face transformer with a tokenizer"
    if getattr(first, "backend", "torch") != "torch":
        return f"backend {first.backend!r}"
    if getattr(first, "transformer_task", "feature-extraction") != "feature-extraction":
        return f"transformer task {first.transformer_task!r}"
    modality = getattr(first, "modality_config", None)
    if modality is not None and (set(modality) != {"text"} or modality["text"].get("method") != "forward"
                                 or modality["text"].get("method_output_name") not in ("last_hidden_state", None)):
        return f"modality config {modality!r}"
    if getattr(first, "module_output_name", "token_embeddings") != "token_embeddings":
        return f"module output {first.module_output_name!r}"
    if getattr(first, "processing_kwargs", None):
        return "custom processing_kwargs"
    if getattr(first, "query_expansion", None) is not None:
        return "query expansion"
    if getattr(first, "processor", first.tokenizer) is not first.tokenizer:
        return "a processor that is not the tokenizer"
    if "flash" in str(getattr(first.auto_model.config, "_attn_implementation", "") or ""):
        return "flash-attention unpadding"
    if getattr(first.tokenizer, "padding_side", "right") != "right":
        return "left padding"
    if getattr(first.auto_model.config, "output_hidden_states", False):
        return "hidden states requested by a later module"
    names = set(inspect.signature(first.auto_model.forward).parameters)
    if not {"input_ids", "attention_mask"} <= names:
        return "the model's forward takes no input_ids/attention_mask"
    for module in list(model)[1:]:
        if type(module).__name__ == "Router":
            return "a Router module"
    return None


class FastEngine:
    """Encode texts with a loaded `SentenceTransformer`, equal to its `encode` (fp32) but faster.

    `batch_size` caps the rows of a batch (None: no cap); `max_tokens` is the padded-token budget of a
    batch (default by device); `min_fill` starts a new batch at a text shorter than that fraction of its
    batch's longest (bounds padding). `threads` sets torch's intra-op threads during `encode` only
    (restored after). `compile=True` (CUDA) wraps the transformer in `torch.compile(dynamic=True)`.
    `int8_path` forces the int8 kernel path (`kernels.int8_path`); `self.int8_path` says which one runs
    (None unless precision is int8).
    """

    name = "fast"  # the suite's `engine`; subclasses (harness.encode.runtimes) run the transformer elsewhere

    def __init__(self, model, *, precision: str = "fp32", device: str = "cpu", batch_size: int | None = None,
                 max_tokens: int | None = None, threads: int | None = None, compile: bool = False,
                 cpu_kernels: str = "onednn", block: int = DEFAULT_BLOCK, prefetch: int = 3,
                 min_fill: float | None = None, int8_path: str | None = None):
        self.model = model
        self.device = torch.device(device)
        problem = precision_problem(precision, engine=self.name, device=self.device.type)
        if problem:
            raise HarnessError(problem)
        self.precision = precision
        self.int8_path = _int8_path(int8_path) if precision == "int8" and self.name == "fast" else None
        self.max_rows = batch_size
        kind = "cuda" if self.device.type == "cuda" else "cpu"
        self.max_tokens = int(max_tokens or DEFAULT_MAX_TOKENS[kind])
        self.min_fill = DEFAULT_MIN_FILL[kind] if min_fill is None else min_fill
        self.threads = threads
        # oneDNN packs bf16 weights only where the CPU has bf16 instructions (AVX-512 BW/VL/DQ or AVX-NE-CONVERT);
        # elsewhere bf16 stays on aten's emulated kernels, as fp16 does: the same numbers, slower
        self.onednn = onednn_kernels(cpu_kernels, self.device) and (
            precision != "bf16" or torch.ops.mkldnn._is_mkldnn_bf16_supported())
        self.block = block
        self.prefetch = prefetch
        self.problem = direct_path_problem(model)
        self.path = "direct" if self.problem is None else "modules"
        tokenizer = getattr(model, "tokenizer", None)
        self.tokenizer = TextTokenizer(tokenizer) if tokenizer is not None else None
        self.pad_id = int(getattr(tokenizer, "pad_token_id", None) or 0)
        model.eval()
        # a Module, torch.compile's wrapper of one, or a runtime's session (harness.encode.runtimes)
        self.net: Any = self._precision_copy(model[0].auto_model if self.path == "direct" else model)
        self.tail = list(model)[1:] if self.path == "direct" else []
        self.fill_rows = (self.path == "direct" and isinstance(self.net, torch.nn.Module)  # not a runtime's session
                          and any(isinstance(m, PackedLinear) for m in self.net.modules()))
        if compile:
            self.net = torch.compile(self.net, dynamic=True)

    def _precision_copy(self, net: torch.nn.Module) -> torch.nn.Module:
        """The network to run: the caller's own for fp32 on GPU (or with aten kernels), else a converted copy."""
        if self.precision == "int8":
            return convert_linears(copy.deepcopy(net), lambda linear: Int8Linear(linear, path=self.int8_path))
        if self.precision in HALF_DTYPES:
            net = copy.deepcopy(net).to(HALF_DTYPES[self.precision])
        if not self.onednn or self.precision == "fp16":
            return net  # CPU fp16 (slow everywhere here; for checks only) stays on aten
        return convert_linears(net if self.precision == "bf16" else copy.deepcopy(net), PackedLinear)

    # -- batches ------------------------------------------------------------------------------------
    def _blocks(self, texts: Sequence[str]) -> Iterator[tuple[int, list[str], TokenBlock | None]]:
        """Texts in blocks, tokenised. Blocks grow from 2,048 texts to `block`: the first batch is ready
        soon, and later blocks are large enough for length sorting to leave little padding."""
        start, size = 0, min(2048, self.block)
        while start < len(texts):
            chunk = list(texts[start:start + size])
            yield start, chunk, self.tokenizer(chunk) if self.tokenizer is not None else None
            start += len(chunk)
            size = min(size * 2, self.block)

    def _batches(self, blocks, pin: bool, fill_rows: bool = False) -> Iterator[Batch]:
        for start, chunk, tokens in blocks:
            if tokens is None:  # nothing to count tokens with: sort by characters, fixed batches
                lengths = np.array([len(t) for t in chunk], dtype=np.int64)
                for rows in plan_batches(lengths, 2**62, self.max_rows or 32):
                    yield Batch(rows + start, None, None, [chunk[i] for i in rows], -1)
                continue
            lengths = tokens.lengths
            for i, rows in enumerate(plan_batches(lengths, self.max_tokens, self.max_rows, self.min_fill)):
                n_tokens = int(lengths[rows].sum())
                n_truncated = tokens.n_truncated if i == 0 else 0
                if self.path != "direct":
                    yield Batch(rows + start, None, None, [chunk[j] for j in rows], n_tokens, n_truncated)
                    continue
                full = full_rows(int(lengths[rows].max()), self.max_tokens, self.max_rows) if fill_rows else None
                ids, mask = pad_batch(tokens, rows, self.pad_id, total_rows=full)
                ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
                if pin:
                    ids_t, mask_t = ids_t.pin_memory(), mask_t.pin_memory()
                yield Batch(rows + start, ids_t, mask_t, None, n_tokens, n_truncated)

    # -- forward ------------------------------------------------------------------------------------
    def _forward(self, batch: Batch) -> tuple[torch.Tensor, int]:
        if self.path == "direct":
            assert batch.input_ids is not None and batch.attention_mask is not None  # padded by _batches
            ids = batch.input_ids.to(self.device, non_blocking=True)
            mask = batch.attention_mask.to(self.device, non_blocking=True)
            features = {"input_ids": ids, "attention_mask": mask, "token_embeddings": self._hidden(ids, mask).float()}
            for module in self.tail:
                features = module(features)
            return features["sentence_embedding"][:len(batch.rows)], batch.n_tokens
        features = self.model.preprocess(batch.texts)
        n_tokens = batch.n_tokens
        if n_tokens < 0:
            mask = features.get("attention_mask")
            n_tokens = int(mask.sum()) if isinstance(mask, torch.Tensor) else 0
        features = {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                    for k, v in features.items()}
        return self.net(features)["sentence_embedding"], n_tokens

    def _hidden(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The transformer's last hidden state for a padded batch (direct path)."""
        return self.net(input_ids=ids, attention_mask=mask, return_dict=True).last_hidden_state

    # -- public -------------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str], progress: Progress | None = None) -> EncodeResult:
        """Embeddings (float32, input order) and the number of tokens fed to the model."""
        n = len(texts)
        if n == 0:
            return EncodeResult(np.zeros((0, self.dimension), dtype=np.float32), 0)
        cuda = self.device.type == "cuda"
        small = n <= SMALL_INPUT
        if small:  # latency: everything in this thread
            batches = self._batches(self._blocks(texts), pin=False)
        else:  # a pipeline: tokenise (up to 2 blocks ahead) -> pad and pin (a few batches ahead) -> model
            blocks = _prefetched(self._blocks(texts), 2)
            batches = _prefetched(self._batches(blocks, pin=cuda, fill_rows=self.fill_rows), self.prefetch)
        out: np.ndarray | None = None
        n_tokens = n_truncated = 0
        pending: deque = deque()

        def land(rows: np.ndarray, host: torch.Tensor, event) -> None:
            nonlocal out
            if event is not None:
                event.synchronize()
            values = host.numpy()
            if out is None:
                out = np.empty((n, values.shape[1]), dtype=np.float32)
            out[rows] = values
            if progress:
                progress(len(rows))

        with torch.inference_mode(), _threads(self.threads):
            for batch in batches:
                emb, tokens = self._forward(batch)
                n_tokens += tokens
                n_truncated += batch.n_truncated
                emb = emb.float()
                if cuda:
                    host = torch.empty(emb.shape, dtype=torch.float32, pin_memory=not small)
                    host.copy_(emb, non_blocking=not small)
                    event = torch.cuda.Event()
                    event.record()
                    pending.append((batch.rows, host, event))
                    while len(pending) > 2:
                        land(*pending.popleft())
                else:
                    land(batch.rows, emb, None)
            while pending:
                land(*pending.popleft())
        assert out is not None  # n > 0 texts: some batch landed
        return EncodeResult(out, n_tokens, n_truncated)

    @property
    def runtime_info(self) -> dict[str, object]:
        """What ran the transformer, for records: runtime and version, execution provider, threads."""
        kernels = "cuda" if self.device.type == "cuda" else ("cpu-onednn" if self.onednn else "cpu-aten")
        return {"runtime": f"torch {torch.__version__}", "execution_provider": kernels,
                "threads": self.threads or torch.get_num_threads()}

    def key_settings(self) -> dict[str, object]:
        """Settings besides the suite's that change the embeddings (part of the embedding cache key)."""
        return {"int8_kernel": self.int8_path} if self.precision == "int8" else {}

    @property
    def dimension(self) -> int:
        get = (getattr(self.model, "get_embedding_dimension", None)
               or getattr(self.model, "get_sentence_embedding_dimension", None))
        return int(get() or 0) if get else 0


def count_tokens(tokenizer, texts: Sequence[str], max_length: int) -> tuple[int, int]:
    """(tokens fed to the model after truncation, number of texts that were truncated)."""
    lengths = [len(ids) for ids in tokenizer(list(texts), add_special_tokens=True, verbose=False)["input_ids"]]
    return sum(min(n, max_length) for n in lengths), sum(n > max_length for n in lengths)


class SentenceTransformersEngine:
    """The baseline: plain `SentenceTransformer.encode`, in blocks so progress can be reported. fp16/bf16 run
    a cast copy of the model (fp32: the caller's model itself); the caller's model is never modified."""

    block = 2048
    count = True  # profiling turns this off; runs subtract the re-tokenisation's time (`counting_s`)

    def __init__(self, model, spec: EncoderSpec, device: str):
        problem = precision_problem(spec.precision, engine="sentence-transformers", device=device)
        if problem:
            raise HarnessError(problem)
        dtype = HALF_DTYPES.get(spec.precision, torch.float32)
        if any(p.dtype != dtype for p in model.parameters() if p.is_floating_point()):
            model = copy.deepcopy(model).to(dtype)
        self.model = model
        self.batch_size = spec.batch_size
        self.device = device

    @property
    def runtime_info(self) -> dict[str, object]:
        return {"runtime": f"torch {torch.__version__}",
                "execution_provider": f"torch-{torch.device(self.device).type}", "threads": torch.get_num_threads()}

    def key_settings(self) -> dict[str, object]:
        return {}

    def encode(self, texts: Sequence[str], progress: Progress | None = None) -> EncodeResult:
        parts = []
        for start in range(0, len(texts), self.block):
            block = list(texts[start:start + self.block])
            parts.append(self.model.encode(block, batch_size=self.batch_size, convert_to_numpy=True,
                                           show_progress_bar=False))
            if progress:
                progress(len(block))
        embeddings = np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros((0, 0), np.float32)
        started = time.perf_counter()
        counts = count_tokens(self.model.tokenizer, texts, self.model.max_seq_length) if self.count else (0, 0)
        return EncodeResult(embeddings, *counts, counting_s=time.perf_counter() - started)


def weights_fingerprint(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


@contextmanager
def _threads(count: int | None):
    if count is None or count == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_DONE = object()


def _prefetched(items: Iterator[T], depth: int) -> Iterator[T]:
    """Produce `items` in a background thread, up to `depth` ahead; re-raise its errors here.

    The Rust tokenizer releases the GIL, so on CUDA tokenisation overlaps the GPU's work."""
    slots: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def offer(item) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(_DONE)
        except BaseException as exc:  # handed to the consumer
            offer(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # stops an upstream pipeline stage too
                close()

    worker = threading.Thread(target=produce, name="harness-tokenize", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()
