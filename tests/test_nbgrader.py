"""Real nbgrader on a temporary course folder, with the shipped ``nbgrader_config.py``.

generate_assignment runs once per module (seconds) on all five notebooks. The slow
test has nbgrader grade the five notebooks as this session executed them
(``executed_notebooks``: full autograded points, without running them again) and, at
the same time in a copy of the course folder, run notebooks itself: model notebook 01
with the first stage of model notebook 05 (its model answers up to and including the
first search's check, ``architecture_search()``, the release's stubs after: every check
after it scores 0),
and the untouched release of 01 (0 everywhere); then it writes feedback. nbgrader's
kernels run without ``CIFAR_LAB_PROFILE``: its ``NBGRADER_EXECUTION`` picks the quick
profile.

nbgrader's kernels run the package installed from the built wheel, in a student's
install without ipywidgets (tests/installed_wheel.py): there tqdm, imported by
Optuna, would warn on stderr, and nbgrader gives 0 to a graded cell that writes
there. The course folder holds only the installed package's ``nbgrader_config.py``
and the source notebooks copied from this checkout.
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
from installed_wheel import run as run_checked
from installed_wheel import student_environment
from instructor_fixtures import run_cli

from cifar_lab.__main__ import main
from cifar_lab.instructor.notebooks import course_notebooks
from cifar_lab.instructor.points import (
    POINTS,
    autograded_points,
    cells_by_grade_id,
    graded_cells,
)
from cifar_lab.instructor.release import BEGIN_SOLUTION, END_SOLUTION, build_release, release
from cifar_lab.profiles import get_profile

# the course's nbgrader config, shipped in the package (cifar-lab nbgrader-config)
SHIPPED_CONFIG = REPO_ROOT / "cifar_lab" / "instructor" / "nbgrader_config.py"

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
    assert main(["nbgrader-config", "--out", str(root)]) == 0  # as an instructor would
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
    config = loader.PyFileConfigLoader(
        "nbgrader_config.py", path=str(SHIPPED_CONFIG.parent)
    ).load_config()
    assert config.Execute.timeout == 600 > 30  # nbgrader's default is 30 s
    monkeypatch.setenv("CIFAR_LAB_PROFILE", "full")
    config = loader.PyFileConfigLoader(
        "nbgrader_config.py", path=str(SHIPPED_CONFIG.parent)
    ).load_config()
    assert config.Execute.timeout == 3600


def course_copy(course: Path, name: str) -> Path:
    """A copy of ``course`` (release and gradebook included) for one autograde run.

    Each run gets its own course folder, so two autogrades can run at once without
    sharing one SQLite gradebook.
    """
    copy = course.parent / f"{course.name}_{name}"
    shutil.copytree(course, copy)
    return copy


def submit(course: Path, student: str, paths: list[Path]) -> None:
    """Put ``paths`` (notebooks, and folders such as ``part5/``) in ``student``'s submission."""
    target = course / "submitted" / student / ASSIGNMENT
    target.mkdir(parents=True)
    for path in paths:
        if path.is_dir():
            # one folder as the student has it: 04 and 05 both write under runs/
            shutil.copytree(path, target / path.name, dirs_exist_ok=True)
        else:
            shutil.copy(path, target / path.name)


def executed_submission(executed_notebooks) -> list[Path]:
    """The session's five executed notebooks with every file they wrote (``part5/``)."""
    paths = []
    for stem in (name[:-6] for name in POINTS):
        folder = executed_notebooks[stem].folder
        assert executed_notebooks[stem].problem is None, executed_notebooks[stem].problem
        paths += [p for p in folder.iterdir() if p.suffix != ".ipynb" or p.stem == stem]
    return paths


def autograde_at_once(
    runs: list[tuple[Path, tuple[str, ...]]], kernels: Path, timeout: float
) -> None:
    """``nbgrader autograde [OPTIONS]`` in each course folder, all running together.

    Args:
        runs: (course folder, options of ``nbgrader autograde``) for each run.
        kernels: a Jupyter data folder whose ``kernels/python3`` nbgrader's kernels start
            from (``JUPYTER_PATH``); nothing of this checkout is on their ``PYTHONPATH``.
        timeout: seconds all the runs may take.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("CIFAR10_SOURCE", "PYTHONPATH")}
    env["JUPYTER_PATH"] = str(kernels)
    if REAL_SOURCE is not None:
        env["CIFAR10_SOURCE"] = str(REAL_SOURCE)
    logs = [folder / "autograde.log" for folder, _ in runs]
    running = []
    for (folder, options), log in zip(runs, logs, strict=True):
        command = nbgrader_command(folder, "autograde", ASSIGNMENT, *options, env=env)
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


# nbgrader grades the outputs a submission already has: no re-execution, no clearing
GRADE_AS_SUBMITTED = ("--Execute.enabled=False", "--ClearOutput.enabled=False")
FIRST = "01_preparation.ipynb"
LAST = "05_tuning.ipynb"
# a cell a student may add: what the kernel that runs it is (it must not name cifar_lab's
# files: our grader takes a cell reading cifar_lab.__file__ for one that may patch the checks)
KERNEL_PROBE = """import importlib.util, json, sys
found = importlib.util.find_spec("ipywidgets") is not None
print(json.dumps({"python": sys.executable, "path": sys.path, "ipywidgets": found}))
"""


@pytest.fixture(scope="module")
def student_kernel(installed_wheel, tmp_path_factory):
    """(python, Jupyter data folder with its kernelspec) of a student install from the wheel."""
    folder = tmp_path_factory.mktemp("student_install")
    python = student_environment(installed_wheel, folder)
    return python, folder / "share" / "jupyter"


@pytest.mark.slow
def test_the_student_install_has_the_wheel_and_no_ipywidgets(student_kernel, installed_wheel):
    python, kernels = student_kernel
    spec = json.loads((kernels / "kernels" / "python3" / "kernel.json").read_text())
    assert spec["argv"][0] == str(python)  # an absolute path: Jupyter keeps it as it is
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # where each module would be imported from (found, not imported: no TensorFlow start)
    names = ["cifar_lab", "tensorflow", "optuna", "ipywidgets", "nbgrader", "pytest"]
    code = "import importlib.util as u, json, sys\n"
    code += "print(json.dumps({m: getattr(u.find_spec(m), 'origin', None) for m in sys.argv[1:]}))"
    command = [str(python), "-c", code, *names]
    found = json.loads(run_checked(command, cwd=kernels, timeout=60, env=env))
    assert Path(found["cifar_lab"]).is_relative_to(installed_wheel.target), found
    assert found["tensorflow"] and found["optuna"], found
    assert [name for name in ("ipywidgets", "nbgrader", "pytest") if found[name]] == []


def assert_student_kernel(probe: dict, python: Path, target: Path) -> None:
    """What :data:`KERNEL_PROBE` printed is the student install's python, wheel, no ipywidgets."""
    assert probe["python"] == str(python) and probe["ipywidgets"] is False, probe
    assert str(target) in probe["path"], probe  # its cifar_lab (the test above)
    assert not [p for p in probe["path"] if p and Path(p).is_relative_to(REPO_ROOT)], probe


def first_stage_cut(path: Path) -> int:
    """Index of the first cell of notebook ``path`` that runs a search (its first check's call
    of ``architecture_search()``)."""
    cells = nbformat.read(path, as_version=4).cells
    return next(
        i
        for i, c in enumerate(cells)
        if c.cell_type == "code" and "= architecture_search()" in c.source
    )


def first_stage_of_05(course: Path, out: Path) -> Path:
    """05 with its model answers up to its first search's cell, written into folder ``out``.

    The release's cells (stubs) follow, then :data:`KERNEL_PROBE` as a last, added cell.
    """
    source = nbformat.read(REPO_ROOT / "notebooks" / LAST, as_version=4)
    notebook = released(course, LAST)
    cut = first_stage_cut(REPO_ROOT / "notebooks" / LAST)
    notebook.cells[: cut + 1] = source.cells[: cut + 1]
    notebook.cells.append(nbformat.v4.new_code_cell(KERNEL_PROBE))
    path = out / LAST
    out.mkdir()
    nbformat.write(notebook, path)
    return path


def stderr_or_errors(cells) -> dict[int, list]:
    """Cell index -> its stderr and error outputs, for each code cell that has any."""
    found = {}
    for index, cell in enumerate(cells):
        outputs = cell.get("outputs", [])
        bad = [o for o in outputs if o.output_type == "error" or o.get("name") == "stderr"]
        if bad:
            found[index] = bad
    return found


@pytest.mark.slow
def test_autograde_full_marks_for_model_answers_zero_for_release_and_feedback(
    course, executed_notebooks, student_kernel, installed_wheel, tmp_path
):
    """nbgrader grades the session's executed notebooks and runs 01 and 05 itself.

    Course ``graded``: student ``model`` submits the five notebooks as this session
    executed them (``executed_notebooks``), with ``part5/``; nbgrader reads their
    outputs without running them again. Course ``run``: nbgrader's own execution
    (``NBGRADER_EXECUTION`` picks the quick profile), in kernels of a student install
    of the wheel without ipywidgets, of model notebook 01 with the first stage of 05
    (student ``first``; the checks after that stage meet the release's stubs) and of
    the untouched release of 01 (student ``untouched``). A notebook missing from a
    submission counts 0 in both graders.
    """
    python, kernels = student_kernel
    graded, run = course_copy(course, "graded"), course_copy(course, "run")
    shipped = installed_wheel.target / "cifar_lab" / "instructor" / "nbgrader_config.py"
    shutil.copy(shipped, run / "nbgrader_config.py")  # the installed package's config
    submit(graded, "model", executed_submission(executed_notebooks))
    first_stage = first_stage_of_05(course, tmp_path / "05")
    submit(run, "first", [REPO_ROOT / "notebooks" / FIRST, first_stage])
    submit(run, "untouched", [course / "release" / ASSIGNMENT / FIRST])
    autograde_at_once([(graded, GRADE_AS_SUBMITTED), (run, ())], kernels, timeout=1800)
    earned, first = scores(graded, "model"), scores(run, "first")
    blank = scores(run, "untouched")
    for name in POINTS:
        rows = [row for row in graded_cells(name) if row.kind != "solution"]
        assert earned[name][:2] == (autograded_points(name),) * 2, f"{name}: {earned[name]}"
        assert blank[name][2] == 0, name
        for row in rows:  # every graded cell is in nbgrader's gradebook with the table's points
            assert earned[row.grade_id][1] == blank[row.grade_id][1] == row.points, row
            assert blank[row.grade_id][0] == 0, row
            if row.kind == "check":
                assert earned[row.grade_id][0] == row.points, f"the model answer fails {row}"
    # nbgrader's own run of a model answer gives it every point
    assert first[FIRST][:2] == (autograded_points(FIRST),) * 2, first[FIRST]
    assert all(first[name][0] == 0 for name in POINTS if name not in (FIRST, LAST))
    # 05's first stage, run by nbgrader from the wheel without ipywidgets: every check
    # before the cut gets its points, and no cell up to the first search wrote to stderr
    ran = nbformat.read(run / "autograded" / "first" / ASSIGNMENT / LAST, as_version=4)
    cut = first_stage_cut(REPO_ROOT / "notebooks" / LAST)
    assert not stderr_or_errors(ran.cells[: cut + 1]), stderr_or_errors(ran.cells[: cut + 1])
    assert all(c.execution_count for c in ran.cells[: cut + 1] if c.cell_type == "code")
    where = cells_by_grade_id(ran.cells)
    checks = [row for row in graded_cells(LAST) if row.kind == "check"]
    passed = [row for row in checks if where[row.grade_id][0] <= cut]  # the cut is a check
    assert passed, f"no check of {LAST} before its cell {cut}"
    for row in checks:
        assert first[row.grade_id][0] == (row.points if row in passed else 0), row
    assert first[LAST][0] == sum(row.points for row in passed)
    probe = json.loads(ran.cells[-1].outputs[0]["text"])  # the kernel nbgrader ran it in
    assert_student_kernel(probe, python, installed_wheel.target)
    for folder in (graded, run):
        nbgrader(folder, "generate_feedback", ASSIGNMENT)
    feedback = run / "feedback" / "first" / ASSIGNMENT / FIRST.replace(".ipynb", ".html")
    # every autograded point; the written answer waits for a person (manual grading)
    total = sum(row.points for row in graded_cells(FIRST))
    expected = f"Score: {autograded_points(FIRST):.1f} / {total:.1f}"
    assert expected in feedback.read_text(encoding="utf-8")
    last = run / "feedback" / "first" / ASSIGNMENT / LAST.replace(".ipynb", ".html")
    total = sum(row.points for row in graded_cells(LAST))
    expected = f"Score: {sum(row.points for row in passed):.1f} / {total:.1f}"
    assert expected in last.read_text(encoding="utf-8")
    assert "NotImplementedError" in last.read_text(encoding="utf-8")  # the stubs after it
    # our grader on the very notebooks nbgrader graded (with the part5/ folder notebook 05
    # wrote): the same points per notebook, and the honest quick-profile run grades ok
    rows = {}
    for folder, student, points in (
        (graded, "model", earned),
        (run, "first", first),
        (run, "untouched", blank),
    ):
        row = our_grade(folder / "autograded" / student / ASSIGNMENT, student, folder / student)
        for name in POINTS:
            assert row[f"{name[:2]}_points"] == points[name][0], (student, name, row["problems"])
        assert row["total_points"] == sum(points[name][0] for name in POINTS)
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
    argv += ["--trust-outputs"]  # the notebooks nbgrader executed, read as they are
    argv += ["--accept-profile", "quick"]  # nbgrader runs the quick profile
    assert run_cli("grade", *argv, "--gradebook", str(work / "gradebook.csv")) == 0
    (row,) = json.loads(out.with_suffix(".json").read_text())
    return row
