"""`--mlflow URI`: records logged to a real local MLflow store (sqlite, in a temporary folder) and read back
through MLflow's own client. Skipped without the [mlflow] extra."""

from __future__ import annotations

import json
import sys

import pytest

pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient  # noqa: E402

from harness.cli import main  # noqa: E402
from harness.reporting.tracking import metric_name  # noqa: E402
from harness.scoring.records import find_records, load  # noqa: E402

from conftest import DATA, write_suite  # noqa: E402


def test_metric_names_mlflow_accepts():
    assert metric_name("nDCG@10") == "nDCG_at_10" and metric_name("P(rel=2)@5") == "P_rel_2__at_5"
    assert metric_name("MAP") == "MAP"


def test_run_logs_each_record_and_reads_back(tiny_model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the sqlite store's default artifact root is ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    suite = write_suite(tmp_path / "suite.yaml", f"""
name: tracked
datasets:
  - name: noveleval
    path: {DATA / "noveleval"}
encoders:
  - name: tiny
    model: {tiny_model}
    device: cpu
  - name: tiny-32
    model: {tiny_model}
    device: cpu
    max_seq_length: 32
metrics: [nDCG@10, MRR@10, Recall@100]
top_k: 100
""")
    assert main(["run", str(suite), "--output", str(tmp_path / "out"), "--no-progress", "--mlflow", uri]) == 0
    assert "logged 2 run(s) to MLflow" in capsys.readouterr().err
    records = {r.encoder.name: (r, p) for p in find_records([tmp_path / "out"]) for r in [load(p)]}

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.data.tags["harness.encoder"] for run in runs) == ["tiny", "tiny-32"]
    for run in runs:
        record, path = records[run.data.tags["harness.encoder"]]
        assert run.info.status == "FINISHED"
        data = run.data
        assert {metric_name(k): v for k, v in record.metrics.items()}.items() <= data.metrics.items()
        assert data.metrics["nDCG_at_10"] == record.metrics["nDCG@10"]
        assert data.metrics["query_latency_p50_ms"] == record.performance.query_latency.p50
        assert data.metrics["corpus_passages_per_s"] == record.performance.throughput.passages_per_s
        settings = record.encoder.settings
        assert data.params["encoder.max_seq_length"] == str(settings.max_seq_length)
        assert data.params["encoder.engine"] == "fast" and data.params["encoder.runtime"] == settings.runtime
        assert data.params["hardware_key"] == record.speed_hardware_key
        assert data.params["dataset.fingerprint"] == record.dataset.fingerprint
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"record.json", "run.trec", "per_query.json"} <= artifacts
        local = client.download_artifacts(run.info.run_id, "record.json", str(tmp_path / run.info.run_id))
        assert json.loads(open(local).read()) == json.loads((path / "record.json").read_text())


def test_profile_logs_points(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["profile", "--model", str(tiny_model), "--synthetic-tokens", "12", "--n", "8", "--batch-size", "4",
                 "--engine", "fast", "--device", "cpu", "--warmup", "0", "--min-calls", "2", "--min-seconds", "0",
                 "--output", str(tmp_path / "out"), "--mlflow", uri, "--mlflow-experiment", "speed"]) == 0
    [path] = find_records([tmp_path / "out"])
    [point] = load(path).points
    [run] = MlflowClient(tracking_uri=uri).search_runs([MlflowClient(tracking_uri=uri).get_experiment_by_name(
        "speed").experiment_id])
    assert run.data.metrics["fast.fp32.b4.len128.cpu.passages_per_s"] == point.throughput.passages_per_s
    assert run.data.metrics["fast.fp32.b4.len128.cpu.latency_p99_ms"] == point.latency.p99
    assert run.data.tags["harness.kind"] == "profile"


def test_missing_mlflow_fails_before_running(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    assert main(["run", "quick", "--output", str(tmp_path / "out"), "--mlflow", "sqlite:///x.db"]) == 2
    assert "pip install 'harness[mlflow]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
