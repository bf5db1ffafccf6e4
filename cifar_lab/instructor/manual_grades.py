"""Written answers graded by hand: ``manual.csv`` out, a person's points and comments back in.

The written answers are the points table's ``written`` rows (nbgrader ``grade: true,
solution: true`` markdown cells; 05's ``answer_*`` cells). Autograding gives each 0
out of its points (:mod:`~cifar_lab.instructor.scoring`). Then:

1. ``grade`` writes ``manual.csv`` beside the report, one row per student and written
   answer: ``student, grade_id, question, answer, max_points, points, comment``. The
   question is the course notebook's own prompt (the answer cell's text before its
   solution), never the student's copy; the answer is the student's cell without the
   prompt, cut to :data:`MAX_ANSWER_CHARS`. ``points`` and ``comment`` are empty.
2. A person fills in ``points`` (a number from 0 to ``max_points``; blank: not graded
   yet) and ``comment``, in any spreadsheet.
3. ``grade --manual manual.csv`` reads it before grading anything
   (:func:`read_manual_csv`), and :func:`merge_manual` puts each grade into the
   student's scores: the totals, the gradebook and the feedback page all read those.
   The ``manual.csv`` written then carries the merged points and comments.

Instructors who grade in nbgrader's formgrader instead pass ``--nbgrader-db
gradebook.db`` (:func:`read_nbgrader_db`): the manual scores and comments nbgrader
holds for the same cells (nbgrader's cell names are the ``grade_id``) merge the same way.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import json
import math
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifar_lab.instructor.notebooks import cell_source, notebook_dir
from cifar_lab.instructor.points import ANSWER_PREFIX, BEGIN_SOLUTION, POINTS, locate_cells
from cifar_lab.instructor.scoring import CellScore, NotebookScore
from cifar_lab.instructor.spreadsheet import cell_value

MANUAL_FILE = "manual.csv"
MANUAL_COLUMNS = ("student", "grade_id", "question", "answer", "max_points", "points", "comment")
MAX_ANSWER_CHARS = 5000  # per answer in manual.csv; a notebook can hold megabytes of text
MAX_MANUAL_BYTES = 64 * 1024 * 1024  # a manual.csv larger than this is refused unread
MAX_ERRORS_SHOWN = 20
DEFAULT_ASSIGNMENT = "cifar_lab"  # the assignment name the README's nbgrader course uses
FIX = "correct it in the file and run grade again"
SAVE_AS = "saved as CSV (UTF-8, comma-separated)"


@dataclass(frozen=True)
class ManualGrade:
    """A person's grade of one written answer.

    Attributes:
        points: the points given (None: not graded yet).
        comment: the grader's comment for the student ("" when none).
    """

    points: int | float | None
    comment: str = ""


ManualGrades = dict[str, dict[str, ManualGrade]]  # student -> grade_id -> grade


@dataclass(frozen=True)
class ManualEntry:
    """One row of ``manual.csv``: a student's written answer and its grade so far."""

    student: str
    grade_id: str
    question: str
    answer: str
    max_points: int
    points: int | float | str = ""  # "" until graded by hand
    comment: str = ""

    def record(self) -> dict[str, Any]:
        """The entry as a ``manual.csv`` row (column -> value)."""
        return {name: getattr(self, name) for name in MANUAL_COLUMNS}


def written_cells() -> dict[str, tuple[str, int]]:
    """grade_id -> (notebook file name, points) of every written answer in the points table."""
    return {
        row.grade_id: (notebook, row.points)
        for notebook, rows in POINTS.items()
        for row in rows
        if row.kind == "written"
    }


@functools.lru_cache(maxsize=4)
def _questions(folder: str) -> dict[str, str]:
    found = {}
    for notebook, rows in POINTS.items():
        if not any(row.kind == "written" for row in rows):
            continue
        try:
            cells = json.loads((Path(folder) / notebook).read_text(encoding="utf-8"))["cells"]
            located = locate_cells(cells, notebook)
        except (OSError, ValueError, KeyError, TypeError):
            continue  # the question falls back to the grade_id
        for row in rows:
            if row.kind == "written":
                prompt = cell_source(cells[located[row.grade_id]]).split(BEGIN_SOLUTION)[0]
                found[row.grade_id] = _without_prefix(prompt).strip()
    return found


def question_of(grade_id: str) -> str:
    """The prompt of a written answer, from the course's own notebook (never a student's)."""
    return _questions(str(notebook_dir())).get(grade_id) or f"written answer {grade_id}"


def _without_prefix(text: str) -> str:
    text = text.strip()
    return text[len(ANSWER_PREFIX) :] if text.startswith(ANSWER_PREFIX) else text


def answer_text(source: str, question: str) -> str:
    """The student's answer: the cell without ``**Answer:**`` and the prompt, cut to size."""
    text = _without_prefix(source)
    if question and text.startswith(question):
        text = text[len(question) :]
    text = text.strip()
    if len(text) > MAX_ANSWER_CHARS:
        text = text[:MAX_ANSWER_CHARS] + f" ... (cut at {MAX_ANSWER_CHARS} characters)"
    return text


def merge_manual(
    scores: list[NotebookScore], grades: dict[str, ManualGrade] | None
) -> list[NotebookScore]:
    """Put a person's grades into one student's scores.

    Args:
        scores: the student's notebook scores, as autograding left them.
        grades: grade_id -> grade for this student (None or empty: none given).

    Returns:
        The scores, each graded written answer at its points with status ``"graded"``
        and the comment as its message; an answer not graded yet keeps status
        ``"manual"`` (and its comment, if any).
    """
    if not grades:
        return scores
    merged = []
    for score in scores:
        cells = tuple(_merged(cell, grades.get(cell.grade_id)) for cell in score.cells)
        merged.append(dataclasses.replace(score, cells=cells))
    return merged


def _merged(cell: CellScore, grade: ManualGrade | None) -> CellScore:
    if cell.kind != "written" or grade is None:
        return cell
    if grade.points is None:
        return dataclasses.replace(cell, message=grade.comment)
    return dataclasses.replace(
        cell, points=grade.points, status="graded", reason="graded by hand", message=grade.comment
    )


def manual_entries(student: str, scores: list[NotebookScore]) -> tuple[ManualEntry, ...]:
    """The ``manual.csv`` rows of one student, from their (merged) scores."""
    entries = []
    for score in scores:
        for cell in score.cells:
            if cell.kind != "written":
                continue
            question = question_of(cell.grade_id)
            entries.append(
                ManualEntry(
                    student,
                    cell.grade_id,
                    question,
                    answer_text(cell.answer, question),
                    cell.max_points,
                    cell.points if cell.status == "graded" else "",
                    cell.message,
                )
            )
    return tuple(entries)


def manual_totals(scores: list[NotebookScore]) -> dict[str, int | float]:
    """``manual_score`` (points given by hand) and ``manual_ungraded`` (answers awaiting one)."""
    written = [cell for score in scores for cell in score.cells if cell.kind == "written"]
    return {
        "manual_score": tidy_points(
            sum(cell.points for cell in written if cell.status == "graded")
        ),
        "manual_ungraded": sum(cell.status == "manual" for cell in written),
    }


def tidy_points(value: float) -> int | float:
    """Points as the report shows them: an int when whole (7.0 -> 7), else 2 decimals."""
    return int(value) if float(value).is_integer() else round(value, 2)


def parse_points(text: str, most: int) -> int | float | None:
    """Points typed by a person: None when blank, else a number from 0 to ``most``.

    Raises:
        ValueError: not a number, not finite, or outside 0..``most`` (the message says which).
    """
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"points {text!r} is not a number") from None
    if not math.isfinite(value) or not 0 <= value <= most:
        raise ValueError(f"points {text} is outside 0..{most}")
    return tidy_points(value)


def _grade_of(row: dict[str, str], students: set[str], written: dict[str, tuple]) -> tuple:
    """(student, grade_id, grade) of one ``manual.csv`` row; ValueError naming the problem."""
    student, grade_id = row.get("student", ""), row.get("grade_id", "")
    if student not in students:
        raise ValueError(
            f"student {student!r} has no submission in this batch; "
            "write the name as its <student>.zip or folder is named, or delete the row"
        )
    if grade_id not in written:
        raise ValueError(f"{grade_id!r} is not a written answer; use one of {sorted(written)}")
    points = parse_points(row.get("points", ""), written[grade_id][1])
    return student, grade_id, ManualGrade(points, row.get("comment", "").strip())


def read_manual_csv(path: Path, students: set[str]) -> ManualGrades:
    """Read and check a filled-in ``manual.csv``, before any grading.

    Args:
        path: the CSV (``grade`` wrote it; columns ``student``, ``grade_id``, ``points``
            and, optionally, ``comment``; others are ignored).
        students: the students of this batch.

    Returns:
        student -> grade_id -> :class:`ManualGrade` (points None where left blank).

    Raises:
        ValueError: the file cannot be read, or rows are wrong; the message names
            each wrong row (as a spreadsheet numbers it, the header being row 1) and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--manual {path} is not a file; pass the manual.csv grade wrote")
    if path.stat().st_size > MAX_MANUAL_BYTES:
        raise ValueError(f"--manual {path} is larger than {MAX_MANUAL_BYTES} bytes; not read")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = {"student", "grade_id", "points"} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(
                    f"--manual {path} has no column {sorted(missing)}; pass the manual.csv "
                    f"grade wrote, with points filled in, {SAVE_AS}"
                )
            rows = [{k: cell_value(v or "") for k, v in r.items() if k} for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"--manual {path} cannot be read ({error}); {SAVE_AS}") from error
    written, grades, errors, seen = written_cells(), {}, [], {}
    for number, row in enumerate(rows, start=2):
        if not any(value.strip() for value in row.values()):
            continue  # an empty line
        try:
            student, grade_id, grade = _grade_of(row, students, written)
        except ValueError as error:
            errors.append(f"row {number}: {error}")
            continue
        if (student, grade_id) in seen:
            first = seen[(student, grade_id)]
            errors.append(f"row {number}: {student!r} {grade_id} is graded in row {first} too; "
                          "delete one of the two")  # fmt: skip
            continue
        seen[(student, grade_id)] = number
        grades.setdefault(student, {})[grade_id] = grade
    if errors:
        shown = errors[:MAX_ERRORS_SHOWN]
        more = len(errors) - len(shown)
        lines = "\n  ".join(shown + ([f"... and {more} more"] if more else []))
        raise ValueError(f"--manual {path}: {len(errors)} wrong row(s); {FIX}:\n  {lines}")
    return grades


def filled_rows(path: Path) -> int:
    """How many rows of a ``manual.csv`` hold points or a comment (0: none or unreadable)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return sum(
                bool((row.get("points") or "").strip() or (row.get("comment") or "").strip())
                for row in csv.DictReader(handle)
            )
    except (OSError, UnicodeDecodeError, csv.Error):
        return 0


def protect_filled(target: Path, merged: Path | None, *, resume: bool) -> None:
    """Refuse to start a batch that would overwrite a ``manual.csv`` holding a person's grades.

    Args:
        target: the ``manual.csv`` this batch writes (beside the report).
        merged: the ``--manual`` file this batch merges (None: none); when it is
            ``target``, its grades are carried into the new file.
        resume: ``--resume``: the rows of students kept stay as they are.

    Raises:
        ValueError: ``target`` holds points or comments that would be lost.
    """
    target = Path(target)
    if resume or not target.is_file():
        return
    if merged is not None and Path(merged).resolve() == target.resolve():
        return
    filled = filled_rows(target)
    if filled:
        raise ValueError(
            f"{target} holds {filled} row(s) graded by hand, and grade would write it anew; "
            f"pass --manual {target} to merge them (the new file keeps them), "
            "or move the file away"
        )


def load_grades(
    students: set[str],
    *,
    manual: Path | None = None,
    nbgrader_db: Path | None = None,
    assignment: str = DEFAULT_ASSIGNMENT,
) -> ManualGrades | None:
    """The grades ``grade --manual`` or ``--nbgrader-db`` asks for (None: neither given)."""
    if manual is not None:
        return read_manual_csv(Path(manual), students)
    if nbgrader_db is not None:
        return read_nbgrader_db(Path(nbgrader_db), students, assignment)
    return None


def summary(grades: ManualGrades) -> str:
    """One line: how many written answers hold points, and how many are blank (not graded)."""
    every = [grade for by_cell in grades.values() for grade in by_cell.values()]
    graded = sum(grade.points is not None for grade in every)
    blank = len(every) - graded
    line = f"manual grades: {graded} written answer(s) of {len(grades)} student(s) graded by hand"
    if blank:
        line += f"; {blank} left blank: not graded yet (0 points until graded)"
    return line


def read_nbgrader_db(
    path: Path, students: set[str], assignment: str = DEFAULT_ASSIGNMENT
) -> ManualGrades:
    """The written answers' manual scores and comments in an nbgrader gradebook database.

    The database is copied first and the copy read, so the instructor's file is never
    changed. Students of the batch that the database does not hold get no grades.

    Args:
        path: nbgrader's ``gradebook.db`` (SQLite).
        students: the students of this batch (nbgrader's student ids).
        assignment: the nbgrader assignment holding the course's notebooks.

    Returns:
        student -> grade_id -> :class:`ManualGrade` (points None: no manual score yet).

    Raises:
        ValueError: the file is missing, nbgrader is not installed, the assignment is
            not in it, or a score is outside 0..the cell's points.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--nbgrader-db {path} is not a file; pass nbgrader's gradebook.db")
    try:
        from nbgrader.api import Gradebook, MissingEntry
    except ImportError as error:
        raise ValueError(
            "--nbgrader-db needs nbgrader: pip install 'cifar_lab[nbgrader]'"
        ) from error
    with tempfile.TemporaryDirectory(prefix="cifar_lab_nbgrader_") as folder:
        copy = Path(folder) / "gradebook.db"
        shutil.copyfile(path, copy)
        _check_nbgrader_tables(copy, path)
        with Gradebook(f"sqlite:///{copy}") as gradebook:
            try:
                gradebook.find_assignment(assignment)
            except MissingEntry:
                names = sorted(a.name for a in gradebook.assignments)
                raise ValueError(
                    f"--nbgrader-db {path} has no assignment {assignment!r}; "
                    f"pass --nbgrader-assignment, one of {names}"
                ) from None
            known = {student.id for student in gradebook.students}
            return {
                student: _nbgrader_grades(gradebook, MissingEntry, assignment, student)
                for student in sorted(students & known)
            }


def _check_nbgrader_tables(copy: Path, path: Path) -> None:
    """ValueError unless ``copy`` is an SQLite database with nbgrader's tables."""
    try:
        with contextlib.closing(sqlite3.connect(copy)) as database:
            rows = database.execute("SELECT name FROM sqlite_master WHERE type='table'")
            tables = {name for (name,) in rows}
    except sqlite3.DatabaseError as error:
        raise ValueError(f"--nbgrader-db {path} is not an SQLite database: {error}") from None
    if not {"assignment", "grade", "comment", "student"} <= tables:
        raise ValueError(f"--nbgrader-db {path} is not an nbgrader gradebook (no grade tables)")


def _nbgrader_grades(gradebook, missing, assignment: str, student: str) -> dict[str, ManualGrade]:
    found = {}
    for grade_id, (notebook, most) in written_cells().items():
        stem = notebook.removesuffix(".ipynb")
        try:
            grade = gradebook.find_grade(grade_id, stem, assignment, student)
        except missing:
            continue  # no submission of that notebook, or the cell is not in nbgrader
        try:
            comment = gradebook.find_comment(grade_id, stem, assignment, student).manual_comment
        except missing:
            comment = None
        score = grade.manual_score
        try:
            points = None if score is None else parse_points(str(score), most)
        except ValueError as error:
            raise ValueError(
                f"--nbgrader-db: {student!r} {stem} {grade_id}: {error}; {FIX}"
            ) from None
        found[grade_id] = ManualGrade(points, (comment or "").strip())
    return found
