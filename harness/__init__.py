"""Retrieval evaluation and benchmarking harness: the public Python API.

    import harness
    result = harness.evaluate_model(model, "data/scifact", metrics=["nDCG@10"])  # a SentenceTransformer or an id
    suite = harness.run_suite("suites/quick.yaml", output="results")
    cmp = harness.compare("results/baselines", "results/new")                    # renders itself in Jupyter
    harness.churn("results/old/RECORD", "results/new/RECORD", k=10)              # overlap@k, RBO per query
    harness.report(["results/baselines", "results/new"], output="out/report")
    harness.history("results/nightly", margins={"nDCG@10": 0.005})             # versions in order, trends, gates
    harness.evaluate(harness.load_qrels("qrels.txt"), harness.load_run("run.trec"), ["nDCG@10"])
    harness.evaluate_run("bm25.trec", qrels="qrels.txt", output="results")      # a run made elsewhere -> a record
    harness.rescore("results/baselines", metrics=["P@5"], qrels="new.qrels")     # no encoding
    harness.pool(["results/new"], depth=10).write("pool.tsv")                    # unjudged top-10, with texts

Everything below is loaded on first use, so `import harness` stays fast (no torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "evaluate_model": "harness.api", "run_suite": "harness.api", "compare": "harness.api", "check": "harness.api",
    "report": "harness.api", "evaluate": "harness.api", "load_qrels": "harness.api", "load_run": "harness.api",
    "load_dataset": "harness.api", "churn": "harness.api", "SuiteResult": "harness.api", "Report": "harness.api",
    "evaluate_per_query": "harness.api", "scored_runs": "harness.api",
    "ScoredRun": "harness.scoring.scored", "RunOutcome": "harness.scoring.scored",
    "Dataset": "harness.input.datasets", "Suite": "harness.input.suite", "load_suite": "harness.input.suite",
    "Comparison": "harness.analysis.compare", "CheckReport": "harness.analysis.check",
    "Churn": "harness.analysis.churn",
    "HarnessError": "harness.vocabulary.errors",
    "sweep": "harness.api", "profile": "harness.api", "power": "harness.api", "cache_stores": "harness.api",
    "clear_cache": "harness.api", "history": "harness.api", "History": "harness.reporting.history",
    "evaluate_run": "harness.scoring.external", "evaluate_runs": "harness.scoring.external",
    "rescore": "harness.scoring.external",
    "pool": "harness.analysis.pooling", "Pool": "harness.analysis.pooling",
    "served_check": "harness.api", "ServedCheck": "harness.analysis.served", "load_profile": "harness.api",
    "check_serving": "harness.api",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from harness.analysis.check import CheckReport
    from harness.analysis.churn import Churn
    from harness.analysis.compare import Comparison
    from harness.analysis.pooling import Pool, pool
    from harness.analysis.served import ServedCheck
    from harness.api import (
        Report,
        SuiteResult,
        cache_stores,
        check,
        check_serving,
        churn,
        clear_cache,
        compare,
        evaluate,
        evaluate_model,
        evaluate_per_query,
        history,
        load_dataset,
        load_profile,
        load_qrels,
        load_run,
        power,
        profile,
        report,
        run_suite,
        scored_runs,
        served_check,
        sweep,
    )
    from harness.input.datasets import Dataset
    from harness.input.suite import Suite, load_suite
    from harness.reporting.history import History
    from harness.scoring.external import evaluate_run, evaluate_runs, rescore
    from harness.scoring.scored import RunOutcome, ScoredRun
    from harness.vocabulary.errors import HarnessError


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
