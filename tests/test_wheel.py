"""The built wheel works on its own and holds no answer: notebooks, release, grade and run.

The wheel is built from a clean copy of the checkout and installed with ``pip
install --target`` (not editable) once per test run (``installed_wheel``,
tests/installed_wheel.py; tests/test_nbgrader.py uses the same one). The tests run the
command line from an empty folder outside the repository with
``PYTHONPATH=TARGET``: TensorFlow and the other dependencies come from this
virtual environment, ``cifar_lab`` from the installed wheel. The wheel is built
from ``cifar_lab/`` alone: the instructor ``notebooks/`` are not even in the copy.

The wheel carries the student edition (``cifar_lab/student_edition/``), never an
answer: no solution marker in its notebooks or package data, and no distinctive
line of a solution region or model answer anywhere in it, library code and the
README (its METADATA) included.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO_ROOT, SHARED_ARCHIVE
from installed_wheel import SKIP_IN_COPY, run
from test_no_answers import distinctive_solution_lines

from cifar_lab.instructor.release import BEGIN_SOLUTION, END_SOLUTION, MANIFEST_FILE

pytestmark = pytest.mark.slow

# Solution lines the library's own given code holds too, each for a reason, so that the
# wheel test can tell them from an answer (each must still be a solution line).
SHARED_WITH_THE_LIBRARY = {
    # the training loops students are given as lab.train_part34 (cifar_lab/training.py)
    "loss = loss_fn(y, scores)": "cifar_lab/training.py",
    "gradients = tape.gradient(loss, model.trainable_variables)": "cifar_lab/training.py",
    "return params": "cifar_lab/tuning/sweeps.py",
}


@pytest.fixture(scope="module")
def installed(installed_wheel):
    """(wheel, target folder it is installed in, environment that imports it)."""
    env = {**os.environ, "PYTHONPATH": str(installed_wheel.target)}
    env.pop("CIFAR10_SOURCE", None)
    return installed_wheel.wheel, installed_wheel.target, env


def test_wheel_holds_every_module_and_the_student_edition(installed):
    wheel, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    notebooks = sorted(n for n in names if n.endswith(".ipynb"))
    course = [
        f"cifar_lab/student_edition/{p.name}" for p in sorted(REPO_ROOT.glob("notebooks/0*"))
    ]
    assert notebooks == course
    assert [Path(name).stem[:2] for name in course] == ["01", "02", "03", "04", "05"]
    assert f"cifar_lab/student_edition/{MANIFEST_FILE}" in names
    modules = {
        p.relative_to(REPO_ROOT).as_posix()
        for p in (REPO_ROOT / "cifar_lab").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert modules <= names, f"missing from the wheel: {sorted(modules - names)}"


def _wheel_texts(wheel: Path) -> dict[str, str]:
    """Every member of the wheel as text; a notebook as its cells' sources, one after another."""
    texts = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            text = archive.read(name).decode("utf-8", errors="replace")
            if name.endswith(".ipynb"):  # JSON escapes quotes: compare the sources as written
                cells = json.loads(text)["cells"]
                text = "\n".join("".join(cell["source"]) for cell in cells)
            texts[name] = text
    return texts


def answers_in(texts: dict[str, str]) -> tuple[list[str], dict[str, tuple]]:
    """(members holding a solution marker, unexplained solution lines -> (cell, members)).

    Args:
        texts: a wheel's members as :func:`_wheel_texts` reads them.
    """
    # markers: release.py and the README explain them, so library code and METADATA may
    # name them; a notebook or a data file that holds one holds a solution region
    data = {n: t for n, t in texts.items() if not n.endswith(".py") and ".dist-info/" not in n}
    marked = [n for n, t in data.items() if BEGIN_SOLUTION in t or END_SOLUTION in t]
    lines = distinctive_solution_lines(REPO_ROOT / "notebooks")
    assert len(lines) > 50, "the notebooks' solution regions were not read"
    assert set(SHARED_WITH_THE_LIBRARY) <= set(lines), "a listed line is no solution line now"
    found = {
        line: (where, [n for n, t in texts.items() if line in t])
        for line, where in lines.items()
        if any(line in t for t in texts.values())
    }
    unexplained = {
        line: hits
        for line, hits in found.items()
        if hits[1] != [SHARED_WITH_THE_LIBRARY.get(line)]
    }
    return marked, unexplained


def test_wheel_holds_no_answer(installed):
    wheel, _, _ = installed
    texts = _wheel_texts(wheel)
    assert sum(n.endswith(".ipynb") for n in texts) == 5
    marked, unexplained = answers_in(texts)
    assert not marked, f"solution markers in the wheel: {marked}"
    assert not unexplained, f"answers in the wheel (line: (cell, members)): {unexplained}"


def test_the_answer_search_finds_an_instructor_notebook_or_a_copied_answer(tmp_path):
    fake = tmp_path / "fake.whl"
    instructor = REPO_ROOT / "notebooks" / "02_barebones_tensorflow.ipynb"
    lines = distinctive_solution_lines(REPO_ROOT / "notebooks")
    answer = next(line for line, where in lines.items() if where.startswith("01_"))
    with zipfile.ZipFile(fake, "w") as archive:
        archive.write(instructor, "cifar_lab/notebooks/02_barebones_tensorflow.ipynb")
        archive.writestr("cifar_lab/helpers.py", f"def f(X_train):\n    {answer}\n")
    marked, unexplained = answers_in(_wheel_texts(fake))
    assert marked == ["cifar_lab/notebooks/02_barebones_tensorflow.ipynb"]
    assert unexplained[answer][1] == ["cifar_lab/helpers.py"]
    assert any(where.startswith("02_") for where, _ in unexplained.values())


def test_installed_commands_work_outside_the_checkout(installed, tmp_path):
    _, target, env = installed
    work = tmp_path / "empty"
    work.mkdir()
    python = [sys.executable, "-m", "cifar_lab"]
    code = (
        "import cifar_lab, cifar_lab.instructor.notebooks as nb; "
        "print(cifar_lab.__file__); print(nb.notebook_dir()); print(nb.notebooks_installed())"
    )
    where = run([sys.executable, "-c", code], cwd=work, env=env, timeout=120).splitlines()
    assert Path(where[0]).is_relative_to(target), f"cifar_lab imported from {where[0]}"
    edition = target / "cifar_lab" / "student_edition"
    assert Path(where[1]) == edition and where[2] == "True"

    printed = run([*python, "notebooks", "--out", "course"], cwd=work, env=env, timeout=120)
    copied = sorted(p.name for p in (work / "course").iterdir())
    stems = [p.stem for p in sorted(REPO_ROOT.glob("notebooks/0*.ipynb"))]
    assert copied == sorted([f"{stem}.ipynb" for stem in stems] + [MANIFEST_FILE])
    assert "student edition" in printed and "jupyter lab course" in printed
    assert not any(BEGIN_SOLUTION in (work / "course" / n).read_text() for n in copied)

    # installed, release needs the instructor notebooks, which only the repository has
    release = [*python, "release", "--out", "release"]
    refused = subprocess.run(release, cwd=work, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "--source-dir" in refused.stderr, refused.stderr
    source = ["--source-dir", str(REPO_ROOT / "notebooks")]
    run([*release, *source], cwd=work, env=env, timeout=300)
    manifest = json.loads((work / "release" / MANIFEST_FILE).read_text())
    assert sorted(manifest["notebooks"]) == stems
    assert manifest == json.loads((edition / MANIFEST_FILE).read_text())

    run([*python, "nbgrader-config", "--out", "nbcourse"], cwd=work, env=env, timeout=120)
    shipped = target / "cifar_lab" / "instructor" / "nbgrader_config.py"
    assert (work / "nbcourse" / "nbgrader_config.py").read_bytes() == shipped.read_bytes()

    # one student who handed in the untouched edition (an empty folder is an error now)
    shutil.copytree(work / "course", work / "submissions" / "alice")
    grade = [*python, "grade", "submissions", "--out", "report.csv", "--trust-outputs"]
    printed = run(grade, cwd=work, env=env, timeout=300)
    assert f"a release of {edition}" in printed
    with (work / "report.csv").open(newline="") as handle:
        assert [row["student"] for row in csv.DictReader(handle)] == ["alice"]


def test_installed_run_executes_a_folder_of_notebooks(installed, tmp_path):
    if not SHARED_ARCHIVE.is_file():
        pytest.skip(f"no CIFAR-10 archive at {SHARED_ARCHIVE}: run needs real data")
    _, target, env = installed
    work = tmp_path / "empty"
    work.mkdir()
    packaged = sorted((target / "cifar_lab" / "student_edition").rglob("*"))
    command = [sys.executable, "-m", "cifar_lab", "run", "--profile", "quick", "--only", "01"]
    refused = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "--notebooks" in refused.stderr, refused.stderr
    # an instructor runs any folder: here a copy of the solutions, which run to the end
    folder = work / "solutions"
    shutil.copytree(REPO_ROOT / "notebooks", folder, ignore=SKIP_IN_COPY)
    env = {**env, "CIFAR10_SOURCE": str(SHARED_ARCHIVE)}
    command += ["--notebooks", str(folder), "--out", "outs"]
    printed = run(command, cwd=work, env=env, timeout=900)
    summary = next(line for line in printed.splitlines() if line.startswith("01_preparation "))
    assert summary.split()[1] == "ok", printed[-3000:]
    assert (work / "outs" / "01_preparation.ipynb").is_file()
    assert (work / "outs" / "01_preparation.html").is_file()
    assert sorted((target / "cifar_lab" / "student_edition").rglob("*")) == packaged, "wrote there"
