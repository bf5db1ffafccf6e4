"""Submission check (student side) and the notebook inspection it shares with grading."""

from __future__ import annotations

import json
import re
import shutil
import zipfile

import pytest
from instructor_fixtures import (
    VAL_ACCURACY,
    code_cells,
    count_answer_cells,
    course_source,
    edit_notebook,
    run_cli,
    write_submission,
)

from cifar_lab.instructor.inspection import (
    inspect_notebook,
    read_notebook_json,
    structure_findings,
)
from cifar_lab.instructor.notebooks import COURSE_NOTEBOOKS, course_notebooks
from cifar_lab.instructor.release import MANIFEST_FILE, release
from cifar_lab.tuning.part5 import MODEL_FILE, PART5_DIR, RESULTS_FILE


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A released course and a tiny model (submit loads it as the grader will)."""
    import keras

    base = tmp_path_factory.mktemp("course")
    source = course_source(base / "source")
    release(base / "release", source_dir=source)
    model = base / "model.keras"
    layers = [keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)]
    keras.Sequential(layers).save(model)
    return source, base / "release" / MANIFEST_FILE, model


@pytest.fixture
def student_dir(course, tmp_path):
    source, manifest, model = course
    root = write_submission(tmp_path / "notebooks", source, model, test_accuracy=0.5)
    shutil.copyfile(manifest, root / MANIFEST_FILE)  # handed out with the release
    return root


def test_course_notebook_names_match_the_repository():
    assert tuple(p.stem for p in course_notebooks()) == COURSE_NOTEBOOKS


def test_submit_zips_a_complete_submission(student_dir, tmp_path, capsys):
    out = tmp_path / "alice.zip"
    assert run_cli("submit", "--notebook-dir", str(student_dir), "--out", str(out)) == 0
    assert "all checks passed" in capsys.readouterr().out
    with zipfile.ZipFile(out) as archive:
        names = sorted(archive.namelist())
    expected = [f"{n}.ipynb" for n in COURSE_NOTEBOOKS]
    assert names == sorted([*expected, f"{PART5_DIR}/{RESULTS_FILE}", f"{PART5_DIR}/{MODEL_FILE}"])


def _break(notebook: dict) -> None:
    cells = code_cells(notebook)
    cells[2]["execution_count"] = None
    cells[3]["outputs"].append({"output_type": "error", "ename": "NotImplementedError",
                                "evalue": "Part II: implement `x`", "traceback": []})  # fmt: skip


def test_submit_lists_every_problem_with_a_fix_and_writes_nothing(student_dir, tmp_path, capsys):
    edit_notebook(student_dir, "02_barebones_tensorflow", _break)
    (student_dir / "04_keras_sequential_functional.ipynb").unlink()
    (student_dir / PART5_DIR / MODEL_FILE).unlink()
    (student_dir / PART5_DIR / RESULTS_FILE).write_text(json.dumps({"val_accuracy": VAL_ACCURACY}))
    edit_notebook(
        student_dir, "05_tuning", lambda nb: nb["cells"][-1].update(source="**Answer:**\n")
    )
    out = tmp_path / "alice.zip"
    assert run_cli("submit", "--notebook-dir", str(student_dir), "--out", str(out)) == 1
    text = capsys.readouterr().out
    assert not out.exists()
    for expected in (
        "02: cell 4 (id ID) was never run",
        "fix: re-run 02_barebones_tensorflow from the top (Kernel > Restart Kernel and Run All",
        "02: cell 6 raised NotImplementedError: Part II: implement `x`",
        "04: 04_keras_sequential_functional.ipynb is missing",
        f"part5: {PART5_DIR}/{MODEL_FILE} is missing",
        f"part5: {RESULTS_FILE}: 'test_accuracy' is not a number in 0..1",
        f"[warning] 05: 1 of {count_answer_cells(student_dir)} written answers are empty",
    ):
        # cell ids change whenever the notebooks are rebuilt: match any id
        pattern = re.escape(expected).replace("ID", r"\w+")
        assert re.search(pattern, text), text


def test_submit_without_a_manifest_still_checks_execution(student_dir, tmp_path, capsys):
    (student_dir / MANIFEST_FILE).unlink()
    edit_notebook(
        student_dir, "01_preparation", lambda nb: code_cells(nb)[0].update(execution_count=7)
    )
    assert (
        run_cli("submit", "--notebook-dir", str(student_dir), "--out", str(tmp_path / "a.zip"))
        == 1
    )
    text = capsys.readouterr().out
    assert "cell structure is not checked" in text and re.search(
        r"01: cell 1 \(id \w+\) ran out of order", text
    )


def test_oversized_notebook_is_refused_before_parsing(tmp_path):
    path = tmp_path / "02_big.ipynb"
    path.write_text("{" + " " * 2048)  # invalid JSON: parsing it would report that instead
    notebook, finding = read_notebook_json(path, max_bytes=1024)
    assert notebook is None and finding.severity == "damaged"
    assert "over the 0.0 MB limit" in finding.message and "JSON" not in finding.message


def test_structure_findings_name_each_kind_of_damage():
    expected = {"cells": [
        {"id": i, "kind": "given", "sha256": "", "first_line": f"line {i}", "has_check": i == "c"}
        for i in "abc"
    ]}  # fmt: skip

    def cells(*ids):
        return [{"id": i, "cell_type": "code", "source": ""} for i in ids]

    assert [f.message for f in structure_findings("03", cells("a", "x", "c"), expected)[0]][
        :1
    ] == ["cell id b was deleted ('line b')"]
    assert any(
        "duplicated" in f.message
        for f in structure_findings("03", cells("a", "b", "b", "c"), expected)[0]
    )
    assert any(
        "reordered (first: id c)" in f.message
        for f in structure_findings("03", cells("a", "c", "b"), expected)[0]
    )
    found, edited = structure_findings("03", cells("a", "new", "b", "c"), expected)
    assert edited == ["a", "b", "c"]  # sources differ from the (fake) digests
    assert [f.severity for f in found] == ["flagged"]  # only the edited check cell "c" matters
    no_ids = [{"cell_type": "code", "source": ""}]
    assert "cannot verify structure" in structure_findings("03", no_ids, expected)[0][0].message


def test_malformed_cells_are_damage_not_a_crash():
    inspection = inspect_notebook("02", {"nbformat": 4, "cells": ["not a cell"]}, None)
    assert inspection.state == "damaged" and "malformed" in inspection.findings[0].message
    inspection = inspect_notebook(
        "02", {"nbformat": 4, "cells": [{"cell_type": "code", "outputs": 5}]}, None
    )
    assert inspection.state == "damaged"
