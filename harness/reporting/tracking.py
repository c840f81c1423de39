"""Log records to MLflow (`harness run ... --mlflow URI`, `harness profile ... --mlflow URI`): one MLflow run per
record, in an experiment named after the suite (or profile), through `MlflowClient(tracking_uri=URI)` -- no
process-global MLflow state is touched.

A run record gives params (encoder settings, model and dataset fingerprints, hardware key), metrics (every quality
measure and the speed figures) and artifacts (the whole record folder: record.json, run.trec, per-query values,
recall curve, any plots there). MLflow metric names cannot hold "@": `nDCG@10` is logged as `nDCG_at_10`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from harness.scoring.records import ProfileRecord, RunRecord
from harness.vocabulary.errors import HarnessError

_INVALID = re.compile(r"[^\w.\- :/]")


def metric_name(name: str) -> str:
    """A measure name as MLflow accepts it (letters, digits, _ - . space : /): "@" becomes "_at_"."""
    return _INVALID.sub("_", name.replace("@", "_at_"))


def require_mlflow() -> None:
    """Fail before any work when --mlflow is given without the package."""
    try:
        import mlflow.tracking  # noqa: F401
    except ImportError:
        raise HarnessError("--mlflow needs the package 'mlflow': pip install 'harness[mlflow]' (or pip install mlflow)"
                           ) from None


def _client(uri: str):
    require_mlflow()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _experiment(client, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)


def run_params(record: RunRecord) -> dict[str, str]:
    encoder = record.encoder
    assert encoder is not None  # records of `harness run` (run_suite), not external runs
    settings = encoder.settings.model_dump()
    params = {f"encoder.{k}": v for k, v in settings.items() if v is not None}
    params.update({"encoder.name": encoder.name, "encoder.model": encoder.model,
                   "encoder.fingerprint": encoder.fingerprint, "encoder.dimension": encoder.dimension,
                   "dataset.name": record.dataset.name, "dataset.fingerprint": record.dataset.fingerprint,
                   "top_k": record.top_k, "hardware_key": record.speed_hardware_key,
                   "schema_version": record.schema_version})
    params.update({f"encoder.{k}": v for k, v in (("revision", encoder.revision), ("commit", encoder.commit),
                                                   ("version", encoder.version)) if v is not None})
    if record.index is not None:
        params.update({"index.backend": record.index.backend, "index.backend_version": record.index.backend_version,
                       **{f"index.{k}": v for k, v in record.index.build.items() if k != "backend"},
                       **{f"index.{k}": v for k, v in record.index.search.items()}})
    return {k: str(v) for k, v in params.items()}


def run_metrics(record: RunRecord) -> dict[str, float]:
    perf = record.performance
    assert perf is not None  # records of `harness run` (run_suite) are timed
    metrics = {metric_name(k): v for k, v in record.metrics.items()}
    speed = {"corpus_passages_per_s": perf.throughput.passages_per_s,
             "corpus_tokens_per_s": perf.throughput.tokens_per_s,
             "corpus_encode_s": perf.corpus_encode_s if not perf.corpus_from_cache else None,
             "query_latency_p50_ms": perf.query_latency.p50, "query_latency_p99_ms": perf.query_latency.p99,
             "search_s": perf.search_s, "queries_per_s_search": perf.queries_per_s_search,
             "peak_rss_mb": perf.peak_rss_mb, "rss_start_mb": perf.rss_start_mb, "rss_added_mb": perf.rss_added_mb,
             "peak_gpu_mb": perf.peak_gpu_mb}
    metrics.update({k: float(v) for k, v in speed.items() if v is not None})
    if record.index is not None:
        index = record.index
        metrics.update({f"ann_recall_{r.k}": r.mean for r in index.ann_recall})
        metrics.update({f"index_{k}": float(v) for k, v in (
            ("build_s", index.build_s), ("bytes_per_vector", index.bytes_per_vector),
            ("queries_per_s", index.queries_per_s), ("search_latency_p50_ms", index.search_latency.p50),
            ("search_latency_p99_ms", index.search_latency.p99)) if v is not None})
        metrics.update({f"delta_vs_exact_{metric_name(v.metric)}": v.delta for v in index.versus_exact})
    return metrics


def log_run_records(uri: str, records: Sequence[tuple[RunRecord, Path]], *, experiment: str | None = None) -> list[str]:
    """Log each (record, its folder) as an MLflow run; returns the MLflow run ids, in order."""
    client = _client(uri)
    ids = []
    for record, folder in records:
        experiment_id = _experiment(client, experiment or record.suite.name)
        tags = {"harness.kind": "run", "harness.record": str(folder), "harness.suite": record.suite.name,
                "harness.dataset": record.dataset.name, "harness.encoder": record.name}  # the encoder's name
        ids.append(_log(client, experiment_id, f"{record.dataset.name} × {record.name}", tags,
                        run_params(record), run_metrics(record), folder))
    return ids


def profile_metrics(record: ProfileRecord) -> dict[str, float]:
    """Per point: passages/s, tokens/s and latency p50/p99, named engine.precision.bBATCH.lenLENGTH.device.NAME."""
    metrics = {}
    for p in record.points:
        base = metric_name(f"{p.engine}.{p.precision}.b{p.batch_size}.len{p.max_seq_length}.{p.device}")
        values = {"passages_per_s": p.throughput.passages_per_s, "tokens_per_s": p.throughput.tokens_per_s,
                  "latency_p50_ms": p.latency.p50, "latency_p99_ms": p.latency.p99}
        metrics.update({f"{base}.{k}": float(v) for k, v in values.items() if v is not None})
    return metrics


def log_profile_record(uri: str, record: ProfileRecord, folder: Path, *, experiment: str | None = None) -> str:
    client = _client(uri)
    experiment_id = _experiment(client, experiment or f"profile-{record.name}")
    params = {"model": record.model.model, "model.fingerprint": record.model.fingerprint,
              "hardware_key": record.environment.hardware_key, "schema_version": str(record.schema_version)}
    tags = {"harness.kind": "profile", "harness.record": str(folder)}
    return _log(client, experiment_id, f"profile {record.name} {Path(record.model.model).name}", tags, params,
                profile_metrics(record), folder)


def _log(client, experiment_id: str, name: str, tags: dict[str, str], params: dict[str, str],
         metrics: dict[str, float], folder: Path) -> str:
    from mlflow.entities import Metric, Param

    run = client.create_run(experiment_id, run_name=name, tags=tags)
    run_id = run.info.run_id
    try:
        stamp = int(run.info.start_time)
        client.log_batch(run_id, metrics=[Metric(k, v, stamp, 0) for k, v in metrics.items()],
                         params=[Param(k, v) for k, v in params.items()])
        client.log_artifacts(run_id, str(folder))
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)
    return run_id
