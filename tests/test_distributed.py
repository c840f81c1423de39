"""The Ray executor (harness.distributed) on a real local Ray cluster: a head node and a second node on
loopback, one CPU each, so the two encoding actors run on different nodes. The cluster is started and
stopped by the test that uses it. Skipped when Ray Data is not installed (pip install '.[ray]')."""

from __future__ import annotations

import filecmp
import importlib.util
import logging
import shutil
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.runner import RunOptions, run_suite
from harness.suite import parse_suite
from tests.conftest import DATA

HAS_RAY = importlib.util.find_spec("ray") is not None and importlib.util.find_spec("pandas") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="Ray Data is not installed (pip install '.[ray]')")
CHUNK_ROWS = 64  # NovelEval's 420 passages -> 7 chunks


def _suite(model: Path, tmp: Path):
    raw = {
        "name": "ray-equivalence",
        "datasets": [{"name": "noveleval", "path": str(DATA / "noveleval"), "split": "test"}],
        "encoders": [{"name": "tiny", "model": str(model), "device": "cpu", "engine": "sentence-transformers",
                      "batch_size": 16}],
        "metrics": ["MRR@10", "nDCG@10", "Recall@100"],
        "top_k": 100,
    }
    return parse_suite(raw, source=tmp / "suite.yaml")


def _run(suite, tmp: Path, name: str, **options):
    [outcome] = run_suite(suite, RunOptions(output=tmp / f"results-{name}", cache=tmp / f"cache-{name}",
                                            chunk_rows=CHUNK_ROWS, progress=False, latency_min_calls=3, **options))
    return outcome


def _chunks(cache: Path) -> list[Path]:
    [store] = (cache / "embeddings").iterdir()
    return sorted(store.glob("chunk-*.npy"))


@pytest.fixture
def cluster():
    if not HAS_RAY:
        pytest.skip("Ray Data is not installed (pip install '.[ray]')")
    import os

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                          "object_store_memory": 150 * 2**20})
    try:
        nodes.add_node(num_cpus=1, object_store_memory=150 * 2**20)
        yield nodes
    finally:
        nodes.shutdown()


@pytest.fixture(scope="module")
def local_run(tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ray-equivalence")
    suite = _suite(tiny_model, tmp)
    return suite, tmp, _run(suite, tmp, "local", executor="local")


@needs_ray
def test_ray_run_is_identical_to_the_single_process_run(cluster, local_run, caplog, monkeypatch):
    import ray.data

    suite, tmp, local = local_run
    # Start both actors before the first chunk, so that both nodes encode (on a busy machine the second
    # actor may otherwise still be importing torch when the first has finished every chunk).
    monkeypatch.setattr(ray.data.DataContext.get_current(), "wait_for_min_actors_s", 120, raising=False)
    # Resume into the same store: 2 chunks already there, one of them truncated (must be re-encoded).
    ray_cache = tmp / "cache-ray"
    local_chunks = _chunks(tmp / "cache-local")
    target = ray_cache / "embeddings" / local_chunks[0].parent.name
    target.mkdir(parents=True)
    for chunk in local_chunks[:2]:
        for suffix in (".npy", ".json"):
            shutil.copy(chunk.with_suffix(suffix), target / chunk.with_suffix(suffix).name)
    (target / local_chunks[1].name).write_bytes(local_chunks[1].read_bytes()[:-100])

    with caplog.at_level(logging.INFO, logger="harness.distributed"):
        ray = _run(suite, tmp, "ray", executor="ray", ray_address=cluster.address)

    [message] = [r.getMessage() for r in caplog.records if r.name == "harness.distributed"]
    assert "encoded 6 chunks on 2 Ray workers" in message  # 7 chunks - 1 intact one already stored
    ray_chunks = _chunks(ray_cache)
    assert [c.name for c in ray_chunks] == [c.name for c in local_chunks] and len(local_chunks) == 7
    for a, b in zip(local_chunks, ray_chunks):
        assert filecmp.cmp(a, b, shallow=False), f"{b.name} differs between the local and the Ray run"
    assert (ray.path / "run.trec").read_bytes() == (local.path / "run.trec").read_bytes()
    assert (ray.path / "per_query.json").read_bytes() == (local.path / "per_query.json").read_bytes()
    assert ray.record.metrics == local.record.metrics
    assert ray.record.performance["corpus_from_cache"] is False
    assert ray.record.performance["embedding_store"] == local.record.performance["embedding_store"]

    # A second Ray run with the same key encodes nothing (and needs no cluster).
    again = _run(suite, tmp, "ray", executor="ray", ray_address="127.0.0.1:1")
    assert again.record.performance["corpus_from_cache"] is True
    assert (again.path / "run.trec").read_bytes() == (local.path / "run.trec").read_bytes()


@needs_ray
def test_a_worker_input_error_reaches_the_driver_and_the_local_instance_is_stopped(nan_model, tmp_path):
    """address=None: the executor starts its own local Ray instance and shuts it down, even on error."""
    import ray

    suite = _suite(nan_model, tmp_path)
    with pytest.raises(HarnessError, match=r"Ray worker .*NaN/inf embeddings"):
        _run(suite, tmp_path, "nan", executor="ray")
    assert not ray.is_initialized()
    assert not (tmp_path / "results-nan").exists() or not any((tmp_path / "results-nan").iterdir())
    assert _chunks(tmp_path / "cache-nan") == []


@needs_ray
def test_an_unreachable_cluster_is_a_clear_error(local_run, tmp_path):
    suite, _, _ = local_run
    with pytest.raises(HarnessError, match="cannot connect to the Ray cluster at '127.0.0.1:1'"):
        _run(suite, tmp_path, "unreachable", executor="ray", ray_address="127.0.0.1:1")


def test_without_ray_the_error_names_the_extra(local_run, tmp_path, monkeypatch):
    suite, _, _ = local_run
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(HarnessError, match=r"pip install '\.\[ray\]'"):
        _run(suite, tmp_path, "noray", executor="ray")
