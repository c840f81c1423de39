"""What a report shows, computed from records only: comparison, CIs, Recall@k curves, profile points, and what
approximate indexes cost against exact search.

Recall@k curves come from each run record's ``recall_curve.json`` (written at run time); a record
without one (schema 1) gets a note instead of a curve. An index record's ``index`` section (written at run time)
holds its exact reference, ANN recall and paired change against exact search. Nothing is re-read from the datasets.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from harness.analysis.churn import Churn
from harness.analysis.churn import churn as ranking_churn
from harness.analysis.compare import Comparison, aligned, compare_pairs, pair_by_dataset
from harness.analysis.frontier import Frontier, Point, frontier
from harness.analysis.query_changes import QueryChanges, query_changes
from harness.analysis.stats import mean_ci
from harness.encode.load import error_counts
from harness.scoring.records import (
    AnnRecall,
    ExactReference,
    IndexInfo,
    ProfileRecord,
    RunRecord,
    ServingRecord,
    VersusExact,
    find_records,
    load,
)
from harness.scoring.scored import ScoredRun, label_runs
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.statistics import DEFAULT_STATS, StatsOptions
from harness.vocabulary.tables import fmt_num, fmt_p, html_table, markdown_table, md_escape

UP, DOWN = "▲", "▼"


R = TypeVar("R", ProfileRecord, ServingRecord)


@dataclass(frozen=True)
class Loaded(Generic[R]):
    """A record that is not a run (a profile or a serving record) and the folder it was read from."""

    path: Path
    record: R

    @property
    def label(self) -> str:
        return self.record.label


LoadedProfile = Loaded[ProfileRecord]
LoadedServing = Loaded[ServingRecord]


SERVING_HEADERS = ["server", "load", "answered req/s", "p50 ms", "p90 ms", "p99 ms", "p99 95% bounds", "errors",
                   "note"]


def serving_rows(serving: LoadedServing) -> list[list[str]]:
    """One row per load point of a serving record: open loop by offered rate, then closed loop by concurrency."""
    from harness.analysis.stats import LATENCY_QUANTILE, quantile_bound

    record = serving.record
    rows = []
    for point in [*record.open_loop(), *record.closed_loop()]:
        load = (f"{point.offered_rate:g} req/s offered" if point.mode == "open"
                else f"{point.concurrency} concurrent")
        lat = point.latency
        bounds = "-"
        if lat is not None:
            low = quantile_bound(lat.values_ms, LATENCY_QUANTILE, 0.975, "lower")
            high = quantile_bound(lat.values_ms, LATENCY_QUANTILE, 0.975, "upper")
            bounds = f"[{low:.1f}, {'∞' if high == float('inf') else f'{high:.1f}'}]"
        errors = error_counts(point.errors) or "0"
        rows.append([record.server.label, load, f"{point.achieved_rate:.1f}",
                     *("-" if lat is None else f"{getattr(lat, q):.1f}" for q in ("p50", "p90", "p99")),
                     bounds, errors, ("client-limited: " if point.client_limited else "") + (point.note or "")])
    return rows


def saturation_line(serving: LoadedServing) -> str:
    r = serving.record
    found = ("no offered rate kept p99 within the SLO with no errors" if r.saturation_rps is None
             else f"saturates at {r.saturation_rps:g} req/s (every offered rate up to it kept p99 ≤ "
                  f"{r.slo_p99_ms:g} ms, with no errors)")
    shared = " The server ran on the client's machine: both shared its CPUs." if r.server_on_client_host else ""
    return (f"{r.name} on {r.dataset} ({r.workload}, {r.rows_per_request} text(s) per request): {found}; this client "
            f"generates up to {r.client_capacity_rps:.0f} req/s against a trivial local endpoint.{shared}")


@dataclass(frozen=True)
class ReportData:
    runs: list[ScoredRun]
    comparison: Comparison | None
    cis: dict[tuple[str, str, str], tuple[float, float]]  # (dataset, label, metric) -> 95% CI of the mean
    recall: dict[str, dict[str, tuple[list[int], list[float]]]]  # dataset -> label -> (ks, recall@k)
    profiles: list[LoadedProfile]
    primary_metric: str
    notes: list[str] = field(default_factory=list)
    churn: list[Churn] = field(default_factory=list)  # each treatment's ranking against its control (--churn)
    frontiers: dict[str, Frontier] = field(default_factory=dict)  # dataset -> quality x speed frontier
    indexes: list[IndexGroup] = field(default_factory=list)  # index records by dataset x embeddings (index_groups)
    changes: list[QueryChanges] = field(default_factory=list)  # the queries each treatment moved most (--queries)
    serving: list[LoadedServing] = field(default_factory=list)  # `harness load` records

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(r.dataset for r in self.runs))

    def runs_of(self, dataset: str) -> list[ScoredRun]:
        return [r for r in self.runs if r.dataset == dataset]

    @property
    def metrics(self) -> list[str]:
        return list(dict.fromkeys(m for r in self.runs for m in r.record.metrics))

    def quality_table(self) -> tuple[list[str], list[list[str]]]:
        """Headers and rows dataset x encoder, a column per metric: mean, significance marker, 95% CI."""
        rows = []
        for run in self.runs:
            cells = []
            for metric in self.metrics:
                if metric not in run.record.metrics:
                    cells.append("-")
                    continue
                low, high = self.cis[(run.dataset, run.label, metric)]
                cells.append(f"{run.record.metrics[metric]:.4f}{self.marker(run.dataset, metric, run.label)} "
                             f"[{low:.3f}, {high:.3f}]")
            rows.append([run.dataset, run.label, *cells])
        return ["dataset", "encoder", *self.metrics], rows

    def holes_table(self) -> tuple[list[str], list[list[str]]]:
        """Headers and rows for the runs of datasets where the top 10 has unjudged documents (records that state
        their holes): Judged@k, nDCG@k with the holes counted not relevant (standard) and relevant, the gap."""
        holed = {r.dataset for r in self.runs if r.record.holes and r.record.holes.unjudged > 0}
        rows = []
        for run in self.runs:
            h = run.record.holes
            if h is None or run.dataset not in holed:
                continue
            rows.append([run.dataset, run.label, f"{h.judged:.4f}", f"{h.ndcg:.4f}", f"{h.ndcg_unjudged_relevant:.4f}",
                         f"{h.ndcg_unjudged_relevant - h.ndcg:+.4f}", str(run.record.dataset.relevance_level)])
        depth = next((r.record.holes.depth for r in self.runs if r.record.holes), 10)
        return (["dataset", "encoder", f"Judged@{depth}", f"nDCG@{depth} (unjudged = not relevant)",
                 f"nDCG@{depth} (unjudged = relevant)", "unknown", "relevance_level"], rows)

    def marker(self, dataset: str, metric: str, label: str) -> str:
        """UP / DOWN when `label` is significantly better / worse than the dataset's control."""
        m = self.comparison.find(dataset, metric, label) if self.comparison else None
        verdict = m.verdict(self.comparison.alpha, self.comparison.test) if m and self.comparison else ""
        return {"better": f" {UP}", "worse": f" {DOWN}"}.get(verdict, "")

    def _render(self, table, text) -> list[str]:
        """The quality table, the comparison and, per index group, its table and the cheapest non-inferior line;
        ``text`` turns a sentence into the format (escaped)."""
        parts = []
        if self.runs:
            parts.append(table(*self.quality_table()))
        if self.comparison and self.comparison.metrics:
            parts.append(table(self.comparison.table_headers, self.comparison.table_rows()))
        for group in self.indexes:
            parts += [text(f"Approximate index: {group.title}"), table(*group.table()), text(group.cheapest_line())]
        return parts

    def _summary(self) -> str:
        return (f"{len(self.runs)} run record(s) on {len(self.datasets)} dataset(s), "
                f"{len(self.profiles)} profile record(s), {len(self.serving)} serving record(s)")

    def _repr_markdown_(self) -> str:
        return "\n\n".join([f"**{self._summary()}**", *self._render(markdown_table, md_escape),
                             *(f"_{md_escape(n)}_" for n in self.notes)])

    def _repr_html_(self) -> str:
        return "\n".join([f"<p><strong>{html.escape(self._summary())}</strong></p>",
                          *self._render(html_table, lambda t: f"<p>{html.escape(t)}</p>")])


def load_report_data(paths: Sequence[Path], *, control: str | None = None, metric: str | None = None,
                     stats: StatsOptions = DEFAULT_STATS, churn: bool = False, queries: int = 0) -> ReportData:
    runs, profiles, serving = [], [], []
    for directory in find_records([Path(p) for p in paths]):
        record = load(directory)
        if isinstance(record, RunRecord):
            runs.append(ScoredRun.of(directory, record))
        elif isinstance(record, ServingRecord):
            serving.append(LoadedServing(directory, record))
        else:
            profiles.append(LoadedProfile(directory, record))
    if not runs and not profiles and not serving:
        raise HarnessError("no records found in: " + ", ".join(str(p) for p in paths))
    runs = label_runs(runs)
    pairs, notes = pair_by_dataset(runs, control=control)
    comparison = compare_pairs(pairs, stats=stats) if pairs else None
    if comparison:
        notes += comparison.warnings
    cis = {(r.dataset, r.label, m): mean_ci(list(v.values()), seed=stats.seed, n_resamples=stats.n_resamples)
           for r in runs for m, v in r.per_query.items()}
    recall, recall_notes = recall_curves(runs)
    all_metrics = list(dict.fromkeys(m for r in runs for m in r.record.metrics))
    primary = metric or next((m for m in all_metrics if m.lower() == "ndcg@10"), all_metrics[0] if all_metrics else "")
    if metric and metric not in all_metrics:
        raise HarnessError(f"--metric {metric!r} is in no record; metrics: {', '.join(all_metrics)}")
    churns = [ranking_churn(c, t, metrics=[primary] if primary in c.per_query and primary in t.per_query else None,
                            stats=stats) for c, t in pairs] if churn else []
    frontiers, frontier_notes = quality_speed_frontiers(runs, primary, stats)
    return ReportData(runs, comparison, cis, recall, profiles, primary, notes + recall_notes + frontier_notes,
                      churn=churns, frontiers=frontiers, indexes=index_groups(runs, primary, stats),
                      changes=[query_changes(c, t, metric=primary, n=queries) for c, t in pairs
                               if primary in c.per_query and primary in t.per_query] if queries else [],
                      serving=serving)


def quality_speed_frontiers(runs: Sequence[ScoredRun], metric: str, stats: StatsOptions,
                            ) -> tuple[dict[str, Frontier], list[str]]:
    """The `metric` x passages/s frontier of each dataset with at least two timed runs that have the metric
    (external runs timed nothing and are left out), over the runs on the hardware of the dataset's first timed run
    (speeds of other hardware are not comparable; a note names them)."""
    out: dict[str, Frontier] = {}
    notes: list[str] = []
    for dataset in dict.fromkeys(r.dataset for r in runs):
        timed = [r for r in runs if r.dataset == dataset and metric in r.per_query and r.record.performance
                 and r.record.performance.throughput.passages_per_s]
        other = [r for r in timed if r.record.speed_hardware_key != timed[0].record.speed_hardware_key]
        if other:
            notes.append(f"{dataset}: frontier left out {', '.join(r.label for r in other)}: timed on other hardware "
                         f"than {timed[0].label} ({other[0].record.speed_hardware_key})")
            timed = [r for r in timed if r.record.speed_hardware_key == timed[0].record.speed_hardware_key]
        if len(timed) < 2:
            continue
        points = [Point(r.label, speed, aligned(timed[0], r, metric)[1])
                  for r in timed for speed in [_passages_per_s(r)]]
        out[dataset] = frontier(points, metric=metric, alpha=stats.alpha, test=stats.test, seed=stats.seed,
                                n_resamples=stats.n_resamples)
    return out, notes


def _passages_per_s(run: ScoredRun) -> float:
    performance = run.record.performance
    assert performance is not None and performance.throughput.passages_per_s  # timed runs only
    return performance.throughput.passages_per_s


def recall_curves(runs: Sequence[ScoredRun]) -> tuple[dict[str, dict[str, tuple[list[int], list[float]]]], list[str]]:
    """Mean Recall@k curves stored with the records, by dataset and label; a note for each record without one."""
    curves: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    notes: list[str] = []
    for run in runs:
        curve = run.curve()
        if curve is None:
            notes.append(f"{run.dataset} / {run.label}: no Recall@k curve: record predates schema 2")
        else:
            curves.setdefault(run.dataset, {})[run.label] = (curve.ks, curve.mean())
    return curves, notes


# ------------------------------------------------------------------ approximate indexes

EXACT_LABEL = "exact search"
NO_VERDICT = "—"
MARGIN_HINT = "baseline: {{records: results, noninferior: {{{metric}: {{margin: 0.005}}}}}}"


@dataclass(frozen=True)
class IndexSetting:
    """One index record of an `IndexGroup`; ``label`` is its index label, made unique within the group."""

    run: ScoredRun
    label: str

    @property
    def info(self) -> IndexInfo:
        assert self.run.record.index is not None  # an IndexGroup holds index records only
        return self.run.record.index

    def versus(self, metric: str) -> VersusExact | None:
        return next((v for v in self.info.versus_exact if v.metric == metric), None)

    def recall(self, k: int) -> AnnRecall | None:
        return next((a for a in self.info.ann_recall if a.k == k), None)


@dataclass(frozen=True)
class IndexGroup:
    """The index records of one dataset searched over the same embeddings, and their shared exact reference.

    ``settings`` fastest first. ``exact_run``: a plain (exact-search) record of the same embeddings, whose per-query
    values make exact search a point of ``frontier``; without one the frontier is over the index settings only and
    exact search is drawn as the reference. ``frontier``: ``metric`` x queries/s; ``recall_frontier``: ANN
    recall@``recall_k`` x queries/s, exact search included (its recall is 1 on every query by definition)."""

    dataset: str
    title: str
    names: tuple[str, ...]  # what its figures' file names are made of
    settings: list[IndexSetting]
    exact: ExactReference
    exact_run: ScoredRun | None
    metrics: list[str]  # the suite's metrics, as the records' versus_exact lists them
    metric: str  # the frontier's (the report's primary metric where the records have it)
    ks: list[int]  # ANN recall cut-offs
    recall_k: int
    frontier: Frontier | None
    recall_frontier: Frontier | None
    notes: list[str] = field(default_factory=list)

    def setting(self, label: str) -> IndexSetting | None:
        return next((s for s in self.settings if s.label == label), None)

    def exact_value(self, metric: str) -> float | None:
        """Exact search's mean of ``metric``: its reference's, else as the settings' paired changes state it."""
        if metric in self.exact.metrics:
            return self.exact.metrics[metric]
        return next((v.exact for s in self.settings if (v := s.versus(metric)) is not None), None)

    def table(self) -> tuple[list[str], list[list[str]]]:
        """One row for exact search, then one per setting (fastest first): build, size, speed, ANN recall, each
        metric with its paired change against exact search, and a verdict column per metric that has a margin."""
        judged = [m for m in self.metrics if any((v := s.versus(m)) and v.margin is not None for s in self.settings)]
        headers = ["setting", "build s", "bytes/vector", "queries/s", "search p50 ms", "search p99 ms",
                   *(f"ANN recall@{k}" for k in self.ks),
                   *(f"{m} (Δ vs exact [95% CI], p)" for m in self.metrics),
                   *(f"{m} non-inferiority" for m in judged)]
        latency = self.exact.search_latency
        rows = [[f"{EXACT_LABEL} (reference)", "-", "-", fmt_num(self.exact.queries_per_s),
                 _ms(latency.p50 if latency else None), _ms(latency.p99 if latency else None),
                 *("1.0000" for _ in self.ks),
                 *("-" if (e := self.exact_value(m)) is None else f"{e:.4f}" for m in self.metrics),
                 *(NO_VERDICT for _ in judged)]]
        for s in self.settings:
            info = s.info
            recalls = [s.recall(k) for k in self.ks]
            rows.append([s.label, _seconds(info.build_s) + (" (cached)" if info.from_cache else ""),
                         fmt_num(info.bytes_per_vector), fmt_num(info.queries_per_s), _ms(info.search_latency.p50),
                         _ms(info.search_latency.p99), *("-" if a is None else f"{a.mean:.4f}" for a in recalls),
                         *(_versus_cell(s.versus(m)) for m in self.metrics),
                         *(verdict(s.versus(m)) for m in judged)])
        return headers, rows

    def cheapest_line(self) -> str:
        """The fastest setting shown non-inferior to exact search on the first metric that has a margin, or why
        there is none."""
        metric = next((m for m in self.metrics if any((v := s.versus(m)) and v.margin is not None
                                                      for s in self.settings)), None)
        if metric is None:
            return (f"No non-inferiority margin is set, so no setting is judged against exact search; set one on "
                    f"the encoder in the suite: `{MARGIN_HINT.format(metric=self.metric)}` (the margin in metric "
                    "units; baseline also names its records folder).")
        judged = [(s, v) for s in self.settings if (v := s.versus(metric)) is not None and v.margin is not None]
        unjudged = len(self.settings) - len(judged)
        untold = f" ({unjudged} setting(s) without a margin for {metric} are not judged)" if unjudged else ""
        passed = [(s, v) for s, v in judged if v.noninferior]
        if not passed:
            margins = list(dict.fromkeys(f"{v.margin:g}" for _, v in judged))
            alpha = judged[0][0].info.alpha
            return (f"No setting is shown non-inferior to exact search on {metric} at margin {', '.join(margins)}: "
                    f"none has its one-sided {1 - alpha:.0%} lower bound of Δ above "
                    f"{'-' + margins[0] if len(margins) == 1 else 'minus its margin'}{untold}.")
        best, v = max(passed, key=lambda sv: sv[0].info.queries_per_s)
        qps = best.info.queries_per_s
        slower = (f" It is no faster than exact search ({fmt_num(self.exact.queries_per_s)} queries/s)."
                  if qps <= self.exact.queries_per_s else "")
        assert v.margin is not None and v.lower is not None  # a verdict was reached
        return (f"Cheapest setting non-inferior to exact search on {metric} at margin {v.margin:g}: {best.label} "
                f"({fmt_num(qps)} queries/s; Δ {v.delta:+.4f}, one-sided lower bound {v.lower:+.4f} > "
                f"-{v.margin:g}){untold}.{slower}")

    def dominated_lines(self) -> list[str]:
        """For each frontier (the metric's, ANN recall's), the points off it and what dominates them."""
        lines = []
        for front in (self.frontier, self.recall_frontier):
            if front is not None and front.dominated:
                beaten = [f"{label} (by {d.by}, p {fmt_p(d.p)})" for label, d in front.dominated.items()]
                lines.append(f"Dominated on {front.metric}: {'; '.join(beaten)}.")
        return lines


def verdict(v: VersusExact | None) -> str:
    """A setting's non-inferiority verdict on one metric, or NO_VERDICT without a margin."""
    if v is None or v.margin is None or v.noninferior is None:
        return NO_VERDICT
    return f"non-inferior at {v.margin:g}" if v.noninferior else "not shown non-inferior"


def _versus_cell(v: VersusExact | None) -> str:
    if v is None:
        return "-"
    low, high = v.delta_ci
    return f"{v.index:.4f} (Δ {v.delta:+.4f} [{low:+.3f}, {high:+.3f}], p {fmt_p(v.p)})"


def _seconds(value: float) -> str:
    return f"{value:.3f}" if value < 10 else fmt_num(value)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}" if value < 100 else fmt_num(value)


def _embeddings(record: RunRecord) -> tuple[object, ...]:
    """What makes two records' exact search the same: dataset, query encoder, corpus embeddings, top k."""
    encoder, store = record.encoder, record.performance.embedding_store.key if record.performance else None
    if encoder is None:
        return (record.dataset.name, record.dataset.fingerprint, record.name, record.top_k)
    s = encoder.settings
    return (record.dataset.name, record.dataset.fingerprint, encoder.model, encoder.fingerprint,
            encoder.documents.fingerprint if encoder.documents else None, store, s.similarity, s.precision, s.engine,
            s.query_prefix, s.max_seq_length, record.top_k)


def _unique(labels: Sequence[str], runs: Sequence[ScoredRun], taken: set[str]) -> list[str]:
    """Each label, with its run's label added where it repeats (or is taken)."""
    out: list[str] = []
    for label, run in zip(labels, runs):
        name = label if labels.count(label) == 1 and label not in taken else f"{label} [{run.label}]"
        while name in taken or name in out:
            name += "'"
        out.append(name)
    return out


def index_groups(runs: Sequence[ScoredRun], metric: str, stats: StatsOptions) -> list[IndexGroup]:
    """The index records of each dataset, grouped by the embeddings they searched (one exact reference each), with
    their frontiers; datasets without index records have none."""
    groups: dict[tuple[object, ...], list[ScoredRun]] = {}
    for run in runs:
        if run.record.index is not None:
            groups.setdefault(_embeddings(run.record), []).append(run)
    per_dataset: dict[str, int] = {}
    for members in groups.values():
        per_dataset[members[0].dataset] = per_dataset.get(members[0].dataset, 0) + 1
    out: list[IndexGroup] = []
    seen: dict[str, int] = {}
    for key, members in groups.items():
        dataset = members[0].dataset
        seen[dataset] = seen.get(dataset, 0) + 1
        names: tuple[str, ...] = (dataset,)
        title = dataset
        if per_dataset[dataset] > 1:  # several encoders (or query sets) indexed on one dataset
            model = members[0].record.encoder.model if members[0].record.encoder else members[0].encoder
            title, names = f"{dataset} · {model} ({seen[dataset]})", (dataset, model, str(seen[dataset]))
        plain = [r for r in runs if r.record.index is None and r.record.source is None
                 and _embeddings(r.record) == key]
        out.append(_index_group(dataset, title, names, members, plain, metric, stats))
    return out


def _index_group(dataset: str, title: str, names: tuple[str, ...], members: list[ScoredRun],
                 plain: list[ScoredRun], metric: str, stats: StatsOptions) -> IndexGroup:
    notes: list[str] = []
    indexed = sorted(((r, r.record.index) for r in members if r.record.index is not None),
                     key=lambda ri: -ri[1].queries_per_s)
    first, exact = indexed[0][0], indexed[0][1].exact
    differ = [r.label for r, info in indexed if not _same(info.exact.metrics, exact.metrics)]
    if differ:
        notes.append(f"The exact reference of {', '.join(differ)} differs from that of {first.label}; the exact "
                     f"search row is {first.label}'s.")
    machine = first.record.environment.hardware_key
    hardware = [r.label for r, _ in indexed if r.record.environment.hardware_key != machine]
    if hardware:
        notes.append(f"{', '.join(hardware)} searched on other hardware than {first.label}: their queries/s and "
                     "latencies are not comparable with the others'.")
    exact_run = next((r for r in plain if _same(r.record.metrics, exact.metrics)), None)
    labels = _unique([info.label for _, info in indexed], [r for r, _ in indexed], {EXACT_LABEL})
    settings = [IndexSetting(r, label) for (r, _), label in zip(indexed, labels)]
    metrics = list(dict.fromkeys(v.metric for _, info in indexed for v in info.versus_exact))
    chosen = metric if metric in metrics else (metrics[0] if metrics else metric)
    ks = sorted({a.k for _, info in indexed for a in info.ann_recall})
    recall_k = 10 if 10 in ks or not ks else ks[0]
    front = _metric_frontier(settings, exact_run, exact, chosen, stats, notes)
    recall_front = _recall_frontier(settings, exact, recall_k, stats)
    return IndexGroup(dataset, title, names, settings, exact, exact_run, metrics, chosen, ks, recall_k, front,
                      recall_front, notes)


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    shared = set(a) & set(b)
    return bool(shared) and all(abs(a[m] - b[m]) <= 1e-9 for m in shared)


def _metric_frontier(settings: list[IndexSetting], exact_run: ScoredRun | None, exact: ExactReference, metric: str,
                     stats: StatsOptions, notes: list[str]) -> Frontier | None:
    """``metric`` x queries/s over the settings that have the metric per query, and exact search (at its reference
    queries/s) when a plain record of the same embeddings holds its per-query values."""
    scored = [s for s in settings if metric in s.run.per_query]
    if not scored:
        return None
    first = scored[0].run
    try:
        points = [Point(s.label, s.info.queries_per_s, aligned(first, s.run, metric)[1]) for s in scored]
        if exact_run is not None and metric in exact_run.per_query:
            points.append(Point(EXACT_LABEL, exact.queries_per_s, aligned(first, exact_run, metric)[1]))
    except HarnessError as exc:
        notes.append(f"No index frontier: {exc}")
        return None
    return frontier(points, metric=metric, alpha=stats.alpha, test=stats.test, seed=stats.seed,
                    n_resamples=stats.n_resamples)


def _recall_frontier(settings: list[IndexSetting], exact: ExactReference, k: int,
                     stats: StatsOptions) -> Frontier | None:
    """ANN recall@k x queries/s over the settings and exact search (recall 1 on every query); None where the
    settings did not measure recall@k on the same queries."""
    recalls = [a for s in settings if (a := s.recall(k)) is not None]
    if not recalls or len(recalls) < len(settings):
        return None
    qids = sorted(recalls[0].per_query)
    if not qids or any(sorted(a.per_query) != qids for a in recalls):
        return None
    points = [Point(s.label, s.info.queries_per_s, [a.per_query[q] for q in qids]) for s, a in zip(settings, recalls)]
    points.append(Point(EXACT_LABEL, exact.queries_per_s, [1.0] * len(qids)))
    return frontier(points, metric=f"ANN recall@{k}", alpha=stats.alpha, test=stats.test, seed=stats.seed,
                    n_resamples=stats.n_resamples)
