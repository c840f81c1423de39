"""Comparing, checking, churning and reporting records needs no torch: a team's CI box that only gates result
folders should not install a deep-learning stack. Each command runs in a fresh interpreter in which importing
torch, transformers or sentence-transformers fails, on the records shipped under results/."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

BLOCKED = ("torch", "transformers", "sentence_transformers")
# A meta-path finder placed first: `import torch` (or any submodule) raises ImportError, as on a machine without it.
CHILD = """
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is not installed here (blocked by the test)")
        return None
sys.meta_path.insert(0, NoTorch())
from harness.cli import main
code = main({argv!r})
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {blocked!r})
print("LOADED=" + ",".join(loaded))
sys.exit(code)
"""

BASE = REPO / "results" / "baselines"
TRUNC = REPO / "results" / "truncation-16"
NOVEL_BASE = next(BASE.glob("*noveleval*"))
NOVEL_TRUNC = next(TRUNC.glob("*noveleval*"))


def run_without_torch(argv: list[str]) -> subprocess.CompletedProcess[str]:
    code = CHILD.format(blocked=BLOCKED, argv=argv)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_the_block_is_real():
    """The child cannot import torch at all: the other tests prove something."""
    block = CHILD.format(blocked=BLOCKED, argv=[]).split("from harness.cli")[0]
    proc = subprocess.run([sys.executable, "-c", block + "import torch"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "blocked by the test" in proc.stderr


@pytest.mark.parametrize("argv", [
    ["compare", str(BASE), str(TRUNC), "--resamples", "200"],
    ["churn", str(NOVEL_BASE), str(NOVEL_TRUNC), "--resamples", "200"],
    ["check", "suites/regression.yaml", "--results", str(BASE), "--resamples", "200"],
    ["power", str(BASE), str(TRUNC)],
], ids=["compare", "churn", "check", "power"])
def test_analysis_commands_run_without_torch(argv):
    proc = run_without_torch(argv)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED=\n" in proc.stdout or proc.stdout.rstrip().endswith("LOADED=")
    assert "Traceback" not in proc.stderr


def test_compare_without_torch_finds_the_shipped_regression(tmp_path):
    out = tmp_path / "cmp.json"
    proc = run_without_torch(["compare", str(BASE), str(TRUNC), "--test", "t-test", "--resamples", "500",
                              "--json", str(out), "--fail-on-regression"])
    assert proc.returncode == 1, proc.stderr  # truncating to 16 tokens is a significant drop: the gate fires
    verdicts = {(m["dataset"], m["metric"]): m for m in json.loads(out.read_text())["metrics"]}
    assert verdicts[("scifact", "nDCG@10")]["delta"] < 0


def test_report_without_torch(tmp_path):
    proc = run_without_torch(["report", str(BASE), str(TRUNC), "-o", str(tmp_path / "report"), "--format", "md",
                              "--resamples", "200", "--churn"])
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "scifact" in text and "churn" in text.lower()
