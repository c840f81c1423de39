"""A served encoder against the offline model it should serve (`endpoint.reference_model`).

A sample of the dataset's passages and queries is encoded both ways, through the server and in this process, and
each text's two vectors are compared: their cosine (pooling, prefixes, truncation or another model change it) and
their length ratio (a server that normalises where the model does not, or the reverse: for dot-product scoring
this changes every score). The verdict says which, in words; `harness served-check` adds the metric changes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from harness.encode.models import Encoder
from harness.input.corpus import as_strings
from harness.input.datasets import Dataset
from harness.input.suite import EncoderSpec, Suite
from harness.scoring.records import EndpointInfo, ServedEquality, VectorAgreement
from harness.vocabulary.errors import HarnessError

# The most |served| / |offline| may stray from 1 for dot-product scoring: float32 noise is about 1e-6.
NORM_TOLERANCE = 1e-3


def reference_spec(spec: EncoderSpec) -> EncoderSpec:
    """The offline twin of a served encoder: its reference model, in this process, with the same prefixes."""
    assert spec.endpoint is not None and spec.endpoint.reference_model is not None
    return EncoderSpec(name=f"{spec.name} (offline)", model=spec.endpoint.reference_model, similarity=spec.similarity,
                       batch_size=spec.batch_size, device=spec.device, query_prefix=spec.query_prefix,
                       document_prefix=spec.document_prefix, version=spec.version)


def with_offline_twins(suite: Suite) -> tuple[Suite, list[tuple[str, str]]]:
    """The suite's served encoders that name a reference model, each followed by its offline twin (the suite
    `harness served-check` runs), and the (offline, served) encoder names to pair."""
    served = [e for e in suite.encoders if e.endpoint is not None and e.endpoint.reference_model is not None]
    if not served:
        raise HarnessError(f"suite {suite.name!r} has no encoder with engine http and endpoint.reference_model: "
                           "served-check compares a served model with the offline model it should serve; name that "
                           "model in endpoint.reference_model")
    twins = [reference_spec(e) for e in served]
    taken = {e.name for e in suite.encoders}
    clash = [t.name for t in twins if t.name in taken]
    if clash:
        raise HarnessError(f"served-check names each offline twin '<encoder> (offline)', which the suite already "
                           f"uses: {', '.join(clash)}; rename that encoder")
    encoders = [e for pair in zip(served, twins) for e in pair]
    return suite.model_copy(update={"encoders": encoders}), [(t.name, e.name) for e, t in zip(served, twins)]


@lru_cache(maxsize=1)
def _reference(spec: EncoderSpec) -> Encoder:
    return Encoder(spec)


def sample_rows(n: int, size: int) -> np.ndarray:
    """`size` rows spread evenly over `n` (all of them when there are fewer)."""
    return np.unique(np.linspace(0, n - 1, min(n, size)).round().astype(np.int64))


def served_equality(encoder: Encoder, dataset: Dataset) -> ServedEquality:
    endpoint = encoder.spec.endpoint
    assert endpoint is not None and endpoint.reference_model is not None
    reference = _reference(reference_spec(encoder.spec))
    passages = sample_rows(len(dataset.corpus), endpoint.reference_sample)
    texts = [dataset.corpus.texts(int(r), int(r) + 1)[0] for r in passages]
    queries = sample_rows(len(dataset.query_ids), endpoint.reference_sample)
    query_texts = [dataset.query_texts[int(r)] for r in queries]
    agree_passages = agreement(encoder.encode_documents(texts).embeddings,
                               reference.encode_documents(texts).embeddings,
                               as_strings(dataset.corpus.ids[passages]), what="passages")
    agree_queries = agreement(encoder.encode_queries(query_texts).embeddings,
                              reference.encode_queries(query_texts).embeddings,
                              [dataset.query_ids[int(r)] for r in queries], what="queries")
    reasons = _reasons(agree_passages, agree_queries, min_cosine=endpoint.min_cosine,
                       lengths_matter=encoder.spec.similarity == "dot")
    return ServedEquality(reference_model=endpoint.reference_model, reference_fingerprint=reference.fingerprint,
                          min_cosine=endpoint.min_cosine, passages=agree_passages, queries=agree_queries,
                          verdict="differs" if reasons else "equal", reasons=reasons)


def agreement(served: np.ndarray, offline: np.ndarray, ids: list[str], *, what: str) -> VectorAgreement:
    if served.shape != offline.shape:
        raise HarnessError(f"the server's {what} vectors are {served.shape[1]}-dimensional and the reference model's "
                           f"{offline.shape[1]}-dimensional: it serves another model than reference_model")
    a, b = served.astype(np.float64), offline.astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    cosine = (a * b).sum(axis=1) / np.maximum(na * nb, 1e-30)
    ratio = na / np.maximum(nb, 1e-30)
    return VectorAgreement(texts=len(ids), cosine_min=float(cosine.min()), cosine_mean=float(cosine.mean()),
                           norm_ratio_min=float(ratio.min()), norm_ratio_max=float(ratio.max()),
                           worst=ids[int(np.argmin(cosine))])


def _reasons(passages: VectorAgreement, queries: VectorAgreement, *, min_cosine: float,
             lengths_matter: bool) -> list[str]:
    reasons = []
    for what, a in (("passage", passages), ("query", queries)):
        if a.cosine_min < min_cosine:
            reasons.append(f"{what} vectors point elsewhere: cosine down to {a.cosine_min:.4f} (mean "
                           f"{a.cosine_mean:.4f}, worst {what} {a.worst!r}) against the bound {min_cosine}: the "
                           "server pools, prefixes or truncates differently, or serves another model")
        if lengths_matter and max(abs(a.norm_ratio_min - 1), abs(a.norm_ratio_max - 1)) > NORM_TOLERANCE:
            reasons.append(f"{what} vectors have other lengths: |served| / |offline| from {a.norm_ratio_min:.4f} to "
                           f"{a.norm_ratio_max:.4f}; the server normalises where the model does not (or the "
                           "reverse), which changes every dot-product score (similarity: dot)")
    return reasons


def endpoint_info(encoder: Encoder, usage_before, equality: ServedEquality | None) -> EndpointInfo:
    engine = encoder.engine
    endpoint, spec = engine.endpoint, engine.endpoint.spec
    return EndpointInfo(server=engine.server, concurrency=spec.concurrency, timeout_s=spec.timeout_s,
                        retries_allowed=spec.retries, usage=endpoint.usage().since(usage_before),
                        tokens_counted_by_server=engine.tokens_counted, equality=equality)
