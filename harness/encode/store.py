"""On-disk embedding store: corpus embeddings in fixed-size chunks, resumable and checksummed.

    <cache>/embeddings/<key>/
        meta.json             what the key stands for (model, dataset, settings, versions), shape, dtype,
                              and who created the store (time, host, CPU)
        chunk-000000.npy      rows [0, chunk_rows) of the corpus embeddings
        chunk-000000.json     {"rows", "sha256", "seconds", "tokens"} -- written after the .npy

A chunk counts only when both files exist and the checksum matches, so a run killed at any point
resumes from the last complete chunk; a corrupt or truncated chunk is re-encoded, never used. Chunks of a
store whose meta.json is missing or unreadable are of unknown origin: they are removed, never used.
`list_stores` and `clear_stores` see only the stores the harness created (`foreign_entries`: the rest of
`embeddings/`, left alone).
`MemoryStore` has the same interface and keeps the chunks in memory (`harness.evaluate_model`: nothing written).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import platform
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ValidationError

from harness.vocabulary.digest import file_sha256
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.files import atomic_file
from harness.vocabulary.npy import write_npy
from harness.vocabulary.timing import cpu_model, utc_now
from harness.vocabulary.validation import StrictModel


class StoreOrigin(StrictModel):
    """The run that created an embedding store (kept in its meta.json): when, where, on which CPU. Its versions
    are the record's ``EmbeddingProvenance.versions``: they are part of the store's key."""

    created_at: str
    hostname: str
    cpu_model: str


META_FILE = "meta.json"


class StoreMeta(StrictModel):
    """A store's meta.json: what its key stands for (``parts``: model fingerprint, dataset fingerprint, encoder
    settings, versions), its layout, and the run that created it."""

    parts: dict[str, Any]
    n_rows: int
    chunk_rows: int
    dtype: Literal["fp16", "fp32"]
    created_by: StoreOrigin

    @property
    def key(self) -> str:
        return store_key({**self.parts, "dtype": self.dtype, "chunk_rows": self.chunk_rows})

    @classmethod
    def read(cls, folder: Path) -> StoreMeta | None:
        """The meta.json in ``folder``; None when it is missing, unreadable or not a store's (nothing to trust)."""
        try:
            return cls.model_validate_json((folder / META_FILE).read_bytes())
        except (OSError, ValidationError):
            return None


def cache_root() -> Path:
    """Where embedding stores (and generated random-weight models) live: $HARNESS_CACHE or ~/.cache/harness."""
    return Path(os.environ.get("HARNESS_CACHE") or Path.home() / ".cache" / "harness")


STORE_DTYPES = {"fp16": np.float16, "fp32": np.float32}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


def cache_write_error(root: Path, where: Path | str, exc: OSError, doing: str) -> HarnessError:
    """What to tell the user when `doing` (at `where`) failed in the cache at `root`: the system's reason and the
    fix (another cache where this one is not writable, else disk space)."""
    if exc.errno in _NOT_WRITABLE:
        return HarnessError(f"{where}: {doing} failed ({exc.strerror}): the cache directory {root} is not "
                            "writable; set HARNESS_CACHE (or pass --cache) to a writable folder")
    return HarnessError(f"{where}: {doing} failed ({exc.strerror or exc}); free disk space or set HARNESS_CACHE "
                        "elsewhere (or pass --cache), then rerun to resume")


def store_key(parts: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class ChunkInfo:
    rows: int
    sha256: str
    seconds: float
    tokens: int
    truncated: int = 0
    pieces: tuple[tuple[int, float], ...] = ()  # (rows, seconds) of timed pieces within the chunk, in order

    @staticmethod
    def summed(infos: Sequence[ChunkInfo]) -> ChunkInfo:
        """Rows, encoding seconds, tokens and truncations summed over chunks (seconds as measured when each
        chunk was written)."""
        return ChunkInfo(rows=sum(i.rows for i in infos), sha256="", seconds=sum(i.seconds for i in infos),
                         tokens=sum(i.tokens for i in infos), truncated=sum(i.truncated for i in infos))


class ChunkedRows:
    """How a store splits the corpus rows into chunks of `chunk_rows` (the last one shorter)."""

    def __init__(self, n_rows: int, chunk_rows: int):
        self.n_rows, self.chunk_rows = n_rows, chunk_rows
        self.n_chunks = (n_rows + chunk_rows - 1) // chunk_rows

    def rows_of(self, index: int) -> range:
        start = index * self.chunk_rows
        return range(start, min(start + self.chunk_rows, self.n_rows))


class EmbeddingStore(ChunkedRows):
    """The store of one key. ``reuse=False`` starts it afresh: its chunks are removed and it is created again by
    this run (``origin``), so every chunk is encoded anew."""

    def __init__(self, root: Path, parts: dict[str, object], *, n_rows: int, chunk_rows: int, dtype: str,
                 reuse: bool = True):
        if dtype not in STORE_DTYPES:
            raise HarnessError(f"embedding store dtype {dtype!r} unknown; allowed: {', '.join(STORE_DTYPES)}")
        self.key = store_key({**parts, "dtype": dtype, "chunk_rows": chunk_rows})
        self.root = Path(root)
        self.path = self.root / "embeddings" / self.key
        super().__init__(n_rows, chunk_rows)
        self.parts = parts
        self.dtype = dtype
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.origin = (reuse and self._recorded_origin()) or self._create()
        except OSError as exc:
            with contextlib.suppress(OSError):
                self.path.rmdir()  # if empty: a store that could not be created leaves no folder
            raise cache_write_error(self.root, self.path, exc, "creating the embedding store") from None
        self._verified: set[int] = set()

    def _recorded_origin(self) -> StoreOrigin | None:
        meta = StoreMeta.read(self.path)
        return meta.created_by if meta is not None else None

    def _create(self) -> StoreOrigin:
        """Remove any chunks and record this process as the store's creator."""
        for chunk in self.path.glob("chunk-*"):
            chunk.unlink(missing_ok=True)
        origin = StoreOrigin(created_at=utc_now(), hostname=platform.node(), cpu_model=cpu_model())
        meta = StoreMeta(parts=self.parts, n_rows=self.n_rows, chunk_rows=self.chunk_rows, dtype=self.dtype,
                         created_by=origin)
        with atomic_file(self.path / META_FILE, binary=True) as handle:
            handle.write(meta.model_dump_json(indent=1).encode())
        return origin

    def _files(self, index: int) -> tuple[Path, Path]:
        stem = self.path / f"chunk-{index:06d}"
        return stem.with_suffix(".npy"), stem.with_suffix(".json")

    def rows_of(self, index: int) -> range:
        start = index * self.chunk_rows
        return range(start, min(start + self.chunk_rows, self.n_rows))

    def info(self, index: int) -> ChunkInfo | None:
        """The chunk's sidecar if the chunk is complete and intact; otherwise None (and it is removed)."""
        array_file, info_file = self._files(index)
        try:
            data = json.loads(info_file.read_text())
            info = ChunkInfo(**{**data, "pieces": tuple(tuple(p) for p in data.get("pieces", ()))})
        except (OSError, ValueError, TypeError):
            return None
        if index not in self._verified:
            intact = array_file.exists() and file_sha256(array_file) == info.sha256
            if info.rows != len(self.rows_of(index)) or not intact:
                array_file.unlink(missing_ok=True)
                info_file.unlink(missing_ok=True)
                return None
            self._verified.add(index)
        return info

    def missing(self) -> list[int]:
        return [i for i in range(self.n_chunks) if self.info(i) is None]

    def write(self, index: int, embeddings: np.ndarray, *, seconds: float, tokens: int, truncated: int = 0,
              pieces: tuple[tuple[int, float], ...] = ()) -> None:
        expected = len(self.rows_of(index))
        if embeddings.shape[0] != expected:
            raise ValueError(f"chunk {index} needs {expected} rows, got {embeddings.shape[0]}")
        array_file, info_file = self._files(index)
        data = np.ascontiguousarray(embeddings, dtype=STORE_DTYPES[self.dtype])
        try:
            with atomic_file(array_file, binary=True) as handle:
                write_npy(handle, data)
            info = {"rows": expected, "sha256": file_sha256(array_file), "seconds": seconds, "tokens": tokens,
                    "truncated": truncated, "pieces": [list(p) for p in pieces]}
            with atomic_file(info_file, binary=True) as handle:
                handle.write(json.dumps(info).encode())
        except OSError as exc:
            for path in (array_file, info_file):
                path.unlink(missing_ok=True)
            raise cache_write_error(self.root, self.path, exc, "writing embeddings") from None
        self._verified.add(index)

    def read(self, index: int) -> np.ndarray:
        if self.info(index) is None:
            raise HarnessError(f"{self.path}: chunk {index} is missing or corrupt; rerun to re-encode it")
        return np.load(self._files(index)[0], mmap_mode="r")

    def chunks(self) -> Iterator[np.ndarray]:
        for index in range(self.n_chunks):
            yield self.read(index)

    def infos(self) -> list[ChunkInfo]:
        """The complete chunks' sidecars, in chunk order."""
        return [info for info in (self.info(i) for i in range(self.n_chunks)) if info]


def _store_meta(folder: Path) -> StoreMeta | None:
    """The meta.json of the store in `folder` if the harness created it: a directory named by the key of the
    settings its meta.json records. None for anything else (a stray file, another tool's folder)."""
    if folder.is_symlink():
        return None
    meta = StoreMeta.read(folder)
    return meta if meta is not None and meta.key == folder.name else None


def _entries(root: Path) -> list[Path]:
    base = Path(root) / "embeddings"
    return sorted(base.iterdir()) if base.is_dir() else []


def foreign_entries(root: Path) -> list[Path]:
    """What lies in the cache's embeddings/ folder that is not a store of the harness: never listed or removed."""
    return [entry for entry in _entries(root) if _store_meta(entry) is None]


@dataclass(frozen=True)
class StoreEntry:
    """One embedding store the harness created, as `harness cache ls` lists it."""

    path: Path
    bytes: int
    modified: float  # the latest change of any of its files (seconds since the epoch)
    meta: StoreMeta

    @property
    def key(self) -> str:
        return self.path.name


def list_stores(root: Path) -> list[StoreEntry]:
    """The embedding stores the harness created under `root`: path, size, last change and meta.json."""
    stores = []
    for folder in _entries(root):
        meta = _store_meta(folder)
        if meta is None:
            continue
        files = [f for f in folder.iterdir() if f.is_file()]
        stores.append(StoreEntry(folder, sum(f.stat().st_size for f in files),
                                 max((f.stat().st_mtime for f in files), default=0.0), meta))
    return stores


def clear_stores(root: Path, *, older_than_s: float | None = None) -> list[str]:
    removed = []
    now = time.time()
    for store in list_stores(root):
        if older_than_s is None or now - store.modified > older_than_s:
            shutil.rmtree(store.path, ignore_errors=True)
            removed.append(store.key)
    return removed


class MemoryStore(ChunkedRows):
    """An embedding store held in memory (the interface of `EmbeddingStore`): nothing is written."""

    key = None
    dtype = "fp32"
    origin = None

    def __init__(self, n_rows: int, *, chunk_rows: int):
        super().__init__(n_rows, chunk_rows)
        self._chunks: dict[int, tuple[np.ndarray, ChunkInfo]] = {}

    def missing(self) -> list[int]:
        return [i for i in range(self.n_chunks) if i not in self._chunks]

    def write(self, index: int, embeddings: np.ndarray, *, seconds: float, tokens: int, truncated: int = 0,
              pieces: tuple[tuple[int, float], ...] = ()) -> None:
        info = ChunkInfo(rows=len(embeddings), sha256="", seconds=seconds, tokens=tokens, truncated=truncated,
                         pieces=pieces)
        self._chunks[index] = (np.asarray(embeddings, dtype=np.float32), info)

    def read(self, index: int) -> np.ndarray:
        return self._chunks[index][0]

    def chunks(self) -> Iterator[np.ndarray]:
        for index in range(self.n_chunks):
            yield self._chunks[index][0]

    def infos(self) -> list[ChunkInfo]:
        return [self._chunks[i][1] for i in sorted(self._chunks)]
