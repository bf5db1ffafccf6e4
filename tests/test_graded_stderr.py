"""No graded check cell writes to stderr: nbgrader gives 0 to a graded cell that does.

A warning (``TqdmWarning: IProgress not found``, a deprecation, a TensorFlow log
line) printed while a check cell runs lands on stderr, and nbgrader's autograder
then scores that cell 0 whatever the check said. These tests read the executions
the session already made (tests/executed_notebooks.py): nothing runs again. The
last one imports the Part V sweeps in a simulated kernel without ipywidgets (a
plain install), where Optuna's import of tqdm would warn.
"""

from __future__ import annotations

import os
import subprocess
import sys

import nbformat
import pytest
from conftest import REPO_ROOT

from cifar_lab.instructor.notebooks import course_notebooks
from cifar_lab.instructor.points import cells_by_grade_id, graded_cells

NOTEBOOKS = course_notebooks(REPO_ROOT / "notebooks")


def graded_check_stderr(stem: str, notebook) -> dict[str, str]:
    """The stderr text of each graded check cell that wrote any.

    Args:
        stem: the notebook's name, e.g. ``"01_preparation"`` (its rows of the points table).
        notebook: the executed notebook (nbformat node).

    Returns:
        grade_id -> everything its cell wrote to stderr (absent: nothing).

    Raises:
        AssertionError: a check cell is missing or never ran (nothing to judge).
    """
    by_id = cells_by_grade_id(notebook.cells)
    written = {}
    for row in (row for row in graded_cells(stem) if row.kind == "check"):
        assert len(by_id.get(row.grade_id, [])) == 1, f"{stem}: no one cell {row.grade_id}"
        cell = notebook.cells[by_id[row.grade_id][0]]
        assert cell.execution_count is not None, f"{stem}: {row.grade_id} never ran"
        text = "".join(
            output.get("text", "")
            for output in cell.outputs
            if output.output_type == "stream" and output.name == "stderr"
        )
        if text:
            written[row.grade_id] = text
    return written


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_graded_check_cell_writes_to_stderr(path, executed_notebooks):
    run = executed_notebooks[path.stem]
    assert run.problem is None, run.problem
    written = graded_check_stderr(path.stem, run.notebook)
    assert not written, f"{path.stem}: graded cells wrote to stderr (nbgrader scores 0): {written}"


def test_stderr_of_a_graded_check_cell_is_found():
    notebook = nbformat.read(NOTEBOOKS[0], as_version=4)
    check = next(row for row in graded_cells(NOTEBOOKS[0].stem) if row.kind == "check")
    for cell in notebook.cells:
        cell.execution_count = 1 if cell.cell_type == "code" else None
    (index,) = cells_by_grade_id(notebook.cells)[check.grade_id]
    stream = nbformat.v4.new_output
    notebook.cells[index].outputs = [
        stream("stream", name="stdout", text="check passed\n"),
        stream("stream", name="stderr", text="TqdmWarning: IProgress not found\n"),
    ]
    found = graded_check_stderr(NOTEBOOKS[0].stem, notebook)
    assert found == {check.grade_id: "TqdmWarning: IProgress not found\n"}
    notebook.cells[index].outputs = notebook.cells[index].outputs[:1]  # stdout is fine
    assert graded_check_stderr(NOTEBOOKS[0].stem, notebook) == {}
    notebook.cells[index].execution_count = None
    with pytest.raises(AssertionError, match="never ran"):
        graded_check_stderr(NOTEBOOKS[0].stem, notebook)


# A Jupyter kernel of a plain install, as tqdm sees it: ipykernel's shell is loaded and
# ``import ipywidgets`` fails (the student extra brings ipywidgets; a plain install does not).
KERNEL_WITHOUT_IPYWIDGETS = """
import sys
sys.modules["ipywidgets"] = None  # ``import ipywidgets`` raises ImportError
import ipykernel.zmqshell  # tqdm.autonotebook takes this for "in a Jupyter kernel"
"""


def stderr_of(code: str) -> str:
    """What ``python -c code`` writes to stderr (cifar_lab importable from this checkout)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}  # Python's defaults
    env["PYTHONPATH"] = str(REPO_ROOT)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_part5_sweeps_import_quietly_in_a_kernel_without_ipywidgets():
    """Optuna imports tqdm.auto; without ipywidgets that warns unless the course silenced it."""
    # the simulated kernel reproduces the warning: Optuna imported on its own
    bare = stderr_of(KERNEL_WITHOUT_IPYWIDGETS + "import optuna\n")
    assert "IProgress not found" in bare, bare
    # notebook 05's first use of its studies (lab.create_study ...) imports optuna through
    # cifar_lab.tuning, and writes nothing to stderr
    code = "import cifar_lab as lab\nlab.create_study\nimport optuna\n"
    assert stderr_of(KERNEL_WITHOUT_IPYWIDGETS + code) == ""
