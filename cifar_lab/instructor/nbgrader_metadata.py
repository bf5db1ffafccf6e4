"""Write the points table into the notebooks as nbgrader (schema 3) cell metadata.

Run from a checkout after editing a notebook or :mod:`cifar_lab.instructor.points`::

    python -m cifar_lab.instructor.nbgrader_metadata --write   # rewrite notebooks/*.ipynb
    python -m cifar_lab.instructor.nbgrader_metadata --check   # exit 1 when one disagrees

Per cell, ``cell.metadata.nbgrader`` becomes:

* an exercise (``solution`` row): ``solution: true, grade: false, locked: false``;
* its check (``check`` row): ``grade: true, solution: false, locked: true, points``;
* a written answer (``written`` row): ``solution: true, grade: true, locked: false, points``;
* any other cell: read-only, ``locked: true``, ``grade_id`` ``cell-<nbformat cell id>``.

Nothing else in the notebook changes (sources, outputs, tags, other metadata).
:func:`lock_cells` marks cells ``deletable``/``editable`` as nbgrader's ``LockCells``
does in ``generate_assignment``; ``cifar_lab release`` applies it too.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

from cifar_lab.instructor.nbtools import course_notebooks, notebook_dir
from cifar_lab.instructor.points import POINTS, locate_cells

SCHEMA_VERSION = 3
READ_ONLY_PREFIX = "cell-"


def _block(grade_id: str, *, solution: bool, grade: bool, locked: bool, points=None) -> dict:
    """One ``metadata.nbgrader`` dictionary, with the keys nbgrader's own editor writes."""
    block = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": locked,
        "schema_version": SCHEMA_VERSION,
        "solution": solution,
        "task": False,
    }
    if grade:
        block["points"] = points
    return block


def expected_metadata(cells: list[dict[str, Any]], notebook: str) -> list[dict[str, Any]]:
    """The ``metadata.nbgrader`` each cell of a source notebook should carry.

    Args:
        cells: the notebook's cells, each with an nbformat cell ``id``.
        notebook: its file name; notebooks outside the points table get only read-only cells.

    Returns:
        One dictionary per cell, in order.

    Raises:
        ValueError: a cell has no id, or a table row does not find its cell.
    """
    rows = {}
    if notebook in POINTS:
        located = locate_cells(cells, notebook)
        rows = {located[row.grade_id]: row for row in POINTS[notebook]}
    blocks = []
    for index, cell in enumerate(cells):
        row = rows.get(index)
        if row is None:
            if not cell.get("id"):
                raise ValueError(
                    f"{notebook} cell {index} has no id; save it with Jupyter >= 3 (nbformat 4.5)"
                )
            block = _block(READ_ONLY_PREFIX + cell["id"], solution=False, grade=False, locked=True)
        elif row.kind == "solution":
            block = _block(row.grade_id, solution=True, grade=False, locked=False)
        elif row.kind == "check":
            block = _block(
                row.grade_id, solution=False, grade=True, locked=True, points=row.points
            )
        else:
            block = _block(
                row.grade_id, solution=True, grade=True, locked=False, points=row.points
            )
        blocks.append(block)
    return blocks


def disagreements(notebook, name: str) -> list[str]:
    """Describe each cell whose ``metadata.nbgrader`` differs from the table.

    Args:
        notebook: an nbformat notebook node.
        name: its file name.

    Returns:
        One line per differing cell; empty when the notebook matches.
    """
    problems = []
    expected = expected_metadata(notebook.cells, name)
    for index, (cell, block) in enumerate(zip(notebook.cells, expected, strict=True)):
        actual = cell.get("metadata", {}).get("nbgrader")
        if actual != block:
            problems.append(f"{name} cell {index} (id {cell.get('id')}): {actual} != {block}")
    return problems


def apply_metadata(notebook, name: str) -> bool:
    """Set every cell's ``metadata.nbgrader`` from the table, in place.

    Args:
        notebook: an nbformat notebook node.
        name: its file name.

    Returns:
        Whether anything changed.
    """
    from nbformat import from_dict

    changed = False
    for cell, block in zip(notebook.cells, expected_metadata(notebook.cells, name), strict=True):
        if cell.metadata.get("nbgrader") != block:
            cell.metadata["nbgrader"] = from_dict(block)
            changed = True
    return changed


def lock_cells(notebook) -> None:
    """Mark cells undeletable / read-only in place, as nbgrader's ``LockCells`` defaults do.

    Solution cells (and written answers) become undeletable; check cells and
    read-only cells become undeletable and uneditable. Cells without nbgrader
    metadata are left alone.

    Args:
        notebook: an nbformat notebook node.
    """
    for cell in notebook.cells:
        block = cell.get("metadata", {}).get("nbgrader") or {}
        if block.get("solution"):
            cell.metadata["deletable"] = False
        elif block.get("grade") or block.get("locked"):
            cell.metadata["deletable"] = False
            cell.metadata["editable"] = False


def sync_notebooks(folder: Path | None = None, *, write: bool) -> list[str]:
    """Check (and with ``write``, fix) the nbgrader metadata of every course notebook.

    Args:
        folder: the notebooks' folder (``None``: the course's own).
        write: rewrite notebooks that disagree.

    Returns:
        The disagreements found before writing.
    """
    import nbformat

    problems = []
    for path in course_notebooks(folder):
        notebook = nbformat.read(path, as_version=4)
        found = disagreements(notebook, path.name)
        problems += found
        if write and found:
            fixed = copy.deepcopy(notebook)
            apply_metadata(fixed, path.name)
            nbformat.write(fixed, path)
    return problems


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--write`` or ``--check`` (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m cifar_lab.instructor.nbgrader_metadata")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite notebooks that disagree")
    mode.add_argument("--check", action="store_true", help="exit 1 when a notebook disagrees")
    parser.add_argument("--notebook-dir", type=Path, default=None, help="default: the course's")
    args = parser.parse_args(argv)
    folder = args.notebook_dir or notebook_dir()
    problems = sync_notebooks(folder, write=args.write)
    for line in problems[:20]:
        print(line)
    if len(problems) > 20:
        print(f"... and {len(problems) - 20} more")
    if args.check:
        print(f"{len(problems)} cell(s) disagree with the points table" if problems else "ok")
        return 1 if problems else 0
    print(f"updated {len(problems)} cell(s) in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
