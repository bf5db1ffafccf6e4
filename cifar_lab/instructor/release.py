"""Student release: the course notebooks without their solutions.

Solutions are marked with nbgrader's spelling, so the notebooks stay usable
with nbgrader too:

* **Code.** Inside a code cell, the lines from ``### BEGIN SOLUTION`` to
  ``### END SOLUTION`` (markers included) become, at the indentation of the
  BEGIN line::

      # YOUR CODE HERE
      raise NotImplementedError("Part II: implement `two_layer_fc_init` ...")

  The hint names the enclosing function or method. A line
  ``### HINT: use lab.kaiming_normal`` right after ``### BEGIN SOLUTION``
  adds a custom hint to the message (and is removed with the solution).
* **Written answers.** A markdown cell whose source starts with
  ``**Answer:**`` is a written-answer cell; the text between
  ``### BEGIN SOLUTION`` and ``### END SOLUTION`` inside it becomes
  ``YOUR ANSWER HERE``.

``release`` also clears every output (checked cells included: their outputs
may depend on a stub) and the execution metadata (timestamps), and keeps cell
ids and the ``lab.check_at_least`` calls. Next to the notebooks it writes
``release_manifest.json``: per notebook, the cells in order with id, kind
(``given``, ``solution`` or ``answer``), the sha256 of the released source,
the first line and whether the cell holds a check. Grading compares
submissions with it to find deleted, duplicated, reordered or edited cells.

**The student edition.** ``cifar_lab/student_edition/`` is this release of the
instructor notebooks, committed (tests/test_student_edition.py fails, naming the
command below, when it is not what a fresh release writes). The wheel ships it
instead of the instructor notebooks, so an installed package holds no answer;
``cifar-lab notebooks --out DIR`` copies it out. A committed copy rather than a
build hook: the release code needs nbformat and this package at build time, a
build hook would run it inside pip's isolated build environment, and a committed
copy shows a reviewer exactly what students receive. After editing a notebook::

    python -m cifar_lab release --out cifar_lab/student_edition --force
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from cifar_lab.instructor.notebooks import (
    STUDENT_EDITION,
    cell_source,
    course_notebooks,
    join_source,
    notebook_dir,
    notebooks_installed,
    strip_outputs,
)
from cifar_lab.instructor.points import lock_cells

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
HINT_PREFIX = "### HINT:"
ANSWER_PREFIX = "**Answer:**"
ANSWER_PLACEHOLDER = "YOUR ANSWER HERE"
CODE_PLACEHOLDER = "# YOUR CODE HERE"
MANIFEST_FILE = "release_manifest.json"
MANIFEST_FORMAT = 1
CHECK_CALL = "check_at_least("

_ROMAN = ["", "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X"]
_DEFINITION = re.compile(r"(?:async\s+)?(?:def|class)\s+(\w+)")


def part_label(stem: str) -> str:
    """Return "Part II" for "02_barebones_tensorflow"; the stem itself otherwise."""
    number = int(stem[:2]) if stem[:2].isdigit() else 0
    return f"Part {_ROMAN[number]}" if 0 < number < len(_ROMAN) else stem


def enclosing_name(lines: list[str], line_index: int) -> str | None:
    """Qualified name of the def/class around ``lines[line_index]``, e.g. "Model.call"."""
    indent = len(lines[line_index]) - len(lines[line_index].lstrip())
    names: list[str] = []
    for line in reversed(lines[:line_index]):
        stripped = line.strip()
        line_indent = len(line) - len(line.lstrip())
        if not stripped or stripped.startswith("#") or line_indent >= indent:
            continue
        indent = line_indent  # walk outwards one block at a time
        match = _DEFINITION.match(stripped)
        if match:
            names.insert(0, match.group(1))
        if indent == 0:
            break
    return ".".join(names) or None


def _solution_blocks(lines: list[str], where: str) -> list[tuple[int, int]]:
    """(begin, end) line indices of each solution block; ValueError when unbalanced."""
    blocks, begin = [], None
    for index, line in enumerate(lines):
        marker = line.strip()
        if marker == BEGIN_SOLUTION:
            if begin is not None:
                raise ValueError(f"{where}: nested {BEGIN_SOLUTION} at line {index + 1}")
            begin = index
        elif marker == END_SOLUTION:
            if begin is None:
                raise ValueError(f"{where}: {END_SOLUTION} without BEGIN at line {index + 1}")
            blocks.append((begin, index))
            begin = None
    if begin is not None:
        raise ValueError(f"{where}: {BEGIN_SOLUTION} at line {begin + 1} has no {END_SOLUTION}")
    return blocks


def stub_code(source: str, *, part: str, where: str = "cell") -> str:
    """Replace each solution block of a code cell by a NotImplementedError stub.

    Args:
        source: the cell's source.
        part: label for the message, e.g. ``"Part II"``.
        where: names the cell in error messages.

    Returns:
        The student source (unchanged when it holds no block).
    """
    lines = source.splitlines()
    blocks = _solution_blocks(lines, where)
    if not blocks:
        # byte for byte: the grader flags a given cell whose digest differs from the source's
        return source
    for begin, end in reversed(blocks):
        indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
        name = enclosing_name(lines, begin)
        message = f"{part}: implement `{name}`" if name else f"{part}: complete this cell"
        message += " (see the instructions above)"
        hint_line = lines[begin + 1].strip() if begin + 1 < end else ""
        if hint_line.startswith(HINT_PREFIX):
            message += f"; hint: {hint_line[len(HINT_PREFIX) :].strip()}"
        literal = json.dumps(message, ensure_ascii=False)  # a valid, double-quoted Python str
        stub = [f"{indent}{CODE_PLACEHOLDER}", f"{indent}raise NotImplementedError({literal})"]
        lines[begin : end + 1] = stub
    return _joined(lines, like=source)


def stub_answer(source: str, *, where: str = "cell") -> str:
    """Replace the solution text of a written-answer cell by ``YOUR ANSWER HERE``."""
    lines = source.splitlines()
    blocks = _solution_blocks(lines, where)
    if not blocks:
        return source
    for begin, end in reversed(blocks):
        lines[begin : end + 1] = [ANSWER_PLACEHOLDER]
    return _joined(lines, like=source)


def _joined(lines: list[str], *, like: str) -> str:
    """``lines`` joined by newlines, ending with one where the source ``like`` did."""
    text = "\n".join(lines)
    return text + "\n" if like.endswith(("\n", "\r")) else text


def is_answer_cell(cell: dict[str, Any]) -> bool:
    """True for a markdown cell whose source starts with ``**Answer:**``."""
    source = cell_source(cell)
    return cell.get("cell_type") == "markdown" and source.lstrip().startswith(ANSWER_PREFIX)


def release_notebook(notebook, *, part: str, name: str = "notebook"):
    """Return the student version of one solution notebook (the input is not modified).

    Args:
        notebook: an nbformat v4 notebook whose cells carry ids (nbformat >= 4.5).
        part: label for stub messages, e.g. ``"Part II"``.
        name: the notebook's name, for error messages.

    Returns:
        A new notebook: solutions stubbed; outputs, execution counts and execution
        metadata (timestamps, see :func:`~cifar_lab.instructor.notebooks.strip_outputs`) cleared;
        ``metadata.nbgrader`` kept, and ``deletable``/``editable`` set as nbgrader's
        ``generate_assignment`` does (:func:`~cifar_lab.instructor.points.lock_cells`).
    """
    released = strip_outputs(notebook, keep_checked=False)
    for index, cell in enumerate(released.cells):
        if not cell.get("id"):
            raise ValueError(
                f"{name} cell {index} has no id; save the notebook with Jupyter >= 3 "
                "(nbformat 4.5) so cells get ids, then release again."
            )
        where = f"{name} cell {index} (id {cell.id})"
        if cell.cell_type == "code":
            cell.source = stub_code(cell.source, part=part, where=where)
        elif cell.cell_type == "markdown" and BEGIN_SOLUTION in cell.source:
            if not is_answer_cell(cell):
                raise ValueError(f"{where}: a markdown solution must start with {ANSWER_PREFIX}")
            cell.source = stub_answer(cell.source, where=where)
    lock_cells(released)  # keeps metadata.nbgrader; read-only cells as nbgrader locks them
    return released


def cell_kind(original: dict[str, Any]) -> str:
    """ "solution", "answer" or "given" for a cell of the solution notebook."""
    if is_answer_cell(original):
        return "answer"
    has_block = BEGIN_SOLUTION in cell_source(original)
    return "solution" if has_block and original.get("cell_type") == "code" else "given"


def source_digest(source: str | list[str]) -> str:
    """sha256 of a cell source (lists of lines are joined first, as Jupyter does)."""
    return hashlib.sha256(join_source(source).encode("utf-8")).hexdigest()


def manifest_entry(original, released) -> dict[str, Any]:
    """The manifest record of one notebook: its cells in order."""
    cells = []
    for before, after in zip(original.cells, released.cells, strict=True):
        first_line = next((ln.strip() for ln in after.source.splitlines() if ln.strip()), "")
        cells.append(
            {
                "id": after.id,
                "cell_type": after.cell_type,
                "kind": cell_kind(before),
                "sha256": source_digest(after.source),
                "first_line": first_line[:80],
                "has_check": after.cell_type == "code" and CHECK_CALL in after.source,
                # the instructor's nbgrader grade_id: how grading finds graded cells
                "grade_id": (before.get("metadata", {}).get("nbgrader") or {}).get("grade_id"),
            }
        )
    return {"cells": cells}


def build_release(source_dir: Path | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Release every course notebook of ``source_dir`` in memory.

    Args:
        source_dir: folder with the solution notebooks ``NN_name.ipynb``
            (``None``: the course's own, see :func:`~cifar_lab.instructor.notebooks.notebook_dir`).

    Returns:
        (released notebooks by stem, manifest).
    """
    import nbformat

    if source_dir is None and notebooks_installed():
        raise ValueError(
            f"the installed cifar_lab holds only the student edition ({STUDENT_EDITION}), "
            "not the solutions: pass --source-dir with the instructor notebooks from the "
            "repository, or copy the student edition with `cifar-lab notebooks --out DIR`"
        )
    source_dir = notebook_dir() if source_dir is None else Path(source_dir)
    paths = course_notebooks(source_dir)
    if not paths:
        raise ValueError(f"no NN_name.ipynb notebooks in {source_dir}; pass --source-dir")
    released, notebooks = {}, {}
    for path in paths:
        original = nbformat.read(path, as_version=4)
        released[path.stem] = release_notebook(
            original, part=part_label(path.stem), name=path.name
        )
        notebooks[path.stem] = manifest_entry(original, released[path.stem])
    return released, {"format": MANIFEST_FORMAT, "notebooks": notebooks}


def release(out_dir: Path, *, source_dir: Path | None = None, force: bool = False) -> Path:
    """Write the student notebooks and ``release_manifest.json`` to ``out_dir``.

    Args:
        out_dir: destination folder; must be empty or absent unless ``force``.
        source_dir: folder with the solution notebooks (``None``: the course's own).
        force: overwrite files in a non-empty ``out_dir``.

    Returns:
        The manifest's path.
    """
    import nbformat

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise ValueError(f"{out_dir} is not empty; choose another --out or pass --force")
    released, manifest = build_release(source_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stem, notebook in released.items():
        nbformat.write(notebook, out_dir / f"{stem}.ipynb")
    manifest_path = out_dir / MANIFEST_FILE
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest_path


def load_manifest(path: Path) -> dict[str, Any]:
    """Read and sanity-check a ``release_manifest.json``.

    Args:
        path: the manifest file written by :func:`release`.

    Returns:
        The manifest dictionary.
    """
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read release manifest {path}: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(
            f"{path} is not a format-{MANIFEST_FORMAT} release manifest; "
            "write it again with `python -m cifar_lab release`"
        )
    return manifest


def course_manifest() -> dict[str, Any]:
    """Return the release manifest of the course's own notebooks.

    Returns:
        In a checkout, the manifest of a fresh release of ``notebooks/``; installed,
        the student edition's ``release_manifest.json`` (the instructor notebooks it
        was released from are not installed).
    """
    if notebooks_installed():
        return load_manifest(STUDENT_EDITION / MANIFEST_FILE)
    return build_release()[1]


def copy_student_edition(out_dir: Path, *, force: bool = False) -> list[Path]:
    """Copy the student edition (notebooks and ``release_manifest.json``) into ``out_dir``.

    Args:
        out_dir: destination folder (created); must be empty or absent unless ``force``.
        force: overwrite same-named files in a non-empty ``out_dir``.

    Returns:
        The written notebooks, in course order (the manifest is written beside them).

    Raises:
        ValueError: ``out_dir`` is a file, or is not empty and ``force`` is False.
    """
    import shutil

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} is a file; pass a folder as --out")
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise ValueError(f"{out_dir} is not empty; choose another --out or pass --force")
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(STUDENT_EDITION / MANIFEST_FILE, out_dir / MANIFEST_FILE)
    notebooks = course_notebooks(STUDENT_EDITION)
    return [Path(shutil.copyfile(path, out_dir / path.name)) for path in notebooks]
