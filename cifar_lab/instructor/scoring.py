"""Points per submission: the library's points table, applied to what the grader can trust.

The points come from :mod:`cifar_lab.instructor.points`, never from the
notebook's own ``metadata.nbgrader`` (a student can edit it). Each graded cell
is found by its released cell id (from the release manifest, whose ``grade_id``
says which released cell is which) and cross-checked against the
``grade_id`` in the submission's metadata: a graded cell that is gone, that
appears twice (same cell id, or a copy carrying the same ``grade_id``), or
whose metadata names another ``grade_id`` scores 0, with a finding that names it.

A **check** earns its points only when all of these hold:

* its source is the released one (not edited), and the notebook holds no code
  that patches the checks or the library (:mod:`~cifar_lab.instructor.inspection`);
* the exercise it checks no longer holds the release's stub;
* it ran, in order (execution counts 1, 2, ... up to it), without an error;
* it printed at least one check result and every one of them passes as
  recomputed by :func:`~cifar_lab.instructor.inspection.check_verdict`;
* for ``final_training_check``: Part V's saved model confirms the claims.

When the submission was **re-executed** (``grade``'s default), the three conditions on
the saved outputs (ran in order, no error, passing results) are replaced by one: the
check cell ran to its end in the re-execution (the kernel's reply, as the runner
recorded it per cell). The saved outputs decide nothing but a finding: a check that
passed as saved and fails when re-executed, or is not reached because a cell before it
now fails, is flagged "the saved output was not produced by this code". A run cut short
by a limit or a dead kernel scores 0 for the checks it did not reach, without that flag
(the re-run's own finding says what stopped it).

When the submission was re-executed (``grade``'s default), a check that has a
probe (:data:`cifar_lab.instructor.verdicts.PROBED`) earns its points from the
probe's verdict alone: the grader called the student's function on inputs of
its own and compared the result with its own reference, outside the student's
process. The list above is then only a second, weaker signal: a check that
passed in the notebook but failed its probe is flagged. A probe that did not
run (the re-run stopped, the kernel died) is a failed probe. The static tamper
flags stay, as findings for a person to read.

A **written** answer is ``manual``: 0 points until a person grades it, out of
its points (:mod:`~cifar_lab.instructor.report` merges those grades).
Solution cells are worth 0 (their check carries the points).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifar_lab.instructor.findings import Finding, GradingSetupError
from cifar_lab.instructor.inspection import (
    answer_is_present,
    check_verdict,
    error_texts,
    first_out_of_order,
    read_notebook_json,
    tamper_findings,
)
from cifar_lab.instructor.notebooks import cell_source, notebook_dir
from cifar_lab.instructor.points import (
    POINTS,
    GradedCell,
    cells_by_grade_id,
    graded_cells,
    locate_cells,
)
from cifar_lab.instructor.release import source_digest
from cifar_lab.instructor.verdicts import PROBED
from cifar_lab.results import CHECK_MIME

MALFORMED = (TypeError, KeyError, AttributeError, IndexError, ValueError, OverflowError)

PART5_CHECKS = ("final_training_check",)  # worth points only when the saved model verifies
RELEASE_FIX = "start again from the release notebook and copy your work into it"
MAX_ANSWER_SOURCE = 20_000  # characters of a written answer kept for manual grading
NOT_PRODUCED_FIX = "restart the kernel, run every cell in order, and save the notebook"


@dataclass(frozen=True)
class CellScore:
    """What one graded cell earned.

    Attributes:
        grade_id: its row in the points table.
        kind: ``"solution"``, ``"check"`` or ``"written"``.
        points: points earned (0 for a written answer until graded by hand).
        max_points: its points in the table.
        status: ``"passed"``, ``"failed"``, ``"manual"`` (awaiting a person),
            ``"graded"`` (by a person), ``"unanswered"``, ``"done"``, ``"stub"`` or ``"missing"``.
        reason: why a check did not earn its points ("" when it did).
        message: the failing check's error message and hint, as the notebook showed it;
            for a written answer, the comment of the person who graded it.
        answer: a written answer's cell source as handed in (cut to ``MAX_ANSWER_SOURCE``).
    """

    grade_id: str
    kind: str
    points: int | float
    max_points: int
    status: str
    reason: str = ""
    message: str = ""
    answer: str = ""


@dataclass(frozen=True)
class NotebookScore:
    """The graded cells of one notebook, and the problems scoring found."""

    name: str
    cells: tuple[CellScore, ...]
    findings: tuple[Finding, ...] = ()

    @property
    def points(self) -> int | float:
        return sum(cell.points for cell in self.cells)

    @property
    def max_points(self) -> int:
        return sum(cell.max_points for cell in self.cells)

    @property
    def manual_points(self) -> int:
        """Points awaiting a person: the written answers."""
        return sum(cell.max_points for cell in self.cells if cell.kind == "written")


@dataclass(frozen=True)
class NotebookCells:
    """What scoring one notebook reads: its cells, found by id and by claimed ``grade_id``.

    Attributes:
        name: notebook stem.
        cells: the submission's cells (a non-object cell is ``{}``).
        by_id: cell id -> indices of the cells carrying it (None: cells without an id).
        by_grade: claimed ``metadata.nbgrader.grade_id`` -> indices of the cells carrying it.
        order_break: index of the first code cell that broke the execution order
            (``len(cells)`` when none did).
        tampered: the notebook holds code that patches the checks or the library.
        part5_verified: the Part V claim check ("yes", "no", "not-checked").
        executed: the re-execution's outcome per code cell (index as a string ->
            ``"ok"`` or ``"error"``; a cell that never ran is absent), or None when the
            notebook was not re-executed (the saved outputs are scored).
        probes: grade_id -> the grader's probe verdict from the re-run (see
            :mod:`cifar_lab.instructor.verdicts`); None when it was not re-executed.
    """

    name: str
    cells: list[dict]
    by_id: dict[str | None, list[int]]
    by_grade: dict[str, list[int]]
    order_break: int
    tampered: bool
    part5_verified: str
    executed: dict[str, str] | None = None
    probes: dict[str, Any] | None = None

    @property
    def ids_missing(self) -> bool:
        """Some cell has no id: saved by an old Jupyter."""
        return None in self.by_id

    @classmethod
    def read(
        cls,
        name: str,
        cells: list[dict],
        *,
        tampered: bool,
        part5_verified: str,
        executed: dict[str, str] | None = None,
        probes: dict[str, Any] | None = None,
    ) -> NotebookCells:
        """Index ``cells`` by id and by claimed grade_id; find the order break."""
        by_id: dict[str | None, list[int]] = {}
        by_grade: dict[str, list[int]] = {}
        for index, cell in enumerate(cells):
            cell_id = cell.get("id")
            by_id.setdefault(cell_id if isinstance(cell_id, str) else None, []).append(index)
            if isinstance(grade_id := grade_id_of(cell), str):
                by_grade.setdefault(grade_id, []).append(index)
        broken = first_out_of_order(cells)
        order_break = len(cells) if broken is None else broken[0]
        return cls(
            name, cells, by_id, by_grade, order_break, tampered, part5_verified, executed, probes
        )


def _locate(
    row: GradedCell, entry: dict, notebook: NotebookCells
) -> tuple[int | None, Finding | None]:
    """The submission's cell for one graded row, or None and a finding naming it."""
    name, grade_id = notebook.name, row.grade_id
    by_id = notebook.by_id.get(entry["id"], [])
    by_grade = notebook.by_grade.get(grade_id, [])
    label = f"graded cell '{grade_id}' (cell id {entry['id']})"
    if not by_id and notebook.ids_missing and len(by_grade) == 1:
        return by_grade[0], None  # an old Jupyter dropped the ids: the grade_id has to do
    if not by_id and notebook.ids_missing and not by_grade:
        message = f"{label} cannot be found: its cell has neither that id nor that grade_id"
        return None, Finding("flagged", name, message, RELEASE_FIX)
    if not by_id:
        elsewhere = f" (cell {by_grade[0]} has its grade_id, not its id)" if by_grade else ""
        message = f"{label} was deleted{elsewhere}; it scores 0"
        return None, Finding("damaged", name, message, RELEASE_FIX)
    copies = sorted({*by_id, *by_grade})
    if len(copies) > 1:
        message = f"{label} appears {len(copies)} times (cells {copies}); it scores 0"
        return None, Finding("damaged", name, message, "delete the copies you made of it")
    claimed = grade_id_of(notebook.cells[by_id[0]])
    if claimed is not None and claimed != grade_id:
        message = f"{label} carries grade_id {claimed!r} in its metadata; it scores 0"
        return None, Finding("flagged", name, message, RELEASE_FIX)
    return by_id[0], None


def _check_reason(
    index: int, entry: dict, notebook: NotebookCells, stub: str
) -> tuple[str, list[str]]:
    """Why a located check cell earns nothing ("" when it earns its points).

    ``stub`` is the exercise before this check while its solution cell is still the
    release's stub ("" otherwise).
    """
    cell = notebook.cells[index]
    static = _code_reason(cell, entry, notebook, stub)
    if static:
        return static, []
    if cell.get("execution_count") is None:
        return "the check cell did not run", []
    if index >= notebook.order_break:
        return "the notebook did not run in order up to this cell", []
    if error_texts(cell):
        return "the check failed", []
    found = verdicts(cell)
    if not found:
        return "the check cell printed no check result", []
    forged = [reason for verdict, reason in found if verdict == "forged"]
    if forged:
        return f"a check output was edited ({forged[0]})", forged
    failed = [reason for verdict, reason in found if verdict == "failed"]
    return (failed[0] if failed else ""), []


def _code_reason(cell: dict, entry: dict, notebook: NotebookCells, stub: str) -> str:
    """Why a check earns nothing whatever its outputs: its code ("" when none)."""
    if notebook.tampered:
        return "the notebook holds code that patches the checks or the library"
    if source_digest(cell_source(cell)) != entry["sha256"]:
        return "the check cell was edited"
    if stub:
        return f"the exercise '{stub}' still holds the release's stub"
    return ""


def _executed_reason(
    index: int, entry: dict, notebook: NotebookCells, stub: str
) -> tuple[str, bool]:
    """Why a check earns nothing in the re-execution, and whether that run refutes a saved pass.

    Returns:
        (the reason, "" when the check ran to its end; True when the check failed, or
        the run stopped at a failing cell before it: the code as handed in cannot
        produce a pass. A run cut short by a limit or a dead kernel refutes nothing.)
    """
    static = _code_reason(notebook.cells[index], entry, notebook, stub)
    if static:
        return static, False
    outcomes = notebook.executed or {}
    outcome = outcomes.get(str(index))
    if outcome == "ok":
        return "", False
    if outcome == "error":
        return "the check failed when the grader re-executed the notebook", True
    last = max((int(position) for position in outcomes), default=None)
    if last is not None and last < index and outcomes[str(last)] == "error":
        return f"the re-executed notebook stopped at a failing cell ({last}) before it", True
    return "the check cell did not run when the grader re-executed the notebook", False


def _score_check(
    row: GradedCell, index: int, entry: dict, notebook: NotebookCells, stub: str
) -> tuple[CellScore, list[Finding]]:
    reason, forged = _check_reason(index, entry, notebook, stub)
    refuted = False  # passed as saved, and the re-execution shows this code cannot
    if notebook.executed is not None:  # the re-execution decides; the saved outputs do not
        saved_passed = not reason
        reason, refutes = _executed_reason(index, entry, notebook, stub)
        refuted = saved_passed and refutes
    if not reason and row.grade_id in PART5_CHECKS and notebook.part5_verified != "yes":
        reason = "Part V's saved model does not confirm the claimed accuracy"
    name, findings = notebook.name, []
    label = f"graded check '{row.grade_id}' (cell {index})"
    if forged:
        findings.append(Finding("flagged", name, f"{label}: {forged[0]}"))
    if reason == "the check cell was edited" and not entry.get("has_check"):
        findings.append(Finding("flagged", name, f"{label} was edited; it scores 0", RELEASE_FIX))
    if refuted:
        message = f"{label}: the saved output was not produced by this code ({reason})"
        findings.append(Finding("flagged", name, message, NOT_PRODUCED_FIX))
    message = next(iter(error_texts(notebook.cells[index])), "") if reason else ""
    failure = None
    if notebook.probes is not None and row.grade_id in PROBED:
        failure = probe_failure(notebook.probes.get(row.grade_id))
    if failure is not None:  # the probe decides
        if failure and not reason:
            message = f"{label} passed in the notebook but failed the grader's test: {failure}"
            findings.append(Finding("flagged", name, message))
        reason, message = failure, ""
    status = "failed" if reason else "passed"
    points = 0 if reason else row.points
    return CellScore(row.grade_id, "check", points, row.points, status, reason, message), findings


def score_notebook(
    name: str,
    notebook: dict,
    expected: dict,
    *,
    part5_verified: str = "not-checked",
    executed: dict[str, str] | None = None,
    probes: dict[str, Any] | None = None,
) -> NotebookScore:
    """Score one notebook (a parsed, inspected ``.ipynb``) against the points table.

    Args:
        name: notebook stem, e.g. ``"02_barebones_tensorflow"``.
        notebook: the submission's notebook as JSON.
        expected: its release-manifest entry.
        part5_verified: the Part V claim check ("yes", "no", "not-checked").
        executed: the re-execution's outcome per code cell (``NotebookCells.executed``),
            or None to score the saved outputs.
        probes: grade_id -> probe verdict from the re-run; None: not re-executed.

    Returns:
        Its :class:`NotebookScore`.
    """
    cells = [cell if isinstance(cell, dict) else {} for cell in notebook["cells"]]
    released = {entry["id"]: entry for entry in expected["cells"]}
    findings = tamper_findings(name, cells, released)
    notebook_cells = NotebookCells.read(
        name,
        cells,
        tampered=bool(findings),
        part5_verified=part5_verified,
        executed=executed,
        probes=probes,
    )
    entries, scores = released_cells(name, expected), []
    stub = ""  # the current exercise, while its solution cell is the release's stub
    for row in graded_cells(name):
        index, problem = _locate(row, entries[row.grade_id], notebook_cells)
        findings += [problem] if problem else []
        if row.kind == "solution":
            digest = None if index is None else source_digest(cell_source(cells[index]))
            stub = row.grade_id if digest == entries[row.grade_id]["sha256"] else ""
            scores.append(CellScore(row.grade_id, "solution", 0, 0, "stub" if stub else "done"))
        elif index is None:
            reason = "the cell is missing or duplicated"
            scores.append(CellScore(row.grade_id, row.kind, 0, row.points, "missing", reason))
        elif row.kind == "written":
            status = "manual" if answer_is_present(cells[index]) else "unanswered"
            answer = cell_source(cells[index])[:MAX_ANSWER_SOURCE]
            scores.append(CellScore(row.grade_id, "written", 0, row.points, status, answer=answer))
        else:
            score, problems = _score_check(row, index, entries[row.grade_id], notebook_cells, stub)
            scores.append(score)
            findings += problems
    return NotebookScore(name, tuple(scores), tuple(findings))


def score_submission(
    root: Path,
    inspections: list,
    manifest: dict | None,
    max_bytes: int,
    part5_verified: str,
    rerun_records: dict[str, dict] | None = None,
) -> list[NotebookScore]:
    """Score every graded notebook of a submission that could be read.

    Args:
        root: the folder holding the notebooks.
        inspections: their :class:`~cifar_lab.instructor.inspection.NotebookInspection`.
        manifest: the release manifest (None: nothing can be scored).
        max_bytes: the notebook size limit (as inspection applied it).
        part5_verified: the Part V claim check ("yes", "no", "not-checked").
        rerun_records: notebook stem -> the re-run's record (its ``"cells"`` give each
            code cell's outcome, its ``"verdicts"`` decide the probed checks; a notebook
            that did not run is absent), or None to score the saved outputs.

    Returns:
        One :class:`NotebookScore` per graded notebook; an unreadable one scores 0.
    """
    if manifest is None:
        return []
    scores = []
    for inspection in inspections:
        name = inspection.name
        if f"{name}.ipynb" not in POINTS or name not in manifest.get("notebooks", {}):
            continue
        if inspection.state != "ok":
            scores.append(_zero(name, f"the notebook is {inspection.state}"))
            continue
        notebook, problem = read_notebook_json(root / f"{name}.ipynb", max_bytes)
        try:
            if problem is not None:  # it read once; a change since is a problem of its own
                raise ValueError(problem.message)
            expected = manifest["notebooks"][name]
            record = None if rerun_records is None else rerun_records.get(name) or {}
            outcomes = None if record is None else dict(record.get("cells") or {})
            probes = None if record is None else probes_of_record(record)
            scores.append(
                score_notebook(
                    name,
                    notebook,
                    expected,
                    part5_verified=part5_verified,
                    executed=outcomes,
                    probes=probes,
                )
            )
        except MALFORMED as error:
            message = f"cannot score the notebook ({type(error).__name__}: {str(error)[:200]})"
            scores.append(_zero(name, message, Finding("damaged", name, message)))
    return scores


def probes_of_record(record: Any) -> dict[str, Any]:
    """grade_id -> probe verdict from one notebook's re-run record ({} when it has none)."""
    found = record.get("verdicts") if isinstance(record, dict) else None
    return found if isinstance(found, dict) else {}


def probe_failure(verdict: Any) -> str | None:
    """Why a probe verdict does not earn the check's points ("" when it passed).

    None: the grader skipped the probe (it could not load its own images); the
    check keeps the verdict of its re-run cell.
    """
    if isinstance(verdict, dict) and verdict.get("skipped") is True:
        return None
    if not isinstance(verdict, dict):
        return "the grader's test of your function did not run (the re-run stopped before it)"
    if verdict.get("passed") is True:
        return ""
    message = verdict.get("message")
    detail = message if isinstance(message, str) and message else "no reason given"
    return f"the grader's test of your function failed: {detail}"


def _zero(name: str, reason: str, *findings: Finding) -> NotebookScore:
    """A notebook that could not be scored: every graded cell at 0, out of its points."""
    rows = graded_cells(name)
    cells = [CellScore(r.grade_id, r.kind, 0, r.points, "missing", reason) for r in rows]
    return NotebookScore(name, tuple(cells), findings)


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


def verdicts(cell: dict) -> list[tuple[str, str]]:
    found = []
    for output in cell.get("outputs") or []:
        data = output.get("data") if isinstance(output, dict) else None
        if isinstance(data, dict) and CHECK_MIME in data:
            found.append(check_verdict(data[CHECK_MIME]))
    return found
