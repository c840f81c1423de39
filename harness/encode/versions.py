"""The code versions of the engines: the part of the embedding store key (`harness.encode.models.embedding_versions`)
that stands for the harness's own code, so that cached corpus embeddings are encoded again when the code that made
them could now make other vectors, and only then (an 8.8M-passage store takes more than an hour to rebuild).

Bump a version for any change that can change an embedding, even in its last bits: tokenisation, truncation,
prefixes, what the model sees of padding, pooling, normalisation, kernels, precision casts, a runtime's export or
session options. Do not bump it for comments, docstrings, names, logging, timing, error messages, or refactors
that give equal vectors.

Which one:
* `ENGINE_VERSIONS[engine]`: code that only that engine runs -- `FastEngine` and `kernels.py` (fast),
  `SentenceTransformersEngine` (sentence-transformers), `runtimes.py` (onnxruntime, openvino).
  The runtime engines subclass the fast engine and run its tokenisation (`tokenize.py`), batches and pooling tail,
  so their keys include the fast engine's version (`ENGINE_BASES`): a bump of "fast" re-keys them too.
* `SHARED_VERSION`: code that every engine's embeddings go through (`models.py`: loading, `max_seq_length`,
  query and document prefixes).

tests/test_embedding_versions.py encodes a fixed probe set through every engine (fp32) and fails, naming the version
to bump, when the vectors differ from tests/data/probe_embeddings.npz; after a bump, regenerate that file with
`.venv/bin/python -m tests.test_embedding_versions --write`. fp16, bf16 and int8 paths are not probed: for a
change there, bump from reading the diff.
"""

from __future__ import annotations

from harness.vocabulary.errors import HarnessError

SHARED_VERSION = 1
# "http": the request and response handling of `harness.encode.endpoint` (prefixes, batching, reading vectors)
ENGINE_VERSIONS: dict[str, int] = {"fast": 1, "sentence-transformers": 1, "onnxruntime": 1, "openvino": 1, "http": 1}
# Engines that run another engine's code (the runtime engines subclass FastEngine): that engine's version is in
# their key too.
ENGINE_BASES: dict[str, tuple[str, ...]] = {"onnxruntime": ("fast",), "openvino": ("fast",)}


def engine_code_version(engine: str) -> str:
    """The version of the code that makes `engine`'s embeddings, e.g. "shared-1 fast-1 onnxruntime-1"."""
    if engine not in ENGINE_VERSIONS:
        raise HarnessError(f"engine {engine!r} has no code version: add it to ENGINE_VERSIONS in "
                           "harness/encode/versions.py (known: " + ", ".join(ENGINE_VERSIONS) + ")")
    chain = (*ENGINE_BASES.get(engine, ()), engine)
    return " ".join([f"shared-{SHARED_VERSION}", *(f"{name}-{ENGINE_VERSIONS[name]}" for name in chain)])
