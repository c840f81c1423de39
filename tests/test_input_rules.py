"""What the readers accept and refuse (issue 22, items 1-4 and the reading parts of 13): ids the TREC formats
cannot carry, a damaged corpus index, conflicting qrels, lines trec_eval skips or reads otherwise, corrupt gzip
streams and corpus fields that are not text. The rules are in docs/design.md, "Reading TREC qrels and runs"."""

import gzip
import json
import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.input.datasets import load_dataset, read_qrels, read_run
from harness.input.suite import DatasetSpec
from harness.vocabulary.errors import HarnessError
from tests.conftest import DATA, write_beir
from tests.test_faults import SUITE, finish, harness, only_complete_records

NOVELEVAL = DATA / "noveleval"
DL19 = DATA / "msmarco-trecdl2019-pool"
DL19_QRELS = DL19 / "orig" / "qrels.dl19-passage.txt"
BM25 = DL19 / "runs" / "BM25.dl19.trec"
DOCS = [("d1", "alpha"), ("d2", "beta"), ("d3", "gamma")]
QUERIES = [("q1", "a?"), ("q2", "b?")]
QRELS = [("q1", "d1", 1), ("q2", "d2", 2), ("q2", "d3", 0)]
BOM = b"\xef\xbb\xbf"


def beir(folder: Path, cache: Path | None = None):
    return load_dataset(DatasetSpec(name="t", path=folder), cache=cache)


def small(tmp_path: Path, docs=DOCS, queries=QUERIES, qrels=QRELS) -> Path:
    return write_beir(tmp_path / "set", docs=docs, queries=queries, qrels=qrels)


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / folder.name))


# ---------------------------------------------------------------- 1. ids the TREC formats cannot carry

def test_a_corpus_id_with_a_space_stops_harness_run_before_anything_is_written(tmp_path):
    """The issue's case: a NovelEval passage renamed "p 7" (and its qrels) used to give a run.trec that reads back
    as another ranking, with exit 0."""
    data = copy_of(NOVELEVAL, tmp_path)
    corpus = data / "corpus.jsonl"
    corpus.write_text(corpus.read_text(encoding="utf-8").replace('"_id": "0-3"', '"_id": "p 7"'), encoding="utf-8")
    qrels = data / "qrels" / "test.tsv"
    qrels.write_text(qrels.read_text(encoding="utf-8").replace("\t0-3\t", "\tp 7\t"), encoding="utf-8")
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE.format(data=data, model="bundled:all-MiniLM-L6-v2"), encoding="utf-8")
    code, _, err = finish(harness("run", suite, "-o", tmp_path / "out", "--cache", tmp_path / "cache",
                                  "--no-progress"))
    assert code == 2 and "Traceback" not in err, err
    assert f"{corpus}:4: document id 'p 7' contains ' '" in err and "rename it" in err
    assert only_complete_records(tmp_path / "out") == []


@pytest.mark.parametrize("doc_id", ["p 7", "p\t7", "p\u00a07", "p\u20037", "p\x1f7", "p\x007", "p\x017", "\ufeffp7",
                                    "p\ud8007", ""])
@pytest.mark.parametrize("cached", [False, True])
def test_corpus_ids_the_trec_formats_cannot_carry_are_refused_at_their_line(tmp_path, doc_id, cached):
    folder = small(tmp_path, docs=[*DOCS, (doc_id, "delta")])
    with pytest.raises(HarnessError) as err:
        beir(folder, tmp_path / "cache" if cached else None)
    assert f"corpus.jsonl:4: document id {doc_id!r} " in str(err.value)
    assert not list((tmp_path / "cache").glob("corpus-index/[!.]*"))


def test_query_and_qrels_ids_with_whitespace_and_query_ids_starting_with_hash_are_refused(tmp_path):
    folder = small(tmp_path, queries=[*QUERIES, ("q 3", "c?")])
    with pytest.raises(HarnessError, match=r"queries.jsonl:3: query id 'q 3' contains ' '"):
        beir(folder)
    folder = small(tmp_path / "hash", queries=[*QUERIES, ("#3", "c?")])
    with pytest.raises(HarnessError, match=r"queries.jsonl:3: query id '#3' starts with '#'"):
        beir(folder)  # its run lines would be comments to trec_eval
    folder = small(tmp_path / "qrels", qrels=[*QRELS, ("q1", "d 2", 1)])
    with pytest.raises(HarnessError, match=r"test.tsv:5: document id 'd 2' contains ' '"):
        beir(folder)


def test_msmarco_tsv_ids_are_checked_too(tmp_path):
    folder = tmp_path / "tsv"
    folder.mkdir()
    (folder / "collection.tsv").write_text("0\tzero\np 7\tseven\n2\ttwo\n", encoding="utf-8")
    (folder / "queries.tsv").write_text("1\tone?\n19 335\twhat?\n", encoding="utf-8")
    (folder / "qrels").write_text("1 0 2 1\n", encoding="utf-8")
    files = {name: folder / f for name, f in (("collection", "collection.tsv"), ("queries", "queries.tsv"),
                                               ("qrels", "qrels"))}
    with pytest.raises(HarnessError, match=r"collection.tsv:2: document id 'p 7' contains ' '"):
        load_dataset(DatasetSpec(name="m", **files))
    (folder / "collection.tsv").write_text("0\tzero\n2\ttwo\n", encoding="utf-8")
    with pytest.raises(HarnessError, match=r"queries.tsv:2: query id '19 335' contains ' '"):
        load_dataset(DatasetSpec(name="m", **files))


def test_ir_datasets_ids_are_checked_too(tmp_path):
    """Through `harness evaluate --suite`: a fresh process, since ir_datasets fixes its home folder at import."""
    base = tmp_path / "irds" / "msmarco-passage"  # the files ir_datasets reads, laid out as after a download
    (base / "trec-dl-2019").mkdir(parents=True)
    (base / "irds_version.txt").write_text("v2")
    (base / "collection.tsv").write_text("0\tzero\np 7\tseven\n2\ttwo\n", encoding="utf-8")
    (base / "trec-dl-2019" / "queries.tsv").write_text("19335\twhat?\n", encoding="utf-8")
    (base / "trec-dl-2019" / "qrels").write_text("19335 Q0 2 1\n", encoding="utf-8")
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE.replace("path: {data}", "ir_datasets: msmarco-passage/trec-dl-2019/judged")
                     .format(model="bundled:all-MiniLM-L6-v2"), encoding="utf-8")
    run = tmp_path / "run.trec"
    run.write_text("19335 Q0 2 1 3.5 tag\n")
    code, _, err = finish(harness("evaluate", "--suite", suite, "--dataset", "noveleval", "--run", run,
                                  "-o", tmp_path / "out", env={"IR_DATASETS_HOME": str(tmp_path / "irds")}))
    assert code == 2 and "Traceback" not in err, err
    assert "ir_datasets:msmarco-passage/trec-dl-2019/judged docs: document id 'p 7' contains ' '" in err


@pytest.mark.parametrize("doc_id", ["d\u00a07", "d\u20037", "d\x1c7", "d\x007"])
def test_whitespace_that_trec_eval_does_not_split_on_is_refused_in_runs_and_qrels(tmp_path, doc_id):
    """Python's split() would cut 'd\\u00a07' into two columns (docid 'd', score 1); trec_eval reads one docid."""
    run, qrels = tmp_path / "run.trec", tmp_path / "qrels.txt"
    run.write_text(f"q1 Q0 d1 1 3.0 tag\nq1 Q0 {doc_id} 2 2.5 tag\n", encoding="utf-8")
    qrels.write_text(f"q1 0 d1 1\nq1 0 {doc_id} 1\n", encoding="utf-8")
    for path, read in ((run, read_run), (qrels, read_qrels)):
        with pytest.raises(HarnessError, match=rf"{path.name}:2: contains {re.escape(repr(doc_id[1]))}: Python "
                                               "would split the line there and trec_eval would not"):
            read(path)


def test_json_run_ids_with_whitespace_are_refused(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"q1": {"d1": 2.0, "p 7": 1.0}}))
    with pytest.raises(HarnessError, match=r"run.json: document id 'p 7' contains ' '"):
        read_run(path)


# ---------------------------------------------------------------- 2. the corpus byte-offset index is verified

def _index(cache: Path) -> Path:
    [index] = (cache / "corpus-index").glob("[!.]*")
    return index


def test_swapped_or_shifted_index_rows_are_detected_at_load_and_the_index_rebuilt(tmp_path, caplog):
    cache = tmp_path / "cache"
    fresh = beir(NOVELEVAL, cache)
    texts = fresh.doc_texts
    index = _index(cache)
    for damage in ("swap", "shift"):
        offsets, lengths = np.load(index / "offsets.npy"), np.load(index / "lengths.npy")
        if damage == "swap":  # the case: nDCG@10 0.6144 instead of 0.7083, same fingerprint
            offsets[[0, 1]], lengths[[0, 1]] = offsets[[1, 0]], lengths[[1, 0]]
        else:  # the other case: a bare JSONDecodeError naming no file
            offsets[5] += 3
        np.save(index / "offsets.npy", offsets)
        np.save(index / "lengths.npy", lengths)
        with caplog.at_level(logging.WARNING):
            again = beir(NOVELEVAL, cache)
        assert again.doc_texts == texts and again.fingerprint == fresh.fingerprint
        assert f"{index}: the saved corpus index is damaged (its files do not match the checksum" in caplog.text
        caplog.clear()


def test_a_source_changed_under_its_index_stops_the_read_and_the_next_run_rebuilds(tmp_path):
    """Two passages' ids swapped in place, size and mtime kept: the index is found and its checksum holds, but the
    lines no longer hold the ids the index gives them."""
    data = copy_of(NOVELEVAL, tmp_path)
    corpus = data / "corpus.jsonl"
    cache = tmp_path / "cache"
    beir(data, cache)
    index = _index(cache)
    stat = corpus.stat()
    text = corpus.read_text(encoding="utf-8")
    corpus.write_text(text.replace('"_id": "0-1"', '"_id": "0-X"').replace('"_id": "0-2"', '"_id": "0-1"')
                      .replace('"_id": "0-X"', '"_id": "0-2"'), encoding="utf-8")
    os.utime(corpus, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    stale = beir(data, cache)
    with pytest.raises(HarnessError) as err:
        _ = stale.doc_texts
    message = str(err.value)
    assert f"{corpus}: does not match its corpus index {index}" in message
    assert "the index has document '0-2' there, the file '0-1'" in message or "'0-1' there, the file '0-2'" in message
    assert "the index was removed, run again" in message and not index.exists()
    rebuilt = beir(data, cache)
    row = rebuilt.doc_ids.tolist().index("0-1")
    assert rebuilt.doc_texts[row] == next(json.loads(line)["text"] for line in text.splitlines()
                                          if '"_id": "0-2"' in line)


def test_a_damaged_spill_file_is_a_harness_error_naming_it(tmp_path):
    cache = tmp_path / "cache"
    beir(DATA / "scifact", cache)  # corpus.jsonl.gz: read through the index's spill file
    index = _index(cache)
    spill = index / "spill"
    raw = bytearray(spill.read_bytes())
    raw[len(raw) // 2:len(raw) // 2 + 200] = bytes(200)  # NULs: no JSON string holds them
    spill.write_bytes(bytes(raw))
    ds = beir(DATA / "scifact", cache)
    with pytest.raises(HarnessError, match=rf"{spill}: does not match its corpus index .*are not a line of the corpus"):
        for _ in ds.corpus.chunks():
            pass
    assert not index.exists()


def test_a_plain_file_changed_after_it_was_indexed_without_a_cache(tmp_path):
    data = copy_of(NOVELEVAL, tmp_path)
    ds = beir(data)  # plain file, no cache: the index is in memory
    corpus = data / "corpus.jsonl"
    lines = corpus.read_text(encoding="utf-8").splitlines(keepends=True)
    corpus.write_text("".join(lines[1:] + lines[:1]), encoding="utf-8")
    with pytest.raises(HarnessError, match=rf"{corpus}: changed after it was indexed for this run .*run again"):
        _ = ds.doc_texts


# ---------------------------------------------------------------- 3. duplicate qrels

def test_a_pair_judged_twice_with_two_grades_is_refused_with_both_lines(tmp_path):
    """The issue's case: a DL19 judgment repeated with another grade kept the last (BM25: nDCG@10 0.2124)."""
    lines = DL19_QRELS.read_text().splitlines()
    qid, _, docid, grade = lines[10].split()
    path = tmp_path / "qrels.txt"
    path.write_text("\n".join([*lines, f"{qid} 0 {docid} {int(grade) + 1}"]) + "\n")
    with pytest.raises(HarnessError, match=rf"qrels.txt:{len(lines) + 1}: query '{qid}', document '{docid}' is "
                                           rf"judged {int(grade) + 1} here and {grade} at line 11"):
        read_qrels(path)
    folder = small(tmp_path, qrels=[*QRELS, ("q1", "d1", 0)])
    with pytest.raises(HarnessError, match=r"test.tsv:5: query 'q1', document 'd1' is judged 0 here and 1 at line 2"):
        beir(folder)


def test_identical_duplicate_qrels_are_counted_in_a_warning(tmp_path, caplog):
    from harness.input.datasets import read_qrels_with_warnings

    path = tmp_path / "qrels.txt"
    lines = DL19_QRELS.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[3], lines[7], lines[3]]) + "\n")
    with caplog.at_level(logging.WARNING):
        qrels, [warning] = read_qrels_with_warnings(path)
    assert qrels == read_qrels(DL19_QRELS)
    assert (warning.kind, warning.count) == ("duplicate-qrels", 3)
    assert warning.examples[0] == " ".join(lines[3].split()[::2][:2])
    assert "3 qrels lines repeat an earlier line" in caplog.text
    folder = small(tmp_path, qrels=[*QRELS, ("q2", "d3", 0)])
    [warning] = beir(folder).warnings
    assert (warning.kind, warning.count, warning.examples) == ("duplicate-qrels", 1, ["q2 d3"])
    assert beir(small(tmp_path / "clean")).warnings == []


def test_the_duplicate_qrels_warning_is_kept_in_the_record(tmp_path):
    """The record says what was odd in its judgments: `harness evaluate` with a qrels file, and a BEIR folder."""
    from harness.scoring.external import load_judgments
    from harness.scoring.records import DatasetInfo

    path = tmp_path / "qrels.txt"
    lines = DL19_QRELS.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[3]]) + "\n")
    [warning] = load_judgments(path).info.warnings
    assert (warning.kind, warning.count) == ("duplicate-qrels", 1)
    folder = small(tmp_path, qrels=[*QRELS, ("q2", "d3", 0)])
    info = DatasetInfo.of(beir(folder))
    assert [(w.kind, w.count, w.examples) for w in info.warnings] == [("duplicate-qrels", 1, ["q2 d3"])]
    assert DatasetInfo.model_validate_json(info.model_dump_json()) == info


# ---------------------------------------------------------------- 4. lines trec_eval skips or reads otherwise

def test_a_byte_order_mark_is_not_part_of_the_first_id(tmp_path):
    """0.5058 -> 0.4943 (a phantom judged query) and 0.5053 (the run's first query dropped) in the issue."""
    qrels, run = tmp_path / "qrels.txt", tmp_path / "run.trec"
    qrels.write_bytes(BOM + DL19_QRELS.read_bytes())
    run.write_bytes(BOM + BM25.read_bytes())
    assert read_qrels(qrels) == read_qrels(DL19_QRELS)
    assert read_run(run) == read_run(BM25)
    (tmp_path / "run.json").write_bytes(BOM + json.dumps({"q1": {"d1": 1.5}}).encode())
    assert read_run(tmp_path / "run.json") == {"q1": {"d1": 1.5}}


@pytest.mark.parametrize("name", ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"])
def test_a_byte_order_mark_in_a_beir_file_changes_nothing(tmp_path, name):
    reference = beir(NOVELEVAL)
    data = copy_of(NOVELEVAL, tmp_path)
    path = data / name
    path.write_bytes(BOM + path.read_bytes())
    for cache in (None, tmp_path / "cache"):
        ds = beir(data, cache)
        assert ds.fingerprint == reference.fingerprint and ds.doc_texts == reference.doc_texts


def test_comment_lines_in_qrels_are_skipped(tmp_path):
    """trec_eval skips qrels lines starting with '#'; a four-word comment was read as judgments of a query '#'."""
    path = tmp_path / "qrels.txt"
    path.write_text("# judged by NIST\n" + DL19_QRELS.read_text() + "  # pool depth: 10\n")
    assert read_qrels(path) == read_qrels(DL19_QRELS)
    folder = small(tmp_path)
    qrels_file = folder / "qrels" / "test.tsv"
    qrels_file.write_text(qrels_file.read_text() + "# q1\td2\t1\n")
    assert beir(folder).qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 0}}


@pytest.mark.parametrize("score", ["1_000", "inf", "-inf", "Infinity", "\uff11\uff12", "1e999", "nan"])
def test_scores_that_are_not_finite_decimals_are_refused(tmp_path, score):
    """Python's float() reads '1_000' as 1000 and fullwidth digits as 12; trec_eval's atof reads 1 and 0."""
    path = tmp_path / "run.trec"
    path.write_text(f"q1 Q0 d1 1 2.5 tag\nq1 Q0 d2 2 {score} tag\n", encoding="utf-8")
    with pytest.raises(HarnessError, match=rf"run.trec:2: score '{score}' of document 'd2' \(query 'q1'\) is not "
                                           r"a number that trec_eval and Python read alike.*such as 12, -1.5e3 or .5"):
        read_run(path)


def test_decimal_scores_in_every_strtod_form_are_read(tmp_path):
    scores = ["12", "-1.5e3", ".5", "5.", "+3", "1E-2", "-0", "007"]
    path = tmp_path / "run.trec"
    path.write_text("".join(f"q1 Q0 d{i} {i} {s} tag\n" for i, s in enumerate(scores)))
    assert read_run(path) == {"q1": {f"d{i}": float(s) for i, s in enumerate(scores)}}


@pytest.mark.parametrize("line, message", [
    ("q2 0 d2 1 extra", r"qrels.txt:2: expected 'qid 0 docid grade' \(four columns; trec_eval reports"),
    ("q2 0 d2 1_0", r"qrels.txt:2: expected 'qid 0 docid grade' with an integer grade, got '1_0'"),
    ("q2 0 d2 \uff11", r"qrels.txt:2: expected 'qid 0 docid grade' with an integer grade, got '\uff11'"),
])
def test_trec_qrels_lines_trec_eval_rejects_or_misreads(tmp_path, line, message):
    path = tmp_path / "qrels.txt"
    path.write_text(f"q1 0 d1 1\n{line}\n", encoding="utf-8")
    with pytest.raises(HarnessError, match=message):
        read_qrels(path)


@pytest.mark.parametrize("line, message", [
    ("q1\td2\t1\textra", r"test.tsv:5: expected 'query-id<TAB>corpus-id<TAB>score', got \['q1', 'd2', '1', 'extra'\]"),
    ("q1\td2\t 1", r"test.tsv:5: expected 'query-id<TAB>corpus-id<TAB>score' with an integer grade, got ' 1'"),
    ("q1\td2\t1_0", r"test.tsv:5: expected .* with an integer grade, got '1_0'"),
])
def test_beir_qrels_lines_with_other_columns_or_grades_are_refused(tmp_path, line, message):
    folder = small(tmp_path)
    qrels = folder / "qrels" / "test.tsv"
    qrels.write_text(qrels.read_text() + line + "\n")
    with pytest.raises(HarnessError, match=message):
        beir(folder)


@pytest.mark.parametrize("score", ['"15.7"', "true", "null", "NaN", "Infinity", "1e400", "[1]"])
def test_json_run_scores_must_be_finite_json_numbers(tmp_path, score):
    path = tmp_path / "run.json"
    path.write_text('{"q1": {"d1": 2.5, "d2": ' + score + '}}')
    with pytest.raises(HarnessError, match=r"run.json: expected JSON \{query id: \{document id: score\}\}: the "
                                           r"score of document 'd2' \(query 'q1'\) is .*, not a finite JSON number"):
        read_run(path)
    path.write_text('{"q1": {"d1": 2.5, "d2": -3, "d3": 1e-3}}')
    assert read_run(path) == {"q1": {"d1": 2.5, "d2": -3.0, "d3": 0.001}}


# ---------------------------------------------------------------- 13. corrupt gzip streams, fields that are not text

@pytest.mark.parametrize("damage", ["flip-start", "flip-middle", "truncate"])
def test_a_corrupt_gzip_stream_is_named_as_such(tmp_path, damage):
    data = copy_of(DATA / "scifact", tmp_path)
    path = data / "corpus.jsonl.gz"
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[:len(raw) - 1000]
    else:
        raw[1000 if damage == "flip-start" else len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    for cache in (None, tmp_path / "cache"):
        with pytest.raises(HarnessError) as err:
            beir(data, cache)
        message = str(err.value)
        assert message.startswith(f"{path}: the gzip stream is corrupt (") and "download the file again" in message
        assert "UTF-8" not in message
    assert not list((tmp_path / "cache" / "corpus-index").iterdir())  # no spill file or index left behind


def test_a_corrupt_gzipped_run_is_named_as_such(tmp_path):
    raw = bytearray(gzip.compress(BM25.read_bytes()))
    raw[len(raw) // 2] ^= 0xFF
    path = tmp_path / "run.trec.gz"
    path.write_bytes(bytes(raw))
    with pytest.raises(HarnessError, match=rf"{path}: the gzip stream is corrupt"):
        read_run(path)


@pytest.mark.parametrize("field, value", [("text", ["a", "b"]), ("text", {"en": "a"}), ("title", ["T"]),
                                          ("text", 42), ("title", True)])
def test_a_title_or_text_that_is_not_a_string_is_refused(tmp_path, field, value):
    folder = small(tmp_path)
    with open(folder / "corpus.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"_id": "d4", "title": "", "text": "x", field: value}) + "\n")
    with pytest.raises(HarnessError, match=rf"corpus.jsonl:4: each line must be a JSON object with '_id' and 'text' "
                                           rf"\(document\): '{field}' must be a string or null, got "):
        beir(folder)


def test_integer_ids_are_read_as_their_digits_other_kinds_are_refused(tmp_path):
    folder = small(tmp_path)
    with open(folder / "corpus.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"_id": 123, "text": "numbered", "title": None}) + "\n")
    ds = beir(folder)
    assert ds.doc_ids.tolist() == ["d3", "d2", "d1", "123"] and ds.doc_texts[-1] == "numbered"
    for bad in (True, None, 1.5, [1]):
        folder = small(tmp_path / str(bad))
        with open(folder / "corpus.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"_id": bad, "text": "x"}) + "\n")
        with pytest.raises(HarnessError, match=r"corpus.jsonl:4: .*'_id' must be a string or an integer, got "):
            beir(folder)
