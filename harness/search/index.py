"""Approximate (and exact) indexes over the embedding store: built once per build setting, cached, searched into `TopK`.

    <cache>/indexes/<key>/
        meta.json        what the key stands for (store key, backend and its version, build settings, similarity),
                         how the build went (seconds, training rows, peak RSS) and the sha256 of every index file
        index/...        the backend's files (a FAISS index file, a LanceDB table)

The key is the embedding store's key x backend x backend version x build settings x similarity x INDEX_VERSION, so
search settings (efSearch, nprobe, rerank) reuse one built index. An index is built in a hidden writer folder and
renamed into place only once meta.json (written last) names every file's checksum: a build killed at any point
leaves no folder a later run would trust, and a folder whose files do not match their checksums is removed and
built again (logged, naming it). A `MemoryStore` (`harness.evaluate_model`) gets an index in a temporary folder.

Building reads the store a chunk at a time (a training sample first, for the kinds that train); ANN scores may be
approximate (PQ, SQ), and ``rerank`` re-scores an index's candidates exactly from the store. Results are put in the
exact search's tie order (score descending, then lower row); a query for which the index returns fewer than k rows
keeps -1 in the rest of its row of `TopK.indices` (and -inf scores).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from harness.input.indexes import IndexSpec, index_problem
from harness.search.exact import TopK
from harness.search.vectors import Store, VectorSource
from harness.vocabulary import timing
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.files import atomic_file, remove_dead_writers_folders, writer_folder

log = logging.getLogger(__name__)

INDEX_VERSION = 1  # bump when this module changes what a built index holds
META_FILE = "meta.json"
SEARCH_BATCH = 4096  # queries per backend call


class Searcher(Protocol):
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) float32/int64 [n, k], best first, -1 rows where the index has fewer than k."""


class Backend(Protocol):
    name: str

    def version(self) -> str: ...

    def check(self, spec: IndexSpec, dim: int) -> str | None:
        """Why the backend would refuse these settings for vectors of `dim` (None: it accepts them)."""

    def build(self, spec: IndexSpec, build: dict[str, Any], vectors: VectorSource, folder: Path) -> int | None:
        """Write the index into `folder` from `vectors`; returns the rows it trained on (None: no training)."""

    def open(self, spec: IndexSpec, folder: Path, dim: int) -> Searcher:
        """The built index in `folder`, with `spec`'s search settings applied."""


class IndexMeta:
    """meta.json of a built index (what it is, how its build went, its files' checksums)."""

    @staticmethod
    def write(folder: Path, data: dict[str, Any]) -> None:
        files = {str(p.relative_to(folder)): _sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}
        with atomic_file(folder / META_FILE) as handle:
            json.dump({**data, "files": files}, handle, indent=1)

    @staticmethod
    def read_verified(folder: Path) -> dict[str, Any] | None:
        """The meta of an intact index; None when missing, unreadable or when a file differs from its checksum."""
        try:
            data = json.loads((folder / META_FILE).read_text())
            files = data["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        present = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} - {META_FILE}
        if present != set(files):
            return None
        if any(_sha256(folder / name) != digest for name, digest in files.items()):
            return None
        return data


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class BuiltIndex:
    """An index ready to search, and what building it cost."""

    spec: IndexSpec
    backend: str
    backend_version: str
    build_settings: dict[str, Any]
    search_settings: dict[str, Any]
    build_s: float
    train_rows: int | None
    bytes_on_disk: int
    build_peak_rss_mb: float | None
    resident_mb: float | None
    from_cache: bool
    key: str
    searcher: Searcher
    vectors: VectorSource
    _keep: Any = field(default=None, repr=False)  # a temporary folder that must live as long as the index

    def search(self, queries: np.ndarray, k: int) -> TopK:
        """The top k rows of every query, in exact-search tie order; `rerank` candidates re-scored exactly."""
        q = self.vectors.prepared(np.asarray(queries))
        k = min(k, self.vectors.store.n_rows)
        asked = max(k, self.spec.rerank or 0)
        scores, rows = [], []
        for start in range(0, len(q), SEARCH_BATCH):
            s, r = self.searcher.search(q[start:start + SEARCH_BATCH], asked)
            if self.spec.rerank:
                s = self._exact_scores(q[start:start + SEARCH_BATCH], r)
            s, r = _tie_order(s, r)
            scores.append(s[:, :k])
            rows.append(r[:, :k])
        return TopK(np.concatenate(scores), np.concatenate(rows))

    def _exact_scores(self, queries: np.ndarray, rows: np.ndarray, block: int = 64) -> np.ndarray:
        """fp32 scores of each query's candidate rows, read from the store (`block` queries at a time)."""
        out = np.full(rows.shape, -np.inf, dtype=np.float32)
        for start in range(0, len(rows), block):
            r = rows[start:start + block]
            valid = r >= 0
            vectors = self.vectors.rows(r[valid])
            q = np.repeat(queries[start:start + block], valid.sum(axis=1), axis=0)
            out[start:start + block][valid] = np.einsum("ij,ij->i", q, vectors)
        return out


def _tie_order(scores: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query's hits by score descending, then lower row; missing hits (row -1) last."""
    scores = np.where(rows < 0, -np.inf, scores).astype(np.float32)
    order = np.lexsort((np.where(rows < 0, np.iinfo(np.int64).max, rows), -scores), axis=1)
    return np.take_along_axis(scores, order, 1), np.take_along_axis(rows.astype(np.int64), order, 1)


def backend_of(spec: IndexSpec) -> Backend:
    """The backend object, or HarnessError naming the package to install."""
    try:
        if spec.backend == "faiss":
            from harness.search.faiss_index import FaissBackend

            return FaissBackend()
        from harness.search.lance_index import LanceBackend

        return LanceBackend()
    except ImportError as exc:
        package = {"faiss": "faiss-cpu", "lancedb": "lancedb"}[spec.backend]
        raise HarnessError(f"index backend {spec.backend!r} needs the {package} package ({exc}): "
                           f"pip install '{package}' (or the harness's 'index' extra)") from None


def check_index(spec: IndexSpec, *, n_rows: int, dim: int, where: str) -> None:
    """HarnessError (before anything is encoded) naming the setting and the fix, when the index cannot be built."""
    problem = index_problem(spec, n_rows=n_rows, dim=dim) or backend_of(spec).check(spec, dim)
    if problem:
        raise HarnessError(f"{where}: {problem}")


def index_key(store_key: str, spec: IndexSpec, build: dict[str, Any], version: str, similarity: str) -> str:
    parts = {"store": store_key, "backend_version": version, "build": build, "similarity": similarity,
             "index_version": INDEX_VERSION}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def open_index(spec: IndexSpec, store: Store, *, similarity: str, cache: str | os.PathLike[str] | None,
               progress: Callable[[str], None] | None = None) -> BuiltIndex:
    """The index of `spec` over `store`'s vectors: read from the cache when an intact one is there, else built (and
    cached when the store is on disk)."""
    first = next(iter(store.chunks()), None)
    if first is None:
        raise HarnessError("the corpus is empty: there is nothing to index")
    dim = int(first.shape[1])
    backend = backend_of(spec)
    check_index(spec, n_rows=store.n_rows, dim=dim, where="index")
    version = backend.version()
    build = spec.resolved_build(store.n_rows, dim)
    vectors = VectorSource(store, dim, cosine=similarity == "cosine")
    key = index_key(store.key or "memory", spec, build, version, similarity)
    keep = None
    if store.key is None or cache is None:
        keep = tempfile.TemporaryDirectory(prefix="harness-index-")
        folder = Path(keep.name) / key
        meta = None
    else:
        folder = Path(cache) / "indexes" / key
        meta = IndexMeta.read_verified(folder) if folder.exists() else None
        if meta is None and folder.exists():
            log.warning("index %s is damaged or incomplete (a file differs from meta.json's checksum): removed, "
                        "building it again", folder)
            shutil.rmtree(folder, ignore_errors=True)
    from_cache = meta is not None
    if meta is None:
        if progress:
            progress(f"building {spec.label()} over {store.n_rows:,} rows")
        meta = _build(backend, spec, build, vectors, folder, store_key=store.key, version=version,
                      similarity=similarity)
    rss_before = timing.resident_mb()
    searcher = backend.open(spec, folder / "index", dim)
    rss_after = timing.resident_mb()
    return BuiltIndex(
        spec=spec, backend=spec.backend, backend_version=version, build_settings=build,
        search_settings=spec.settings("search"), build_s=meta["build_s"], train_rows=meta["train_rows"],
        bytes_on_disk=sum((folder / "index" / name).stat().st_size for name in _index_files(meta)),
        build_peak_rss_mb=meta.get("build_peak_rss_mb"),
        resident_mb=None if rss_before is None or rss_after is None else max(0.0, rss_after - rss_before),
        from_cache=from_cache, key=key, searcher=searcher, vectors=vectors, _keep=keep,
    )


def _index_files(meta: dict[str, Any]) -> list[str]:
    return [name.removeprefix("index/") for name in meta["files"] if name.startswith("index/")]


def _build(backend: Backend, spec: IndexSpec, build: dict[str, Any], vectors: VectorSource, folder: Path, *,
           store_key: str | None, version: str, similarity: str) -> dict[str, Any]:
    parent = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        remove_dead_writers_folders(parent)
        tmp = writer_folder(parent)
        (tmp / "index").mkdir(parents=True)
    except OSError as exc:
        raise HarnessError(f"{parent}: cannot create the index folder ({exc.strerror}); free space or point "
                           "--cache at a writable folder") from None
    try:
        rss = timing.RssSpan.start()
        started = time.perf_counter()
        train_rows = backend.build(spec, build, vectors, tmp / "index")
        seconds = time.perf_counter() - started
        peak = timing.peak_rss_mb()
        meta = {"store": store_key, "backend": spec.backend, "backend_version": version, "build": build,
                "similarity": similarity, "index_version": INDEX_VERSION, "build_s": seconds,
                "train_rows": train_rows, "build_peak_rss_mb": peak, "build_rss_added_mb": rss.added_mb(peak),
                "rows": vectors.store.n_rows, "dim": vectors.dim, "created_at": timing.utc_now()}
        IndexMeta.write(tmp, meta)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not folder.exists():  # not a concurrent build that won the race
                raise
        return IndexMeta.read_verified(folder) or meta
    except OSError as exc:
        raise HarnessError(f"{parent}: building the index failed ({exc.strerror or exc}); nothing was kept: free "
                           "space or point --cache at a writable folder") from None
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp, ignore_errors=True)
