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

import heapq
import math
from collections.abc import Mapping, Sequence

import pytrec_eval

from harness.vocabulary.errors import HarnessError
from harness.vocabulary.measures import ALLOWED, Measure, parse_measure
from harness.vocabulary.validation import StrictModel

__all__ = ["Holes", "Measure", "PerQuery", "holes", "judged_fraction", "means", "parse_measure", "per_query_values"]

PerQuery = dict[str, dict[str, float]]  # metric name as the caller wrote it -> query id -> value


def per_query_values(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str] | str,
    *,
    relevance_level: int = 1,
) -> PerQuery:
    """Score ``run`` against ``qrels`` with trec_eval semantics (see the module docstring): each metric's value for
    every query of the qrels, in qrels order (`means` averages them).

    ``qrels``: qid → docid → grade; ``run``: qid → docid → score (Python or numpy numbers);
    ``metrics``: names such as ``["nDCG@10", "MRR@10"]`` (or one name). Neither mapping is
    modified. Run queries absent from the qrels are ignored.
    """
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise HarnessError(f"no metrics requested. Allowed: {ALLOWED}")
    measures = {name: parse_measure(name) for name in names}
    qids = list(qrels)
    if not qids:
        raise HarnessError("qrels hold no queries: there is nothing to average over")
    # Copies with plain ints and floats: pytrec_eval rejects numpy numbers (e.g. from pandas or a model).
    int_qrels = {qid: {doc: int(grade) for doc, grade in docs.items()} for qid, docs in qrels.items()}
    run = {qid: {doc: float(score) for doc, score in docs.items()} for qid, docs in run.items()}
    mrr_cutoffs = sorted({m.cutoff for m in measures.values() if m.kind == "MRR" and m.cutoff is not None})
    judged_cutoffs = sorted({m.cutoff for m in measures.values() if m.kind == "Judged" and m.cutoff is not None})

    # One pytrec_eval pass for every non-MRR measure, one per distinct MRR cutoff.
    results: dict[str, dict[str, float]] = {}  # result key → qid → value
    plain = {m.trec_name for m in measures.values() if m.kind not in ("MRR", "Judged")}
    if plain:
        _collect(results, int_qrels, run, plain, relevance_level, suffix="")
    if mrr_cutoffs:
        ranked = {qid: _top(run.get(qid, {}), mrr_cutoffs[-1]) for qid in qids}
        for k in mrr_cutoffs:
            truncated: dict[str, dict[str, float]] = {qid: dict(docs[:k]) for qid, docs in ranked.items()}
            _collect(results, int_qrels, truncated, {"recip_rank"}, relevance_level, suffix=f"@{k}")
    for k in judged_cutoffs:
        results[f"judged@{k}"] = {qid: judged_fraction(int_qrels[qid], run.get(qid, {}), k) for qid in qids}

    values: PerQuery = {}
    for name, measure in measures.items():
        key = measure.result_key + (f"@{measure.cutoff}" if measure.kind in ("MRR", "Judged") else "")
        by_qid = results.get(key, {})
        values[name] = {qid: by_qid.get(qid, 0.0) for qid in qids}
    return values


def means(values: PerQuery) -> dict[str, float]:
    """Each metric's mean over its queries (every judged query: trec_eval ``-c``), summed exactly (``math.fsum``)."""
    return {name: math.fsum(by_qid.values()) / len(by_qid) for name, by_qid in values.items()}


def _collect(
    results: dict[str, dict[str, float]],
    qrels: dict[str, dict[str, int]],
    run: Mapping[str, Mapping[str, float]],
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


class Holes(StrictModel):
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
    standard = means(per_query_values(qrels, tops, [name, judged_name], relevance_level=relevance_level))
    optimistic = means(per_query_values(completed, tops, [name], relevance_level=relevance_level))
    return Holes(depth=depth, judged=standard[judged_name], unjudged=math.fsum(unjudged) / len(unjudged),
                 ndcg=standard[name], ndcg_unjudged_relevant=optimistic[name])
