"""Model versions in suites (issue 24): a Hub revision pinned and resolved through a local Hugging Face cache laid
out as the Hub client lays it out, a folder of checkpoints expanded in natural version order, and version labels
stored in the records. The Hub cache is built here from the bundled all-MiniLM-L6-v2: revision `main` holds its
weights, tag `v2` the same model with perturbed weights."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.encode.models import bundled_minilm_path
from harness.input.suite import load_suite
from harness.input.versions import natural_key
from harness.scoring.records import load
from harness.vocabulary.errors import HarnessError
from tests.conftest import DATA, write_beir, write_suite

MAIN = "1" * 40
V2 = "2" * 40
REPO_ID = "acme/minilm"


def lay_out_snapshot(cache: Path, repo_id: str, commit: str, source: Path, refs: list[str]) -> Path:
    """snapshots/<commit>/<file> as symlinks into blobs/<sha256>, refs/<name> holding the commit: the Hub client's
    cache layout."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / file.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def perturbed_minilm(folder: Path, scale: float) -> Path:
    """A copy of the bundled all-MiniLM-L6-v2 with Gaussian noise of `scale` x each weight matrix's sd added."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(bundled_minilm_path(), folder)
    weights = load_file(folder / "model.safetensors")
    generator = torch.Generator().manual_seed(0)
    for name, w in weights.items():
        if w.ndim == 2 and w.is_floating_point():
            weights[name] = w + scale * w.std() * torch.randn(w.shape, generator=generator, dtype=w.dtype)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> Path:
    """Two revisions of acme/minilm: main (the bundled weights) and tag v2 (every weight matrix perturbed)."""
    root = tmp_path_factory.mktemp("hub")
    cache = root / "hub"
    lay_out_snapshot(cache, REPO_ID, MAIN, bundled_minilm_path(), ["main"])
    lay_out_snapshot(cache, REPO_ID, V2, perturbed_minilm(root / "v2", 0.5), ["v2"])
    return cache


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    """The first 6 NovelEval queries and their 120 passages (a corpus MiniLM encodes in seconds)."""
    keep = {str(i) for i in range(6)}
    source = DATA / "noveleval"
    docs = [json.loads(line) for line in (source / "corpus.jsonl").read_text().splitlines()]
    queries = [json.loads(line) for line in (source / "queries.jsonl").read_text().splitlines()]
    qrels = [line.split("\t") for line in (source / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    return write_beir(tmp_path_factory.mktemp("data") / "novel6",
                      docs=[(d["_id"], d["text"]) for d in docs if d["_id"].split("-")[0] in keep],
                      queries=[(q["_id"], q["text"]) for q in queries if q["_id"] in keep],
                      qrels=[(q, d, int(g)) for q, d, g in qrels if q in keep])


@pytest.fixture()
def offline_hub(hub_cache, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return hub_cache


def test_two_revisions_give_two_records_with_their_commits_and_different_metrics(offline_hub, small_set, tmp_path):
    suite = write_suite(tmp_path / "suite.yaml", f"""
name: revisions
datasets: [{{name: novel, path: {small_set}}}]
encoders:
  - {{name: main, model: {REPO_ID}, device: cpu}}
  - {{name: tagged, model: {REPO_ID}, revision: v2, device: cpu, version: "2.0"}}
  - {{name: pinned, model: {REPO_ID}, revision: "{V2}", device: cpu}}
metrics: [nDCG@10, MRR@10]
top_k: 20
""")
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert main(["run", str(suite), "-o", str(out), "--no-progress", "--latency-calls", "5",
                 "--cache", str(cache)]) == 0
    records = {r.encoder.name: r for r in (load(f) for f in out.iterdir())}
    main_, tagged, pinned = records["main"], records["tagged"], records["pinned"]
    assert (main_.encoder.revision, main_.encoder.commit, main_.encoder.version) == (None, MAIN, None)
    assert (tagged.encoder.revision, tagged.encoder.commit, tagged.encoder.version) == ("v2", V2, "2.0")
    assert (pinned.encoder.revision, pinned.encoder.commit) == (V2, V2)
    assert main_.encoder.fingerprint != tagged.encoder.fingerprint == pinned.encoder.fingerprint
    assert abs(main_.metrics["nDCG@10"] - tagged.metrics["nDCG@10"]) > 0.01
    assert tagged.metrics == pinned.metrics
    # one embedding store per commit: the tag and the commit it names share one
    assert main_.performance.embedding_store.key != tagged.performance.embedding_store.key \
        == pinned.performance.embedding_store.key


def test_a_revision_not_in_the_offline_cache_exits_2_naming_it_and_where_it_looked(offline_hub, small_set, tmp_path,
                                                                                    capsys):
    suite = write_suite(tmp_path / "suite.yaml", f"""
name: missing
datasets: [{{name: novel, path: {small_set}}}]
encoders: [{{name: v3, model: {REPO_ID}, revision: v3, device: cpu}}]
""")
    assert main(["run", str(suite), "-o", str(tmp_path / "out"), "--no-progress", "--fail-fast",
                 "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert f"{REPO_ID!r} at revision 'v3'" in err and str(offline_hub) in err and "refs/v3" in err
    assert "Traceback" not in err and not list((tmp_path / "out").glob("*--v3--*"))


@pytest.mark.parametrize("encoder, message", [
    ("{name: e, model: 'bundled:all-MiniLM-L6-v2', revision: main}", "revision applies to a Hugging Face Hub id"),
    ("{name: e, model: 'ckpt/step-*', revision: main}", "a checkpoint series has none"),
    ("{name: e, versions: [ckpt/step-500], revision: main}", "a checkpoint series has none"),
    ("{name: e, model: 'ckpt/step-*', version: x}", "labelled by its folder name"),
    ("{name: e, model: x, versions: [ckpt/step-500]}", "give the checkpoints once"),
    ("{name: e, model: 'nothing/here-*'}", "no checkpoint folder matches 'nothing/here-*'"),
    ("{name: e, versions: [ckpt/step-500, ckpt/missing]}", "'ckpt/missing' is not a checkpoint folder"),
    ("{name: e, versions: [ckpt/step-500, other/step-500]}", "checkpoints with the same folder name (e@step-500)"),
])
def test_version_settings_that_cannot_hold_are_refused_at_load(tmp_path, encoder, message):
    for folder in ("ckpt/step-500", "other/step-500"):
        (tmp_path / folder).mkdir(parents=True)
    path = write_suite(tmp_path / "suite.yaml", f"""
name: s
datasets: [{{name: d, path: {DATA / "noveleval"}}}]
encoders: [{encoder}]
""")
    with pytest.raises(HarnessError) as caught:
        load_suite(path)
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_natural_order_reads_digit_runs_as_numbers():
    names = ["step-10000", "step-2000", "step-500", "v1.10", "v1.9", "final", "step-2000b"]
    assert sorted(names, key=natural_key) == ["final", "step-500", "step-2000", "step-2000b", "step-10000", "v1.9",
                                              "v1.10"]


def test_a_glob_of_checkpoints_expands_in_natural_order_and_a_list_as_written(tmp_path, tiny_model):
    for step in (10000, 500, 2000):
        (tmp_path / "ckpt").mkdir(exist_ok=True)
        (tmp_path / "ckpt" / f"step-{step}").symlink_to(tiny_model, target_is_directory=True)
    (tmp_path / "ckpt" / "step-1.log").write_text("not a checkpoint")
    suite = write_suite(tmp_path / "suite.yaml", f"""
name: series
datasets: [{{name: novel, path: {DATA / "noveleval"}}}]
encoders:
  - {{name: run, model: 'ckpt/step-*', device: cpu}}
  - {{name: picked, versions: [ckpt/step-2000, ckpt/step-500], device: cpu}}
metrics: [nDCG@10]
top_k: 10
""")
    loaded = load_suite(suite)
    assert [(e.name, e.version) for e in loaded.encoders] == [
        ("run@step-500", "step-500"), ("run@step-2000", "step-2000"), ("run@step-10000", "step-10000"),
        ("picked@step-2000", "step-2000"), ("picked@step-500", "step-500")]
    assert loaded.encoders[0].model == str(tmp_path / "ckpt" / "step-500")
    out = tmp_path / "out"
    assert main(["run", str(suite), "-o", str(out), "--no-progress", "--latency-calls", "5",
                 "--cache", str(tmp_path / "cache")]) == 0
    versions = sorted((r.encoder.name, r.encoder.version, r.encoder.commit) for r in map(load, out.iterdir()))
    assert versions[0] == ("picked@step-2000", "step-2000", None) and len(versions) == 5


def test_a_run_label_is_every_records_version(tmp_path, tiny_model):
    suite = write_suite(tmp_path / "suite.yaml", f"""
name: labelled
datasets: [{{name: novel, path: {DATA / "noveleval"}}}]
encoders:
  - {{name: a, model: {tiny_model}, device: cpu, version: from-suite}}
  - {{name: b, model: {tiny_model}, device: cpu}}
metrics: [nDCG@10]
top_k: 10
""")
    out = tmp_path / "out"
    assert main(["run", str(suite), "-o", str(out), "--no-progress", "--latency-calls", "5", "--label", "nightly-7",
                 "--cache", str(tmp_path / "cache")]) == 0
    assert sorted(load(f).encoder.version for f in out.iterdir()) == ["nightly-7", "nightly-7"]
    assert main(["run", str(suite), "-o", str(tmp_path / "blank"), "--label", " "]) == 2


def test_a_checkpoint_series_runs_and_its_history_names_the_first_regressing_step(small_set, tmp_path, capsys):
    """step-500: the bundled weights; step-2000: the same weights again (said so); step-10000: weights drowned in
    noise. The history orders them, passes step-2000 and names step-10000 as the first failure."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(bundled_minilm_path(), ckpt / "step-500")
    shutil.copytree(bundled_minilm_path(), ckpt / "step-2000")
    perturbed_minilm(ckpt / "step-10000", 3.0)
    suite = write_suite(tmp_path / "suite.yaml", f"""
name: training
datasets: [{{name: novel6, path: {small_set}}}]
encoders: [{{name: run, model: 'ckpt/step-*', device: cpu}}]
metrics: [nDCG@10, MRR@10]
top_k: 20
""")
    out = tmp_path / "out"
    assert main(["run", str(suite), "-o", str(out), "--no-progress", "--latency-calls", "5",
                 "--cache", str(tmp_path / "cache")]) == 0
    records = {r.encoder.name: r for r in map(load, out.iterdir())}
    assert set(records) == {"run@step-500", "run@step-2000", "run@step-10000"}
    assert records["run@step-500"].metrics == records["run@step-2000"].metrics
    assert records["run@step-10000"].metrics["nDCG@10"] < records["run@step-500"].metrics["nDCG@10"] - 0.2
    capsys.readouterr()
    assert main(["history", str(out), "--margin", "nDCG@10=0.005", "--resamples", "300", "--fail-on-gate"]) == 1
    printed = capsys.readouterr()
    assert ("nDCG@10 first fell below the baseline's non-inferiority bound (margin 0.005) at step-10000"
            in printed.out)
    assert "step-2000 has the same weights and settings as step-500" in printed.err
