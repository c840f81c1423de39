"""Suite files: the typed, validated description of what to evaluate (DESIGN.md, "Suite file")."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.analysis.stats import Test
from harness.encode.precision import EngineName, Precision, precision_problem
from harness.errors import HarnessError
from harness.grid import validate_grid
from harness.metrics import parse_measure

DEFAULT_METRICS = ["MRR@10", "nDCG@10", "Recall@100", "Recall@1000", "MAP"]
# Cached corpus embeddings: "auto" reuses a store whose key (weights, data, settings, versions) matches;
# "never" re-encodes every corpus (and refreshes the store).
ReuseEmbeddings = Literal["auto", "never"]
Similarity = Literal["dot", "cosine"]
Device = Literal["auto", "cpu", "cuda"]  # "auto": CUDA when visible


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Expectation(_Strict):
    value: float
    tolerance: float = Field(default=0.0, ge=0)


class SpeedGate(_Strict):
    """Encoding throughput and query p99 latency against the baseline's, on the same hardware only.

    Each is a speed ratio, new / baseline (for latency: baseline p99 / new p99), bootstrapped from the
    records' raw timings (per-batch corpus encode times, per-call query latencies). A figure FAILs only when
    the slowdown is significant *and* beyond the margin: the one-sided (1 - alpha) upper confidence bound of
    the ratio is below 1 - max_slowdown.
    """

    max_slowdown: float = Field(default=0.10, ge=0, lt=1)
    alpha: float = Field(default=0.05, gt=0, lt=1)


class NonInferiorityMargin(_Strict):
    """"Not worse by more than ``margin``" (metric units): PASS only when the one-sided (1 - alpha) lower
    confidence bound of mean(new - baseline) over the queries is above -margin."""

    margin: float = Field(gt=0)


class Baseline(_Strict):
    """A baseline to hold an encoder to (``harness check``): records of an earlier run of the same suite.

    A metric FAILs when it dropped by more than ``max_drop`` *and* the drop is significant at
    ``alpha`` (paired test on the per-query values, Holm-adjusted over every baseline comparison of
    the check). ``noninferior`` turns "no significant drop" around for the metrics it names: the new
    encoder must *show* that it is not worse by more than the margin (one-sided paired t at ``alpha``).
    ``speed`` gates encoding throughput and query latency (see ``SpeedGate``).
    """

    records: Path  # a record directory or a results folder, relative to the suite file
    encoder: str | None = None  # the encoder name in the baseline records (default: this encoder's name)
    metrics: list[str] | None = None  # default: every metric both records have
    max_drop: float = Field(default=0.0, ge=0)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    test: Test = "randomization"
    noninferior: dict[str, NonInferiorityMargin] | None = None  # metric -> margin
    speed: SpeedGate | None = None

    @model_validator(mode="before")
    @classmethod
    def _migrate_speed_floor(cls, data: Any) -> Any:
        if isinstance(data, dict) and "min_passages_per_s" in data:
            raise ValueError(
                "min_passages_per_s was removed: a floor of a fraction of the baseline's passages/s let a 0.36x "
                "engine pass; write `speed: {max_slowdown: 0.10}` instead (fails on a significant slowdown beyond "
                "10% on the same hardware; see docs/reports.md)")
        return data


class DatasetSpec(_Strict):
    """One dataset: exactly one of a BEIR folder, an ir_datasets id, or MS MARCO TSV files."""

    name: str = Field(min_length=1)
    path: Path | None = None
    ir_datasets: str | None = None
    collection: Path | None = None
    queries: Path | None = None
    qrels: Path | None = None
    split: str = "test"
    relevance_level: int = Field(default=1, ge=0)
    drop_self_hits: bool = False
    expected_counts: dict[Literal["documents", "queries", "qrels"], int] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSpec:
        tsv = (self.collection, self.queries, self.qrels)
        given = [self.path is not None, self.ir_datasets is not None, any(p is not None for p in tsv)]
        if sum(given) != 1:
            raise ValueError(
                "give exactly one source: 'path' (BEIR folder), 'ir_datasets' (an ir_datasets id), "
                "or 'collection' + 'queries' + 'qrels' (MS MARCO TSV files)"
            )
        if given[2] and not all(p is not None for p in tsv):
            raise ValueError("MS MARCO TSV sources need all three of 'collection', 'queries' and 'qrels'")
        return self

    @property
    def kind(self) -> str:
        if self.path is not None:
            return "beir"
        if self.ir_datasets is not None:
            return "ir_datasets"
        return "msmarco_tsv"


class EncoderSpec(_Strict):
    name: str = Field(min_length=1)
    model: str = Field(min_length=1)
    similarity: Similarity = "dot"
    max_seq_length: int | None = Field(default=None, gt=0)
    batch_size: int = Field(default=32, gt=0)
    precision: Precision = "fp32"
    device: Device = "auto"
    engine: EngineName = "fast"
    query_prefix: str = ""
    document_prefix: str = ""
    expect: dict[str, dict[str, Expectation]] | None = None  # dataset name -> metric -> expectation
    baseline: Baseline | None = None

    @model_validator(mode="after")
    def _precision_runs(self) -> EncoderSpec:
        problem = precision_problem(self.precision, engine=self.engine, device=self.device)
        if problem:
            raise ValueError(problem)
        return self


class Suite(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    datasets: list[DatasetSpec] = Field(min_length=1)
    encoders: list[EncoderSpec] = Field(min_length=1)
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS), min_length=1)
    top_k: int = Field(default=1000, gt=0)
    reuse_embeddings: ReuseEmbeddings = "auto"
    grid: dict[str, list[Any]] | None = None  # `harness sweep`: engine/precision/max_seq_length values (harness.grid)
    source: Path | None = None

    @field_validator("grid")
    @classmethod
    def _grid(cls, grid: dict[str, list[Any]] | None) -> dict[str, list[Any]] | None:
        return None if grid is None else validate_grid(grid)

    @model_validator(mode="after")
    def _check(self) -> Suite:
        for metric in self.metrics:
            parse_measure(metric)
        problem = cutoff_problem(self.metrics, self.top_k)
        if problem:
            raise ValueError(problem)
        for kind, items in (("datasets", self.datasets), ("encoders", self.encoders)):
            names = [item.name for item in items]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{kind} names must be unique; repeated: {', '.join(duplicates)}")
        self._check_expectations()
        return self

    def _check_expectations(self) -> None:
        datasets = [d.name for d in self.datasets]
        for encoder in self.encoders:
            for dataset, metrics in (encoder.expect or {}).items():
                if dataset not in datasets:
                    raise ValueError(f"encoder {encoder.name!r}: expect names dataset {dataset!r}, "
                                     f"which is not in the suite (datasets: {', '.join(datasets)})")
                unknown = [m for m in metrics if m not in self.metrics]
                if unknown:
                    raise ValueError(f"encoder {encoder.name!r}: expect for {dataset!r} names metrics the suite "
                                     f"does not compute: {', '.join(unknown)} (metrics: {', '.join(self.metrics)})")
            for key in ("metrics", "noninferior"):
                named = getattr(encoder.baseline, key) or [] if encoder.baseline else []
                unknown = [m for m in named if m not in self.metrics]
                if unknown:
                    raise ValueError(f"encoder {encoder.name!r}: baseline {key} names metrics the suite does not "
                                     f"compute: {', '.join(unknown)} (metrics: {', '.join(self.metrics)})")


def cutoff_problem(metrics: list[str], top_k: int) -> str | None:
    """Why a metric cannot be computed from the top_k documents retrieved per query (None: all can). A
    cutoff above top_k would silently equal the metric at top_k (Recall@1000 = Recall@100 with top_k 100)."""
    beyond = [m for m in metrics if (parse_measure(m).cutoff or 0) > top_k]
    if not beyond:
        return None
    highest = max(parse_measure(m).cutoff or 0 for m in beyond)
    return (f"metric{'s' if len(beyond) > 1 else ''} {', '.join(beyond)} cut{'' if len(beyond) > 1 else 's'} "
            f"above top_k {top_k}: only {top_k} documents are retrieved per query, so "
            f"{'they' if len(beyond) > 1 else 'it'} would equal the value at {top_k}; "
            f"raise top_k to {highest} or lower the cutoff")


def shipped_folder(name: Literal["suites", "data"]) -> Path:
    """The suites/ or data/ folder shipped with harness: inside the installed package (a wheel carries them
    under harness/shipped/, see setup.py), else the source checkout's top level."""
    package = Path(__file__).resolve().parent
    for folder in (package / "shipped" / name, package.parent / name):
        if folder.is_dir():
            return folder
    raise HarnessError(f"the shipped {name}/ folder is missing from this installation ({package}); reinstall harness")


def resolve_suite_path(path: str | Path) -> Path:
    """An existing suite file as given, else a shipped suite: ``quick``, ``quick.yaml`` or ``suites/quick.yaml``
    name ``suites/quick.yaml`` of this installation, so the README's commands work from any directory."""
    path = Path(path)
    if path.is_file():
        return path
    try:
        shipped: Path | None = shipped_folder("suites")
    except HarnessError:
        shipped = None
    if shipped is not None and not path.is_absolute() and path.parent in (Path("."), Path("suites")):
        candidate = shipped / (path.name if path.suffix else f"{path.name}.yaml")
        if candidate.is_file():
            return candidate
    names = ", ".join(p.stem for p in sorted(shipped.glob("*.yaml"))) if shipped else "none"
    raise HarnessError(f"{path}: suite file not found; shipped suites (`harness list`): {names}")


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file (or a shipped suite, see `resolve_suite_path`); relative paths inside it
    resolve against its folder."""
    path = resolve_suite_path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise HarnessError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise HarnessError(f"{path}: malformed YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise HarnessError(f"{path}: a suite must be a YAML mapping with 'name', 'datasets', 'encoders'")
    return parse_suite(raw, source=path)


def parse_suite(raw: dict[str, Any], *, source: Path) -> Suite:
    try:
        suite = Suite.model_validate({**raw, "source": source})
    except ValidationError as exc:
        raise HarnessError(f"{source}: invalid suite:\n{_explain(exc)}") from None
    except HarnessError as exc:  # a metric name rejected by parse_measure
        raise HarnessError(f"{source}: field 'metrics': {exc}") from None
    return _resolve_paths(suite, source.parent)


def _resolve_paths(suite: Suite, base: Path) -> Suite:
    def resolve(p: Path | None) -> Path | None:
        return None if p is None else (base / p).resolve()

    datasets = [
        d.model_copy(update={k: resolve(getattr(d, k)) for k in ("path", "collection", "queries", "qrels")})
        for d in suite.datasets
    ]
    encoders = [
        e.model_copy(update={"baseline": e.baseline.model_copy(update={"records": resolve(e.baseline.records)})})
        if e.baseline else e
        for e in suite.encoders
    ]
    return suite.model_copy(update={"datasets": datasets, "encoders": encoders})


_MODELS: dict[str, type[BaseModel]] = {
    "": Suite,
    "datasets": DatasetSpec,
    "encoders": EncoderSpec,
    "expect": Expectation,
    "baseline": Baseline,
    "noninferior": NonInferiorityMargin,
    "speed": SpeedGate,
}


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"])
        if err["type"] == "extra_forbidden":
            key = str(err["loc"][-1])
            allowed = _allowed_keys(err["loc"])
            hint = difflib.get_close_matches(key, allowed, n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
            lines.append(f"  {loc}: unknown key '{key}'{suggestion} Allowed: {', '.join(allowed)}")
        else:
            message = err["msg"].removeprefix("Value error, ")
            lines.append(f"  {loc or '(top level)'}: {message}")
    return "\n".join(lines)


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    parents = [part for part in loc[:-1] if isinstance(part, str)]
    model = _MODELS[""]
    if parents and parents[0] in ("datasets", "encoders"):
        model = _MODELS[parents[0]]
    for key in ("expect", "baseline", "noninferior", "speed"):  # noninferior and speed sit inside baseline
        if key in parents:
            model = _MODELS[key]
    return [name for name in model.model_fields if name != "source"]
