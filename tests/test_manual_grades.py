"""Written answers graded by hand: manual.csv out, a person's grades back in (CSV or nbgrader).

Submissions are the instructor notebooks "executed" by the fixtures (every check
passes, every written answer holds the same student text), graded statically
through the real CLI. Part V's model is left out, so no model is scored: the
autograded points are what the first run gives, and each merge must add exactly the
points filled in.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import json
import os
import sys
from pathlib import Path

import pytest
from instructor_fixtures import (
    STUDENT_ANSWER,
    course_source,
    edit_notebook,
    run_cli,
    write_submission,
)
from test_grading_points import _all_checks_pass

from cifar_lab.instructor.notebooks import course_notebooks
from cifar_lab.instructor.release import release
from cifar_lab.instructor.report import (
    MANUAL_COLUMNS,
    MANUAL_FILE,
    ManualEntry,
    ReportFile,
    ReportRow,
    feedback_path,
    read_csv_rows,
    read_manual_csv,
    written_cells,
)
from cifar_lab.tuning.part5 import MODEL_FILE, PART5_DIR

STUDENTS = ("alice", "=1+2", "dup name", "dup_name")
WRITTEN = written_cells()  # grade_id -> (notebook, points)
FULL_WRITTEN = sum(points for _, points in WRITTEN.values())
COMMENT = "-clear, but say why the units stay equal"  # starts like a formula


def _report(out: Path) -> dict[str, dict]:
    return {row["student"]: row for row in json.loads(out.with_suffix(".json").read_text())}


def _gradebook(path: Path) -> dict[str, dict]:
    return {row["student"]: row for row in read_csv_rows(path)}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Four submissions without a Part V model, graded once: the report and manual.csv."""
    base = tmp_path_factory.mktemp("manual")
    source = course_source(base / "source")
    manifest = release(base / "release", source_dir=source)
    placeholder = base / "placeholder.keras"
    placeholder.write_bytes(b"not scored")
    submissions = base / "submissions"
    for student in STUDENTS:
        root = write_submission(submissions / student, source, placeholder, 0.5)
        (root / PART5_DIR / MODEL_FILE).unlink()  # no model to score: grading stays fast
        for path in course_notebooks(root):
            edit_notebook(root, path.stem, _all_checks_pass)
    # the static read: these tests are about merging points, not about re-execution
    common = [str(submissions), "--manifest", str(manifest), "--source", "synthetic"]
    common.append("--trust-outputs")
    out = base / "first" / "report.csv"
    assert run_cli("grade", *common, "--out", str(out)) == 0
    return {"base": base, "common": common, "out": out, "rows": _report(out)}


def test_manual_csv_lists_every_written_answer_with_its_question(batch):
    path = batch["out"].parent / MANUAL_FILE
    with open(path, newline="", encoding="utf-8") as handle:
        assert next(csv.reader(handle)) == list(MANUAL_COLUMNS)
    rows = read_csv_rows(path)
    assert sorted((r["student"], r["grade_id"]) for r in rows) == sorted(
        (student, grade_id) for student in STUDENTS for grade_id in WRITTEN
    )
    answer = STUDENT_ANSWER.removeprefix("**Answer:**").strip()
    for row in rows:
        assert row["answer"] == answer  # the student's text, without the prefix
        assert row["max_points"] == str(WRITTEN[row["grade_id"]][1])
        assert row["points"] == row["comment"] == ""
    zero_init = next(r for r in rows if r["grade_id"] == "answer_zero_init")
    assert "all-zeros initialisation" in zero_init["question"]  # the course's own prompt
    assert "does not learn" not in zero_init["question"]  # and none of its solution
    first = batch["rows"]["alice"]
    assert first["manual_score"] == 0 and first["manual_ungraded"] == len(WRITTEN)


def _fill(path: Path, grades: dict[tuple[str, str], tuple[str, str]]) -> None:
    """Fill points and comments into manual.csv as a spreadsheet saves it (quotes kept)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        student = row["student"].removeprefix("'")  # as written: "'=1+2"
        points, comment = grades.get((student, row["grade_id"]), ("", ""))
        row["points"], row["comment"] = points, comment
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(MANUAL_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)


def _check_merged(out: Path, gradebook: Path, before: dict, given: dict[str, dict]) -> None:
    """Totals, gradebook, feedback and the new manual.csv carry the grades given by hand."""
    rows, book = _report(out), _gradebook(gradebook)
    for student, grades in given.items():
        added = sum(points for points, _ in grades.values())
        total = before[student]["total_points"] + added
        row = rows[student]
        assert row["total_points"] == pytest.approx(total), student
        assert row["manual_score"] == pytest.approx(added)
        assert row["manual_ungraded"] == len(WRITTEN) - len(grades)
        assert float(book[student]["total"]) == pytest.approx(total)
        page = feedback_path(out.parent / "feedback", student).read_text()
        assert page.count("graded by hand") >= len(grades)
        for _, comment in grades.values():
            assert html.escape(comment) in page
        if len(grades) < len(WRITTEN):
            assert f"{len(WRITTEN) - len(grades)} written answer(s) still await" in page
        entries = {
            r["grade_id"]: r for r in read_csv_rows(out.parent / MANUAL_FILE)
            if r["student"] == student
        }  # fmt: skip
        for grade_id, (points, comment) in grades.items():
            assert float(entries[grade_id]["points"]) == points
            assert entries[grade_id]["comment"] == comment
    untouched = rows["dup name"]
    assert untouched["total_points"] == before["dup name"]["total_points"]
    assert untouched["manual_ungraded"] == len(WRITTEN)


def test_csv_round_trip_merges_into_totals_gradebook_and_feedback(batch):
    out = batch["out"]
    given = {
        "alice": {grade_id: (points, "well argued") for grade_id, (_, points) in WRITTEN.items()},
        "=1+2": {"answer_zero_init": (1.5, COMMENT)},
    }
    _fill(
        out.parent / MANUAL_FILE,
        {(s, g): (str(p), c) for s, grades in given.items() for g, (p, c) in grades.items()},
    )
    gradebook = out.parent / "gradebook.csv"
    argv = [*batch["common"], "--out", str(out), "--gradebook", str(gradebook)]
    assert run_cli("grade", *argv, "--manual", str(out.parent / MANUAL_FILE)) == 0
    _check_merged(out, gradebook, batch["rows"], given)
    assert _report(out)["alice"]["total_points"] == batch["rows"]["alice"]["total_points"] + (
        FULL_WRITTEN
    )
    # grading again without --manual would overwrite the grades: refused before any work
    with pytest.raises(ValueError, match="--manual"):
        run_cli("grade", *batch["common"], "--out", str(out))
    assert _report(out)["alice"]["manual_score"] == FULL_WRITTEN


def _manual_file(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "filled.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["student", "grade_id", "points", "comment"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_wrong_rows_are_named_with_their_fix(tmp_path):
    rows = [
        {"student": "alice", "grade_id": "answer_zero_init", "points": "2"},
        {"student": "mallory", "grade_id": "answer_zero_init", "points": "1"},
        {"student": "alice", "grade_id": "standardise_splits_check", "points": "1"},
        {"student": "alice", "grade_id": "answer_summary", "points": "five"},
        {"student": "alice", "grade_id": "answer_ensemble", "points": "3"},
        {"student": "alice", "grade_id": "answer_regularisers", "points": "-1"},
        {"student": "alice", "grade_id": "answer_depth_width", "points": "nan"},
        {"student": "alice", "grade_id": "answer_zero_init", "points": "1"},
    ]
    with pytest.raises(ValueError) as raised:
        read_manual_csv(_manual_file(tmp_path, rows), {"alice"})
    message = str(raised.value)
    assert "7 wrong row(s)" in message
    for number, text in [
        (3, "'mallory' has no submission"),
        (4, "'standardise_splits_check' is not a written answer"),
        (5, "'five' is not a number"),
        (6, "outside 0..2"),
        (7, "outside 0..2"),
        (8, "outside 0..2"),
        (9, "graded in row 2 too"),
    ]:
        assert f"row {number}: " in message and text in message, (number, message)


def test_blank_points_are_not_graded_yet(tmp_path):
    rows = [
        {"student": "alice", "grade_id": "answer_zero_init", "points": "", "comment": "later"},
        {"student": "alice", "grade_id": "answer_summary", "points": "3.5", "comment": ""},
    ]
    grades = read_manual_csv(_manual_file(tmp_path, rows), {"alice", "bob"})
    assert grades["alice"]["answer_zero_init"].points is None
    assert grades["alice"]["answer_zero_init"].comment == "later"
    assert grades["alice"]["answer_summary"].points == 3.5
    other = tmp_path / "other.csv"
    other.write_text("name,score\nalice,2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"no column \['grade_id', 'points', 'student'\]"):
        read_manual_csv(other, {"alice"})


def _nbgrader_db(path: Path, assignment: str, given: dict[str, dict]) -> Path:
    """An nbgrader gradebook holding the written cells of 05 and the manual grades given."""
    nbgrader_api = pytest.importorskip("nbgrader.api", reason="pip install -e '.[nbgrader]'")
    with nbgrader_api.Gradebook(f"sqlite:///{path}") as gradebook:
        gradebook.add_assignment(assignment)
        for notebook in {name for name, _ in WRITTEN.values()}:
            gradebook.add_notebook(notebook.removesuffix(".ipynb"), assignment)
        for grade_id, (notebook, points) in WRITTEN.items():
            stem = notebook.removesuffix(".ipynb")
            gradebook.add_grade_cell(
                grade_id, stem, assignment, max_score=points, cell_type="markdown"
            )
            gradebook.add_solution_cell(grade_id, stem, assignment)
        for student in [*given, "someone_else"]:
            gradebook.add_student(student)
            gradebook.add_submission(assignment, student)
        for student, grades in given.items():
            for grade_id, (points, comment) in grades.items():
                stem = WRITTEN[grade_id][0].removesuffix(".ipynb")
                grade = gradebook.find_grade(grade_id, stem, assignment, student)
                grade.manual_score = points
                note = gradebook.find_comment(grade_id, stem, assignment, student)
                note.manual_comment = comment
        gradebook.db.commit()
    return path


def test_nbgrader_gradebook_round_trip(batch, monkeypatch):
    # nbgrader runs the `alembic` script of its own environment to create a database
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    given = {
        "alice": {"answer_summary": (4, "thorough"), "answer_zero_init": (0.5, COMMENT)},
        "=1+2": {grade_id: (points, "") for grade_id, (_, points) in WRITTEN.items()},
    }
    database = _nbgrader_db(batch["base"] / "gradebook.db", "lab_one", given)
    out, gradebook = batch["base"] / "nbgrader" / "report.csv", batch["base"] / "book.csv"
    argv = [*batch["common"], "--out", str(out), "--gradebook", str(gradebook)]
    argv += ["--nbgrader-db", str(database), "--nbgrader-assignment", "lab_one"]
    assert run_cli("grade", *argv) == 0
    _check_merged(out, gradebook, batch["rows"], given)


def test_nbgrader_score_out_of_range_is_refused(batch, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    database = _nbgrader_db(
        tmp_path / "gradebook.db", "cifar_lab", {"alice": {"answer_summary": (9, "")}}
    )
    argv = [*batch["common"], "--out", str(tmp_path / "r" / "report.csv")]
    with pytest.raises(ValueError, match="'alice' 05_tuning answer_summary: points 9"):
        run_cli("grade", *argv, "--nbgrader-db", str(database))
    with pytest.raises(ValueError, match="no assignment 'other'"):
        run_cli("grade", *argv, "--nbgrader-db", str(database), "--nbgrader-assignment", "other")


def test_colliding_names_have_their_own_feedback(batch):
    rows, folder = batch["rows"], batch["out"].parent / "feedback"
    pages = {student: folder / f"{rows[student]['student_id']}.html" for student in STUDENTS}
    assert len(set(pages.values())) == len(STUDENTS)
    for student, page in pages.items():
        assert f"feedback: {html.escape(student)}</h1>" in page.read_text()


def test_resume_keeps_the_written_answers_of_students_kept(tmp_path):
    out, manual = tmp_path / "report.csv", tmp_path / MANUAL_FILE
    entry = ManualEntry("ada", "answer_summary", "Describe", "I tuned it", 4, 3, "good")
    ReportFile(out, (), manual_csv=manual).add(ReportRow("ada", "ok", manual=(entry,)))
    kept = ReportFile(out, (), resume=True, manual_csv=manual)
    assert read_csv_rows(manual) == [{k: str(v) for k, v in entry.record().items()}]
    later = dataclasses.replace(entry, student="bob", points="")
    kept.add(ReportRow("bob", "ok", manual=(later,)))
    assert [row["student"] for row in read_csv_rows(manual)] == ["ada", "bob"]
    ReportFile(out, (), manual_csv=manual)  # a fresh batch starts an empty file
    assert read_csv_rows(manual) == []
