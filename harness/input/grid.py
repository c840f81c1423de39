"""Sweep grids: engine x precision x max_seq_length x index setting points, expanded into encoder variants of a suite.

``harness sweep SUITE --grid engine=fast,onnxruntime precision=fp32,int8 max_seq_length=128,256`` (or a suite's
``grid:`` block) turns every suite encoder into one variant per grid point, named after the point
(``minilm[onnxruntime,int8,128]``). The variants run through ``run_suite`` like any encoder, so a point whose
embedding key (weights, data, settings, versions) is cached costs only search and evaluation.

``index.KEY`` keys (``--grid index.ef_search=16,64,256 index.nprobe=1,8``) sweep the settings of encoders that have
an ``index:``; a point is skipped (logged) for an encoder whose index kind does not take the setting. Search
settings reuse one built index (harness.search.index); build settings build one index per value.
"""

from __future__ import annotations

import itertools
import logging
import math
import reprlib
from collections.abc import Mapping, Sequence
from typing import Any

from harness.input.indexes import GRID_SETTINGS, SETTINGS
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.precision import LOCAL_ENGINES, PRECISIONS, precision_problem

log = logging.getLogger(__name__)

INDEX_KEYS = tuple(f"index.{name}" for name in GRID_SETTINGS)
GRID_KEYS = ("engine", "precision", "max_seq_length", *INDEX_KEYS)  # in this order in variant names
MAX_VARIANTS = 1000  # encoders x grid points that one sweep may run


def validate_grid(grid: Mapping[str, Any]) -> dict[str, list[Any]]:
    """A grid {key: values} checked and normalised: known keys in GRID_KEYS order, each a non-empty list of
    allowed values without repeats, at most MAX_VARIANTS points; raises ValueError naming the key and what is
    allowed."""
    unknown = [k for k in grid if k not in GRID_KEYS]
    if unknown:
        raise ValueError(f"unknown grid key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(GRID_KEYS)}")
    out: dict[str, list[Any]] = {}
    for key in (k for k in GRID_KEYS if k in grid):
        values = grid[key]
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"grid {key}: give a non-empty list of values, e.g. {key}: [{_example(key)}]")
        out[key] = list(dict.fromkeys(_value(key, v) for v in values))
    if not out:
        raise ValueError(f"the grid is empty; give at least one of {', '.join(GRID_KEYS)}")
    n_points = math.prod(len(values) for values in out.values())
    if n_points > MAX_VARIANTS:
        raise ValueError(f"the grid has {n_points:,} points ({' x '.join(str(len(v)) for v in out.values())} "
                         f"values); a sweep runs at most {MAX_VARIANTS:,}: give fewer values")
    return out


def _example(key: str) -> str:
    return {"engine": "fast, onnxruntime", "precision": "fp32, int8"}.get(key, "128, 256")


def _value(key: str, value: Any) -> Any:
    if key == "max_seq_length" or key in INDEX_KEYS:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"grid {key}: {reprlib.repr(value)} is not a positive integer")
        return value
    allowed = LOCAL_ENGINES if key == "engine" else PRECISIONS
    if value not in allowed:
        raise ValueError(f"grid {key}: unknown value {reprlib.repr(value)}; allowed: {', '.join(allowed)}")
    return value


def parse_grid_args(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["engine=fast,onnxruntime", "max_seq_length=128"]`` -> a validated grid; HarnessError on bad input."""
    raw: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise HarnessError(f"--grid {item!r}: write KEY=V1,V2 with KEY one of {', '.join(GRID_KEYS)}")
        if key in raw:
            raise HarnessError(f"--grid names {key!r} twice; give all its values once: {key}=V1,V2")
        parts: list[Any] = [v.strip() for v in values.split(",") if v.strip()]
        if key == "max_seq_length" or key in INDEX_KEYS:
            try:
                parts = [int(v) for v in parts]
            except ValueError:
                raise HarnessError(f"--grid {key}={values}: give positive integers, e.g. 128,256") from None
        raw[key] = parts
    try:
        return validate_grid(raw)
    except ValueError as exc:
        raise HarnessError(f"--grid: {exc}") from None


def points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, the last key varying fastest."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def variant_name(encoder: str, point: Mapping[str, Any]) -> str:
    """``minilm[onnxruntime,int8,128]``; index settings by name: ``minilm[ef_search=64]``."""
    parts = (f"{k.removeprefix('index.')}={v}" if k in INDEX_KEYS else str(v) for k, v in point.items())
    return f"{encoder}[{','.join(parts)}]"


def _applies(encoder, key: str) -> bool:
    """A grid key applies to an encoder: always for engine/precision/max_seq_length; an index setting only where the
    encoder's index kind takes it."""
    if key not in INDEX_KEYS:
        return True
    spec = encoder.index
    return spec is not None and spec.kind in SETTINGS[key.removeprefix("index.")][1].get(spec.backend, ())


def _with_point(encoder, point: Mapping[str, Any], name: str):
    index_values = {k.removeprefix("index."): v for k, v in point.items() if k in INDEX_KEYS}
    update = {k: v for k, v in point.items() if k not in INDEX_KEYS}
    if index_values:
        update["index"] = type(encoder.index).model_validate({**encoder.index.model_dump(exclude_none=True),
                                                              **index_values})
    baseline = None
    if encoder.baseline is not None and set(update) == {"index"}:  # the embeddings are the encoder's
        baseline = encoder.baseline.model_copy(update={"encoder": encoder.baseline.encoder or encoder.name})
    return encoder.model_copy(update={**update, "name": name, "expect": None, "baseline": baseline})


def expand_suite(suite, grid: Mapping[str, Sequence[Any]]):
    """The suite with each encoder replaced by its variants, one per point of the grid keys that apply to it
    (encoder-major), and the reasons of the points skipped as combinations that cannot run (``precision_problem``),
    each also logged. An index key applies only to encoders whose index takes it; an encoder no key applies to (the
    exact encoder of an index sweep) runs once as it is.

    A variant keeps the encoder's other settings; its ``expect`` and ``baseline`` are dropped, since they were
    stated for the encoder's own settings, not for each point, except a point that changes index settings only: it
    keeps the baseline (naming the encoder's records), whose non-inferiority margins its index records state.
    """
    grid = validate_grid(grid)
    per_encoder = [(encoder, {k: v for k, v in grid.items() if _applies(encoder, k)}) for encoder in suite.encoders]
    counts = [math.prod(len(v) for v in own.values()) if own else 1 for _, own in per_encoder]
    if sum(counts) > MAX_VARIANTS:
        each = f"{counts[0]} grid points" if len(set(counts)) == 1 else "their grid points"
        raise HarnessError(f"the sweep would run {sum(counts):,} variants ({len(suite.encoders)} encoders x {each}); "
                           f"at most {MAX_VARIANTS:,} run in one sweep: sweep fewer encoders or give the grid fewer "
                           "values")
    variants, skipped = [], []
    for encoder, own in per_encoder:
        ignored = [k for k in grid if k not in own]
        if ignored:
            log.info("%s: %s not swept (%s)", encoder.name, ", ".join(ignored),
                     "it has no index" if encoder.index is None else f"{encoder.index.backend} "
                     f"{encoder.index.kind} takes no such setting")
        if not own:  # e.g. the exact encoder of an index sweep: it runs once, as the reference
            variants.append(encoder)
            continue
        for point in points(own):
            name = variant_name(encoder.name, point)
            settings = {"engine": encoder.engine, "precision": encoder.precision, **point}
            problem = precision_problem(settings["precision"], engine=settings["engine"], device=encoder.device)
            if problem:
                skipped.append(f"{name}: skipped: {problem}")
                log.warning("%s", skipped[-1])
                continue
            variants.append(_with_point(encoder, point, name))
    if not variants:
        raise HarnessError("no grid point can run: " + "; ".join(skipped))
    return suite.model_copy(update={"encoders": variants, "grid": None}), skipped
