"""How a suite's `model:` names a model: the bundled MiniLM, a random-weight architecture, a local folder, or
otherwise a Hugging Face Hub id (the only kind that has revisions)."""

from __future__ import annotations

from pathlib import Path

BUNDLED_PREFIX = "bundled:"
RANDOM_PREFIX = "random:"
GLOB_CHARACTERS = "*?["  # a `model:` holding one of these is a series of checkpoint folders


def is_hub_id(model: str) -> bool:
    """Neither bundled, random nor a local path (relative paths as the loader reads them: from the working
    directory)."""
    return not model.startswith((BUNDLED_PREFIX, RANDOM_PREFIX)) and not Path(model).exists()


def is_series(model: str) -> bool:
    return any(c in model for c in GLOB_CHARACTERS)
