"""Real nbgrader on a temporary course folder, with the shipped ``nbgrader_config.py``.

generate_assignment runs once per module (seconds); the slow test autogrades the
instructor notebooks submitted as one student (full autograded points) and, at the
same time in a copy of the course folder, the untouched release as another (0
everywhere), then writes feedback. Kernels run
without ``CIFAR_LAB_PROFILE``: nbgrader's ``NBGRADER_EXECUTION`` picks the quick profile.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import REAL_SOURCE, REPO_ROOT
from instructor_fixtures import run_cli

from cifar_lab.instructor.notebooks import course_notebooks
from cifar_lab.instructor.points import POINTS, autograded_points, graded_cells
from cifar_lab.instructor.release import BEGIN_SOLUTION, END_SOLUTION, build_release, release
from cifar_lab.profiles import get_profile

ASSIGNMENT = "cifar_lab"
NOTEBOOKS = course_notebooks(REPO_ROOT / "notebooks")
# cifar_lab release names the exercise in the stub's message; nbgrader's default has none
STUB_MESSAGE = re.compile(r"raise NotImplementedError\(.*\)$", re.MULTILINE)
# nbgrader adds these to the metadata of the cells it tracks; cifar_lab release does not
NBGRADER_ONLY = ("checksum", "cell_type")
EXECUTION_KEYS = ("execution", "ExecuteTime", "papermill")  # timestamps nbgrader copies over


def nbgrader_command(course: Path, *args: str, env: dict | None = None) -> dict:
    """Keyword arguments for ``subprocess`` to run ``python -m nbgrader ARGS`` in ``course``."""
    environment = dict(os.environ if env is None else env)
    # nbgrader runs the `alembic` script of its own environment
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    for name in ("CIFAR_LAB_PROFILE", "NBGRADER_EXECUTION"):
        environment.pop(name, None)
    if "CIFAR10_SOURCE" not in environment:
        # without real data only an explicitly asked-for quick profile may use stand-in
        # images; nbgrader's automatic choice refuses them (test_profiles.py)
        environment["CIFAR_LAB_PROFILE"] = "quick"
    return {"args": [sys.executable, "-m", "nbgrader", *args], "cwd": course, "env": environment}


def nbgrader(course: Path, *args: str, timeout: float = 120, env: dict | None = None) -> str:
    """Run ``python -m nbgrader ARGS`` in ``course``; fail the test with its output on error."""
    command = nbgrader_command(course, *args, env=env)
    done = subprocess.run(**command, capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, (
        f"nbgrader {' '.join(args)} exited {done.returncode}:\n{output[-4000:]}"
    )
    return output


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A course folder with the shipped config, the notebooks in source/, and the release."""
    pytest.importorskip("nbgrader", reason="install the extra: pip install -e '.[nbgrader]'")
    root = tmp_path_factory.mktemp("course")
    shutil.copy(REPO_ROOT / "nbgrader_config.py", root)
    (root / "source" / ASSIGNMENT).mkdir(parents=True)
    for path in NOTEBOOKS:
        shutil.copy(path, root / "source" / ASSIGNMENT / path.name)
    nbgrader(root, "generate_assignment", ASSIGNMENT)
    return root


def released(course: Path, name: str):
    return nbformat.read(course / "release" / ASSIGNMENT / name, as_version=4)


def solution_lines(source: str) -> set[str]:
    """Stripped lines inside solution regions that occur nowhere outside them."""
    inside, outside, active = set(), set(), False
    for line in source.splitlines():
        marker = line.strip()
        if BEGIN_SOLUTION in marker or END_SOLUTION in marker:
            active = BEGIN_SOLUTION in marker
        elif marker:
            (inside if active else outside).add(marker)
    return inside - outside - {"pass", "return", ")", "]", "}", "else:", "try:"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_generate_assignment_clears_solutions_and_leaves_stubs(course, path):
    source = nbformat.read(path, as_version=4)
    student = released(course, path.name)
    assert len(student.cells) == len(source.cells)
    rows = {row.grade_id: row for row in graded_cells(path.name)}
    stubs = 0
    for before, after in zip(source.cells, student.cells, strict=True):
        assert BEGIN_SOLUTION not in after.source and END_SOLUTION not in after.source
        leaked = solution_lines(before.source) & {
            line.strip() for line in after.source.splitlines()
        }
        assert not leaked, f"{path.name} {after.metadata.nbgrader.grade_id}: {leaked}"
        if after.cell_type == "code":
            assert after.outputs == [] and after.execution_count is None
        row = rows.get(after.metadata.nbgrader.grade_id)
        if row is not None and row.kind == "solution":
            assert (
                "# YOUR CODE HERE" in after.source
                and "raise NotImplementedError()" in after.source
            )
            stubs += 1
        elif row is not None and row.kind == "written":
            assert "YOUR ANSWER HERE" in after.source
            stubs += 1
    assert stubs == sum(row.kind != "check" for row in rows.values())


def comparable(cell) -> dict:
    """What a student sees of a cell, with the stub message and nbgrader's bookkeeping removed."""
    metadata = {k: v for k, v in cell.metadata.items() if k not in EXECUTION_KEYS}
    block = {k: v for k, v in metadata.pop("nbgrader").items() if k not in NBGRADER_ONLY}
    source = STUB_MESSAGE.sub("raise NotImplementedError()", cell.source)
    outputs = cell.get("outputs", []), cell.get("execution_count")
    return {"id": cell.id, "type": cell.cell_type, "source": source, "nbgrader": block,
            "metadata": metadata, "outputs": outputs}  # fmt: skip


def test_cifar_lab_release_matches_nbgrader_release(course):
    ours, _ = build_release(REPO_ROOT / "notebooks")
    assert sorted(f"{stem}.ipynb" for stem in ours) == sorted(POINTS)
    for stem, notebook in ours.items():
        theirs = released(course, f"{stem}.ipynb")
        assert notebook.metadata == theirs.metadata, stem
        mine = [comparable(cell) for cell in notebook.cells]
        assert mine == [comparable(cell) for cell in theirs.cells], stem
        # the only difference left: our stub names the exercise
        assert any('NotImplementedError("Part' in cell.source for cell in notebook.cells)


def test_nbgrader_execution_selects_the_quick_profile(monkeypatch):
    monkeypatch.delenv("CIFAR_LAB_PROFILE", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    assert get_profile().name == "full"
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert get_profile().name == "quick"
    monkeypatch.setenv("CIFAR_LAB_PROFILE", "full")  # an explicit choice wins
    assert get_profile().name == "full"


def test_shipped_config_sets_course_timeouts(monkeypatch):
    loader = pytest.importorskip("traitlets.config.loader")
    monkeypatch.delenv("CIFAR_LAB_PROFILE", raising=False)
    config = loader.PyFileConfigLoader("nbgrader_config.py", path=str(REPO_ROOT)).load_config()
    assert config.Execute.timeout == 600 > 30  # nbgrader's default is 30 s
    monkeypatch.setenv("CIFAR_LAB_PROFILE", "full")
    config = loader.PyFileConfigLoader("nbgrader_config.py", path=str(REPO_ROOT)).load_config()
    assert config.Execute.timeout == 3600


def submit(course: Path, student: str, folder: Path) -> Path:
    """A copy of ``course`` (release and gradebook included) holding one student's submission.

    Each student gets their own course folder, so the two autogrades can run at
    once without sharing one SQLite gradebook.
    """
    copy = course.parent / f"{course.name}_{student}"
    shutil.copytree(course, copy)
    target = copy / "submitted" / student / ASSIGNMENT
    target.mkdir(parents=True)
    for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        shutil.copy(path, target / path.name)
    return copy


def autograde_at_once(courses: list[Path], timeout: float) -> None:
    """``nbgrader autograde`` in each course folder, all running together."""
    env = {k: v for k, v in os.environ.items() if k != "CIFAR10_SOURCE"}
    if REAL_SOURCE is not None:
        env["CIFAR10_SOURCE"] = str(REAL_SOURCE)
    logs = [folder / "autograde.log" for folder in courses]
    running = []
    for folder, log in zip(courses, logs, strict=True):
        command = nbgrader_command(folder, "autograde", ASSIGNMENT, env=env)
        with log.open("w") as out:
            running.append(subprocess.Popen(**command, stdout=out, stderr=subprocess.STDOUT))
    codes = [process.wait(timeout=timeout) for process in running]
    for code, log in zip(codes, logs, strict=True):
        assert code == 0, f"nbgrader autograde exited {code}:\n{log.read_text()[-4000:]}"


def scores(course: Path, student: str) -> dict:
    """grade_id -> (score, max_score), and per notebook (code score, max code score, score)."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        found = {}
        for name in POINTS:
            notebook = gradebook.find_submission_notebook(name[:-6], ASSIGNMENT, student)
            found[name] = (notebook.code_score, notebook.max_code_score, notebook.score)
            found |= {grade.name: (grade.score, grade.max_score) for grade in notebook.grades}
        return found


@pytest.mark.slow
def test_autograde_full_marks_for_model_answers_zero_for_release_and_feedback(course):
    model = submit(course, "model", REPO_ROOT / "notebooks")
    untouched = submit(course, "untouched", course / "release" / ASSIGNMENT)
    autograde_at_once([model, untouched], timeout=1800)
    earned, blank = scores(model, "model"), scores(untouched, "untouched")
    for name in POINTS:
        rows = [row for row in graded_cells(name) if row.kind != "solution"]
        assert earned[name][:2] == (autograded_points(name),) * 2, f"{name}: {earned[name]}"
        assert blank[name][2] == 0, name
        for row in rows:  # every graded cell is in nbgrader's gradebook with the table's points
            assert earned[row.grade_id][1] == blank[row.grade_id][1] == row.points, row
            assert blank[row.grade_id][0] == 0, row
            if row.kind == "check":
                assert earned[row.grade_id][0] == row.points, f"the model answer fails {row}"
    for folder in (model, untouched):
        nbgrader(folder, "generate_feedback", ASSIGNMENT)
    first = model / "feedback" / "model" / ASSIGNMENT / "01_preparation.html"
    assert "Score: 10.0 / 10.0" in first.read_text(encoding="utf-8")
    last = untouched / "feedback" / "untouched" / ASSIGNMENT / "05_tuning.html"
    assert "Score: 0.0 / 40.0" in last.read_text(encoding="utf-8")
    assert "NotImplementedError" in last.read_text(encoding="utf-8")
    # our grader on the very notebooks nbgrader executed (with the part5/ folder notebook 05
    # wrote there): the same points per notebook, and the honest quick-profile run grades ok
    rows = {}
    for folder, student, graded in ((model, "model", earned), (untouched, "untouched", blank)):
        row = our_grade(folder / "autograded" / student / ASSIGNMENT, student, folder / "ours")
        for name in POINTS:
            assert row[f"{name[:2]}_points"] == graded[name][0], (student, name, row["problems"])
        assert row["total_points"] == sum(graded[name][0] for name in POINTS)
        rows[student] = row
    assert rows["untouched"]["total_points"] == 0
    assert rows["model"]["status"] == "ok", rows["model"]["problems"]


def our_grade(executed: Path, student: str, work: Path) -> dict:
    """Grade one executed submission folder with ``python -m cifar_lab grade``; its report row."""
    batch = work / "batch"
    shutil.copytree(executed, batch / student)
    manifest = release(work / "release", source_dir=REPO_ROOT / "notebooks")
    out = work / "report.csv"
    source = str(REAL_SOURCE) if REAL_SOURCE is not None else "synthetic"
    argv = [str(batch), "--out", str(out), "--manifest", str(manifest), "--source", source]
    assert run_cli("grade", *argv, "--gradebook", str(work / "gradebook.csv")) == 0
    (row,) = json.loads(out.with_suffix(".json").read_text())
    return row
