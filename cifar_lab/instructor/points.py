"""The course's one table of points, how each row finds its cell, and its nbgrader metadata.

Every exercise, check and written answer that nbgrader (and ``cifar_lab grade``)
scores is one :class:`GradedCell` row below. Kinds:

* ``solution``: an exercise code cell (holds ``### BEGIN SOLUTION``); 0 points,
  nbgrader's "autograded answer";
* ``check``: the autograded test cell after it (or a given cell whose check
  scores the student's code); its points are earned when it runs without error;
* ``written``: a manually graded ``**Answer:**`` markdown cell.

Run from a checkout after editing a notebook or the table::

    python -m cifar_lab.instructor.points --write   # rewrite notebooks/*.ipynb
    python -m cifar_lab.instructor.points --check   # exit 1 when one disagrees

Per cell, ``cell.metadata.nbgrader`` (schema 3) becomes:

* an exercise (``solution`` row): ``solution: true, grade: false, locked: false``;
* its check (``check`` row): ``grade: true, solution: false, locked: true, points``;
* a written answer (``written`` row): ``solution: true, grade: true, locked: false, points``;
* any other cell: read-only, ``locked: true``, ``grade_id`` ``cell-<nbformat cell id>``.

Never edit that metadata by hand. Nothing else in the notebook changes (sources,
outputs, tags, other metadata). :func:`lock_cells` marks cells
``deletable``/``editable`` as nbgrader's ``LockCells`` does in
``generate_assignment``; ``cifar_lab release`` applies it too. Stdlib only.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifar_lab.instructor.notebooks import (
    COURSE_NOTEBOOKS,
    cell_source,
    course_notebooks,
    notebook_dir,
)

KINDS = ("solution", "check", "written")
BEGIN_SOLUTION = "### BEGIN SOLUTION"  # same spelling as release.BEGIN_SOLUTION
ANSWER_PREFIX = "**Answer:**"


@dataclass(frozen=True)
class GradedCell:
    """One row of the points table.

    Attributes:
        notebook: the notebook's file name, e.g. ``"01_preparation.ipynb"``.
        grade_id: stable id written into ``cell.metadata.nbgrader.grade_id``.
        kind: ``"solution"``, ``"check"`` or ``"written"`` (see the module docstring).
        points: points of a check or written answer; 0 for solution cells.
        anchor: text that occurs in exactly one cell of this kind in the source
            notebook (a solution cell, an answer cell, or a code cell without a
            solution). Empty for a check: the code cell right after the previous
            row's solution cell.
    """

    notebook: str
    grade_id: str
    kind: str
    points: int
    anchor: str = ""


def _exercise(notebook: str, name: str, points: int, anchor: str) -> tuple[GradedCell, ...]:
    """A solution cell ``name`` and its check ``name_check`` (the next code cell)."""
    return (
        GradedCell(notebook, name, "solution", 0, anchor),
        GradedCell(notebook, f"{name}_check", "check", points),
    )


def _table() -> dict[str, tuple[GradedCell, ...]]:
    n1, n2, n3, n4, n5 = (f"{name}.ipynb" for name in COURSE_NOTEBOOKS)
    rows = [
        *_exercise(n1, "standardise_splits", 4, "def standardise_splits("),
        GradedCell(n1, "answer_training_statistics", "written", 1, "Why are the validation and"),
        *_exercise(n1, "minibatches", 5, "class Minibatches"),
        *_exercise(n2, "training_step", 3, "def training_step("),
        *_exercise(n2, "two_layer_fc_init", 1, "def two_layer_fc_init("),
        *_exercise(n2, "evaluate_loss", 2, "def evaluate_loss("),
        GradedCell(n2, "answer_initial_loss", "written", 1, "two losses of the untrained network"),
        *_exercise(n2, "overfit_tiny_subset", 2, "def overfit_tiny_subset("),
        GradedCell(n2, "two_layer_accuracy_check", "check", 2, 'val_accuracy = history[-1]["val'),
        *_exercise(n2, "three_layer_fc", 3, "def three_layer_fc("),
        *_exercise(n2, "three_layer_fc_init", 2, "def three_layer_fc_init("),
        GradedCell(n2, "three_layer_accuracy_check", "check", 2, "val_accuracy_3 = history_3[-1]"),
        *_exercise(n2, "momentum_update", 2, "def momentum_update("),
        *_exercise(n3, "train_step", 5, "def train_step("),
        GradedCell(
            n3, "subclassed_accuracy_check", "check", 2, 'record("subclassed_val_accuracy"'
        ),
        GradedCell(n3, "answer_optimizer_state", "written", 1, "What does an optimizer such as"),
        *_exercise(n3, "three_layer_model", 5, "class ThreeLayerFC("),
        GradedCell(
            n3, "three_layer_model_accuracy_check", "check", 2, 'record("three_layer_val_accuracy"'
        ),
        *_exercise(n4, "three_layer_sequential", 3, "def three_layer_sequential("),
        GradedCell(n4, "sequential_accuracy_check", "check", 1, "lambda: three_layer_sequential("),
        *_exercise(n4, "three_layer_functional", 3, "def three_layer_functional("),
        GradedCell(
            n4, "functional_accuracy_check", "check", 1, 'record("three_layer_fit_val_accuracy"'
        ),
        *_exercise(n4, "make_pipeline", 2, "def make_pipeline("),
        *_exercise(n4, "training_callbacks", 2, "def training_callbacks("),
        GradedCell(n4, "answer_momentum", "written", 1, "What did momentum change"),
        *_exercise(n4, "first_layer_templates", 1, "def first_layer_templates("),
        GradedCell(n4, "answer_templates", "written", 1, "What do the two rows of templates"),
        *_exercise(n5, "build_network", 4, "def build_network("),
        *_exercise(n5, "train_network", 3, "def train_network("),
        *_exercise(n5, "architecture_search", 3, "def architecture_search("),
        *_exercise(n5, "activation_search", 2, "def activation_search("),
        GradedCell(n5, "answer_depth_width", "written", 2, "Can a deeper or a wider"),
        *_exercise(n5, "initializer_search", 2, "def initializer_search("),
        GradedCell(n5, "answer_zero_init", "written", 2, "all-zeros initialisation"),
        *_exercise(n5, "optimizer_search", 3, "def optimizer_search("),
        GradedCell(n5, "answer_batchnorm_speed", "written", 2, "make training faster"),
        GradedCell(n5, "answer_batchnorm_optimizers", "written", 2, "Which optimisers benefit"),
        *_exercise(n5, "regularisation_search", 2, "def regularisation_search("),
        GradedCell(n5, "answer_regularisers", "written", 2, "Which regularisers helped"),
        GradedCell(n5, "answer_ensemble", "written", 2, "How does the ensemble compare"),
        *_exercise(n5, "final_training", 5, "def final_training("),
        GradedCell(n5, "answer_summary", "written", 4, "Describe what you did"),
    ]
    table: dict[str, tuple[GradedCell, ...]] = {}
    for row in rows:
        table[row.notebook] = (*table.get(row.notebook, ()), row)
    return table


POINTS: dict[str, tuple[GradedCell, ...]] = _table()
COURSE_MAX_POINTS = 100


def graded_cells(notebook: str) -> tuple[GradedCell, ...]:
    """Return the rows of one notebook, in notebook order.

    Args:
        notebook: a file name such as ``"02_barebones_tensorflow.ipynb"`` (a stem works too).

    Returns:
        Its solution, check and written-answer rows.

    Raises:
        TypeError: ``notebook`` is not a string.
        ValueError: the course has no such notebook.
    """
    if not isinstance(notebook, str):
        raise TypeError(f"notebook must be a file name string, got {type(notebook).__name__}")
    name = notebook if notebook.endswith(".ipynb") else f"{notebook}.ipynb"
    if name not in POINTS:
        raise ValueError(f"no graded notebook {notebook!r}; choose one of {sorted(POINTS)}")
    return POINTS[name]


def max_points(notebook: str) -> int:
    """Return the points a notebook is worth (its checks and written answers)."""
    return sum(row.points for row in graded_cells(notebook))


def autograded_points(notebook: str) -> int:
    """Return the points of a notebook's checks (what autograding can award)."""
    return sum(row.points for row in graded_cells(notebook) if row.kind == "check")


def _candidates(cells: Sequence[dict[str, Any]], kind: str) -> list[int]:
    """Indices of the cells a row of ``kind`` may anchor to."""
    found = []
    for index, cell in enumerate(cells):
        source, code = cell_source(cell), cell.get("cell_type") == "code"
        if kind == "written":
            fits = not code and source.lstrip().startswith(ANSWER_PREFIX)
        else:  # a solution holds a region; a check is any other code cell
            fits = code and (BEGIN_SOLUTION in source) == (kind == "solution")
        if fits:
            found.append(index)
    return found


def locate_cells(cells: Sequence[dict[str, Any]], notebook: str) -> dict[str, int]:
    """Find each row's cell in a source (instructor) notebook by its anchor.

    Args:
        cells: the notebook's cells (dicts or nbformat nodes).
        notebook: its file name, as in :data:`POINTS`.

    Returns:
        grade_id -> cell index, for every row of the notebook.

    Raises:
        ValueError: an anchor matches no cell or several, a check has no code cell
            after its solution, or two rows land on the same cell.
    """
    located: dict[str, int] = {}
    previous: int | None = None
    for row in graded_cells(notebook):
        if row.anchor:
            hits = [i for i in _candidates(cells, row.kind) if row.anchor in cell_source(cells[i])]
            if len(hits) != 1:
                raise ValueError(
                    f"{notebook}: {row.grade_id} anchor {row.anchor!r} matches {len(hits)} "
                    f"{row.kind} cells (indices {hits}); edit the anchor in points.py"
                )
            index = hits[0]
        else:
            after = [
                i for i in _candidates(cells, "check") if previous is not None and i > previous
            ]
            if not after or any(
                cells[i].get("cell_type") == "code" for i in range(previous + 1, after[0])
            ):
                raise ValueError(
                    f"{notebook}: {row.grade_id} has no check cell after its solution"
                )
            index = after[0]
        if index in located.values():
            raise ValueError(f"{notebook}: {row.grade_id} lands on cell {index}, already taken")
        located[row.grade_id] = previous = index
    return located


def cells_by_grade_id(cells: Sequence[dict[str, Any]]) -> dict[str, list[int]]:
    """Group a notebook's cells by their ``metadata.nbgrader.grade_id``.

    Works on any notebook carrying nbgrader metadata (source, release, submission);
    a list longer than one means a student duplicated the cell.

    Args:
        cells: the notebook's cells (dicts or nbformat nodes).

    Returns:
        grade_id -> indices of the cells carrying it, in order.
    """
    found: dict[str, list[int]] = {}
    for index, cell in enumerate(cells):
        grade_id = (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")
        if isinstance(grade_id, str):
            found.setdefault(grade_id, []).append(index)
    return found


def points_markdown() -> str:
    """Return the points table as Markdown, as docs/nbgrader.md shows it (a test compares them).

    Returns:
        One row per check or written answer, a total row per notebook and the course total.
    """
    lines = ["| notebook | graded cell (`grade_id`) | grades | points |", "|---|---|---|---|"]
    for notebook, rows in POINTS.items():
        exercise = None
        for row in rows:
            if row.kind == "solution":
                exercise = row.grade_id
                continue
            if row.kind == "written":
                what = "written answer, graded by hand"
            elif not row.anchor and exercise:
                what = f"exercise `{exercise}` (autograded check)"
            else:
                what = "training with the student's code (autograded check)"
            lines.append(f"| {notebook[:-6]} | `{row.grade_id}` | {what} | {row.points} |")
        lines.append(f"| **{notebook[:-6]}** | | **total** | **{max_points(notebook)}** |")
    lines.append(f"| **course** | | **total** | **{COURSE_MAX_POINTS}** |")
    return "\n".join(lines) + "\n"


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
    parser = argparse.ArgumentParser(prog="python -m cifar_lab.instructor.points")
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
