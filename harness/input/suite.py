"""Suite files: the typed, validated description of what to evaluate (DESIGN.md, "Suite file")."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    Field,
    Strict,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from harness.input.endpoint import EndpointSpec
from harness.input.grid import validate_grid
from harness.input.indexes import IndexSpec
from harness.input.versions import checkpoints, series_names
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.measures import parse_measure
from harness.vocabulary.models import is_hub_id, is_series
from harness.vocabulary.precision import ENDPOINT_ENGINE, EngineName, Precision, precision_problem
from harness.vocabulary.statistics import Test
from harness.vocabulary.validation import StrictModel, clip, explain_errors

SERIES_MODEL = "<versions>"  # the model of a `versions:` series until it is expanded into checkpoints
DEFAULT_METRICS = ["MRR@10", "nDCG@10", "Recall@100", "Recall@1000", "MAP"]
# Cached corpus embeddings: "auto" reuses a store whose key (weights, data, settings, versions) matches;
# "never" re-encodes every corpus (and refreshes the store).
ReuseEmbeddings = Literal["auto", "never"]
Similarity = Literal["dot", "cosine"]
Device = Literal["auto", "cpu", "cuda"]  # "auto": CUDA when visible
# Numbers as written: pydantic's lax mode would read `true` as 1 and '10' as 10; a NaN expectation or an
# infinite margin would pass every check.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict(), AllowInfNan(False)]
# A suite may expand to this many YAML nodes with its aliases expanded, and a sweep to MAX_VARIANTS
# (harness.input.grid).
MAX_SUITE_NODES = 100_000


def _visible(name: str) -> str:
    if not name.strip():
        raise ValueError(f"name {name!r} is blank: give it a visible character (names label every result, and an "
                         "encoder's is its runs' TREC tag)")
    return name


Name = Annotated[str, AfterValidator(_visible)]


class Expectation(StrictModel):
    value: Float
    tolerance: Float = Field(default=0.0, ge=0)


class SpeedGate(StrictModel):
    """Encoding throughput and query p99 latency against the baseline's, on the same hardware only.

    Each is a speed ratio, new / baseline (for latency: baseline p99 / new p99), bounded from the records'
    raw timings: throughput by bootstrapping the per-batch corpus encode times, p99 by distribution-free
    order-statistic bounds on the per-call query latencies (368 calls at least at alpha 0.05; fewer: SKIP).
    A figure FAILs only when the slowdown is significant *and* beyond the margin: the one-sided (1 - alpha)
    upper confidence bound of the ratio is below 1 - max_slowdown.
    """

    max_slowdown: Float = Field(default=0.10, ge=0, lt=1)
    alpha: Float = Field(default=0.05, gt=0, lt=1)


class NonInferiorityMargin(StrictModel):
    """"Not worse by more than ``margin``" (metric units): PASS only when the one-sided (1 - alpha) lower
    confidence bound of mean(new - baseline) over the queries is above -margin."""

    margin: Float = Field(gt=0)


class Baseline(StrictModel):
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
    max_drop: Float = Field(default=0.0, ge=0)
    alpha: Float = Field(default=0.05, gt=0, lt=1)
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


class DatasetSpec(StrictModel):
    """One dataset: exactly one of a BEIR folder, an ir_datasets id, or MS MARCO TSV files."""

    name: Name
    path: Path | None = None
    ir_datasets: str | None = None
    collection: Path | None = None
    queries: Path | None = None
    qrels: Path | None = None
    split: str = "test"
    relevance_level: Int = Field(default=1, ge=0)
    drop_self_hits: StrictBool = False
    expected_counts: dict[Literal["documents", "queries", "qrels"], Int] | None = None

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


class DocumentModel(StrictModel):
    """Where the corpus embeddings that an encoder's queries search come from, when not from the encoder itself
    (backward compatibility: can version N's queries search version N-1's corpus?). Exactly one of:

    - ``model``: a model id / path / ``bundled:...``, with its own document-side settings (defaults as for an
      encoder, not copied from the query encoder). The corpus goes through the embedding cache under this
      model's key, so a corpus an earlier run encoded with the same model and settings is reused, not re-encoded.
    - ``encoder``: the name of another encoder of the suite: its model and document-side settings.
    - ``record``: a record directory (relative to the suite file) whose stored corpus embeddings to search, as
      they are (its ``performance.embedding_store.key``); the old model need not be at hand.

    Written as a mapping, or as a plain string for ``model``."""

    model: str | None = Field(default=None, min_length=1)
    encoder: str | None = Field(default=None, min_length=1)
    record: Path | None = None
    precision: Precision = "fp32"
    engine: EngineName = "fast"
    max_seq_length: Int | None = Field(default=None, gt=0)
    document_prefix: str = ""
    batch_size: Int | None = Field(default=None, gt=0)  # default: the query encoder's

    @model_validator(mode="before")
    @classmethod
    def _plain_model(cls, data: Any) -> Any:
        return {"model": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_source(self) -> DocumentModel:
        given = [k for k in ("model", "encoder", "record") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("document_model needs exactly one of 'model' (a model id or path), 'encoder' (another "
                             "encoder of this suite) or 'record' (a record directory whose corpus embeddings to reuse)"
                             + (f"; got {' and '.join(given)}" if given else ""))
        if self.model is None:
            settings = sorted(k for k in self.model_fields_set if k not in ("encoder", "record"))
            if settings:
                raise ValueError(f"document_model.{given[0]} brings its own settings; {', '.join(settings)} "
                                 "only go with document_model.model")
        return self

    def encoder_spec(self, encoder: EncoderSpec) -> EncoderSpec:
        """The spec that encodes the corpus for ``encoder``'s queries (``model`` form): this model and these
        settings; similarity and device are the query encoder's (one search, one device)."""
        if self.model is None:
            raise ValueError("only document_model.model describes an encoder by itself")
        return EncoderSpec(name=f"{encoder.name} (documents)", model=self.model, similarity=encoder.similarity,
                           max_seq_length=self.max_seq_length, batch_size=self.batch_size or encoder.batch_size,
                           precision=self.precision, device=encoder.device, engine=self.engine,
                           document_prefix=self.document_prefix)


class EncoderSpec(StrictModel):
    name: Name
    model: str = Field(min_length=1)
    similarity: Similarity = "dot"
    max_seq_length: Int | None = Field(default=None, gt=0)
    batch_size: Int = Field(default=32, gt=0)
    precision: Precision = "fp32"
    device: Device = "auto"
    engine: EngineName = "fast"
    query_prefix: str = ""
    document_prefix: str = ""
    expect: dict[str, dict[str, Expectation]] | None = None  # dataset name -> metric -> expectation
    baseline: Baseline | None = None
    document_model: DocumentModel | None = None  # None: the corpus is encoded by this encoder
    index: IndexSpec | None = None  # None: exact search (harness.input.indexes)
    revision: str | None = Field(default=None, min_length=1)  # a Hub model's branch, tag or commit
    version: str | None = Field(default=None, min_length=1)  # a free label (git tag, date, step), kept in records
    versions: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, min_length=1)  # checkpoints
    endpoint: EndpointSpec | None = None  # engine http: the server that encodes (harness.input.endpoint)

    @model_validator(mode="before")
    @classmethod
    def _series_model(cls, raw: Any) -> Any:
        """A `versions:` series needs no `model:`: each checkpoint is one (harness.input.versions). Nor does an
        endpoint: its model is the served one (named by served_model, else by the URL until the server says)."""
        if isinstance(raw, dict) and raw.get("versions") and "model" not in raw:
            return {**raw, "model": SERIES_MODEL}
        endpoint = raw.get("endpoint") if isinstance(raw, dict) else None
        if isinstance(endpoint, dict) and "model" not in raw:
            named = endpoint.get("served_model") or endpoint.get("url")
            if isinstance(named, str) and named:
                return {**raw, "model": named}
        return raw

    @model_validator(mode="after")
    def _endpoint(self) -> EncoderSpec:
        served = self.engine == ENDPOINT_ENGINE
        if served != (self.endpoint is not None):
            raise ValueError("engine http and an endpoint section go together: give both (endpoint: {url: ...}) or "
                             "neither" if served else
                             f"an endpoint section needs engine: http (engine {self.engine!r} runs the model here)")
        if served:
            if self.revision is not None or self.versions is not None or is_series(self.model):
                raise ValueError("a served model is the one the server loaded: revision and checkpoint series do not "
                                 "apply to engine http (start one server per version and name each by `version:`)")
            if self.max_seq_length is not None:
                raise ValueError("the server truncates at the length it was started with; max_seq_length cannot be "
                                 "asked of it: remove it (and set it on the server)")
        return self

    @model_validator(mode="after")
    def _versions(self) -> EncoderSpec:
        if self.revision is not None:
            if self.versions is not None or is_series(self.model):
                raise ValueError("revision pins one Hub model; a checkpoint series has none: remove revision")
            if not is_hub_id(self.model):
                raise ValueError(f"revision applies to a Hugging Face Hub id; {self.model!r} is bundled, random or "
                                 "a local folder, which has no revisions: remove revision (a local folder is the "
                                 "version it holds)")
        if self.versions is not None and self.model != SERIES_MODEL:
            raise ValueError("give the checkpoints once: a versions list (without model) or a glob in model")
        if self.version is not None and (self.versions is not None or is_series(self.model)):
            raise ValueError("each checkpoint of a series is labelled by its folder name: remove version")
        return self

    @model_validator(mode="after")
    def _precision_runs(self) -> EncoderSpec:
        problem = precision_problem(self.precision, engine=self.engine, device=self.device)
        if problem:
            raise ValueError(problem)
        documents = self.document_model
        if documents is not None:
            if self.document_prefix:
                raise ValueError("document_prefix applies to the corpus, which document_model encodes: write it as "
                                 "document_model.document_prefix")
            if documents.model is not None:
                problem = precision_problem(documents.precision, engine=documents.engine, device=self.device)
                if problem:
                    raise ValueError(f"document_model: {problem}")
        return self


class Suite(StrictModel):
    name: Name
    description: str = ""
    datasets: list[DatasetSpec] = Field(min_length=1)
    encoders: list[EncoderSpec] = Field(min_length=1)
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS), min_length=1)
    top_k: Int = Field(default=1000, gt=0)
    reuse_embeddings: ReuseEmbeddings = "auto"
    # `harness sweep`: engine/precision/max_seq_length values (harness.input.grid)
    grid: dict[str, list[Any]] | None = None
    source: Path | None = None

    def labelled(self, label: str) -> Suite:
        """The suite with every encoder's version label set to `label` (`harness run --label`)."""
        if not label.strip():
            raise HarnessError(f"label {label!r} is blank: give the version a visible name")
        return self.model_copy(update={"encoders": [e.model_copy(update={"version": label}) for e in self.encoders]})

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
        self._check_document_encoders()
        return self

    def _check_document_encoders(self) -> None:
        by_name = {e.name: e for e in self.encoders}
        for encoder in self.encoders:
            named = encoder.document_model.encoder if encoder.document_model else None
            if named is None:
                continue
            if named not in by_name or named == encoder.name:
                others = [n for n in by_name if n != encoder.name]
                raise ValueError(f"encoder {encoder.name!r}: document_model.encoder {named!r} is not another encoder "
                                 f"of this suite (encoders: {', '.join(others) or 'none'})")
            if by_name[named].document_model is not None:
                raise ValueError(f"encoder {encoder.name!r}: document_model.encoder {named!r} has a document_model "
                                 "of its own; name the encoder that encodes its corpus itself")

    def document_spec(self, encoder: EncoderSpec) -> EncoderSpec | None:
        """The spec that encodes ``encoder``'s corpus when it is another model (document_model ``model`` or
        ``encoder``); None when the encoder encodes its own corpus or searches a record's stored embeddings."""
        documents = encoder.document_model
        if documents is None or documents.record is not None:
            return None
        if documents.model is not None:
            return documents.encoder_spec(encoder)
        named = next(e for e in self.encoders if e.name == documents.encoder)  # on its own device: same cache key
        return named.model_copy(update={"similarity": encoder.similarity, "expect": None, "baseline": None})

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
    package = Path(__file__).resolve().parents[1]
    for folder in (package / "shipped" / name, package.parent / name):
        if folder.is_dir():
            return folder
    raise HarnessError(f"the shipped {name}/ folder is missing from this installation ({package}); reinstall harness")


def resolve_suite_path(path: str | os.PathLike[str]) -> Path:
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


def load_suite(path: str | os.PathLike[str]) -> Suite:
    """Read and validate a suite file (or a shipped suite, see `resolve_suite_path`); relative paths inside it
    resolve against its folder."""
    path = resolve_suite_path(path)
    try:
        raw = _read_yaml(path)
    except UnicodeDecodeError as exc:
        raise HarnessError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise HarnessError(f"{path}: malformed YAML: {clip(str(exc))}") from None
    except RecursionError:
        raise HarnessError(f"{path}: the YAML is nested too deeply to read; a suite needs a few levels") from None
    if not isinstance(raw, dict):
        raise HarnessError(f"{path}: a suite must be a YAML mapping with 'name', 'datasets', 'encoders'")
    return parse_suite(raw, source=path)


def _read_yaml(path: Path) -> Any:
    """yaml.safe_load, refusing a document whose aliases expand beyond MAX_SUITE_NODES nodes (a "billion laughs"
    bomb: a few lines of anchors, each alias repeating the one before, expand to millions of values)."""
    loader = yaml.SafeLoader(path.read_text(encoding="utf-8"))
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_size(node) > MAX_SUITE_NODES:
            raise HarnessError(f"{path}: the suite expands to more than {MAX_SUITE_NODES:,} YAML nodes once its "
                               "aliases (*name) are expanded, or an alias contains itself; a suite may hold at most "
                               f"{MAX_SUITE_NODES:,}: repeat less through aliases")
        return None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(root: yaml.Node) -> int:
    """The node count of the document with every alias expanded, counted up to MAX_SUITE_NODES + 1 (also for an
    alias inside its own anchor). Aliases share their anchor's node, so each distinct node is sized once."""
    over = MAX_SUITE_NODES + 1
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # the nodes being sized: the ancestors of the node at hand
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, sized_children = stack.pop()
        children = (node.value if isinstance(node, yaml.SequenceNode)
                    else [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
        if sized_children:
            open_nodes.discard(id(node))
            sizes[id(node)] = min(over, 1 + sum(sizes[id(child)] for child in children))
        elif id(node) in open_nodes:
            return over
        elif id(node) not in sizes:
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children)
    return sizes[id(root)]


def parse_suite(raw: dict[str, Any], *, source: Path) -> Suite:
    try:
        suite = Suite.model_validate({**raw, "source": source})
    except ValidationError as exc:
        raise HarnessError(f"{source}: invalid suite:\n{explain_errors(exc, allowed_keys=_allowed_keys)}") from None
    except HarnessError as exc:  # a metric name rejected by parse_measure
        raise HarnessError(f"{source}: field 'metrics': {clip(str(exc))}") from None
    return _resolve_paths(suite, source)


def _resolve_paths(suite: Suite, source: Path) -> Suite:
    def resolve(p: Path | None, field: str) -> Path | None:
        if p is None:
            return None
        path = source.parent / p
        try:
            return path.resolve(strict=True)
        except FileNotFoundError:  # reported where it is read, with what it should hold
            return path.resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop: RuntimeError before Python 3.13
            raise HarnessError(f"{source}: {field}: cannot follow {path} ({exc}); point it at the file or folder "
                               "itself") from None

    datasets = [
        d.model_copy(update={k: resolve(getattr(d, k), f"datasets.{i}.{k}")
                             for k in ("path", "collection", "queries", "qrels")})
        for i, d in enumerate(suite.datasets)
    ]
    encoders = [
        e.model_copy(update={"baseline": e.baseline.model_copy(
            update={"records": resolve(e.baseline.records, f"encoders.{i}.baseline.records")})})
        if e.baseline else e
        for i, e in enumerate(suite.encoders)
    ]
    encoders = [
        e.model_copy(update={"document_model": e.document_model.model_copy(
            update={"record": resolve(e.document_model.record, f"encoders.{i}.document_model.record")})})
        if e.document_model and e.document_model.record else e
        for i, e in enumerate(encoders)
    ]
    return suite.model_copy(update={"datasets": datasets, "encoders": _expand_series(encoders, source)})


def _expand_series(encoders: list[EncoderSpec], source: Path) -> list[EncoderSpec]:
    """Each checkpoint series (harness.input.versions) replaced by one encoder per checkpoint, `version:` its
    folder's name."""
    out: list[EncoderSpec] = []
    for i, spec in enumerate(encoders):
        where = f"{source}: encoders.{i}"
        folders = checkpoints(spec.model, spec.versions, source.parent, where)
        if folders is None:
            out.append(spec)
            continue
        out += [spec.model_copy(update={"name": name, "model": str(folder), "version": folder.name, "versions": None})
                for name, folder in zip(series_names(spec.name, folders, where), folders)]
    names = [e.name for e in out]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise HarnessError(f"{source}: encoder names repeat once the checkpoint series are expanded: "
                           f"{', '.join(clash)}; rename the series or the encoder")
    return out


_MODELS: dict[str, type[BaseModel]] = {
    "": Suite,
    "datasets": DatasetSpec,
    "encoders": EncoderSpec,
    "expect": Expectation,
    "baseline": Baseline,
    "noninferior": NonInferiorityMargin,
    "speed": SpeedGate,
    "document_model": DocumentModel,
    "index": IndexSpec,
    "endpoint": EndpointSpec,
}


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    parents = [part for part in loc[:-1] if isinstance(part, str)]
    model = _MODELS[""]
    if parents and parents[0] in ("datasets", "encoders"):
        model = _MODELS[parents[0]]
    # noninferior and speed lie in baseline
    for key in ("expect", "baseline", "noninferior", "speed", "document_model", "index", "endpoint"):
        if key in parents:
            model = _MODELS[key]
    return [name for name in model.model_fields if name != "source"]
