"""Backward compatibility between model versions: queries encoded by one model search corpus embeddings of another.

A suite encoder's ``document_model`` (``harness.input.suite.DocumentModel``) names where its corpus embeddings come
from: another model (encoded through the embedding cache under that model's own key, so a corpus an earlier run encoded
is reused as it is), another encoder of the suite, or an earlier record's stored embeddings. `CorpusSource` is that
corpus side for `harness.pipeline.runner.run_one`; the record then names both models (``encoder.documents``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from harness.encode.models import Encoder
from harness.encode.store import EmbeddingStore, StoreOrigin, store_key
from harness.input.datasets import Dataset
from harness.input.suite import DocumentModel, EncoderSpec, Suite
from harness.scoring.records import DocumentEncoderInfo, DocumentSettings, EncoderInfo, RunRecord, load_run_record
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.validation import explain_errors


@dataclass(frozen=True)
class CorpusSource:
    """The corpus side of a run whose corpus is not encoded by its own encoder: a document ``encoder`` (encodes
    the chunks its cache store lacks), or an earlier ``record`` whose stored embeddings are searched as they are."""

    encoder: Encoder | None = None
    record: RunRecord | None = None
    record_path: Path | None = None

    @property
    def _record_encoder(self) -> EncoderInfo:
        """The encoder of ``record`` (a record this harness encoded: an external run's names none)."""
        assert self.record is not None and self.record.encoder is not None
        return self.record.encoder

    @property
    def dimension(self) -> int | None:
        if self.record is not None:
            return self._record_encoder.dimension
        return _model_dimension(self.encoder)

    def info(self, dimension: int) -> DocumentEncoderInfo:
        """The record's account of the document model (``EncoderInfo.documents``); ``dimension``: the corpus
        embeddings' as searched."""
        if self.encoder is not None:
            keys = ("batch_size", "precision", "engine", "document_prefix", "max_seq_length", "device")
            settings = DocumentSettings(**self.encoder.settings.model_dump(include=set(keys)))
            return DocumentEncoderInfo(model=self.encoder.spec.model, fingerprint=self.encoder.fingerprint,
                                       dimension=dimension, settings=settings)
        old = self._record_encoder
        if old.documents is not None:  # that record searched another model's corpus in turn: name that model
            return old.documents.model_copy(update={"record": str(self.record_path)})
        settings = DocumentSettings(**old.settings.model_dump(include=set(DocumentSettings.model_fields)))
        return DocumentEncoderInfo(model=old.model, fingerprint=old.fingerprint, dimension=old.dimension,
                                   settings=settings, record=str(self.record_path))

    def stored(self, dataset: Dataset, root: Path) -> EmbeddingStore:
        """The record's embedding store under ``root``, complete and of this data set's corpus."""
        assert self.record is not None
        where = f"document_model.record {self.record_path}"
        assert self.record.performance is not None  # timed: a record this harness encoded
        key = self.record.performance.embedding_store.key
        if key is None:
            raise HarnessError(f"{where}: that run held its corpus embeddings in memory only (evaluate_model), so "
                               "there are none to reuse; name the model instead (document_model.model)")
        if self.record.dataset.fingerprint != dataset.fingerprint:
            raise HarnessError(f"{where}: it was run on other data than {dataset.name!r} (dataset fingerprints "
                               f"{self.record.dataset.fingerprint} vs {dataset.fingerprint}); its corpus embeddings "
                               "cannot be searched with these queries")
        folder = root / "embeddings" / key
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            StoreOrigin.model_validate(meta["created_by"])  # else opening the store would start it afresh
            parts, layout = meta["parts"], {"dtype": meta["dtype"], "chunk_rows": meta["chunk_rows"]}
            matches = store_key({**parts, **layout}) == key and meta["n_rows"] == len(dataset.corpus)
        except (OSError, ValueError, KeyError, TypeError):
            raise HarnessError(f"{where}: its corpus embeddings (store {key}) are not in the embedding cache {root}; "
                               "point --cache / HARNESS_CACHE at the cache that run used, or name the model instead "
                               "(document_model.model) to encode the corpus again") from None
        if not matches:
            raise HarnessError(f"{where}: the embedding store {folder} does not hold this corpus as that record "
                               "stored it (its key or row count differs); name the model instead "
                               "(document_model.model)")
        store = EmbeddingStore(root, parts, n_rows=meta["n_rows"], **layout)
        missing = store.missing()
        if missing:
            raise HarnessError(f"{where}: its embedding store {folder} lacks {len(missing)} of {store.n_chunks} "
                               "chunk(s) (missing or corrupt); rerun that record's suite to complete it, or name the "
                               "model instead (document_model.model)")
        return store


def load_encoders(suite: Suite, spec: EncoderSpec) -> tuple[Encoder, CorpusSource | None]:
    """The suite encoder (it encodes the queries) and, with a ``document_model``, the corpus side; refuses
    models of different dimensions before anything is encoded."""
    encoder = Encoder(spec)
    documents = spec.document_model
    if documents is None:
        return encoder, None
    if documents.record is not None:
        source = CorpusSource(record=load_run_record(documents.record), record_path=documents.record)
    else:
        document_spec = suite.document_spec(spec)
        assert document_spec is not None
        source = CorpusSource(encoder=Encoder(document_spec))
    check_dimensions(encoder, source)
    return encoder, source


def corpus_source(document_model: object, encoder_spec: EncoderSpec, *, document_prefix: str = "",
                  model_id: str | None = None) -> CorpusSource:
    """The corpus side for `harness.evaluate_model(document_model=...)`: a model id / path, a mapping in the
    suite's ``document_model`` form (``model`` or ``record``), or a loaded SentenceTransformer (used as it is;
    ``model_id``: what it was loaded from)."""
    if isinstance(document_model, dict):
        if document_prefix:
            raise HarnessError("document_model is a mapping: write its document_prefix inside it")
        try:
            spec = DocumentModel.model_validate(document_model)
        except ValidationError as exc:
            raise HarnessError(f"document_model={document_model!r}:\n{explain_errors(exc)}") from None
        if spec.encoder is not None:
            raise HarnessError("document_model: 'encoder' names another encoder of a suite; evaluate_model has "
                               "none: give 'model' or 'record'")
        if spec.record is not None:
            return CorpusSource(record=load_run_record(spec.record), record_path=Path(spec.record).resolve())
        return CorpusSource(encoder=Encoder(spec.encoder_spec(encoder_spec)))
    if isinstance(document_model, (str, os.PathLike)):
        spec = DocumentModel(model=str(document_model), document_prefix=document_prefix)
        return CorpusSource(encoder=Encoder(spec.encoder_spec(encoder_spec)))
    if model_id is None:
        raise HarnessError(f"document_model must be a model id or path, a mapping, or a loaded SentenceTransformer, "
                           f"got {type(document_model).__name__}")
    spec = DocumentModel(model=model_id, document_prefix=document_prefix)
    return CorpusSource(encoder=Encoder.from_model(document_model, spec.encoder_spec(encoder_spec)))


def check_dimensions(encoder: Encoder, documents: CorpusSource, found: tuple[int, int] | None = None) -> None:
    """Queries of one dimension cannot search embeddings of another: a clear error naming both models.
    ``found``: the (query, corpus) dimensions as encoded (else the models' declared dimensions)."""
    query_dim, corpus_dim = found or (_model_dimension(encoder), documents.dimension)
    if query_dim is None or corpus_dim is None or query_dim == corpus_dim:
        return
    if documents.record is not None:
        corpus = f"the corpus embeddings of record {documents.record_path} ({documents._record_encoder.model})"
    else:
        assert documents.encoder is not None  # a CorpusSource has a record or an encoder
        corpus = f"document model {documents.encoder.spec.model!r}"
    raise HarnessError(f"encoder {encoder.spec.name!r}: query model {encoder.spec.model!r} gives {query_dim}-"
                       f"dimensional embeddings but {corpus} {corpus_dim}-dimensional ones; queries can only search "
                       "a corpus embedded in the same dimension")


def _model_dimension(encoder: Encoder | None) -> int | None:
    model = getattr(encoder, "model", None)  # sentence-transformers 5 renamed the method
    get = getattr(model, "get_embedding_dimension", None) or getattr(model, "get_sentence_embedding_dimension", None)
    value = get() if get else None
    return int(value) if value else None
