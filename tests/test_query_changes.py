"""Which queries changed (issue 24): the queries a record lost and gained most on against another, with their
texts, the judged-relevant documents' ranks before → after and the new top 3 with snippets and judgments, read
through the records' data set. On the shipped NovelEval records of all-MiniLM-L6-v2 and its 16-token truncation
(nothing is encoded); every figure is checked against the record files themselves."""

from __future__ import annotations

import json

import pytest

from harness.analysis.query_changes import query_changes
from harness.cli import main
from harness.input.datasets import read_run
from harness.reporting import build_report, load_report_data
from harness.scoring.scored import ScoredRun, ordered
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.statistics import StatsOptions
from tests.conftest import DATA
from tests.record_fixtures import shipped_records


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return shipped_records(tmp_path_factory.mktemp("shipped"))


def independent_deltas(pair, metric):
    before = json.loads((pair.control / "per_query.json").read_text())[metric]
    after = json.loads((pair.degraded / "per_query.json").read_text())[metric]
    return {q: after[q] - before[q] for q in before}


def test_losses_and_gains_are_the_largest_changes_with_ranks_texts_and_judgments(pair):
    found = query_changes(ScoredRun.load(pair.control), ScoredRun.load(pair.degraded), metric="nDCG@10", n=3)
    deltas = independent_deltas(pair, "nDCG@10")
    worst = sorted((q for q in deltas if deltas[q] < 0), key=lambda q: (deltas[q], q))[:3]
    assert [q.qid for q in found.losses] == worst
    assert [q.qid for q in found.gains] == sorted((q for q in deltas if deltas[q] > 0),
                                                  key=lambda q: (-deltas[q], q))[:3]
    assert found.changed == sum(1 for d in deltas.values() if d != 0) and found.queries == len(deltas)
    queries = {json.loads(line)["_id"]: json.loads(line)["text"]
               for line in (DATA / "noveleval" / "queries.jsonl").read_text().splitlines()}
    corpus = {json.loads(line)["_id"]: json.loads(line) for line in
              (DATA / "noveleval" / "corpus.jsonl").read_text().splitlines()}
    qrels = {}
    for line in (DATA / "noveleval" / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, doc, grade = line.split("\t")
        qrels.setdefault(qid, {})[doc] = int(grade)
    before = ordered(read_run(pair.control / "run.trec"))
    after = ordered(read_run(pair.degraded / "run.trec"))
    loss = found.losses[0]
    assert loss.text == queries[loss.qid] and loss.delta == pytest.approx(deltas[loss.qid])
    relevant = {d: g for d, g in qrels[loss.qid].items() if g >= 1}
    assert {r.doc_id for r in loss.relevant} == set(relevant)
    for r in loss.relevant:
        assert r.before == (before[loss.qid].index(r.doc_id) + 1 if r.doc_id in before[loss.qid] else None)
        assert r.after == (after[loss.qid].index(r.doc_id) + 1 if r.doc_id in after[loss.qid] else None)
    assert [d.doc_id for d in loss.top_after] == after[loss.qid][:3]
    for d in loss.top_after:
        assert d.grade == qrels[loss.qid].get(d.doc_id)
        assert " ".join(corpus[d.doc_id]["text"].split()).startswith(d.snippet.rstrip("…")[:40])


def test_compare_queries_prints_them_and_report_queries_adds_a_collapsible_section(pair, tmp_path, capsys):
    assert main(["compare", str(pair.control), str(pair.degraded), "--queries", "2", "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert "noveleval: all-MiniLM-L6-v2-trunc16 vs all-MiniLM-L6-v2 on nDCG@10" in out and "lost most:" in out
    assert "relevant " in out and "now #1 " in out
    data = load_report_data([pair.control, pair.degraded], stats=StatsOptions(n_resamples=200), queries=2)
    build_report(data, tmp_path / "report")
    page = (tmp_path / "report" / "report.html").read_text()
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Queries that changed most" in md and page.count("<details>") == 4
    first = data.changes[0].losses[0]
    assert first.qid in md and "<summary>" in page


def test_a_bad_query_count_or_metric_is_refused(pair):
    control, degraded = ScoredRun.load(pair.control), ScoredRun.load(pair.degraded)
    with pytest.raises(HarnessError, match="positive number of queries"):
        query_changes(control, degraded, metric="nDCG@10", n=0)
    with pytest.raises(HarnessError, match="no per-query values of P@5"):
        query_changes(control, degraded, metric="P@5")
    assert main(["compare", str(pair.control), str(pair.degraded), "--queries", "0"]) == 2


def test_history_lists_what_moved_at_a_significant_step(pair, tmp_path, capsys):
    """The shipped pair as two versions of one encoder: v2 (the truncation) is significantly worse, so its step
    lists the queries that moved."""
    from harness.scoring.records import load, write_run_record

    for folder, version in ((pair.control, "v1"), (pair.degraded, "v2")):
        run = ScoredRun.load(folder)
        record = run.record.model_copy(update={"encoder": run.record.encoder.model_copy(
            update={"name": "minilm", "version": version})})
        write_run_record(tmp_path / "versions", record, run=folder / "run.trec", per_query=run.per_query,
                         recall_curve=run.curve(), tag="minilm")
    assert {load(f).encoder.version for f in (tmp_path / "versions").iterdir()} == {"v1", "v2"}
    assert main(["history", str(tmp_path / "versions"), "--queries", "2", "--resamples", "300",
                 "-o", str(tmp_path / "h")]) == 0
    md = (tmp_path / "h" / "history.md").read_text()
    assert "At v2, significantly changed from the version before:" in md
    worst = min(independent_deltas(pair, "nDCG@10").items(), key=lambda qd: (qd[1], qd[0]))[0]
    assert f"**{worst}: nDCG@10 " in md
