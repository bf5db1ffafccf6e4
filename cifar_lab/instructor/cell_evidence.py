"""What the grader may trust about a submitted cell: where it came from, what it shows.

Helpers of :mod:`cifar_lab.instructor.scoring`: which released cell each row of
the points table is (:func:`released_cells`), a cell's claimed ``grade_id``,
its error, its check verdicts (recomputed), where the execution order breaks,
and which added or edited cells patch the checks.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from cifar_lab.instructor.claims import GradingSetupError
from cifar_lab.instructor.inspection import Finding
from cifar_lab.instructor.nbtools import cell_source, notebook_dir
from cifar_lab.instructor.points import cells_by_grade_id, graded_cells, locate_cells
from cifar_lab.instructor.release import source_digest
from cifar_lab.instructor.tampering import find_patches
from cifar_lab.instructor.trust import check_verdict
from cifar_lab.results import CHECK_MIME


def _course_grade_ids(name: str) -> dict[str, str]:
    """grade_id -> cell id in the course's own notebook (for manifests without grade ids)."""
    notebook = json.loads((notebook_dir() / f"{name}.ipynb").read_text(encoding="utf-8"))
    cells = notebook["cells"]
    found = {gid: cells[i[0]].get("id") for gid, i in cells_by_grade_id(cells).items()}
    if not all(row.grade_id in found for row in graded_cells(name)):
        found = {gid: cells[i].get("id") for gid, i in locate_cells(cells, name).items()}
    return found


@functools.lru_cache(maxsize=16)
def _course_grade_ids_cached(name: str) -> tuple[tuple[str, str], ...]:
    return tuple(_course_grade_ids(name).items())


def released_cells(name: str, expected: dict) -> dict[str, dict]:
    """grade_id -> manifest entry of each graded cell of one notebook.

    Raises:
        GradingSetupError: the manifest does not hold every graded cell (an instructor problem).
    """
    entries = {e["grade_id"]: e for e in expected["cells"] if e.get("grade_id")}
    if not all(row.grade_id in entries for row in graded_cells(name)):  # an older manifest
        by_id = {entry["id"]: entry for entry in expected["cells"]}
        try:
            ids = dict(_course_grade_ids_cached(name))
        except (OSError, ValueError, KeyError, IndexError) as error:
            raise GradingSetupError(
                f"cannot locate the graded cells of {name}: {error}"
            ) from error
        entries = {gid: by_id[cid] for gid, cid in ids.items() if cid in by_id}
    missing = [row.grade_id for row in graded_cells(name) if row.grade_id not in entries]
    if missing:
        raise GradingSetupError(
            f"the release manifest has no cell for {name}'s graded cells {missing}; "
            "release the course again (python -m cifar_lab release) and pass its manifest"
        )
    return entries


def grade_id_of(cell: dict) -> Any:
    """The cell's ``metadata.nbgrader.grade_id`` (None when absent), whatever the JSON holds."""
    metadata = cell.get("metadata")
    block = metadata.get("nbgrader") if isinstance(metadata, dict) else None
    return block.get("grade_id") if isinstance(block, dict) else None


def error_text(cell: dict) -> str:
    for output in cell.get("outputs") or []:
        if isinstance(output, dict) and output.get("output_type") == "error":
            return f"{output.get('ename', 'Error')}: {str(output.get('evalue', ''))[:600]}"
    return ""


def verdicts(cell: dict) -> list[tuple[str, str]]:
    found = []
    for output in cell.get("outputs") or []:
        data = output.get("data") if isinstance(output, dict) else None
        if isinstance(data, dict) and CHECK_MIME in data:
            found.append(check_verdict(data[CHECK_MIME]))
    return found


def order_break(cells: list[dict]) -> int:
    """Index of the first code cell that breaks the 1, 2, 3, ... execution counts (or len)."""
    expected = 1
    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "code" or not cell_source(cell).strip():
            continue
        if cell.get("execution_count") != expected:
            return index
        expected += 1
    return len(cells)


def tamper_findings(name: str, cells: list[dict], released: dict) -> list[Finding]:
    """Flag every added or edited code cell that patches the checks or the library."""
    code = [i for i, cell in enumerate(cells) if cell.get("cell_type") == "code"]

    def scan(cell: dict) -> bool:  # unedited given cells are the release's own code
        entry = released.get(cell.get("id"))
        given = entry is not None and entry["kind"] == "given"
        return not (given and source_digest(cell_source(cell)) == entry["sha256"])

    patches = find_patches((cell_source(cells[i]), scan(cells[i])) for i in code)
    findings = []
    for position, found in patches.items():
        index = code[position]
        what = "; ".join(f"line {line}: {text}" for line, text in found)
        message = f"cell {index} (id {cells[index].get('id', '?')}) may patch the checks: {what}"
        fix = "remove that code; a notebook that patches the checks scores 0 for its checks"
        findings.append(Finding("flagged", name, message, fix))
    return findings
