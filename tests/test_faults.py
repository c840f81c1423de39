"""The fault matrix: kills, interrupts, corrupt caches, full disks, concurrent writers, fuzzed suites.

Each case checks the message, the exit code, and that nothing partial is left among the records.
"""

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.scoring.records import load_run_record
from harness.vocabulary.errors import HarnessError
from tests.conftest import DATA, REPO, write_suite

SUITE = """
name: faults
datasets:
  - name: noveleval
    path: {data}
    relevance_level: 2
encoders:
  - name: enc
    model: {model}
    max_seq_length: 128
    device: cpu
metrics: [MRR@10, nDCG@10, Recall@100]
top_k: 100
"""


def harness(*args, env=None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *map(str, args)], cwd=REPO,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def suite_for(tmp_path: Path, model, name="suite.yaml") -> Path:
    return write_suite(tmp_path / name, SUITE.format(data=DATA / "noveleval", model=model))


def only_complete_records(folder: Path) -> list[Path]:
    """Every visible entry of a results folder must be a complete record (hidden temp dirs may remain)."""
    if not folder.exists():
        return []
    visible = [p for p in folder.iterdir() if not p.name.startswith(".")]
    for entry in visible:
        assert (entry / "record.json").is_file() and (entry / "run.trec").is_file(), entry
    return sorted(visible)


def wait_for(predicate, timeout=240.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of the bundled MiniLM on NovelEval, 50-row chunks."""
    tmp = tmp_path_factory.mktemp("reference")
    code, out, err = finish(harness("run", suite_for(tmp, "bundled:all-MiniLM-L6-v2"), "-o", tmp / "out",
                                    "--cache", tmp / "cache", "--chunk-rows", 50, "--no-progress",
                                    "--latency-calls", 20))
    assert code == 0, err
    [record] = only_complete_records(tmp / "out")
    return record


def chunks_done(cache: Path) -> int:
    return len(list(cache.glob("embeddings/*/chunk-*.json")))


@pytest.mark.parametrize("when", ["encoding", "after-encoding"])
def test_kill_9_then_resume_gives_identical_results(tmp_path, reference, when):
    suite, out, cache = suite_for(tmp_path, "bundled:all-MiniLM-L6-v2"), tmp_path / "out", tmp_path / "cache"
    args = ("run", suite, "-o", out, "--cache", cache, "--chunk-rows", 50, "--no-progress")  # 1,000 timed calls: the
    proc = harness(*args)                                       # after-encoding kill lands while they run
    if when == "encoding":
        wait_for(lambda: chunks_done(cache) >= 2, proc=proc)
    else:  # all 9 chunks written: the process is measuring latency, searching or writing the record
        wait_for(lambda: chunks_done(cache) >= 9, proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    partial = chunks_done(cache)
    assert only_complete_records(out) == []

    code, _, err = finish(harness(*args))
    assert code == 0, err
    [record_dir] = only_complete_records(out)
    record = load_run_record(record_dir)
    assert record.performance.corpus_from_cache is (partial == 9)
    assert record.metrics == load_run_record(reference).metrics
    assert (record_dir / "run.trec").read_bytes() == (reference / "run.trec").read_bytes()


def test_corrupt_chunk_is_detected_and_re_encoded(tmp_path, reference):
    suite, out, cache = suite_for(tmp_path, "bundled:all-MiniLM-L6-v2"), tmp_path / "out", tmp_path / "cache"
    args = ("run", suite, "-o", out, "--cache", cache, "--chunk-rows", 50, "--no-progress", "--latency-calls", 20)
    assert finish(harness(*args))[0] == 0
    [chunk] = cache.glob("embeddings/*/chunk-000003.npy")
    data = chunk.read_bytes()
    chunk.write_bytes(data[:-100] + bytes(100))  # same size, wrong content
    [truncated] = cache.glob("embeddings/*/chunk-000005.npy")
    truncated.write_bytes(truncated.read_bytes()[:1000])
    code, _, err = finish(harness(*args))
    assert code == 0, err
    newest = only_complete_records(out)[-1]
    assert load_run_record(newest).performance.corpus_from_cache is False  # two chunks were re-encoded
    assert (newest / "run.trec").read_bytes() == (reference / "run.trec").read_bytes()


def _interruptible():
    # A shell without job control starts background jobs with SIGINT ignored, and the child would inherit that
    # (the run would finish with 0): restore the default so that Python turns SIGINT into KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_exits_cleanly_and_the_rerun_resumes(tmp_path, reference):
    suite, out, cache = suite_for(tmp_path, "bundled:all-MiniLM-L6-v2"), tmp_path / "out", tmp_path / "cache"
    args = ("run", suite, "-o", out, "--cache", cache, "--chunk-rows", 50, "--no-progress", "--latency-calls", 20)
    proc = harness(*args, preexec_fn=_interruptible)
    wait_for(lambda: chunks_done(cache) >= 1, proc=proc)
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc)
    assert code == 130
    assert "interrupted: nothing partial was kept; rerun to resume" in err
    assert "Traceback" not in err
    assert only_complete_records(out) == []
    assert finish(harness(*args))[0] == 0
    [record_dir] = only_complete_records(out)
    assert (record_dir / "run.trec").read_bytes() == (reference / "run.trec").read_bytes()


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


def test_disk_full_while_writing_embeddings(tmp_path, tiny_model):
    out, cache = tmp_path / "out", tmp_path / "cache"
    proc = harness("run", suite_for(tmp_path, tiny_model), "-o", out, "--cache", cache, "--chunk-rows", 420,
                   "--no-progress", preexec_fn=_limit_file_size)
    code, _, err = finish(proc)
    assert code == 2
    assert "writing embeddings failed" in err and "free disk space or set HARNESS_CACHE elsewhere" in err
    assert only_complete_records(out) == []
    assert chunks_done(cache) == 0 and not list(cache.glob("embeddings/*/chunk-*.npy"))


def test_unwritable_results_folder(tmp_path, tiny_model):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    code, _, err = finish(harness("run", suite_for(tmp_path, tiny_model), "-o", blocker / "results",
                                  "--cache", tmp_path / "cache", "--no-progress"))
    assert code == 2 and "cannot create the results folder" in err and "choose a writable --output" in err


def test_two_runs_into_the_same_folder_at_once(tmp_path, tiny_model):
    suite, out = suite_for(tmp_path, tiny_model), tmp_path / "out"
    procs = [harness("run", suite, "-o", out, "--cache", tmp_path / f"cache{i}", "--no-progress") for i in range(2)]
    assert [finish(p)[0] for p in procs] == [0, 0]
    records = only_complete_records(out)
    assert len(records) == 2
    a, b = (load_run_record(r) for r in records)
    assert a.metrics == b.metrics


@pytest.mark.parametrize("engine", ["fast", "sentence-transformers"])
def test_extremely_long_documents_are_truncated_and_counted(tmp_path, tiny_model, engine):
    """NovelEval plus three 40,000-word documents: they are cut at max_seq_length (128) and counted."""
    import shutil

    data = tmp_path / "long"
    shutil.copytree(DATA / "noveleval", data)
    corpus = data / "corpus.jsonl"
    lines = corpus.read_text(encoding="utf-8").splitlines()
    long_docs = [json.dumps({"_id": f"long-{i}", "title": "", "text": " ".join(["retrieval"] * 40_000)})
                 for i in range(3)]
    corpus.write_text("\n".join(lines + long_docs) + "\n", encoding="utf-8")
    suite = write_suite(tmp_path / "suite.yaml", SUITE.format(data=data, model=tiny_model).replace(
        "device: cpu", f"device: cpu\n    engine: {engine}"))
    code, _, err = finish(harness("run", suite, "-o", tmp_path / "out", "--cache", tmp_path / "cache",
                                  "--no-progress"))
    assert code == 0, err
    [record] = only_complete_records(tmp_path / "out")
    perf = load_run_record(record).performance
    from harness.encode.engines import count_tokens
    from harness.encode.models import load_sentence_transformer

    model = load_sentence_transformer(str(tiny_model), device="cpu")
    rows = [json.loads(line) for line in lines]
    texts = [f"{row.get('title') or ''} {row.get('text') or ''}".strip() for row in rows]
    tokens, truncated = count_tokens(model.tokenizer, texts, 128)
    assert perf.truncated_documents == truncated + 3  # the three long ones and any long original
    assert perf.corpus_tokens == tokens + 3 * 128


def test_two_cpu_runs_are_bitwise_identical(tmp_path, tiny_model):
    """Determinism: separate caches, so both runs encode, search and evaluate from scratch."""
    from harness.input.suite import load_suite
    from harness.pipeline.runner import RunOptions, run_suite

    suite = load_suite(suite_for(tmp_path, tiny_model))
    runs = [run_suite(suite, RunOptions(output=tmp_path / "out", cache=tmp_path / f"c{i}", progress=False))[0]
            for i in range(2)]
    assert (runs[0].path / "run.trec").read_bytes() == (runs[1].path / "run.trec").read_bytes()
    assert (runs[0].path / "per_query.json").read_bytes() == (runs[1].path / "per_query.json").read_bytes()
    assert runs[0].record.metrics == runs[1].record.metrics


# ---------------------------------------------------------------- fuzzing the suite loader

yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 2000) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["name", "datasets", "encoders", "metrics", "top_k", "path", "model", "split",
                         "relevance_level", "similarity", "precision", "expect", "value", "nmae", "x"]),
        children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(yaml_values)
def test_fuzzed_suites_never_raise_anything_but_a_clear_error(tmp_path_factory, value):
    path = tmp_path_factory.mktemp("fuzz") / "suite.yaml"
    path.write_text(yaml.safe_dump(value), encoding="utf-8")
    from harness.input.suite import load_suite

    try:
        load_suite(path)
    except HarnessError as exc:
        assert str(path) in str(exc)


def test_fuzzed_suite_through_the_cli_exits_2(tmp_path):
    path = write_suite(tmp_path / "s.yaml", json.dumps({"name": 3, "datasets": [{"nmae": None}], "encoders": {}}))
    code, _, err = finish(harness("run", path, "-o", tmp_path / "out"))
    assert code == 2 and "error:" in err and "Traceback" not in err
