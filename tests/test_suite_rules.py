"""Suite rules that keep bad input from a silent wrong number or a traceback (issue 22, items 1, 11, 13): names
with a visible character, strict numbers, bounded YAML and grids, short messages, paths that resolve, and a
max_seq_length the model can take."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.input.grid import expand_suite, parse_grid_args
from harness.input.suite import load_suite
from harness.vocabulary.errors import HarnessError
from tests.conftest import DATA, save_as_sentence_transformer, write_suite

GOOD = """
name: rules
datasets:
  - name: d
    path: data/x
encoders:
  - name: e
    model: bundled:all-MiniLM-L6-v2
metrics: [MRR@10]
top_k: 100
"""


def _load(tmp_path: Path, text: str):
    return load_suite(write_suite(tmp_path / "suite.yaml", text))


def _refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(HarnessError) as err:
        _load(tmp_path, text)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'suite.yaml'}: ")
    return message


# ---------------------------------------------------------------- item 1: names


@pytest.mark.parametrize("old, new, field", [
    ("  - name: e", '  - name: " "', "encoders.0.name"),
    ("  - name: d", '  - name: "\\t"', "datasets.0.name"),
    ("name: rules", 'name: "  "', "name"),
])
def test_a_blank_name_is_refused_naming_the_field(tmp_path, old, new, field):
    message = _refused(tmp_path, GOOD.replace(old, new))
    assert f"\n  {field}: name " in message and "is blank: give it a visible character" in message


def test_a_name_with_inner_spaces_is_display_text_and_stays(tmp_path):
    suite = _load(tmp_path, GOOD.replace("  - name: e", "  - name: my encoder"))
    assert suite.encoders[0].name == "my encoder"


def test_cli_refuses_a_blank_encoder_name_before_writing(tmp_path, tiny_model, capsys):
    text = GOOD.replace("data/x", str(DATA / "noveleval")).replace("  - name: e", '  - name: " "').replace(
        "bundled:all-MiniLM-L6-v2", f"{tiny_model}\n    device: cpu")
    out = tmp_path / "out"
    assert main(["run", str(write_suite(tmp_path / "suite.yaml", text)), "-o", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "suite.yaml: invalid suite" in err and "encoders.0.name" in err and "Traceback" not in err
    assert not out.exists()


# ---------------------------------------------------------------- item 13: strict numbers


@pytest.mark.parametrize("old, new, field, fix", [
    ("top_k: 100", "top_k: true", "top_k", "not True: write a whole number"),
    ("top_k: 100", "top_k: '10'", "top_k", "not '10': write a whole number"),
    ("    path: data/x", "    path: data/x\n    relevance_level: true", "datasets.0.relevance_level", "not True"),
    ("    path: data/x", "    path: data/x\n    drop_self_hits: 'yes'", "datasets.0.drop_self_hits",
     "not 'yes': write true or false"),
    ("    path: data/x", "    path: data/x\n    expected_counts: {documents: '8'}",
     "datasets.0.expected_counts.documents", "not '8'"),
    ("    model: bundled", "    batch_size: true\n    model: bundled", "encoders.0.batch_size", "not True"),
    ("    model: bundled", "    max_seq_length: '128'\n    model: bundled", "encoders.0.max_seq_length", "not '128'"),
    ("    model: bundled", "    expect: {d: {MRR@10: {value: '0.5'}}}\n    model: bundled",
     "encoders.0.expect.d.MRR@10.value", "not '0.5': write a number"),
    ("    model: bundled", "    expect: {d: {MRR@10: {value: .nan}}}\n    model: bundled",
     "encoders.0.expect.d.MRR@10.value", "write a finite number"),
    ("    model: bundled", "    expect: {d: {MRR@10: {value: 0.5, tolerance: true}}}\n    model: bundled",
     "encoders.0.expect.d.MRR@10.tolerance", "not True"),
    ("    model: bundled", "    baseline: {records: old, max_drop: true}\n    model: bundled",
     "encoders.0.baseline.max_drop", "not True"),
    ("    model: bundled", "    baseline: {records: old, alpha: '0.05'}\n    model: bundled",
     "encoders.0.baseline.alpha", "not '0.05'"),
    ("    model: bundled", "    baseline: {records: old, noninferior: {MRR@10: {margin: .inf}}}\n    model: bundled",
     "encoders.0.baseline.noninferior.MRR@10.margin", "write a finite number"),
    ("    model: bundled", "    baseline: {records: old, speed: {max_slowdown: '0.1'}}\n    model: bundled",
     "encoders.0.baseline.speed.max_slowdown", "not '0.1'"),
    ("    model: bundled", "    baseline: {records: old, speed: {alpha: true}}\n    model: bundled",
     "encoders.0.baseline.speed.alpha", "not True"),
    ("    model: bundled", "    document_model: {model: x, max_seq_length: true}\n    model: bundled",
     "encoders.0.document_model.max_seq_length", "not True"),
    ("    model: bundled", "    document_model: {model: x, batch_size: '8'}\n    model: bundled",
     "encoders.0.document_model.batch_size", "not '8'"),
])
def test_a_number_is_a_number_not_a_bool_or_a_string(tmp_path, old, new, field, fix):
    message = _refused(tmp_path, GOOD.replace(old, new))
    assert f"\n  {field}: " in message and fix in message


def test_whole_numbers_are_fine_where_a_number_is_asked(tmp_path):
    text = GOOD.replace("    model: bundled", "    expect: {d: {MRR@10: {value: 1, tolerance: 0}}}\n"
                                             "    baseline: {records: old, max_drop: 0}\n    model: bundled")
    suite = _load(tmp_path, text.replace("    path: data/x", "    path: data/x\n    drop_self_hits: true"))
    assert suite.encoders[0].expect["d"]["MRR@10"].value == 1.0 and suite.datasets[0].drop_self_hits is True


# ---------------------------------------------------------------- item 13: paths that do not resolve


@pytest.mark.parametrize("old, new, field, path", [
    ("    path: data/x", "    path: loop", "datasets.0.path", "loop"),
    ("    model: bundled", "    baseline: {records: loop/records}\n    model: bundled", "encoders.0.baseline.records",
     "loop/records"),
])
def test_a_symlink_loop_is_refused_naming_the_field_and_the_path(tmp_path, old, new, field, path):
    (tmp_path / "loop").symlink_to("loop")
    message = _refused(tmp_path, GOOD.replace(old, new))
    assert f": {field}: cannot follow {tmp_path / path} (" in message
    assert message.endswith("; point it at the file or folder itself")


def test_cli_exits_2_on_a_dataset_symlink_loop(tmp_path, capsys):
    (tmp_path / "loop").symlink_to("loop")
    out = tmp_path / "out"
    assert main(["run", str(write_suite(tmp_path / "suite.yaml", GOOD.replace("data/x", "loop"))),
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "datasets.0.path: cannot follow" in err and "Traceback" not in err and not out.exists()


# ---------------------------------------------------------------- item 11: bounded suites and messages


def _bomb(levels: int) -> str:
    """A "billion laughs" grid: 9 ** levels strings from `levels` lines of anchors."""
    lines = ["x0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 9)}]" for i in range(1, levels)]
    return GOOD + "\n".join(lines) + f"\ngrid:\n  engine: [*x{levels - 1}]\n"


# In a fresh process, so that its peak RSS is the load's own.
LOAD_AND_MEASURE = """
import json, resource, sys, time
from harness.vocabulary.errors import HarnessError
from harness.input.suite import load_suite
before, start, message = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter(), None
try:
    load_suite(sys.argv[1])
except HarnessError as exc:
    message = str(exc)
print(json.dumps({"seconds": time.perf_counter() - start, "message": message,
                  "grew_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}))
"""


def test_an_alias_bomb_in_the_grid_fails_fast_small_and_in_little_memory(tmp_path):
    path = write_suite(tmp_path / "suite.yaml", _bomb(8))  # 43 million strings: a 312 MB message before
    child = subprocess.run([sys.executable, "-c", LOAD_AND_MEASURE, str(path)], capture_output=True, text=True,
                           timeout=300, check=True)
    load = json.loads(child.stdout)
    assert load["seconds"] < 2 and load["grew_mb"] < 20
    assert len(load["message"]) < 1000
    assert "more than 100,000 YAML nodes once its aliases (*name) are expanded" in load["message"]


def test_cli_sweep_refuses_the_bomb_with_a_short_message(tmp_path, capsys):
    assert main(["sweep", str(write_suite(tmp_path / "suite.yaml", _bomb(8))), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err) < 1000 and "100,000 YAML nodes" in err and not (tmp_path / "out").exists()


def test_aliases_within_the_bound_still_work(tmp_path):
    text = GOOD.replace("  - name: e\n    model: bundled:all-MiniLM-L6-v2",
                        "  - &e {name: e, model: bundled:all-MiniLM-L6-v2, batch_size: 16}\n  - {<<: *e, name: f}")
    suite = _load(tmp_path, text)
    assert [(e.name, e.batch_size) for e in suite.encoders] == [("e", 16), ("f", 16)]


def test_yaml_nested_too_deeply_is_refused_not_a_recursion_traceback(tmp_path):
    message = _refused(tmp_path, GOOD + "description: " + "[" * 1000 + "]" * 1000 + "\n")
    assert "nested too deeply" in message


def test_a_grid_beyond_1000_points_is_refused_at_load(tmp_path):
    lengths = ", ".join(str(n) for n in range(1, 1002))
    message = _refused(tmp_path, GOOD + f"grid:\n  max_seq_length: [{lengths}]\n")
    assert "\n  grid: the grid has 1,001 points (1001 values); a sweep runs at most 1,000" in message
    with pytest.raises(HarnessError, match="--grid: the grid has 1,001 points"):
        parse_grid_args([f"max_seq_length={lengths.replace(' ', '')}"])


def test_a_sweep_beyond_1000_variants_is_refused(tmp_path):
    two = _load(tmp_path, GOOD.replace("metrics:", "  - name: f\n    model: bundled:all-MiniLM-L6-v2\nmetrics:"))
    with pytest.raises(HarnessError, match=r"the sweep would run 1,002 variants \(2 encoders x 501 grid points\)"):
        expand_suite(two, {"max_seq_length": list(range(1, 502))})
    swept, _ = expand_suite(two, {"max_seq_length": list(range(1, 501))})
    assert len(swept.encoders) == 1000


def test_messages_that_echo_input_are_clipped(tmp_path):
    message = _refused(tmp_path, GOOD + "? " + "x" * 100_000 + "\n: 1\n")
    assert len(message) < 1000 and "\n  xxx" in message
    assert "characters left out)...xxx" in message and "x' Allowed: name," in message
    message = _refused(tmp_path, GOOD.replace("name: rules", f"name: '{' ' * 100_000}'"))
    assert len(message) < 1000 and "\n  name: name '  " in message and "' is blank: give it a visible" in message
    message = _refused(tmp_path, GOOD.replace("metrics: [MRR@10]", f"metrics: [{', '.join(['1'] * 5000)}]"))
    assert len(message) < 3000 and message.count("\n  metrics.") == 20 and "\n  ... and 4980 more" in message


# ---------------------------------------------------------------- item 13: max_seq_length within the model's positions


def _write_roberta(folder: Path, *, positions: int) -> Path:
    """A real random-weight 1-layer RoBERTa: its positions count from padding_idx + 1 = 2, so `positions`
    position embeddings take `positions - 2` tokens. The bundled (BERT) tokenizer stands in for RoBERTa's."""
    import torch
    from transformers import RobertaConfig, RobertaModel

    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=16, max_position_embeddings=positions)
    return save_as_sentence_transformer(RobertaModel(config), folder, max_seq_length=32)


def _encoder(model, max_seq_length: int):
    from harness.encode.models import Encoder
    from harness.input.suite import EncoderSpec

    return Encoder(EncoderSpec(name="long", model=str(model), max_seq_length=max_seq_length, device="cpu"))


def test_max_seq_length_beyond_a_512_position_bert_is_refused_at_load(tiny_model):
    with pytest.raises(HarnessError) as err:
        _encoder(tiny_model, 100_000)
    assert str(err.value) == (f"encoder 'long': max_seq_length 100000 is more than model '{tiny_model}' can take: "
                              "it has positions for 512 tokens; set max_seq_length to 512 or less (or leave it out "
                              "for the model's own, 128)")
    assert _encoder(tiny_model, 512).encode_documents(["word " * 600]).embeddings.shape == (1, 32)


def test_roberta_positions_reserved_for_padding_do_not_count(tmp_path):
    model = _write_roberta(tmp_path / "roberta", positions=66)
    with pytest.raises(HarnessError, match="max_seq_length 65 is more than .* it has positions for 64 tokens"):
        _encoder(model, 65)
    assert _encoder(model, 64).encode_documents(["word " * 100]).embeddings.shape == (1, 16)


def test_cli_run_with_max_seq_length_beyond_the_model_writes_nothing(tmp_path, tiny_model, capsys):
    text = GOOD.replace("data/x", str(DATA / "noveleval")).replace(
        "bundled:all-MiniLM-L6-v2", f"{tiny_model}\n    device: cpu\n    max_seq_length: 100000")
    out = tmp_path / "out"
    code = main(["run", str(write_suite(tmp_path / "suite.yaml", text)), "-o", str(out), "--cache",
                 str(tmp_path / "cache"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "max_seq_length 100000 is more than model" in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())
