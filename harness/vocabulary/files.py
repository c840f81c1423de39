"""The one way a file is written: to a temporary sibling, flushed to disk, then renamed over the target, so a reader
(or a run killed mid-write) sees the old file or the new one, never half of it."""

from __future__ import annotations

import contextlib
import os
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
