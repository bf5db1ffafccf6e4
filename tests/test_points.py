"""The points table, the nbgrader metadata written from it, and the docs' copy of it."""

from __future__ import annotations

import copy
import shutil

import nbformat
import pytest
from conftest import REPO_ROOT

from cifar_lab.instructor.notebooks import course_notebooks
from cifar_lab.instructor.points import (
    COURSE_MAX_POINTS,
    KINDS,
    POINTS,
    autograded_points,
    cells_by_grade_id,
    disagreements,
    expected_metadata,
    graded_cells,
    locate_cells,
    lock_cells,
    main,
    max_points,
    points_markdown,
)
from cifar_lab.instructor.release import BEGIN_SOLUTION, is_answer_cell, release_notebook

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = course_notebooks(NOTEBOOK_DIR)
PER_NOTEBOOK = {"01": 10, "02": 20, "03": 15, "04": 15, "05": 40}


def read(path):
    return nbformat.read(path, as_version=4)


def test_table_totals_kinds_and_ids():
    assert sorted(POINTS) == [path.name for path in NOTEBOOKS]
    assert {name[:2]: max_points(name) for name in POINTS} == PER_NOTEBOOK
    assert sum(max_points(name) for name in POINTS) == COURSE_MAX_POINTS == 100
    ids = [row.grade_id for rows in POINTS.values() for row in rows]
    assert len(ids) == len(set(ids)), "grade_ids must be unique across the course"
    for rows in POINTS.values():
        for index, row in enumerate(rows):
            assert row.kind in KINDS
            assert (row.points == 0) == (row.kind == "solution"), row
            if row.kind == "solution":  # every exercise is followed by its own check
                assert rows[index + 1] == rows[index + 1].__class__(
                    row.notebook, f"{row.grade_id}_check", "check", rows[index + 1].points
                )
    assert autograded_points("05_tuning") == 24  # 16 of notebook 05's 40 are written answers


def test_graded_cells_rejects_unknown_names():
    assert graded_cells("01_preparation") == graded_cells("01_preparation.ipynb")
    with pytest.raises(ValueError, match="no graded notebook"):
        graded_cells("06_extra.ipynb")
    with pytest.raises(TypeError):
        graded_cells(1)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_table_covers_every_solution_and_answer_cell(path):
    cells = read(path).cells
    located = locate_cells(cells, path.name)
    rows = {row.grade_id: row for row in graded_cells(path.name)}
    solutions = {
        i for i, c in enumerate(cells) if c.cell_type == "code" and BEGIN_SOLUTION in c.source
    }
    answers = {i for i, c in enumerate(cells) if is_answer_cell(c)}
    assert {located[g] for g, r in rows.items() if r.kind == "solution"} == solutions
    assert {located[g] for g, r in rows.items() if r.kind == "written"} == answers
    assert list(located.values()) == sorted(located.values()), "rows are in notebook order"
    for grade_id, row in rows.items():
        if row.kind == "solution":  # the check is the next code cell
            following = [i for i in range(located[grade_id] + 1, len(cells))]
            next_code = next(i for i in following if cells[i].cell_type == "code")
            assert located[f"{grade_id}_check"] == next_code


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_carry_the_tables_metadata(path):
    notebook = read(path)
    assert disagreements(notebook, path.name) == []
    by_id = cells_by_grade_id(notebook.cells)
    assert len(by_id) == len(notebook.cells), "every cell has one unique grade_id"
    assert all(len(indices) == 1 for indices in by_id.values())
    blocks = [cell.metadata["nbgrader"] for cell in notebook.cells]
    points = sum(b.get("points", 0) for b in blocks if b["grade"])
    assert points == max_points(path.name)
    for cell, block in zip(notebook.cells, blocks, strict=True):
        assert block["schema_version"] == 3
        if block["solution"]:  # exercises and written answers are what students edit
            assert not block["locked"]
            assert BEGIN_SOLUTION in cell.source
        else:
            assert block["locked"] and BEGIN_SOLUTION not in cell.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_nbgraders_own_validator_accepts_the_notebooks(path):
    v3 = pytest.importorskip("nbgrader.nbgraderformat.v3")
    v3.MetadataValidatorV3().validate_nb(read(path))  # raises on a bad or duplicated cell


def test_locate_cells_names_an_ambiguous_or_missing_anchor():
    cells = read(NOTEBOOK_DIR / "01_preparation.ipynb").cells
    twice = [
        *cells,
        copy.deepcopy(cells[locate_cells(cells, "01_preparation.ipynb")["minibatches"]]),
    ]
    with pytest.raises(ValueError, match="'class Minibatches' matches 2 solution cells"):
        locate_cells(twice, "01_preparation.ipynb")
    without = [c for c in cells if "def standardise_splits(" not in c.source]
    with pytest.raises(ValueError, match="matches 0 solution cells"):
        locate_cells(without, "01_preparation.ipynb")


def test_cells_by_grade_id_lists_duplicates():
    cells = read(NOTEBOOK_DIR / "02_barebones_tensorflow.ipynb").cells
    index = locate_cells(cells, "02_barebones_tensorflow.ipynb")["training_step"]
    duplicated = [*cells[: index + 1], copy.deepcopy(cells[index]), *cells[index + 1 :]]
    assert cells_by_grade_id(duplicated)["training_step"] == [index, index + 1]


def test_check_mode_fails_on_a_changed_notebook_and_write_fixes_only_metadata(tmp_path, capsys):
    for path in NOTEBOOKS:
        shutil.copy(path, tmp_path / path.name)
    assert main(["--check", "--notebook-dir", str(tmp_path)]) == 0
    target = tmp_path / "03_keras_model_subclassing.ipynb"
    notebook = read(target)
    notebook.cells[7].metadata["nbgrader"]["points"] = 50  # train_step_check, 5 in the table
    del notebook.cells[0].metadata["nbgrader"]
    nbformat.write(notebook, target)
    assert main(["--check", "--notebook-dir", str(tmp_path)]) == 1
    assert "2 cell(s) disagree" in capsys.readouterr().out
    assert main(["--write", "--notebook-dir", str(tmp_path)]) == 0
    assert target.read_bytes() == (NOTEBOOK_DIR / target.name).read_bytes()


def test_expected_metadata_locks_plain_cells_by_their_cell_id():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("intro")])
    [block] = expected_metadata(notebook.cells, "99_other.ipynb")
    assert block["grade_id"] == f"cell-{notebook.cells[0].id}"
    assert block["locked"] and not block["grade"] and not block["solution"]


def test_release_keeps_metadata_and_locks_cells_as_nbgrader_does():
    source = read(NOTEBOOK_DIR / "05_tuning.ipynb")
    released = release_notebook(source, part="Part V", name="05_tuning.ipynb")
    for before, after in zip(source.cells, released.cells, strict=True):
        block = after.metadata["nbgrader"]
        assert block == before.metadata["nbgrader"]
        assert after.metadata["deletable"] is False
        # students edit exercises and answers; checks and given cells are read-only
        assert after.metadata.get("editable", True) is bool(block["solution"])
    again = copy.deepcopy(released)
    lock_cells(again)
    assert again == released


def test_docs_show_the_points_table():
    page = (REPO_ROOT / "docs" / "nbgrader.md").read_text(encoding="utf-8")
    assert points_markdown() in page, (
        "docs/nbgrader.md's points table is stale: paste points_markdown()"
    )
