"""Read an executed notebook without running it, and list what is wrong with it.

Shared by ``python -m cifar_lab submit`` (student side) and ``grade``. Notebooks
are read as plain JSON, never executed, and refused unread above a size limit.
Each problem is a :class:`Finding` with a severity, in the order the report
uses for a submission's status: ``damaged`` (cannot be graded as handed in:
unreadable, too large, cells deleted/duplicated/reordered, files missing),
``flagged`` (needs a person: claims that disagree, edited checks, structure
that cannot be verified), ``incomplete`` (not executed in order, errors,
failed checks, Part V outputs missing); ``warning`` never changes it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifar_lab.instructor.nbtools import cell_source
from cifar_lab.instructor.release import (
    ANSWER_PLACEHOLDER,
    ANSWER_PREFIX,
    is_answer_cell,
    source_digest,
)
from cifar_lab.instructor.trust import check_passed
from cifar_lab.instructor.untrusted import finite_number, parse_json
from cifar_lab.results import read_outputs

MEGABYTE = 1024 * 1024
SEVERITIES = ("damaged", "flagged", "incomplete", "warning")
RESTART_FIX = "re-run {name} from the top (Kernel > Restart Kernel and Run All Cells), then save"


@dataclass(frozen=True)
class Finding:
    """One problem with a submission.

    Attributes:
        severity: one of :data:`SEVERITIES`.
        where: notebook stem, ``"part5"`` or ``"submission"``.
        message: what is wrong.
        fix: what the student should do about it.
    """

    severity: str
    where: str
    message: str
    fix: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    def __str__(self) -> str:
        return f"{self.where[:2] if self.where[:2].isdigit() else self.where}: {self.message}"


@dataclass
class NotebookInspection:
    """What one executed notebook shows, read without running it.

    Attributes:
        name: notebook stem.
        state: ``"ok"``, ``"missing"`` or ``"damaged"``.
        executed_in_order: None when the notebook could not be read.
        errors, checks_passed, checks_failed: counts.
        edited_cells: ids of given (non-solution) cells whose source differs from the release.
        results: recorded results by name (last value wins).
        answers: (present, expected) written answers.
        findings: the problems found.
    """

    name: str
    state: str = "ok"
    executed_in_order: bool | None = None
    errors: int = 0
    checks_passed: int = 0
    checks_failed: int = 0
    edited_cells: list[str] = field(default_factory=list)
    results: dict[str, float] = field(default_factory=dict)
    answers: tuple[int, int] = (0, 0)
    findings: list[Finding] = field(default_factory=list)


def megabytes(size: int) -> str:
    """Format a byte count for messages, e.g. "20.0 MB"."""
    return f"{size / MEGABYTE:.1f} MB"


def read_notebook_json(path: Path, max_bytes: int) -> tuple[dict | None, Finding | None]:
    """Read a notebook as JSON, refusing files over ``max_bytes`` before parsing them.

    Returns:
        (notebook dict, None) or (None, a ``damaged`` Finding).
    """
    name = path.stem
    size = path.stat().st_size
    if size > max_bytes:
        message = f"{path.name} is {megabytes(size)}, over the {megabytes(max_bytes)} limit"
        fix = "clear huge outputs (e.g. long printouts) and run the notebook again"
        return None, Finding("damaged", name, message, fix)
    notebook, problem = parse_json(path.read_bytes(), path.name)
    if problem is not None:
        fix = "the file is truncated or was edited by hand; save it again from Jupyter"
        return None, Finding("damaged", name, problem, fix)
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        return None, Finding("damaged", name, f"{path.name} is not a notebook (no cell list)")
    if notebook.get("nbformat") != 4:
        return None, Finding("damaged", name, f"{path.name} is not an nbformat 4 notebook")
    return notebook, None


def _order_finding(name: str, cells: list[dict]) -> Finding | None:
    """The first code cell that breaks the 1, 2, 3, ... execution counts, if any."""
    expected = 1
    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "code" or not cell_source(cell).strip():
            continue  # Jupyter does not count empty cells
        count = cell.get("execution_count")
        label = f"cell {index} (id {cell.get('id', '?')})"
        if count is None:
            message = f"{label} was never run"
        elif count != expected:
            message = f"{label} ran out of order (execution count {count}, expected {expected})"
        else:
            expected += 1
            continue
        return Finding("incomplete", name, message, RESTART_FIX.format(name=name))
    return None


def _error_findings(name: str, cells: list[dict]) -> list[Finding]:
    findings = []
    for index, cell in enumerate(cells):
        for output in cell.get("outputs") or []:
            if isinstance(output, dict) and output.get("output_type") == "error":
                error = f"{output.get('ename', 'Error')}: {str(output.get('evalue', ''))[:200]}"
                fix = "fix the code, then " + RESTART_FIX.format(name=name)
                findings.append(Finding("incomplete", name, f"cell {index} raised {error}", fix))
    return findings


def _check_findings(name: str, notebook: dict, expected: dict | None) -> tuple[int, int, list]:
    """Count passed and failed checks; report failed ones and checks that never ran."""
    checks = read_outputs(notebook)["checks"]
    findings = []
    for check in checks:
        if not check_passed(check):  # recomputed from value and minimum, not read
            message = f"check failed in cell {check['cell']}: {check.get('what', '?')}"
            fix = "read the hint under that cell and fix the code it names"
            findings.append(Finding("incomplete", name, message, fix))
    ran = {notebook["cells"][check["cell"]].get("id") for check in checks}
    for entry in (expected or {}).get("cells", []):
        if entry["has_check"] and entry["id"] not in ran:
            message = f"the check in cell id {entry['id']} did not run or printed no result"
            findings.append(Finding("incomplete", name, message, RESTART_FIX.format(name=name)))
    passed = sum(check_passed(check) for check in checks)
    return passed, len(checks) - passed, findings


def recorded_results(notebook: dict) -> dict[str, float]:
    """Numeric ``lab.record`` results of a notebook by name (the last value wins)."""
    found = {}
    for result in read_outputs(notebook)["results"]:
        value = result.get("value")
        if isinstance(result.get("name"), str) and is_number(value):
            found[result["name"]] = float(value)
    return found


def answer_is_present(cell: dict[str, Any] | None) -> bool:
    """True when a written-answer cell holds more than the prefix and no placeholder."""
    if cell is None:
        return False
    text = cell_source(cell).strip()
    text = text[len(ANSWER_PREFIX) :] if text.startswith(ANSWER_PREFIX) else text
    return bool(text.strip()) and ANSWER_PLACEHOLDER not in text


def _answers(cells: list[dict], expected: dict | None) -> tuple[int, int]:
    if expected is None:
        answer_cells = [cell for cell in cells if is_answer_cell(cell)]
    else:
        by_id = {cell.get("id"): cell for cell in cells}
        wanted = [entry["id"] for entry in expected["cells"] if entry["kind"] == "answer"]
        answer_cells = [by_id.get(cell_id) for cell_id in wanted]
    return sum(answer_is_present(cell) for cell in answer_cells), len(answer_cells)


def structure_findings(name: str, cells: list[dict], expected: dict) -> tuple[list, list[str]]:
    """Compare cell ids with the release: deleted, duplicated, reordered, edited cells.

    Added cells are allowed. Returns (findings, ids of edited given cells).
    """
    ids = [cell.get("id") for cell in cells]  # every step below is linear in len(cells)
    if not all(isinstance(cell_id, str) and cell_id for cell_id in ids):
        message = "cannot verify structure: some cells have no id (saved by an old Jupyter?)"
        return [Finding("flagged", name, message)], []
    released = {entry["id"]: entry for entry in expected["cells"]}
    fix = "start again from the release notebook and copy your work into it"
    counts = Counter(ids)
    findings = [
        Finding("damaged", name, f"cell id {cell_id} is duplicated", fix)
        for cell_id in sorted(i for i, n in counts.items() if n > 1 and i in released)
    ]
    for cell_id, entry in released.items():
        if cell_id not in counts:
            message = f"cell id {cell_id} was deleted ('{entry['first_line']}')"
            findings.append(Finding("damaged", name, message, fix))
    kept = [i for i in counts if i in released]  # first occurrences, in order
    order = [entry["id"] for entry in expected["cells"] if entry["id"] in counts]
    moved = next((mine for mine, theirs in zip(kept, order, strict=True) if mine != theirs), None)
    if moved:
        findings.append(Finding("damaged", name, f"cells reordered (first: id {moved})", fix))
    by_id = {cell.get("id"): cell for cell in cells}
    edited = [
        cell_id
        for cell_id, entry in released.items()
        if entry["kind"] == "given"
        and cell_id in by_id
        and source_digest(cell_source(by_id[cell_id])) != entry["sha256"]
    ]
    for cell_id in edited:
        if released[cell_id]["has_check"]:
            findings.append(Finding("flagged", name, f"the check cell id {cell_id} was edited"))
    return findings, edited


def inspect_notebook(name: str, notebook: dict, expected: dict | None) -> NotebookInspection:
    """Inspect one executed notebook (a JSON dict) without running it.

    Args:
        name: notebook stem.
        notebook: the parsed notebook.
        expected: its release-manifest entry, or None to skip structure checks.

    Returns:
        A :class:`NotebookInspection`; malformed content becomes a ``damaged`` finding.
    """
    inspection = NotebookInspection(name)
    try:
        cells = [cell for cell in notebook["cells"] if isinstance(cell, dict)]
        if len(cells) != len(notebook["cells"]):
            raise TypeError("a cell is not a JSON object")
        order = _order_finding(name, cells)
        errors = _error_findings(name, cells)
        passed, failed, check_problems = _check_findings(name, notebook, expected)
        structure, edited = structure_findings(name, cells, expected) if expected else ([], [])
        inspection.executed_in_order = order is None
        inspection.errors, inspection.edited_cells = len(errors), edited
        inspection.checks_passed, inspection.checks_failed = passed, failed
        inspection.results = recorded_results(notebook)
        inspection.answers = _answers(cells, expected)
        inspection.findings = [*structure, *([order] if order else []), *errors, *check_problems]
    except (TypeError, KeyError, AttributeError, IndexError, ValueError, OverflowError) as error:
        inspection.state = "damaged"
        message = f"malformed notebook content ({type(error).__name__}: {error})"
        inspection.findings = [Finding("damaged", name, message, "save it again from Jupyter")]
    return inspection


def inspect_file(path: Path, expected: dict | None, max_bytes: int) -> NotebookInspection:
    """Read (size-guarded) and inspect one notebook file; a missing file is ``damaged``."""
    if not path.is_file():
        fix = f"save {path.name} next to the other notebooks"
        finding = Finding("damaged", path.stem, f"{path.name} is missing", fix)
        return NotebookInspection(path.stem, state="missing", findings=[finding])
    notebook, problem = read_notebook_json(path, max_bytes)
    if problem is not None:
        return NotebookInspection(path.stem, state="damaged", findings=[problem])
    return inspect_notebook(path.stem, notebook, expected)


def is_number(value: Any) -> bool:
    """True for a finite int or float (not a bool), as JSON from students may hold anything."""
    return finite_number(value)
