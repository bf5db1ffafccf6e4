"""Small helpers for reading and cleaning the course notebooks.

Policy: notebooks are committed without outputs, except cells marked with a
line ``# NBVAL_CHECK_OUTPUT``, whose (deterministic) outputs nbval compares.
"""

from __future__ import annotations

import copy
from pathlib import Path

CHECK_MARKER = "# NBVAL_CHECK_OUTPUT"
FIRST_NOTEBOOK = "01_preparation.ipynb"


def notebook_dir() -> Path:
    """Return the folder of the course notebooks.

    An installed wheel carries them as ``cifar_lab/notebooks/``; a checkout
    (editable install or not) keeps them in the top-level ``notebooks/``.

    Raises:
        FileNotFoundError: neither place holds the course notebooks.
    """
    package = Path(__file__).resolve().parents[1]
    candidates = (package / "notebooks", package.parent / "notebooks")
    for candidate in candidates:
        if (candidate / FIRST_NOTEBOOK).is_file():
            return candidate
    raise FileNotFoundError(
        f"the course notebooks are in neither {candidates[0]} nor {candidates[1]}; "
        "reinstall cifar_lab (pip install cifar_lab) or run from a checkout"
    )


def course_notebooks(folder: Path | None = None) -> list[Path]:
    """Return the course notebooks (``NN_name.ipynb``) in order.

    Args:
        folder: where to look; ``None`` means :func:`notebook_dir`.
    """
    folder = notebook_dir() if folder is None else Path(folder)
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def is_checked(cell) -> bool:
    """True for a code cell whose output nbval compares (marker alone on a line)."""
    lines = (line.strip() for line in cell.get("source", "").splitlines())
    return cell.get("cell_type") == "code" and CHECK_MARKER in lines


def strip_outputs(notebook, *, keep_checked: bool = True):
    """Return a copy without outputs and execution counts (checked cells may keep both).

    Args:
        notebook: an nbformat notebook node.
        keep_checked: keep the outputs of ``# NBVAL_CHECK_OUTPUT`` cells.

    Returns:
        The cleaned copy; ``notebook`` itself is not modified.
    """
    cleaned = copy.deepcopy(notebook)
    for cell in cleaned.cells:
        if cell.cell_type != "code":
            continue
        # nbval rejects a cell that has outputs but no execution count, so checked
        # cells keep theirs; every other cell loses both.
        if not (keep_checked and is_checked(cell)):
            cell.execution_count = None
            cell.outputs = []
    return cleaned


def refresh_checked_outputs(paths: list[Path], *, cell_timeout: int = 1800) -> None:
    """Re-execute notebooks in the quick profile and commit only checked outputs.

    For maintainers: run after editing a ``# NBVAL_CHECK_OUTPUT`` cell.

    Args:
        paths: notebooks to refresh in place.
        cell_timeout: seconds any single cell may take.
    """
    import nbformat
    from nbclient import NotebookClient

    from cifar_lab.instructor.runner import QUIET_TF, environment

    with environment(CIFAR_LAB_PROFILE="quick", **QUIET_TF):
        for path in paths:
            notebook = nbformat.read(path, as_version=4)
            NotebookClient(
                notebook,
                timeout=cell_timeout,
                kernel_name="python3",
                resources={"metadata": {"path": str(path.parent)}},
            ).execute()
            nbformat.write(strip_outputs(notebook), path)
            print(f"refreshed {path}")
