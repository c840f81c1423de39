"""The public Python API (re-exported by `harness`): what the CLI does, callable from a notebook or a training loop.

    import harness
    result = harness.evaluate_model(model, "data/scifact", metrics=["nDCG@10"])   # in memory, writes no files
    suite = harness.run_suite("suites/quick.yaml", output="results")
    cmp = harness.compare("results/baselines", "results/new")
    harness.report(["results/baselines", "results/new"], output="out/report")

Options are keyword-only; bad input raises `HarnessError` naming the field and the fix. Heavy libraries
(torch, sentence-transformers) load on first use, not on `import harness`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from harness.input.datasets import BEIR_LAYOUT, Dataset, read_qrels, read_run
from harness.input.datasets import load_dataset as _load_spec
from harness.input.suite import (
    DEFAULT_METRICS,
    DatasetSpec,
    Device,
    EncoderSpec,
    ReuseEmbeddings,
    Similarity,
    Suite,
    cutoff_problem,
    load_suite,
    shipped_folder,
)
from harness.scoring.metrics import means, per_query_values
from harness.scoring.scored import RunOutcome, ScoredRun, label_runs, load_scored_runs
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.options import DEFAULT_CHUNK_ROWS, Executor, StoreDtype
from harness.vocabulary.precision import EngineName, Precision
from harness.vocabulary.statistics import StatsOptions, Test
from harness.vocabulary.tables import fmt_num, markdown_table, md_escape, text_table
from harness.vocabulary.timing import LATENCY_CALLS
from harness.vocabulary.validation import validated

if TYPE_CHECKING:
    from harness.analysis.check import CheckReport
    from harness.analysis.churn import Churn
    from harness.analysis.compare import Comparison
    from harness.analysis.power import PowerReport
    from harness.analysis.served import ServedCheck
    from harness.encode.load import LoadPoint
    from harness.encode.store import StoreEntry
    from harness.pipeline.runner import RunOptions
    from harness.reporting import ReportData
    from harness.reporting.history import History
    from harness.scoring.records import ProfileRecord, RunRecord, ServingRecord

__all__ = ["Report", "SuiteResult", "check", "churn", "compare", "evaluate", "evaluate_model", "evaluate_per_query",
           "load_dataset", "load_qrels", "load_run", "report", "results_table", "run_suite", "scored_runs"]

PathLike = str | os.PathLike[str]


# ---------------------------------------------------------------- files and metrics


def load_qrels(path: PathLike) -> dict[str, dict[str, int]]:
    """A qrels file, TREC (``qid 0 docid grade``) or BEIR (``query-id<TAB>corpus-id<TAB>score``), as
    qid -> docid -> grade."""
    return read_qrels(path)


def load_run(path: PathLike) -> dict[str, dict[str, float]]:
    """A ranking, TREC run format (plain or ``.gz``) or JSON ``{qid: {docid: score}}``, as qid -> docid -> score."""
    return read_run(path)


def evaluate(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], metrics: Sequence[str] | str, *,
             relevance_level: int = 1) -> dict[str, float]:
    """trec_eval-exact metrics (via pytrec_eval): each metric's mean over every judged query (``-c``).

    ``metrics`` are names such as ``MRR@10``, ``nDCG@10``, ``Recall@100``, ``MAP``, ``P@5``, and for pooled
    judgments ``Judged@10``, ``Rprec``, ``Bpref``, ``infAP``, ``nDCG``, ``Success@10``; results are keyed by the
    names exactly as given. `evaluate_per_query` gives the values behind each mean."""
    return means(per_query_values(qrels, run, metrics, relevance_level=relevance_level))


def evaluate_per_query(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]],
                       metrics: Sequence[str] | str, *, relevance_level: int = 1) -> dict[str, dict[str, float]]:
    """The values behind `evaluate`: metric -> query id -> value, for every judged query (0 where the run has
    nothing for it)."""
    return per_query_values(qrels, run, metrics, relevance_level=relevance_level)


def load_dataset(dataset: PathLike, *, name: str | None = None, split: str = "test", relevance_level: int = 1,
                 drop_self_hits: bool = False) -> Dataset:
    """A BEIR folder (``corpus.jsonl[.gz]``, ``queries.jsonl``, ``qrels/<split>.tsv``) or an ir_datasets id, loaded
    and validated. ``data/<name>`` also finds a data set shipped with harness when run from another directory."""
    return _load_spec(_dataset_spec(dataset, name=name, split=split, relevance_level=relevance_level,
                                    drop_self_hits=drop_self_hits))


def _dataset_spec(dataset: PathLike, *, name: str | None, **options: Any) -> DatasetSpec:
    path = Path(dataset)
    if not path.exists() and not path.is_absolute() and path.parent == Path("data"):
        shipped = shipped_folder("data") / path.name
        path = shipped if shipped.is_dir() else path
    if path.exists():
        raw = {"name": name or path.resolve().name, "path": path.resolve(), **options}
    elif path.is_absolute() or str(dataset).startswith((".", "~", f"data{os.sep}")):
        raise HarnessError(f"{dataset}: dataset folder not found; {BEIR_LAYOUT}; or give an ir_datasets id")
    else:
        raw = {"name": name or str(dataset), "ir_datasets": str(dataset), **options}
    return validated(DatasetSpec, raw, "dataset options")


# ---------------------------------------------------------------- one model, in memory


def evaluate_model(
    model: Any,
    dataset: PathLike | Dataset,
    *,
    metrics: Sequence[str] = tuple(DEFAULT_METRICS),
    top_k: int = 1000,
    name: str | None = None,
    split: str = "test",
    relevance_level: int = 1,
    drop_self_hits: bool = False,
    similarity: Similarity = "dot",
    batch_size: int = 32,
    precision: Precision = "fp32",
    device: Device = "auto",
    engine: EngineName = "fast",
    max_seq_length: int | None = None,
    query_prefix: str = "",
    document_prefix: str = "",
    document_model: Any = None,
    latency_calls: int = LATENCY_CALLS,
    progress: bool = True,
) -> ScoredRun:
    """Encode a data set with a model, search exactly, and score the ranking: all in memory, no file written
    (no record, no embedding cache).

    ``model``: a loaded ``SentenceTransformer`` (used as it is: not reloaded, moved, cast or left changed;
    its device is used) or a model id / local path / ``bundled:all-MiniLM-L6-v2``. ``dataset``: a BEIR folder,
    an ir_datasets id, or a `Dataset` from `load_dataset` (``split``, ``relevance_level`` and ``drop_self_hits``
    apply when the data set is loaded here). Returns the record, every metric per query, and the ranking.

    ``document_model`` (backward compatibility): the corpus is encoded by this model instead (a loaded
    ``SentenceTransformer``, a model id / path, or a mapping in the suite's ``document_model`` form, e.g.
    ``{"model": ..., "precision": "fp32"}``; ``document_prefix`` goes to it) and ``model`` encodes the queries only;
    ``{"record": DIR}`` searches that record's stored corpus embeddings (read from ``$HARNESS_CACHE``).
    """
    from harness.encode.models import Encoder
    from harness.encode.store import MemoryStore
    from harness.pipeline.compat import check_dimensions, corpus_source
    from harness.pipeline.runner import run_one

    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise HarnessError(f"evaluate_model(top_k={top_k!r}): top_k must be a positive whole number, e.g. 1000")
    problem = cutoff_problem(metrics, top_k)
    if problem:
        raise HarnessError(f"evaluate_model(metrics=..., top_k={top_k}): {problem}")
    loaded_model = not isinstance(model, (str, os.PathLike))
    if loaded_model:
        _require_sentence_transformer(model)
    model_id = _model_id(model) if loaded_model else str(model)
    encoder_spec = validated(EncoderSpec, {
        "name": name or Path(model_id).name or model_id, "model": model_id, "similarity": similarity,
        "max_seq_length": max_seq_length, "batch_size": batch_size, "precision": precision, "device": device,
        "engine": engine, "query_prefix": query_prefix,
        "document_prefix": document_prefix if document_model is None else ""}, "encoder options")
    if isinstance(dataset, Dataset):
        dataset_spec = DatasetSpec.model_construct(name=dataset.name)  # loaded already: the spec only names it
    else:
        dataset_spec = _dataset_spec(dataset, name=None, split=split, relevance_level=relevance_level,
                                     drop_self_hits=drop_self_hits)
    suite = validated(Suite, {"name": "evaluate_model", "datasets": [dataset_spec], "encoders": [encoder_spec],
                               "metrics": metrics, "top_k": top_k}, "evaluation options")
    data = dataset if isinstance(dataset, Dataset) else _load_spec(dataset_spec)
    options = run_options(latency_calls=latency_calls, progress=progress)
    store = MemoryStore(len(data.corpus), chunk_rows=len(data.corpus))
    loaded_documents = document_model is not None and not isinstance(document_model, (str, os.PathLike, dict))
    if loaded_documents:
        _require_sentence_transformer(document_model)
    with _unchanged(model) if loaded_model else nullcontext(), \
            _unchanged(document_model) if loaded_documents else nullcontext():
        encoder = Encoder.from_model(model, encoder_spec) if loaded_model else Encoder(encoder_spec)
        if document_model is None:
            return run_one(suite, data, encoder, options, store=store)
        documents = corpus_source(document_model, encoder_spec, document_prefix=document_prefix,
                                  model_id=_model_id(document_model) if loaded_documents else None)
        check_dimensions(encoder, documents)
        return run_one(suite, data, encoder, options, store=None if documents.record else store, documents=documents)


def _require_sentence_transformer(model: Any) -> None:
    from sentence_transformers import SentenceTransformer

    if not isinstance(model, SentenceTransformer):
        raise HarnessError(f"model must be a loaded SentenceTransformer or a model id/path, got {type(model).__name__}")


def _model_id(model: Any) -> str:
    """What a loaded model was loaded from (its Hugging Face id or folder), for the record."""
    first = model[0] if len(model) else None
    config = getattr(getattr(first, "auto_model", None), "config", None)
    return str(getattr(config, "_name_or_path", "") or getattr(model.model_card_data, "base_model", "")
               or type(model).__name__)


@contextmanager
def _unchanged(model: Any) -> Iterator[None]:
    """Encoding needs eval mode; a model from a training loop gets its train/eval flags back afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


# ---------------------------------------------------------------- suites


@dataclass(frozen=True)
class SuiteResult:
    """Every dataset x encoder of a suite: results (and record directories when written) and failures."""

    suite: Suite
    outcomes: list[RunOutcome]

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)

    @property
    def failures(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def results(self) -> list[ScoredRun]:
        return [o.result for o in self.outcomes if o.result is not None]

    @property
    def paths(self) -> list[Path]:
        return [o.path for o in self.outcomes if o.path is not None]

    def require_ok(self) -> None:
        """HarnessError naming each dataset x encoder that failed (a check on a partial run checks nothing)."""
        if not self.ok:
            raise HarnessError(f"{len(self.failures)} of {len(self.outcomes)} dataset x encoder run(s) failed, so "
                               "nothing was checked:\n" + "\n".join(
                                   f"  {o.dataset} × {o.encoder}: {o.error}" for o in self.failures))

    def to_table(self) -> str:
        table = results_table(self.suite.metrics, [r.record for r in self.results]) if self.results else ""
        failed = "\n".join(f"FAILED {o.dataset} × {o.encoder}: {o.error}" for o in self.failures)
        return "\n\n".join(part for part in (table, failed) if part)

    def _repr_markdown_(self) -> str:
        parts = [f"**suite {md_escape(self.suite.name)}**"]
        if self.results:
            parts.append(markdown_table(*_results_rows(self.suite.metrics, [r.record for r in self.results])))
        parts += [md_escape(f"FAILED {o.dataset} × {o.encoder}: {o.error}") for o in self.failures]
        return "\n\n".join(parts)


def results_table(metrics: Sequence[str], records: Sequence[RunRecord]) -> str:
    """The table `harness run` prints: one row per record, metrics then speed."""
    return text_table(*_results_rows(metrics, records))


def _results_rows(metrics: Sequence[str], records: Sequence[RunRecord]) -> tuple[list[str], list[list[str]]]:
    headers = ["dataset", "encoder", *metrics, "passages/s", "query p50 ms", "search s"]
    rows = [[record.dataset.name, record.name, *(f"{record.metrics[m]:.4f}" for m in metrics), *_speed_cells(record)]
            for record in records]
    return headers, rows


def _speed_cells(record: RunRecord) -> list[str]:
    perf = record.performance
    if perf is None:  # an external run: nothing was timed
        return ["-", "-", "-"]
    return [fmt_num(perf.throughput.passages_per_s), f"{perf.query_latency.p50:.1f}", f"{perf.search_s:.2f}"]


def run_suite(
    suite: PathLike | Suite,
    *,
    output: PathLike | None = None,
    cache: PathLike | None = None,
    store_dtype: StoreDtype = "auto",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: bool = True,
    fail_fast: bool = False,
    executor: Executor = "local",
    ray_address: str | None = None,
    reuse_embeddings: ReuseEmbeddings | None = None,
    latency_calls: int = LATENCY_CALLS,
    label: str | None = None,
    mlflow: str | None = None,
    mlflow_experiment: str | None = None,
    on_outcome: Callable[[RunOutcome], None] | None = None,
) -> SuiteResult:
    """Evaluate every dataset x encoder of a suite (a file, a shipped suite name such as ``quick``, or a `Suite`).

    With ``output`` each result is also written as a record directory there (what `harness run` does);
    without, results stay in memory. A dataset x encoder that fails is recorded in the result (and logged)
    and the rest still runs, unless ``fail_fast``. Corpus embeddings are cached (``cache``, default
    ``$HARNESS_CACHE`` or ``~/.cache/harness``) in chunks of ``chunk_rows`` as ``store_dtype`` (auto: fp16 from 1M
    passages) and reused when their key (weights, data, settings, engine versions and library versions) matches;
    ``reuse_embeddings="never"`` encodes every corpus again (default: the suite's ``reuse_embeddings``).
    ``executor="ray"`` encodes on Ray Data workers (``ray_address``: a cluster; default a local one).
    ``latency_calls``: single-query calls timed. ``label``: the version label of every encoder's records (replaces
    the suite's ``version:``). ``mlflow``: also log each written record to this tracking URI.
    ``on_outcome`` is called as each dataset x encoder finishes."""
    from harness.pipeline.runner import run_suite as run

    loaded = suite if isinstance(suite, Suite) else load_suite(suite)
    if label is not None:
        loaded = loaded.labelled(label)
    options = run_options(output=output, cache=cache, store_dtype=store_dtype, chunk_rows=chunk_rows,
                          progress=progress, fail_fast=fail_fast, executor=executor, ray_address=ray_address,
                          reuse_embeddings=reuse_embeddings, latency_calls=latency_calls)
    if mlflow:
        from harness.reporting.tracking import require_mlflow

        require_mlflow()
    result = SuiteResult(loaded, run(loaded, options, on_outcome=on_outcome))
    if mlflow:
        from harness.reporting.tracking import log_run_records

        log_run_records(mlflow, [(o.record, o.path) for o in result.outcomes if o.ok and o.path],
                        experiment=mlflow_experiment)
    return result


def run_options(*, output: PathLike | None = None, cache: PathLike | None = None, store_dtype: StoreDtype = "auto",
                chunk_rows: int = DEFAULT_CHUNK_ROWS, progress: bool = True, fail_fast: bool = False,
                executor: Executor = "local", ray_address: str | None = None,
                reuse_embeddings: ReuseEmbeddings | None = None, latency_calls: int = LATENCY_CALLS) -> RunOptions:
    """The one place a `RunOptions` is built (every keyword checked), for `run_suite`, `sweep` and `check`."""
    from harness.pipeline.runner import RunOptions

    return validated(RunOptions, {
        "output": _path(output), "cache": _path(cache), "store_dtype": store_dtype, "chunk_rows": chunk_rows,
        "progress": progress, "fail_fast": fail_fast, "executor": executor, "ray_address": ray_address,
        "reuse_embeddings": reuse_embeddings, "latency_calls": latency_calls}, "run options")


def sweep(
    suite: PathLike | Suite,
    *,
    grid: Sequence[str] | None = None,
    output: PathLike | None = None,
    cache: PathLike | None = None,
    progress: bool = True,
    fail_fast: bool = False,
    reuse_embeddings: ReuseEmbeddings | None = None,
    latency_calls: int = LATENCY_CALLS,
    label: str | None = None,
    mlflow: str | None = None,
    mlflow_experiment: str | None = None,
    on_outcome: Callable[[RunOutcome], None] | None = None,
) -> SuiteResult:
    """Run every suite encoder at each point of an engine x precision x max_seq_length grid (`harness sweep`):
    ``grid`` as ``["engine=fast,onnxruntime", "precision=fp32,int8"]``, default the suite's ``grid:`` block. Points
    that cannot run are skipped (logged); ``SuiteResult.suite`` is the expanded suite. Other options: `run_suite`."""
    from harness.input.grid import expand_suite, parse_grid_args

    loaded = suite if isinstance(suite, Suite) else load_suite(suite)
    points = parse_grid_args(list(grid)) if grid else loaded.grid
    if not points:
        raise HarnessError(f"{loaded.source or loaded.name}: no grid: give --grid KEY=V1,V2 ... or a grid: block "
                           "in the suite")
    swept, _ = expand_suite(loaded, points)
    return run_suite(swept, output=output, cache=cache, progress=progress, fail_fast=fail_fast,
                     reuse_embeddings=reuse_embeddings, latency_calls=latency_calls, label=label, mlflow=mlflow,
                     mlflow_experiment=mlflow_experiment, on_outcome=on_outcome)


def _path(value: PathLike | None) -> Path | None:
    return None if value is None else Path(value)


# ---------------------------------------------------------------- records: compare, check, report

def compare(
    *records: PathLike | ScoredRun | RunOutcome | SuiteResult,
    control: str | None = None,
    metrics: Sequence[str] | None = None,
    alpha: float = 0.05,
    test: Test = "randomization",
    seed: int = 0,
    n_resamples: int = 10_000,
    queries: int = 0,
) -> Comparison:
    """Paired significance tests between records of the same dataset (the first, or the encoder named
    ``control``, is the control): record directories, results folders, or scored runs in memory. Renders
    itself as a table in Jupyter. ``queries``: also list the that many queries each treatment lost and gained
    most on (the first of ``metrics``, else nDCG@10), with texts, relevant documents' ranks and the new top 3."""
    from harness.analysis.compare import compare_runs

    return compare_runs(scored_runs(records), control=control, metrics=metrics, queries=queries,
                        stats=StatsOptions(alpha=alpha, test=test, seed=seed, n_resamples=n_resamples))


def scored_runs(items: Sequence[PathLike | ScoredRun | RunOutcome | SuiteResult]) -> list[ScoredRun]:
    """Every scored run that ``items`` name: record folders and results folders (read from disk), scored runs in
    memory (as they are), a suite's outcomes (their records when written, else their results in memory)."""
    runs: list[ScoredRun] = []
    for item in items:
        if isinstance(item, SuiteResult):
            runs += scored_runs(item.outcomes)
        elif isinstance(item, RunOutcome):
            if item.result is None:
                raise HarnessError(f"{item.dataset} × {item.encoder} failed, so it has no scored run: {item.error}")
            runs += scored_runs([item.result])
        elif isinstance(item, ScoredRun):
            runs.append(item)
        elif isinstance(item, (str, os.PathLike)):
            runs += load_scored_runs([item])
        else:
            raise HarnessError(f"cannot compare a {type(item).__name__}: give record directories, results "
                               "folders, or results of evaluate_model / run_suite / evaluate_run")
    return label_runs(runs)


def check(
    suite: PathLike | Suite,
    *,
    results: Sequence[PathLike] | None = None,
    output: PathLike | None = None,
    cache: PathLike | None = None,
    reuse_embeddings: ReuseEmbeddings | None = None,
    latency_calls: int = LATENCY_CALLS,
    seed: int = 0,
    n_resamples: int = 10_000,
    progress: bool = True,
    json: PathLike | None = None,
    junit: PathLike | None = None,
    summary: PathLike | None = None,
    report_link: str | None = None,
    on_outcome: Callable[[RunOutcome], None] | None = None,
) -> CheckReport:
    """A suite's expected scores and baselines (`harness check`), on the records under ``results``, or on a
    fresh run of the suite (records written under ``output`` if given; a dataset x encoder that fails raises
    HarnessError naming each). ``report.failed`` lists what FAILed. ``json`` / ``junit``: also write the summary
    as JSON / JUnit XML there; ``summary``: as GitHub-flavoured Markdown for a pull request (appended when it is
    $GITHUB_STEP_SUMMARY), naming ``report_link`` as the full report."""
    from harness.analysis.check import check_suite, select_records, write_outputs

    loaded = suite if isinstance(suite, Suite) else load_suite(suite)
    if results is not None:
        runs = load_scored_runs(results)
        where = ", ".join(map(str, results))
    else:
        ran = run_suite(loaded, output=output, cache=cache, progress=progress, reuse_embeddings=reuse_embeddings,
                        latency_calls=latency_calls, on_outcome=on_outcome)
        ran.require_ok()
        runs = scored_runs([ran])
        where = str(output) if output is not None else "the fresh run"
    report = check_suite(loaded, select_records(loaded, runs, where),
                         stats=StatsOptions(seed=seed, n_resamples=n_resamples))
    write_outputs(report, json_path=_path(json), junit_path=_path(junit), summary_path=_path(summary),
                  report_link=report_link)
    return report


def served_check(
    suite: PathLike | Suite,
    *,
    output: PathLike | None = None,
    cache: PathLike | None = None,
    tolerance: float = 1e-4,
    alpha: float = 0.05,
    seed: int = 0,
    n_resamples: int = 10_000,
    reuse_embeddings: ReuseEmbeddings | None = None,
    latency_calls: int = LATENCY_CALLS,
    progress: bool = True,
    json: PathLike | None = None,
    on_outcome: Callable[[RunOutcome], None] | None = None,
) -> ServedCheck:
    """Is each served model the offline model it should be (`harness served-check`)? Every encoder with engine
    http and ``endpoint.reference_model`` runs through its server and, as its offline twin, in this process; the
    result pairs them per dataset: the vectors' agreement on a sample and every metric's paired change. ``ok`` is
    False when a pair differs (vectors, or a metric moved by more than ``tolerance`` significantly at ``alpha``).
    ``json``: also write the result there."""
    from harness.analysis.served import served_check as check_served
    from harness.pipeline.served import with_offline_twins

    if not 0 <= tolerance < 1:
        raise HarnessError(f"tolerance {tolerance} is a metric difference: give a number in [0, 1), e.g. 1e-4")
    loaded = suite if isinstance(suite, Suite) else load_suite(suite)
    twinned, names = with_offline_twins(loaded)
    ran = run_suite(twinned, output=output, cache=cache, progress=progress, reuse_embeddings=reuse_embeddings,
                    latency_calls=latency_calls, on_outcome=on_outcome)
    ran.require_ok()
    runs = {(r.dataset, r.record.encoder.name): r for r in scored_runs([ran]) if r.record.encoder}
    pairs = [(runs[d.name, offline], runs[d.name, served]) for d in loaded.datasets for offline, served in names]
    result = check_served(pairs, tolerance=tolerance,
                          stats=StatsOptions(alpha=alpha, seed=seed, n_resamples=n_resamples))
    if json is not None:
        import json as json_module

        from harness.vocabulary.files import write_file

        write_file(json, json_module.dumps(result.to_dict(), indent=2) + "\n", what="the served-check result")
    return result


def load_profile(
    suite: PathLike | Suite,
    *,
    rates: Sequence[float] = (),
    concurrency: Sequence[int] = (),
    duration: float = 30.0,
    warmup: float = 5.0,
    workload: Literal["query", "ingest"] = "query",
    batch_size: int | None = None,
    slo_p99_ms: float = 100.0,
    seed: int = 0,
    max_in_flight: int = 1024,
    output: PathLike = "results/serving",
    cache: PathLike | None = None,
    label: str | None = None,
    on_point: Callable[[LoadPoint], None] | None = None,
) -> list[tuple[ServingRecord, Path]]:
    """Each served encoder of a suite (engine http) under load (`harness load`), with each dataset's real texts:
    open loop at each offered rate in ``rates`` (requests/s on a Poisson schedule, latency from the intended send
    time) and closed loop at each ``concurrency``, each point ``warmup`` then ``duration`` seconds. ``workload``:
    one query per request, or ``ingest``: ``batch_size`` passages per request (default the encoder's). The
    saturation rate is the highest offered rate up to which every offered rate kept p99 within ``slo_p99_ms``, with
    no errors. One serving record per encoder x dataset under ``output``; returns (record, folder) for each."""
    from harness.pipeline.serving import LoadOptions
    from harness.pipeline.serving import load_profile as profile_load

    loaded = suite if isinstance(suite, Suite) else load_suite(suite)
    if label is not None:
        loaded = loaded.labelled(label)
    options = validated(LoadOptions, dict(rates=list(rates), concurrency=list(concurrency), duration_s=duration,
                                          warmup_s=warmup, workload=workload, batch_size=batch_size,
                                          slo_p99_ms=slo_p99_ms, seed=seed, max_in_flight=max_in_flight,
                                          cache=_path(cache)), "load options")
    return profile_load(loaded, options, output=Path(output), on_point=on_point)


def check_serving(
    serving: Sequence[PathLike],
    *,
    rate: float | None = None,
    max_slowdown: float = 0.10,
    alpha: float = 0.05,
    json: PathLike | None = None,
    junit: PathLike | None = None,
    summary: PathLike | None = None,
    report_link: str | None = None,
) -> CheckReport:
    """The serving gate (`harness check --serving BASELINE NEW`): two `harness load` records of the same workload
    (two server versions, two hardware targets). p99 at ``rate`` (default: the baseline's saturation rate) by the
    speed gate, and the saturation rate; FAIL on a significant slowdown beyond ``max_slowdown``."""
    from harness.analysis.check import CheckReport as Report
    from harness.analysis.check import write_outputs
    from harness.analysis.serving import serving_results
    from harness.input.suite import SpeedGate
    from harness.scoring.records import load_serving_record

    if len(serving) != 2:
        raise HarnessError(f"the serving gate compares two serving records (BASELINE NEW); got {len(serving)}")
    base, new = (load_serving_record(Path(p)) for p in serving)
    gate = validated(SpeedGate, {"max_slowdown": max_slowdown, "alpha": alpha}, "serving gate")
    report = Report(suite=f"serving {base.name} → {new.name}",
                    results=serving_results(base, new, gate=gate, rate=rate),
                    records={"baseline": str(serving[0]), "new": str(serving[1])},
                    notes=[f"baseline: {base.label} on {base.environment.cpu_model}; new: {new.label} on "
                           f"{new.environment.cpu_model}; SLO p99 {base.slo_p99_ms:g} ms"])
    write_outputs(report, json_path=_path(json), junit_path=_path(junit), summary_path=_path(summary),
                  report_link=report_link)
    return report


def churn(
    a: PathLike | ScoredRun | RunOutcome,
    b: PathLike | ScoredRun | RunOutcome,
    *,
    k: int = 10,
    p: float = 0.9,
    output: PathLike | None = None,
    metrics: Sequence[str] | None = None,
    seed: int = 0,
    n_resamples: int = 10_000,
) -> Churn:
    """Ranking churn of B against A (`harness churn`): per query overlap@k and rank-biased overlap (RBO_ext,
    persistence ``p``) of the two rankings, and the paired per-query metric deltas of `compare`. A and B: record
    directories (or scored runs in memory) of the same dataset. With ``output``, writes churn.json, churn.csv and
    churn.png there. Renders itself as tables in Jupyter."""
    from harness.analysis.churn import churn as churn_between

    runs = []
    for item in (a, b):
        found = scored_runs([item])
        if len(found) != 1:
            raise HarnessError(f"churn compares two single records; {item} holds {len(found)} run records")
        runs.append(found[0])
    result = churn_between(runs[0], runs[1], k=k, p=p, metrics=metrics,
                           stats=StatsOptions(seed=seed, n_resamples=n_resamples))
    if output is not None:
        from harness.reporting import save_churn

        save_churn(result, Path(output))
    return result


@dataclass(frozen=True)
class Report:
    """A written report: its data (comparison, CIs, curves) and every file written."""

    data: ReportData
    files: list[Path] = field(default_factory=list)

    @property
    def html(self) -> Path | None:
        return next((p for p in self.files if p.name == "report.html"), None)

    @property
    def markdown(self) -> Path | None:
        return next((p for p in self.files if p.name == "report.md"), None)

    def _repr_html_(self) -> str | None:  # Jupyter: the self-contained HTML report, figures included
        return self.html.read_text(encoding="utf-8") if self.html else None

    def _repr_markdown_(self) -> str:
        comparison = self.data.comparison._repr_markdown_() if self.data.comparison else "one record per dataset"
        where = md_escape(self.markdown or self.html)
        return f"{len(self.data.runs)} run record(s), {len(self.files)} files (report: {where})\n\n{comparison}"


def report(
    records: Sequence[PathLike],
    *,
    output: PathLike,
    formats: Sequence[Literal["html", "md"]] = ("html", "md"),
    control: str | None = None,
    metric: str | None = None,
    alpha: float = 0.05,
    test: Test = "randomization",
    seed: int = 0,
    n_resamples: int = 10_000,
    churn: bool = False,
    queries: int = 0,
) -> Report:
    """An HTML/Markdown report with plots and exports (`harness report`) from record directories or results
    folders, written under ``output``. ``churn``: add a ranking-churn section (overlap@10 and RBO of each record
    against its dataset's control, `harness churn`). ``queries``: add the that many queries each treatment lost and
    gained most on the primary metric (texts, relevant documents' ranks, new top 3)."""
    from harness.reporting import build_report, load_report_data

    if isinstance(records, (str, os.PathLike)):
        records = [records]
    data = load_report_data([Path(p) for p in records], control=control, metric=metric, churn=churn, queries=queries,
                            stats=StatsOptions(alpha=alpha, test=test, seed=seed, n_resamples=n_resamples))
    return Report(data, build_report(data, Path(output), formats=formats))


def history(
    records: Sequence[PathLike] | PathLike,
    *,
    output: PathLike | None = None,
    formats: Sequence[Literal["html", "md"]] = ("html", "md"),
    metrics: Sequence[str] | None = None,
    baseline: str | None = None,
    margins: Mapping[str, float] | None = None,
    alpha: float = 0.05,
    test: Test = "randomization",
    seed: int = 0,
    n_resamples: int = 10_000,
    queries: int = 0,
) -> History:
    """Every record of each dataset x encoder lineage in version order (`harness history`): a ledger (each metric
    with its CI and its change from the previous version, passages/s, query p99, the gate against the ``baseline``
    version, default the first) and where each metric's gate first failed; ``margins`` (metric -> margin) gate by
    non-inferiority, else by a significant loss. With ``output``, written there as history.md/.html/.csv/.json
    and trend plots; the result renders itself in Jupyter. ``queries``: at each significant step, the that many
    queries that lost and gained most on the first metric."""
    from harness.reporting.history import build_history, load_history

    if isinstance(records, (str, os.PathLike)):
        records = [records]
    stats = StatsOptions(alpha=alpha, test=test, seed=seed, n_resamples=n_resamples)
    for metric, margin in (margins or {}).items():
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 < margin < float("inf"):
            raise HarnessError(f"margin for {metric}: {margin!r}; give a positive number in metric units, e.g. 0.005")
    data = load_history([Path(p) for p in records], metrics=metrics, baseline=baseline, margins=margins,
                        stats=stats, queries=queries)
    return build_history(data, Path(output), formats=formats) if output is not None else data


# ---------------------------------------------------------------- profiling, power, the embedding cache


def profile(
    models: Sequence[str],
    *,
    engine: Sequence[EngineName] = ("fast", "sentence-transformers"),
    precision: Sequence[Precision] = ("fp32",),
    batch_size: Sequence[int] = (1, 32),
    max_seq_length: Sequence[int | None] = (None,),
    device: Sequence[Device] = ("auto",),
    data: PathLike | None = None,
    synthetic_tokens: int = 77,
    n: int = 256,
    warmup: int = 2,
    min_calls: int = 20,
    min_seconds: float = 2.0,
    max_seconds: float = 60.0,
    output: PathLike = "results",
    name: str | None = None,
    mlflow: str | None = None,
    mlflow_experiment: str | None = None,
    on_point: Callable[[Any], None] | None = None,
    on_skip: Callable[[str], None] | None = None,
) -> list[tuple[ProfileRecord, Path]]:
    """Time each model over engine x precision x batch size x max_seq_length x device (`harness profile`) on ``n``
    real passages from ``data`` (a BEIR folder or a collection.tsv) or synthetic texts of ``synthetic_tokens``
    tokens; each point warms up, then times at least ``min_calls`` calls and ``min_seconds`` (at most
    ``max_seconds`` once the calls are done). One profile record per model is written under ``output`` (and logged
    to ``mlflow``); returns (record, folder) for each. ``on_point`` sees each point measured, ``on_skip`` why a
    combination could not run."""
    from harness.pipeline.sweep import dataset_texts, profile_model, profile_record, synthetic_texts
    from harness.scoring.records import write_profile_record

    if warmup < 0 or min_seconds < 0 or max_seconds <= 0:
        raise HarnessError("--warmup and --min-seconds must be >= 0 and --max-seconds > 0 (keywords warmup, "
                           "min_seconds, max_seconds)")
    if mlflow:
        from harness.reporting.tracking import require_mlflow

        require_mlflow()
    if data is not None:
        folder = Path(data).resolve()
        texts = dataset_texts(folder, n)
        source: dict[str, object] = {"kind": "data", "path": str(folder), "n": len(texts)}
        label = name or folder.name
    else:
        texts = synthetic_texts(n, synthetic_tokens)
        source = {"kind": "synthetic", "tokens": synthetic_tokens, "n": n}
        label = name or f"synthetic-{synthetic_tokens}"
    written = []
    for model in models:
        skipped: dict[str, None] = {}  # why combinations could not run, in order, once each
        info, points = profile_model(
            model, texts, engines=engine, precisions=precision, batch_sizes=batch_size,
            max_seq_lengths=max_seq_length, devices=device, warmup=warmup, min_calls=min_calls,
            min_seconds=min_seconds, max_seconds=max_seconds, on_point=on_point, on_skip=skipped.setdefault)
        if not points:
            raise HarnessError(f"{model}: nothing to profile: {'; '.join(skipped)}")
        for problem in skipped:
            if on_skip is not None:
                on_skip(problem)
        record = profile_record(label, info, source, points)
        path = write_profile_record(Path(output), record)
        if mlflow:
            from harness.reporting.tracking import log_profile_record

            log_profile_record(mlflow, record, path, experiment=mlflow_experiment)
        written.append((record, path))
    return written


def power(records: Sequence[PathLike], *, alpha: float = 0.05, power: float = 0.8, effect: float | None = None,
          metrics: Sequence[str] | None = None) -> PowerReport:
    """The minimum detectable paired effect per dataset and metric (`harness power`), from the per-query variance of
    the records (several records of a dataset are paired with its first); with ``effect``, also the queries needed
    to detect that mean difference."""
    from harness.analysis.power import power_report

    return power_report([Path(p) for p in records], alpha=alpha, power=power, effect=effect, metrics=metrics)


def cache_stores(*, cache: PathLike | None = None) -> tuple[list[StoreEntry], list[Path]]:
    """The embedding stores under ``cache`` (default ``$HARNESS_CACHE`` or ``~/.cache/harness``), and the entries
    there that are not the harness's (never listed as stores, never removed)."""
    from harness.encode.store import cache_root, foreign_entries, list_stores

    root = Path(cache) if cache is not None else cache_root()
    return list_stores(root), foreign_entries(root)


def clear_cache(*, cache: PathLike | None = None, older_than: float | None = None) -> list[str]:
    """Remove the harness's embedding stores under ``cache`` (only those unchanged for ``older_than`` seconds, if
    given); returns the keys removed."""
    from harness.encode.store import cache_root, clear_stores

    return clear_stores(Path(cache) if cache is not None else cache_root(), older_than_s=older_than)
