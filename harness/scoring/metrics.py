"""Metric names → trec_eval (via pytrec_eval) → per-query vectors and means.

Semantics (DESIGN.md, "Metric semantics (pinned)"):

* the mean is over **every query in the qrels** (trec_eval ``-c``): a judged query the
  run misses, or ranks nothing for, scores 0 and stays in ``per_query``;
* nDCG uses the graded qrels values as gains; binary measures count ``grade >=
  relevance_level`` as relevant;
* ties in score rank the larger document id first (trec_eval's order);
* MRR@k is ``recip_rank`` on the run truncated to the top k, because pytrec_eval
  accepts ``recip_rank.10`` but silently ignores the cutoff.

Measures for pooled judgments (names as ir_measures spells them): ``Rprec`` (alias
``R-prec``), ``Bpref``, ``infAP``, ``nDCG`` without a cutoff and ``Success@k`` are
trec_eval's ``Rprec``, ``bpref``, ``infAP``, ``ndcg`` and ``success.k``; ``Judged@k``,
which trec_eval lacks, is computed here: the documents of the top k (in the tie order
above) that have any qrels entry for the query, whatever their grade, divided by the
number of documents in that top k, i.e. by min(k, documents ranked), as ir_measures
does. A query the run misses or ranks nothing for scores 0 (the ``-c`` rule).
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

from harness.vocabulary.errors import HarnessError

__all__ = ["Evaluation", "Holes", "Measure", "evaluate", "holes", "judged_fraction", "parse_measure"]

Kind = Literal["MRR", "nDCG", "Recall", "MAP", "P", "Rprec", "Bpref", "infAP", "Success", "Judged"]

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
    "rprec": "Rprec",
    "r-prec": "Rprec",
    "bpref": "Bpref",
    "infap": "infAP",
    "success": "Success",
    "judged": "Judged",
}
# Kind → trec_eval measure family (MRR is always recip_rank; MAP with a cutoff is map_cut).
_TREC_FAMILY: dict[Kind, str] = {
    "nDCG": "ndcg_cut",
    "Recall": "recall",
    "MAP": "map",
    "P": "P",
    "Rprec": "Rprec",
    "Bpref": "bpref",
    "infAP": "infAP",
    "Success": "success",
}
# Which kinds take a cutoff: always, optionally (MAP / map_cut, nDCG / ndcg_cut) or never (trec_eval
# would silently ignore one, as it does for Rprec.5).
_CUTOFF_OPTIONAL: frozenset[Kind] = frozenset({"MAP", "nDCG"})
_NO_CUTOFF: frozenset[Kind] = frozenset({"Rprec", "Bpref", "infAP"})
_ALLOWED = ("MRR@k, nDCG@k, nDCG, Recall@k, MAP, MAP@k, P@k, Success@k, Judged@k, Rprec, Bpref, infAP "
            "(aliases RR@k, R@k, AP, R-prec)")
_NAME_RE = re.compile(r"(?P<family>[A-Za-z][A-Za-z-]*)(?:@(?P<cutoff>.*))?", re.ASCII | re.DOTALL)
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
        if self.kind == "Judged":
            return "judged"  # not a trec_eval measure: computed by judged_fraction
        if self.kind == "nDCG" and self.cutoff is None:
            return "ndcg"
        family = "map_cut" if self.kind == "MAP" and self.cutoff is not None else _TREC_FAMILY[self.kind]
        return family if self.cutoff is None else f"{family}.{self.cutoff}"

    @property
    def result_key(self) -> str:
        """The key pytrec_eval uses for this measure in its per-query results (``ndcg_cut_10``)."""
        return self.trec_name.replace(".", "_")

    def definition(self, relevance_level: int) -> str:
        """The exact trec_eval definition, for records and reports."""
        if self.kind == "Judged":
            return (f"documents of the top {self.cutoff} with any qrels entry (any grade) / min({self.cutoff}, "
                    "documents ranked), 0 for a query ranked nothing, computed by the harness (not trec_eval), "
                    "ties by docid descending, mean over all judged queries (-c)")
        if self.kind == "MRR":
            what = f"recip_rank on run truncated to top {self.cutoff}"
        elif self.kind == "nDCG" and self.cutoff is None:
            what = "ndcg (whole ranking, no cutoff)"
        elif self.kind == "Bpref":
            what = "bpref (unjudged documents ignored, non-relevant = judged grade < relevance_level)"
        elif self.kind == "infAP":
            what = "infAP (qrels grade -1 = pooled but unjudged; documents without a qrels entry = non-relevant)"
        elif self.kind == "Rprec":
            what = "Rprec (precision at rank R, R = number of relevant documents)"
        else:
            what = self.result_key
        if self.kind == "nDCG":
            rel = "gain = graded qrels value (relevance_level not applied)"
        else:
            rel = f"relevant = grade >= {relevance_level}"
        return f"{what}, {rel}, ties by docid descending, mean over all judged queries (-c)"


def parse_measure(text: str) -> Measure:
    """Parse ``MRR@10``, ``ndcg@10``, ``nDCG``, ``R@100``, ``MAP``, ``MAP@100``, ``P@5``, ``Success@10``,
    ``Judged@10``, ``Rprec`` (``R-prec``), ``Bpref``, ``infAP`` ... into a Measure.

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
    if kind in _NO_CUTOFF:
        if raw_cutoff is not None:
            raise HarnessError(f"metric {text!r}: {kind} takes no cutoff (trec_eval would ignore it); write {kind!r}")
        return Measure(kind, kind, None)
    if raw_cutoff is None:
        if kind not in _CUTOFF_OPTIONAL:
            raise HarnessError(f"metric {text!r} needs a cutoff, e.g. '{kind}@10'. Allowed: {_ALLOWED}")
        return Measure(kind, kind, None)
    if not _CUTOFF_RE.fullmatch(raw_cutoff) or int(raw_cutoff) == 0:
        raise HarnessError(f"metric {text!r}: the cutoff must be a positive integer, got {raw_cutoff!r}")
    cutoff = int(raw_cutoff)
    return Measure(f"{kind}@{cutoff}", kind, cutoff)


def _closest(text: str) -> str | None:
    """The allowed spelling closest to ``text`` (keeping its cutoff), if any is close."""
    _, _, suffix = text.partition("@")
    k = suffix if _CUTOFF_RE.fullmatch(suffix) and int(suffix) > 0 else "10"
    candidates = [f"{kind}@{k}" for kind in ("MRR", "nDCG", "Recall", "MAP", "P", "RR", "R", "Success", "Judged")]
    candidates += ["MAP", "AP", "nDCG", "Rprec", "R-prec", "Bpref", "infAP"]
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
    plain = {m.trec_name for m in measures.values() if m.kind not in ("MRR", "Judged")}
    if plain:
        _collect(results, int_qrels, run, plain, relevance_level, suffix="")
    mrr_cutoffs = sorted({m.cutoff for m in measures.values() if m.kind == "MRR"})
    if mrr_cutoffs:
        ranked = {qid: _top(run.get(qid, {}), mrr_cutoffs[-1]) for qid in qids}
        for k in mrr_cutoffs:
            truncated = {qid: dict(docs[:k]) for qid, docs in ranked.items()}
            _collect(results, int_qrels, truncated, {"recip_rank"}, relevance_level, suffix=f"@{k}")
    for k in sorted({m.cutoff for m in measures.values() if m.kind == "Judged"}):
        results[f"judged@{k}"] = {qid: judged_fraction(int_qrels[qid], run.get(qid, {}), k) for qid in qids}

    per_query: dict[str, dict[str, float]] = {}
    aggregate: dict[str, float] = {}
    for name, measure in measures.items():
        key = measure.result_key + (f"@{measure.cutoff}" if measure.kind in ("MRR", "Judged") else "")
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


def judged_fraction(judged: Mapping[str, int], docs: Mapping[str, float], k: int) -> float:
    """Judged@k of one query: the share of its top k (trec_eval order) with a qrels entry; 0 if it ranks nothing."""
    top = _top(docs, k)
    return sum(doc in judged for doc, _ in top) / len(top) if top else 0.0


@dataclass(frozen=True)
class Holes:
    """How much of each query's top ``depth`` the qrels judge, and nDCG@depth with the unjudged documents there
    counted both ways. Each value is a mean over every query of the qrels (trec_eval ``-c``).

    ``judged``: Judged@depth. ``unjudged``: documents of the top depth without a qrels entry / min(depth,
    documents ranked); a query ranked nothing has no unjudged document and scores 0 on both. ``ndcg``:
    nDCG@depth as trec_eval computes it (unjudged = not relevant). ``ndcg_unjudged_relevant``: nDCG@depth on
    the qrels completed with every unjudged document of each query's top depth at grade ``relevance_level``
    (the ideal DCG is recomputed on the completed qrels): the score if the holes were all relevant.
    """

    depth: int
    judged: float
    unjudged: float
    ndcg: float
    ndcg_unjudged_relevant: float


HOLES_DEPTH = 10  # every record states the judgment holes of its top 10 (the depth of nDCG@10)


def holes(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]], *, depth: int = HOLES_DEPTH,
          relevance_level: int = 1) -> Holes:
    """The judgment holes of ``run``'s top ``depth`` (see Holes); neither mapping is modified."""
    if not qrels:
        raise HarnessError("qrels hold no queries: there is nothing to average over")
    tops = {qid: dict(_top(run.get(qid, {}), depth)) for qid in qrels}  # nDCG@depth needs no more (same order)
    completed: dict[str, dict[str, int]] = {}
    unjudged: list[float] = []
    for qid, judged in qrels.items():
        missing = [doc for doc in tops[qid] if doc not in judged]
        unjudged.append(len(missing) / len(tops[qid]) if tops[qid] else 0.0)
        completed[qid] = {**judged, **dict.fromkeys(missing, relevance_level)}
    name, judged_name = f"nDCG@{depth}", f"Judged@{depth}"
    standard = evaluate(qrels, tops, [name, judged_name], relevance_level=relevance_level).aggregate
    optimistic = evaluate(completed, tops, [name], relevance_level=relevance_level).aggregate
    return Holes(depth=depth, judged=standard[judged_name], unjudged=math.fsum(unjudged) / len(unjudged),
                 ndcg=standard[name], ndcg_unjudged_relevant=optimistic[name])
