import json

import pytest

from harness.errors import HarnessError
from harness.records import RunRecord, find_records, load_record, read_trec_run, write_run_record


def record(**changes):
    data = dict(suite={"name": "s"}, dataset={"name": "d"}, encoder={"name": "e"}, metrics={"MRR@10": 0.5},
                metric_definitions={"MRR@10": "x"}, top_k=10, performance={}, environment={},
                created_at="2026-11-26T12:00:00+00:00")
    return RunRecord(**{**data, **changes})


RUN = {"q2": [("d9", 2.5), ("d1", 0.1)], "q1": [("d3", 1.0 / 3.0)]}


def test_round_trip(tmp_path):
    path = write_run_record(tmp_path, record(), run=RUN, per_query={"MRR@10": {"q1": 1.0, "q2": 0.0}}, tag="e")
    assert path.name == "s--d--e--2026-11-26T120000Z"
    assert load_record(path) == record()
    assert read_trec_run(path / "run.trec") == {"q1": {"d3": 1.0 / 3.0}, "q2": {"d9": 2.5, "d1": 0.1}}
    assert (path / "run.trec").read_text().splitlines()[0] == f"q1 Q0 d3 1 {1.0 / 3.0!r} e"


def test_same_name_never_overwrites(tmp_path):
    first = write_run_record(tmp_path, record(), run=RUN, per_query={}, tag="e")
    second = write_run_record(tmp_path, record(metrics={"MRR@10": 0.9}), run=RUN, per_query={}, tag="e")
    assert second.name == first.name + ".2"
    assert load_record(first).metrics == {"MRR@10": 0.5} and load_record(second).metrics == {"MRR@10": 0.9}
    assert find_records([tmp_path]) == [first, second]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(HarnessError, match="cannot create the results folder"):
        write_run_record(blocker / "sub", record(), run=RUN, per_query={}, tag="e")


def test_bad_record_files(tmp_path):
    with pytest.raises(HarnessError, match="record.json: not found"):
        load_record(tmp_path)
    (tmp_path / "record.json").write_text("{")
    with pytest.raises(HarnessError, match="not valid JSON"):
        load_record(tmp_path)
    (tmp_path / "record.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(HarnessError, match="schema_version 99"):
        load_record(tmp_path)
