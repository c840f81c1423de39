"""Command line: thin wrappers over the library. Exit codes: 0 ok, 1 regression, 2 bad usage/input."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.vocabulary.errors import HarnessError
from harness.vocabulary.files import write_file
from harness.vocabulary.precision import LOCAL_ENGINES, PRECISIONS
from harness.vocabulary.tables import text_table

if TYPE_CHECKING:
    from harness.api import SuiteResult


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2 too; keep our one-line style
        self.print_usage(sys.stderr)
        raise HarnessError(f"usage: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description="Retrieval evaluation and benchmarking harness.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="evaluate every dataset x encoder of a suite")
    run.add_argument("suite", type=Path, help="a suite file, or a shipped suite (quick, suites/quick.yaml, ...)")
    run.add_argument("--output", "-o", type=Path, default=Path("results"), help="results folder (default: results)")
    run.add_argument("--cache", type=Path, default=None, help="embedding cache (default: $HARNESS_CACHE or "
                                                               "~/.cache/harness)")
    run.add_argument("--store-dtype", choices=("auto", "fp32", "fp16"), default="auto",
                     help="dtype of cached corpus embeddings (default auto: fp16 from 1M passages, else fp32)")
    run.add_argument("--chunk-rows", type=int, default=16384, help="corpus rows per cached chunk")
    run.add_argument("--no-progress", action="store_true")
    run.add_argument("--fail-fast", action="store_true",
                     help="stop at the first dataset x encoder that fails (default: record it, run the rest, exit 2)")
    run.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="where corpus chunks are encoded: this process, or Ray Data workers (pip install .[ray])")
    run.add_argument("--address", default=None, help="Ray cluster address (default: start a local cluster)")
    _encoding_options(run)
    _label_option(run)
    _mlflow_option(run)
    run.set_defaults(func=cmd_run)

    sweep = sub.add_parser("sweep", help="run every suite encoder at each engine x precision x max_seq_length "
                                         "grid point (quality and speed; cached points cost no encoding)")
    sweep.add_argument("suite", type=Path, help="a suite file, or a shipped suite")
    sweep.add_argument("--grid", nargs="+", metavar="KEY=V1,V2", default=None,
                       help="e.g. engine=fast,onnxruntime precision=fp32,int8 max_seq_length=128,256 "
                            "(default: the suite's grid: block)")
    sweep.add_argument("--output", "-o", type=Path, default=Path("results"), help="results folder (default: results)")
    sweep.add_argument("--cache", type=Path, default=None, help="embedding cache (as for `run`)")
    sweep.add_argument("--no-progress", action="store_true")
    sweep.add_argument("--fail-fast", action="store_true", help="stop at the first point that fails")
    _encoding_options(sweep)
    _label_option(sweep)
    _mlflow_option(sweep)
    sweep.set_defaults(func=cmd_sweep)

    cache = sub.add_parser("cache", help="list or clear cached corpus embeddings")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True, parser_class=_Parser)
    for name, helptext in (("ls", "list stores with sizes"), ("clear", "remove stores")):
        p = cache_sub.add_parser(name, help=helptext)
        p.add_argument("--cache", type=Path, default=None)
        if name == "clear":
            p.add_argument("--older-than", type=_duration, default=None, metavar="AGE",
                           help="only stores not modified for AGE (e.g. 30m, 12h, 7d)")
    cache.set_defaults(func=cmd_cache)

    profile = sub.add_parser("profile", help="time encoders over engine x precision x batch size x length x device")
    profile.add_argument("--model", "-m", action="append", dest="models", required=True,
                         help="HF id, local path, bundled:all-MiniLM-L6-v2 or random:distilbert-base (repeatable)")
    profile.add_argument("--engine", type=_encoder_choices("engine"), default="fast,sentence-transformers",
                         help=f"comma list of {', '.join(LOCAL_ENGINES)} (default: both)")
    profile.add_argument("--precision", type=_encoder_choices("precision"), default="fp32",
                         help=f"comma list of {', '.join(PRECISIONS)} "
                              "(int8: fast, onnxruntime or openvino on CPU; default fp32)")
    profile.add_argument("--batch-size", type=_positive_ints("batch sizes"), default="1,32",
                         help="comma list (default 1,32; batch 1 is the single-query latency scenario)")
    profile.add_argument("--max-seq-length", type=_positive_ints("max sequence lengths"), default=[None],
                         help="comma list of token limits (default: the model's)")
    profile.add_argument("--device", type=_encoder_choices("device"), default="auto",
                         help="comma list of auto, cpu, cuda (default auto)")
    texts = profile.add_mutually_exclusive_group()
    texts.add_argument("--data", type=Path, help="real passages from a BEIR folder or a collection.tsv")
    texts.add_argument("--synthetic-tokens", type=_positive_int("--synthetic-tokens"), default=77,
                       metavar="N", help="length-controlled text of exactly N tokens (default 77, MS MARCO's mean)")
    profile.add_argument("--n", type=_positive_int("--n"), default=256, help="texts to cycle (default 256)")
    profile.add_argument("--warmup", type=int, default=2, help="untimed calls per point (default 2)")
    profile.add_argument("--min-calls", type=_positive_int("--min-calls"), default=20,
                         help="timed calls per point, at least (default 20)")
    profile.add_argument("--min-seconds", type=float, default=2.0, help="timed seconds per point, at least (default 2)")
    profile.add_argument("--max-seconds", type=float, default=60.0,
                         help="stop a point after this long once --min-calls are done (default 60)")
    profile.add_argument("--output", "-o", type=Path, default=Path("results"), help="results folder (default: results)")
    profile.add_argument("--name", default=None, help="record name (default: synthetic-N or the data folder's name)")
    _mlflow_option(profile)
    profile.set_defaults(func=cmd_profile)

    lister = sub.add_parser("list", help="list shipped suites and data sets")
    lister.set_defaults(func=cmd_list)

    compare = sub.add_parser("compare", help="paired significance tests between records (first = control)")
    compare.add_argument("records", type=Path, nargs="+", help="record directories or results folders")
    _stats_options(compare)
    compare.add_argument("--control", help="encoder name of the control (default: the first record of a dataset)")
    compare.add_argument("--metric", action="append", dest="metrics", help="compare only this metric (repeatable)")
    compare.add_argument("--json", type=Path, help="also write the comparison as JSON here")
    compare.add_argument("--fail-on-regression", action="store_true",
                         help="exit 1 when a treatment is significantly worse on any metric")
    compare.add_argument("--queries", type=_positive_int("--queries"), default=0, metavar="N",
                         help="also list the N queries each treatment lost and gained most on (the first --metric, "
                              "else nDCG@10): text, relevant documents' ranks before -> after, the new top 3")
    compare.set_defaults(func=cmd_compare)

    churn = sub.add_parser("churn", help="how much the ranking changes between two records: overlap@k and "
                                         "rank-biased overlap per query, and the per-query metric deltas")
    churn.add_argument("a", type=Path, help="record directory of the reference ranking (A)")
    churn.add_argument("b", type=Path, help="record directory of the ranking compared with it (B)")
    churn.add_argument("--k", type=_positive_int("--k"), default=10, help="depth of overlap@k (default 10)")
    churn.add_argument("--p", type=float, default=0.9,
                       help="RBO persistence p in (0, 1) (default 0.9: the top 10 ranks weigh 86%%)")
    churn.add_argument("--metric", action="append", dest="metrics", help="compare only this metric (repeatable)")
    churn.add_argument("--output", "-o", type=Path, help="write churn.json, churn.csv and churn.png here")
    churn.add_argument("--seed", type=int, default=0, help="seed of the randomization test and bootstrap")
    churn.add_argument("--resamples", type=int, default=10_000, help="randomization/bootstrap resamples")
    churn.set_defaults(func=cmd_churn)

    check = sub.add_parser("check", help="check a suite's expected scores and baselines (exit 1 on FAIL)")
    check.add_argument("suite", type=Path, nargs="?", help="the suite (not with --serving)")
    check.add_argument("--results", type=Path, action="append",
                       help="use existing records from this folder instead of running the suite (repeatable)")
    check.add_argument("--output", "-o", type=Path, default=Path("out/check"),
                       help="where a fresh run writes its records (default: out/check)")
    check.add_argument("--cache", type=Path, default=None, help="embedding cache (as for `run`)")
    _encoding_options(check)
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--resamples", type=int, default=10_000)
    check.add_argument("--json", type=Path, help="write the summary as JSON here")
    check.add_argument("--junit", type=Path, help="write JUnit XML here (CI systems show it natively)")
    check.add_argument("--summary", type=Path, help="write GitHub-flavoured Markdown here for a pull-request comment "
                                                    "(appended when it is $GITHUB_STEP_SUMMARY)")
    check.add_argument("--report-link", metavar="URL_OR_PATH", help="where the full report is, for the summary")
    check.add_argument("--no-progress", action="store_true")
    check.add_argument("--serving", type=Path, nargs=2, metavar=("BASELINE", "NEW"),
                       help="instead of a suite: gate two `harness load` records (p99 at a rate, saturation rate)")
    check.add_argument("--rate", type=float, default=None,
                       help="--serving: the offered rate (req/s) to compare p99 at (default: the baseline's "
                            "saturation rate)")
    check.add_argument("--max-slowdown", type=float, default=0.10,
                       help="--serving: the slowdown a significant change must exceed to FAIL (default 0.10)")
    check.add_argument("--alpha", type=float, default=0.05, help="--serving: significance level (default 0.05)")
    check.set_defaults(func=cmd_check)

    load = sub.add_parser("load", help="a suite's served encoders (engine http) under load: latency against offered "
                                       "rate (open loop), throughput against concurrency (closed loop)")
    load.add_argument("suite", type=Path)
    load.add_argument("--rates", type=_positive_floats("rates"), default=[],
                      help="offered requests/s, comma list, open loop (Poisson arrivals; latency from the intended "
                           "send time), e.g. 5,10,20,40")
    load.add_argument("--concurrency", type=_positive_ints("concurrency levels"), default=[],
                      help="closed-loop workers, comma list, e.g. 1,2,4,8")
    load.add_argument("--duration", type=_duration, default=30.0, help="measured seconds per point (default 30s)")
    load.add_argument("--warmup", type=_duration, default=5.0, help="seconds sent before each point is measured "
                                                                   "(default 5s)")
    load.add_argument("--workload", choices=("query", "ingest"), default="query",
                      help="query: one query per request (default); ingest: batches of passages")
    load.add_argument("--batch", dest="batch_size", type=_positive_int("--batch"), default=None,
                      help="ingest: passages per request (default: the encoder's batch_size)")
    load.add_argument("--slo-p99-ms", type=float, default=100.0,
                      help="the p99 latency a sustained rate must keep (default 100 ms): sets the saturation rate")
    load.add_argument("--seed", type=int, default=0, help="seed of the Poisson schedule")
    load.add_argument("--max-in-flight", type=_positive_int("--max-in-flight"), default=1024,
                      help="requests outstanding at most; beyond, a request is not sent and counted (client-cap)")
    load.add_argument("--output", "-o", type=Path, default=Path("results/serving"))
    load.add_argument("--cache", type=Path, default=None, help="where corpus indexes are kept (as for `run`)")
    _label_option(load)
    load.set_defaults(func=cmd_load)

    served = sub.add_parser("served-check", help="is each served model (engine http) the offline model it should be? "
                                                 "vectors and metrics both ways (exit 1 when one differs)")
    served.add_argument("suite", type=Path)
    served.add_argument("--output", "-o", type=Path, default=Path("out/served-check"),
                        help="where the runs write their records (default: out/served-check)")
    served.add_argument("--cache", type=Path, default=None, help="embedding cache (as for `run`)")
    served.add_argument("--tolerance", type=float, default=1e-4,
                        help="a metric may move by this much (or insignificantly) and still be equal (default 1e-4)")
    served.add_argument("--alpha", type=float, default=0.05)
    served.add_argument("--seed", type=int, default=0)
    served.add_argument("--resamples", type=int, default=10_000)
    _encoding_options(served)
    served.add_argument("--json", type=Path, help="also write the result as JSON here")
    served.add_argument("--no-progress", action="store_true")
    served.set_defaults(func=cmd_served_check)

    power = sub.add_parser("power", help="minimum detectable paired effect per dataset and metric (and queries "
                                         "needed for an effect)")
    power.add_argument("records", type=Path, nargs="+",
                       help="record directories or results folders; several records of a dataset are paired with "
                            "its first (their per-query differences give the variance)")
    power.add_argument("--alpha", type=float, default=0.05, help="two-sided significance level (default 0.05)")
    power.add_argument("--power", type=float, default=0.8, help="probability of detecting the effect (default 0.8)")
    power.add_argument("--effect", type=float, default=None,
                       help="also print the queries needed to detect this mean difference (metric units)")
    power.add_argument("--metric", action="append", dest="metrics", help="only this metric (repeatable)")
    power.add_argument("--json", type=Path, help="also write the table as JSON here")
    power.set_defaults(func=cmd_power)

    evaluate = sub.add_parser("evaluate", help="score run files made elsewhere (--run), or records' stored rankings "
                                               "again, without encoding")
    evaluate.add_argument("records", type=Path, nargs="*",
                          help="record directories or results folders whose stored rankings to score again")
    evaluate.add_argument("--run", type=Path, action="append", dest="runs", default=[], metavar="RUN",
                          help="a run file: TREC (plain or .gz) or JSON {qid: {docid: score}} (repeatable)")
    evaluate.add_argument("--name", action="append", dest="names", metavar="NAME",
                          help="record name of each --run, in order (default: the file name without extensions)")
    evaluate.add_argument("--qrels", type=Path, help="a TREC or BEIR qrels file, or a BEIR folder; with record "
                                                     "directories: judgments added to their dataset's")
    evaluate.add_argument("--suite", type=Path, help="judge --run files by a dataset of this suite (with --dataset)")
    evaluate.add_argument("--dataset", help="the dataset's name in --suite")
    evaluate.add_argument("--split", default="test", help="qrels split of a BEIR folder (default test)")
    evaluate.add_argument("--dataset-name", help="dataset name in the records (default: the suite's, the folder's "
                                                 "or the qrels file's name)")
    evaluate.add_argument("--metrics", action="append", type=_comma_list,
                          help="comma list, e.g. nDCG@10,MRR@10,Recall@100 (repeatable; default: the suite's, the "
                               "record's, or MRR@10,nDCG@10,Recall@100,Recall@1000,MAP)")
    evaluate.add_argument("--relevance-level", type=int, default=None, metavar="N",
                          help="binary measures count grade >= N as relevant (default: the dataset's, else 1)")
    evaluate.add_argument("--output", "-o", type=Path, default=Path("results"), help="results folder (default: "
                                                                                       "results)")
    evaluate.set_defaults(func=cmd_evaluate)

    pooler = sub.add_parser("pool", help="the unjudged documents of records' top-k, with texts, for assessment")
    pooler.add_argument("records", type=Path, nargs="+", help="record directories or results folders (one data set)")
    pooler.add_argument("--depth", type=_positive_int("--depth"), default=10, help="top-k of each record (default 10)")
    pooler.add_argument("--qrels", type=Path, help="judgments collected since (a qrels file): not pooled again")
    pooler.add_argument("--data", type=Path, help="BEIR folder with the texts, for records scored against a qrels "
                                                  "file only")
    pooler.add_argument("--output", "-o", type=Path, required=True, help="the pool, TSV: query-id, corpus-id, text")
    pooler.set_defaults(func=cmd_pool)

    report = sub.add_parser("report", help="HTML/Markdown report with plots and exports from records")
    report.add_argument("records", type=Path, nargs="+", help="record directories or results folders")
    report.add_argument("--format", action="append", choices=("html", "md"), dest="formats",
                        help="html and/or md (repeatable; default both)")
    report.add_argument("--output", "-o", type=Path, required=True, help="report folder")
    report.add_argument("--control", help="encoder name of the control (default: the first record of a dataset)")
    report.add_argument("--metric", help="metric of the per-query delta plots (default nDCG@10 or the first)")
    report.add_argument("--churn", action="store_true",
                        help="add ranking churn (overlap@10, RBO) of each record against its dataset's control")
    report.add_argument("--queries", type=_positive_int("--queries"), default=0, metavar="N",
                        help="add the N queries each record lost and gained most on against its control")
    _stats_options(report)
    report.set_defaults(func=cmd_report)

    history = sub.add_parser("history", help="every record of each dataset x encoder lineage in version order: "
                                             "ledger, trend plots, where a gate first failed")
    history.add_argument("records", type=Path, nargs="+", help="record directories or results folders")
    history.add_argument("--output", "-o", type=Path, default=None,
                         help="folder for history.md/.html/.csv/.json and the plots (default: print the ledgers)")
    history.add_argument("--format", action="append", choices=("html", "md"), dest="formats",
                         help="html and/or md (repeatable; default both)")
    history.add_argument("--metric", action="append", dest="metrics", metavar="METRIC",
                         help="metrics to follow (repeatable; default every metric all versions have)")
    history.add_argument("--baseline", metavar="VERSION", help="the pinned version gates compare with (default: "
                                                              "each lineage's first)")
    history.add_argument("--margin", action="append", dest="margins", metavar="METRIC=MARGIN", type=_margin,
                         help="gate METRIC by non-inferiority to the baseline at this margin, e.g. nDCG@10=0.005 "
                              "(repeatable; without: a version fails when significantly worse)")
    history.add_argument("--queries", type=_positive_int("--queries"), default=0, metavar="N",
                         help="at each significant step, the N queries that lost and gained most on the first metric")
    history.add_argument("--fail-on-gate", action="store_true",
                         help="exit 1 when the newest version of a lineage fails its gate (for nightly CI)")
    _stats_options(history)
    history.set_defaults(func=cmd_history)
    return parser


def _margin(text: str) -> tuple[str, float]:
    metric, _, value = text.rpartition("=")
    try:
        margin = float(value)
    except ValueError:
        margin = float("nan")
    if not metric or not 0 < margin < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give METRIC=MARGIN with a positive margin, e.g. nDCG@10=0.005")
    return metric, margin


def _encoding_options(parser: argparse.ArgumentParser) -> None:
    from harness.analysis.stats import LATENCY_QUANTILE, calls_to_bound
    from harness.vocabulary.timing import LATENCY_CALLS

    parser.add_argument("--reuse-embeddings", choices=("auto", "never"), default=None,
                        help="auto: reuse cached corpus embeddings whose key (weights, data, settings, engine code and "
                             "library versions) matches; never: encode every corpus again (default: the suite's "
                             "reuse_embeddings, else auto)")
    parser.add_argument("--latency-calls", type=_positive_int("--latency-calls"), default=LATENCY_CALLS, metavar="N",
                        help=f"single-query calls timed at least, over at least a second, for the query latency "
                             f"figures (default {LATENCY_CALLS}; a baseline needs at least "
                             f"{calls_to_bound(LATENCY_QUANTILE, 0.975)} for the speed gate to bound its p99 at alpha "
                             "0.05)")


def _label_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label", default=None, metavar="VERSION",
                        help="the version label of every encoder's records (a git tag, a date, a training step); it "
                             "replaces the suite's version: and orders `harness history`")


def _stats_options(parser: argparse.ArgumentParser) -> None:
    from harness.vocabulary.statistics import TESTS

    parser.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm (default 0.05)")
    parser.add_argument("--test", choices=TESTS, default="randomization",
                        help="test behind verdicts and markers (both are always reported)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the randomization test and bootstrap")
    parser.add_argument("--resamples", type=int, default=10_000, help="randomization/bootstrap resamples")


def cmd_run(args: argparse.Namespace) -> int:
    from harness.api import run_suite

    result = run_suite(args.suite, output=args.output, cache=args.cache, store_dtype=args.store_dtype,
                       chunk_rows=args.chunk_rows, progress=not args.no_progress, fail_fast=args.fail_fast,
                       executor=args.executor, ray_address=args.address, reuse_embeddings=args.reuse_embeddings,
                       latency_calls=args.latency_calls, label=args.label, mlflow=args.mlflow,
                       mlflow_experiment=args.mlflow_experiment, on_outcome=_print_outcome)
    return _finish_runs(args, result)


def cmd_sweep(args: argparse.Namespace) -> int:
    from harness.api import sweep

    result = sweep(args.suite, grid=args.grid, output=args.output, cache=args.cache, progress=not args.no_progress,
                   fail_fast=args.fail_fast, reuse_embeddings=args.reuse_embeddings, latency_calls=args.latency_calls,
                   label=args.label, mlflow=args.mlflow, mlflow_experiment=args.mlflow_experiment,
                   on_outcome=_print_outcome)
    print(f"sweep: {len(result.suite.encoders)} variant(s) x {len(result.suite.datasets)} dataset(s) "
          "(grid points that cannot run were skipped with a warning)", file=sys.stderr)
    code = _finish_runs(args, result)
    if result.results:
        print(f"frontier: harness report {args.output} -o REPORT_DIR", file=sys.stderr)
    return code


def _finish_runs(args: argparse.Namespace, result: SuiteResult) -> int:
    """The results table, the MLflow note (--mlflow) and the exit code of `harness run` / `harness sweep`."""
    from harness.api import results_table

    records = [r.record for r in result.results]
    if records:
        print(results_table(result.suite.metrics, records))
    if args.mlflow and records:
        print(f"logged {len(result.paths)} run(s) to MLflow at {args.mlflow}", file=sys.stderr)
    return _exit_for_failures(result.outcomes)


def _mlflow_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mlflow", metavar="URI", default=None,
                        help="also log each record to this MLflow tracking URI (sqlite:///mlflow.db, file:///DIR, "
                             "http://host:5000; pip install .[mlflow])")
    parser.add_argument("--mlflow-experiment", metavar="NAME", default=None,
                        help="MLflow experiment (default: the suite's name, or profile-NAME)")


def _print_outcome(outcome) -> None:
    # failures are also logged as warnings by the runner; this line is the CLI's own account
    print(f"wrote {outcome.path}" if outcome.ok else f"FAILED {outcome.dataset} × {outcome.encoder}",
          file=sys.stderr)


def _exit_for_failures(outcomes) -> int:
    """2 when a dataset x encoder failed (each is listed with its reason), else 0."""
    failed = [o for o in outcomes if not o.ok]
    if not failed:
        return 0
    print(f"error: {len(failed)} of {len(outcomes)} dataset x encoder run(s) failed:", file=sys.stderr)
    for outcome in failed:
        print(f"  {outcome.dataset} × {outcome.encoder}: {outcome.error}", file=sys.stderr)
    return 2


def _encoder_choices(field: str):
    """A comma list of values that a suite's encoder allows for `field` (the suite model is the one source)."""
    def parse(text: str) -> list[str]:
        from typing import get_args

        from harness.input.suite import EncoderSpec

        allowed = get_args(EncoderSpec.model_fields[field].annotation)
        if field == "engine":  # a served model is profiled by `harness load`
            allowed = LOCAL_ENGINES
        values = [v.strip() for v in text.split(",") if v.strip()]
        for value in values:
            if value not in allowed:
                raise argparse.ArgumentTypeError(f"unknown {field} {value!r}; choose from {', '.join(allowed)}")
        if not values:
            raise argparse.ArgumentTypeError(f"give at least one {field}: {', '.join(allowed)}")
        return list(dict.fromkeys(values))
    return parse


def _positive_int(what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{what} must be a positive integer (got {text!r})")
        return value
    return parse


def _positive_ints(what: str):
    def parse(text: str) -> list[int]:
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            values = []
        if not values or min(values) <= 0:
            raise argparse.ArgumentTypeError(f"{what} must be positive integers, comma-separated (got {text!r})")
        return list(dict.fromkeys(values))
    return parse


def _positive_floats(what: str):
    def parse(text: str) -> list[float]:
        try:
            values = [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            values = []
        if not values or min(values) <= 0 or not all(math.isfinite(v) for v in values):
            raise argparse.ArgumentTypeError(f"{what} must be positive numbers, comma-separated (got {text!r})")
        return list(dict.fromkeys(values))
    return parse


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 30m, 12h or 7d") from None


def cmd_cache(args: argparse.Namespace) -> int:
    from harness.api import cache_stores, clear_cache

    where = args.cache or "the cache"
    if args.cache_command == "clear":
        removed = clear_cache(cache=args.cache, older_than=args.older_than)
        print(f"removed {len(removed)} store(s) from {where}")
        _print_foreign(cache_stores(cache=args.cache)[1])
        return 0
    stores, foreign = cache_stores(cache=args.cache)
    total = sum(s.bytes for s in stores)
    for store in stores:
        parts = store.meta.parts
        print(f"{store.key}  {store.bytes / 2**20:9.1f} MiB  rows={store.meta.n_rows}  dtype={store.meta.dtype}  "
              f"model={parts.get('model', '?')}  dataset={parts.get('dataset', '?')}")
    print(f"{len(stores)} store(s), {total / 2**20:.1f} MiB in {where}")
    _print_foreign(foreign)
    return 0


def _print_foreign(entries: list[Path]) -> None:
    for entry in entries:
        print(f"{entry}  not a store of the harness: left in place")


def cmd_profile(args: argparse.Namespace) -> int:
    from harness.api import profile
    from harness.pipeline.sweep import points_table

    written = profile(
        args.models, engine=args.engine, precision=args.precision, batch_size=args.batch_size,
        max_seq_length=args.max_seq_length, device=args.device, data=args.data, synthetic_tokens=args.synthetic_tokens,
        n=args.n, warmup=args.warmup, min_calls=args.min_calls, min_seconds=args.min_seconds,
        max_seconds=args.max_seconds, output=args.output, name=args.name, mlflow=args.mlflow,
        mlflow_experiment=args.mlflow_experiment,
        on_point=lambda p: print(f"  {p.engine} {p.precision} b{p.batch_size} len{p.max_seq_length} {p.device}: "
                                 f"{p.throughput.passages_per_s:,.1f} passages/s, p50 {p.latency.p50:.1f} ms",
                                 file=sys.stderr),
        on_skip=lambda problem: print(f"note: skipped points: {problem}", file=sys.stderr))
    for record, path in written:
        print(f"{record.model.model}\n{points_table(record.points)}")
        print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from harness.input.suite import load_suite, shipped_folder

    suites, data = shipped_folder("suites"), shipped_folder("data")
    print(f"suites (run one by path or name, e.g. `harness run suites/quick.yaml`; shipped in {suites.parent}):")
    for path in sorted(suites.glob("*.yaml")):
        where = f"suites/{path.name}"
        try:
            suite = load_suite(path)
            summary = f"{len(suite.datasets)} dataset(s) x {len(suite.encoders)} encoder(s)"
            print(f"  {where}  {suite.name}: {summary}. {suite.description}".rstrip())
        except HarnessError as exc:
            print(f"  {where}  INVALID: {exc}")
    print("data sets:")
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        splits = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        print(f"  data/{folder.name}  splits: {', '.join(splits) or '-'}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import json

    from harness.api import compare

    comparison = compare(*args.records, control=args.control, metrics=args.metrics, alpha=args.alpha,
                         test=args.test, seed=args.seed, n_resamples=args.resamples, queries=args.queries)
    print(comparison.to_table())
    if args.json:
        write_file(args.json, json.dumps(comparison.to_dict(), indent=1) + "\n", what="the comparison")
    regressions = comparison.regressions()
    if regressions and args.fail_on_regression:
        print(f"{len(regressions)} significant regression(s)", file=sys.stderr)
        return 1
    return 0


def cmd_churn(args: argparse.Namespace) -> int:
    from harness.api import churn

    found = churn(args.a, args.b, k=args.k, p=args.p, output=args.output, metrics=args.metrics, seed=args.seed,
                  n_resamples=args.resamples)
    print(found.to_table())
    if args.output:
        print(f"wrote {args.output}/churn.json, churn.csv, churn.png", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from harness.api import check, check_serving

    if args.serving:
        if args.suite is not None or args.results:
            raise HarnessError("check --serving gates two serving records by themselves: drop the suite and --results")
        report = check_serving(args.serving, rate=args.rate, max_slowdown=args.max_slowdown, alpha=args.alpha,
                               json=args.json, junit=args.junit, summary=args.summary, report_link=args.report_link)
        print(report.to_table())
        return 1 if report.failed else 0
    if args.suite is None:
        raise HarnessError("check needs a suite (or --serving BASELINE NEW)")

    report = check(args.suite, results=args.results, output=None if args.results else args.output, cache=args.cache,
                   reuse_embeddings=args.reuse_embeddings, latency_calls=args.latency_calls, seed=args.seed,
                   n_resamples=args.resamples, progress=not args.no_progress, json=args.json, junit=args.junit,
                   summary=args.summary, report_link=args.report_link, on_outcome=_print_outcome)
    print(report.to_table())
    return 1 if report.failed else 0


def cmd_served_check(args: argparse.Namespace) -> int:
    from harness.api import served_check

    result = served_check(args.suite, output=args.output, cache=args.cache, tolerance=args.tolerance,
                          alpha=args.alpha, seed=args.seed, n_resamples=args.resamples,
                          reuse_embeddings=args.reuse_embeddings, latency_calls=args.latency_calls,
                          progress=not args.no_progress, json=args.json,
                          on_outcome=_print_outcome)
    print(result.to_text())
    return 0 if result.ok else 1


def cmd_load(args: argparse.Namespace) -> int:
    from harness.api import load_profile

    def show(point) -> None:
        where = f"{point.offered_rate:g} req/s offered" if point.mode == "open" else f"concurrency {point.concurrency}"
        latency = "-" if point.latency is None else f"p50 {point.latency.p50:.1f} ms, p99 {point.latency.p99:.1f} ms"
        errors = sum(point.errors.values())
        flag = " (client-limited)" if point.client_limited else ""
        print(f"  {where}: {point.achieved_rate:.1f} req/s answered, {latency}, {errors} errors{flag}",
              file=sys.stderr)

    written = load_profile(args.suite, rates=args.rates, concurrency=args.concurrency, duration=args.duration,
                           warmup=args.warmup, workload=args.workload, batch_size=args.batch_size,
                           slo_p99_ms=args.slo_p99_ms, seed=args.seed, max_in_flight=args.max_in_flight,
                           output=args.output, cache=args.cache, label=args.label, on_point=show)
    for record, path in written:
        saturation = "none within the SLO" if record.saturation_rps is None else f"{record.saturation_rps:g} req/s"
        print(f"{record.dataset} × {record.name} ({record.server.label}): saturation {saturation} at p99 <= "
              f"{record.slo_p99_ms:g} ms; client capacity {record.client_capacity_rps:.0f} req/s; wrote {path}")
    return 0


def cmd_power(args: argparse.Namespace) -> int:
    import json

    from harness.api import power

    report = power(args.records, alpha=args.alpha, power=args.power, effect=args.effect, metrics=args.metrics)
    print(report.to_table())
    if args.json:
        write_file(args.json, json.dumps(report.to_dict(), indent=1) + "\n", what="the power table")
    return 0


def _comma_list(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected a comma list of metric names, got {text!r}")
    return values


def cmd_evaluate(args: argparse.Namespace) -> int:
    from harness import evaluate_runs, rescore
    from harness.api import results_table

    metrics = [m for group in args.metrics or [] for m in group] or None
    if args.runs and args.records:
        raise HarnessError("give --run files or record directories, not both")
    if args.runs:
        results = evaluate_runs(args.runs, qrels=args.qrels, suite=args.suite, dataset=args.dataset,
                                split=args.split, dataset_name=args.dataset_name, metrics=metrics,
                                relevance_level=args.relevance_level, names=args.names, output=args.output)
    elif args.records:
        if args.suite or args.dataset or args.names or args.dataset_name:
            raise HarnessError("--suite, --dataset, --name and --dataset-name go with --run; a record's stored "
                               "ranking is scored against its own dataset (--qrels adds judgments)")
        results = rescore(args.records, metrics=metrics, qrels=args.qrels, relevance_level=args.relevance_level,
                          output=args.output)
    else:
        raise HarnessError("nothing to evaluate: give --run RUN with --qrels (or --suite/--dataset), or record "
                           "directories")
    for result in results:
        print(f"wrote {result.path}", file=sys.stderr)
        for warning in result.record.source.warnings if result.record.source else []:
            print(f"warning: {result.record.name}: {warning.message} (e.g. {', '.join(warning.examples)})",
                  file=sys.stderr)
    print(results_table(list(results[0].record.metrics), [r.record for r in results]))
    return 0


def cmd_pool(args: argparse.Namespace) -> int:
    from harness import pool

    pooled = pool(args.records, depth=args.depth, qrels=args.qrels, data=args.data)
    pooled.write(args.output)
    queries = len({qid for qid, _, _ in pooled.rows})
    print(f"{len(pooled.rows)} unjudged (query, document) pairs over {queries} queries, from {pooled.ranked} in the "
          f"top {pooled.depth} of {len(pooled.records)} record(s); wrote {args.output}")
    if pooled.missing_texts:
        print(f"warning: {pooled.missing_texts} pooled documents are not in the corpus (written with no text)",
              file=sys.stderr)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from harness.api import history

    found = history(args.records, output=args.output, formats=args.formats or ("html", "md"), metrics=args.metrics,
                    baseline=args.baseline, margins=dict(args.margins or []), alpha=args.alpha, test=args.test,
                    seed=args.seed, n_resamples=args.resamples, queries=args.queries)
    failing = found.failing()
    for lineage in found.lineages:
        print(f"{lineage.title} (ordered by {lineage.order}; baseline {lineage.baseline})")
        if args.output is None:
            print(text_table(*lineage.ledger()))
        for metric in lineage.metrics:
            print(f"  {lineage.gate_line(metric)}")
        if args.output is None:
            for version, changes in lineage.changes.items():
                print(f"at {version}: {changes.to_text()}")
        for note in lineage.notes:
            print(f"note: {note}", file=sys.stderr)
    if args.output is not None:
        print(f"{len(found.files)} files under {args.output}", file=sys.stderr)
    if args.fail_on_gate and failing:
        print("newest version fails its gate: " + "; ".join(failing), file=sys.stderr)
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from harness.api import report

    written = report(args.records, output=args.output, formats=args.formats or ("html", "md"), control=args.control,
                     metric=args.metric, alpha=args.alpha, test=args.test, seed=args.seed, n_resamples=args.resamples,
                     churn=args.churn, queries=args.queries)
    for note in written.data.notes:
        print(f"note: {note}", file=sys.stderr)
    for path in written.files:
        if path.suffix in (".html", ".md"):
            print(path)
    print(f"{len(written.files)} files under {args.output}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if not sys.stderr.isatty():  # in a log or CI, Hugging Face's own bars would print carriage-return redraws
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        args = build_parser().parse_args(argv)
        if args.verbose:
            logging.getLogger().setLevel(logging.INFO)
        return args.func(args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # the output went into a pipe that closed early (`harness list | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("interrupted: nothing partial was kept; rerun to resume from the embedding cache", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
