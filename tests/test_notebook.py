"""notebooks/report.ipynb executes top to bottom (nbclient) on real records and shows its plots."""

import os

import nbformat
import pytest

from tests.conftest import REPO
from tests.record_fixtures import real_records

NOTEBOOK = REPO / "notebooks" / "report.ipynb"


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
    assert "2 run record(s)" in text and "truncated-16" in text and "significant regression(s)" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # metric bars, per-query deltas, Recall@k, latency
    markdown = "".join(o["data"].get("text/markdown", "") for o in outputs if "data" in o)
    assert "| noveleval | truncated-16 |" in markdown and "▼" in markdown
