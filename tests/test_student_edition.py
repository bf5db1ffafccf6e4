"""The committed student edition is what `release` writes now, and holds no solution.

``cifar_lab/student_edition/`` ships in the wheel instead of the instructor
notebooks (see :mod:`cifar_lab.instructor.release`). These tests need no wheel:
tests/test_wheel.py checks the built wheel itself.
"""

from __future__ import annotations

import json

import pytest
from conftest import REPO_ROOT

from cifar_lab.instructor import release as release_module
from cifar_lab.instructor.notebooks import STUDENT_EDITION, course_notebooks
from cifar_lab.instructor.release import (
    BEGIN_SOLUTION,
    CODE_PLACEHOLDER,
    END_SOLUTION,
    MANIFEST_FILE,
    build_release,
    course_manifest,
    release,
)

REGENERATE = "python -m cifar_lab release --out cifar_lab/student_edition --force"


def test_the_committed_edition_is_a_fresh_release(tmp_path):
    fresh = tmp_path / "fresh"
    release(fresh, source_dir=REPO_ROOT / "notebooks")
    written = sorted(p.name for p in fresh.iterdir())
    committed = sorted(p.name for p in STUDENT_EDITION.iterdir() if p.name != "__pycache__")
    assert committed == written, f"the student edition is out of date: run {REGENERATE}"
    stale = [n for n in written if (fresh / n).read_bytes() != (STUDENT_EDITION / n).read_bytes()]
    assert not stale, f"out of date: {stale}; run {REGENERATE}"


def test_the_edition_stubs_every_solution_block():
    source = course_notebooks(REPO_ROOT / "notebooks")
    edition = course_notebooks(STUDENT_EDITION)
    assert [p.name for p in edition] == [p.name for p in source]
    for original, student in zip(source, edition, strict=True):
        text, before = student.read_text(encoding="utf-8"), original.read_text(encoding="utf-8")
        assert BEGIN_SOLUTION not in text and END_SOLUTION not in text, student.name
        blocks = before.count(BEGIN_SOLUTION)
        placeholders = (CODE_PLACEHOLDER, release_module.ANSWER_PLACEHOLDER)
        # the instructions may name a placeholder too: count only the ones release added
        stubs = sum(text.count(word) - before.count(word) for word in placeholders)
        assert blocks > 0 and stubs == blocks, (student.name, blocks, stubs)


def test_installed_grading_uses_the_shipped_manifest(monkeypatch):
    shipped = json.loads((STUDENT_EDITION / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert course_manifest() == build_release()[1] == shipped  # a checkout derives the same
    monkeypatch.setattr(release_module, "notebooks_installed", lambda: True)
    monkeypatch.setattr(release_module, "build_release", lambda *_: pytest.fail("re-derived"))
    assert course_manifest() == shipped
    kinds = {c["kind"] for nb in shipped["notebooks"].values() for c in nb["cells"]}
    assert {"solution", "answer", "given"} <= kinds  # released from the instructor notebooks


def test_installed_release_asks_for_the_instructor_notebooks(monkeypatch, tmp_path):
    monkeypatch.setattr(release_module, "notebooks_installed", lambda: True)
    with pytest.raises(ValueError, match="--source-dir"):
        release(tmp_path / "out")
    release(tmp_path / "out", source_dir=REPO_ROOT / "notebooks")  # with them, it works
    assert (tmp_path / "out" / MANIFEST_FILE).is_file()
