"""The grading loop: one row per submission, whatever happens, written as soon as it is final.

Each submission is graded inside a :func:`~cifar_lab.instructor.limits.submission_budget`
(reading, checking and scoring within ``submission_seconds``). Anything that
goes wrong becomes that student's row with a reason, never the end of the
batch: a time limit, a ``RecursionError`` or ``MemoryError`` from a hostile
file, or a grader bug. Only :class:`~cifar_lab.instructor.claims.GradingSetupError`
(the grader cannot work at all, e.g. no test set) stops the batch. With a
:class:`~cifar_lab.instructor.report_file.ReportFile`, each row is on disk
before the next submission starts, and students already in it are skipped
(``grade --resume``).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cifar_lab.instructor.claims import GradingSetupError
from cifar_lab.instructor.limits import Limits, SubmissionTimeoutError, submission_budget
from cifar_lab.instructor.report_file import ReportFile

MAX_PROBLEMS = 50  # per row; a notebook of 300k failing cells must not make a 30 MB cell


def find_submissions(folder: Path) -> tuple[list[tuple[str, Path]], list[Path]]:
    """List (student, path) for each ``*.zip`` and sub-folder; also the ignored entries."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"submissions folder {folder} does not exist; pass a folder of zips")
    found, ignored = [], []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir() or path.suffix.lower() == ".zip":
            found.append((path.stem if path.is_file() else path.name, path))
        else:
            ignored.append(path)
    return found, ignored


def error_row(student: str, status: str, problem: str) -> dict[str, Any]:
    """A row with only a status and one problem (the other columns stay blank)."""
    return {"student": student, "status": status, "problems": [problem]}


def _grader_error(error: BaseException) -> str:
    """Name a grader exception and where it happened (the innermost cifar_lab frame)."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "cifar_lab" in f.filename]
    where = f" in {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"grader error{where}: {type(error).__name__}: {str(error)[:300]}"


def grade_safely(
    student: str, path: Path, grade_one: Callable[[str, Path], dict], limits: Limits
) -> tuple[dict[str, Any], list[int]]:
    """Grade one submission within its budget; any failure becomes its row.

    Returns:
        (the row, the peak resident bytes of each child process it started).
    """
    peaks: list[int] = []
    try:
        with submission_budget(limits) as budget:
            peaks = budget.child_peaks
            row = grade_one(student, path)
    except GradingSetupError:
        raise
    except SubmissionTimeoutError as error:
        problem = f"submission: not graded: {error} (--submission-seconds)"
        row = error_row(student, "flagged", problem)
    except RecursionError:
        row = error_row(student, "damaged", "submission: a file nests too deeply to be read")
    except MemoryError:
        row = error_row(student, "damaged", "submission: the grader ran out of memory reading it")
    except Exception as error:  # a grader bug must not sink the batch; it is in the row
        row = error_row(student, "damaged", _grader_error(error))
    problems = list(row.get("problems", []))
    if len(problems) > MAX_PROBLEMS:
        hidden = len(problems) - MAX_PROBLEMS
        problems = [*problems[:MAX_PROBLEMS], f"... and {hidden} more problems"]
    return {**row, "problems": problems}, peaks


def run_batch(
    submissions: list[tuple[str, Path]],
    grade_one: Callable[[str, Path], dict],
    limits: Limits,
    *,
    report: ReportFile | None = None,
    verbose: bool = True,
) -> list[dict[str, Any]]:
    """Grade each submission in turn; write each row as soon as it is final.

    Args:
        submissions: (student, path) pairs, in report order.
        grade_one: returns the row of one submission.
        limits: the per-submission limits.
        report: where rows go as they finish (None: only returned); students
            already in it are skipped.
        verbose: print one line per student.

    Returns:
        Every row: those already in ``report`` first, then the new ones.
    """
    done = report.students if report is not None else set()
    rows = list(report.rows) if report is not None else []
    for student, path in submissions:
        if student in done:
            if verbose:
                print(f"skipped {student}: already in the report (--resume)", flush=True)
            continue
        row, peaks = grade_safely(student, path, grade_one, limits)
        if report is not None:
            report.add(row)
        rows.append(row)
        if verbose:
            child = f" (scoring peak {max(peaks) / 2**20:.0f} MB)" if peaks else ""
            print(f"graded {student}: {row['status']}{child}", flush=True)
    return rows
