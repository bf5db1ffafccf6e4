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
    zip_folder,
)

from cifar_lab import __version__
from cifar_lab.__main__ import main
from cifar_lab.instructor.inspection import (
    cell_numbers,
    headings_above,
    inspect_notebook,
    read_notebook_json,
    structure_findings,
)
from cifar_lab.instructor.notebooks import COURSE_NOTEBOOKS, course_notebooks
from cifar_lab.instructor.release import MANIFEST_FILE, release
from cifar_lab.instructor.submission import (
    MAX_RECORD_BYTES,
    RECORD_FILE,
    STUDENT_ENV,
    read_submission_record,
    submission_identity,
    submission_name,
)
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
    assert (
        run_cli(
            "submit", "--student", "alice", "--notebook-dir", str(student_dir), "--out", str(out)
        )
        == 0
    )
    assert "all checks passed" in capsys.readouterr().out
    with zipfile.ZipFile(out) as archive:
        names = sorted(archive.namelist())
    expected = [f"{n}.ipynb" for n in COURSE_NOTEBOOKS]
    part5 = [f"{PART5_DIR}/{RESULTS_FILE}", f"{PART5_DIR}/{MODEL_FILE}"]
    assert names == sorted([*expected, *part5, RECORD_FILE])


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
    assert (
        run_cli(
            "submit", "--student", "alice", "--notebook-dir", str(student_dir), "--out", str(out)
        )
        == 1
    )
    text = capsys.readouterr().out
    assert not out.exists()
    for expected in (
        "02: cell NUM (id ID) was never run",
        "fix: re-run 02_barebones_tensorflow from the top (Kernel > Restart Kernel and Run All",
        "02: cell NUM raised NotImplementedError: Part II: implement `x`",
        "04: 04_keras_sequential_functional.ipynb is missing",
        f"part5: {PART5_DIR}/{MODEL_FILE} is missing",
        f"part5: {RESULTS_FILE}: 'test_accuracy' is not a number in 0..1",
        f"[warning] 05: 1 of {count_answer_cells(student_dir)} written answers are empty",
    ):
        # cell ids change whenever the notebooks are rebuilt: match any id; cells are
        # numbered among the code cells, "3/14", as run's progress lines number them
        pattern = re.escape(expected).replace("ID", r"\w+").replace("NUM", r"\d+/\d+")
        assert re.search(pattern, text), text


def test_submit_without_a_manifest_still_checks_execution(student_dir, tmp_path, capsys):
    (student_dir / MANIFEST_FILE).unlink()
    edit_notebook(
        student_dir, "01_preparation", lambda nb: code_cells(nb)[0].update(execution_count=7)
    )
    assert (
        run_cli(
            "submit",
            "--student",
            "alice",
            "--notebook-dir",
            str(student_dir),
            "--out",
            str(tmp_path / "a.zip"),
        )
        == 1
    )
    text = capsys.readouterr().out
    assert "cell structure is not checked" in text and re.search(
        r"01: cell 1/\d+ \(id \w+\) ran out of order", text
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


# ------------------------------------------------------- who submits: submission.json
def _record(archive_path) -> dict:
    with zipfile.ZipFile(archive_path) as archive:
        return json.loads(archive.read(RECORD_FILE))


def test_submit_works_in_the_current_folder_as_the_jupyterhub_user(
    student_dir, monkeypatch, capsys
):
    monkeypatch.chdir(student_dir)
    monkeypatch.setenv(STUDENT_ENV, "bob")
    monkeypatch.setenv("CIFAR_LAB_PROFILE", "quick")
    assert run_cli("submit") == 0
    out = student_dir / "bob_cifar_lab.zip"
    assert f"wrote {out.name}" in capsys.readouterr().out
    record = _record(out)
    assert {k: record[k] for k in ("student", "cifar_lab_version", "profile")} == {
        "student": "bob",
        "cifar_lab_version": __version__,  # the installed metadata agrees
        "profile": "quick",
    }
    assert record["submitted_at"].endswith("+00:00")  # UTC, with its offset
    assert run_cli("submit", "--student", "carol") == 0  # --student wins over the login
    assert _record(student_dir / "carol_cifar_lab.zip")["student"] == "carol"


def test_submit_asks_for_a_student_id_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(STUDENT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # no notebooks here: the id is asked for first
    assert main(["submit"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--student" in error and STUDENT_ENV in error
    for bad in ("../x", "a b", "", "x" * 65):
        assert main(["submit", "--student", bad]) == 2
        assert "--student" in capsys.readouterr().err
    monkeypatch.setenv(STUDENT_ENV, "bad/id")
    assert main(["submit"]) == 2 and STUDENT_ENV in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ('{"student": "alice"' + " " * MAX_RECORD_BYTES + "}", "bytes, over"),
        ("{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (_deep(MAX_RECORD_BYTES // 2 - 1), "not JSON"),
        ('["alice"]', "a list, not a JSON object"),
        ('{"student": 7}', "not an id"),
        ('{"student": "../../etc"}', "not an id"),
        ('{"student": "<script>"}', "not an id"),
        ("folder", "not a regular file"),
    ],
    ids=["big", "text", "bytes", "deep", "list", "number", "path", "html", "folder"],
)
def test_a_hostile_record_is_flagged_and_not_used(tmp_path, content, why):
    path = tmp_path / RECORD_FILE
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    assert read_submission_record(tmp_path)[0] is None
    student, findings = submission_identity("alice", tmp_path)
    assert student == "alice" and [f.severity for f in findings] == ["flagged"]
    assert why in findings[0].message


def test_a_record_names_the_student_and_a_disagreeing_file_name_is_flagged(tmp_path):
    assert read_submission_record(tmp_path) == (None, None)  # zipped by hand: the file name
    assert submission_identity("alice", tmp_path) == ("alice", [])
    (tmp_path / RECORD_FILE).write_text(json.dumps({"student": "alice", "extra": [1]}))
    assert submission_identity("alice", tmp_path) == ("alice", [])
    student, findings = submission_identity("mallory", tmp_path)
    assert student == "alice" and [f.severity for f in findings] == ["flagged"]
    assert "'alice'" in findings[0].message and "'mallory'" in findings[0].message
    names = [tmp_path / n for n in ("alice.zip", "alice_cifar_lab.zip", "_cifar_lab.zip")]
    assert [submission_name(p) for p in names] == ["alice", "alice", "_cifar_lab"]


def test_grade_reads_the_id_from_submission_json(student_dir, course, tmp_path):
    batch = tmp_path / "submissions"
    batch.mkdir()
    argv = ("submit", "--notebook-dir", str(student_dir), "--student")
    assert run_cli(*argv, "carol", "--out", str(batch / "carol_cifar_lab.zip")) == 0
    assert run_cli(*argv, "erin", "--out", str(batch / "dave.zip")) == 0
    zip_folder(student_dir, batch / "frank.zip")  # by hand: no submission.json
    out = tmp_path / "report.csv"
    manifest = str(course[1])
    grade = ("grade", str(batch), "--out", str(out), "--manifest", manifest)
    grade += ("--trust-outputs",)  # the id from submission.json: no re-execution needed
    assert run_cli(*grade, "--source", "synthetic", "--num-test", "20", "--no-feedback") == 0
    rows = json.loads(out.with_suffix(".json").read_text())
    problems = {row["student"]: row["problems"] for row in rows}
    assert sorted(problems) == ["carol", "erin", "frank"]
    assert not any(RECORD_FILE in p for p in problems["carol"] + problems["frank"])
    (mismatch,) = [p for p in problems["erin"] if RECORD_FILE in p]
    assert "'erin'" in mismatch and "'dave'" in mismatch
    assert next(row for row in rows if row["student"] == "erin")["status"] == "flagged"


def test_another_courses_notebook_is_one_finding_not_one_per_cell():
    expected = {"cells": [
        {"id": i, "kind": "given", "sha256": "", "first_line": f"line {i}", "has_check": False}
        for i in "abcdef"
    ]}  # fmt: skip
    foreign = [{"id": f"other-{i}", "cell_type": "code", "source": ""} for i in range(40)]
    found, edited = structure_findings("03", foreign, expected)
    assert [(f.severity, f.message) for f in found] == [
        (
            "damaged",
            "03.ipynb is not a notebook of this course: none of its 40 cells is one of the "
            "release's (another course's notebook under this name?)",
        )
    ]
    assert edited == []
    # one cell of the course's is enough to compare cell by cell, as before
    found, _ = structure_findings("03", [*foreign, {"id": "a", "cell_type": "code"}], expected)
    assert sum("was deleted" in f.message for f in found) == 5


def test_problems_name_the_heading_a_student_sees_above_the_cell():
    def markdown(text):
        return {"id": f"m{len(text)}", "cell_type": "markdown", "source": text}

    cells = [
        {"id": "c0", "cell_type": "code", "source": "import x", "execution_count": 1},
        markdown("# Part II\n\nSome words.\n## Exercise: `two_layer_fc`"),
        {"id": "c2", "cell_type": "code", "source": "y = 1", "execution_count": None},
        markdown("No heading in this one."),
        {"id": "c4", "cell_type": "code", "source": "z = 2", "execution_count": 3},
    ]
    assert headings_above(cells) == [
        "above the first heading",
        *["under the heading 'Exercise: `two_layer_fc`'"] * 4,
    ]
    inspection = inspect_notebook("02", {"cells": cells}, None)
    (order,) = [f.message for f in inspection.findings]
    assert order == "cell 2/3 (id c2) was never run, under the heading 'Exercise: `two_layer_fc`'"
    assert cell_numbers(cells) == ["1/3", "md 2", "2/3", "md 4", "3/3"]
