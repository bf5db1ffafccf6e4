"""Grading under limits: hostile files give one row each with a reason, and the batch goes on.

No timed assertions: ceilings are small (a 1.5 GB scoring child, a 1 s
per-submission budget for a looping grader) and every test asserts on rows.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bomb_fixtures import (
    add_raw_record,
    balloon_model,
    conv_stack_model,
    deep_json,
    huge_int,
    latin1_notebook,
    many_cells,
    replace_model,
    write_compact,
)
from conftest import REPO_ROOT
from instructor_fixtures import (
    NUM_TEST,
    course_source,
    run_cli,
    train_models,
    write_submission,
    zip_folder,
)

from cifar_lab.instructor.grading import run_batch
from cifar_lab.instructor.release import release
from cifar_lab.instructor.report import ReportFile, ReportRow
from cifar_lab.instructor.sandbox import (
    Budget,
    ChildFailedError,
    LimitExceededError,
    Limits,
    run_limited,
)
from cifar_lab.tuning.part5 import MODEL_FILE, PART5_DIR, RESULTS_FILE

PY = sys.executable


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ------------------------------------------------------------------ the watchdog
def test_memory_ceiling_kills_the_child_and_its_grandchild(tmp_path):
    pid_file = tmp_path / "pid"
    hog = (
        f"import os; open({str(pid_file)!r}, 'w').write(str(os.getpid())); x = b'x' * (700 << 20)"
    )
    hog += "; import time; time.sleep(120)"
    with pytest.raises(LimitExceededError, match=r"used \d+ MB, over the 300 MB memory limit"):
        run_limited(
            "subprocess:run", {"args": [PY, "-c", hog]}, memory_bytes=300 << 20, seconds=120,
            what="the hog",
        )  # fmt: skip
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(grandchild)


def test_time_ceiling_kills_the_whole_session(tmp_path):
    pid_file = tmp_path / "pid"
    script = f"sleep 300 & echo $! > {pid_file}; sleep 300"
    with pytest.raises(LimitExceededError, match="longer than the 1 s time limit"):
        run_limited(
            "subprocess:run", {"args": ["sh", "-c", script]}, memory_bytes=1 << 30, seconds=1,
            what="the sleeper",
        )  # fmt: skip
    background = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(background) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(background)


def test_the_childs_exception_comes_back_as_data():
    with pytest.raises(ChildFailedError) as caught:
        run_limited("math:sqrt", {"x": 4}, memory_bytes=1 << 30, seconds=60, what="sqrt")
    assert caught.value.kind == "TypeError" and "keyword" in str(caught.value)
    assert (
        run_limited("json:dumps", {"obj": [1]}, memory_bytes=1 << 30, seconds=60, what="x").value
        == "[1]"
    )


def test_limits_reject_nonsense():
    with pytest.raises(ValueError, match="model_seconds"):
        Limits(model_seconds=0)
    with pytest.raises(TypeError, match="model_memory_bytes"):
        Limits(model_memory_bytes=1.5)


# ------------------------------------------------------- the batch, rows, --resume
def _grade_letters(student: str, path: Path, budget: Budget) -> ReportRow:
    if student == "loops":
        while True:  # a check that never ends (pure Python: the alarm interrupts it)
            pass
    if student == "buggy":
        raise KeyError("boom")
    assert budget.limits.submission_seconds == 1  # the batch hands each submission its budget
    return ReportRow(student, "ok")


def test_each_failure_is_a_row_and_the_batch_goes_on(tmp_path):
    submissions = [(name, tmp_path) for name in ("a", "buggy", "loops", "z")]
    report = ReportFile(tmp_path / "report.csv", ())
    rows = run_batch(submissions, _grade_letters, Limits(submission_seconds=1), report=report)
    by_student = {row["student"]: row for row in rows}
    assert [row["student"] for row in rows] == ["a", "buggy", "loops", "z"]
    assert by_student["loops"]["status"] == "flagged"
    assert "1 s per-submission limit" in by_student["loops"]["problems"][0]
    assert by_student["buggy"]["status"] == "damaged"
    assert "KeyError" in by_student["buggy"]["problems"][0]
    assert json.loads(report.json_path.read_text()) == rows


CRASHING_GRADER = """
import os, signal, sys
from pathlib import Path
from cifar_lab.instructor.grading import run_batch
from cifar_lab.instructor.sandbox import Limits
from cifar_lab.instructor.report import ReportFile, ReportRow

def grade(student, path, budget):
    if student == sys.argv[2]:
        os.kill(os.getpid(), signal.SIGKILL)  # the grader dies mid-batch
    with open(sys.argv[3], "a") as log:
        log.write(student + "\\n")
    return ReportRow(student, "ok")

report = ReportFile(Path(sys.argv[1]), (), resume=True)
run_batch([(s, Path(".")) for s in "abcd"], grade, Limits(), report=report)
"""


def test_a_killed_grader_leaves_finished_rows_and_resume_skips_them(tmp_path):
    out, log = tmp_path / "report.csv", tmp_path / "graded.txt"
    script = tmp_path / "grader.py"
    script.write_text(CRASHING_GRADER)
    killed = subprocess.run([PY, str(script), str(out), "c", str(log)], cwd=REPO_ROOT, check=False)
    assert killed.returncode == -signal.SIGKILL
    assert [r["student"] for r in json.loads(out.with_suffix(".json").read_text())] == ["a", "b"]
    assert [line.split(",")[:2] for line in out.read_text().splitlines()[1:]] == [
        ["a", "ok"],
        ["b", "ok"],
    ]
    finished = subprocess.run(
        [PY, str(script), str(out), "none", str(log)], cwd=REPO_ROOT, check=False
    )
    assert finished.returncode == 0
    assert log.read_text().split() == ["a", "b", "c", "d"]  # a and b were not graded again
    assert [r["student"] for r in json.loads(out.with_suffix(".json").read_text())] == list("abcd")
    assert len(out.read_text().splitlines()) == 5


# ------------------------------------------------- crafted submissions, real CLI
@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """The course notebooks, their release manifest and trained tiny models."""
    base = tmp_path_factory.mktemp("limits")
    source = course_source(base / "source")
    manifest = release(base / "release", source_dir=source)
    return {"base": base, "source": source, "manifest": manifest}


def _submission(course: dict, student: str, batch: Path, damage) -> None:
    """A clean submission without a model (nothing to score: quick), damaged, zipped."""
    root = course["base"] / "work" / student
    placeholder = course["base"] / "no-model.keras"
    placeholder.write_bytes(b"")
    write_submission(root, course["source"], placeholder, 0.5)
    (root / PART5_DIR / MODEL_FILE).unlink()
    damage(root)
    zip_folder(root, batch / f"{student}.zip")


def _part5_results(root: Path, raw_accuracy: str) -> None:
    text = '{"val_accuracy": 0.6, "test_accuracy": ' + raw_accuracy + ', "config": {}}'
    (root / PART5_DIR / RESULTS_FILE).write_text(text)


def _many_cells(root: Path) -> None:
    path = root / "01_preparation.ipynb"
    size = write_compact(path, many_cells(json.loads(path.read_text())))
    assert size < 20 << 20  # under the notebook size limit: it must be read and checked


HOSTILE = {
    "many_cells": (_many_cells, None),
    "deep_json": (lambda r: (r / "02_barebones_tensorflow.ipynb").write_bytes(deep_json()),
                  "02: 02_barebones_tensorflow.ipynb nests lists or objects too deeply"),
    "huge_int_results": (lambda r: _part5_results(r, huge_int()),
                         "results.json holds an integer with more than 4300 digits"),
    "huge_int_record": (lambda r: add_raw_record(r / "03_keras_model_subclassing.ipynb", "x",
                                                 huge_int()),
                        "03_keras_model_subclassing.ipynb holds an integer with more than 4300"),
    "long_int_record": (lambda r: add_raw_record(r / "04_keras_sequential_functional.ipynb",
                                                 "test_accuracy", huge_int(400)), None),
    "bad_encoding": (lambda r: latin1_notebook(r / "01_preparation.ipynb"),
                     "01: 01_preparation.ipynb is not UTF-8 text (byte 0xe9"),
}  # fmt: skip


@pytest.fixture(scope="module")
def hostile_rows(course):
    batch = course["base"] / "hostile"
    batch.mkdir()
    for student, (damage, _) in HOSTILE.items():
        _submission(course, student, batch, damage)
    out = course["base"] / "hostile-report" / "report.csv"
    argv = [str(batch), "--out", str(out), "--manifest", str(course["manifest"])]
    argv += ["--trust-outputs"]  # the limits of the static read and of model scoring
    assert run_cli("grade", *argv, "--source", "synthetic", "--num-test", str(NUM_TEST)) == 0
    return {row["student"]: row for row in json.loads(out.with_suffix(".json").read_text())}


@pytest.mark.parametrize("student", sorted(HOSTILE))
def test_hostile_files_each_give_a_row_naming_the_problem(hostile_rows, student):
    row, expected = hostile_rows[student], HOSTILE[student][1]
    assert not any("grader error" in problem for problem in row["problems"]), row["problems"]
    if expected is not None:
        assert any(expected in problem for problem in row["problems"]), row["problems"]
        assert row["status"] == "damaged"


def test_a_300k_cell_notebook_is_checked_in_full(hostile_rows):
    row = hostile_rows["many_cells"]
    assert row["01_executed_in_order"] == "yes" and row["01_errors"] == 0
    assert not any(problem.startswith("01:") for problem in row["problems"]), row["problems"]
    assert row["status"] == "incomplete"  # only part5/best_model.keras is missing


def test_a_400_digit_result_is_not_a_number_but_not_an_error(hostile_rows):
    row = hostile_rows["long_int_record"]
    assert row["04_executed_in_order"] == "yes" and row["status"] == "incomplete"


def test_resume_skips_students_already_in_the_report(course, capsys):
    batch = course["base"] / "resume"
    batch.mkdir()
    for student in ("amy", "bob"):
        _submission(course, student, batch, lambda root: None)
    out = course["base"] / "resume-report" / "report.csv"
    argv = ["grade", str(batch), "--out", str(out), "--manifest", str(course["manifest"])]
    argv += ["--trust-outputs"]
    assert run_cli(*argv, "--source", "synthetic") == 0
    rows = json.loads(out.with_suffix(".json").read_text())
    (batch / "amy.zip").write_bytes(b"PK now broken, but amy is already graded")
    _submission(course, "cat", batch, lambda root: None)
    capsys.readouterr()
    assert run_cli(*argv, "--source", "synthetic", "--resume") == 0
    printed = capsys.readouterr().out
    assert "skipped amy" in printed and "skipped bob" in printed and "graded cat" in printed
    again = json.loads(out.with_suffix(".json").read_text())
    assert again[:2] == rows and [r["student"] for r in again] == ["amy", "bob", "cat"]
    assert "peak memory: grader" in printed


# ------------------------------------------------------------------ submit
def test_submit_lists_problems_and_never_prints_a_traceback(course, tmp_path, capsys):
    root = course["base"] / "work" / "deep_json"  # written by the hostile batch above
    if not root.is_dir():
        _submission(course, "deep_json", tmp_path, HOSTILE["deep_json"][0])
    _part5_results(root, huge_int())
    code = run_cli(
        "submit",
        "--student",
        "alice",
        "--notebook-dir",
        str(root),
        "--out",
        str(tmp_path / "x.zip"),
    )
    printed = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in printed.out + printed.err
    assert "nests lists or objects too deeply" in printed.out
    assert "holds an integer with more than 4300 digits" in printed.out
    assert not (tmp_path / "x.zip").exists()


def test_submit_turns_an_unexpected_error_into_a_problem(course, tmp_path, capsys, monkeypatch):
    import cifar_lab.instructor.submission as submission

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(submission, "check_submission", broken)
    code = run_cli(
        "submit",
        "--student",
        "alice",
        "--notebook-dir",
        str(course["source"]),
        "--out",
        str(tmp_path / "x.zip"),
    )
    printed = capsys.readouterr()
    assert code == 1 and "Traceback" not in printed.out + printed.err
    assert "RuntimeError: disk on fire" in printed.out


# ------------------------------------------------------ models that balloon (slow)
@pytest.mark.slow
def test_models_over_the_memory_ceiling_are_flagged_and_the_batch_goes_on(course):
    base = course["base"]
    models = train_models(base / "models")
    bombs = {
        "conv400": conv_stack_model(base / "models" / "conv400.keras"),
        "balloon": balloon_model(base / "models" / "balloon.keras"),
    }
    assert os.path.getsize(bombs["conv400"]) < 2 << 20
    batch = base / "bombs"
    batch.mkdir()
    for student in ("balloon", "conv400", "honest"):
        root = write_submission(base / "bombs-work" / student, course["source"], models.good,
                                models.good_accuracy)  # fmt: skip
        if student in bombs:
            replace_model(root, bombs[student])
        zip_folder(root, batch / f"{student}.zip")
    out = base / "bombs-report" / "report.csv"
    argv = [str(batch), "--out", str(out), "--manifest", str(course["manifest"])]
    argv += ["--source", "synthetic", "--num-test", str(NUM_TEST), "--model-memory-mb", "1536"]
    argv += ["--trust-outputs"]
    assert run_cli("grade", *argv) == 0
    rows = {row["student"]: row for row in json.loads(out.with_suffix(".json").read_text())}
    assert rows["honest"]["status"] == "ok", rows["honest"]["problems"]
    for student in bombs:
        row = rows[student]
        assert row["status"] == "flagged" and row["part5_claim_verified"] == "no"
    assert any(  # dense-only, so only the ceiling stops it
        "was not scored" in p and "--model-memory-mb" in p for p in rows["balloon"]["problems"]
    ), rows["balloon"]["problems"]
    assert any("1536 MB memory limit" in p for p in rows["balloon"]["problems"])
    assert any(  # refused from its config, before anything is built
        "is refused" in p and "Conv2D" in p for p in rows["conv400"]["problems"]
    ), rows["conv400"]["problems"]


def test_byte_identical_models_are_scored_once_per_test_set(tmp_path, monkeypatch):
    import numpy as np

    from cifar_lab.instructor import claims

    calls = []

    def fake_score(*, path, sets, max_bytes, budget):
        calls.append(path)
        return {name: 0.25 + 0.5 * (path.read_bytes() == b"other model") for name in sets}

    monkeypatch.setattr(claims, "score_model_sets", fake_score)
    test_set = claims.LazyTestSet("synthetic", 10)
    images = np.zeros((4, 32, 32, 3), np.uint8)
    labels, other_labels = np.arange(4), np.arange(4)[::-1]
    scored = {}
    for name, content in (("a", b"same model"), ("b", b"same model"), ("c", b"other model")):
        path = tmp_path / name / MODEL_FILE
        path.parent.mkdir()
        path.write_bytes(content)
        scored[name] = claims._score_once(test_set, path, {"test": (images, labels)}, 10**6)
    assert scored == {"a": {"test": 0.25}, "b": {"test": 0.25}, "c": {"test": 0.75}}
    assert [p.parent.name for p in calls] == ["a", "c"]  # b's identical bytes were not re-scored
    model_a = tmp_path / "a" / MODEL_FILE
    claims._score_once(test_set, model_a, {"test": (images, other_labels)}, 10**6)
    assert len(calls) == 3  # other labels: another split, scored again
    both = {"test": (images, labels), "val": (images, labels)}
    claims._score_once(test_set, model_a, both, 10**6)
    assert len(calls) == 4  # another set besides: scored again
    cached = dict(test_set.scores)
    claims._score_once(test_set, model_a, {"test": (images, labels)}, max_bytes=4)
    assert len(calls) == 5 and test_set.scores == cached  # over max_bytes: loader, not hashed
