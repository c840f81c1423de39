"""Backward compatibility between model versions: an encoder's queries searching another model's corpus embeddings.

Real runs on NovelEval (its bundled-MiniLM corpus is in the test embedding cache): a document model equal to the
encoder ranks exactly as a normal run; a different query model (random-weight MiniLM-L6 architecture, same 384
dimensions, other weights) searches the cached corpus without re-encoding it, and the record names both models;
an earlier record's stored embeddings are searched as they are; mismatched dimensions and bad suites are refused.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import harness
from harness.cli import main
from harness.encode.store import list_stores
from harness.input.suite import DocumentModel, load_suite
from harness.scoring.records import load_run_record
from harness.vocabulary.errors import HarnessError
from tests.conftest import DATA, write_beir, write_suite

BUNDLED = "bundled:all-MiniLM-L6-v2"

HEAD = f"""
name: compat
datasets:
  - name: noveleval
    path: {DATA / "noveleval"}
metrics: [nDCG@10, MRR@10]
top_k: 100
"""


def suite_file(tmp_path: Path, encoders: str, name: str = "suite.yaml") -> Path:
    return write_suite(tmp_path / name, HEAD + "encoders:\n" + encoders)


# --------------------------------------------------------------------------- the suite schema

def test_document_model_forms_read_naturally(tmp_path):
    (tmp_path / "old").mkdir()
    suite = load_suite(suite_file(tmp_path, f"""
  - name: old
    model: {BUNDLED}
  - name: plain
    model: {BUNDLED}
    precision: int8
    document_model: {BUNDLED}
  - name: with-settings
    model: {BUNDLED}
    precision: int8
    document_model: {{model: {BUNDLED}, precision: fp32, max_seq_length: 128, document_prefix: "passage: "}}
  - name: of-encoder
    model: {BUNDLED}
    document_model: {{encoder: old}}
  - name: of-record
    model: {BUNDLED}
    document_model: {{record: old}}
"""))
    old, plain, settings, of_encoder, of_record = suite.encoders
    assert plain.document_model == DocumentModel(model=BUNDLED)
    assert suite.document_spec(plain).precision == "fp32"  # the document model's own defaults, not the query side's
    spec = suite.document_spec(settings)
    assert (spec.model, spec.precision, spec.max_seq_length, spec.document_prefix) == (BUNDLED, "fp32", 128,
                                                                                        "passage: ")
    assert suite.document_spec(of_encoder).model_dump(exclude={"similarity"}) == old.model_dump(exclude={"similarity"})
    assert of_record.document_model.record == (tmp_path / "old").resolve()  # relative to the suite file
    assert suite.document_spec(of_record) is None


@pytest.mark.parametrize("entry, message", [
    ("document_model: {}", "needs exactly one of 'model'"),
    (f"document_model: {{model: {BUNDLED}, record: somewhere}}", "got model and record"),
    ("document_model: {encoder: old, precision: int8}", "precision only go with document_model.model"),
    (f"document_model: {{model: {BUNDLED}, precison: fp32}}", "did you mean 'precision'?"),
    (f"document_prefix: 'passage: '\n    document_model: {BUNDLED}", "write it as document_model.document_prefix"),
    ("document_model: {encoder: nobody}", "document_model.encoder 'nobody' is not another encoder"),
    ("document_model: {encoder: new}", "document_model.encoder 'new' is not another encoder"),
    ("device: cuda\n    document_model: {model: x, precision: int8}", "document_model: precision int8"),
])
def test_bad_document_models_are_refused_naming_the_field(tmp_path, entry, message):
    path = suite_file(tmp_path, f"""
  - name: old
    model: {BUNDLED}
  - name: new
    model: {BUNDLED}
    {entry}
""")
    with pytest.raises(HarnessError) as caught:
        load_suite(path)
    assert "encoders.1" in str(caught.value) or "encoder 'new'" in str(caught.value)
    assert message in str(caught.value)


def test_a_document_encoder_must_encode_its_own_corpus(tmp_path):
    path = suite_file(tmp_path, f"""
  - name: a
    model: {BUNDLED}
  - name: b
    model: {BUNDLED}
    document_model: {{encoder: a}}
  - name: c
    model: {BUNDLED}
    document_model: {{encoder: b}}
""")
    with pytest.raises(HarnessError, match="'b' has a document_model of its own"):
        load_suite(path)


# --------------------------------------------------------------------------- real runs

@pytest.fixture(scope="module")
def compat_runs(tmp_path_factory):
    """One run: the bundled MiniLM (base); the same with itself as document model; random-weight MiniLM-L6
    queries searching base's corpus."""
    folder = tmp_path_factory.mktemp("compat")
    path = suite_file(folder, f"""
  - name: base
    model: {BUNDLED}
    device: cpu
  - name: same
    model: {BUNDLED}
    device: cpu
    document_model: {BUNDLED}
  - name: random-queries
    model: random:minilm-l6
    device: cpu
    document_model: {{encoder: base}}
""")
    from harness.pipeline.runner import RunOptions, run_suite

    outcomes = run_suite(load_suite(path), RunOptions(output=folder / "results", progress=False, latency_calls=20))
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    return {o.encoder: o.path for o in outcomes}


def ranking(record_dir: Path) -> list[str]:
    return (record_dir / "run.trec").read_text().splitlines()


def test_document_model_equal_to_the_model_ranks_exactly_as_a_normal_run(compat_runs):
    base, same = load_run_record(compat_runs["base"]), load_run_record(compat_runs["same"])
    assert [line.rsplit(" ", 1)[0] for line in ranking(compat_runs["same"])] == \
        [line.rsplit(" ", 1)[0] for line in ranking(compat_runs["base"])]  # all but the run tag
    assert same.metrics == base.metrics
    assert base.encoder.documents is None
    assert same.encoder.documents.fingerprint == base.encoder.fingerprint
    assert same.performance.embedding_store.key == base.performance.embedding_store.key


def test_another_query_model_searches_the_cached_corpus_without_re_encoding_it(compat_runs):
    base, new = load_run_record(compat_runs["base"]), load_run_record(compat_runs["random-queries"])
    provenance = new.performance.corpus_embeddings
    assert (provenance.source, provenance.chunks_encoded) == ("cache", 0)
    assert new.performance.corpus_from_cache
    assert new.performance.embedding_store.key == base.performance.embedding_store.key
    # both fingerprints: the queries' model and the corpus's
    assert new.encoder.model == "random:minilm-l6" and new.encoder.fingerprint != base.encoder.fingerprint
    documents = new.encoder.documents
    assert (documents.model, documents.fingerprint, documents.dimension) == (BUNDLED, base.encoder.fingerprint, 384)
    assert documents.settings.precision == "fp32" and documents.record is None
    # no store was made for the random model's own embeddings of the corpus
    assert new.encoder.fingerprint not in {s.meta.parts.get("model") for s in list_stores(harness_cache())}
    assert new.metrics["nDCG@10"] < base.metrics["nDCG@10"] - 0.3  # random-weight queries: near chance


def harness_cache() -> Path:
    from harness.encode.store import cache_root

    return cache_root()


def test_a_records_stored_corpus_is_searched_as_it_is(compat_runs, tmp_path, capsys):
    base_dir = compat_runs["base"]
    path = suite_file(tmp_path, f"""
  - name: on-record
    model: {BUNDLED}
    device: cpu
    document_model: {{record: {base_dir}}}
""")
    out = tmp_path / "results"
    assert main(["run", str(path), "-o", str(out), "--no-progress"]) == 0
    (record_dir,) = out.iterdir()
    record = load_run_record(record_dir)
    assert [line.rsplit(" ", 1)[0] for line in ranking(record_dir)] == \
        [line.rsplit(" ", 1)[0] for line in ranking(base_dir)]
    assert record.encoder.documents.record == str(base_dir)
    assert record.performance.corpus_embeddings.chunks_encoded == 0

    capsys.readouterr()
    assert main(["run", str(path), "-o", str(tmp_path / "never"), "--no-progress", "--reuse-embeddings", "never"]) == 2
    assert "reuse_embeddings 'never' forbids" in capsys.readouterr().err
    assert main(["run", str(path), "-o", str(tmp_path / "empty"), "--no-progress",
                 "--cache", str(tmp_path / "empty-cache")]) == 2
    assert "are not in the embedding cache" in capsys.readouterr().err

    key = load_run_record(base_dir).performance.embedding_store.key  # a copy of the store, one chunk lost
    partial = tmp_path / "partial-cache" / "embeddings" / key
    shutil.copytree(harness_cache() / "embeddings" / key, partial)
    (partial / "chunk-000000.npy").unlink()
    assert main(["run", str(path), "-o", str(tmp_path / "partial"), "--no-progress",
                 "--cache", str(partial.parent.parent)]) == 2
    assert "lacks 1 of 1 chunk(s)" in capsys.readouterr().err
    assert (partial / "meta.json").is_file()  # reported, not reset


def test_evaluate_model_searches_a_records_corpus(compat_runs):
    result = harness.evaluate_model(BUNDLED, DATA / "noveleval", metrics=["nDCG@10", "MRR@10"], top_k=100,
                                    device="cpu", document_model={"record": str(compat_runs["base"])},
                                    latency_calls=5, progress=False)
    base = load_run_record(compat_runs["base"])
    assert result.metrics == base.metrics
    assert result.record.encoder.documents.fingerprint == base.encoder.fingerprint


# --------------------------------------------------------------------------- dimensions, in memory

def test_dimension_mismatch_is_a_clear_error_exit_2(tiny_model, tmp_path, capsys):
    path = suite_file(tmp_path, f"""
  - name: tiny-on-minilm
    model: {tiny_model}
    device: cpu
    document_model: {BUNDLED}
""")
    assert main(["run", str(path), "-o", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"query model '{tiny_model}' gives 32-dimensional" in err
    assert f"document model '{BUNDLED}' 384-dimensional" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing written
    with pytest.raises(HarnessError, match="32-dimensional .* 384-dimensional"):
        harness.evaluate_model(tiny_model, DATA / "noveleval", document_model=BUNDLED, device="cpu",
                               progress=False)


@pytest.fixture
def tiny_set(tmp_path):
    docs = [(f"d{i}", text) for i, text in enumerate(
        ["the cat sat on the mat", "dogs chase cats", "a recipe for bread", "stock markets fell today",
         "the mat was red", "bread needs yeast", "cats sleep a lot", "markets and prices"])]
    queries = [("q1", "cat on a mat"), ("q2", "how to bake bread"), ("q3", "market prices")]
    qrels = [("q1", "d0", 1), ("q2", "d5", 1), ("q3", "d7", 1)]
    return write_beir(tmp_path / "tiny-set", docs=docs, queries=queries, qrels=qrels)


def test_evaluate_model_with_itself_as_document_model_ranks_as_without(tiny_model, tiny_set, monkeypatch, tmp_path):
    from sentence_transformers import SentenceTransformer

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    options = dict(metrics=["nDCG@5"], top_k=8, device="cpu", latency_calls=3, progress=False)
    plain = harness.evaluate_model(str(tiny_model), tiny_set, **options)
    by_path = harness.evaluate_model(str(tiny_model), tiny_set, document_model=str(tiny_model), **options)
    loaded = SentenceTransformer(str(tiny_model), device="cpu")
    by_object = harness.evaluate_model(loaded, tiny_set, document_model=loaded, **options)
    for result in (by_path, by_object):
        assert result.ranking == plain.ranking
        assert result.record.encoder.documents.fingerprint == plain.record.encoder.fingerprint
    assert not (tmp_path / "cache").exists()  # in memory: nothing written
    with pytest.raises(HarnessError, match="needs exactly one of"):
        harness.evaluate_model(str(tiny_model), tiny_set, document_model={"precision": "fp32"}, **options)


def test_shipped_compat_suite_is_valid():
    suite = load_suite(Path(__file__).resolve().parent.parent / "suites" / "compat.yaml")
    new = next(e for e in suite.encoders if e.document_model is not None)
    assert new.precision == "int8" and suite.document_spec(new).precision == "fp32"
