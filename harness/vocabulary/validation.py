"""Typed values validated strictly, and the one formatter that turns a pydantic ValidationError into lines a user
can act on (the field, what is wrong, the fix)."""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.vocabulary.errors import HarnessError

MAX_MESSAGE_LINE = 500  # characters of one error line that echoes input
MAX_MESSAGE_LINES = 20

# pydantic error type -> how to write the value instead
TYPE_FIXES = {
    "int_type": "write a whole number without quotes, e.g. 10",
    "float_type": "write a number without quotes, e.g. 0.05",
    "bool_type": "write true or false without quotes",
    "finite_number": "write a finite number",
}

Model = TypeVar("Model", bound=BaseModel)
AllowedKeys = Callable[[tuple[Any, ...]], Sequence[str]]


class StrictModel(BaseModel):
    """A typed value: unknown keys are refused, and it cannot be changed once made."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def explain_errors(exc: ValidationError, *, allowed_keys: AllowedKeys | None = None) -> str:
    """One indented line per problem (MAX_MESSAGE_LINES at most), each clipped, since the lines echo keys and
    values. ``allowed_keys(loc)`` names the keys valid where an unknown key was found, for a did-you-mean hint."""
    errors = exc.errors()
    lines = []
    for err in errors[:MAX_MESSAGE_LINES]:
        loc = ".".join(str(part) for part in err["loc"])
        if err["type"] == "extra_forbidden" and allowed_keys is not None:
            key = str(err["loc"][-1])
            allowed = list(allowed_keys(err["loc"]))
            hint = difflib.get_close_matches(key, allowed, n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
            lines.append(f"  {loc}: unknown key '{key}'{suggestion} Allowed: {', '.join(allowed)}")
        else:
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] in TYPE_FIXES:
                message += f", not {reprlib.repr(err['input'])}: {TYPE_FIXES[err['type']]}"
            lines.append(f"  {loc or '(top level)'}: {message}")
    if len(errors) > MAX_MESSAGE_LINES:
        lines.append(f"  ... and {len(errors) - MAX_MESSAGE_LINES} more")
    return "\n".join(map(clip, lines))


def clip(text: str) -> str:
    """``text`` with its middle left out beyond MAX_MESSAGE_LINE characters (the field and the fix stay)."""
    if len(text) <= MAX_MESSAGE_LINE:
        return text
    half = MAX_MESSAGE_LINE // 2
    return f"{text[:half]}...({len(text) - 2 * half:,} characters left out)...{text[-half:]}"


def validated(model: type[Model], raw: object, what: str) -> Model:
    """``raw`` as a ``model``, or HarnessError naming each invalid field of ``what``."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise HarnessError(f"invalid {what}:\n{explain_errors(exc)}") from None
