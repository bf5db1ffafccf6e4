"""``grade`` re-executes by default: an honest run stays ``ok``, code edited after it ran does not.

The honest submission is the five notebooks as the suite executed them
(``executed_notebooks``: quick profile, real CIFAR-10) with the ``part5/`` folder 05
wrote, as a student hands them in after running them: re-executed, every recorded
result reproduces, every probe passes, and the row is ``ok`` with every auto-graded point.

The edited submission is notebook 01 as the suite executed it, saved
with every check passing, then edited the way a student edits a cell after running it
and saves without running it again: ``standardise_splits`` no longer divides by the
standard deviation and ``Minibatches`` drops the last batch. Only 01 is handed in, so
only 01 re-executes (the other notebooks are missing, which the row says; 01 is still
scored).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from conftest import REAL_SOURCE, REPO_ROOT, requires_real_data
from instructor_fixtures import run_cli

from cifar_lab.instructor.points import POINTS, autograded_points
from cifar_lab.instructor.release import release

NOTEBOOK = "01_preparation"
BROKEN = {  # grade_id of the solution cell -> (correct line, the edit made after the run)
    "standardise_splits": ("(X.astype(np.float32) - mean) / std", "(X.astype(np.float32) - mean)"),
    "minibatches": ("range(0, N, self.batch_size)", "range(0, N - self.batch_size + 1, 1)"),
}
CHECKS = {"standardise_splits_check", "minibatches_check"}
NOT_PRODUCED = "the saved output was not produced by this code"


def _grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


@pytest.fixture(scope="module")
def edited_after_run(executed_notebooks, tmp_path_factory) -> Path:
    """A batch of one submission: 01 executed, two solutions broken, outputs kept."""
    run = executed_notebooks[NOTEBOOK]
    assert run.problem is None, run.problem
    notebook = nbformat.reads(nbformat.writes(run.notebook), as_version=4)  # a copy
    for cell in notebook.cells:
        if _grade_id(cell) in BROKEN:
            correct, broken = BROKEN[_grade_id(cell)]
            assert correct in cell.source
            cell.source = cell.source.replace(correct, broken)  # outputs and counts stay
    batch = tmp_path_factory.mktemp("edited_after_run")
    (batch / "student").mkdir()
    nbformat.write(notebook, batch / "student" / f"{NOTEBOOK}.ipynb")
    return batch


def _grade(batch: Path, out: Path, *options: str) -> dict:
    """Grade ``batch`` with the course's release manifest; the one row."""
    manifest = release(out.parent / "release", source_dir=REPO_ROOT / "notebooks")
    argv = [str(batch), "--out", str(out), "--manifest", str(manifest), "--no-feedback"]
    assert run_cli("grade", *argv, "--source", str(REAL_SOURCE), *options) == 0
    (row,) = json.loads(out.with_suffix(".json").read_text())
    return row


@pytest.mark.slow
@requires_real_data
def test_code_edited_after_its_run_loses_its_points_and_is_flagged(edited_after_run, tmp_path):
    static = _grade(edited_after_run, tmp_path / "static" / "report.csv", "--trust-outputs")
    full = sum(row.points for row in POINTS[f"{NOTEBOOK}.ipynb"] if row.grade_id in CHECKS)
    assert static["executed"] == "not re-executed" and static["rerun"] == "not-run"
    assert static["01_points"] == full  # the saved outputs are believed
    assert not any(NOT_PRODUCED in problem for problem in static["problems"])

    row = _grade(edited_after_run, tmp_path / "default" / "report.csv")  # re-executes
    assert row["executed"] == "re-executed", row["problems"]
    assert row["01_points"] == 0, row["problems"]
    flagged = [p for p in row["problems"] if NOT_PRODUCED in p]
    assert len(flagged) == len(CHECKS), row["problems"]  # one finding per graded check
    assert all(any(f"'{check}'" in p for p in flagged) for check in CHECKS), flagged
    assert any("01 sha256 " in p for p in row["problems"])  # what ran, by hash


def _handed_in(executed_notebooks, folder: Path) -> Path:
    """The five notebooks the session executed, with the files they wrote (``part5/``)."""
    folder.mkdir(parents=True)
    for name in POINTS:
        run = executed_notebooks[name.removesuffix(".ipynb")]
        assert run.problem is None, run.problem
        for path in run.folder.iterdir():
            if path.suffix == ".ipynb":
                if path.name == name:
                    shutil.copy(path, folder / path.name)
            elif path.is_dir():
                shutil.copytree(path, folder / path.name, dirs_exist_ok=True)
            else:
                shutil.copy(path, folder / path.name)
    return folder


# `promise`: the grader re-executes all five notebooks (minutes), so `make test-promises` runs it
@pytest.mark.slow
@pytest.mark.promise
@requires_real_data
def test_an_honest_submission_re_executed_is_ok_with_every_autograded_point(
    executed_notebooks, tmp_path
):
    batch = tmp_path / "batch"
    _handed_in(executed_notebooks, batch / "honest")
    # the re-run's profile is the quick one (the default), the one the suite executed in
    row = _grade(batch, tmp_path / "report" / "report.csv", "--accept-profile", "quick")
    assert row["executed"] == "re-executed", row["problems"]
    assert row["rerun"] == "reproduced", row["problems"]
    assert row["status"] == "ok", row["problems"]
    assert row["total_points"] == sum(autograded_points(name) for name in POINTS), row["problems"]
    for name in POINTS:
        assert row[f"{name[:2]}_points"] == autograded_points(name), (name, row["problems"])
    assert not any("failed the grader's test" in p for p in row["problems"]), row["problems"]
