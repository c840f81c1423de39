"""Run records on disk (DESIGN.md "Record" contract): one directory per dataset x encoder run.

    <output>/<suite>--<dataset>--<encoder>--<UTC time>/
        record.json      RunRecord (schema_version, suite, dataset, encoder, metrics, performance, ...)
        run.trec         the ranking, TREC format
        per_query.json   {metric name as written in the suite: {query id: value}}

Directories are assembled under a hidden temporary name and renamed into place, so a reader never
sees half a record, and an existing record is never overwritten.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.errors import HarnessError

SCHEMA_VERSION = 1
RECORD_FILE = "record.json"
RUN_FILE = "run.trec"
PER_QUERY_FILE = "per_query.json"


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = SCHEMA_VERSION
    kind: str = "run"
    suite: dict[str, Any]
    dataset: dict[str, Any]
    encoder: dict[str, Any]
    metrics: dict[str, float]
    metric_definitions: dict[str, str]
    top_k: int
    performance: dict[str, Any]
    environment: dict[str, Any]
    created_at: str
    files: dict[str, str] = {"run": RUN_FILE, "per_query": PER_QUERY_FILE}


class ProfileRecord(BaseModel):
    """The result of `harness profile` for one model: one point per swept configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = SCHEMA_VERSION
    kind: str = "profile"
    name: str
    model: dict[str, Any]
    texts: dict[str, Any]
    points: list[dict[str, Any]]
    environment: dict[str, Any]
    created_at: str


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def write_run_record(
    output: Path,
    record: RunRecord,
    *,
    run: dict[str, list[tuple[str, float]]],
    per_query: dict[str, dict[str, float]],
    tag: str,
) -> Path:
    """Write a run record directory atomically under `output`; returns its final path."""
    names = (record.suite["name"], record.dataset["name"], record.encoder["name"])

    def fill(tmp: Path) -> None:
        write_trec_run(tmp / RUN_FILE, run, tag=tag)
        _write_json(tmp / PER_QUERY_FILE, per_query)
        _write_json(tmp / RECORD_FILE, record.model_dump(mode="json"))

    return _write_record_dir(output, names, record.created_at, fill)


def write_profile_record(output: Path, record: ProfileRecord) -> Path:
    names = ("profile", record.name, Path(str(record.model["model"])).name)
    return _write_record_dir(output, names, record.created_at,
                             lambda tmp: _write_json(tmp / RECORD_FILE, record.model_dump(mode="json")))


def _write_record_dir(output: Path, names: tuple[str, ...], created_at: str, fill) -> Path:
    stamp = created_at.replace(":", "").replace("+0000", "Z").replace("+00:00", "Z")
    base = "--".join(_slug(s) for s in (*names, stamp))
    try:
        output.mkdir(parents=True, exist_ok=True)
        tmp = output / f".tmp-{base}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
    except OSError as exc:
        raise HarnessError(f"{output}: cannot create the results folder ({exc.strerror}); "
                           "choose a writable --output") from None
    try:
        fill(tmp)
        return _rename_unique(tmp, output / base)
    except OSError as exc:
        raise HarnessError(f"{output}: writing the record failed ({exc.strerror}); nothing was kept") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _rename_unique(tmp: Path, target: Path) -> Path:
    for n in range(1, 1000):
        candidate = target if n == 1 else target.with_name(f"{target.name}.{n}")
        try:
            # mkdir claims the name atomically; rename onto an empty directory then replaces it.
            candidate.mkdir()
        except FileExistsError:
            continue
        os.replace(tmp, candidate)
        return candidate
    raise HarnessError(f"{target}: too many records with the same name")


def _write_json(path: Path, data: object) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())


def write_trec_run(path: Path, run: dict[str, list[tuple[str, float]]], *, tag: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for qid in sorted(run):
            for rank, (docid, score) in enumerate(run[qid], start=1):
                handle.write(f"{qid} Q0 {docid} {rank} {score!r} {tag}\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_trec_run(path: Path) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            cells = line.split()
            if not cells:
                continue
            if len(cells) != 6:
                raise HarnessError(f"{path}:{number}: expected 'qid Q0 docid rank score tag'")
            run.setdefault(cells[0], {})[cells[2]] = float(cells[4])
    return run


def load_record(directory: Path) -> RunRecord:
    """Load a run record (use `load_any_record` where profile records may appear too)."""
    record = load_any_record(directory)
    if not isinstance(record, RunRecord):
        raise HarnessError(f"{Path(directory) / RECORD_FILE}: a profile record, not a run record")
    return record


def load_any_record(directory: Path) -> RunRecord | ProfileRecord:
    path = Path(directory) / RECORD_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HarnessError(f"{path}: not found; pass a record directory (it holds {RECORD_FILE})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{path}: not valid JSON ({exc})") from None
    if data.get("schema_version") != SCHEMA_VERSION:
        raise HarnessError(f"{path}: schema_version {data.get('schema_version')!r} is not {SCHEMA_VERSION}")
    try:
        return (ProfileRecord if data.get("kind") == "profile" else RunRecord).model_validate(data)
    except ValidationError as exc:
        raise HarnessError(f"{path}: not a valid run record: {exc}") from None


def load_per_query(directory: Path) -> dict[str, dict[str, float]]:
    path = Path(directory) / PER_QUERY_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise HarnessError(f"{path}: cannot read per-query metrics ({exc})") from None


def find_records(paths: list[Path]) -> list[Path]:
    """Record directories named directly, or found (non-hidden) under result folders, in a stable order."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if (path / RECORD_FILE).is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p.parent for p in path.rglob(RECORD_FILE)
                                if not any(part.startswith(".") for part in p.relative_to(path).parts)))
        else:
            raise HarnessError(f"{path}: not a record directory or a results folder")
    return found
