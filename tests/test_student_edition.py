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


# Notebook 05 is an open lab in Keras and Optuna terms: what a student reads, runs and
# writes (every code cell but the graded checks) needs only these course names.
PART5_COURSE_NAMES = {
    "load_profile_data",  # the data
    "create_study",  # the Optuna study's storage in runs/
    "plot_study",  # a study's results as a picture
    "TestSplit",  # the one logged test evaluation
    "save_final_model",  # what the grader reloads
}


def _course_names_outside_checks(path) -> tuple[set[str], list[str], int]:
    """The ``lab.<name>`` names and ``cifar_lab`` imports of the code cells but the checks."""
    import re

    import nbformat

    cells = [
        cell.source
        for cell in nbformat.read(path, as_version=4).cells
        if cell.cell_type == "code" and not cell.metadata.get("nbgrader", {}).get("grade")
    ]
    used = {name for source in cells for name in re.findall(r"\blab\.(\w+)", source)}
    imports = [
        line.split("#")[0].strip()
        for source in cells
        for line in source.splitlines()
        if re.match(r"\s*(from|import)\s+cifar_lab\b", line)
    ]
    return used, imports, len(cells)


def test_the_released_05_uses_keras_optuna_and_five_course_names():
    released, imports, cells = _course_names_outside_checks(STUDENT_EDITION / "05_tuning.ipynb")
    assert released <= PART5_COURSE_NAMES, sorted(released - PART5_COURSE_NAMES)
    assert imports == ["import cifar_lab as lab"], imports
    assert cells > 10  # the stubs, the setup and the cells that show the searches
    # the model answer's own code (the solutions) needs no other course name either
    answer, imports, _ = _course_names_outside_checks(REPO_ROOT / "notebooks" / "05_tuning.ipynb")
    assert answer == PART5_COURSE_NAMES, sorted(answer)
    assert imports == ["import cifar_lab as lab"], imports
