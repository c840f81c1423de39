"""Metric names → trec_eval (via pytrec_eval) → per-query vectors and means.

Semantics (DESIGN.md, "Metric semantics (pinned)"):

* the mean is over **every query in the qrels** (trec_eval ``-c``): a judged query the
  run misses, or ranks nothing for, scores 0 and stays in ``per_query``;
* nDCG uses the graded qrels values as gains; binary measures count ``grade >=
  relevance_level`` as relevant;
* ties in score rank the larger document id first (trec_eval's order);
* MRR@k is ``recip_rank`` on the run truncated to the top k, because pytrec_eval
  accepts ``recip_rank.10`` but silently ignores the cutoff.
"""

from __future__ import annotations

import difflib
import heapq
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import pytrec_eval

from harness.errors import HarnessError

__all__ = ["Evaluation", "Measure", "evaluate", "parse_measure"]

Kind = Literal["MRR", "nDCG", "Recall", "MAP", "P"]

# Lower-cased family spelling → canonical kind (aliases included).
_FAMILIES: dict[str, Kind] = {
    "mrr": "MRR",
    "rr": "MRR",
    "ndcg": "nDCG",
    "recall": "Recall",
    "r": "Recall",
    "map": "MAP",
    "ap": "MAP",
    "p": "P",
}
# Kind → trec_eval measure family (MRR is always recip_rank; MAP with a cutoff is map_cut).
_TREC_FAMILY: dict[Kind, str] = {
    "nDCG": "ndcg_cut",
    "Recall": "recall",
    "MAP": "map",
    "P": "P",
}
_ALLOWED = "MRR@k, nDCG@k, Recall@k, MAP, MAP@k, P@k (aliases RR@k, R@k, AP)"
_NAME_RE = re.compile(r"(?P<family>[A-Za-z]+)(?:@(?P<cutoff>.*))?", re.ASCII | re.DOTALL)
_CUTOFF_RE = re.compile(r"[0-9]+", re.ASCII)


@dataclass(frozen=True)
class Measure:
    """One metric; ``name`` is its canonical spelling and its identity."""

    name: str
    kind: Kind
    cutoff: int | None

    @property
    def trec_name(self) -> str:
        """The measure as pytrec_eval spells it in a request (``ndcg_cut.10``)."""
        if self.kind == "MRR":
            return "recip_rank"  # the cutoff is applied by truncating the run
        family = "map_cut" if self.kind == "MAP" and self.cutoff is not None else _TREC_FAMILY[self.kind]
        return family if self.cutoff is None else f"{family}.{self.cutoff}"

    @property
    def result_key(self) -> str:
        """The key pytrec_eval uses for this measure in its per-query results (``ndcg_cut_10``)."""
        return self.trec_name.replace(".", "_")

    def definition(self, relevance_level: int) -> str:
        """The exact trec_eval definition, for records and reports."""
        if self.kind == "MRR":
            what = f"recip_rank on run truncated to top {self.cutoff}"
        else:
            what = self.result_key
        if self.kind == "nDCG":
            rel = "gain = graded qrels value (relevance_level not applied)"
        else:
            rel = f"relevant = grade >= {relevance_level}"
        return f"{what}, {rel}, ties by docid descending, mean over all judged queries (-c)"


def parse_measure(text: str) -> Measure:
    """Parse ``MRR@10``, ``ndcg@10``, ``R@100``, ``MAP``, ``MAP@100``, ``P@5`` ... into a Measure.

    Raises HarnessError naming the allowed forms (and a close match) for anything else.
    """
    stripped = text.strip()
    match = _NAME_RE.fullmatch(stripped)
    kind = _FAMILIES.get(match.group("family").lower()) if match else None
    if match is None or kind is None:
        close = _closest(stripped)
        hint = f"; did you mean {close!r}?" if close else "."
        raise HarnessError(f"unknown metric {text!r}{hint} Allowed: {_ALLOWED}")
    raw_cutoff = match.group("cutoff")
    if raw_cutoff is None:
        if kind != "MAP":
            raise HarnessError(f"metric {text!r} needs a cutoff, e.g. '{kind}@10'. Allowed: {_ALLOWED}")
        return Measure("MAP", "MAP", None)
    if not _CUTOFF_RE.fullmatch(raw_cutoff) or int(raw_cutoff) == 0:
        raise HarnessError(f"metric {text!r}: the cutoff must be a positive integer, got {raw_cutoff!r}")
    cutoff = int(raw_cutoff)
    return Measure(f"{kind}@{cutoff}", kind, cutoff)


def _closest(text: str) -> str | None:
    """The allowed spelling closest to ``text`` (keeping its cutoff), if any is close."""
    _, _, suffix = text.partition("@")
    k = suffix if _CUTOFF_RE.fullmatch(suffix) and int(suffix) > 0 else "10"
    candidates = [f"{kind}@{k}" for kind in ("MRR", "nDCG", "Recall", "MAP", "P", "RR", "R")]
    candidates += ["MAP", "AP"]
    by_lower = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(text.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


@dataclass(frozen=True)
class Evaluation:
    """Per-query values and means, both keyed by the metric name exactly as the caller wrote it.

    ``per_query[name]`` holds one value for every query of the qrels, in qrels order.
    """

    per_query: dict[str, dict[str, float]]
    aggregate: dict[str, float]


def evaluate(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str] | str,
    *,
    relevance_level: int = 1,
) -> Evaluation:
    """Score ``run`` against ``qrels`` with trec_eval semantics (see the module docstring).

    ``qrels``: qid → docid → grade; ``run``: qid → docid → score (Python or numpy numbers);
    ``metrics``: names such as ``["nDCG@10", "MRR@10"]`` (or one name). Neither mapping is
    modified. Run queries absent from the qrels are ignored.
    """
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise HarnessError(f"no metrics requested. Allowed: {_ALLOWED}")
    measures = {name: parse_measure(name) for name in names}
    qids = list(qrels)
    if not qids:
        raise HarnessError("qrels hold no queries: there is nothing to average over")
    # Copies with plain ints and floats: pytrec_eval rejects numpy numbers (e.g. from pandas or a model).
    int_qrels = {qid: {doc: int(grade) for doc, grade in docs.items()} for qid, docs in qrels.items()}
    run = {qid: {doc: float(score) for doc, score in docs.items()} for qid, docs in run.items()}

    # One pytrec_eval pass for every non-MRR measure, one per distinct MRR cutoff.
    results: dict[str, dict[str, float]] = {}  # result key → qid → value
    plain = {m.trec_name for m in measures.values() if m.kind != "MRR"}
    if plain:
        _collect(results, int_qrels, run, plain, relevance_level, suffix="")
    mrr_cutoffs = sorted({m.cutoff for m in measures.values() if m.kind == "MRR"})
    if mrr_cutoffs:
        ranked = {qid: _top(run.get(qid, {}), mrr_cutoffs[-1]) for qid in qids}
        for k in mrr_cutoffs:
            truncated = {qid: dict(docs[:k]) for qid, docs in ranked.items()}
            _collect(results, int_qrels, truncated, {"recip_rank"}, relevance_level, suffix=f"@{k}")

    per_query: dict[str, dict[str, float]] = {}
    aggregate: dict[str, float] = {}
    for name, measure in measures.items():
        key = measure.result_key + (f"@{measure.cutoff}" if measure.kind == "MRR" else "")
        by_qid = results.get(key, {})
        values = {qid: by_qid.get(qid, 0.0) for qid in qids}
        per_query[name] = values
        aggregate[name] = math.fsum(values.values()) / len(qids)
    return Evaluation(per_query=per_query, aggregate=aggregate)


def _collect(
    results: dict[str, dict[str, float]],
    qrels: dict[str, dict[str, int]],
    run: dict[str, dict[str, float]],
    trec_names: set[str],
    relevance_level: int,
    *,
    suffix: str,
) -> None:
    """Run pytrec_eval once and file its values under ``result key + suffix`` → qid."""
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, trec_names, relevance_level=relevance_level)
    # pytrec_eval omits queries missing from the run; evaluate() fills them with 0.
    for qid, values in evaluator.evaluate(run).items():
        for key, value in values.items():
            results.setdefault(key + suffix, {})[qid] = value


def _top(docs: Mapping[str, float], k: int) -> list[tuple[str, float]]:
    """The k best (docid, score) pairs: score descending, ties by docid descending (trec_eval)."""
    return heapq.nlargest(k, docs.items(), key=lambda item: (item[1], item[0]))
