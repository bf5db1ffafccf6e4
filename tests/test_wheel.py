"""The built wheel works on its own: notebooks, release, grade and run from an installed copy.

Builds the wheel from a clean copy of the checkout (an in-tree build would leave
``build/`` behind, and setuptools can carry stale modules from it into the
wheel), installs it with ``pip install --target`` (not editable), and runs the
command line from an empty folder outside the repository with
``PYTHONPATH=TARGET``: TensorFlow and the other dependencies come from this
virtual environment, ``cifar_lab`` from the installed wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO_ROOT, SHARED_ARCHIVE

pytestmark = pytest.mark.slow

BUILD_FILES = ("pyproject.toml", "README.md", "LICENSE")
BUILD_FOLDERS = ("cifar_lab", "notebooks")
SKIP_IN_COPY = shutil.ignore_patterns(
    "__pycache__", "*.pyc", ".ipynb_checkpoints", "part5", "runs"
)


def _run(command: list[str], *, cwd: Path, timeout: int, env: dict | None = None) -> str:
    """Run a command; fail with its output unless it exits 0. Returns its stdout."""
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (
        f"{' '.join(command)} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}"
    )
    return result.stdout


def _build_wheel(tmp: Path) -> Path:
    """Build the wheel from a clean copy of the checkout; return its path."""
    source = tmp / "source"
    source.mkdir()
    for name in BUILD_FILES:
        shutil.copy2(REPO_ROOT / name, source / name)
    for name in BUILD_FOLDERS:
        shutil.copytree(REPO_ROOT / name, source / name, ignore=SKIP_IN_COPY)
    wheels = tmp / "wheels"
    # build isolation: pyproject asks for a newer setuptools than the venv holds,
    # which pip fetches from the package index
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "--no-deps"]
    build = [*command, "-w", str(wheels), str(source)]
    result = subprocess.run(build, cwd=tmp, capture_output=True, text=True, timeout=600)
    if result.returncode != 0 and "install build dependencies" in result.stderr:
        pytest.skip(
            f"cannot fetch the build backend (no package index?):\n{result.stderr[-2000:]}"
        )
    assert result.returncode == 0, f"pip wheel failed\n{result.stdout}\n{result.stderr}"
    (wheel,) = wheels.glob("cifar_lab-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel, target folder it is installed in, environment that imports it)."""
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = _build_wheel(tmp)
    target = tmp / "target"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], cwd=tmp, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("CIFAR10_SOURCE", None)
    return wheel, target, env


def test_wheel_holds_every_module_and_the_notebooks(installed):
    wheel, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    notebooks = sorted(n for n in names if n.startswith("cifar_lab/notebooks/"))
    course = [
        f"cifar_lab/notebooks/{p.name}" for p in sorted(REPO_ROOT.glob("notebooks/0*.ipynb"))
    ]
    assert [n for n in notebooks if n.endswith(".ipynb")] == course
    assert [Path(name).stem[:2] for name in course] == ["01", "02", "03", "04", "05"]
    modules = {
        p.relative_to(REPO_ROOT).as_posix()
        for p in (REPO_ROOT / "cifar_lab").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert modules <= names, f"missing from the wheel: {sorted(modules - names)}"


def test_installed_commands_work_outside_the_checkout(installed, tmp_path):
    _, target, env = installed
    work = tmp_path / "empty"
    work.mkdir()
    python = [sys.executable, "-m", "cifar_lab"]
    code = (
        "import cifar_lab, cifar_lab.instructor.notebooks as nb; "
        "print(cifar_lab.__file__); print(nb.notebook_dir()); print(nb.notebooks_installed())"
    )
    where = _run([sys.executable, "-c", code], cwd=work, env=env, timeout=120).splitlines()
    assert Path(where[0]).is_relative_to(target), f"cifar_lab imported from {where[0]}"
    assert Path(where[1]) == target / "cifar_lab" / "notebooks" and where[2] == "True"

    printed = _run([*python, "notebooks", "--out", "course"], cwd=work, env=env, timeout=120)
    copied = sorted(p.name for p in (work / "course").iterdir())
    assert copied == sorted(p.name for p in REPO_ROOT.glob("notebooks/0*.ipynb"))
    assert len(copied) == 5 and "jupyter lab course" in printed

    _run([*python, "release", "--out", "release"], cwd=work, env=env, timeout=300)
    manifest = json.loads((work / "release" / "release_manifest.json").read_text())
    assert sorted(manifest["notebooks"]) == [Path(name).stem for name in copied]

    (work / "submissions").mkdir()
    grade = [*python, "grade", "submissions", "--out", "report.csv"]
    printed = _run(grade, cwd=work, env=env, timeout=300)
    assert f"a release of {target / 'cifar_lab' / 'notebooks'}" in printed
    assert (work / "report.csv").is_file()


def test_installed_run_executes_a_notebook(installed, tmp_path):
    if not SHARED_ARCHIVE.is_file():
        pytest.skip(f"no CIFAR-10 archive at {SHARED_ARCHIVE}: run needs real data")
    _, target, env = installed
    work = tmp_path / "empty"
    work.mkdir()
    packaged = sorted((target / "cifar_lab" / "notebooks").rglob("*"))
    command = [sys.executable, "-m", "cifar_lab", "run", "--profile", "quick", "--only", "01"]
    env = {**env, "CIFAR10_SOURCE": str(SHARED_ARCHIVE)}
    printed = _run([*command, "--out", "outs"], cwd=work, env=env, timeout=900)
    summary = next(line for line in printed.splitlines() if line.startswith("01_preparation "))
    assert summary.split()[1] == "ok", printed[-3000:]
    assert (work / "outs" / "01_preparation.ipynb").is_file()
    assert (work / "outs" / "01_preparation.html").is_file()
    assert sorted((target / "cifar_lab" / "notebooks").rglob("*")) == packaged, "wrote into it"
