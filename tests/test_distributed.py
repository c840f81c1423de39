"""The Ray executor (harness.encode.distributed) on a real local Ray cluster: a head node and a second node on
loopback, one CPU each, so the two encoding actors run on different nodes. Ray runs only in a child process
(tests/ray_child.py), which starts and stops the cluster: a Ray driver can end its own process after its
cluster is gone, and that must not be the pytest process. Skipped when Ray Data is not installed
(pip install '.[ray]')."""

from __future__ import annotations

import filecmp
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.input.suite import load_suite
from harness.pipeline.runner import RunOptions, run_suite
from harness.scoring.records import load_run_record
from harness.vocabulary.errors import HarnessError
from tests.conftest import DATA, REPO

HAS_RAY = importlib.util.find_spec("ray") is not None and importlib.util.find_spec("pandas") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="Ray Data is not installed (pip install '.[ray]')")
CHUNK_ROWS = 64  # NovelEval's 420 passages -> 7 chunks


def _suite(model: Path, tmp: Path):
    """The suite, written to tmp/suite.yaml (the Ray child process reads it from there)."""
    raw = {
        "name": "ray-equivalence",
        "datasets": [{"name": "noveleval", "path": str(DATA / "noveleval"), "split": "test"}],
        "encoders": [{"name": "tiny", "model": str(model), "device": "cpu", "engine": "sentence-transformers",
                      "batch_size": 16}],
        "metrics": ["MRR@10", "nDCG@10", "Recall@100"],
        "top_k": 100,
    }
    (tmp / "suite.yaml").write_text(json.dumps(raw), encoding="utf-8")  # JSON is YAML
    return load_suite(tmp / "suite.yaml")


def _ray_child(tmp: Path, name: str, where: str) -> dict:
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "ray_child.py"), str(tmp / "suite.yaml"),
                           str(tmp / f"results-{name}"), str(tmp / f"cache-{name}"), str(CHUNK_ROWS), where],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run(suite, tmp: Path, name: str, **options):
    """Run in this process; a failure raises (fail_fast) so the tests see the HarnessError itself."""
    [outcome] = run_suite(suite, RunOptions(output=tmp / f"results-{name}", cache=tmp / f"cache-{name}",
                                            chunk_rows=CHUNK_ROWS, progress=False, latency_calls=3,
                                            fail_fast=True, **options))
    return outcome


def _chunks(cache: Path) -> list[Path]:
    [store] = (cache / "embeddings").iterdir()
    return sorted(store.glob("chunk-*.npy"))


# Record fields that differ between two runs of the same work: timings, and the hosts that encoded.
TIMINGS_AND_HOSTS = {
    "performance": ("corpus_encode_s", "throughput", "query_latency", "search_s", "queries_per_s_search",
                    "peak_rss_mb", "rss_start_mb", "rss_added_mb", "peak_gpu_mb", "encoding_hosts",
                    "corpus_chunk_seconds"),
    "environment": ("hostname",),
}


def _without_timings_and_hosts(record) -> dict:
    data = record.model_dump()
    del data["created_at"]
    for part, fields in TIMINGS_AND_HOSTS.items():
        for field in fields:
            del data[part][field]
    embeddings = data["performance"]["corpus_embeddings"]
    del embeddings["store"]  # each run made its own store, at its own time
    del embeddings["source"], embeddings["chunks_encoded"]  # the Ray run resumed a store: checked apart
    return data


@pytest.fixture(scope="module")
def local_run(tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ray-equivalence")
    suite = _suite(tiny_model, tmp)
    return suite, tmp, _run(suite, tmp, "local", executor="local")


@needs_ray
def test_ray_run_is_identical_to_the_single_process_run(local_run):
    suite, tmp, local = local_run
    # Resume into the same store: 2 chunks already there, one of them truncated (must be re-encoded).
    ray_cache = tmp / "cache-ray"
    local_chunks = _chunks(tmp / "cache-local")
    target = ray_cache / "embeddings" / local_chunks[0].parent.name
    target.mkdir(parents=True)
    shutil.copy(local_chunks[0].parent / "meta.json", target / "meta.json")  # the store's creator: chunks count
    for chunk in local_chunks[:2]:
        for suffix in (".npy", ".json"):
            shutil.copy(chunk.with_suffix(suffix), target / chunk.with_suffix(suffix).name)
    (target / local_chunks[1].name).write_bytes(local_chunks[1].read_bytes()[:-100])

    outcome = _ray_child(tmp, "ray", "cluster")
    assert outcome["error"] is None
    # Worker settings travel in Ray's runtime_env; the one change is Ray's own (ray.init points the
    # driver's breakpoint() at Ray's debugger).
    assert outcome["environ_changed"] == ["PYTHONBREAKPOINT"]
    [message] = outcome["messages"]
    assert "encoded 6 chunks on 2 Ray workers" in message  # 7 chunks - 1 intact one already stored
    ray_chunks = _chunks(ray_cache)
    assert [c.name for c in ray_chunks] == [c.name for c in local_chunks] and len(local_chunks) == 7
    for a, b in zip(local_chunks, ray_chunks):
        assert filecmp.cmp(a, b, shallow=False), f"{b.name} differs between the local and the Ray run"
    ray = load_run_record(Path(outcome["record"]))
    assert (Path(outcome["record"]) / "run.trec").read_bytes() == (local.path / "run.trec").read_bytes()
    assert (Path(outcome["record"]) / "per_query.json").read_bytes() == (local.path / "per_query.json").read_bytes()
    # Every record field but timings and who encoded: token and truncation counts included.
    assert local.record.performance.truncated_documents > 0  # NovelEval passages exceed the tiny model's 128
    assert _without_timings_and_hosts(ray) == _without_timings_and_hosts(local.record)
    assert ray.performance.corpus_from_cache is False
    assert (ray.performance.corpus_embeddings.source, ray.performance.corpus_embeddings.chunks_encoded) == \
        ("cache+this-run", 6)
    # Who encoded: locally this host, all 7 chunks; on Ray the 6 missing chunks, on this machine's CPU.
    [here] = local.record.performance.encoding_hosts
    assert (here.chunks, here.rows) == (7, 420) and here.hardware_key.startswith(local.record.environment.cpu_model)
    hosts = ray.performance.encoding_hosts
    assert sum(h.chunks for h in hosts) == 6 and sum(h.rows for h in hosts) == 420 - CHUNK_ROWS
    assert all(h.host == here.host and h.hardware_key.startswith(ray.environment.cpu_model) for h in hosts)

    # A second Ray run with the same key encodes nothing (and needs no cluster: nothing starts Ray here).
    again = _run(suite, tmp, "ray", executor="ray", ray_address="127.0.0.1:1")
    assert again.record.performance.corpus_from_cache is True
    assert (again.path / "run.trec").read_bytes() == (local.path / "run.trec").read_bytes()
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()  # this process never drove Ray


@needs_ray
def test_a_worker_input_error_reaches_the_driver_and_the_local_instance_is_stopped(nan_model, tmp_path):
    """address=None: the executor starts its own local Ray instance and shuts it down, even on error."""
    _suite(nan_model, tmp_path)
    outcome = _ray_child(tmp_path, "nan", "local")
    assert outcome["record"] is None and "Ray worker" in outcome["error"] and "NaN/inf embeddings" in outcome["error"]
    assert outcome["ray_initialized_after"] is False
    assert not (tmp_path / "results-nan").exists() or not any((tmp_path / "results-nan").iterdir())
    assert _chunks(tmp_path / "cache-nan") == []


@needs_ray
def test_an_unreachable_cluster_is_a_clear_error(local_run, tmp_path):
    suite, _, _ = local_run
    with pytest.raises(HarnessError, match="cannot connect to the Ray cluster at '127.0.0.1:1'"):
        _run(suite, tmp_path, "unreachable", executor="ray", ray_address="127.0.0.1:1")


@needs_ray
def test_importing_the_executor_and_ray_leaves_os_environ_alone():
    """In a fresh interpreter: importing the executor and Ray changes no environment variable; the
    workers' settings (no usage stats, this source tree first on PYTHONPATH) are a runtime_env."""
    code = ("import json, os; before = dict(os.environ); from harness.encode import distributed; "
            "distributed.import_ray(); env = distributed.worker_env(local=True); "
            "print(json.dumps({'same': dict(os.environ) == before, 'env': env}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "RAY_USAGE_STATS_ENABLED"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["same"] is True
    assert result["env"]["RAY_USAGE_STATS_ENABLED"] == "0"
    assert result["env"]["PYTHONPATH"].split(os.pathsep)[0] == str(REPO)  # workers import this checkout


def test_without_ray_the_error_names_the_extra(local_run, tmp_path, monkeypatch):
    suite, _, _ = local_run
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(HarnessError, match=r"pip install '\.\[ray\]'"):
        _run(suite, tmp_path, "noray", executor="ray")
