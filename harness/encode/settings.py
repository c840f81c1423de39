"""An encoder's settings as typed values: what records state and what the embedding store is keyed by. No torch here:
records and the store read these without loading a model."""

from __future__ import annotations

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
    max_seq_length: int
    device: str  # as resolved: cpu, cuda, cuda:1 ...
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
    max_seq_length: int
    device: str


class EmbeddingSettings(StrictModel):
    """The settings that change document embeddings, so the embedding store is keyed by them: the device type, and
    the engine's own (``engine_key``: for int8 the kernel path; for onnxruntime/openvino the runtime's and the
    exporter's versions)."""

    precision: Precision
    engine: EngineName
    document_prefix: str
    max_seq_length: int
    device: str
    engine_key: dict[str, Any] = {}
