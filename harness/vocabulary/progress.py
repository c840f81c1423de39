"""Progress of a long stage: a live bar on a terminal, a few plain lines in a log, CI or notebook."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Update = Callable[[int], None]

LINES_PER_STAGE = 10  # off a terminal: one line per 10% (and one at the end)


@contextmanager
def progress(total: int, desc: str, *, enabled: bool = True, unit: str = "doc") -> Iterator[Update]:
    """Yield ``update(n)``, to be called as ``n`` more of ``total`` units are done.

    On a terminal (stderr is a TTY) a tqdm bar redraws in place and disappears when done. Anywhere
    else, where carriage-return redraws would pile up as thousands of lines, at most one line is
    printed per tenth of the work, plus one when the stage ends.
    """
    if not enabled or total <= 0:
        yield lambda n: None
        return
    if sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(total=total, desc=desc, unit=unit, leave=False) as bar:
            yield bar.update
        return
    lines = _ProgressLines(total, desc, unit)
    yield lines.update
    lines.finish()


class _ProgressLines:
    def __init__(self, total: int, desc: str, unit: str):
        self.total, self.desc, self.unit = total, desc, unit
        self.done = 0
        self.next_tenth = 1
        self.started = time.perf_counter()

    def update(self, n: int) -> None:
        self.done += n
        if self.done >= self.total:
            return  # finish() prints the last line
        tenth = self.done * LINES_PER_STAGE // self.total
        if tenth >= self.next_tenth:
            self.next_tenth = tenth + 1
            self._print()

    def finish(self) -> None:
        if self.done >= self.total:
            self._print()

    def _print(self) -> None:
        seconds = time.perf_counter() - self.started
        print(f"{self.desc}: {min(self.done, self.total):,}/{self.total:,} {self.unit}s "
              f"({100 * self.done // self.total}%, {seconds:.1f} s)", file=sys.stderr, flush=True)
