"""Small helpers for reading and cleaning the course notebooks.

Policy: notebooks are committed without outputs, except code cells
tagged ``nbval-check-output``, whose (deterministic) outputs nbval compares.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

# nbval compares the outputs of cells carrying this tag (with --nbval-lax); a tag
# keeps the cell's source free of a comment students would have to ignore.
CHECK_TAG = "nbval-check-output"
FIRST_NOTEBOOK = "01_preparation.ipynb"
# the installed wheel's copy of the course: cifar_lab/notebooks/
INSTALLED_NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def notebook_dir() -> Path:
    """Return the folder of the course notebooks.

    An installed wheel carries them as ``cifar_lab/notebooks/``; a checkout
    (editable install or not) keeps them in the top-level ``notebooks/``.

    Returns:
        The folder holding ``01_preparation.ipynb`` and the other course notebooks.

    Raises:
        FileNotFoundError: neither place holds the course notebooks.
    """
    candidates = (INSTALLED_NOTEBOOKS, INSTALLED_NOTEBOOKS.parents[1] / "notebooks")
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


def notebooks_installed() -> bool:
    """True when :func:`notebook_dir` is the installed package's copy, not a checkout's.

    Returns:
        Whether the course notebooks live inside the installed ``cifar_lab`` package
        (where nothing should be written).
    """
    return notebook_dir() == INSTALLED_NOTEBOOKS


def copy_course_notebooks(out_dir: Path, *, force: bool = False) -> list[Path]:
    """Copy the course notebooks (:func:`course_notebooks`) into ``out_dir``.

    Args:
        out_dir: destination folder (created); must be empty or absent unless ``force``.
        force: overwrite same-named notebooks in a non-empty ``out_dir``.

    Returns:
        The written paths, in course order.

    Raises:
        ValueError: ``out_dir`` is a file, or is not empty and ``force`` is False.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} is a file; pass a folder as --out")
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise ValueError(f"{out_dir} is not empty; choose another --out or pass --force")
    out_dir.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copyfile(path, out_dir / path.name)) for path in course_notebooks()]


def join_source(source: str | list[str]) -> str:
    """Return a cell source as one string (Jupyter may store it as a list of lines).

    Args:
        source: a cell's ``source`` field: a string or a list of lines.

    Returns:
        The lines joined, or the string itself.
    """
    return "".join(source) if isinstance(source, list) else str(source)


def cell_source(cell: dict[str, Any]) -> str:
    """Return a cell's source as one string (empty when the cell has none).

    Args:
        cell: a notebook cell, as a dict or an nbformat node.

    Returns:
        The source, joined by :func:`join_source`.
    """
    return join_source(cell.get("source", ""))


def is_checked(cell) -> bool:
    """True for a code cell whose output nbval compares (tagged ``nbval-check-output``)."""
    tags = cell.get("metadata", {}).get("tags", [])
    return cell.get("cell_type") == "code" and CHECK_TAG in tags


# Metadata an execution writes (nbclient/JupyterLab timings, the ExecuteTime extension,
# papermill): timestamps that neither the repository nor a student's copy should carry.
EXECUTION_METADATA = ("execution", "ExecuteTime", "papermill")


def strip_outputs(notebook, *, keep_checked: bool = True):
    """Return a copy without outputs, execution counts and execution timestamps.

    Checked cells may keep their outputs and execution counts.

    Args:
        notebook: an nbformat notebook node.
        keep_checked: keep the outputs of cells tagged ``nbval-check-output``.

    Returns:
        The cleaned copy; ``notebook`` itself is not modified.
    """
    cleaned = copy.deepcopy(notebook)
    cleaned.metadata.pop("papermill", None)
    for cell in cleaned.cells:
        for key in EXECUTION_METADATA:
            cell.get("metadata", {}).pop(key, None)
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

    For maintainers: run after editing a cell tagged ``nbval-check-output``.

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
