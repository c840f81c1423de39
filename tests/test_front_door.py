"""One front door: every `harness` command is argument parsing over one public API function, and every option of
a command is a keyword of that function, and the reverse. A new CLI option without its API keyword (or an API
keyword the CLI cannot reach) fails here, naming both."""

from __future__ import annotations

import argparse
import inspect

import harness
from harness.cli import build_parser

# command -> the public function(s) it calls (`evaluate` is two: --run files, or records scored again)
FUNCTIONS = {
    "run": ["run_suite"], "sweep": ["sweep"], "check": ["check", "check_serving"], "profile": ["profile"],
    "compare": ["compare"],
    "churn": ["churn"], "power": ["power"], "evaluate": ["evaluate_runs", "rescore"], "pool": ["pool"],
    "report": ["report"], "history": ["history"], "cache ls": ["cache_stores"], "cache clear": ["clear_cache"],
    "served-check": ["served_check"], "load": ["load_profile"], "list": [],
}
# CLI spelling -> API keyword, where they differ
RENAMES = {"resamples": "n_resamples", "address": "ray_address", "no_progress": "progress", "models": "models",
           "a": "a", "b": "b"}
# What a command does with a result rather than an option of the function (the API's own method does it)
RESULT_OPTIONS = {
    "compare": {"json": "to_dict", "fail_on_regression": "regressions"},
    "power": {"json": "to_dict"},
    "pool": {"output": "write"},
    "history": {"fail_on_gate": "failing"},
}
# API keywords that only Python can pass (callbacks, objects held in memory)
API_ONLY = {"on_outcome", "on_point", "on_skip"}


def commands() -> dict[str, argparse.ArgumentParser]:
    """command name ('cache ls' for nested ones) -> its parser."""
    found = {}
    for action in build_parser()._subparsers._group_actions:  # argparse keeps subparsers here
        for name, parser in action.choices.items():
            nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
            if nested:
                found.update({f"{name} {sub}": p for a in nested for sub, p in a.choices.items()})
            else:
                found[name] = parser
    return found


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {a.dest for a in parser._actions
            if a.dest != "help" and not isinstance(a, argparse._SubParsersAction)}


def keywords(name: str) -> set[str]:
    return set(inspect.signature(getattr(harness, name)).parameters) - {"args", "kwargs"}


def test_every_command_has_its_functions():
    assert set(commands()) == set(FUNCTIONS), "a command was added or removed: map it to its API function here"
    for command, names in FUNCTIONS.items():
        for name in names:
            assert callable(getattr(harness, name)), f"harness.{name} (behind `harness {command}`) is not public"


def test_every_cli_option_is_an_api_keyword():
    missing = []
    for command, parser in commands().items():
        api = set().union(*(keywords(n) for n in FUNCTIONS[command])) if FUNCTIONS[command] else set()
        for dest in options(parser):
            keyword = RENAMES.get(dest, dest)
            if keyword in api:
                continue
            method = RESULT_OPTIONS.get(command, {}).get(dest)
            if method is not None:
                continue
            missing.append(f"harness {command} --{dest.replace('_', '-')}: no keyword {keyword!r} in "
                           f"{', '.join(f'harness.{n}' for n in FUNCTIONS[command]) or 'the API'}")
    assert not missing, "\n".join(missing)


def test_every_api_keyword_is_a_cli_option():
    missing = []
    for command, parser in commands().items():
        cli = {RENAMES.get(d, d) for d in options(parser)}
        for name in FUNCTIONS[command]:
            for keyword in keywords(name) - API_ONLY - cli:
                missing.append(f"harness.{name}({keyword}=...): `harness {command}` has no option for it")
    assert not missing, "\n".join(missing)


def test_result_options_name_real_methods():
    results = {"compare": harness.Comparison, "power": __import__("harness.analysis.power", fromlist=["x"]).PowerReport,
               "pool": harness.Pool, "history": harness.History}
    for command, methods in RESULT_OPTIONS.items():
        for method in methods.values():
            assert callable(getattr(results[command], method)), f"{results[command].__name__}.{method}"


def test_the_check_reads_the_parser():
    """The enumeration sees real options: `harness run --latency-calls` and `harness check --junit` are there."""
    found = commands()
    assert "latency_calls" in options(found["run"]) and "junit" in options(found["check"])
    assert "older_than" in options(found["cache clear"])


def test_api_defaults_are_the_suite_schemas_defaults():
    """`evaluate_model` spells out the suite's defaults so a notebook shows them; they may never drift apart."""
    from harness.input.suite import DEFAULT_METRICS, DatasetSpec, EncoderSpec, Suite

    schema = {**{n: f.default for n, f in DatasetSpec.model_fields.items()},
              **{n: f.default for n, f in EncoderSpec.model_fields.items()},
              "top_k": Suite.model_fields["top_k"].default, "metrics": tuple(DEFAULT_METRICS)}
    drifted = [f"{name}: evaluate_model says {p.default!r}, the suite schema {schema[name]!r}"
               for name, p in inspect.signature(harness.evaluate_model).parameters.items()
               if name in schema and p.default is not inspect.Parameter.empty and name != "name"
               and p.default != schema[name]]
    assert not drifted, "\n".join(drifted)
    assert "batch_size" in inspect.signature(harness.evaluate_model).parameters  # the check sees real keywords
