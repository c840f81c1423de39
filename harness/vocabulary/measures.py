"""Metric names: what a suite, a record or the CLI may write (``nDCG@10``, ``MRR@10``, ``Recall@100``, ``MAP``...),
parsed into value objects whose canonical spelling is their identity, with the exact trec_eval definition of each.
No scoring here: ``harness.scoring.metrics`` computes them."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Literal

from harness.vocabulary.errors import HarnessError

__all__ = ["ALLOWED", "Kind", "Measure", "parse_measure"]

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
ALLOWED = ("MRR@k, nDCG@k, nDCG, Recall@k, MAP, MAP@k, P@k, Success@k, Judged@k, Rprec, Bpref, infAP "
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
        raise HarnessError(f"unknown metric {text!r}{hint} Allowed: {ALLOWED}")
    raw_cutoff = match.group("cutoff")
    if kind in _NO_CUTOFF:
        if raw_cutoff is not None:
            raise HarnessError(f"metric {text!r}: {kind} takes no cutoff (trec_eval would ignore it); write {kind!r}")
        return Measure(kind, kind, None)
    if raw_cutoff is None:
        if kind not in _CUTOFF_OPTIONAL:
            raise HarnessError(f"metric {text!r} needs a cutoff, e.g. '{kind}@10'. Allowed: {ALLOWED}")
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
