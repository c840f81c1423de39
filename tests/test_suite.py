from pathlib import Path

import pytest

from harness.input.suite import load_suite
from harness.vocabulary.errors import HarnessError

REPO = Path(__file__).resolve().parent.parent

GOOD = """
name: t
datasets:
  - name: d
    path: data/x
    relevance_level: 2
encoders:
  - name: e
    model: bundled:all-MiniLM-L6-v2
metrics: [MRR@10, nDCG@10]
top_k: 100
"""


def _suite(tmp_path, text):
    path = tmp_path / "suite.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_paths_resolve_relative_to_the_suite_file(tmp_path):
    suite = load_suite(_suite(tmp_path, GOOD))
    assert suite.datasets[0].path == (tmp_path / "data" / "x").resolve()
    assert suite.datasets[0].relevance_level == 2
    assert suite.encoders[0].similarity == "dot" and suite.encoders[0].engine == "fast"
    assert suite.metrics == ["MRR@10", "nDCG@10"] and suite.top_k == 100


@pytest.mark.parametrize("path", sorted((REPO / "suites").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_suite_validates(path):
    suite = load_suite(path)
    assert suite.datasets and suite.encoders


def test_malformed_yaml_names_the_file(tmp_path):
    path = _suite(tmp_path, "name: [unclosed\ndatasets: {")
    with pytest.raises(HarnessError, match=r"suite\.yaml: malformed YAML"):
        load_suite(path)


def test_not_a_mapping(tmp_path):
    with pytest.raises(HarnessError, match="must be a YAML mapping"):
        load_suite(_suite(tmp_path, "- a\n- b\n"))


@pytest.mark.parametrize("typo, fix, where", [
    ("top_kk: 10", "top_k", "top_kk"),
    ("metircs: [MAP]", "metrics", "metircs"),
])
def test_misspelled_top_level_key_suggests_the_close_match(tmp_path, typo, fix, where):
    with pytest.raises(HarnessError) as err:
        load_suite(_suite(tmp_path, GOOD + typo + "\n"))
    assert f"unknown key '{where}'; did you mean '{fix}'?" in str(err.value)
    assert "suite.yaml" in str(err.value)


def test_misspelled_encoder_key_lists_encoder_fields(tmp_path):
    text = GOOD.replace("    model: bundled", "    similarty: dot\n    model: bundled")
    with pytest.raises(HarnessError) as err:
        load_suite(_suite(tmp_path, text))
    message = str(err.value)
    assert "encoders.0.similarty" in message and "did you mean 'similarity'?" in message
    assert "max_seq_length" in message  # lists what is allowed


def test_unknown_metric_is_rejected_with_suggestion(tmp_path):
    with pytest.raises(HarnessError, match=r"metrics.*nDGC@10.*did you mean 'nDCG@10'"):
        load_suite(_suite(tmp_path, GOOD.replace("nDCG@10", "nDGC@10")))


@pytest.mark.parametrize("value", ["0", "-5"])
def test_top_k_must_be_positive(tmp_path, value):
    with pytest.raises(HarnessError, match=r"top_k: Input should be greater than 0"):
        load_suite(_suite(tmp_path, GOOD.replace("top_k: 100", f"top_k: {value}")))


def test_a_cutoff_above_top_k_is_rejected_naming_the_metric_and_the_fix(tmp_path):
    """With top_k 100, Recall@1000 would silently equal Recall@100."""
    text = GOOD.replace("metrics: [MRR@10, nDCG@10]", "metrics: [MRR@10, nDCG@10, Recall@100, Recall@1000]")
    with pytest.raises(HarnessError) as err:
        load_suite(_suite(tmp_path, text))
    message = str(err.value)
    assert "suite.yaml: invalid suite" in message
    assert "metric Recall@1000 cuts above top_k 100" in message and "raise top_k to 1000" in message
    assert "Recall@100," not in message  # a cutoff equal to top_k is fine
    load_suite(_suite(tmp_path, text.replace("top_k: 100", "top_k: 1000")))


def test_cli_exits_2_on_a_cutoff_above_top_k(tmp_path, capsys):
    from harness.cli import main

    text = GOOD.replace("metrics: [MRR@10, nDCG@10]", "metrics: [nDCG@10, R@500, P@200]")
    assert main(["run", str(_suite(tmp_path, text)), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "metrics R@500, P@200 cut above top_k 100" in err and "raise top_k to 500" in err
    assert not (tmp_path / "out").exists()


def test_bad_enum_value_says_what_is_allowed(tmp_path):
    with pytest.raises(HarnessError, match=r"encoders\.0\.similarity: Input should be 'dot' or 'cosine'"):
        load_suite(_suite(tmp_path, GOOD.replace("    model: bundled", "    similarity: l2\n    model: bundled")))


def test_dataset_needs_exactly_one_source(tmp_path):
    text = GOOD.replace("    path: data/x", "    path: data/x\n    ir_datasets: msmarco-passage/dev/small")
    with pytest.raises(HarnessError, match="exactly one source"):
        load_suite(_suite(tmp_path, text))


def test_missing_required_field(tmp_path):
    with pytest.raises(HarnessError, match=r"encoders: Field required"):
        load_suite(_suite(tmp_path, "name: t\ndatasets: [{name: d, path: x}]\n"))


def test_duplicate_names(tmp_path):
    text = GOOD.replace("encoders:", "  - name: d\n    path: y\nencoders:")
    with pytest.raises(HarnessError, match="datasets names must be unique; repeated: d"):
        load_suite(_suite(tmp_path, text))


def test_non_utf8_suite(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(HarnessError, match="not UTF-8"):
        load_suite(path)


def test_missing_suite_file(tmp_path):
    with pytest.raises(HarnessError, match="suite file not found"):
        load_suite(tmp_path / "nope.yaml")
