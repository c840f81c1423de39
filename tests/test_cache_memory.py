"""Issue 22, items 5, 8 and 13 (parts): the memory a record added beside what the process already held; `cache ls`
and `cache clear` see only the stores the harness created; a full or read-only cache named as the fault, with the
reason and the fix."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.encode.store import EmbeddingStore, foreign_entries, list_stores
from harness.input.suite import load_suite
from harness.pipeline.runner import RunOptions, run_suite
from harness.scoring.records import find_records, load_run_record
from harness.vocabulary import timing
from harness.vocabulary.errors import HarnessError
from tests.conftest import DATA, write_suite

MB = 2**20


def resident_array(mb: int) -> np.ndarray:
    return np.ones(mb * MB // 8)  # ones, not zeros: every page written, so resident


@contextmanager
def tmpfs(folder: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at `folder` (mounting needs root: the test is skipped otherwise)."""
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)]
    if shutil.which("mount") is None or subprocess.run(mount, capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


# ---------------------------------------------------------------- item 5: what a record added


def test_the_memory_added_is_the_spans_own_not_what_earlier_work_holds():
    held = resident_array(400)  # what a previous record left in the process
    span = timing.RssSpan.start()
    small = resident_array(40)
    peak = timing.peak_rss_mb()
    assert span.method == "hwm-reset"
    assert peak > 400 + 40  # the peak alone, as records gave it, bills the held 400 MB to this span
    assert span.start_mb > 400
    assert 35 < span.added_mb(peak) < 80, (span, peak)
    del held, small


def test_where_the_peak_cannot_be_reset_nothing_is_claimed_as_added(tmp_path, monkeypatch):
    monkeypatch.setattr(timing, "CLEAR_REFS", tmp_path)  # a directory: as a locked-down /proc, it refuses the reset
    span = timing.RssSpan.start()
    assert span.method == "process-peak" and span.start_mb > 0
    assert span.added_mb(timing.peak_rss_mb()) is None  # the process peak may come from before the span


def noveleval_suite(tmp_path, model, *, name: str):
    return write_suite(tmp_path / "suite.yaml", f"""
name: {name}
datasets:
  - {{name: noveleval, path: {DATA / "noveleval"}, relevance_level: 2}}
encoders:
  - {{name: tiny, model: {model}, device: cpu}}
metrics: [nDCG@10]
top_k: 10
""")


def test_a_record_states_what_it_added_beside_what_the_process_held(tmp_path, tiny_model):
    suite = noveleval_suite(tmp_path, tiny_model, name="memory")
    held = resident_array(400)
    [outcome] = run_suite(load_suite(suite), RunOptions(output=tmp_path / "out", cache=tmp_path / "cache",
                                                        progress=False, latency_calls=5))
    [path] = find_records([tmp_path / "out"])
    perf = load_run_record(path).performance
    assert perf.peak_rss_method == "hwm-reset"
    assert perf.rss_start_mb > 400 and perf.peak_rss_mb > 400  # the held array is in both
    # 420 passages x 32 dimensions and one small model's activations: far below what was held
    assert 0 <= perf.rss_added_mb < 200, perf
    assert perf.rss_added_mb == pytest.approx(perf.peak_rss_mb - perf.rss_start_mb, abs=0.01)
    assert outcome.record.performance == perf
    del held


# ---------------------------------------------------------------- item 8: only the harness's stores


def real_store(root: Path) -> EmbeddingStore:
    store = EmbeddingStore(root, {"model": "m", "dataset": "d"}, n_rows=3, chunk_rows=3, dtype="fp32")
    store.write(0, np.ones((3, 4), dtype=np.float32), seconds=0.1, tokens=9)
    return store


def make_stray(embeddings: Path, kind: str) -> Path:
    if kind == "file":
        stray = embeddings / ".DS_Store"
        stray.write_bytes(b"\0\0\0\1Bud1")
    elif kind == "folder":  # another tool's folder: no meta.json
        stray = embeddings / "notes"
        stray.mkdir()
        (stray / "todo.txt").write_text("keep me")
    else:  # a meta.json whose settings do not give the folder's name as their key (copied or renamed by hand)
        stray = embeddings / "0123456789abcdef01234567"
        stray.mkdir()
        (stray / "meta.json").write_text(json.dumps({"parts": {"model": "m"}, "dtype": "fp32", "chunk_rows": 3}))
    return stray


def files_under(path: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in (path, *path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", ["file", "folder", "misnamed-store"])
def test_cache_ls_and_clear_leave_what_the_harness_did_not_create(tmp_path, capsys, kind):
    root = tmp_path / "cache"
    store = real_store(root)
    stray = make_stray(root / "embeddings", kind)
    contents = files_under(stray)
    assert [s.key for s in list_stores(root)] == [store.key]
    assert foreign_entries(root) == [stray]

    assert main(["cache", "ls", "--cache", str(root)]) == 0
    out = capsys.readouterr().out
    assert store.key in out and "1 store(s)" in out

    assert main(["cache", "clear", "--cache", str(root)]) == 0
    assert "removed 1 store(s)" in capsys.readouterr().out
    assert not store.path.exists()
    assert sorted((root / "embeddings").iterdir()) == [stray] and files_under(stray) == contents


# ---------------------------------------------------------------- item 13: a full or read-only cache


@contextmanager
def filled(disk: Path) -> Iterator[None]:
    """All but 8 kB of `disk` taken, so that a larger write fails part way with ENOSPC (where numpy's own write
    gives no reason); freed again on exit."""
    filler = disk / "filler"
    stat = os.statvfs(disk)
    filler.write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 8192))
    yield
    filler.unlink()


@contextmanager
def file_size_limit() -> Iterator[None]:
    """RLIMIT_FSIZE on this process, so a write past 20 kB fails with EFBIG (SIGXFSZ ignored); no root needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


@pytest.fixture(params=["disk-full", "file-size-limit"])
def no_room(request, tmp_path):
    """(a folder for the cache, a context in which writing there fails for lack of room, the system's reason)."""
    if request.param == "disk-full":
        with tmpfs(tmp_path / "disk", "size=1m") as disk:
            yield disk, filled(disk), "No space left on device"
    else:
        yield tmp_path, file_size_limit(), "File too large"


def test_a_failed_embedding_write_names_the_store_and_the_real_reason(no_room):
    place, fault, reason = no_room
    store = EmbeddingStore(place / "cache", {"model": "m", "dataset": "d"}, n_rows=420, chunk_rows=420,
                           dtype="fp32")
    embeddings = np.ones((420, 32), dtype=np.float32)  # 53 kB
    with fault, pytest.raises(HarnessError) as caught:
        store.write(0, embeddings, seconds=1.0, tokens=420)
    message = str(caught.value)
    assert message.startswith(f"{store.path}: writing embeddings failed ({reason})"), message
    assert "None" not in message and "free disk space or set HARNESS_CACHE elsewhere" in message
    assert sorted(p.name for p in store.path.iterdir()) == ["meta.json"]  # nothing half-written
    store.write(0, embeddings, seconds=1.0, tokens=420)  # room again: the rerun writes the chunk
    assert store.missing() == [] and np.array_equal(store.read(0), embeddings)


def test_a_store_that_cannot_be_created_leaves_nothing_behind(tmp_path):
    with tmpfs(tmp_path / "disk", "size=1m") as disk:
        stat = os.statvfs(disk)
        (disk / "filler").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize))  # not a byte left
        with pytest.raises(HarnessError, match=r"creating the embedding store failed \(No space left on device\); "
                                               "free disk space or set HARNESS_CACHE elsewhere"):
            EmbeddingStore(disk / "cache", {"model": "m"}, n_rows=3, chunk_rows=3, dtype="fp32")
        assert list((disk / "cache" / "embeddings").iterdir()) == []  # no store folder, meta.json or temporary file


@pytest.fixture
def read_only_dir(tmp_path) -> Iterator[Path]:
    folder = tmp_path / "read-only"
    if os.geteuid() == 0:  # root writes whatever the file modes say: a read-only mount instead
        with tmpfs(folder, "size=1m,ro"):
            yield folder
    else:
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


def test_a_read_only_cache_is_named_as_the_fault_not_the_dataset(tmp_path, tiny_model, read_only_dir, capsys):
    suite = noveleval_suite(tmp_path, tiny_model, name="read-only")
    cache = read_only_dir / "cache"
    code = main(["run", str(suite), "-o", str(tmp_path / "out"), "--cache", str(cache), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"the cache directory {cache} is not writable; set HARNESS_CACHE (or pass --cache)" in err, err
    assert "OSError" not in err and "Traceback" not in err
    assert not list((tmp_path / "out").glob("*"))  # nothing written


def test_a_corpus_index_that_does_not_fit_names_the_cache_and_leaves_nothing(tmp_path, tiny_model, capsys):
    suite = write_suite(tmp_path / "suite.yaml", f"""
name: index
datasets:
  - {{name: dl19-pool, path: {DATA / "msmarco-trecdl2019-pool"}, relevance_level: 2}}
encoders:
  - {{name: tiny, model: {tiny_model}, device: cpu}}
metrics: [nDCG@10]
top_k: 10
""")
    with tmpfs(tmp_path / "disk", "size=1m") as disk, filled(disk):  # the index's offsets alone take 117 kB
        code = main(["run", str(suite), "-o", str(tmp_path / "out"), "--cache", str(disk / "cache"),
                     "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2, err
        assert "saving the corpus index failed (No space left on device)" in err, err
        assert "free disk space or set HARNESS_CACHE" in err
        assert "(None)" not in err and "Traceback" not in err
        assert list((disk / "cache" / "corpus-index").iterdir()) == []  # no index, no temporary folder
    assert not list((tmp_path / "out").glob("*"))
