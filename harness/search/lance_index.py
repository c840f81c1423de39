"""LanceDB (embedded: the `lancedb` wheel ships its Rust engine; no server): a table of (row, vector) written from
the store chunk by chunk, indexed as IVF-Flat, IVF-PQ or IVF-HNSW-SQ (or not at all: "flat", its brute-force scan),
searched with the dot distance. LanceDB's dot "distance" is 1 - q.v; scores are turned back into q.v."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import HnswSq, IvfFlat, IvfPq

from harness.input.indexes import IndexSpec
from harness.search.vectors import VectorSource

TABLE = "corpus"
LANCE_SAMPLE_RATE = 256  # LanceDB's default sample_rate: IVF k-means trains on this many rows per partition


def _index_config(build: dict[str, Any]) -> Any:
    kind = build["kind"]
    if kind == "ivf_flat":
        return IvfFlat(distance_type="dot", num_partitions=build["nlist"])
    if kind == "ivf_pq":
        return IvfPq(distance_type="dot", num_partitions=build["nlist"], num_sub_vectors=build["pq_m"],
                     num_bits=build["pq_nbits"])
    if kind == "ivf_hnsw_sq":
        return HnswSq(distance_type="dot", num_partitions=build["nlist"], m=build["M"],
                      ef_construction=build["ef_construction"])
    return None


class LanceSearcher:
    def __init__(self, table: Any, spec: IndexSpec):
        self.table, self.spec = table, spec

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        rows = np.full((len(queries), k), -1, dtype=np.int64)
        for i, query in enumerate(queries):  # one query per call, as a service sends them
            query_builder = self.table.search(query).distance_type("dot").select(["row", "_distance"]).limit(k)
            if self.spec.value("nprobe") is not None:
                query_builder = query_builder.nprobes(self.spec.value("nprobe"))
            if self.spec.value("ef_search") is not None:
                query_builder = query_builder.ef(self.spec.value("ef_search"))
            hits = query_builder.to_arrow()
            n = hits.num_rows
            rows[i, :n] = hits["row"].to_numpy()
            scores[i, :n] = 1.0 - hits["_distance"].to_numpy()
        return scores, rows


class LanceBackend:
    name = "lancedb"

    def version(self) -> str:
        return str(lancedb.__version__)

    def check(self, spec: IndexSpec, dim: int) -> str | None:
        return None  # its limits are the shared ones (index_problem)

    def build(self, spec: IndexSpec, build: dict[str, Any], vectors: VectorSource, folder: Path) -> int | None:
        schema = pa.schema([("row", pa.int64()), ("vector", pa.list_(pa.float32(), vectors.dim))])

        def batches() -> Iterator[pa.RecordBatch]:
            start = 0
            for chunk in vectors.chunks():
                flat = pa.array(chunk.reshape(-1), type=pa.float32())
                yield pa.RecordBatch.from_arrays(
                    [pa.array(np.arange(start, start + len(chunk)), pa.int64()),
                     pa.FixedSizeListArray.from_arrays(flat, vectors.dim)], schema=schema)
                start += len(chunk)

        table = lancedb.connect(folder).create_table(TABLE, data=pa.RecordBatchReader.from_batches(schema, batches()))
        config = _index_config(build)
        if config is None:
            return None
        table.create_index("vector", config=config)
        return min(vectors.store.n_rows, LANCE_SAMPLE_RATE * build["nlist"])  # its k-means sample: 256 rows a list

    def open(self, spec: IndexSpec, folder: Path, dim: int) -> LanceSearcher:
        return LanceSearcher(lancedb.connect(folder).open_table(TABLE), spec)
