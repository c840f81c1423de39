"""Model versions in a suite: a series of checkpoint folders (a glob in `model:` or a `versions:` list) expanded
into one encoder per checkpoint, in natural version order for a glob ("step-2000" before "step-10000")."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

from harness.vocabulary.errors import HarnessError
from harness.vocabulary.models import is_series

SERIES_SEPARATOR = "@"  # a checkpoint's encoder is named <series name>@<checkpoint folder name>


def natural_key(name: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key where runs of digits compare as numbers: step-2000 < step-10000, v1.9 < v1.10."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", name) if part)


def checkpoints(model: str, versions: list[str] | None, base: Path, where: str) -> list[Path] | None:
    """The checkpoint folders of a series encoder (None: `model` is one model): a glob's matches under `base` (the
    suite's folder) in natural order of their names, or the `versions` list as written."""
    if versions is not None:
        folders = [_absolute(base / v) for v in versions]
        for given, folder in zip(versions, folders):
            if not folder.is_dir():
                raise HarnessError(f"{where}.versions: {given!r} is not a checkpoint folder ({folder} does not "
                                   "exist or is not a folder); list folders holding a saved model")
        return folders
    if not is_series(model):
        return None
    matches = [_absolute(Path(p)) for p in glob.glob(str(base / model))]
    folders = sorted((p for p in matches if p.is_dir()), key=lambda p: (natural_key(p.name), str(p)))
    if not folders:
        raise HarnessError(f"{where}.model: no checkpoint folder matches {model!r} under {base}; the glob is "
                           "read from the suite file's folder")
    return folders


def series_names(name: str, folders: list[Path], where: str) -> list[str]:
    """<name>@<folder name> per checkpoint; two checkpoints that would get one name are refused."""
    names = [f"{name}{SERIES_SEPARATOR}{f.name}" for f in folders]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise HarnessError(f"{where}: checkpoints with the same folder name ({', '.join(repeated)}); each "
                           "checkpoint's encoder is named after its folder: rename one")
    return names


def _absolute(path: Path) -> Path:
    """Absolute, with `..` folded but symlinks kept: a checkpoint is named by the folder the suite names."""
    return Path(os.path.abspath(path))
