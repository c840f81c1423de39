"""What the harness writes from names it did not choose, and how the report folder is replaced.

Names from records and suites (hostile ones: HTML, Markdown and LaTeX syntax, path traversal) are escaped in every
renderer and never lead a file outside its folder; the report folder is built hidden and moved into place, so a
kill, a full disk or a read-only folder leaves the previous report as it was. Records are copies of shipped ones
(NovelEval, and the BM25 run on DL19 where only the folder matters) with their names edited: nothing is encoded.
"""

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import yaml
from matplotlib.figure import Figure

from harness.analysis.check import CheckReport, CheckResult, check_suite, select_records
from harness.analysis.power import power_report
from harness.api import SuiteResult, churn, compare, report
from harness.cli import main
from harness.input.suite import load_suite
from harness.reporting import load_report_data
from harness.reporting.exports import mteb_results
from harness.scoring.records import slug
from harness.scoring.scored import RunOutcome, ScoredRun, load_scored_runs
from harness.vocabulary.statistics import StatsOptions
from tests.conftest import DATA, REPO

HOSTILE = "<img src=x onerror=alert(1)> | & \\ % _ $ # { } ~ ^"
DATASET = "../../../../ESCAPED " + HOSTILE
ENCODERS = (HOSTILE + " [a]", "truncated " + HOSTILE)
RESULTS = REPO / "results"
SHIPPED = [RESULTS / "baselines" / "regression--noveleval--all-MiniLM-L6-v2--2026-11-27T025810Z",
           RESULTS / "truncation-16" / "truncation-16--noveleval--all-MiniLM-L6-v2-trunc16--2026-11-27T030314Z"]
BM25 = RESULTS / "external-dl19" / "regression--dl19-pool--BM25.dl19--2026-11-27T130118Z"
FAST = ["--resamples", "200"]
TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
       "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
       ">": r"\textgreater{}", "|": r"\textbar{}"}  # what each LaTeX special character must become


def copy_records(folder: Path, *, dataset: str = DATASET, encoders=ENCODERS, suite: str = HOSTILE,
                 count: int = 2) -> Path:
    """Copies of the shipped NovelEval records (control, then truncated to 16 tokens) under new names."""
    for source, encoder in list(zip(SHIPPED, encoders))[:count]:
        target = folder / source.name
        shutil.copytree(source, target)
        record = json.loads((target / "record.json").read_text(encoding="utf-8"))
        record["dataset"]["name"], record["encoder"]["name"], record["suite"]["name"] = dataset, encoder, suite
        (target / "record.json").write_text(json.dumps(record), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """The hostile-named records, and the report over them with its churn section (`harness.report`)."""
    base = tmp_path_factory.mktemp("hostile")
    records = copy_records(base / "records")
    return base, records, report([records], output=base / "out" / "report", n_resamples=200, churn=True)


def bm25(folder: Path, dataset: str) -> Path:
    """A copy of the shipped BM25 run record of DL19 (an external run: a report over it draws two plots)."""
    target = folder / BM25.name
    shutil.copytree(BM25, target)
    record = json.loads((target / "record.json").read_text(encoding="utf-8"))
    record["dataset"]["name"] = dataset
    (target / "record.json").write_text(json.dumps(record), encoding="utf-8")
    return folder


def report_of(records: Path, out: Path) -> int:
    return main(["report", str(records), "-o", str(out), *FAST])


@pytest.fixture(scope="module")
def previous(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("previous")
    assert report_of(bm25(base / "records", "first"), base / "report") == 0
    return base / "report"


@pytest.fixture
def out(tmp_path, previous) -> Path:
    """A copy of a report folder `harness report` wrote (over a dataset named 'first')."""
    return shutil.copytree(previous, tmp_path / "report")


@pytest.fixture
def second(tmp_path) -> Path:
    """Records for the next report: a dataset named 'second'."""
    return bm25(tmp_path / "records", "second")


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def hidden_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp-"))


def no_raw_html(text: str) -> None:
    """No tag of a name survives: every <img is one of the report's own data-URI figures."""
    assert "onerror=alert(1)>" not in text
    assert all(m.startswith('<img alt="') for m in re.findall(r"<img[^>]{0,10}", text)), text[:300]


def untex(text: str) -> str:
    """LaTeX text back to the characters it prints; refuses a special character left unescaped."""
    by_escape = {v: k for k, v in TEX.items()}
    parts = re.split("(" + "|".join(map(re.escape, sorted(by_escape, key=len, reverse=True))) + ")", text)
    assert not any(set(p) & set(TEX) for p in parts[::2]), text
    return "".join(by_escape.get(p, p) for p in parts)


def markdown_cells(line: str) -> list[str]:
    """A Markdown table row split where GFM splits it: at pipes no backslash escapes."""
    return re.split(r"(?<!\\)\|", line.strip()[1:-1])


# ------------------------------------------------------------------ names through every renderer


def test_the_report_escapes_names_in_every_format_and_writes_only_under_its_folder(hostile):
    base, records, written = hostile
    out = base / "out" / "report"
    assert written.markdown == out / "report.md"
    outside = [p for p in base.rglob("*") if not p.is_relative_to(out) and not p.is_relative_to(records)]
    assert outside == [base / "out"]  # not ESCAPED*.json four folders up from mteb/<encoder>/
    mteb = sorted((out / "mteb").rglob("*.json"))
    assert len(mteb) == 2 and all(p.parent.parent == out / "mteb" for p in mteb)
    assert [json.loads(p.read_text())["task_name"] for p in mteb] == [DATASET, DATASET]

    md = (out / "report.md").read_text(encoding="utf-8")
    no_raw_html(md)
    assert "&lt;img src=x onerror=alert(1)&gt; \\| &amp; \\\\ %" in md
    rows = [line for line in md.splitlines() if line.startswith("| ../../../../ESCAPED")]
    assert rows and all(len(markdown_cells(row)) == 2 + 5 for row in rows[:2])  # dataset, encoder, 5 metrics
    assert "## Ranking churn" in md
    images = [line for line in md.splitlines() if line.startswith("![")]
    alt = r"(?:[^\[\]]|\\\[|\\\])*"  # brackets only escaped
    assert images and all(re.fullmatch(rf"!\[{alt}\]\(plots/[^()]+\.png\)", line) for line in images)
    assert any("\\[a\\]" in line for line in images)  # the name's brackets, escaped in the alt text

    html = (out / "report.html").read_text(encoding="utf-8")
    no_raw_html(html)
    assert "&lt;img src=x onerror=alert(1)&gt; | &amp; \\ % _ $ # { } ~ ^" in html

    tex = (out / "results.tex").read_text(encoding="utf-8")
    [row] = [line for line in tex.splitlines() if "ESCAPED" in line]
    assert [untex(cell.strip()) for cell in re.split(r"(?<!\\)&", row)[:2]] == [DATASET, ENCODERS[0]]

    flat = list(csv.DictReader((out / "results.csv").open(encoding="utf-8")))
    assert {(r["dataset"], r["encoder"]) for r in flat} == {(DATASET, e) for e in ENCODERS}


def test_an_encoder_named_dot_dot_keeps_its_mteb_file_in_mteb(tmp_path):
    records = copy_records(tmp_path / "records", dataset="noveleval", encoders=("..", "."))
    data = load_report_data([records], stats=StatsOptions(n_resamples=200))
    for name in mteb_results(data):
        assert os.path.normpath(f"mteb/{name}").startswith("mteb/"), name


def test_notebook_renderings_escape_names(tmp_path, hostile):
    _, records, written = hostile
    [control, truncated] = sorted(records.iterdir())
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(yaml.safe_dump({
        "name": HOSTILE, "datasets": [{"name": DATASET, "path": str(DATA / "noveleval")}],
        "encoders": [{"name": ENCODERS[0], "model": "bundled:all-MiniLM-L6-v2",
                      "expect": {DATASET: {"nDCG@10": {"value": 0.5, "tolerance": 0.01}}}}],
        "metrics": ["nDCG@10"]}), encoding="utf-8")
    suite = load_suite(suite_file)
    chosen = select_records(suite, load_scored_runs([records]), str(records))
    checked = check_suite(suite, chosen, stats=StatsOptions(n_resamples=200))
    ran = SuiteResult(suite, [RunOutcome(DATASET, ENCODERS[0], ScoredRun.load(control)),
                              RunOutcome(DATASET, ENCODERS[1], error=f"could not load {HOSTILE}")])
    shown = [checked, compare(records, n_resamples=200), churn(control, truncated, n_resamples=200),
             power_report([records]), load_report_data([records], stats=StatsOptions(n_resamples=200)), ran, written]
    for thing in shown:
        for render in ("_repr_markdown_", "_repr_html_"):
            if hasattr(thing, render):
                text = getattr(thing, render)()
                no_raw_html(text)
                assert "&lt;img src=x onerror=alert(1)&gt;" in text, (thing, render)
    assert checked._repr_markdown_().startswith("**&lt;img src=x onerror=alert(1)&gt; | &amp; \\\\ % _")
    assert "| &lt;img src=x onerror=alert(1)&gt; \\| &amp; \\\\ % _ $ # { } ~ ^ [a] |" in ran._repr_markdown_()


def test_junit_xml_holds_any_name():
    suite = "gate \x1b[31m<&\"'>\x00"
    result = CheckResult(DATASET, ENCODERS[0], "expect", "nDCG@10", "FAIL", 0.7, 0.6, -0.1, 0.01,
                         message=f"{HOSTILE} \x07")
    root = ET.fromstring(CheckReport(suite, [result], {}).to_junit().encode("utf-8"))
    [case] = root.iter("testcase")
    assert root.find("testsuite").get("name") == "harness check gate \ufffd[31m<&\"'>\ufffd"
    assert case.get("classname") == f"gate \ufffd[31m<&\"'>\ufffd.{DATASET}.{ENCODERS[0]}"
    assert HOSTILE in case.find("failure").get("message") and case.find("failure").text.endswith("\ufffd)")


# ------------------------------------------------------------------ the report folder


def test_a_report_replaces_the_previous_one_as_a_whole(tmp_path, out, second, capsys):
    assert any(p.name.startswith("bars--first") for p in (out / "plots").iterdir())
    capsys.readouterr()
    assert report_of(second, out) == 0
    files = files_under(out)
    assert not any("first" in name for name in files), "a plot of the earlier report is left"
    marker = json.loads(files.pop(".harness-report"))
    assert sorted(marker["files"]) == sorted(files) and "bars--second.png" in str(files)
    assert capsys.readouterr().out.split() == [str(out / "report.md"), str(out / "report.html")]
    assert hidden_leftovers(tmp_path) == []


@pytest.mark.parametrize("case", ["user-folder", "extra-file", "file"])
def test_a_folder_that_is_not_a_report_is_left_alone(tmp_path, out, second, capsys, case):
    if case == "file":
        shutil.rmtree(out)
        out.write_text("my notes\n")
    elif case == "user-folder":
        shutil.rmtree(out)
        out.mkdir()
    if case != "file":
        (out / "notes.txt").write_text("my notes\n")
    before = out.read_bytes() if case == "file" else files_under(out)
    capsys.readouterr()
    assert report_of(second, out) == 2
    err = capsys.readouterr().err
    assert f"error: {out}: " in err and "Traceback" not in err
    assert {"user-folder": "no .harness-report", "extra-file": "(notes.txt)", "file": "not a folder"}[case] in err
    assert (out.read_bytes() if case == "file" else files_under(out)) == before
    assert hidden_leftovers(tmp_path) == []


@pytest.mark.parametrize("fails", ["plot", "report.html"])
def test_a_full_disk_leaves_the_previous_report(tmp_path, out, second, monkeypatch, capsys, fails):
    before = files_under(out)
    saved = []
    real_savefig, real_write_text = Figure.savefig, Path.write_text

    def savefig(self, *args, **kwargs):
        if fails == "plot" and len(saved) == 3:  # three plot files are on disk: a partial report
            raise OSError(28, os.strerror(28))
        saved.append(real_savefig(self, *args, **kwargs))

    def write_text(self, *args, **kwargs):
        if fails == self.name:
            raise OSError(28, os.strerror(28))
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    monkeypatch.setattr(Path, "write_text", write_text)
    capsys.readouterr()
    assert report_of(second, out) == 2
    err = capsys.readouterr().err
    assert err == f"error: cannot write {out} (No space left on device); it is as it was: free space or make its " \
                  "folder writable, or choose another -o\n"
    assert files_under(out) == before and hidden_leftovers(tmp_path) == []


@contextmanager
def read_only(folder: Path):
    """A folder nobody may change, root included: immutable (chattr +i) for root, mode 0555 for others."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)],
                                                        capture_output=True).returncode:
        pytest.skip("root, and this file system cannot make a folder immutable (chattr +i)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.parametrize("folder", [".", "plots"])
def test_a_read_only_report_folder_is_left_as_it_was(tmp_path, out, second, capsys, folder):
    before = files_under(out)
    capsys.readouterr()
    with read_only(out / folder):
        assert report_of(second, out) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: cannot write {out} ({os.path.normpath(out / folder)} is read-only)")
        assert "chmod -R u+w" in err
        assert files_under(out) == before
    assert hidden_leftovers(tmp_path) == []


def test_an_empty_or_unwritable_place_for_the_report(tmp_path, second, capsys):
    parent = tmp_path / "shared"
    parent.mkdir()
    with read_only(parent):
        assert report_of(second, parent / "report") == 2
        assert capsys.readouterr().err.startswith(f"error: cannot write {parent / 'report'} (")
        assert list(parent.iterdir()) == []
    (tmp_path / "a-file").write_text("")
    assert report_of(second, tmp_path / "a-file" / "report") == 2
    assert capsys.readouterr().err.startswith(f"error: cannot write {tmp_path / 'a-file' / 'report'} (Not a dir")
    (parent / "report").mkdir()
    assert report_of(second, parent / "report") == 0 and (parent / "report" / "report.md").is_file()


KILLED = """
import os, signal, sys
import harness.reporting.render
from harness.cli import main
{patch}
main(sys.argv[1:])
"""
KILL_AT = {  # the child kills itself (SIGKILL) while building the report, or between the two renames
    "building": "harness.reporting.render.to_html = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)",
    "swapping": ("rename = os.rename\n"
                 "def kill_after_first(*args):\n"
                 "    rename(*args)\n"
                 "    os.kill(os.getpid(), signal.SIGKILL)\n"
                 "os.rename = kill_after_first"),
}


@pytest.mark.parametrize("when", list(KILL_AT))
def test_kill_9_leaves_no_mixed_report_and_the_next_report_cleans_up(tmp_path, out, second, when):
    before = files_under(out)
    args = ["report", str(second), "-o", str(out), *FAST]
    child = subprocess.run([sys.executable, "-c", KILLED.format(patch=KILL_AT[when]), *args], cwd=REPO,
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr
    if when == "building":
        assert files_under(out) == before  # the previous report, whole: no new report.md beside its report.html
    else:
        assert not out.exists()  # the previous report in a hidden backup, the new one in its hidden folder
    assert len(hidden_leftovers(tmp_path)) == {"building": 1, "swapping": 2}[when]
    live = tmp_path / f".tmp-{os.getpid()}@{slug(socket.gethostname())}-0123abcd"  # a writer still at work
    live.mkdir()

    assert main(args) == 0
    assert hidden_leftovers(tmp_path) == [live.name]
    assert all("first" not in name for name in files_under(out)) and (out / "plots" / "bars--second.png").is_file()


# ------------------------------------------------------------------ harness pool


def test_pool_into_a_folder_it_cannot_write_is_refused_with_nothing_left(tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    assert main(["pool", str(SHIPPED[0]), "-o", str(tmp_path / "a-file" / "pool.tsv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write {tmp_path / 'a-file' / 'pool.tsv'} (") and "Traceback" not in err
    locked = tmp_path / "locked"
    locked.mkdir()
    with read_only(locked):
        assert main(["pool", str(SHIPPED[0]), "-o", str(locked / "pool.tsv")]) == 2
        assert capsys.readouterr().err.startswith(f"error: cannot write {locked / 'pool.tsv'} (")
        assert list(locked.iterdir()) == []
    assert main(["pool", str(SHIPPED[0]), "-o", str(locked / "pool.tsv")]) == 0
    assert [p.name for p in locked.iterdir()] == ["pool.tsv"]
