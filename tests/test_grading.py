"""Grading crafted submissions: one honest row per student, and the batch never crashes."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import shutil
import threading
import time
import zipfile
from pathlib import Path

import nbformat
import pytest
from instructor_fixtures import (
    NUM_TEST,
    code_cells,
    count_answer_cells,
    course_source,
    edit_notebook,
    executed,
    run_cli,
    set_claim,
    synthetic_val_accuracy,
    train_models,
    write_huge_output,
    write_submission,
    zip_folder,
)

from cifar_lab.instructor.claims import compare_claims
from cifar_lab.instructor.grading import GradeSettings, grade_folder
from cifar_lab.instructor.notebooks import COURSE_NOTEBOOKS
from cifar_lab.instructor.release import release
from cifar_lab.instructor.report import report_columns
from cifar_lab.instructor.rerun import RerunSettings, rerun_notebooks
from cifar_lab.instructor.submission import extract_zip
from cifar_lab.tuning.part5 import MODEL_FILE, PART5_DIR, RESULTS_FILE


def _doctor(root: Path, value: float, *, notebook: bool = True) -> None:
    if notebook:
        edit_notebook(root, "05_tuning", lambda nb: set_claim(nb, "test_accuracy", value))
    saved = json.loads((root / PART5_DIR / RESULTS_FILE).read_text())
    (root / PART5_DIR / RESULTS_FILE).write_text(json.dumps({**saved, "test_accuracy": value}))


def _swap_counts(notebook: dict) -> None:
    first, second = code_cells(notebook)[1:3]
    first["execution_count"], second["execution_count"] = 3, 2


def _add_error(notebook: dict) -> None:
    error = {"output_type": "error", "ename": "NameError", "evalue": "name 'w3' is not defined"}
    code_cells(notebook)[5]["outputs"].append({**error, "traceback": []})


def _fail_check(notebook: dict) -> None:
    for cell in code_cells(notebook):
        for output in cell["outputs"]:
            check = output.get("data", {}).get("application/vnd.cifar-lab.check+json")
            if check:
                check["passed"] = False
                return


def _edit_check(notebook: dict) -> None:
    floor = "profile.min_val_accuracy"
    cell = next(c for c in code_cells(notebook) if floor in "".join(c["source"]))
    cell["source"] = "".join(cell["source"]).replace(floor, "0.0")


def _write_traversal(root: Path, archive: Path) -> None:
    zip_folder(root, archive)
    with zipfile.ZipFile(archive, "a") as out:
        out.writestr("../../evil.txt", "outside the extraction folder")


OUT_OF_ORDER = re.compile(
    # one numbering everywhere: code cells counted as run's progress lines count them
    r"03: cell 2/\d+ \(id \w+\) ran out of order \(execution count 3, expected 2\)"
)
DOCTORED = "05 output claims test accuracy 0.9900"

# student -> (how to damage a clean folder, as zip?, expected status, expected problem text)
CASES = {
    "clean": (None, True, "ok", None),
    "clean_folder": (None, False, "ok", None),
    "out_of_order": (lambda r: edit_notebook(r, "03_keras_model_subclassing", _swap_counts), True,
                     "incomplete", OUT_OF_ORDER),
    "with_errors": (lambda r: edit_notebook(r, "02_barebones_tensorflow", _add_error), True,
                    "incomplete", "raised NameError: name 'w3' is not defined"),
    "failed_check": (lambda r: edit_notebook(r, "04_keras_sequential_functional", _fail_check),
                     True, "incomplete", "04: check failed"),
    "doctored": (lambda r: _doctor(r, 0.99), True, "flagged", DOCTORED),
    "doctored_json": (lambda r: _doctor(r, 0.99, notebook=False), True, "flagged",
                      "test accuracy: 05 output says"),
    "weaker_model": ("weak", True, "flagged", "the saved model scores"),
    "unsafe_model": ("unsafe", True, "flagged", "cannot be loaded in safe mode"),
    "missing_notebook": (lambda r: (r / "04_keras_sequential_functional.ipynb").unlink(), True,
                         "damaged", "04: 04_keras_sequential_functional.ipynb is missing"),
    "missing_model": (lambda r: (r / PART5_DIR / MODEL_FILE).unlink(), True, "incomplete",
                      f"part5: {PART5_DIR}/{MODEL_FILE} is missing"),
    "malformed_json": (lambda r: (r / "01_preparation.ipynb").write_text('{"cells": [{"sour'),
                       True, "damaged", "01: 01_preparation.ipynb is not valid JSON"),
    "huge_output": (lambda r: write_huge_output(r, "02_barebones_tensorflow", 50 << 20), True,
                    "damaged", "02: 02_barebones_tensorflow.ipynb is 50.0 MB, over the 20.0 MB"),
    "huge_output_folder": (lambda r: write_huge_output(r, "02_barebones_tensorflow", 50 << 20),
                           False, "damaged", "is 50.0 MB, over the 20.0 MB limit"),
    "deleted_cell": (lambda r: edit_notebook(r, "03_keras_model_subclassing",
                                             lambda nb: nb["cells"].pop(4)),
                     True, "damaged", re.compile(r"03: cell id \w+ was deleted")),
    "duplicated_cell": (lambda r: edit_notebook(r, "03_keras_model_subclassing",
                                                lambda nb: nb["cells"].append(nb["cells"][4])),
                        True, "damaged", re.compile(r"03: cell id \w+ is duplicated")),
    "reordered_cells": (lambda r: edit_notebook(r, "03_keras_model_subclassing",
                                                lambda nb: nb["cells"].reverse()),
                        True, "damaged", "03: cells reordered"),
    "no_cell_ids": (lambda r: edit_notebook(r, "01_preparation",
                                            lambda nb: [c.pop("id") for c in nb["cells"]]),
                    True, "flagged", "01: cannot verify structure"),
    "edited_check": (lambda r: edit_notebook(r, "02_barebones_tensorflow", _edit_check), True,
                     "flagged", re.compile(r"02: the check cell id \w+ was edited")),
    "not_a_zip": ("garbage", True, "damaged", "not_a_zip.zip is not a readable zip"),
    "path_traversal": ("traversal", True, "damaged", "has an unsafe path"),
}  # fmt: skip


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Craft every case, grade the batch once through the CLI, return rows and paths."""
    base = tmp_path_factory.mktemp("grading")
    source = course_source(base / "source")
    manifest = release(base / "release", source_dir=source)
    models = train_models(base / "models")
    batch = base / "submissions"
    batch.mkdir()
    for student, (damage, as_zip, _, _) in CASES.items():
        model = {"weak": models.weak, "unsafe": models.unsafe}.get(damage, models.good)
        root = write_submission(base / "work" / student, source, model, models.good_accuracy)
        if callable(damage):
            damage(root)
        if damage == "garbage":
            (batch / f"{student}.zip").write_bytes(b"PK\x03\x04 this is not a zip")
        elif damage == "traversal":
            _write_traversal(root, batch / f"{student}.zip")
        elif as_zip:
            zip_folder(root, batch / f"{student}.zip", prefix=f"{student}/" * (student == "clean"))
        else:
            shutil.copytree(root, batch / student)
    (batch / "notes.txt").write_text("not a submission")
    out = base / "report" / "report.csv"
    argv = [str(batch), "--out", str(out), "--manifest", str(manifest), "--source", "synthetic"]
    started = time.perf_counter()
    assert run_cli("grade", *argv, "--num-test", str(NUM_TEST), "--trust-outputs") == 0
    seconds = time.perf_counter() - started
    rows = {row["student"]: row for row in json.loads(out.with_suffix(".json").read_text())}
    answers = sum(count_answer_cells(source, stem) for stem in COURSE_NOTEBOOKS)
    calls = {
        stem[:2]: sum(
            "".join(cell["source"]).count("check_at_least(")
            for cell in json.loads((source / f"{stem}.ipynb").read_text(encoding="utf-8"))["cells"]
            if cell["cell_type"] == "code"
        )
        for stem in COURSE_NOTEBOOKS
    }
    return {"rows": rows, "csv": out, "models": models, "seconds": seconds, "answers": answers,
            "check_at_least_calls": calls}  # fmt: skip


def test_every_submission_gets_exactly_one_row(graded):
    assert sorted(graded["rows"]) == sorted(CASES)
    with open(graded["csv"], newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [row["student"] for row in table] == sorted(CASES)
    assert list(table[0]) == report_columns(COURSE_NOTEBOOKS)


@pytest.mark.parametrize("student", sorted(CASES))
def test_status_and_problem_are_reported(graded, student):
    _, _, status, problem = CASES[student]
    row = graded["rows"][student]
    assert row["status"] == status, row["problems"]
    if problem is None:
        assert row["problems"] == []
    else:
        # cell ids change whenever the notebooks are rebuilt, so those cases match a pattern
        found = [
            problem.search(text) if isinstance(problem, re.Pattern) else problem in text
            for text in row["problems"]
        ]
        assert any(found), row["problems"]


def test_clean_submission_row_has_verified_claims_and_counts(graded):
    row, accuracy = graded["rows"]["clean"], graded["models"].good_accuracy
    assert row["part5_model_test_accuracy"] == pytest.approx(accuracy, abs=1e-4)
    assert row["part5_claimed_test_accuracy"] == pytest.approx(accuracy, abs=1e-4)
    val = synthetic_val_accuracy(graded["models"].good)  # computed with Keras, not the grader
    assert row["part5_claimed_val_accuracy"] == pytest.approx(val, abs=1e-4)
    assert row["part5_claim_verified"] == "yes" and row["answers_present"] == "{0}/{0}".format(
        graded["answers"]
    )
    assert all(row[f"{stem[:2]}_executed_in_order"] == "yes" for stem in COURSE_NOTEBOOKS)
    # the fixture emits one passed payload per check_at_least call in each code cell's source
    counted = graded["check_at_least_calls"]
    assert (row["02_checks_passed"], row["02_checks_failed"], row["02_errors"]) == (
        counted["02"],
        0,
        0,
    )
    assert counted["02"] > 0 and row["04_checks_passed"] == counted["04"] > 0
    assert row["rerun"] == "not-run" and row["executed"] == "not re-executed"  # --trust-outputs


def test_claims_that_do_not_hold_are_not_verified(graded):
    rows, accuracy = graded["rows"], graded["models"].good_accuracy
    assert rows["doctored"]["part5_claimed_test_accuracy"] == 0.99
    assert rows["doctored"]["part5_model_test_accuracy"] == pytest.approx(accuracy, abs=1e-4)
    weak = rows["weaker_model"]["part5_model_test_accuracy"]
    assert weak < accuracy - 0.1
    for student in ("doctored", "doctored_json", "weaker_model", "unsafe_model"):
        assert rows[student]["part5_claim_verified"] == "no", student
    assert rows["missing_model"]["part5_claim_verified"] == "not-checked"


def test_damaged_notebooks_leave_the_rest_graded(graded):
    rows = graded["rows"]
    assert rows["malformed_json"]["01_executed_in_order"] == "damaged"
    assert rows["malformed_json"]["02_executed_in_order"] == "yes"
    assert rows["huge_output"]["02_executed_in_order"] == "damaged"
    assert rows["huge_output"]["part5_claim_verified"] == "yes"
    assert rows["missing_notebook"]["04_executed_in_order"] == "missing"
    assert rows["out_of_order"]["03_executed_in_order"] == "no"
    assert rows["with_errors"]["02_errors"] == 1
    assert rows["failed_check"]["04_checks_failed"] == 1
    assert rows["edited_check"]["02_edited_cells"] == 1
    assert not any("missing" in p for p in rows["huge_output"]["problems"])


def test_a_zip_bomb_is_refused_before_extraction(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as out:
        out.writestr("01_preparation.ipynb", b"\0" * (3 << 20))
    refused = extract_zip(archive, tmp_path / "x", GradeSettings(max_total_bytes=1 << 20))
    assert "zip bomb" in refused[""].message
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------ re-execution (the default)
TINY = "import cifar_lab as lab\nlab.record('val_accuracy', 0.25, key=True)"


@pytest.fixture
def tiny_release(tmp_path):
    """A one-notebook course and its release, for re-execution tests."""
    source = tmp_path / "source"
    source.mkdir()
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(TINY)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, source / "01_tiny.ipynb")
    return source, json.loads(release(tmp_path / "release", source_dir=source).read_text())


def test_rerun_flags_claims_that_do_not_reproduce_and_cells_that_time_out(tmp_path, tiny_release):
    source, manifest = tiny_release
    batch = tmp_path / "batch"
    for student, claim, extra_cell in (("honest", 0.25, None), ("doctored", 0.9, None),
                                       ("slow", 0.25, "import time\ntime.sleep(60)")):  # fmt: skip
        notebook = json.loads((source / "01_tiny.ipynb").read_text())
        if extra_cell:
            notebook["cells"].append(nbformat.v4.new_code_cell(extra_cell))
        notebook = executed(notebook, {})
        set_claim(notebook, "val_accuracy", claim)
        (batch / student).mkdir(parents=True)
        (batch / student / "01_tiny.ipynb").write_text(json.dumps(notebook))
    rerun = RerunSettings(cell_timeout=3, total_timeout=120, profile="quick")
    rows = grade_folder(batch, GradeSettings(manifest=manifest, rerun=rerun), verbose=False)
    by_student = {row["student"]: row for row in rows}
    assert by_student["honest"]["rerun"] == "reproduced"
    assert {row["executed"] for row in rows} == {"re-executed"}
    digest = hashlib.sha256((batch / "honest" / "01_tiny.ipynb").read_bytes()).hexdigest()
    assert (
        f"rerun: re-executed as handed in: 01 sha256 {digest}" in by_student["honest"]["problems"]
    )
    assert by_student["doctored"]["rerun"] == "not-reproduced"
    assert (
        "01: rerun: val_accuracy claimed 0.9000, recomputed 0.2500"
        in by_student["doctored"]["problems"]
    )
    assert by_student["slow"]["rerun"] == "failed"
    assert any("CellTimeoutError: A cell timed out" in p for p in by_student["slow"]["problems"])


WRITE_PART5 = """import json, pathlib
pathlib.Path("part5").mkdir(exist_ok=True)
claims = {"val_accuracy": 0.99, "test_accuracy": 0.99, "config": {}}
pathlib.Path("part5/results.json").write_text(json.dumps(claims))
assert json.loads(pathlib.Path("part5/results.json").read_text()) == claims"""


def test_part5_is_read_from_the_submission_never_from_the_rerun(tmp_path, tiny_release):
    source, manifest = tiny_release
    root = tmp_path / "batch" / "student"
    notebook = json.loads((source / "01_tiny.ipynb").read_text())
    notebook["cells"].append(nbformat.v4.new_code_cell(WRITE_PART5))  # runs in the re-run
    notebook = executed(notebook, {})
    set_claim(notebook, "val_accuracy", 0.25)
    root.mkdir(parents=True)
    (root / "01_tiny.ipynb").write_text(json.dumps(notebook))
    handed_in = {"val_accuracy": 0.31, "test_accuracy": 0.3, "config": {}}
    (root / PART5_DIR).mkdir()
    (root / PART5_DIR / RESULTS_FILE).write_text(json.dumps(handed_in))
    rerun = RerunSettings(cell_timeout=60, total_timeout=120, profile="quick")
    settings = GradeSettings(manifest=manifest, rerun=rerun, source="synthetic", num_test=20)
    (row,) = grade_folder(tmp_path / "batch", settings, verbose=False)
    assert row["executed"] == "re-executed" and row["rerun"] == "reproduced", row["problems"]
    # the re-run wrote its own part5/ (else its cell raised): the row holds the submission's
    assert (row["part5_claimed_val_accuracy"], row["part5_claimed_test_accuracy"]) == (0.31, 0.3)
    assert json.loads((root / PART5_DIR / RESULTS_FILE).read_text()) == handed_in


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "State:\tZ" not in status.read_text()
    except OSError:
        return False


def _named(name: str) -> set[int]:
    found = set()
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if (entry / "comm").read_text().strip() == name:
                found.add(int(entry.name))
    return found


def test_rerun_total_limit_kills_the_run_and_its_kernel(tmp_path):
    # The kernel cannot write outside its sandbox: it names itself, and the test watches /proc.
    name = f"krn{os.getpid() % 100000}"
    source = (
        "import ctypes, time\n"
        f"ctypes.CDLL(None).prctl(15, {name.encode()!r}, 0, 0, 0)\ntime.sleep(120)"
    )
    nbformat.write(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)]),
        tmp_path / "01_slow.ipynb",
    )
    seen, done = set(), threading.Event()

    def watch() -> None:
        while not done.wait(0.2):
            seen.update(_named(name))

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.perf_counter()
    try:  # 30 s: on 2 busy cores a sandboxed kernel takes 10-20 s to reach its first cell
        records, problem = rerun_notebooks(
            tmp_path, ["01_slow"], RerunSettings(total_timeout=30, profile="quick")
        )
    finally:
        done.set()
        watcher.join()
    assert "total limit of 30 s" in problem and records == {}
    assert time.perf_counter() - started < 75
    assert seen, "the kernel never ran"
    deadline = time.perf_counter() + 5
    while any(_alive(pid) for pid in seen) and time.perf_counter() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in seen)


def test_rerun_settings_reject_nonsense():
    with pytest.raises(ValueError, match="cell_timeout"):
        RerunSettings(cell_timeout=0)
    with pytest.raises(ValueError, match="profile"):
        RerunSettings(profile="fast")


def test_compare_claims_without_a_kernel():
    settings = RerunSettings(tolerance=0.02)
    ok = {"status": "ok", "error": None, "results": {"val_accuracy": 0.41}}
    assert (
        compare_claims(
            {"02": {"val_accuracy": 0.4}}, {"02": ok}, None, tolerance=settings.tolerance
        )[0]
        == "reproduced"
    )
    state, findings = compare_claims(
        {"02": {"val_accuracy": 0.4}, "03": {}}, {"02": ok}, None, tolerance=settings.tolerance
    )
    assert state == "failed" and [str(f) for f in findings] == ["03: rerun failed: did not run"]


def test_a_submission_with_no_readable_notebook_starts_no_rerun(tmp_path, monkeypatch):
    def no_run(*args, **kwargs):
        raise AssertionError("nothing to re-execute, yet a re-run was started")

    monkeypatch.setattr("cifar_lab.instructor.grading.rerun_notebooks", no_run)
    (tmp_path / "batch" / "empty").mkdir(parents=True)
    (tmp_path / "batch" / "empty" / "notes.txt").write_text("no notebooks here")
    (row,) = grade_folder(tmp_path / "batch", GradeSettings(), verbose=False)  # the default
    assert (row["rerun"], row["executed"]) == ("not-run", "not re-executed")
    assert row["status"] == "damaged" and row["problems"], row  # the notebooks are missing
    assert not any("rerun" in p or "grader error" in p for p in row["problems"]), row["problems"]
