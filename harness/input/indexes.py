"""The suite's ``index:`` section of an encoder: which approximate (or exact) index its corpus embeddings go into.

One typed spec for every backend. Settings are split in two: **build** settings (the index structure: change one
and the index is built again) and **search** settings (read at query time: a sweep over them reuses one built
index). Every setting belongs to some (backend, kind) pairs only; a setting given where it has no meaning is
refused, naming the pairs it belongs to, so a typo in a sweep never runs the same index twice under two names.

    index: {backend: faiss, kind: hnsw, M: 32, ef_construction: 100, ef_search: 64}
    index: {backend: faiss, kind: ivf_pq, nlist: 256, pq_m: 48, nprobe: 16, rerank: 200}
    index: {backend: lancedb, kind: ivf_pq, nlist: 64, pq_m: 48, nprobe: 8}

Similarity follows the encoder: ``dot`` uses the inner-product metric on the vectors as they are (never
normalised: msmarco-distilbert-dot-v5 is unnormalised); ``cosine`` indexes unit-length vectors.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, Strict, model_validator

from harness.vocabulary.validation import StrictModel

Int = Annotated[int, Strict()]
IndexBackend = Literal["faiss", "lancedb"]
IndexKind = Literal["flat", "hnsw", "ivf_flat", "ivf_pq", "sq8", "fp16", "ivf_hnsw_sq", "factory"]

KINDS: dict[str, tuple[str, ...]] = {
    "faiss": ("flat", "hnsw", "ivf_flat", "ivf_pq", "sq8", "fp16", "factory"),
    "lancedb": ("flat", "ivf_flat", "ivf_pq", "ivf_hnsw_sq"),
}
_IVF = ("ivf_flat", "ivf_pq", "ivf_hnsw_sq")
# setting -> (build or search, the kinds it applies to, per backend)
SETTINGS: dict[str, tuple[Literal["build", "search"], dict[str, tuple[str, ...]]]] = {
    "factory": ("build", {"faiss": ("factory",)}),
    "M": ("build", {"faiss": ("hnsw",), "lancedb": ("ivf_hnsw_sq",)}),
    "ef_construction": ("build", {"faiss": ("hnsw",), "lancedb": ("ivf_hnsw_sq",)}),
    "nlist": ("build", {"faiss": ("ivf_flat", "ivf_pq"), "lancedb": _IVF}),
    "pq_m": ("build", {"faiss": ("ivf_pq",), "lancedb": ("ivf_pq",)}),
    "pq_nbits": ("build", {"faiss": ("ivf_pq",), "lancedb": ("ivf_pq",)}),
    "train_rows": ("build", {"faiss": ("ivf_flat", "ivf_pq", "sq8", "factory")}),
    "ef_search": ("search", {"faiss": ("hnsw", "factory"), "lancedb": ("ivf_hnsw_sq",)}),
    "nprobe": ("search", {"faiss": ("ivf_flat", "ivf_pq", "factory"), "lancedb": _IVF}),
    "rerank": ("search", {"faiss": KINDS["faiss"], "lancedb": KINDS["lancedb"]}),
}
DEFAULTS: dict[str, int] = {"M": 32, "ef_construction": 100, "ef_search": 64, "nprobe": 8, "pq_nbits": 8}
GRID_SETTINGS = tuple(k for k in SETTINGS if k != "factory")  # `harness sweep --grid index.KEY=...`
TRAIN_ROWS_DEFAULT = 100_000  # IVF/SQ training sample, at least 39 rows a list (FAISS warns below that)


class IndexSpec(StrictModel):
    backend: IndexBackend
    kind: IndexKind
    factory: str | None = Field(default=None, min_length=1)  # a FAISS index_factory string (kind: factory)
    M: Int | None = Field(default=None, ge=2)  # HNSW links per node
    ef_construction: Int | None = Field(default=None, gt=0)
    nlist: Int | None = Field(default=None, gt=0)  # IVF lists (LanceDB: partitions); default 4 * sqrt(rows)
    pq_m: Int | None = Field(default=None, gt=0)  # PQ sub-quantisers (LanceDB: sub-vectors); must divide the dim
    pq_nbits: Int | None = Field(default=None, ge=1, le=16)
    train_rows: Int | None = Field(default=None, gt=0)
    ef_search: Int | None = Field(default=None, gt=0)
    nprobe: Int | None = Field(default=None, gt=0)
    rerank: Int | None = Field(default=None, gt=0)  # candidates asked of the index and re-scored exactly

    @model_validator(mode="after")
    def _settings_belong(self) -> IndexSpec:
        if self.kind not in KINDS[self.backend]:
            raise ValueError(f"index kind {self.kind!r} is not a kind of backend {self.backend!r} (its kinds: "
                             f"{', '.join(KINDS[self.backend])})")
        for name in self.model_fields_set - {"backend", "kind"}:
            if getattr(self, name) is None:
                continue
            _, where = SETTINGS[name]
            if self.kind not in where.get(self.backend, ()):
                owners = "; ".join(f"{b}: {', '.join(k)}" for b, k in where.items())
                raise ValueError(f"index setting {name!r} has no meaning for {self.backend} {self.kind} (it "
                                 f"belongs to {owners}): remove it")
        if self.kind == "factory" and self.factory is None:
            raise ValueError("index kind 'factory' needs factory: a FAISS index_factory string, e.g. "
                             "'OPQ16,IVF256,PQ16'")
        return self

    def value(self, name: str) -> Any:
        """A setting as it applies: the given value, else its default where it belongs, else None."""
        given = getattr(self, name)
        if given is not None:
            return given
        _, where = SETTINGS[name]
        if self.kind == "factory" or self.kind not in where.get(self.backend, ()):
            return None  # a factory string's own parameters are FAISS's defaults unless given
        return DEFAULTS.get(name)

    def settings(self, stage: Literal["build", "search"]) -> dict[str, Any]:
        """The settings of one stage that apply to this backend and kind, defaults filled in (nlist, pq_m and
        train_rows, which depend on the corpus, stay as given: `resolved_build` fills them)."""
        out = {}
        for name, (when, where) in SETTINGS.items():
            if when == stage and self.kind in where.get(self.backend, ()):
                value = self.value(name)
                if value is not None:
                    out[name] = value
        return out

    def resolved_build(self, n_rows: int, dim: int) -> dict[str, Any]:
        """The build settings with the corpus-dependent defaults filled in, as they key the built index."""
        out = {"backend": self.backend, "kind": self.kind, **self.settings("build")}
        if self.kind in _IVF and self.nlist is None:
            out["nlist"] = default_nlist(n_rows)
        if self.kind == "ivf_pq" and self.pq_m is None:
            out["pq_m"] = default_pq_m(dim)
        if self.kind in SETTINGS["train_rows"][1].get(self.backend, ()):
            out["train_rows"] = min(n_rows, self.train_rows or max(TRAIN_ROWS_DEFAULT, 39 * out.get("nlist", 0)))
        return out

    def label(self) -> str:
        """A short name of the setting, for variant names and tables: ``faiss-hnsw(M=32,ef_search=64)``."""
        given = {k: getattr(self, k) for k in SETTINGS if getattr(self, k) is not None}
        inner = ",".join(f"{k}={v}" for k, v in given.items())
        return f"{self.backend}-{self.kind}" + (f"({inner})" if inner else "")


def default_nlist(n_rows: int) -> int:
    """4 * sqrt(rows), at least 1 and at most rows / 39 (so each list trains on about 39 rows or more)."""
    return max(1, min(round(4 * math.sqrt(n_rows)), n_rows // 39 or 1))


def default_pq_m(dim: int) -> int:
    """dim / 8 sub-quantisers (8 dims each: 48 for 384, 96 for 768), else the largest divisor of dim up to that."""
    target = max(1, dim // 8)
    return next(m for m in range(target, 0, -1) if dim % m == 0)


def index_problem(spec: IndexSpec, *, n_rows: int, dim: int) -> str | None:
    """Why this index cannot be built over `n_rows` x `dim` embeddings (None: it can); checked before encoding."""
    build = spec.resolved_build(n_rows, dim)
    if "nlist" in build and build["nlist"] > n_rows:
        return (f"index.nlist {build['nlist']} is larger than the corpus ({n_rows:,} rows): each list needs rows to "
                f"train on; give nlist <= {max(1, n_rows // 39)} (about rows / 39) or leave it out for the default")
    if "pq_m" in build and dim % build["pq_m"]:
        divisors = [m for m in range(1, dim + 1) if dim % m == 0 and m <= 128]
        return (f"index.pq_m {build['pq_m']} does not divide the embedding dimension {dim}: the vector is cut into "
                f"pq_m equal parts; give one of {', '.join(map(str, divisors[-8:]))}")
    if spec.backend == "lancedb" and spec.kind == "ivf_pq" and n_rows < 256:
        return (f"LanceDB trains PQ codebooks of 256 centroids and needs at least 256 rows; the corpus has {n_rows}: "
                "use kind ivf_flat or flat")
    train = build.get("train_rows")
    if train is not None and "nlist" in build and train < build["nlist"]:
        return (f"index.train_rows {train} is fewer than nlist {build['nlist']}: k-means needs at least one row a "
                "list; give more train_rows or fewer lists")
    return None
