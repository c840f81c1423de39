"""Records: typed models, JSON round trips, the one loader (schema 1 and 2), atomic writing, Recall@k curves."""

import json
import math
import shutil

import pytest

from harness.input.datasets import read_run
from harness.scoring.records import (
    IrDatasetsSource,
    MsmarcoTsvSource,
    ProfileRecord,
    RecallCurve,
    RunRecord,
    curve_ks,
    find_records,
    load,
    load_per_query,
    load_recall_curve,
    load_run_record,
    recall_curve,
    slug,
    write_profile_record,
    write_run_record,
)
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.timing import Latency, Throughput
from tests.conftest import REPO
from tests.record_fixtures import ENV, synthetic_run_record

RESULTS = REPO / "results"
RUN = {"q2": [("d9", 2.5), ("d1", 0.1)], "q1": [("d3", 1.0 / 3.0)]}
PER_QUERY = {"MRR@10": {"q1": 1.0, "q2": 0.0}}
CURVE = RecallCurve(ks=[1, 2], per_query={"q1": [0.5, 1.0], "q2": [0.0, 0.0]})


def record(**changes) -> RunRecord:
    base = synthetic_run_record(encoder="e", per_query=PER_QUERY, suite="s", dataset="d",
                                created_at="2026-11-26T12:00:00+00:00")
    return base.model_copy(update=changes)


def profile() -> ProfileRecord:
    point = {"engine": "fast", "precision": "int8", "batch_size": 4, "max_seq_length": 128, "device": "cpu",
             "calls": 3, "throughput": Throughput.from_seconds(0.012, passages=12, tokens=600), "mean_tokens": 50.0,
             "latency": Latency.from_values([3.0, 4.0, 5.0]), "peak_rss_mb": 700.0, "peak_gpu_mb": None,
             "tflops": None, "mfu": None, "mfu_peak": None}
    return ProfileRecord.model_validate({
        "name": "synthetic-77", "model": {"model": "bundled:all-MiniLM-L6-v2", "fingerprint": "abc"},
        "texts": {"kind": "synthetic", "tokens": 77, "n": 32}, "points": [point], "environment": ENV,
        "created_at": "2026-11-26T12:00:00+00:00"})


@pytest.mark.parametrize("model", [record(), profile(), CURVE, Latency.from_values([2.0, 1.0]),
                                   Throughput(passages_per_s=None, tokens_per_s=None)],
                         ids=["run", "profile", "curve", "latency", "throughput"])
def test_every_record_type_round_trips_through_json(model):
    again = type(model).model_validate_json(model.model_dump_json())
    assert again == model and again.model_dump() == model.model_dump()


def test_run_record_round_trip_on_disk(tmp_path):
    rec = record()
    path = write_run_record(tmp_path, rec, run=RUN, per_query=PER_QUERY, recall_curve=CURVE, tag="e")
    assert path.name == "s--d--e--2026-11-26T120000Z"
    assert load(path) == rec and load(path / "record.json") == rec and load_run_record(path) == rec
    assert sorted(p.name for p in path.iterdir()) == ["per_query.json", "recall_curve.json", "record.json", "run.trec"]
    assert load_per_query(path, rec) == PER_QUERY and load_recall_curve(path, rec) == CURVE
    assert read_run(path / "run.trec") == {"q1": {"d3": 1.0 / 3.0}, "q2": {"d9": 2.5, "d1": 0.1}}
    assert (path / "run.trec").read_text().splitlines()[0] == f"q1 Q0 d3 1 {1.0 / 3.0!r} e"
    stored = json.loads((path / "record.json").read_text())
    assert stored["schema_version"] == 2 and stored["performance"]["query_latency"]["p50"] == 5.0


def test_profile_record_round_trip_on_disk(tmp_path):
    path = write_profile_record(tmp_path, profile())
    assert path.name == "profile--synthetic-77--bundled-all-MiniLM-L6-v2--2026-11-26T120000Z"
    loaded = load(path)
    assert loaded == profile() and loaded.label == "bundled:all-MiniLM-L6-v2 · synthetic-77"
    with pytest.raises(HarnessError, match="a profile record, not a run record"):
        load_run_record(path)


def test_latency_and_throughput_are_derived_from_raw_values():
    latency = Latency.from_values([4.0, 5.0, 9.0])
    assert (latency.mean, latency.p50, latency.n, latency.values_ms) == (6.0, 5.0, 3, (4.0, 5.0, 9.0))
    assert latency.p99 == pytest.approx(5.0 + 0.98 * (9.0 - 5.0))  # linear interpolation at rank 1.98
    assert latency.summary() == {"mean": 6.0, "p50": 5.0, "p90": latency.p90, "p95": latency.p95,
                                 "p99": latency.p99, "stdev": latency.stdev, "n": 3}
    with pytest.raises(ValueError, match="n is 4 but there are 3"):
        Latency.model_validate({**latency.model_dump(), "n": 4})
    assert Throughput.from_seconds(2.0, passages=100, tokens=5000) == Throughput(passages_per_s=50.0,
                                                                                  tokens_per_s=2500.0)
    assert Throughput.from_seconds(0.0, passages=100, tokens=5000).passages_per_s is None


def test_dataset_source_is_a_union_on_kind():
    base = record().dataset.model_dump()
    tsv = {"kind": "msmarco_tsv", "collection": "c.tsv", "queries": "q.tsv", "qrels": "qrels.tsv"}
    assert isinstance(type(record().dataset).model_validate({**base, "source": tsv}).source, MsmarcoTsvSource)
    irds = type(record().dataset).model_validate({**base, "source": {"kind": "ir_datasets", "id": "msmarco"}})
    assert irds.source == IrDatasetsSource(id="msmarco")
    with pytest.raises(ValueError, match="does not match any of the expected tags"):
        type(record().dataset).model_validate({**base, "source": {"kind": "csv", "path": "x"}})


def test_every_shipped_record_loads():
    """Schema-1 records under results/ upgrade in memory: latency statistics rebuilt from the raw values match
    the stored ones, and the Recall@k curves added to them end at the record's own Recall@100 / Recall@1000."""
    found = find_records([RESULTS])
    # results/serving-example (scripts/serving-example): current-schema records of a served model, not upgraded
    served = [d for d in found if d.parent.parent.name == "serving-example"]
    kinds = sorted(type(load(d)).__name__ for d in served)
    assert kinds == ["RunRecord", "RunRecord", "ServingRecord"], kinds
    assert sum(load(d).encoder.endpoint is not None for d in served if d.parent.name == "quality") == 1
    found = [d for d in found if d not in served]
    loaded = [(d, load(d)) for d in found]
    schema_2 = [d for d in found if json.loads((d / "record.json").read_text())["schema_version"] == 2]
    compat = [d for d in schema_2 if d.parent.name == "compat"]  # results/compat: loaded above
    assert len(compat) == 3 and all(d.parent.name == "external-dl19" for d in schema_2 if d not in compat)
    loaded = [(d, r) for d, r in loaded if d not in compat]
    runs = [(d, r) for d, r in loaded if isinstance(r, RunRecord)]
    assert len(runs) == 14 and len(loaded) - len(runs) == 2
    # results/external-dl19: the five DL19 reference runs scored by `harness evaluate` (schema 2, no timings)
    external = [(d, r) for d, r in runs if r.source is not None]
    assert len(external) == 5
    for directory, rec in external:
        assert rec.source.kind == "external" and rec.encoder is None and rec.performance is None
        curve = load_recall_curve(directory, rec)
        assert math.isclose(curve.mean()[-1], rec.metrics["Recall@100"], abs_tol=1e-12) and curve.ks[-1] == 100
    for directory, rec in (item for item in runs if item not in external):
        stored = json.loads((directory / "record.json").read_text())
        assert stored["schema_version"] == 1 and rec.schema_version == 2
        summary = stored["performance"]["query_latency_ms"]
        assert rec.performance.query_latency.summary() == pytest.approx(summary, rel=1e-12)
        assert rec.performance.throughput.passages_per_s == stored["performance"]["passages_per_s"]
        curve = load_recall_curve(directory, rec)
        mean = dict(zip(curve.ks, curve.mean()))
        assert len(curve.per_query) == rec.dataset.counts.queries
        assert math.isclose(mean[100], rec.metrics["Recall@100"], abs_tol=1e-12)
        assert math.isclose(mean[1000], rec.metrics["Recall@1000"], abs_tol=1e-12)
    for directory, rec in loaded:
        if isinstance(rec, ProfileRecord):
            stored = json.loads((directory / "record.json").read_text())["points"]
            assert [p.latency.p50 for p in rec.points] == pytest.approx([p["latency_ms"]["p50"] for p in stored])
            assert [p.throughput.passages_per_s for p in rec.points] == [p["passages_per_s"] for p in stored]


def test_schema_1_record_without_a_curve(tmp_path):
    shipped = next(d for d in find_records([RESULTS / "baselines"]))
    copy = tmp_path / shipped.name
    shutil.copytree(shipped, copy)
    data = json.loads((copy / "record.json").read_text())
    del data["files"]["recall_curve"]
    (copy / "record.json").write_text(json.dumps(data))
    rec = load(copy)
    assert rec.files.recall_curve is None and load_recall_curve(copy, rec) is None


def test_same_name_never_overwrites(tmp_path):
    first = write_run_record(tmp_path, record(), run=RUN, per_query={}, recall_curve=CURVE, tag="e")
    second = write_run_record(tmp_path, record(metrics={"MRR@10": 0.9}), run=RUN, per_query={}, recall_curve=CURVE,
                              tag="e")
    assert second.name == first.name + ".2"
    assert load(first).metrics == {"MRR@10": 0.5} and load(second).metrics == {"MRR@10": 0.9}
    assert find_records([tmp_path]) == [first, second]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(HarnessError, match="cannot create the results folder"):
        write_run_record(blocker / "sub", record(), run=RUN, per_query={}, recall_curve=CURVE, tag="e")


def test_bad_record_files(tmp_path):
    with pytest.raises(HarnessError, match="record.json: not found"):
        load(tmp_path)
    (tmp_path / "record.json").write_text("{")
    with pytest.raises(HarnessError, match="not valid JSON"):
        load(tmp_path)
    (tmp_path / "record.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(HarnessError, match=r"schema_version 99 is not one this harness reads \(1, 2\)"):
        load(tmp_path)
    data = record().model_dump(mode="json")
    data["performance"]["throughput"]["passages_per_sec"] = 1.0
    (tmp_path / "record.json").write_text(json.dumps(data))
    with pytest.raises(HarnessError, match=r"not a valid run record:\n.*run.performance.throughput.passages_per_sec"):
        load(tmp_path)
    v1 = json.loads(next((RESULTS / "baselines").glob("*/record.json")).read_text())
    del v1["performance"]["search_s"]
    (tmp_path / "record.json").write_text(json.dumps(v1))
    with pytest.raises(HarnessError, match="schema-1 record lacks or garbles field 'search_s'"):
        load(tmp_path)


def test_recall_curve_by_hand():
    """q1 has two relevant documents, ranked 1st and 3rd; q2 (judged) is missing from the run and scores 0."""
    qrels = {"q1": {"a": 1, "b": 1, "n": 0}, "q2": {"c": 2}}
    run = {"q1": {"a": 3.0, "x": 2.0, "b": 1.0}, "q3": {"c": 1.0}}
    curve = recall_curve(qrels, run, top_k=3)
    assert curve.ks == [1, 2, 3]
    assert curve.per_query == {"q1": [0.5, 0.5, 1.0], "q2": [0.0, 0.0, 0.0]}
    assert curve.mean() == [0.25, 0.25, 0.5]
    # relevance_level 2: only c is relevant, so q1 has nothing to find (trec_eval scores it 0)
    assert recall_curve(qrels, run, top_k=3, relevance_level=2).per_query["q1"] == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="query 'q1' has 1 values for 2 cut-offs"):
        RecallCurve(ks=[1, 2], per_query={"q1": [0.5]})


def test_curve_ks():
    assert curve_ks(5) == [1, 2, 3, 4, 5]
    ks = curve_ks(1000)
    assert ks[:10] == list(range(1, 11)) and {100, 1000} <= set(ks) and ks[-1] == 1000 and len(ks) < 60
    assert curve_ks(5000)[-1] == 1000 and curve_ks(150)[-1] == 150 and 100 in curve_ks(150)


def test_slug():
    assert slug("all-MiniLM-L6-v2 [old] (2)") == "all-MiniLM-L6-v2-old-2" and slug("///") == "x"

