"""Tables and numbers as every output prints them: terminal text, Markdown, HTML.

One formatter per medium, shared by compare, check, the CLI, the profile sweep and the report. Text from data or
configuration (suite, dataset, encoder names, notes) is escaped for the medium: ``html.escape`` for HTML,
``md_escape`` for Markdown.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence


def text_table(headers: Sequence[object], rows: Sequence[Sequence[object]]) -> str:
    """A pipe table with padded columns, for terminals and logs."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows)]

    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def md_escape(text: object) -> str:
    """Text as Markdown that shows it as it is: no raw HTML (``<``, ``>``, ``&`` become entities), a backslash
    stays a backslash, and a line break (which would end a heading, a table row or a paragraph) becomes a space."""
    return " ".join(html.escape(str(text), quote=False).replace("\\", "\\\\").splitlines())


def markdown_table(headers: Sequence[object], rows: Sequence[Sequence[object]]) -> str:
    def row(cells: Sequence[object]) -> str:
        return "| " + " | ".join(md_escape(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([row(headers), "|" + "---|" * len(headers), *map(row, rows)])


def html_table(headers: Sequence[object], rows: Sequence[Sequence[object]], *,
               cell: Callable[[str], str] = html.escape) -> str:
    """An HTML table; ``cell`` turns a cell's text into HTML (escaped by default)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def fmt_p(p: float) -> str:
    return f"{p:.2e}" if p < 1e-3 else f"{p:.4f}"


def fmt_num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"
