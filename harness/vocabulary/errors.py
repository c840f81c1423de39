"""Error types that map to the CLI's exit codes (DESIGN.md: 0 ok, 1 regression, 2 bad input)."""


class HarnessError(Exception):
    """Bad usage or bad input: the message names the file/field and the fix. Exit code 2."""

    exit_code = 2
