"""The report folder, written as one step: built in a hidden folder beside it, then renamed into place.

A previous report there is replaced as a whole (its old plots go with it), and only a folder that is ours (one
whose ``.harness-report`` marker lists every file in it) or an empty one: a folder with anything else in it is
refused, never emptied. What a kill -9 leaves, step by step:

1. while the report is built (``.tmp-<pid>@<host>-<random>`` beside ``-o``): ``-o`` as it was, and the hidden
   folder, which the next writer in that parent removes (its pid is dead);
2. after ``-o`` is renamed to a hidden backup (same naming), before the new folder is renamed to ``-o``: no ``-o``;
   the previous report in the backup, the new one complete in its hidden folder; both are removed by the next
   writer, so rerun `harness report`;
3. after the new folder is renamed to ``-o``: the new report complete at ``-o``, the backup left to the next writer.

A fault (full disk, read-only folder) removes what was built and leaves ``-o`` as it was.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from harness.vocabulary.errors import HarnessError
from harness.vocabulary.files import remove_dead_writers_folders, writer_folder

MARKER = ".harness-report"


def write_report_folder(output: Path, fill: Callable[[Path], list[Path]]) -> list[Path]:
    """Build the report with ``fill`` (it writes into the folder it is given and returns the paths it wrote), then
    put it at ``output`` in place of a previous report; returns the written paths under ``output``."""
    target = Path(os.path.realpath(output))  # a symlinked -o: replace the folder it points to
    tmp = _hidden(target)
    try:
        _check_replaceable(target, output)
        tmp.mkdir(parents=True)
    except OSError as exc:
        raise _cannot_write(output, exc) from None
    try:
        remove_dead_writers_folders(target.parent)
        written = fill(tmp)
        names = [Path(os.path.relpath(p, tmp)).as_posix() for p in written]
        (tmp / MARKER).write_text(json.dumps({"written_by": "harness report", "files": names}, indent=1) + "\n",
                                  encoding="utf-8")
        _check_replaceable(target, output)  # again: the build took a while
        _move_into_place(tmp, target)
    except OSError as exc:
        raise _cannot_write(output, exc) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [output / name for name in names]


def _hidden(target: Path) -> Path:
    return writer_folder(target.parent)


def _move_into_place(tmp: Path, target: Path) -> None:
    if not os.path.lexists(target):
        os.rename(tmp, target)
        return
    backup = _hidden(target)
    os.rename(target, backup)
    try:
        os.rename(tmp, target)
    except OSError:
        try:
            os.rename(backup, target)
        except OSError:  # another writer's report took the place meanwhile
            shutil.rmtree(backup, ignore_errors=True)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def _check_replaceable(target: Path, output: Path) -> None:
    """Refuse a file, a folder that is not a report of ours or holds files the report did not write, and a
    report folder that cannot be removed."""
    if not os.path.lexists(target):
        return
    if not target.is_dir():
        raise HarnessError(f"{output}: not a folder; give -o a new folder (or a previous report's) for the report")
    if next(target.iterdir(), None) is None:
        return
    try:
        ours = json.loads((target / MARKER).read_text(encoding="utf-8"))["files"]
        ours = {MARKER, *ours, *(parent.as_posix() for name in ours for parent in Path(name).parents
                                 if parent.name)}
    except (OSError, ValueError, KeyError, TypeError):
        raise HarnessError(f"{output}: not a folder `harness report` wrote (no {MARKER} in it), and a report "
                           "replaces its folder's contents; give -o a new or empty folder (an older report: delete "
                           "it first)") from None
    present = {p.relative_to(target).as_posix(): p for p in target.rglob("*")}
    strays = sorted(set(present) - ours)
    if strays:
        raise HarnessError(f"{output}: holds files the report did not write ({', '.join(strays[:3])}"
                           f"{', ...' if len(strays) > 3 else ''}), and a report replaces its folder's contents; "
                           "move them out, or give -o another folder")
    stuck = next((p for p in [target, *present.values()] if p.is_dir() and not os.access(p, os.W_OK)), None)
    if stuck:
        raise HarnessError(f"cannot write {output} ({stuck} is read-only): a report replaces its folder as a whole; "
                           f"make it writable (chmod -R u+w {output}) or choose another -o")


def _cannot_write(output: Path, exc: OSError) -> HarnessError:
    return HarnessError(f"cannot write {output} ({exc.strerror or exc}); it is as it was: free space or make its "
                        "folder writable, or choose another -o")
