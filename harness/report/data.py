"""What a report shows, computed from records: comparison, CIs, Recall@k curves, profile points.

Profile records (``harness profile``) are read as plain JSON: ``record.json`` with ``"kind":
"profile"``, an ``encoder`` mapping (``name``), an ``environment`` and ``points``, each point a
mapping with at least ``batch_size``, ``precision`` and ``passages_per_s`` (optionally ``engine``,
``device``, ``max_seq_length``, ``tokens_per_s``, ``latency_ms``, ``latency_values_ms``,
``peak_rss_mb``, ``peak_gpu_mb``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.analysis.compare import Comparison, LoadedRun, Test, compare_pairs, label_runs, pair_by_dataset, record_kind
from harness.errors import HarnessError
from harness.metrics import evaluate
from harness.records import RECORD_FILE, find_records, load_per_query, load_record, read_trec_run
from harness.analysis.stats import bootstrap_ci

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Profile:
    path: Path
    label: str
    environment: dict[str, Any]
    points: list[dict[str, Any]]


@dataclass(frozen=True)
class ReportData:
    runs: list[LoadedRun]
    comparison: Comparison | None
    cis: dict[tuple[str, str, str], tuple[float, float]]  # (dataset, label, metric) -> 95% CI of the mean
    recall: dict[str, dict[str, tuple[list[int], list[float]]]]  # dataset -> label -> (ks, recall@k)
    profiles: list[Profile]
    primary_metric: str
    notes: list[str] = field(default_factory=list)

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(r.dataset for r in self.runs))

    def runs_of(self, dataset: str) -> list[LoadedRun]:
        return [r for r in self.runs if r.dataset == dataset]

    def metrics_of(self, dataset: str) -> list[str]:
        return list(dict.fromkeys(m for r in self.runs_of(dataset) for m in r.record.metrics))


def load_report_data(paths: Sequence[Path], *, control: str | None = None, metric: str | None = None,
                     alpha: float = 0.05, test: Test = "randomization", seed: int = 0,
                     n_resamples: int = 10_000, recall_curve: bool = True) -> ReportData:
    runs, profiles = [], []
    for directory in find_records([Path(p) for p in paths]):
        kind = record_kind(directory)
        if kind == "run":
            runs.append(LoadedRun(directory, load_record(directory), load_per_query(directory)))
        elif kind == "profile":
            profiles.append(load_profile(directory))
    if not runs and not profiles:
        raise HarnessError("no records found in: " + ", ".join(str(p) for p in paths))
    runs = label_runs(runs)
    pairs, notes = pair_by_dataset(runs, control=control)
    comparison = compare_pairs(pairs, alpha=alpha, test=test, seed=seed, n_resamples=n_resamples) if pairs else None
    if comparison:
        notes += comparison.warnings
    cis = {(r.dataset, r.label, m): mean_ci(list(v.values()), seed=seed, n_resamples=n_resamples)
           for r in runs for m, v in r.per_query.items()}
    recall, recall_notes = recall_curves(runs) if recall_curve else ({}, [])
    all_metrics = list(dict.fromkeys(m for r in runs for m in r.record.metrics))
    primary = metric or next((m for m in all_metrics if m.lower() == "ndcg@10"), all_metrics[0] if all_metrics else "")
    if metric and metric not in all_metrics:
        raise HarnessError(f"--metric {metric!r} is in no record; metrics: {', '.join(all_metrics)}")
    return ReportData(runs, comparison, cis, recall, profiles, primary, notes + recall_notes)


def mean_ci(values: Sequence[float], *, seed: int, n_resamples: int) -> tuple[float, float]:
    """95% bootstrap CI of a mean: the paired CI of (values - 0), reusing harness.stats."""
    return bootstrap_ci([0.0] * len(values), values, seed=seed, n_resamples=n_resamples)


def load_profile(directory: Path) -> Profile:
    data = json.loads((directory / RECORD_FILE).read_text(encoding="utf-8"))
    points = data.get("points")
    if not isinstance(points, list):
        raise HarnessError(f"{directory / RECORD_FILE}: a profile record needs a 'points' list")
    model = (data.get("model") or {}).get("model") or (data.get("encoder") or {}).get("name")
    label = " · ".join(str(x) for x in (model, data.get("name")) if x) or directory.name
    return Profile(directory, label, data.get("environment") or {}, points)


# ------------------------------------------------------------------ Recall@k curves

def curve_ks(top_k: int) -> list[int]:
    """1..10, then about 12 points per decade up to top_k (at most 1000)."""
    limit = min(top_k, 1000)
    ks = set(range(1, min(10, limit) + 1))
    if limit > 10:
        ks |= {int(round(k)) for k in np.logspace(1, math.log10(limit), 12 * int(math.ceil(math.log10(limit))))}
    return sorted(k for k in ks if k <= limit)


def recall_curves(runs: Sequence[LoadedRun]) -> tuple[dict[str, dict[str, tuple[list[int], list[float]]]], list[str]]:
    curves: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    notes: list[str] = []
    qrels_cache: dict[str, dict[str, dict[str, int]]] = {}
    for run in runs:
        key = json.dumps(run.record.dataset.get("source"), sort_keys=True)
        try:
            if key not in qrels_cache:
                qrels_cache[key] = load_qrels(run.record.dataset.get("source") or {})
            curves.setdefault(run.dataset, {})[run.label] = recall_curve(run, qrels_cache[key])
        except (HarnessError, OSError) as exc:
            notes.append(f"{run.dataset} / {run.label}: no Recall@k curve ({exc})")
    return curves, notes


def recall_curve(run: LoadedRun, qrels: dict[str, dict[str, int]]) -> tuple[list[int], list[float]]:
    """Recall@k for k = 1..top_k from run.trec, after checking the qrels reproduce the record's scores."""
    ranking = read_trec_run(run.path / run.record.files.get("run", "run.trec"))
    ks = curve_ks(run.record.top_k)
    names = [f"Recall@{k}" for k in ks]
    level = int(run.record.dataset.get("relevance_level", 1))
    evaluation = evaluate(qrels, ranking, names + list(run.record.metrics), relevance_level=level)
    for metric, value in run.record.metrics.items():
        if not math.isclose(evaluation.aggregate[metric], value, abs_tol=1e-9):
            raise HarnessError(f"the qrels found at the record's source give {metric} "
                               f"{evaluation.aggregate[metric]:.4f}, the record says {value:.4f}")
    return ks, [evaluation.aggregate[n] for n in names]


def load_qrels(source: dict[str, Any]) -> dict[str, dict[str, int]]:
    """The judgments of a record's dataset source, without loading its corpus."""
    from harness import datasets

    kind = source.get("kind")
    if kind == "beir":
        folder = _existing(Path(source["path"]))
        rows = datasets.read_beir_qrels(folder / "qrels" / f"{source.get('split', 'test')}.tsv")
    elif kind == "msmarco_tsv":
        rows = datasets.read_trec_qrels(_existing(Path(source["qrels"])))
    elif kind == "ir_datasets":
        try:
            import ir_datasets

            rows = [(q.query_id, q.doc_id, int(q.relevance)) for q in ir_datasets.load(source["id"]).qrels_iter()]
        except Exception as exc:  # offline or unknown id: ir_datasets raises many kinds
            raise HarnessError(f"ir_datasets cannot provide the qrels of {source.get('id')!r}: {exc}") from None
    else:
        raise HarnessError(f"unknown dataset source {source!r}")
    qrels: dict[str, dict[str, int]] = {}
    for qid, docid, grade in rows:
        qrels.setdefault(qid, {})[docid] = grade
    return qrels


def _existing(path: Path) -> Path:
    """The recorded path, or the same folder under this checkout's data/ (records travel between machines)."""
    if path.exists():
        return path
    for parent in [path.parent, *path.parents]:
        if parent.name == "data":
            moved = REPO / "data" / path.relative_to(parent)
            if moved.exists():
                return moved
    raise HarnessError(f"{path} not found (records keep the absolute path of their data)")
