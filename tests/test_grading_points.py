"""Points per crafted submission, the gradebook and the feedback, graded through the real CLI.

Submissions are the instructor notebooks "executed" by the fixtures (every
check call leaves a passing payload), then damaged one way each. The points
table is the library's; the expected totals below are computed from it.
"""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
import uuid
from pathlib import Path

import pytest
from instructor_fixtures import (
    NUM_TEST,
    code_cells,
    course_source,
    edit_notebook,
    executed,
    payload,
    run_cli,
    set_claim,
    train_models,
    write_submission,
)

from cifar_lab.instructor.notebooks import cell_source, course_notebooks
from cifar_lab.instructor.points import COURSE_MAX_POINTS, POINTS
from cifar_lab.instructor.release import BEGIN_SOLUTION, END_SOLUTION, build_release, release
from cifar_lab.instructor.report import feedback_path
from cifar_lab.instructor.scoring import score_notebook
from cifar_lab.results import CHECK_MIME
from cifar_lab.tuning.part5 import PART5_DIR, RESULTS_FILE

CHECK_CALLS = re.compile(r"check_(?:that|close)\(")
POINTS_OF = {row.grade_id: row.points for rows in POINTS.values() for row in rows}
WRITTEN = sum(row.points for rows in POINTS.values() for row in rows if row.kind == "written")
FULL = COURSE_MAX_POINTS - WRITTEN  # every check passed; written answers await a person
HINT = "divide by the training split's standard deviation"


def _cell(notebook: dict, grade_id: str) -> dict:
    return next(c for c in notebook["cells"] if _grade_id(c) == grade_id)


def _grade_id(cell: dict) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _all_checks_pass(notebook: dict) -> None:
    """Give every check_that/check_close call the passing payload it prints when run."""
    for cell in code_cells(notebook):
        for _ in CHECK_CALLS.findall(cell_source(cell)):
            data = {"what": "property", "passed": True}
            cell["outputs"].append(payload(CHECK_MIME, data, "check passed: property"))


def _leave_stub(release_dir: Path):
    """02's training_step as released, so its check raises NotImplementedError."""
    released = json.loads((release_dir / "02_barebones_tensorflow.ipynb").read_text())

    def change(notebook: dict) -> None:
        _cell(notebook, "training_step")["source"] = _cell(released, "training_step")["source"]
        error = {"output_type": "error", "ename": "NotImplementedError", "traceback": []}
        error["evalue"] = "Part II: implement `training_step` (see the instructions above)"
        _cell(notebook, "training_step_check")["outputs"] = [error]

    return change


def _fail_check(notebook: dict) -> None:
    cell = _cell(notebook, "standardise_splits_check")
    failed = {"what": "X_train has mean 0", "passed": False}
    evalue = f"X_train has mean 0: not so (largest difference 3).\nHint: {HINT}"
    error = {"output_type": "error", "ename": "AssertionError", "evalue": evalue, "traceback": []}
    cell["outputs"] = [payload(CHECK_MIME, failed, "check FAILED"), error]


def _doctor_payload(notebook: dict) -> None:
    for output in _cell(notebook, "two_layer_accuracy_check")["outputs"]:
        data = output.get("data", {}).get(CHECK_MIME)
        if data and "minimum" in data:
            data.update(value=0.12, minimum=0.4, passed=True)


def _doctor_claim(root: Path) -> None:
    edit_notebook(root, "05_tuning", lambda nb: set_claim(nb, "test_accuracy", 0.99))
    saved = json.loads((root / PART5_DIR / RESULTS_FILE).read_text())
    (root / PART5_DIR / RESULTS_FILE).write_text(json.dumps({**saved, "test_accuracy": 0.99}))


def _renumber(notebook: dict) -> None:
    """Execution counts 1, 2, ... again, as after Restart Kernel and Run All."""
    code = [c for c in code_cells(notebook) if cell_source(c).strip()]
    for count, cell in enumerate(code, start=1):
        cell["execution_count"] = count


def _delete(grade_id: str):
    def change(notebook: dict) -> None:
        notebook["cells"].remove(_cell(notebook, grade_id))
        _renumber(notebook)

    return change


def _duplicate(notebook: dict) -> None:
    """Copy a graded check as JupyterLab's copy and paste does: new id, same metadata."""
    copy = json.loads(json.dumps(_cell(notebook, "three_layer_sequential_check")))
    copy["id"] = uuid.uuid4().hex[:8]
    notebook["cells"].append(copy)


PATCH = "lab.check_that = lambda *args, **kwargs: None  # every check passes"


def _add_patch(notebook: dict) -> None:
    cell = {"cell_type": "code", "id": "patch123", "metadata": {}, "source": PATCH}
    cell |= {"execution_count": None, "outputs": []}
    notebook["cells"].insert(3, cell)  # before the checks, run with the rest
    _renumber(notebook)


N01, N02, N03 = "01_preparation", "02_barebones_tensorflow", "03_keras_model_subclassing"
N04 = "04_keras_sequential_functional"
CHECKS_01 = POINTS_OF["standardise_splits_check"] + POINTS_OF["minibatches_check"]
MAX_01 = sum(row.points for row in POINTS[f"{N01}.ipynb"])  # the checks and a written answer
# student -> (damage(root, release_dir), expected total_points, status, problem pattern)
CASES = {
    "full_marks": (None, FULL, "ok", None),
    "stub_left": (lambda r, rel: edit_notebook(r, N02, _leave_stub(rel)),
                  FULL - POINTS_OF["training_step_check"], "incomplete", None),
    "failed_check": (lambda r, rel: edit_notebook(r, N01, _fail_check),
                     FULL - POINTS_OF["standardise_splits_check"], "incomplete", "check failed"),
    "doctored_payload": (lambda r, rel: edit_notebook(r, N02, _doctor_payload),
                         FULL - POINTS_OF["two_layer_accuracy_check"], "flagged",
                         "02: graded check 'two_layer_accuracy_check'"),
    "doctored_claim": (lambda r, rel: _doctor_claim(r), FULL - POINTS_OF["final_training_check"],
                       "flagged", "05 output claims test accuracy 0.9900"),
    "deleted_cell": (lambda r, rel: edit_notebook(r, N03, _delete("three_layer_model_check")),
                     FULL - POINTS_OF["three_layer_model_check"], "damaged",
                     "03: graded cell 'three_layer_model_check' (cell id"),
    "duplicated_cell": (lambda r, rel: edit_notebook(r, N04, _duplicate),
                        FULL - POINTS_OF["three_layer_sequential_check"], "damaged",
                        "04: graded cell 'three_layer_sequential_check'"),
    "patching_cell": (lambda r, rel: edit_notebook(r, N01, _add_patch), FULL - CHECKS_01,
                      "flagged", "writes lab.check_that"),
}  # fmt: skip


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Craft every case, grade the batch once through the CLI with a gradebook."""
    base = tmp_path_factory.mktemp("points")
    source = course_source(base / "source")
    release_dir = base / "release"
    manifest = release(release_dir, source_dir=source)
    models = train_models(base / "models")
    batch = base / "submissions"
    for student, (damage, _, _, _) in CASES.items():
        root = write_submission(batch / student, source, models.good, models.good_accuracy)
        for path in course_notebooks(root):
            edit_notebook(root, path.stem, _all_checks_pass)
        if damage:
            damage(root, release_dir)
    untouched = batch / "untouched_release"  # the release handed in as it is
    shutil.copytree(release_dir, untouched, ignore=shutil.ignore_patterns("*.json"))
    out, gradebook = base / "report" / "report.csv", base / "gradebook.csv"
    argv = [str(batch), "--out", str(out), "--manifest", str(manifest), "--source", "synthetic"]
    argv += ["--num-test", str(NUM_TEST), "--gradebook", str(gradebook), "--trust-outputs"]
    assert run_cli("grade", *argv) == 0
    rows = {row["student"]: row for row in json.loads(out.with_suffix(".json").read_text())}
    with open(gradebook, newline="") as handle:
        book = list(csv.DictReader(handle))
    return {"rows": rows, "book": book, "feedback": out.parent / "feedback", "source": source}


@pytest.mark.parametrize("student", sorted(CASES))
def test_points_of_each_crafted_submission(graded, student):
    _, total, status, problem = CASES[student]
    row = graded["rows"][student]
    assert (row["total_points"], row["max_points"]) == (total, COURSE_MAX_POINTS), row["problems"]
    assert row["manual_points"] == WRITTEN
    assert row["status"] == status, row["problems"]
    if problem:
        assert any(problem in text for text in row["problems"]), row["problems"]


def test_full_marks_row_per_notebook(graded):
    row = graded["rows"]["full_marks"]
    for name in (N01, N02, N03, N04, "05_tuning"):
        table = POINTS[f"{name}.ipynb"]
        autograded = sum(r.points for r in table if r.kind == "check")
        assert row[f"{name[:2]}_points"] == autograded
        assert row[f"{name[:2]}_max_points"] == sum(r.points for r in table)


def test_untouched_release_scores_zero_and_does_not_crash(graded):
    row = graded["rows"]["untouched_release"]
    assert (row["total_points"], row["max_points"]) == (0, COURSE_MAX_POINTS)
    assert row["status"] != "ok"


def test_deleted_duplicated_and_patching_cells_are_named(graded):
    rows = graded["rows"]
    assert any(
        "'three_layer_model_check'" in p and "deleted" in p
        for p in rows["deleted_cell"]["problems"]
    )
    assert any("appears 2 times" in p for p in rows["duplicated_cell"]["problems"])
    assert any(re.search(r"01: cell \d+/\d+ \(id patch123\) may patch the checks: line 1", p)
               for p in rows["patching_cell"]["problems"])  # fmt: skip


def test_gradebook_has_one_row_per_student(graded):
    book = {row["student"]: row for row in graded["book"]}
    assert sorted(book) == sorted([*CASES, "untouched_release"])
    assert list(graded["book"][0]) == ["student", "total", "max", "status"]
    for student, (_, total, status, _) in CASES.items():
        expected = {"student": student, "total": str(total), "max": str(COURSE_MAX_POINTS)}
        assert book[student] == expected | {"status": status}


def _solution_lines(folder: Path) -> set[str]:
    """Every substantial line inside a solution region of the instructor notebooks."""
    lines = set()
    for path in course_notebooks(folder):
        for cell in json.loads(path.read_text())["cells"]:
            inside = False
            for line in cell_source(cell).splitlines():
                stripped = line.strip()
                if stripped in (BEGIN_SOLUTION, END_SOLUTION):
                    inside = stripped == BEGIN_SOLUTION
                elif inside and len(stripped) >= 12:
                    lines.add(stripped)
    return lines


def test_feedback_of_full_marks_holds_no_solution_text(graded):
    page = feedback_path(graded["feedback"], "full_marks").read_text()
    solution = _solution_lines(graded["source"])
    assert len(solution) > 100
    leaked = [line for line in solution if line in page or line.replace('"', "&quot;") in page]
    assert not leaked, leaked[:5]
    assert f"{FULL} of {COURSE_MAX_POINTS}" in page and "awaiting manual grading" in page
    assert page.count('class="passed">passed') == len(
        [r for rows in POINTS.values() for r in rows if r.kind == "check"]
    )


def test_feedback_names_the_failing_check_its_hint_and_part5(graded):
    page = feedback_path(graded["feedback"], "failed_check").read_text()
    assert "standardise_splits_check" in page and html.escape(f"Hint: {HINT}") in page
    assert f"0 / {POINTS_OF['standardise_splits_check']}" in page
    accuracy = graded["rows"]["failed_check"]["part5_model_test_accuracy"]
    assert str(accuracy) in page and "recomputed by the grader" in page
    doctored = feedback_path(graded["feedback"], "doctored_claim").read_text()
    assert "does not confirm the claimed accuracy" in doctored
    stub = feedback_path(graded["feedback"], "stub_left").read_text()
    assert "still holds the release" in stub and "NotImplementedError" in stub


@pytest.fixture(scope="module")
def course_release():
    return build_release()[1]


def _executed_course_notebook(stem: str) -> dict:
    notebook = executed(
        json.loads((course_notebooks()[0].parent / f"{stem}.ipynb").read_text()), {}
    )
    _all_checks_pass(notebook)
    return notebook


def test_cells_without_ids_are_found_by_grade_id(course_release):
    notebook = _executed_course_notebook(N01)
    for cell in notebook["cells"]:
        cell.pop("id")
    score = score_notebook(N01, notebook, course_release["notebooks"][N01])
    assert (score.points, score.max_points, score.findings) == (CHECKS_01, MAX_01, ())


def test_a_grade_id_edited_in_the_metadata_scores_zero(course_release):
    notebook = _executed_course_notebook(N01)
    _cell(notebook, "minibatches_check")["metadata"]["nbgrader"]["grade_id"] = "bonus"
    score = score_notebook(N01, notebook, course_release["notebooks"][N01])
    assert score.points == POINTS_OF["standardise_splits_check"]
    assert "carries grade_id 'bonus'" in str(score.findings[0])


def _index(notebook: dict, grade_id: str) -> str:
    """The position of a graded cell, as the re-execution's record keys it."""
    return str(notebook["cells"].index(_cell(notebook, grade_id)))


def test_reexecution_decides_the_points_and_saved_passes_it_refutes_are_flagged(course_release):
    notebook = _executed_course_notebook(N01)
    expected = course_release["notebooks"][N01]
    every_cell_ran = {
        str(i): "ok" for i, c in enumerate(notebook["cells"]) if c["cell_type"] == "code"
    }
    honest = score_notebook(N01, notebook, expected, executed=every_cell_ran)
    assert (honest.points, honest.findings) == (CHECKS_01, ())

    # the saved outputs pass both checks; the re-execution fails one and stops there
    failing = _index(notebook, "standardise_splits_check")
    refuted = {k: v for k, v in every_cell_ran.items() if int(k) < int(failing)}
    score = score_notebook(N01, notebook, expected, executed=refuted | {failing: "error"})
    reasons = {cell.grade_id: cell.reason for cell in score.cells if cell.kind == "check"}
    assert score.points == 0
    assert "failed when the grader re-executed" in reasons["standardise_splits_check"]
    assert f"stopped at a failing cell ({failing}) before it" in reasons["minibatches_check"]
    flagged = [f for f in score.findings if "the saved output was not produced" in f.message]
    assert [f.severity for f in flagged] == ["flagged", "flagged"]

    # a run cut short (a time limit: the last cell that ran was fine) scores 0, flags nothing
    cut_short = score_notebook(N01, notebook, expected, executed=refuted)
    assert (cut_short.points, cut_short.findings) == (0, ())
    assert "did not run when the grader re-executed" in cut_short.cells[1].reason

    # a check that failed as saved and passes now earns its points, with nothing to flag
    _fail_check(notebook)
    saved_failed = score_notebook(N01, notebook, expected, executed=every_cell_ran)
    assert (saved_failed.points, saved_failed.findings) == (CHECKS_01, ())
    assert score_notebook(N01, notebook, expected).points < CHECKS_01  # --trust-outputs
