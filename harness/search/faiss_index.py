"""FAISS indexes (faiss-cpu from PyPI; the GPU build where CUDA is present): Flat, HNSW, IVF-Flat, IVF-PQ, SQ8, fp16,
or any index_factory string. Always the inner-product metric: `VectorSource` hands unit-length vectors for cosine
and the vectors as they are for dot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# isort: off
# torch before faiss: each brings its own OpenMP runtime, and with faiss's loaded first torch's matmul (exact
# search, encoding) ran 1.45x slower in the same process (benchmarks/RESULTS.md, Intel Xeon, 2026-12-03)
import numpy as np
import torch  # noqa: F401
import faiss
# isort: on

from harness.input.indexes import IndexSpec
from harness.search.vectors import VectorSource

INDEX_FILE = "index.faiss"
_SEARCH_PARAMETERS = {"ef_search": "efSearch", "nprobe": "nprobe"}  # our name -> FAISS ParameterSpace name


def factory_string(build: dict[str, Any]) -> str:
    kind = build["kind"]
    return {
        "flat": "Flat",
        "hnsw": f"HNSW{build.get('M')},Flat",
        "ivf_flat": f"IVF{build.get('nlist')},Flat",
        "ivf_pq": f"IVF{build.get('nlist')},PQ{build.get('pq_m')}x{build.get('pq_nbits')}",
        "sq8": "SQ8",
        "fp16": "SQfp16",
    }.get(kind) or str(build["factory"])


def _new_index(build: dict[str, Any], dim: int) -> faiss.Index:
    index = faiss.index_factory(dim, factory_string(build), faiss.METRIC_INNER_PRODUCT)
    typed: Any = faiss.downcast_index(index)  # the factory's concrete class (IndexHNSWFlat, IndexIVFPQ, ...)
    if build["kind"] == "hnsw":
        typed.hnsw.efConstruction = build["ef_construction"]
    if build["kind"] == "ivf_pq":
        # The factory turns on polysemous training (codes ordered for Hamming filtering, which this search never
        # uses): 13x the training time on a 6,000 x 64 sample, for the same codes' distances.
        typed.do_polysemous_training = False
    return index


def _apply_search_settings(index: faiss.Index, spec: IndexSpec) -> None:
    space = faiss.ParameterSpace()
    for ours, theirs in _SEARCH_PARAMETERS.items():
        value = spec.value(ours)
        if value is not None:
            space.set_index_parameter(index, theirs, value)


class FaissSearcher:
    def __init__(self, index: faiss.Index):
        self.index = index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, rows


class FaissBackend:
    name = "faiss"

    def version(self) -> str:
        return str(faiss.__version__)

    def check(self, spec: IndexSpec, dim: int) -> str | None:
        build = spec.resolved_build(10**9, dim)  # corpus-dependent values are checked by index_problem
        try:
            index = _new_index({**build, "nlist": build.get("nlist") or 1}, dim)
        except RuntimeError as exc:
            return (f"FAISS refuses index {factory_string(build)!r} for {dim}-dim vectors "
                    f"({str(exc).strip().splitlines()[-1]}); see the FAISS index_factory documentation")
        try:
            _apply_search_settings(index, spec)
        except RuntimeError as exc:
            return (f"FAISS index {factory_string(build)!r} does not take the search settings "
                    f"{spec.settings('search')} ({str(exc).strip().splitlines()[-1]}); remove them")
        return None

    def build(self, spec: IndexSpec, build: dict[str, Any], vectors: VectorSource, folder: Path) -> int | None:
        index = _new_index(build, vectors.dim)
        trained = None
        if not index.is_trained:
            trained = int(build.get("train_rows") or vectors.store.n_rows)
            index.train(vectors.sample(min(trained, vectors.store.n_rows)))
        for chunk in vectors.chunks():
            index.add(chunk)
        faiss.write_index(index, str(folder / INDEX_FILE))
        return trained

    def open(self, spec: IndexSpec, folder: Path, dim: int) -> FaissSearcher:
        index = faiss.read_index(str(folder / INDEX_FILE))
        _apply_search_settings(index, spec)
        return FaissSearcher(index)
