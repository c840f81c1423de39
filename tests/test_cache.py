"""The embedding cache key holds every version that can change embeddings; the reuse policy; where a record's
embeddings came from; peak memory measured per record."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest

from harness.cli import main
from harness.encode import kernels, models, versions
from harness.encode.models import Encoder, embedding_versions
from harness.encode.store import store_key
from harness.input.suite import EncoderSpec, load_suite, parse_suite
from harness.pipeline.runner import RunOptions, run_suite
from harness.scoring.records import find_records, load_run_record
from harness.vocabulary import timing
from harness.vocabulary.errors import HarnessError
from tests.conftest import DATA, REPO, reference_embeddings_path, write_beir, write_suite

SUITE = """
name: cache
datasets:
  - name: noveleval
    path: {data}
    relevance_level: 2
encoders:
  - name: tiny
    model: {model}
    device: cpu
metrics: [nDCG@10]
top_k: 50
{extra}
"""


def suite_file(tmp_path: Path, model: Path, *, extra: str = "") -> Path:
    return write_suite(tmp_path / "suite.yaml", SUITE.format(data=DATA / "noveleval", model=model, extra=extra))


def run_once(tmp_path: Path, model: Path, **options):
    [outcome] = run_suite(load_suite(suite_file(tmp_path, model)),
                          RunOptions(cache=tmp_path / "cache", progress=False, latency_calls=5, **options))
    assert outcome.ok, outcome.error
    return outcome.record


# ---------------------------------------------------------------- provenance and reuse


def test_auto_reuses_the_store_and_the_record_names_the_entry(tmp_path, tiny_model):
    first, second = run_once(tmp_path, tiny_model), run_once(tmp_path, tiny_model)
    fresh, cached = first.performance.corpus_embeddings, second.performance.corpus_embeddings
    assert (fresh.source, fresh.chunks_encoded, fresh.reuse) == ("this-run", 1, "auto")
    assert (cached.source, cached.chunks_encoded, cached.chunks) == ("cache", 0, 1)
    assert second.performance.corpus_from_cache and not first.performance.corpus_from_cache
    # The cache entry's creating environment and time, as the first run recorded it in the store.
    assert cached.store == fresh.store
    assert cached.store.hostname == platform.node() and cached.store.cpu_model == timing.cpu_model()
    assert cached.versions == embedding_versions("fast")
    assert set(cached.versions) == {"harness-encode", "torch", "transformers", "sentence-transformers", "tokenizers"}
    assert all(cached.versions.values())
    [store] = (tmp_path / "cache" / "embeddings").iterdir()
    meta = json.loads((store / "meta.json").read_text())
    assert meta["parts"]["versions"] == cached.versions and meta["created_by"] == cached.store.model_dump()


def _patch_engine_code(monkeypatch):
    monkeypatch.setitem(versions.ENGINE_VERSIONS, "fast", versions.ENGINE_VERSIONS["fast"] + 1)


def _patch_transformers(monkeypatch):
    real = models.library_version
    monkeypatch.setattr(models, "library_version", lambda name: "99.0" if name == "transformers" else real(name))


@pytest.mark.parametrize(("changed", "patch"), [("harness-encode", _patch_engine_code),
                                                ("transformers", _patch_transformers)])
def test_a_changed_version_re_encodes(tmp_path, tiny_model, monkeypatch, changed, patch):
    before = run_once(tmp_path, tiny_model)
    patch(monkeypatch)
    after = run_once(tmp_path, tiny_model)
    provenance = after.performance.corpus_embeddings
    assert provenance.source == "this-run" and not after.performance.corpus_from_cache
    assert provenance.versions[changed] != before.performance.corpus_embeddings.versions[changed]
    assert after.performance.embedding_store.key != before.performance.embedding_store.key
    assert after.metrics == before.metrics  # the same code really ran: only the key changed
    assert len(list((tmp_path / "cache" / "embeddings").iterdir())) == 2


def test_never_re_encodes_and_the_cli_flag_overrides_the_suite(tmp_path, tiny_model):
    suite = suite_file(tmp_path, tiny_model, extra="reuse_embeddings: never")
    args = ["run", str(suite), "--cache", str(tmp_path / "cache"), "--no-progress"]
    assert main([*args, "-o", str(tmp_path / "a")]) == 0
    [meta_file] = (tmp_path / "cache").glob("embeddings/*/meta.json")
    meta = json.loads(meta_file.read_text())
    meta["created_by"]["created_at"] = "2000-01-01T00:00:00+00:00"  # as if an old run had created the store
    meta_file.write_text(json.dumps(meta))
    assert main([*args, "-o", str(tmp_path / "b")]) == 0  # the store is complete, and still re-encoded
    assert main([*args, "-o", str(tmp_path / "c"), "--reuse-embeddings", "auto"]) == 0
    a, b, c = (load_run_record(d).performance for name in "abc" for d in find_records([tmp_path / name]))
    assert [(p.corpus_embeddings.source, p.corpus_embeddings.reuse) for p in (a, b, c)] == [
        ("this-run", "never"), ("this-run", "never"), ("cache", "auto")]
    assert a.embedding_store.key == b.embedding_store.key == c.embedding_store.key
    # "never" created the store again: the auto run read the second run's embeddings and names its store.
    assert c.corpus_embeddings.store == b.corpus_embeddings.store
    assert b.corpus_embeddings.store.created_at > "2000-01-01T00:00:00+00:00"


@pytest.mark.parametrize("command", ["run", "check"])
def test_reuse_embeddings_option_of_run_and_check(command, capsys):
    from harness.cli import build_parser

    args = build_parser().parse_args([command, "quick", "--reuse-embeddings", "never"])
    assert args.reuse_embeddings == "never"
    assert build_parser().parse_args([command, "quick"]).reuse_embeddings is None  # the suite decides
    assert main([command, "quick", "--reuse-embeddings", "sometimes"]) == 2
    assert "invalid choice: 'sometimes'" in capsys.readouterr().err


def test_a_resumed_store_says_so(tmp_path, tiny_model):
    first = run_once(tmp_path, tiny_model, chunk_rows=100)  # 420 rows: 5 chunks
    [store] = (tmp_path / "cache" / "embeddings").iterdir()
    (store / "chunk-000002.json").unlink()
    provenance = run_once(tmp_path, tiny_model, chunk_rows=100).performance.corpus_embeddings
    assert (provenance.source, provenance.chunks_encoded, provenance.chunks) == ("cache+this-run", 1, 5)
    assert provenance.store == first.performance.corpus_embeddings.store


def test_chunks_of_unknown_origin_are_not_used(tmp_path, tiny_model):
    run_once(tmp_path, tiny_model)
    [store] = (tmp_path / "cache" / "embeddings").iterdir()
    (store / "meta.json").unlink()  # e.g. a store written by a harness that recorded no creator
    assert run_once(tmp_path, tiny_model).performance.corpus_embeddings.source == "this-run"


def test_int8_kernel_path_is_part_of_the_key(tiny_model, monkeypatch):
    keys = {}
    for vnni in (True, False):
        monkeypatch.setattr(kernels, "cpu_has_vnni", lambda vnni=vnni: vnni)
        encoder = Encoder(EncoderSpec(name="q", model=str(tiny_model), precision="int8", device="cpu"))
        keys[vnni] = (encoder.embedding_settings.engine_key["int8_kernel"], store_key(encoder.store_parts("data")))
    assert keys[True][0] == "vnni" and keys[False][0] == "reduce-range"
    assert keys[True][1] != keys[False][1]
    plain = Encoder(EncoderSpec(name="f", model=str(tiny_model), device="cpu"))
    assert "int8_kernel" not in plain.embedding_settings.engine_key


def test_golden_references_are_keyed_by_versions(tiny_model, monkeypatch):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model), device="cpu")
    before = reference_embeddings_path(model, "data", batch_size=32)
    _patch_engine_code(monkeypatch)  # the reference runs no engine of the harness: its key ignores their versions
    assert reference_embeddings_path(model, "data", batch_size=32) == before
    monkeypatch.undo()
    _patch_transformers(monkeypatch)
    assert reference_embeddings_path(model, "data", batch_size=32) != before


def test_suite_policy_is_validated(tmp_path):
    raw = {"name": "s", "datasets": [{"name": "d", "path": "x"}], "encoders": [{"name": "e", "model": "m"}],
           "reuse_embeddings": "sometimes"}
    with pytest.raises(HarnessError, match="reuse_embeddings: Input should be 'auto' or 'never'"):
        parse_suite(raw, source=tmp_path / "suite.yaml")


def test_records_without_provenance_still_load():
    """Shipped baselines predate both fields: process-wide peaks, embedding origin unknown."""
    for path in find_records([REPO / "results" / "baselines"]):
        performance = load_run_record(path).performance
        assert performance.peak_rss_method == "process-peak" and performance.corpus_embeddings is None


# ---------------------------------------------------------------- peak memory per record

WIDE = 32_768  # output dimensions: NovelEval's 420 embeddings take 55 MB, a 3-passage corpus 0.4 MB


@pytest.fixture(scope="module")
def wide_model(tiny_model, tmp_path_factory) -> Path:
    """The tiny BERT with a real Dense(32 -> 32,768) head: a large corpus makes large embeddings."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense

    model = SentenceTransformer(str(tiny_model), device="cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model.append(Dense(32, WIDE, activation_function=torch.nn.Identity()))
    folder = tmp_path_factory.mktemp("models") / "wide-bert"
    model.save(str(folder))
    return folder


def test_a_small_second_record_does_not_inherit_a_large_first_peak(tmp_path, wide_model):
    tiny = write_beir(tmp_path / "tiny", docs=[("d1", "solar power"), ("d2", "wind farms"), ("d3", "tides")],
                      queries=[("q1", "renewable energy")], qrels=[("q1", "d1", 1)])
    suite = write_suite(tmp_path / "suite.yaml", f"""
name: memory
datasets:
  - {{name: large, path: {DATA / "noveleval"}}}
  - {{name: small, path: {tiny}}}
encoders:
  - {{name: wide, model: {wide_model}, device: cpu}}
metrics: [nDCG@3]
top_k: 3
""")
    large, small = (o.record.performance for o in run_suite(
        load_suite(suite), RunOptions(cache=tmp_path / "cache", progress=False, latency_calls=5)))
    assert large.peak_rss_method == small.peak_rss_method == "hwm-reset"
    # The large corpus's embeddings (55 MB, held in memory, written, read back for search) are gone before the
    # small one starts; a process-wide peak would give the small record at least the large one's figure.
    assert small.peak_rss_mb < large.peak_rss_mb - 50, (large.peak_rss_mb, small.peak_rss_mb)


def test_where_the_reset_is_not_allowed_the_record_says_process_peak(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setattr(timing, "CLEAR_REFS", tmp_path)  # a directory: opening it for writing fails
    assert timing.reset_peak_rss() == "process-peak"
    performance = run_once(tmp_path, tiny_model).performance
    assert performance.peak_rss_method == "process-peak" and performance.peak_rss_mb > 0
