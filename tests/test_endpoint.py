"""engine: http against a real Infinity server started here on 127.0.0.1 (and scripted servers for the faults a real
one cannot show on cue): the suite through the endpoint equals the in-process run, served-check tells an equal
server from one that pools or normalises otherwise, and every fault ends clearly with nothing half-written."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness.api import run_suite, served_check
from harness.encode.models import bundled_minilm_path
from harness.input.suite import parse_suite
from harness.scoring.scored import ScoredRun
from harness.vocabulary.errors import HarnessError
from tests.servers import (
    InfinityServer,
    ScriptedServer,
    free_port,
    model_with_cls_pooling,
    model_without_normalize,
    vectors_answer,
)

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
KEY = "sk-test-9f8e7d6c5b4a"  # the Infinity server's key: it must never reach a record, a message or a log
KEY_ENV = "HARNESS_TEST_EMBEDDINGS_KEY"
METRICS = ["nDCG@10", "MRR@10", "Recall@100", "MAP"]


@pytest.fixture(scope="module")
def infinity(tmp_path_factory):
    log = tmp_path_factory.mktemp("infinity") / "server.log"
    with InfinityServer(bundled_minilm_path(), args=("--api-key", KEY, "--served-model-name", "minilm"),
                        log=log) as server:
        yield server


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def suite_of(tmp_path: Path, encoders: list[dict], *, datasets=("noveleval",), top_k: int = 100):
    raw = {"name": "served", "datasets": [{"name": d, "path": str(DATA / d)} for d in datasets],
           "encoders": encoders, "metrics": METRICS, "top_k": top_k}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(raw))
    return parse_suite(raw, source=path), path


def served(url: str, *, name: str = "served", similarity: str = "cosine", **endpoint) -> dict:
    return {"name": name, "engine": "http", "similarity": similarity,
            "endpoint": {"url": url, "api_key_env": KEY_ENV, **endpoint}}


def offline(name: str = "offline", similarity: str = "cosine") -> dict:
    return {"name": name, "model": "bundled:all-MiniLM-L6-v2", "similarity": similarity}


def harness_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args, "--no-progress"], cwd=cwd,
                          capture_output=True, text=True, timeout=900)


def assert_same_run(a: ScoredRun, b: ScoredRun, metrics=METRICS) -> None:
    for metric in metrics:
        assert a.record.metrics[metric] == pytest.approx(b.record.metrics[metric], abs=1e-4), metric
        for qid, value in a.per_query[metric].items():
            assert value == pytest.approx(b.per_query[metric][qid], abs=1e-4), (metric, qid)


def test_a_suite_through_infinity_equals_the_in_process_run(infinity, tmp_path):
    suite, _ = suite_of(tmp_path, [served(infinity.url, reference_model="bundled:all-MiniLM-L6-v2",
                                          reference_sample=32), offline()])
    result = run_suite(suite, output=tmp_path / "out", progress=False, latency_calls=30, fail_fast=True)
    through, here = result.results
    assert_same_run(through, here)
    info = through.record.encoder
    assert info.settings.engine == "http" and info.dimension == 384
    endpoint = info.endpoint
    assert endpoint.server.server_version == "0.0.78" and "Infinity" in endpoint.server.server
    assert endpoint.server.served_model == "minilm" and endpoint.server.models == ["minilm"]
    # 420 passages in 14 requests of 32 (unless cached), 21 queries in 1, 30 timed calls, the probe and the sample
    assert endpoint.usage.requests >= 1 + 30 + 2 and endpoint.usage.retries == {}
    assert endpoint.tokens_counted_by_server and through.record.performance.throughput.tokens_per_s is not None
    equality = endpoint.equality
    assert equality.verdict == "equal" and equality.passages.texts == 32 and equality.queries.texts == 21
    assert equality.passages.cosine_min > 0.99999 and abs(equality.passages.norm_ratio_max - 1) < 1e-4
    assert through.record.encoder.fingerprint != here.record.encoder.fingerprint
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(errors="replace"), path


def test_the_embedding_cache_is_keyed_by_the_server(infinity, tmp_path):
    """A second run reads the corpus from the cache; another model behind the same URL would be another key
    (the probe digest), and so is the same server at another address."""
    suite, _ = suite_of(tmp_path, [served(infinity.url)])
    first = run_suite(suite, progress=False, latency_calls=5, fail_fast=True).results[0]
    again = run_suite(suite, progress=False, latency_calls=5, fail_fast=True).results[0]
    assert again.record.performance.corpus_embeddings.chunks_encoded == 0
    assert again.record.performance.embedding_store.key == first.record.performance.embedding_store.key
    server = first.record.encoder.endpoint.server
    other = server.model_copy(update={"probe_digest": "another model"})
    assert other.fingerprint != server.fingerprint
    assert server.model_copy(update={"url": "http://127.0.0.1:1"}).fingerprint != server.fingerprint


def test_served_check_passes_an_equal_server_and_catches_other_pooling(infinity, tmp_path):
    reference = {"reference_model": "bundled:all-MiniLM-L6-v2", "reference_sample": 48}
    suite, path = suite_of(tmp_path, [served(infinity.url, **reference)])
    result = served_check(suite, output=tmp_path / "equal", progress=False, latency_calls=5)
    assert result.ok, result.to_text()
    assert [p.verdict for p in result.pairs] == ["equal"]
    assert {m.metric for m in result.pairs[0].metrics} == set(METRICS)
    assert all(abs(m.stats.delta) <= 1e-4 for m in result.pairs[0].metrics)

    cls_model = model_with_cls_pooling(bundled_minilm_path(), tmp_path / "minilm-cls")
    with InfinityServer(cls_model) as cls_server:
        suite, path = suite_of(tmp_path, [served(cls_server.url, name="cls-served", **reference)])
        run = harness_cli("served-check", str(path), "-o", str(tmp_path / "cls"), "--latency-calls", "5",
                          "--json", str(tmp_path / "cls.json"), cwd=tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "served model DIFFERS" in run.stdout and "point elsewhere" in run.stdout
    saved = json.loads((tmp_path / "cls.json").read_text())
    pair = saved["pairs"][0]
    assert pair["verdict"] == "differs" and pair["equality"]["passages"]["cosine_min"] < 0.99


def test_served_check_catches_a_server_that_normalises_a_dot_product_model(infinity, tmp_path):
    """The offline model gives unnormalised vectors; the server normalises (as TEI does by default). Under dot
    scoring every score changes; cosines alone would not show it."""
    raw = model_without_normalize(bundled_minilm_path(), tmp_path / "minilm-unnormalised")
    suite, _ = suite_of(tmp_path, [served(infinity.url, similarity="dot", reference_model=str(raw),
                                          reference_sample=32)])
    result = served_check(suite, output=tmp_path / "out", progress=False, latency_calls=5)
    assert not result.ok
    pair = result.pairs[0]
    assert pair.equality.passages.cosine_min > 0.99999  # same directions ...
    assert pair.equality.passages.norm_ratio_max < 0.999 or pair.equality.passages.norm_ratio_min > 1.001
    assert any("other lengths" in reason for reason in pair.reasons)


@pytest.mark.slow
def test_dl19_pool_through_infinity_equals_the_in_process_run(infinity, tmp_path):
    suite, _ = suite_of(tmp_path, [served(infinity.url, concurrency=2), offline()],
                        datasets=("msmarco-trecdl2019-pool",), top_k=1000)
    suite = suite.model_copy(update={"datasets": [d.model_copy(update={"relevance_level": 2})
                                                  for d in suite.datasets]})
    through, here = run_suite(suite, progress=False, latency_calls=5, fail_fast=True).results
    assert_same_run(through, here)


# ------------------------------------------------------------------ bad input and faults


def test_an_unreachable_endpoint_exits_2_before_anything_is_written(tmp_path):
    _, path = suite_of(tmp_path, [served(f"http://127.0.0.1:{free_port()}")])
    run = harness_cli("run", str(path), "--output", str(tmp_path / "out"), cwd=tmp_path)
    assert run.returncode == 2
    assert "cannot reach the endpoint at http://127.0.0.1:" in run.stderr and "endpoint.url" in run.stderr
    assert not (tmp_path / "out").exists()


def test_the_wrong_api_shape_and_a_wrong_key_are_named(infinity, tmp_path, monkeypatch):
    suite, _ = suite_of(tmp_path, [served(infinity.url, api="tei")])
    with pytest.raises(HarnessError, match=r"/info.*api: openai|/info answered HTTP 404"):
        run_suite(suite, progress=False, fail_fast=True)
    monkeypatch.setenv(KEY_ENV, "sk-wrong-key-000")
    suite, _ = suite_of(tmp_path, [served(infinity.url)])
    with pytest.raises(HarnessError) as caught:
        run_suite(suite, progress=False, fail_fast=True)
    assert f"${KEY_ENV} was not accepted" in str(caught.value) and "sk-wrong-key-000" not in str(caught.value)
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(HarnessError, match=f"names \\${KEY_ENV}, which is not set"):
        run_suite(suite, progress=False, fail_fast=True)


def test_credentials_in_the_suite_are_refused_without_repeating_them(tmp_path):
    for endpoint, field in (({"url": f"http://user:{KEY}@127.0.0.1:1"}, "url"),
                            ({"url": "http://127.0.0.1:1", "api_key_env": KEY}, "api_key_env")):
        raw = {"name": "s", "datasets": [{"name": "d", "path": str(DATA / "noveleval")}],
               "encoders": [{"name": "e", "engine": "http", "endpoint": endpoint}]}
        with pytest.raises(HarnessError) as caught:
            parse_suite(raw, source=tmp_path / "s.yaml")
        assert f"endpoint.{field}" in str(caught.value) and KEY.removeprefix("sk-") not in str(caught.value)


def test_a_key_the_server_repeats_in_an_error_is_redacted(tmp_path):
    def echo(n, body):
        return (200, vectors_answer(body["input"])) if n == 0 else (400, {"error": f"bad request, key {KEY}"})

    with ScriptedServer(echo) as server:
        suite, _ = suite_of(tmp_path, [served(server.url)])
        with pytest.raises(HarnessError) as caught:
            run_suite(suite, progress=False, fail_fast=True)
    assert "HTTP 400" in str(caught.value) and "key ***" in str(caught.value) and KEY not in str(caught.value)
    assert server.headers_seen[0]["Authorization"] == f"Bearer {KEY}"


def test_the_tei_shape_is_sent_and_read_as_tei_documents_it(tmp_path):
    """TEI's /info names the model, its commit and input limit; /embed takes {"inputs", "truncate", "normalize"}
    and answers a bare list of vectors. All of it reaches the record and the embedding key."""
    info = {"model_id": "org/minilm", "model_sha": "abc123", "max_input_length": 256, "version": "1.8.0"}

    def tei(n, body):
        return 200, [row["embedding"] for row in vectors_answer(body["inputs"])["data"]]

    with ScriptedServer(tei, tei=info) as server:
        suite, _ = suite_of(tmp_path, [served(server.url, api="tei", normalize=False, similarity="dot")])
        run = run_suite(suite, progress=False, latency_calls=5, fail_fast=True).results[0]
    assert all(r["truncate"] is True and r["normalize"] is False and "inputs" in r for r in server.requests)
    endpoint = run.record.encoder.endpoint
    assert (endpoint.server.server, endpoint.server.server_version) == ("text-embeddings-inference", "1.8.0")
    assert endpoint.server.model_sha == "abc123" and run.record.encoder.settings.max_seq_length == 256
    assert endpoint.server.served_model == "org/minilm" and not endpoint.tokens_counted_by_server
    assert run.record.performance.throughput.tokens_per_s is None  # TEI's /embed does not count tokens


def test_retries_are_bounded_and_counted(tmp_path):
    """Every other request is refused with 503 then succeeds: the run completes and its record counts the
    retries; a server that refuses everything fails after 1 + retries attempts, naming the counts."""
    def flaky(n, body):
        return (503, {"error": "busy"}, {"Retry-After": "0"}) if n % 2 == 1 else (200, vectors_answer(body["input"]))

    with ScriptedServer(flaky) as server:
        suite, _ = suite_of(tmp_path, [served(server.url, backoff_s=0.0, concurrency=1)])
        run = run_suite(suite, progress=False, latency_calls=10, fail_fast=True).results[0]
    usage = run.record.encoder.endpoint.usage
    assert usage.retries == {"http-503": server.posts - 1 - usage.requests}  # 1: the probe, when it was opened
    assert usage.retries["http-503"] >= 10 and run.record.metrics["nDCG@10"] > 0

    def storm(n, body):
        return (200, vectors_answer(body["input"])) if n == 0 else (429, {"error": "slow down"})

    with ScriptedServer(storm) as server:
        suite, _ = suite_of(tmp_path, [served(server.url, backoff_s=0.0, retries=2, concurrency=1)])
        with pytest.raises(HarnessError, match=r"failed request 1 of \d+ .* 3 times \(3 http-429\); 2 retries"):
            run_suite(suite, progress=False, fail_fast=True)
        assert server.posts == 1 + 3


@pytest.mark.parametrize("fault, message", [
    ("nan", r"NaN or infinite values in 1 of \d+ vectors \(first: text 0"),
    ("dimension", r"with 16-dimensional vectors, where it gave 8 when opened"),
    ("count", r"answered .* with 1 vectors for \d+ texts"),
    ("shape", r"in another shape than a JSON object whose data list"),
])
def test_a_wrong_answer_names_the_endpoint_and_the_request(tmp_path, fault, message):
    def answer(n, body):
        texts = body["input"]
        if n < 2:  # the probe and the first corpus request are right
            return 200, vectors_answer(texts)
        if fault == "nan":
            good = vectors_answer(texts)
            good["data"][0]["embedding"][3] = math.nan
            return 200, good
        if fault == "dimension":
            return 200, vectors_answer(texts, dim=16)
        if fault == "count":
            return 200, vectors_answer(texts[:1])
        return 200, {"embeddings": [[0.0] * 8 for _ in texts]}

    with ScriptedServer(answer) as server:
        suite, _ = suite_of(tmp_path, [served(server.url, concurrency=1)])
        with pytest.raises(HarnessError, match=message) as caught:
            run_suite(suite, progress=False, fail_fast=True)
    assert f"{server.url}/embeddings" in str(caught.value) and "request 2 of" in str(caught.value)


def test_a_server_killed_mid_run_leaves_complete_chunks_and_the_next_run_resumes(tmp_path):
    port = free_port()
    cache = tmp_path / "cache"
    suite, _ = suite_of(tmp_path, [served(f"http://127.0.0.1:{port}", retries=1, backoff_s=0.1)])
    killer_done = threading.Event()
    with InfinityServer(bundled_minilm_path(), port=port, args=("--api-key", KEY)) as server:
        def kill_after_first_chunk():
            while not list((cache / "embeddings").glob("*/chunk-*.json")) and server.process.poll() is None:
                time.sleep(0.05)
            server.kill()
            killer_done.set()

        threading.Thread(target=kill_after_first_chunk, daemon=True).start()
        with pytest.raises(HarnessError, match=r"failed request .* times \(\d+ connection\)"):
            run_suite(suite, output=tmp_path / "out", cache=cache, chunk_rows=64, progress=False, fail_fast=True)
        assert killer_done.wait(30)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    chunks = sorted((cache / "embeddings").glob("*/chunk-*.json"))  # a chunk is complete once its sidecar is written
    assert 1 <= len(chunks) < math.ceil(420 / 64)
    assert all(np.load(c.with_suffix(".npy")).shape == (64, 384) for c in chunks)
    with InfinityServer(bundled_minilm_path(), port=port, args=("--api-key", KEY)):
        run = run_suite(suite, output=tmp_path / "out", cache=cache, chunk_rows=64, progress=False,
                        latency_calls=5, fail_fast=True).results[0]
    provenance = run.record.performance.corpus_embeddings
    assert provenance.chunks_encoded == math.ceil(420 / 64) - len(chunks)
