"""notebooks/report.ipynb uses only the public API (`import harness`) and executes top to bottom (nbclient) on
real records, showing the report, the comparison and the plots."""

import os
import re

import nbformat
import pytest

from tests.conftest import REPO
from tests.record_fixtures import real_records

NOTEBOOK = REPO / "notebooks" / "report.ipynb"


def test_report_notebook_uses_only_the_public_api():
    source = "\n".join(cell.source for cell in nbformat.read(NOTEBOOK, as_version=4).cells
                       if cell.cell_type == "code")
    imports = re.findall(r"^\s*(?:from|import)\s+(harness\S*)", source, flags=re.MULTILINE)
    assert imports == ["harness"]


def test_report_notebook_executes(tmp_path_factory, monkeypatch):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from nbclient import NotebookClient

    real = real_records(tmp_path_factory)
    monkeypatch.setenv("HARNESS_RESULTS", str(real.folder))  # the kernel inherits this environment
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "2 run record(s)" in text
    assert int(re.search(r"(\d+) significant regression\(s\)", text).group(1)) >= 1
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # metric bars, per-query deltas, Recall@k, latency
    [page] = [o["data"]["text/html"] for o in outputs  # the report page renders (other HTML is objects' own view)
              if "data:image/png;base64," in o.get("data", {}).get("text/html", "")]
    assert "<td>noveleval</td><td>truncated-16</td>" in page and "▼" in page
    assert page.count("data:image/png;base64,") >= 4
    markdown = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    assert any(m.startswith("| dataset ") and "| p Holm (randomization) |" in m and "| worse " in m
               for m in markdown)  # the comparison, rendered by itself
