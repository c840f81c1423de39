"""The embedding store key changes when embeddings can change, and only then (harness/encode/versions.py).

A fixed probe set encoded through every engine (fp32, the bundled all-MiniLM-L6-v2) must give the committed
reference vectors, tests/data/probe_embeddings.npz, unless that engine's code version was bumped; comments and
docstrings under harness/encode/ leave the key alone; a version bump re-keys that engine (and the engines built on
it), no other.

After a bump, regenerate the reference (it refuses an engine whose vectors changed while its version did not):
    .venv/bin/python -m tests.test_embedding_versions --write [ENGINE ...]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.encode import versions
from harness.encode.models import Encoder, bundled_minilm_path, embedding_key_parts, embedding_versions
from harness.encode.store import store_key
from harness.input.suite import EncoderSpec
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.precision import ENGINES, LOCAL_ENGINES, RUNTIME_ENGINES

REPO = Path(__file__).resolve().parent.parent
PROBE_FILE = REPO / "tests" / "data" / "probe_embeddings.npz"
WRITE_COMMAND = ".venv/bin/python -m tests.test_embedding_versions --write"
MIN_COSINE, NORM_TOLERANCE = 0.99999, 1e-4  # fp32 on any x86 CPU (oneDNN/MKL/ORT/OpenVINO blockings differ)

MEDIUM = ("Photovoltaic cells convert sunlight directly into electricity; the panels on a typical house roof "
          "produce between three and ten kilowatts at noon, less in winter and under clouds.")  # > 32 tokens, < 256
LONG = " ".join(f"Section {i}: wind turbines, tidal barrages and solar farms feed the grid at different hours."
                for i in range(40))  # ≈ 640 tokens: truncated at 32 and at the model's own 256
DOCUMENTS = ["The quick brown fox jumps over the lazy dog.", "paris", MEDIUM, LONG,
             "Café au lait, naïve façade, Øresund, Straße: déjà vu.", "東京は日本の首都です。",
             "Привет, мир! Как дела?", "🙂 emoji 🚀 and symbols ∑ ∫ ≤ ≥", "?", "   "]
QUERY_PREFIX = "query: "
QUERIES = ["how do solar panels work", "ciudad más poblada de España"]
MAX_SEQ_LENGTHS = (32, None)  # None: the model's own (256)
RUNTIME_PACKAGES = {"onnxruntime": ("onnxruntime", "onnx", "onnxscript"),
                    "openvino": ("openvino", "onnx", "onnxscript")}


def probe_description() -> str:
    """The probe set itself: a reference made from another probe set is no reference."""
    return json.dumps({"documents": DOCUMENTS, "queries": QUERIES, "query_prefix": QUERY_PREFIX,
                       "max_seq_lengths": MAX_SEQ_LENGTHS}, ensure_ascii=False)


def missing_packages(engine: str) -> list[str]:
    return [name for name in RUNTIME_PACKAGES.get(engine, ()) if importlib.util.find_spec(name) is None]


@functools.cache
def encode_probe(engine: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """The probe vectors of `engine` (documents then prefixed queries, for each max_seq_length in turn) and the
    texts truncated at each max_seq_length."""
    vectors, truncated = [], []
    for max_seq_length in MAX_SEQ_LENGTHS:
        encoder = Encoder(EncoderSpec(name="probe", model=str(bundled_minilm_path()), engine=engine, precision="fp32",
                                      device="cpu", max_seq_length=max_seq_length, query_prefix=QUERY_PREFIX))
        documents = encoder.encode_documents(DOCUMENTS)
        vectors += [documents.embeddings, encoder.encode_queries(QUERIES).embeddings]
        truncated.append(documents.n_truncated)
    return np.concatenate(vectors), tuple(truncated)


def load_reference() -> dict[str, np.ndarray]:
    """The stored reference ({} when there is none or it was made from another probe set)."""
    if not PROBE_FILE.exists():
        return {}
    with np.load(PROBE_FILE, allow_pickle=False) as stored:
        reference = {name: stored[name] for name in stored.files}
    return reference if str(reference.get("probe")) == probe_description() else {}


def vector_difference(found: np.ndarray, expected: np.ndarray) -> str | None:
    """How `found` differs from `expected` beyond the cross-CPU fp32 tolerance (None: it does not)."""
    if found.shape != expected.shape:
        return f"shape {found.shape}, reference {expected.shape}"
    found_norms, expected_norms = np.linalg.norm(found, axis=1), np.linalg.norm(expected, axis=1)
    norm_gap = np.abs(found_norms - expected_norms)
    if norm_gap.max() > NORM_TOLERANCE:
        row = int(norm_gap.argmax())
        return f"norm of probe row {row} is {found_norms[row]:.6f}, reference {expected_norms[row]:.6f}"
    cosines = (found * expected).sum(axis=1) / np.maximum(found_norms * expected_norms, 1e-12)
    if cosines.min() < MIN_COSINE:
        row = int(cosines.argmin())
        return f"cosine of probe row {row} with its reference is {cosines[row]:.7f} (< {MIN_COSINE})"
    return None


def reference_problem(engine: str, reference: dict[str, np.ndarray], found: np.ndarray) -> str | None:
    """Why `found` does not match `engine`'s reference, and what to do (None: it matches)."""
    version = versions.engine_code_version(engine)
    if engine not in reference:
        return f"no reference for engine {engine!r} in {PROBE_FILE.name}: write it with `{WRITE_COMMAND} {engine}`"
    stored_version = str(reference[f"{engine}.version"])
    if stored_version != version:
        return (f"engine {engine!r}: the reference was made by code version {stored_version!r}, this is {version!r}: "
                f"regenerate tests/data/{PROBE_FILE.name} with `{WRITE_COMMAND} {engine}`")
    difference = vector_difference(found, reference[engine])
    if difference is None:
        return None
    return (f"engine {engine!r} now makes other probe embeddings ({difference}) under the same code version "
            f"{version!r}: bump ENGINE_VERSIONS[{engine!r}] in harness/encode/versions.py (SHARED_VERSION if the "
            f"change is in code every engine runs) and regenerate tests/data/{PROBE_FILE.name} with "
            f"`{WRITE_COMMAND} {engine}`")


# ---------------------------------------------------------------- the probe


@pytest.mark.parametrize("engine", LOCAL_ENGINES)  # a served model's vectors are its server's (served-check)
def test_probe_embeddings_match_the_reference_of_the_engine_version(engine):
    missing = missing_packages(engine)
    if missing:
        pytest.skip(f"engine {engine!r} needs {', '.join(missing)}")
    found, _ = encode_probe(engine)
    assert found.shape == (len(MAX_SEQ_LENGTHS) * (len(DOCUMENTS) + len(QUERIES)), 384)
    problem = reference_problem(engine, load_reference(), found)
    assert problem is None, problem


def test_the_probe_truncates_at_32_tokens_and_at_the_model_default():
    _, truncated = encode_probe("fast")
    assert truncated == (2, 1)  # MEDIUM and LONG at 32; LONG alone at 256


def test_the_probe_check_names_the_version_to_bump_on_a_changed_vector():
    reference = load_reference()
    changed = reference["fast"].copy()
    changed[3] = np.roll(changed[3], 1)  # one vector turned away, still unit length
    problem = reference_problem("fast", reference, changed)
    assert problem is not None and "bump ENGINE_VERSIONS['fast'] in harness/encode/versions.py" in problem
    assert "cosine of probe row 3" in problem and f"`{WRITE_COMMAND} fast`" in problem
    nudged = reference["fast"] + 1e-7  # below the cross-CPU tolerance
    assert reference_problem("fast", reference, nudged) is None


def test_a_bumped_version_asks_for_a_new_reference(monkeypatch):
    reference = load_reference()
    monkeypatch.setitem(versions.ENGINE_VERSIONS, "sentence-transformers", 2)
    problem = reference_problem("sentence-transformers", reference, reference["sentence-transformers"])
    assert problem is not None and "regenerate" in problem and "sentence-transformers-2" in problem


# ---------------------------------------------------------------- the versions


def test_every_engine_has_a_version():
    assert set(versions.ENGINE_VERSIONS) == set(ENGINES)
    assert set(RUNTIME_ENGINES) <= set(versions.ENGINE_VERSIONS)
    assert all(isinstance(v, int) and v >= 1 for v in versions.ENGINE_VERSIONS.values())
    assert all(set(bases) <= set(ENGINES) for bases in versions.ENGINE_BASES.values())
    with pytest.raises(HarnessError, match="add it to ENGINE_VERSIONS in harness/encode/versions.py"):
        versions.engine_code_version("tensorrt")


def test_a_direct_library_encode_is_keyed_by_the_libraries_only():
    assert "harness-encode" not in embedding_versions("SentenceTransformer.encode")
    assert embedding_versions("fast")["harness-encode"] == "shared-1 fast-1"
    # a served corpus: our code's version only; the server's own versions are in the endpoint's fingerprint
    assert embedding_versions("http") == {"harness-encode": "shared-1 http-1"}


def engine_keys() -> dict[str, str]:
    return {engine: store_key(embedding_key_parts(model="weights", dataset="data", settings={"engine": engine}))
            for engine in ENGINES}


RE_KEYED_BY = {"fast": {"fast", "onnxruntime", "openvino"}, "sentence-transformers": {"sentence-transformers"},
               "onnxruntime": {"onnxruntime"}, "openvino": {"openvino"}, "http": {"http"}}


@pytest.mark.parametrize("engine", ENGINES)
def test_a_version_bump_re_keys_that_engine_and_the_engines_built_on_it_only(engine, monkeypatch):
    before = engine_keys()
    monkeypatch.setitem(versions.ENGINE_VERSIONS, engine, versions.ENGINE_VERSIONS[engine] + 1)
    after = engine_keys()
    assert {name for name in ENGINES if after[name] != before[name]} == RE_KEYED_BY[engine]


def test_a_shared_version_bump_re_keys_every_engine(monkeypatch):
    before = engine_keys()
    monkeypatch.setattr(versions, "SHARED_VERSION", versions.SHARED_VERSION + 1)
    after = engine_keys()
    assert all(after[name] != before[name] for name in ENGINES)


KEYS_SCRIPT = """
import json, harness
from harness.encode.models import embedding_key_parts
from harness.encode.store import store_key
from harness.vocabulary.precision import ENGINES
keys = {e: store_key(embedding_key_parts(model="weights", dataset="data", settings={"engine": e})) for e in ENGINES}
print(json.dumps({"package": harness.__file__, "keys": keys}))
"""


def test_comment_and_docstring_edits_under_encode_leave_the_keys_unchanged(tmp_path):
    copy = tmp_path / "harness"
    shutil.copytree(REPO / "harness", copy, ignore=shutil.ignore_patterns("__pycache__"))
    for module in (copy / "encode").glob("*.py"):
        text = module.read_text()
        edited = text.replace('"""', '"""Edited docstring. ', 1)  # the module docstring
        module.write_text(edited + "\n# an added comment\n")
    assert (copy / "encode" / "engines.py").read_text() != (REPO / "harness" / "encode" / "engines.py").read_text()
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", KEYS_SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                          check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(result["package"]).is_relative_to(tmp_path)  # the edited copy ran, not the checkout
    assert result["keys"] == engine_keys()


# ---------------------------------------------------------------- regeneration


def write_reference(engines: list[str]) -> None:
    """Encode the probe through `engines` and store what changed with a new version; refuse a changed vector under
    an unchanged version (that needs a bump first)."""
    reference = load_reference() or {"probe": np.array(probe_description())}
    written = []
    for engine in engines:
        missing = missing_packages(engine)
        if missing:
            print(f"{engine}: skipped, needs {', '.join(missing)} (its reference is kept)")
            continue
        found, _ = encode_probe(engine)
        problem = reference_problem(engine, reference, found)
        if problem is None:
            print(f"{engine}: unchanged")
            continue
        if engine in reference and str(reference[f"{engine}.version"]) == versions.engine_code_version(engine):
            raise SystemExit(problem)
        reference[engine] = found.astype(np.float32)
        reference[f"{engine}.version"] = np.array(versions.engine_code_version(engine))
        written.append(engine)
    if written:  # an unchanged reference is not rewritten: the file's bytes (zip times) would change
        PROBE_FILE.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(PROBE_FILE, **reference)
        print("written:", ", ".join(f"{engine} ({versions.engine_code_version(engine)})" for engine in written))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.test_embedding_versions", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", nargs="*", metavar="ENGINE", choices=LOCAL_ENGINES, required=True,
                        help="engines whose reference to regenerate (none named: every engine)")
    args = parser.parse_args(argv)
    write_reference(args.write or list(LOCAL_ENGINES))


if __name__ == "__main__":
    main()
