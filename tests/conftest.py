"""Shared fixtures. Real models and data only: the bundled all-MiniLM-L6-v2, small random-weight
BERTs written to disk (real transformers checkpoints), and the data sets under data/."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Property tests check values, not speed: a deadline only adds false failures on a loaded 2-core machine.
settings.register_profile("harness", deadline=None)
settings.load_profile("harness")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
# One cache per checkout: each real set is encoded once and reused by every test (and by later local runs, as
# long as the embedding key -- weights, data, settings, engine code and library versions -- is unchanged).
os.environ.setdefault("HARNESS_CACHE", str(REPO / ".cache" / "harness-tests"))


def reference_embeddings_path(model, dataset_fingerprint: str, *, batch_size: int) -> Path:
    """Where a golden test keeps a direct `SentenceTransformer.encode` of a dataset's corpus: keyed like the
    embedding cache (`embedding_key_parts`, versions included), so that after an engine or library change the
    harness and its reference are both encoded afresh instead of two stale caches agreeing."""
    from harness.encode.models import embedding_key_parts, weights_fingerprint
    from harness.encode.store import cache_root, store_key

    settings = {"engine": "SentenceTransformer.encode", "batch_size": batch_size, "precision": "fp32",
                "device": model.device.type, "max_seq_length": model.max_seq_length}
    parts = embedding_key_parts(model=weights_fingerprint(model), dataset=dataset_fingerprint, settings=settings)
    return cache_root() / "direct-st" / f"{store_key(parts)}.npy"


def write_tiny_model(folder: Path, *, poison: bool = False) -> Path:
    """A real (random-weight) 2-layer BERT with the bundled uncased tokenizer, mean pooling.

    `poison=True` sets one LayerNorm weight to NaN, a real checkpoint that yields NaN embeddings.
    """
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    model = BertModel(config)
    if poison:
        with torch.no_grad():
            model.encoder.layer[0].output.LayerNorm.weight[0] = float("nan")
    return save_as_sentence_transformer(model, folder, max_seq_length=128)


def save_as_sentence_transformer(model, folder: Path, *, max_seq_length: int) -> Path:
    """A transformers model saved as a sentence-transformers folder: the bundled uncased tokenizer, mean pooling."""
    from harness.encode.models import bundled_minilm_path

    model.save_pretrained(folder)
    source = bundled_minilm_path()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(source / name, folder / name)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": model.config.hidden_size, "pooling_mode_mean_tokens": True}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="session")
def nan_model(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("models") / "nan-bert", poison=True)


def write_beir(folder: Path, *, docs, queries, qrels, split: str = "test") -> Path:
    """Write a small BEIR folder: docs [(id, text)], queries [(id, text)], qrels [(qid, docid, grade)]."""
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as f:
        for doc_id, text in docs:
            f.write(json.dumps({"_id": doc_id, "title": "", "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as f:
        for qid, text in queries:
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    with open(folder / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, doc_id, grade in qrels:
            f.write(f"{qid}\t{doc_id}\t{grade}\n")
    return folder


def write_suite(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
