"""Which queries changed, and why: the queries that lost and gained most on one metric between two records of one
data set, each with its text, the rank of every judged-relevant document before → after, and the new top
documents with a snippet of their text and their judgment ("unjudged" where the qrels have none). Texts come from
the records' data set, looked up through the streamed corpus as `harness pool` does (`harness compare --queries`,
`harness report --queries`, `harness history --queries`).
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from harness.scoring.external import judgments_of_record
from harness.scoring.scored import ScoredRun
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.tables import md_escape

SNIPPET_CHARS = 160
TOP_DOCUMENTS = 3


@dataclass(frozen=True)
class RelevantRank:
    doc_id: str
    grade: int
    before: int | None  # 1-based rank; None: not in the record's top_k
    after: int | None

    def describe(self) -> str:
        return f"{self.doc_id} (grade {self.grade}): {_rank(self.before)} → {_rank(self.after)}"


@dataclass(frozen=True)
class TopDocument:
    rank: int
    doc_id: str
    grade: int | None  # None: unjudged
    snippet: str

    @property
    def judgment(self) -> str:
        return "unjudged" if self.grade is None else f"grade {self.grade}"


@dataclass(frozen=True)
class QueryChange:
    qid: str
    text: str
    before: float
    after: float
    relevant: list[RelevantRank]  # judged relevant (grade >= the data set's relevance level), best grade first
    top_after: list[TopDocument]

    @property
    def delta(self) -> float:
        return self.after - self.before

    def title(self, metric: str) -> str:
        return f"{self.qid}: {metric} {self.before:.4f} → {self.after:.4f} (Δ {self.delta:+.4f}) — {self.text}"

    def lines(self) -> list[str]:
        """What moved: each judged-relevant document's rank before → after, then the new top documents."""
        relevant = [f"relevant {r.describe()}" for r in self.relevant] or ["no judged-relevant document"]
        return relevant + [f"now #{d.rank} {d.doc_id} ({d.judgment}): {d.snippet}" for d in self.top_after]


@dataclass(frozen=True)
class QueryChanges:
    dataset: str
    control: str
    treatment: str
    metric: str
    losses: list[QueryChange]  # largest loss first
    gains: list[QueryChange]  # largest gain first
    changed: int  # queries whose value differs at all
    queries: int

    @property
    def title(self) -> str:
        return (f"{self.dataset}: {self.treatment} vs {self.control} on {self.metric} — {self.changed} of "
                f"{self.queries} queries changed")

    def sections(self) -> list[tuple[str, list[QueryChange]]]:
        return [("lost most", self.losses), ("gained most", self.gains)]

    def to_text(self) -> str:
        lines = [self.title]
        for heading, items in self.sections():
            lines.append(f"  {heading}:" if items else f"  {heading}: none")
            for q in items:
                lines += [f"    {q.title(self.metric)}", *(f"      {line}" for line in q.lines())]
        return "\n".join(lines)

    def markdown_list(self, items: list[QueryChange], indent: str = "") -> list[str]:
        """Each query of `items` as a Markdown list item with what moved nested under it (escaped)."""
        lines = []
        for q in items:
            lines.append(f"{indent}- {md_escape(q.title(self.metric))}")
            lines += [f"{indent}  - {md_escape(line)}" for line in q.lines()]
        return lines

    def to_markdown(self) -> str:
        lines = [f"**{md_escape(self.title)}**", ""]
        for heading, items in self.sections():
            lines += [f"- {heading}: none"] if not items else [f"- {heading}:", *self.markdown_list(items, "  ")]
        return "\n".join(lines)

    def to_html(self) -> str:
        """A heading, then per section one collapsible <details> block per query (escaped)."""
        parts = [f"<h4>{html.escape(self.title)}</h4>"]
        for heading, items in self.sections():
            parts.append(f"<p>{heading}{': none' if not items else ''}</p>")
            parts += [f"<details><summary>{html.escape(q.title(self.metric))}</summary><ul>"
                      + "".join(f"<li>{html.escape(line)}</li>" for line in q.lines()) + "</ul></details>"
                      for q in items]
        return "".join(parts)


def query_changes(control: ScoredRun, treatment: ScoredRun, *, metric: str, n: int = 10,
                  top: int = TOP_DOCUMENTS) -> QueryChanges:
    """The `n` queries that lost most and the `n` that gained most on `metric` from `control` to `treatment`."""
    if n < 1:
        raise HarnessError(f"--queries must be a positive number of queries, got {n}")
    if control.record.dataset.fingerprint != treatment.record.dataset.fingerprint:
        raise HarnessError(f"{control.where} and {treatment.where} were scored on different data; which queries "
                           "changed needs the same queries and judgments")
    for run in (control, treatment):
        if metric not in run.per_query:
            raise HarnessError(f"{run.where}: no per-query values of {metric}; metrics: {', '.join(run.per_query)}")
    if control.path is None:
        raise HarnessError(f"{control.dataset} × {control.encoder}: in memory only; the query texts are read "
                           "through its record folder")
    before, after = control.per_query[metric], treatment.per_query[metric]
    qids = sorted(set(before) & set(after))
    deltas = {q: after[q] - before[q] for q in qids}
    losses = sorted((q for q in qids if deltas[q] < 0), key=lambda q: (deltas[q], q))[:n]
    gains = sorted((q for q in qids if deltas[q] > 0), key=lambda q: (-deltas[q], q))[:n]
    judgments = judgments_of_record(control.path, control.record, texts=True)
    dataset = judgments.dataset
    assert dataset is not None  # texts=True
    level = control.record.dataset.relevance_level
    ranked_before, ranked_after = control.ranked_ids(), treatment.ranked_ids()
    tops = {q: ranked_after.get(q, [])[:top] for q in (*losses, *gains)}
    texts = dataset.corpus.lookup({d for docs in tops.values() for d in docs})
    query_texts = dict(zip(dataset.query_ids, dataset.query_texts))

    def change(qid: str) -> QueryChange:
        judged = judgments.qrels.get(qid, {})
        rank_before = {d: i + 1 for i, d in enumerate(ranked_before.get(qid, []))}
        rank_after = {d: i + 1 for i, d in enumerate(ranked_after.get(qid, []))}
        relevant = [RelevantRank(d, g, rank_before.get(d), rank_after.get(d))
                    for d, g in sorted(judged.items(), key=lambda dg: (-dg[1], dg[0])) if g >= level]
        top_docs = [TopDocument(i + 1, d, judged.get(d), _snippet(texts.get(d, "")))
                    for i, d in enumerate(tops[qid])]
        return QueryChange(qid, query_texts.get(qid, ""), before[qid], after[qid], relevant, top_docs)

    return QueryChanges(control.dataset, control.label, treatment.label, metric, [change(q) for q in losses],
                        [change(q) for q in gains], sum(1 for q in qids if deltas[q] != 0), len(qids))


def default_metric(run: ScoredRun, wanted: list[str] | None = None) -> str:
    """The metric the changes are ranked on: the first asked for, else nDCG@10 where the record has it, else its
    first."""
    if wanted:
        return wanted[0]
    return next((m for m in run.per_query if m.lower() == "ndcg@10"), next(iter(run.per_query)))


def _rank(rank: int | None) -> str:
    return "not in the top k" if rank is None else f"#{rank}"


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[:SNIPPET_CHARS - 1].rstrip() + "…"
