"""The built wheel, installed once per test run, and a student's environment around it.

:func:`installed_wheel` builds the wheel from a clean copy of the checkout (an in-tree
build would leave ``build/`` behind, and setuptools can carry stale modules from it into
the wheel) and installs it with ``pip install --no-deps --target`` (not editable). The
pytest-xdist workers share that one build: the first worker that asks builds it under a
lock in the folder above the workers' own; the others wait and reuse it.

:func:`student_environment` makes a virtual environment of a student's install without
ipywidgets: the wheel, and the distributions ``cifar_lab[student]`` requires (read from
the wheel's metadata, followed through this environment's installed distributions),
less ``ipywidgets`` and what only it requires. Nothing is installed or downloaded: a
folder of symbolic links to this environment's packages goes on the new environment's
path. nbgrader, pytest, Playwright and this checkout's ``cifar_lab`` are not on it.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

BUILD_FILES = ("pyproject.toml", "README.md", "LICENSE")
BUILD_FOLDERS = ("cifar_lab",)  # the instructor notebooks/ never go into the wheel
SKIP_IN_COPY = shutil.ignore_patterns(
    "__pycache__", "*.pyc", ".ipynb_checkpoints", "part5", "runs"
)
# left out of the student environment with what only they require: a plain install's
# kernel, where tqdm (imported by Optuna) warns on stderr
WITHOUT = ("ipywidgets",)


def run(command: list[str], *, cwd: Path, timeout: int, env: dict | None = None) -> str:
    """Run a command; fail with its output unless it exits 0. Returns its stdout."""
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (
        f"{' '.join(command)} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}"
    )
    return result.stdout


def build_wheel(tmp: Path) -> Path:
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


@dataclass(frozen=True)
class InstalledWheel:
    """The built wheel (``wheel``) and the folder it is installed in (``target``)."""

    wheel: Path
    target: Path


def installed_wheel(tmp_path_factory) -> InstalledWheel:
    """The wheel of this checkout, built and installed once per test run (all workers)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the folder above the workers' own
    folder, done = root / "installed_wheel", root / "installed_wheel.done"
    with (root / "installed_wheel.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a worker that failed half-way
            folder.mkdir()
            wheel = build_wheel(folder)
            pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
            target = ["--target", str(folder / "target")]
            run([*pip, "install", "--no-deps", *target, str(wheel)], cwd=folder, timeout=300)
            done.write_text(str(wheel))
    return InstalledWheel(Path(done.read_text()), folder / "target")


def requirement_closure(requirements: list[str], extras: set[str]) -> set[str]:
    """Canonical names of the installed distributions that ``requirements`` pull in.

    Args:
        requirements: ``Requires-Dist`` strings of one distribution.
        extras: the extras asked of that distribution (markers ``extra == ...``).

    Returns:
        Every distribution required, directly or through others, that this environment
        has installed (one that is not installed here is left out).
    """
    found: set[str] = set()
    todo = [(requirements, extras)]
    while todo:
        requires, asked = todo.pop()
        for text in requires:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is not None and not any(
                marker.evaluate({"extra": extra}) for extra in {"", *asked}
            ):
                continue
            name = canonicalize_name(requirement.name)
            try:
                dist = importlib.metadata.distribution(name)
            except importlib.metadata.PackageNotFoundError:
                continue
            key = f"{name}[{','.join(sorted(requirement.extras))}]"
            if key not in found:
                found.add(key)
                todo.append((dist.requires or [], set(requirement.extras)))
    return {key.split("[")[0] for key in found}


def student_environment(installed: InstalledWheel, folder: Path, extra: str = "student") -> Path:
    """A virtual environment with the wheel and ``cifar_lab[extra]``, less :data:`WITHOUT`.

    Args:
        installed: the installed wheel (:func:`installed_wheel`).
        folder: where the environment is made (created).
        extra: the extra of ``cifar_lab`` whose requirements go in.

    Returns:
        The environment's ``python``. Its kernelspec ``python3`` (``python -m ipykernel
        install --prefix``) is in ``FOLDER/share/jupyter``: put that on ``JUPYTER_PATH``
        and Jupyter starts the environment's python for notebooks of the ``python3``
        kernel, not the python that launched it.
    """
    (info,) = installed.target.glob("cifar_lab-*.dist-info")
    metadata = importlib.metadata.PathDistribution(info)
    roots = [
        r for r in metadata.requires or [] if canonicalize_name(Requirement(r).name) not in WITHOUT
    ]
    names = requirement_closure(roots, {extra})
    assert {"tensorflow", "ipykernel", "optuna", "jupyterlab"} <= names, sorted(names)
    assert not names & {"ipywidgets", "widgetsnbextension", "jupyterlab-widgets"}, sorted(names)
    links = folder / "packages"
    links.mkdir(parents=True)
    for name in sorted(names):
        dist = importlib.metadata.distribution(name)
        site = Path(dist.locate_file(""))
        for part in {Path(file).parts[0] for file in dist.files or []}:
            if part not in ("..", "__pycache__") and not (links / part).exists():
                (links / part).symlink_to(site / part)
    environment = folder / "env"
    run([sys.executable, "-m", "venv", "--without-pip", str(environment)], cwd=folder, timeout=120)
    python = environment / "bin" / "python"
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site_packages = Path(run([str(python), "-c", code], cwd=folder, timeout=60).strip())
    # the wheel first: the links hold no cifar_lab (it is no requirement of itself)
    (site_packages / "student_install.pth").write_text(f"{installed.target}\n{links}\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    kernel = ["-m", "ipykernel", "install", "--prefix", str(folder), "--name", "python3"]
    run([str(python), *kernel], cwd=folder, timeout=120, env=env)
    return python
