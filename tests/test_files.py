"""The one atomic writer: a reader sees the old file or the new one; a failure leaves no temporary file behind."""

from __future__ import annotations

import pytest

from harness.vocabulary.errors import HarnessError
from harness.vocabulary.files import atomic_file, write_file


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    target = write_file(tmp_path / "out" / "summary.json", "old\n")
    with pytest.raises(RuntimeError), atomic_file(target) as handle:
        handle.write("half of the new")
        raise RuntimeError("killed")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["summary.json"]


def test_the_new_content_replaces_the_old_in_one_step(tmp_path):
    target = write_file(tmp_path / "a.bin", b"\x00\x01")
    assert write_file(target, "text, written as UTF-8: é\n") == target
    assert target.read_bytes() == "text, written as UTF-8: é\n".encode()


def test_an_unwritable_place_names_the_path_and_what_it_held(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(HarnessError, match=r"cannot write .*a-file/x.json \(.*\); nothing was written \(the summary\)"):
        write_file(tmp_path / "a-file" / "x.json", "{}", what="the summary")
