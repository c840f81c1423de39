import gzip
import json
import logging
import shutil
from pathlib import Path

import pytest

from harness.input.datasets import IR_DATASETS_FILES, load_dataset, read_run
from harness.input.suite import DatasetSpec
from harness.vocabulary.errors import HarnessError
from tests.conftest import DATA, write_beir

DOCS = [("d1", "alpha"), ("d2", "beta"), ("d3", "gamma")]
QUERIES = [("q1", "a?"), ("q2", "b?"), ("q9", "unjudged")]
QRELS = [("q1", "d1", 1), ("q2", "d2", 2), ("q2", "d3", 0)]


def beir(folder, **kw):
    return load_dataset(DatasetSpec(name="t", path=folder, **kw))


def test_beir_small_set_is_canonical(tmp_path):
    ds = beir(write_beir(tmp_path / "s", docs=DOCS, queries=QUERIES, qrels=QRELS))
    assert ds.doc_ids.tolist() == ["d3", "d2", "d1"]  # id descending: trec_eval's tie order
    assert ds.doc_texts == ["gamma", "beta", "alpha"]
    assert ds.query_ids == ["q1", "q2"]  # only judged queries of the split
    assert ds.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 0}}
    assert ds.counts == {"documents": 3, "queries": 2, "qrels": 3, "qrels_unknown_documents": 0}


def test_fingerprint_ignores_file_order_but_not_content(tmp_path):
    a = beir(write_beir(tmp_path / "a", docs=DOCS, queries=QUERIES, qrels=QRELS))
    b = beir(write_beir(tmp_path / "b", docs=DOCS[::-1], queries=QUERIES[::-1], qrels=QRELS[::-1]))
    c = beir(write_beir(tmp_path / "c", docs=[("d1", "alpha!"), *DOCS[1:]], queries=QUERIES, qrels=QRELS))
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_title_and_text_are_joined(tmp_path):
    folder = write_beir(tmp_path / "s", docs=DOCS, queries=QUERIES, qrels=QRELS)
    (folder / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "title": "T", "text": "body "}) + "\n")
    assert beir(folder).doc_texts == ["T body"]


@pytest.mark.parametrize("name, docs, queries, qrels", [
    ("dl19", 14581, 43, 4337), ("scifact", 5183, 300, 339), ("noveleval", 420, 21, 420),
])
def test_shipped_sets_load_with_known_counts(name, docs, queries, qrels):
    folder = {"dl19": DATA / "msmarco-trecdl2019-pool", "scifact": DATA / "scifact",
              "noveleval": DATA / "noveleval"}[name]
    ds = beir(folder)
    assert (ds.counts["documents"], ds.counts["queries"], ds.counts["qrels"]) == (docs, queries, qrels)


def test_scifact_spot_items():
    ds = beir(DATA / "scifact")
    assert ds.qrels["1"] == {"31715818": 1}
    assert ds.query_texts[ds.query_ids.index("1")].startswith("0-dimensional biomaterials")


def test_missing_folder(tmp_path):
    with pytest.raises(HarnessError, match=r"folder .*nope not found; a BEIR folder holds corpus.jsonl"):
        beir(tmp_path / "nope")


def test_missing_corpus_file(tmp_path):
    folder = write_beir(tmp_path / "s", docs=DOCS, queries=QUERIES, qrels=QRELS)
    (folder / "corpus.jsonl").unlink()
    with pytest.raises(HarnessError, match=r"corpus.jsonl: not found \(nor corpus.jsonl.gz\)"):
        beir(folder)


def test_missing_split_lists_available(tmp_path):
    folder = write_beir(tmp_path / "s", docs=DOCS, queries=QUERIES, qrels=QRELS)
    with pytest.raises(HarnessError, match=r"split 'dev' has no qrels file \(available splits: test\)"):
        beir(folder, split="dev")


def test_gzipped_corpus(tmp_path):
    folder = write_beir(tmp_path / "s", docs=DOCS, queries=QUERIES, qrels=QRELS)
    raw = (folder / "corpus.jsonl").read_bytes()
    (folder / "corpus.jsonl").unlink()
    (folder / "corpus.jsonl.gz").write_bytes(gzip.compress(raw))
    assert beir(folder).counts["documents"] == 3


def test_duplicate_document_id(tmp_path):
    folder = write_beir(tmp_path / "s", docs=[*DOCS, ("d2", "again")], queries=QUERIES, qrels=QRELS)
    with pytest.raises(HarnessError, match=r"duplicate document id 'd2'"):
        beir(folder)


def test_duplicate_query_id(tmp_path):
    folder = write_beir(tmp_path / "s", docs=DOCS, queries=[*QUERIES, ("q1", "x")], qrels=QRELS)
    with pytest.raises(HarnessError, match=r"duplicate query id 'q1'"):
        beir(folder)


def test_qrels_split_without_queries(tmp_path):
    folder = write_beir(tmp_path / "s", docs=DOCS, queries=QUERIES, qrels=[])
    with pytest.raises(HarnessError, match="the qrels split has no queries"):
        beir(folder)


def test_empty_corpus(tmp_path):
    folder = write_beir(tmp_path / "s", docs=[], queries=QUERIES, qrels=QRELS)
    with pytest.raises(HarnessError, match="the corpus is empty"):
        beir(folder)


def test_non_utf8_corpus_names_file_and_line(tmp_path):
    folder = write_beir(tmp_path / "s", docs=DOCS, queries=QUERIES, qrels=QRELS)
    with open(folder / "corpus.jsonl", "ab") as f:
        f.write(b'{"_id": "d4", "text": "caf\xe9"}\n')
    with pytest.raises(HarnessError, match=r"corpus.jsonl:4: not valid UTF-8 at byte 26"):
        beir(folder)


def test_malformed_json_line(tmp_path):
    folder = write_beir(tmp_path / "s", docs=DOCS, queries=QUERIES, qrels=QRELS)
    with open(folder / "queries.jsonl", "a") as f:
        f.write('{"text": "no id"}\n')
    with pytest.raises(HarnessError, match=r"queries.jsonl:4: each line must be a JSON object with '_id'"):
        beir(folder)


def test_judged_query_without_text(tmp_path):
    folder = write_beir(tmp_path / "s", docs=DOCS, queries=QUERIES[:1], qrels=QRELS)
    with pytest.raises(HarnessError, match=r"1 judged queries have no text.*\['q2'\]"):
        beir(folder)


def test_qrels_with_unknown_documents_are_counted_and_kept(tmp_path, caplog):
    folder = write_beir(tmp_path / "s", docs=DOCS, queries=QUERIES, qrels=[*QRELS, ("q1", "gone", 1)])
    with caplog.at_level(logging.WARNING):
        ds = beir(folder)
    assert ds.unknown_qrels_docs == 1 and ds.qrels["q1"] == {"d1": 1, "gone": 1}
    assert "1 qrels lines name documents absent from the corpus" in caplog.text


def test_bad_qrels_line(tmp_path):
    folder = write_beir(tmp_path / "s", docs=DOCS, queries=QUERIES, qrels=QRELS)
    with open(folder / "qrels" / "test.tsv", "a") as f:
        f.write("q1\td2\n")
    with pytest.raises(HarnessError, match=r"test.tsv:5: expected 'query-id<TAB>corpus-id<TAB>score'"):
        beir(folder)


def test_expected_counts_mismatch(tmp_path):
    folder = write_beir(tmp_path / "s", docs=DOCS, queries=QUERIES, qrels=QRELS)
    with pytest.raises(HarnessError, match=r"expected 8,841,823 documents but loaded 3"):
        load_dataset(DatasetSpec(name="t", path=folder, expected_counts={"documents": 8841823}))


# ---------------------------------------------------------------- MS MARCO TSV and ir_datasets

def _dl19_tsv(folder: Path) -> dict[str, Path]:
    """Real DL19 files in MS MARCO TSV layout: pool passages, the 43 judged queries, official qrels."""
    folder.mkdir(parents=True, exist_ok=True)
    pool = DATA / "msmarco-trecdl2019-pool"
    with gzip.open(pool / "corpus.jsonl.gz", "rt", encoding="utf-8") as src, \
            open(folder / "collection.tsv", "w", encoding="utf-8") as dst:
        for line in src:
            row = json.loads(line)
            dst.write(f"{row['_id']}\t{row['text']}\n")
    with open(pool / "queries.jsonl", encoding="utf-8") as src, \
            open(folder / "queries.tsv", "w", encoding="utf-8") as dst:
        for line in src:
            row = json.loads(line)
            dst.write(f"{row['_id']}\t{row['text']}\n")
    shutil.copy(pool / "orig" / "qrels.dl19-passage.txt", folder / "qrels")
    return {"collection": folder / "collection.tsv", "queries": folder / "queries.tsv", "qrels": folder / "qrels"}


def test_msmarco_tsv_files(tmp_path):
    files = _dl19_tsv(tmp_path / "tsv")
    ds = load_dataset(DatasetSpec(name="dl19", relevance_level=2, **files))
    assert ds.counts["documents"] == 14581 and ds.counts["queries"] == 43
    assert ds.counts["qrels"] == 9260  # the official qrels; 9260 - 4337 name passages outside the pool
    assert ds.unknown_qrels_docs == 9260 - 4337


def test_ir_datasets_offline_layout(tmp_path, monkeypatch):
    """ir_datasets reads real files laid out under IR_DATASETS_HOME exactly as after a download."""
    home = tmp_path / "irds"
    base = home / "msmarco-passage"
    files = _dl19_tsv(base / "trec-dl-2019")
    files["collection"].rename(base / "collection.tsv")
    files["qrels"].rename(base / "trec-dl-2019" / "qrels")
    (base / "irds_version.txt").write_text("v2")
    monkeypatch.setenv("IR_DATASETS_HOME", str(home))
    ds = load_dataset(DatasetSpec(name="dl19", ir_datasets="msmarco-passage/trec-dl-2019/judged", relevance_level=2))
    beir_ds = beir(DATA / "msmarco-trecdl2019-pool", relevance_level=2)
    assert ds.source == {"kind": "ir_datasets", "id": "msmarco-passage/trec-dl-2019/judged"}
    assert ds.query_ids == beir_ds.query_ids and ds.query_texts == beir_ds.query_texts
    assert ds.doc_ids.tolist() == beir_ds.doc_ids.tolist()
    assert ds.counts["qrels"] == 9260
    assert (base / "collection.tsv").exists()  # no "migration" deleted it


@pytest.mark.parametrize("dataset_id", sorted(IR_DATASETS_FILES))
def test_ir_datasets_offline_names_the_files_needed(tmp_path, monkeypatch, dataset_id):
    monkeypatch.setenv("IR_DATASETS_HOME", str(tmp_path))
    monkeypatch.setenv("HARNESS_OFFLINE", "1")
    with pytest.raises(HarnessError) as err:
        load_dataset(DatasetSpec(name="x", ir_datasets=dataset_id))
    message = str(err.value)
    assert "not available offline" in message and f"IR_DATASETS_HOME={tmp_path}" in message
    for needed in IR_DATASETS_FILES[dataset_id]:
        assert needed in message


def test_unknown_ir_datasets_id():
    with pytest.raises(HarnessError, match="unknown ir_datasets id 'no-such/set'"):
        load_dataset(DatasetSpec(name="x", ir_datasets="no-such/set"))


# ---------------------------------------------------------------- run files (read_run), as trec_eval reads them

def _run_file(tmp_path, text: str) -> Path:
    path = tmp_path / "run.trec"
    path.write_text(text, encoding="utf-8")
    return path


def test_run_lines_trec_eval_accepts_are_read(tmp_path):
    """trec_eval (get_trec_results.c) ignores text after the tag, blank lines and '#' comment lines, and
    takes the order from the scores, not the rank column."""
    path = _run_file(tmp_path, "# produced by bm25, k1=0.9\n"
                               "q1 Q0 d1 1 2.5 tag trailing words\n"
                               "\n"
                               "  q1\tQ0\td2  7  -1e-3   tag\n"
                               "   # an indented comment\n"
                               "q2 0 d1 1 7 other-tag\n")
    assert read_run(path) == {"q1": {"d1": 2.5, "d2": -0.001}, "q2": {"d1": 7.0}}


@pytest.mark.parametrize("line, message", [
    ("q1 Q0 d2 2 high tag", r"run\.trec:2: score 'high' of document 'd2' \(query 'q1'\) is not a number"),
    ("q1 Q0 d2 2 nan tag", r"run\.trec:2: score 'nan' of document 'd2'"),
    ("q1 Q0 d2 2 0.5", r"run\.trec:2: expected 'qid Q0 docid rank score tag'"),
    ("q1 Q0 d1 2 0.5 tag", r"run\.trec:2: document 'd1' is ranked twice for query 'q1'; trec_eval refuses"),
])
def test_run_lines_trec_eval_refuses_or_misreads_are_errors_at_file_and_line(tmp_path, line, message):
    path = _run_file(tmp_path, f"q1 Q0 d1 1 0.9 tag\n{line}\n")
    with pytest.raises(HarnessError, match=message):
        read_run(path)


def test_the_same_document_under_two_queries_is_not_a_duplicate(tmp_path):
    path = _run_file(tmp_path, "q1 Q0 d1 1 0.9 tag\nq2 Q0 d1 1 0.8 tag\n")
    assert read_run(path) == {"q1": {"d1": 0.9}, "q2": {"d1": 0.8}}
