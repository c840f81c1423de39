"""Reports from records: Markdown, self-contained HTML, PNG/SVG plots, CSV/JSON/LaTeX/MTEB exports.

    data = load_report_data([Path("results")])      # records -> comparison, CIs, Recall@k curves
    build_report(data, Path("report"), formats=("html", "md"))
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.analysis.churn import Churn
from harness.reporting.data import ReportData, load_report_data
from harness.reporting.document import build_document
from harness.reporting.exports import write_exports
from harness.reporting.figures import churn_figure, draw_all, make_figures
from harness.reporting.folder import write_report_folder
from harness.reporting.plots import save as save_figure
from harness.reporting.render import write_documents
from harness.vocabulary.errors import HarnessError

__all__ = ["ReportData", "build_report", "load_report_data", "make_figures", "save_churn"]

FORMATS = ("html", "md")


def build_report(data: ReportData, output: Path, *, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write the report folder ``output`` as one step (see ``harness.reporting.folder``), replacing a previous
    report there; returns every path written."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise HarnessError(f"unknown report format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")

    def fill(folder: Path) -> list[Path]:
        figures = draw_all(data, folder / "plots")
        blocks = build_document(data, figures)
        written = [p for f in figures for p in (f.png, f.svg)]
        written += write_documents(blocks, folder, "report", formats, title="Retrieval evaluation report")
        return written + write_exports(data, folder)

    return write_report_folder(output, fill)


def save_churn(found: Churn, output: Path) -> list[Path]:
    """churn.json, churn.csv and churn.png/.svg (the distributions of overlap@k and RBO) under ``output``."""
    written = found.save(output)
    try:
        return written + list(save_figure(churn_figure(found), output / "churn"))
    except OSError as exc:
        raise HarnessError(f"{output}: cannot write the churn plots ({exc.strerror})") from None
