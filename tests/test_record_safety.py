"""What a record writes and reads back is exactly what was ranked, and nothing else (issue 22, items 1, 4, 7, 12).

The TREC writer refuses what a run file cannot carry (ids with whitespace, '#' query ids, non-finite scores)
and always writes one tag token; a property test writes adversarial rankings and reads them back with
`datasets.read_run`. A kill -9 mid-write leaves a temporary folder that the next writer removes (a live writer's
is kept). A record's files are plain names inside its folder. An external run's top_k is that of its judged
queries.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import harness
from harness.cli import main
from harness.input.datasets import read_qrels, read_run
from harness.scoring.records import (
    RecallCurve,
    RunRecord,
    load,
    load_recall_curve,
    load_run_record,
    record_file,
    slug,
    write_run_record,
    write_trec_run,
)
from harness.vocabulary.errors import HarnessError
from tests.conftest import DATA, REPO
from tests.record_fixtures import synthetic_run_record

PER_QUERY = {"MRR@10": {"q1": 1.0, "q2": 0.0}}
CURVE = RecallCurve(ks=[1], per_query={"q1": [1.0], "q2": [0.0]})
RUN = {"q1": [("d3", 1.0 / 3.0), ("d1", 0.1)], "q2": [("d9", 2.5)]}
SHIPPED = sorted((REPO / "results" / "external-dl19").iterdir())
NOVELEVAL_QRELS = DATA / "noveleval" / "qrels" / "test.tsv"


def record() -> RunRecord:
    return synthetic_run_record(encoder="e", per_query=PER_QUERY, created_at="2026-11-26T12:00:00+00:00")


def entries(folder: Path) -> tuple[list[str], list[str]]:
    """(hidden, visible) entry names of a results folder."""
    names = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    return [n for n in names if n.startswith(".")], [n for n in names if not n.startswith(".")]


# ---------------------------------------------------------------- item 1: the TREC writer


@pytest.mark.parametrize("run, refused", [
    ({"q1": [("p 7", 1.0)]}, "document id 'p 7'"),  # the corpus id: read back as document 'p'
    ({"q1": [("", 1.0)]}, "document id ''"),
    ({"q1": [("d\u00a07", 1.0)]}, "document id 'd\\xa07'"),  # no-break space: Python's split() splits there
    ({"q1": [("d\ufeff", 1.0)]}, "document id 'd\\ufeff'"),
    ({"q\t1": [("d1", 1.0)]}, "query id 'q\\t1'"),
    ({"#1": [("d1", 1.0)]}, "query id '#1'"),  # a comment line to trec_eval and read_run
    ({"": [("d1", 1.0)]}, "query id ''"),
    ({"q1": [("d1", 1.0), ("d1", 0.5)]}, "document 'd1' is ranked twice for query 'q1'"),
    ({"q1": [("d1", float("nan"))]}, "score nan of document 'd1'"),
    ({"q1": [("d1", float("inf"))]}, "score inf of document 'd1'"),
    ({"q1": [("d1", -float("inf"))]}, "score -inf of document 'd1'"),
])
def test_what_a_trec_run_cannot_carry_is_refused_and_nothing_is_kept(tmp_path, run, refused):
    with pytest.raises(HarnessError, match=re.escape(refused)) as error:
        write_run_record(tmp_path / "out", record(), run=run, per_query=PER_QUERY, recall_curve=CURVE, tag="e")
    assert str(error.value).startswith("run.trec: ")
    assert entries(tmp_path / "out") == ([], [])


@pytest.mark.parametrize("name, tag", [(" ", "harness"), ("", "harness"), ("BAAI/bge small", "BAAI-bge-small"),
                                       ("模型", "harness"), ("all-MiniLM-L6-v2", "all-MiniLM-L6-v2")])
def test_the_run_tag_is_always_one_token(tmp_path, name, tag):
    """An encoder named " " wrote lines of five columns, which read_run refuses and trec_eval misreads."""
    path = write_run_record(tmp_path, record(), run=RUN, per_query=PER_QUERY, recall_curve=CURVE, tag=name)
    lines = (path / "run.trec").read_text(encoding="utf-8").splitlines()
    assert [line.split()[5:] for line in lines] == [[tag]] * 3
    assert read_run(path / "run.trec") == {q: dict(docs) for q, docs in RUN.items()}


# Characters an id cannot hold in a TREC line, one of each kind: ASCII and Unicode whitespace, line breaks that
# Python or trec_eval split at, a BOM, NUL and other control characters, a lone surrogate (not encodable).
NOT_IN_IDS = [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\xa0", "\u2028", "\u3000", "\ufeff", "\x00",
              "\x7f", "\x9b", "\ud800"]
ORDINARY = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), min_size=1, max_size=6)
GOOD_IDS = st.one_of(
    ORDINARY, st.sampled_from(["0", "00", "1", "10", "#", "a#b", "Q0", "d1", "é", "ß", "\u200b", "🙂"]),
    st.integers(0, 10**30).map(str), st.integers(200, 3000).map(lambda n: "é" * n))
BAD_IDS = st.one_of(ORDINARY.map(lambda s: "#" + s), st.just(""),  # '#' is bad only as a query id
                    st.builds(lambda a, c, b: a + c + b, ORDINARY, st.sampled_from(NOT_IN_IDS), ORDINARY))
IDS = st.integers(0, 19).flatmap(lambda i: BAD_IDS if i == 0 else GOOD_IDS)  # so that many runs are writable
SCORES = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, 1e-05, 5e-324, 2.2250738585072014e-308, 2.225073858507201e-308,
                     1.7976931348623157e308, -1e300, 1 / 3, 0.1 + 0.2, 1e16, 123456789.12345679,
                     0.10000000149011612]),  # float32 0.1 widened, as the search scores are
    st.floats(),  # NaN and infinities included
    st.floats(min_value=-1e-300, max_value=1e-300),  # subnormals
)
RUNS = st.dictionaries(IDS, st.lists(st.tuples(IDS, SCORES), min_size=1, max_size=6), min_size=1, max_size=4)
TREC_EVAL_SPACE = re.compile(r"[ \t\n\v\f\r]+")  # C isspace(): how trec_eval splits a line


def fits_a_trec_line(text: str) -> bool:
    return bool(text) and not any(c.isspace() or unicodedata.category(c) in ("Cc", "Cs") or c == "\ufeff"
                                  for c in text)


def writable(run: dict[str, list[tuple[str, float]]]) -> bool:
    queries_ok = all(fits_a_trec_line(q) and not q.startswith("#") for q in run)
    lines_ok = all(fits_a_trec_line(d) and math.isfinite(s) for docs in run.values() for d, s in docs)
    once_each = all(len({d for d, _ in docs}) == len(docs) for docs in run.values())
    return queries_ok and lines_ok and once_each


def trec_eval_order(docs) -> list[tuple[str, bytes]]:
    """Score descending, ties by document id descending; each score as its float64 bits."""
    return [(d, struct.pack("<d", s)) for d, s in sorted(docs, key=lambda item: (item[1], item[0]), reverse=True)]


@given(run=RUNS, tag=st.text(max_size=8))
@example(run={"q1": [("d1", 1e-05), ("d2", -0.0), ("d3", 0.0), ("d4", 5e-324), ("d5", 0.0)],
              "10": [("p-7", 1.7976931348623157e308)], "9": [("#x", -1e-300)]}, tag="enc")
@example(run={"q1": [("p 7", 1.0)]}, tag="e")
@example(run={"q1": [("d1", 1.0)]}, tag=" ")
def test_a_written_run_reads_back_as_the_same_ranking_or_is_refused(tmp_path_factory, run, tag):
    path = tmp_path_factory.mktemp("round-trip") / "run.trec"
    try:
        write_trec_run(path, run, tag=tag)
    except HarnessError:
        assert not writable(run)
        return
    assert writable(run)
    back = read_run(path)
    assert {q: trec_eval_order(docs.items()) for q, docs in back.items()} == {
        q: trec_eval_order(docs) for q, docs in run.items()}
    lines = path.read_bytes().decode("utf-8").split("\n")
    assert lines.pop() == ""
    tags = set()
    for line in lines:  # trec_eval cuts the line where read_run does, into the six columns
        assert TREC_EVAL_SPACE.split(line) == line.split() and len(line.split()) == 6
        tags.add(line.split()[5])
    assert len(tags) == 1


# ---------------------------------------------------------------- item 4: an external run's top_k


def test_top_k_of_an_external_run_is_the_depth_of_its_judged_queries(tmp_path):
    """Each NovelEval query ranks its judged passages; one query the qrels do not know ranks 1,500 documents.
    It is not scored, so it sets neither top_k nor the Recall@k curve's last cut-off."""
    qrels = read_qrels(NOVELEVAL_QRELS)
    lines = [f"{q} Q0 {d} {r} {100 - r} bm25\n" for q, docs in qrels.items() for r, d in enumerate(sorted(docs), 1)]
    lines += [f"unjudged Q0 x{r} {r} {-r} bm25\n" for r in range(1, 1501)]
    run = tmp_path / "run.trec"
    run.write_text("".join(lines))
    depth = max(len(docs) for docs in qrels.values())
    assert depth < 100

    [result] = harness.evaluate_runs([run], qrels=NOVELEVAL_QRELS, output=tmp_path / "out")
    record = load_run_record(result.path)
    assert record.top_k == depth
    assert load_recall_curve(result.path, record).ks[-1] == depth
    assert [w.kind for w in record.source.warnings] == ["queries-not-in-qrels"]
    [again] = harness.rescore(result.path)  # scoring the stored ranking again keeps it
    assert again.record.top_k == depth


# ---------------------------------------------------------------- item 7: leftovers of killed writers

CHILD = """
import sys, time
from pathlib import Path
from harness.scoring import records
from tests.test_record_safety import CURVE, PER_QUERY, RUN, record

def stuck(*args, **kwargs):  # run.trec is written; the writer hangs before per_query.json
    print("inside", flush=True)
    time.sleep(600)

records._write_json = stuck
records.write_run_record(Path(sys.argv[1]), record(), run=RUN, per_query=PER_QUERY, recall_curve=CURVE, tag="e")
"""


def test_a_writer_killed_mid_record_leaves_nothing_the_next_writer_keeps(tmp_path):
    out = tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(out)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "inside\n"
        [leftover], visible = entries(out)
        assert visible == [] and (out / leftover / "run.trec").is_file()
        # another process writing into the same folder meanwhile keeps the live writer's folder
        write_run_record(out, record(), run=RUN, per_query=PER_QUERY, recall_curve=CURVE, tag="e")
        assert entries(out)[0] == [leftover]
    finally:
        child.kill()  # SIGKILL
        child.wait()
    assert (out / leftover).is_dir()
    write_run_record(out, record(), run=RUN, per_query=PER_QUERY, recall_curve=CURVE, tag="e")
    hidden, visible = entries(out)
    assert hidden == [] and len(visible) == 2
    assert [load(out / v).metrics for v in visible] == [record().metrics] * 2


def test_old_leftovers_go_whatever_their_host_and_others_files_stay(tmp_path):
    """A writer's temporary folder older than a day is a dead writer's (another host, or a pid reused since: here
    this process's); a fresh one of another host may be live; hidden folders not named so are not a writer's."""
    out = tmp_path / "out"
    day_old = time.time() - 25 * 3600
    mine = f".tmp-{os.getpid()}@{slug(socket.gethostname())}"
    names = {"old-elsewhere": ".tmp-4242@elsewhere-0123abcd", "old-mine": f"{mine}-89abcdef",
             "fresh-elsewhere": ".tmp-4242@elsewhere-fedcba98", "someone-else's": ".tmp-report-0123abcd"}
    for key, name in names.items():
        (out / name).mkdir(parents=True)
        (out / name / "run.trec").write_text("")
        if key != "fresh-elsewhere":
            os.utime(out / name, (day_old, day_old))
    write_run_record(out, record(), run=RUN, per_query=PER_QUERY, recall_curve=CURVE, tag="e")
    assert entries(out)[0] == sorted([names["fresh-elsewhere"], names["someone-else's"]])


# ---------------------------------------------------------------- item 12: a record's files stay in its folder


def shipped_copy(tmp_path: Path, index: int = 0, **files: str) -> Path:
    copy = tmp_path / SHIPPED[index].name
    shutil.copytree(SHIPPED[index], copy)
    data = json.loads((copy / "record.json").read_text())
    data["files"].update(files)
    (copy / "record.json").write_text(json.dumps(data))
    return copy


@pytest.mark.parametrize("role, name", [("run", "/etc/passwd"), ("per_query", "../../../etc/hostname"),
                                        ("recall_curve", "sub/recall_curve.json"), ("run", ".."), ("run", ""),
                                        ("per_query", "..\\per_query.json")])
def test_file_names_that_leave_the_record_folder_are_refused_at_load(tmp_path, role, name):
    copy = shipped_copy(tmp_path, **{role: name})
    with pytest.raises(HarnessError) as error:
        load(copy)
    message = str(error.value)
    assert f"{copy / 'record.json'}: not a valid run record" in message
    assert f"files.{role}: " in message and "give the plain name (like 'run.trec')" in message


def test_links_out_of_the_record_folder_are_refused(tmp_path):
    outside = tmp_path / "elsewhere.trec"
    copy = shipped_copy(tmp_path)
    shutil.move(copy / "run.trec", outside)
    (copy / "run.trec").symlink_to(outside)
    with pytest.raises(HarnessError, match=re.escape(f"{copy / 'record.json'}: files.run 'run.trec' leads out of "
                                                     f"the record's folder (to {outside})")):
        load(copy)
    # a link within the folder, and a link to the folder itself, are the record's own files
    (copy / "run.trec").unlink()
    shutil.move(outside, copy / "ranking.trec")
    (copy / "run.trec").symlink_to("ranking.trec")
    (tmp_path / "latest").symlink_to(copy)
    for directory in (copy, tmp_path / "latest"):
        rec = load_run_record(directory)
        assert record_file(directory, rec, "run") == directory / "run.trec"
        assert read_run(record_file(directory, rec, "run")) == read_run(SHIPPED[0] / "run.trec")


def test_the_cli_reads_nothing_outside_a_record(tmp_path, capsys):
    """`evaluate RECORD` printed the first line of files.run = /etc/passwd; compare and report followed
    files.per_query = ../../../etc/hostname."""
    passwd = shipped_copy(tmp_path / "a", run="/etc/passwd")
    assert main(["evaluate", str(passwd)]) == 2
    out, err = capsys.readouterr()
    assert "files.run: " in err and "root:" not in out + err and "Traceback" not in err
    hostname = shipped_copy(tmp_path / "b", per_query="../../../etc/hostname")
    other = shipped_copy(tmp_path / "c", index=1)
    for args in (["compare", str(other), str(hostname)], ["report", str(other), str(hostname), "-o",
                                                           str(tmp_path / "report")]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert f"{hostname / 'record.json'}: not a valid run record" in err and "files.per_query: " in err
    assert not (tmp_path / "report").exists()
