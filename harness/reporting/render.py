"""Render report blocks as Markdown (images as relative links) or one self-contained HTML file."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from harness.reporting.document import Block, Details, Heading, Para, Table
from harness.reporting.figures import FigureFile
from harness.vocabulary.tables import html_table, markdown_table, md_escape

CSS = """
body { font: 15px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1d1d1f;
       max-width: 1180px; margin: 2em auto; padding: 0 1.5em; }
h1 { font-size: 1.7em; border-bottom: 2px solid #0072b2; padding-bottom: .2em; }
h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.1em; margin-top: 1.5em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d0d0; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f2f5f8; }
tr:nth-child(even) td { background: #fafafa; }
p.note { color: #555; font-size: 13px; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #444; }
.better { color: #1b7837; font-weight: 600; }
.worse { color: #c2352b; font-weight: 600; }
"""


def to_markdown(blocks: list[Block], *, relative_to: Path) -> str:
    """Markdown; names from the records are escaped (``md_escape``), so no raw HTML reaches a renderer."""
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {md_escape(block.text)}")
        elif isinstance(block, Para):
            text = md_escape(block.text)
            out.append(f"_{text}_" if block.style == "note" else text)
        elif isinstance(block, Table):
            out.append(markdown_table(block.headers, block.rows))
        elif isinstance(block, Details):
            out.append("\n".join([f"**{md_escape(block.summary)}**", "", *(f"- {md_escape(line)}"
                                                                          for line in block.lines)]))
        elif isinstance(block, FigureFile):
            png = block.png.relative_to(relative_to).as_posix()
            svg = block.svg.relative_to(relative_to).as_posix()
            title = md_escape(block.title)
            alt = title.replace("[", "\\[").replace("]", "\\]")  # a bracket of a name would end the alt text
            out.append(f"![{alt}]({png})\n\n_{title}_ ([SVG]({svg}))")
    return "\n\n".join(out) + "\n"


def to_html(blocks: list[Block], *, title: str = "Retrieval evaluation report") -> str:
    """One file, no external resources: images are base64 data URIs, CSS is inline."""
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            css = ' class="note"' if block.style == "note" else ""
            body.append(f"<p{css}>{_inline(block.text)}</p>")
        elif isinstance(block, Table):
            body.append(html_table(block.headers, block.rows, cell=_cell))
        elif isinstance(block, Details):
            items = "".join(f"<li>{html.escape(line)}</li>" for line in block.lines)
            body.append(f"<details><summary>{html.escape(block.summary)}</summary><ul>{items}</ul></details>")
        elif isinstance(block, FigureFile):
            png = block.png.read_bytes()
            data = base64.b64encode(png).decode("ascii")
            width = int.from_bytes(png[16:20], "big") * 2 // 3  # 150-dpi PNG shown at ~100 px per inch
            body.append(f'<figure><img alt="{html.escape(block.title)}" width="{width}" '
                        f'src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(block.title)}</figcaption></figure>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _inline(text: str) -> str:
    """Escape, then render `code` spans."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _cell(text: str) -> str:
    escaped = html.escape(text)
    if "▲" in text or text == "better":
        return f'<span class="better">{escaped}</span>'
    if "▼" in text or text == "worse":
        return f'<span class="worse">{escaped}</span>'
    return escaped


def write_documents(blocks: list[Block], folder: Path, stem: str, formats: Sequence[str], *, title: str,
                    ) -> list[Path]:
    """``stem``.md and/or ``stem``.html of ``blocks`` in ``folder`` (Markdown links figures relative to it)."""
    written = []
    if "md" in formats:
        written.append(folder / f"{stem}.md")
        written[-1].write_text(to_markdown(blocks, relative_to=folder), encoding="utf-8")
    if "html" in formats:
        written.append(folder / f"{stem}.html")
        written[-1].write_text(to_html(blocks, title=title), encoding="utf-8")
    return written
