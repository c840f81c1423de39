"""An encoder's settings as typed values: what records state and what the embedding store is keyed by. No torch here:
records and the store read these without loading a model."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

from harness.input.suite import Similarity
from harness.vocabulary.precision import EngineName, Precision
from harness.vocabulary.validation import StrictModel


class EncoderSettings(StrictModel):
    """What an encoder ran with, as its records state it: the suite's settings as resolved (max_seq_length, device)
    and what ran the transformer."""

    similarity: Similarity
    batch_size: int
    precision: Precision
    engine: EngineName
    query_prefix: str = ""
    document_prefix: str = ""
    max_seq_length: int | None  # None: a server's own limit, not reported (engine http)
    device: str  # as resolved: cpu, cuda, cuda:1 ... (engine http: where the search ran)
    # what ran the transformer (engine.runtime_info; None in records that predate it)
    runtime: str | None = None  # runtime and version: "torch 2.13.0+cpu", "onnxruntime 1.32.0", "openvino 2026.4.1"
    execution_provider: str | None = None  # cpu-onednn, cpu-aten, cuda, CPUExecutionProvider, CPU (f32) ...
    threads: int | None = None  # intra-op threads the runtime was given

    def documents(self) -> DocumentSettings:
        """The corpus side of these settings (what a ``document_model`` record states)."""
        return DocumentSettings.model_validate(self.model_dump(include=set(DocumentSettings.model_fields)))


class DocumentSettings(StrictModel):
    """The settings that encoded a corpus (an ``EncoderSettings`` without the query side)."""

    batch_size: int
    precision: Precision
    engine: EngineName
    document_prefix: str = ""
    max_seq_length: int | None
    device: str


class EmbeddingSettings(StrictModel):
    """The settings that change document embeddings, so the embedding store is keyed by them: the device type, and
    the engine's own (``engine_key``: for int8 the kernel path; for onnxruntime/openvino the runtime's and the
    exporter's versions)."""

    precision: Precision
    engine: EngineName
    document_prefix: str
    max_seq_length: int | None
    device: str
    engine_key: dict[str, Any] = {}


class ServerInfo(StrictModel):
    """What the server said about itself when it was opened; all of it but `models` keys the embedding cache."""

    url: str
    api: str
    served_model: str  # the model name sent with each request (openai) or the server's model id (tei)
    models: list[str] = []  # the models the server lists
    server: str | None = None  # its name, e.g. "Infinity - Embedding Inference Server", "text-embeddings-inference"
    server_version: str | None = None
    model_sha: str | None = None  # the weights' commit where the server reports it (TEI)
    max_input_length: int | None = None  # tokens, where the server reports it (TEI)
    dimension: int
    normalize: bool | None = None  # what was asked of a TEI server (None: its default)
    probe_digest: str  # sha256 of the probe texts' vectors rounded to 0.1: another model gives another digest

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(exclude={"models"}), sort_keys=True).encode()).hexdigest()

    @property
    def label(self) -> str:
        return " ".join(p for p in (self.server, self.server_version) if p) or "unknown server"


class EndpointUsage(StrictModel):
    """Requests an endpoint answered and the retries it took, counted from when it was opened."""

    requests: int = 0
    texts: int = 0
    retries: dict[str, int] = {}  # by kind: http-429, http-503, timeout, connection ...

    def since(self, earlier: EndpointUsage) -> EndpointUsage:
        kinds = Counter(self.retries)
        kinds.subtract(earlier.retries)
        return EndpointUsage(requests=self.requests - earlier.requests, texts=self.texts - earlier.texts,
                             retries={k: n for k, n in sorted(kinds.items()) if n})
