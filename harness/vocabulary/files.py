"""The one way a file is written: to a temporary sibling, flushed to disk, then renamed over the target, so a reader
(or a run killed mid-write) sees the old file or the new one, never half of it."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from harness.vocabulary.errors import HarnessError


@contextlib.contextmanager
def atomic_file(path: Path, *, binary: bool = False) -> Iterator[IO[Any]]:
    """A handle to write ``path`` through; the file appears when the block ends without error. Raises OSError
    (nothing left behind) for callers that name their own fix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") if binary else open(tmp, "w", encoding="utf-8", newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # a read-only or missing folder refuses the unlink too
            tmp.unlink(missing_ok=True)
        raise


def write_file(path: str | os.PathLike[str], content: str | bytes, *, what: str = "the file") -> Path:
    """Write ``content`` to ``path`` atomically (creating its folder); HarnessError naming the path, ``what`` it
    holds and the reason when that fails, with nothing half-written."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, binary=isinstance(content, bytes)) as handle:
            handle.write(content)
    except OSError as exc:
        raise HarnessError(f"cannot write {path} ({exc.strerror or exc}); nothing was written ({what}): free space or "
                           "choose a writable folder") from None
    return path


def slug(text: str, *, fallback: str = "x") -> str:
    """A file-name-safe form of a name (records, plots, exports, TREC run tags, temporary folders)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or fallback


LEFTOVER_HOURS = 24  # a writer's temporary folder this old is a dead writer's, whatever its host
_WRITERS_FOLDER = re.compile(r"\.tmp-(\d{1,9})@(.+)-[0-9a-f]{8}")  # .tmp-<pid>@<host>-<random>


def _host() -> str:
    return slug(socket.gethostname())


def writer_folder(parent: Path) -> Path:
    """A new hidden folder name in ``parent`` for a writer to build in (``.tmp-<pid>@<host>-<random>``): records and
    reports name theirs alike, so a dead writer's is removed by the next writer there, whichever it is."""
    return parent / f".tmp-{os.getpid()}@{_host()}-{uuid.uuid4().hex[:8]}"


def remove_dead_writers_folders(output: Path) -> None:
    """Remove the temporary folders that writers killed mid-record (kill -9, power loss) left in ``output``:
    those of a process of this host that is gone, and any older than LEFTOVER_HOURS (a writer on another host
    sharing the folder, or a pid reused since). A live writer's folder is left alone."""
    host, now = _host(), time.time()
    for folder in output.glob(".tmp-*"):
        match = _WRITERS_FOLDER.fullmatch(folder.name)
        if match is None:
            continue
        try:
            old = now - folder.stat().st_mtime > LEFTOVER_HOURS * 3600
        except OSError:  # another writer removed it meanwhile
            continue
        if old or (match[2] == host and not _alive(int(match[1]))):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


