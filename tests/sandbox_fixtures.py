"""Re-running one-notebook probes under each sandbox backend (conftest imports ``sandbox``)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from cifar_lab.instructor import rerun as rerun_module
from cifar_lab.instructor.rerun import RerunSettings, rerun_notebooks
from cifar_lab.instructor.sandbox import BACKENDS, SANDBOX_ENV, _works

QUICK = RerunSettings(profile="quick", total_timeout=180, cell_timeout=120)


def backend_param(backend: str):
    """``backend`` as a parameter of the ``sandbox`` fixture, skipped where it does not work."""
    reason = f"{backend} does not work on this machine (install Debian `bubblewrap`/util-linux)"
    return pytest.param(backend, marks=pytest.mark.skipif(not _works(backend), reason=reason))


SANDBOXED = [backend_param(backend) for backend in BACKENDS]


@pytest.fixture
def sandbox(request, monkeypatch):
    """Select a backend through ``CIFAR_LAB_SANDBOX`` for one test (parametrize it indirectly)."""
    monkeypatch.setenv(SANDBOX_ENV, request.param)
    rerun_module._backend_once.cache_clear()
    yield request.param
    rerun_module._backend_once.cache_clear()


def run_probe(
    folder: Path, *cells: str, settings: RerunSettings = QUICK
) -> tuple[dict, str | None]:
    """Re-run a one-notebook submission made of ``cells``; return (record, problem)."""
    folder.mkdir(parents=True, exist_ok=True)
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("import cifar_lab as lab")]
        + [nbformat.v4.new_code_cell(cell) for cell in cells]
    )
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, folder / "01_probe.ipynb")
    records, problem = rerun_notebooks(folder, ["01_probe"], settings)
    return records.get("01_probe", {}), problem
