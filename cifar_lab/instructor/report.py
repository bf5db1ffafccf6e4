"""What grading writes: :class:`ReportRow`, the one row type, and every file written from it.

**The row** (:class:`ReportRow`, with one :class:`NotebookColumns` per notebook)
declares every column once, in report order, with its type and its meaning
(:func:`about`); a column may also name its gradebook column and its label on
the feedback page. ``report.csv`` and ``report.json`` (:func:`report_columns`,
:meth:`ReportRow.record`), the gradebook (:func:`gradebook_rows`) and the
feedback page (:func:`write_feedback`) all read that declaration,
so a column added there appears in all four.

**On disk** (:class:`ReportFile`): written row by row, so that a crash or a kill loses no
finished row. Each row is appended to ``report.csv`` (flushed and ``fsync``-ed) as soon as
it is final, then ``report.json`` (every row so far) is rewritten atomically: a
temporary file, ``fsync``, ``os.replace``. ``report.json`` is therefore always
complete, valid JSON, and it is what ``grade --resume`` reads: students already
in it are skipped, and ``report.csv`` is rewritten from it (dropping a CSV row
whose JSON write a kill interrupted; that student is graded again).

**The gradebook** (:func:`write_gradebook`): one row per student (student, total, max,
status), ready for an LMS upload. ``grade --gradebook gradebook.csv`` writes it after
the batch, from the report on disk, so students kept from an earlier run
(``--resume``) are in it too. ``total`` is the autograded points plus the written
answers' points given by hand (``grade --manual``; an answer not graded yet counts 0);
``max`` is the course's maximum; a submission that could not be scored at all has total 0.

**Written answers** (``manual.csv``): each row carries its student's written answers
(not a column); :class:`ReportFile` appends them to ``manual.csv`` beside the report as
the row is added.

**Every CSV cell** goes through :func:`spreadsheet_cell` (text a spreadsheet would run
as a formula is quoted), and each student's files are named by :func:`student_id`,
unique per name (``feedback/<student_id>.html``).

The three parts after the gradebook, in order:

**The feedback page** (``feedback/<student_id>.html``, :func:`write_feedback`): one HTML
page per student, written from the row. HTML, like nbgrader's ``generate_feedback``, so
it opens in any browser and uploads to an LMS as it is; every text in it is escaped
(check messages and problems come from the student's own notebook). It lists, per
notebook, each graded check with the points earned out of its points and, when it earned
nothing, why, with the failing check's message and hint as the notebook printed them;
the written answers, with the points and comment a person gave (``grade --manual``) or
as awaiting a person; the problems found; and Part V's claimed accuracies next to the
test accuracy the grader recomputed from the saved model. It holds no cell source, so no
solution text, and nothing the student could not see in their own notebook apart from
the grader's verdicts. Problems appear in the grader's words only
(:meth:`~cifar_lab.instructor.findings.Finding.for_student`): nothing a student's code
printed while the grader re-ran it (an error line, a log) reaches this page. Which
report columns it shows, and their labels, the row type declares (:class:`ReportRow`).

The file is named by the row's ``student_id`` (:func:`student_id`), unique per student
name, so "dup name" and "dup_name", or "Ada" and "ada" on a case-insensitive file
system, get pages of their own.

**Written answers graded by hand**: ``manual.csv`` out, a person's points and comments
back in. The written answers are the points table's ``written`` rows (nbgrader ``grade:
true, solution: true`` markdown cells; 05's ``answer_*`` cells). Autograding gives each
0 out of its points (:mod:`~cifar_lab.instructor.scoring`). Then:

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

**CSV cells a spreadsheet shows as text**: every CSV the grader writes goes through
:func:`spreadsheet_cell`. Student names, answers and problems are student-controlled
text. A cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return)
is run as a formula by Excel, LibreOffice and Google Sheets when the CSV is opened (CSV
injection). As OWASP advises, such a text cell is written with a single quote in front
(``'=1+2``), which spreadsheets show as text. A text cell that already starts with a
quote gets one more, so that :func:`cell_value` undoes :func:`spreadsheet_cell` exactly
and reading a CSV back gives the original text.

Only text is escaped: an ``int`` or ``float`` cell (a negative total, say) is
written as the number it is, since a spreadsheet reads a number as a number,
never as a formula.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import hashlib
import html
import io
import json
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifar_lab.instructor.findings import MEGABYTE
from cifar_lab.instructor.inspection import NotebookInspection, finite_number
from cifar_lab.instructor.notebooks import cell_source, notebook_dir
from cifar_lab.instructor.points import (
    ANSWER_PREFIX,
    BEGIN_SOLUTION,
    COURSE_MAX_POINTS,
    POINTS,
    locate_cells,
)
from cifar_lab.instructor.scoring import CellScore, NotebookScore

Blank = str  # "" where a value is unknown or does not apply
RE_EXECUTED, NOT_EXECUTED = "re-executed", "not re-executed"  # the ``executed`` column


def about(
    meaning: str,
    *,
    gradebook: tuple[int, str] | None = None,
    if_blank: int | None = None,
    feedback: str | None = None,
    column: bool = True,
    csv: bool = True,
) -> dict[str, Any]:
    """The metadata of one report column: its meaning, and where else it goes.

    Args:
        meaning: what the column holds, in one sentence.
        gradebook: its (position, name) in the gradebook (None: not in the gradebook).
        if_blank: the gradebook's integer for a blank value (None: copied as it is).
        feedback: its label on the student's feedback page (None: not shown there).
        column: False for a field the row carries that is no report column.
        csv: False for a column of ``report.json`` only (a list no spreadsheet cell holds).

    Returns:
        The ``metadata`` of its dataclass field.
    """
    return {
        "meaning": meaning,
        "gradebook": gradebook,
        "if_blank": if_blank,
        "feedback": feedback,
        "column": column,
        "csv": csv,
    }


STUDENT_ID_HASH = 10  # hex digits of sha256(name): 40 bits, no collision in any class


def student_id(student: str) -> str:
    """A file-safe id, unique per student name: the name's safe characters and a hash.

    Two names that differ only in characters a file name cannot hold ("dup name",
    "dup_name") or only in case ("Ada", "ada", on a case-insensitive file system)
    get different ids, since the hash is of the exact name.

    Args:
        student: the row's student name (any text).

    Returns:
        ``<safe part>-<10 hex digits>``: ASCII letters, digits, ``.``, ``_`` and ``-``.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", student).lstrip(".")[:60] or "student"
    digest = hashlib.sha256(student.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{safe}-{digest[:STUDENT_ID_HASH]}"


@dataclass(frozen=True)
class NotebookColumns:
    """The ``NN_*`` columns of one notebook (``NN``: its two-digit number)."""

    name: str = field(metadata=about("the notebook's stem; its first two characters prefix"))
    executed_in_order: str = field(
        default="", metadata=about('"yes", "no", or the notebook\'s state: "missing", "damaged"')
    )
    errors: int | Blank = field(default="", metadata=about("cells with an error output"))
    checks_passed: int | Blank = field(
        default="", metadata=about("check outputs that pass, as recomputed")
    )
    checks_failed: int | Blank = field(
        default="", metadata=about("check outputs that fail, or were forged")
    )
    edited_cells: int | Blank = field(
        default="", metadata=about("given (non-solution) cells edited since the release")
    )
    points: int | Blank = field(
        default="", metadata=about("autograded points earned, from the points table")
    )
    max_points: int | Blank = field(
        default="", metadata=about("its points, written answers (graded by hand) included")
    )

    @classmethod
    def from_inspection(
        cls, inspection: NotebookInspection, score: NotebookScore | None
    ) -> NotebookColumns:
        """The columns of one inspected (and, when ``score`` is given, scored) notebook."""
        points = {} if score is None else {"points": score.points, "max_points": score.max_points}
        if inspection.state != "ok":
            return cls(inspection.name, inspection.state, **points)
        return cls(
            inspection.name,
            "yes" if inspection.executed_in_order else "no",
            inspection.errors,
            inspection.checks_passed,
            inspection.checks_failed,
            len(inspection.edited_cells),
            **points,
        )


@dataclass(frozen=True)
class ReportRow:
    """One student's row of the report; its fields are the columns, in report order."""

    student: str = field(
        default="",
        metadata=about("the submission: <student>.zip or <student>/", gradebook=(0, "student")),
    )
    status: str = field(
        default="",
        metadata=about(
            'the worst finding: "damaged", "flagged", "incomplete"; else "ok"',
            gradebook=(3, "status"),
        ),
    )
    total_points: float | Blank = field(
        default="",
        metadata=about(
            "points earned: autograded, plus written answers graded by hand (--manual)",
            gradebook=(1, "total"),
            if_blank=0,
        ),
    )
    max_points: int | Blank = field(
        default="",
        metadata=about(
            "the course's maximum, written answers included",
            gradebook=(2, "max"),
            if_blank=COURSE_MAX_POINTS,
        ),
    )
    manual_points: int | Blank = field(
        default="", metadata=about("the written answers' share of max_points, graded by hand")
    )
    manual_score: float | Blank = field(
        default="", metadata=about("points given by hand to the written answers (--manual)")
    )
    manual_ungraded: int | Blank = field(
        default="", metadata=about("answered written answers not graded by hand yet")
    )
    problems: tuple[str, ...] = field(
        default=(), metadata=about("every finding, one sentence each")
    )
    notebooks: tuple[NotebookColumns, ...] = field(
        default=(), metadata=about("the NN_* columns of each notebook, in course order")
    )
    profile: str = field(
        default="",
        metadata=about(
            'the profile the saved notebooks and part5/ ran in: "full", "quick", "mixed", '
            'or "unknown" (none recorded, e.g. saved by an older release)',
            feedback="profile your work ran in",
        ),
    )
    part5_claimed_val_accuracy: float | Blank = field(
        default="",
        metadata=about(
            "validation accuracy claimed in 05's output or part5/results.json",
            feedback="claimed validation accuracy",
        ),
    )
    part5_claimed_test_accuracy: float | Blank = field(
        default="",
        metadata=about(
            "test accuracy claimed in 05's output or part5/results.json",
            feedback="claimed test accuracy",
        ),
    )
    part5_model_test_accuracy: float | Blank = field(
        default="",
        metadata=about(
            "test accuracy of part5/best_model.keras, recomputed by the grader",
            feedback="test accuracy of your saved model, recomputed by the grader",
        ),
    )
    part5_claim_verified: str = field(
        default="",
        metadata=about(
            '"yes", "no" or "not-checked": whether the saved model confirms the claims',
            feedback="claims confirmed by the saved model",
        ),
    )
    part5_split: str = field(
        default="",
        metadata=about(
            "the test images part5_model_test_accuracy was measured on: their count and "
            "fingerprint (split_record.split_fingerprint); accuracies compare on one split only"
        ),
    )
    part5_parameters: int | Blank = field(
        default="",
        metadata=about("the saved model's parameter count, as part5/results.json records it"),
    )
    answers_present: str = field(
        default="", metadata=about("written answers present / expected, e.g. 9/9")
    )
    rerun: str = field(
        default="",
        metadata=about('re-execution: "not-run", "reproduced", "not-reproduced" or "failed"'),
    )
    executed: str = field(
        default=NOT_EXECUTED,
        metadata=about(
            f'"{RE_EXECUTED}" (points from the grader\'s run) or "{NOT_EXECUTED}" '
            "(--trust-outputs, or nothing could run: the saved outputs were read)"
        ),
    )
    grading_seconds: float | Blank = field(
        default="", metadata=about("wall seconds this submission took to grade, all of it")
    )
    peak_memory_mb: int | Blank = field(
        default="",
        metadata=about(
            "peak resident memory of the processes grading started for it "
            "(model scoring, the whole re-run), MB"
        ),
    )
    student_id: str = field(
        init=False,
        default="",
        metadata=about("unique, file-safe id of the student: feedback/<student_id>.html"),
    )
    checks: tuple[dict[str, Any], ...] = field(
        default=(),
        metadata=about(
            "every graded check and written answer: notebook, grade_id, kind, points, "
            "max_points, status, reason, message (report.json only; see checks_field)",
            csv=False,
        ),
    )
    manual: tuple[ManualEntry, ...] = field(
        default=(),
        metadata=about("the written answers, for manual.csv (no column)", column=False),
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "student_id", student_id(self.student))

    def record(self) -> dict[str, Any]:
        """The row as ``report.json`` holds it: column name -> value (``problems`` a list)."""
        values: dict[str, Any] = {}
        for spec in columns_of(self):
            value = getattr(self, spec.name)
            if spec.name == "notebooks":
                values |= {
                    f"{notebook.name[:2]}_{name}": getattr(notebook, name)
                    for notebook in value
                    for name in _notebook_fields()
                }
            else:
                values[spec.name] = list(value) if isinstance(value, tuple) else value
        return values


def columns_of(row_type) -> list[dataclasses.Field]:
    """The fields of a row type (or row) that are report columns, in order."""
    return [spec for spec in dataclasses.fields(row_type) if spec.metadata.get("column", True)]


def _notebook_fields() -> list[str]:
    return [spec.name for spec in dataclasses.fields(NotebookColumns) if spec.name != "name"]


def report_columns(notebooks: tuple[str, ...], row_type: type[ReportRow] = ReportRow) -> list[str]:
    """The columns of ``report.csv``, in order: the fields of ``row_type``, ``notebooks`` expanded.

    ``report.json`` has these and the :func:`json_only_columns`.

    Args:
        notebooks: notebook stems, in course order.
        row_type: :class:`ReportRow` or a subclass with further columns.
    """
    columns = []
    for spec in columns_of(row_type):
        if not spec.metadata.get("csv", True):
            continue
        if spec.name == "notebooks":
            columns += [f"{name[:2]}_{each}" for name in notebooks for each in _notebook_fields()]
        else:
            columns.append(spec.name)
    return columns


def json_only_columns(row_type: type[ReportRow] = ReportRow) -> list[str]:
    """The columns of ``report.json`` that ``report.csv`` leaves out, in order."""
    return [spec.name for spec in columns_of(row_type) if not spec.metadata.get("csv", True)]


CHECK_MESSAGE_CHARS = 500  # a failing check's message and hint fit; a flood does not


def checks_field(scores: list[NotebookScore]) -> tuple[dict[str, Any], ...]:
    """The ``checks`` column: every graded check's and written answer's result.

    Args:
        scores: the submission's notebook scores.

    Returns:
        One dict per graded cell but solutions, in notebook order: notebook, grade_id,
        kind, points, max_points, status, reason, message (cut to 500 characters).
    """
    return tuple(
        {
            "notebook": score.name,
            "grade_id": cell.grade_id,
            "kind": cell.kind,
            "points": cell.points,
            "max_points": cell.max_points,
            "status": cell.status,
            "reason": cell.reason,
            "message": cell.message[:CHECK_MESSAGE_CHARS],
        }
        for score in scores
        for cell in score.cells
        if cell.kind != "solution"
    )


def feedback_items(row: ReportRow) -> list[tuple[str, Any]]:
    """(label, value) of every column the feedback page shows, in column order."""
    return [
        (spec.metadata["feedback"], getattr(row, spec.name))
        for spec in columns_of(row)
        if spec.metadata.get("feedback")
    ]


def first_claim(values: dict[str, float]) -> float | Blank:
    """The first claimed value, rounded for the report, or "" when none was claimed."""
    return round(next(iter(values.values())), 4) if values else ""


def _csv_text(rows: list[dict], columns: list[str], *, header: bool) -> str:
    buffer = io.StringIO()
    if "problems" in columns:
        rows = [{**row, "problems": "; ".join(row.get("problems", []))} for row in rows]
    write_csv_rows(buffer, columns, rows, header=header)
    return buffer.getvalue()


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file, fsync, rename)."""
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "w", encoding="utf-8", errors="backslashreplace", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    with contextlib.suppress(OSError):  # make the rename itself durable
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _append(path: Path, text: str) -> None:
    """Append ``text`` to ``path`` durably (flushed and ``fsync``-ed)."""
    with open(path, "a", encoding="utf-8", errors="backslashreplace", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def read_rows(json_path: Path) -> list[dict[str, Any]]:
    """The rows of an existing ``report.json``.

    Raises:
        ValueError: the file is not a report this tool wrote (the message names it).
    """
    try:
        rows = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot resume from {json_path}: {error}") from error
    if not isinstance(rows, list) or not all(
        isinstance(row, dict) and isinstance(row.get("student"), str) for row in rows
    ):
        raise ValueError(f"cannot resume from {json_path}: it is not a list of report rows")
    return rows


class ReportFile:
    """``report.csv`` and ``report.json``, one row added at a time.

    Args:
        out: the CSV path; the JSON goes next to it (``.json``).
        notebooks: the notebooks whose ``NN_*`` columns the CSV has, in order.
        row_type: :class:`ReportRow` or a subclass; its fields are the columns.
        resume: keep the rows already in ``report.json`` (else start empty).
        manual_csv: append each row's written answers there (None: not written);
            with ``resume``, the rows of students kept are kept.
    """

    def __init__(
        self,
        out: Path,
        notebooks: tuple[str, ...],
        *,
        row_type: type[ReportRow] = ReportRow,
        resume: bool = False,
        manual_csv: Path | None = None,
    ) -> None:
        self.csv_path = Path(out)
        self.json_path = self.csv_path.with_suffix(".json")
        self.columns = report_columns(notebooks, row_type)
        self.json_only = json_only_columns(row_type)
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        resumable = resume and self.json_path.is_file()
        self.rows: list[dict[str, Any]] = read_rows(self.json_path) if resumable else []
        _replace(self.csv_path, _csv_text(self._csv_rows(self.rows), self.columns, header=True))
        self._write_json()
        self.manual_csv = None if manual_csv is None else Path(manual_csv)
        if self.manual_csv is not None:
            kept = []
            if resume and self.manual_csv.is_file():  # the students kept keep their answers
                earlier = read_csv_rows(self.manual_csv)
                kept = [
                    {k: v for k, v in row.items() if k in MANUAL_COLUMNS}
                    for row in earlier
                    if row.get("student") in self.students
                ]
            _replace(self.manual_csv, _csv_text(kept, list(MANUAL_COLUMNS), header=True))

    @property
    def students(self) -> set[str]:
        """Students that already have a row."""
        return {row["student"] for row in self.rows}

    def add(self, row: ReportRow) -> dict[str, Any]:
        """Append one final row to both files, durably, before returning its record."""
        record = row.record()
        # raises first on bad keys
        text = _csv_text(self._csv_rows([record]), self.columns, header=False)
        _append(self.csv_path, text)
        if self.manual_csv is not None and row.manual:
            entries = [entry.record() for entry in row.manual]
            _append(self.manual_csv, _csv_text(entries, list(MANUAL_COLUMNS), header=False))
        self.rows.append(record)
        self._write_json()
        return record

    def _csv_rows(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records without their ``report.json``-only columns."""
        return [{k: v for k, v in r.items() if k not in self.json_only} for r in records]

    def _write_json(self) -> None:
        _replace(self.json_path, json.dumps(self.rows, indent=1) + "\n")


@dataclass(frozen=True)
class GradeOutputs:
    """What ``grade`` writes besides ``report.csv`` and ``report.json``.

    Attributes:
        gradebook: path of the gradebook CSV (None: no gradebook).
        feedback_dir: folder for ``<student_id>.html`` feedback, relative to the
            report's folder unless absolute (None: no feedback).
    """

    gradebook: str | None = None
    feedback_dir: str | None = "feedback"

    def feedback_folder(self, report: Path) -> Path | None:
        """The feedback folder for a report written to ``report`` (None: none)."""
        if self.feedback_dir is None:
            return None
        return Path(report).parent / self.feedback_dir  # an absolute feedback_dir wins


def gradebook_columns(row_type: type[ReportRow] = ReportRow) -> list[dataclasses.Field]:
    """The row's fields that go into the gradebook, in gradebook order."""
    chosen = [spec for spec in columns_of(row_type) if spec.metadata.get("gradebook")]
    return sorted(chosen, key=lambda spec: spec.metadata["gradebook"][0])


def gradebook_rows(
    report_rows: list[dict], row_type: type[ReportRow] = ReportRow
) -> list[dict[str, object]]:
    """One gradebook row per report row (as ``report.csv`` reads back), in the report's order."""
    specs = gradebook_columns(row_type)
    rows = []
    for row in report_rows:
        entry: dict[str, object] = {}
        for spec in specs:
            value, if_blank = row.get(spec.name, ""), spec.metadata["if_blank"]
            if if_blank is not None:  # a number, or the stated value when blank
                value = _number(value) if str(value).strip() else if_blank
            entry[spec.metadata["gradebook"][1]] = value
        rows.append(entry)
    return rows


def _number(value: Any) -> int | float:
    """A report number (int, float or its CSV text) as an int when whole (7.0 -> 7)."""
    return tidy_points(float(value))


def write_gradebook(report_csv: Path, out: Path, row_type: type[ReportRow] = ReportRow) -> Path:
    """Write the gradebook for the report at ``report_csv``.

    Args:
        report_csv: the ``report.csv`` that ``grade`` wrote.
        out: the gradebook CSV to write.
        row_type: the report's row type (its fields say which columns go in).

    Returns:
        ``out``.
    """
    report_rows = read_csv_rows(Path(report_csv))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as handle:
        names = [spec.metadata["gradebook"][1] for spec in gradebook_columns(row_type)]
        write_csv_rows(handle, names, gradebook_rows(report_rows, row_type), header=True)
    return out


# --------------------------- the feedback page: one HTML page per student, written from the row
STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
    "table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.3em .5em;"
    "text-align:left;vertical-align:top}pre{white-space:pre-wrap;margin:.3em 0}"
    ".passed{color:#060}.failed{color:#a00}"
)


def feedback_path(folder: Path, student: str) -> Path:
    """``folder/<student_id>.html``: a file of its own for each student name."""
    return Path(folder) / f"{student_id(student)}.html"


def _cell_row(cell: CellScore) -> str:
    points = f"{cell.points} / {cell.max_points}"
    if cell.kind == "written":
        result = {
            "manual": "answered; awaiting manual grading",
            "graded": "graded by hand",
            "unanswered": "not answered",
        }.get(cell.status, html.escape(cell.reason or cell.status))
        if cell.message:  # the comment of the person who graded it
            result += f"<pre>{html.escape(cell.message)}</pre>"
        return f"<tr><td>{html.escape(cell.grade_id)}</td><td>{points}</td><td>{result}</td></tr>"
    if cell.status == "passed":
        result = '<span class="passed">passed</span>'
    else:
        result = f'<span class="failed">{html.escape(cell.reason or cell.status)}</span>'
        if cell.message:
            result += f"<pre>{html.escape(cell.message)}</pre>"
    return f"<tr><td>{html.escape(cell.grade_id)}</td><td>{points}</td><td>{result}</td></tr>"


def _notebook_section(score: NotebookScore) -> str:
    rows = "".join(_cell_row(cell) for cell in score.cells if cell.kind != "solution")
    title = f"{html.escape(score.name)}: {score.points} / {score.max_points} points"
    header = "<tr><th>graded cell</th><th>points</th><th>result</th></tr>"
    return f"<h2>{title}</h2><table>{header}{rows}</table>"


def _results_section(row: ReportRow) -> str:
    """The columns the row type labels for students (Part V's claims and their check)."""
    items = feedback_items(row)
    if all(value == "" for _, value in items):  # not graded that far
        return ""
    cells = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{html.escape(str(value)) or 'none'}</td></tr>"
        for label, value in items
    )
    return f"<h2>Part V</h2><table>{cells}</table>"


def _points_line(row: ReportRow, scores: list[NotebookScore]) -> str:
    """The points so far, and what the written answers still await."""
    total, most, manual = row.total_points, row.max_points, row.manual_points
    written = [cell for score in scores for cell in score.cells if cell.kind == "written"]
    waiting = sum(cell.status == "manual" for cell in written)
    if not any(cell.status == "graded" for cell in written):
        return (
            f"<p>Points so far: <b>{total} of {most}</b>. {manual} of the {most} are for "
            "written answers, which a person grades after this.</p>"
        )
    line = f"<p>Points: <b>{total} of {most}</b>, written answers graded by hand included."
    if waiting:
        line += f" {waiting} written answer(s) still await a person."
    return line + "</p>"


def render_feedback(
    row: ReportRow, scores: list[NotebookScore], fixes: dict[str, str] | None = None
) -> str:
    """The feedback page of one student.

    Args:
        row: the student's report row (student, status, problems, points, Part V columns).
        scores: the notebooks' scores (empty when nothing could be scored).
        fixes: problem text -> what to do about it.

    Returns:
        A complete, self-contained HTML document.
    """
    fixes = fixes or {}
    student = html.escape(row.student)
    parts = [f"<h1>cifar_lab feedback: {student}</h1>"]
    if scores:
        parts.append(_points_line(row, scores))
    parts.append(f"<p>Status: <b>{html.escape(row.status)}</b></p>")
    problems = row.problems
    if problems:
        items = "".join(
            f"<li>{html.escape(p)}" + (f"<br>fix: {html.escape(fixes[p])}" if fixes.get(p) else "")
            for p in problems
        )
        parts.append(f"<h2>Problems</h2><ul>{items}</ul>")
    parts += [_notebook_section(score) for score in scores]
    parts.append(_results_section(row))
    body = "\n".join(part for part in parts if part)
    head = f'<meta charset="utf-8"><title>cifar_lab feedback: {student}</title>'
    head += f"<style>{STYLE}</style>"
    return f"<!DOCTYPE html>\n<html><head>{head}</head>\n<body>\n{body}\n</body></html>\n"


def write_feedback(
    folder: Path,
    row: ReportRow,
    scores: list[NotebookScore],
    fixes: dict[str, str] | None = None,
) -> Path:
    """Write ``folder/<student_id>.html`` (see :func:`render_feedback`); returns its path."""
    path = feedback_path(folder, row.student)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_feedback(row, scores, fixes), encoding="utf-8")
    return path


# ---------------------- written answers: manual.csv out, a person's points and comments back in
MANUAL_FILE = "manual.csv"
MANUAL_COLUMNS = ("student", "grade_id", "question", "answer", "max_points", "points", "comment")
MAX_ANSWER_CHARS = 5000  # per answer in manual.csv; a notebook can hold megabytes of text
MAX_MANUAL_BYTES = 64 * MEGABYTE  # a manual.csv larger than this is refused unread
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
    if not finite_number(value) or not 0 <= value <= most:
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


# ------------------------ every CSV cell: text a spreadsheet would run is quoted, and read back
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"


def spreadsheet_cell(value: Any) -> Any:
    """The value as a CSV cell: text a spreadsheet would run gets a leading ``'``.

    Args:
        value: any cell value; only ``str`` values are changed.

    Returns:
        ``value``, or ``"'" + value`` for text starting with a formula character or a quote.
    """
    if isinstance(value, str) and value[:1] in (*FORMULA_STARTS, QUOTE):
        return QUOTE + value
    return value


def cell_value(text: str) -> str:
    """Undo :func:`spreadsheet_cell` on a cell read back from a CSV this package wrote."""
    if text[:1] == QUOTE and text[1:2] in (*FORMULA_STARTS, QUOTE):
        return text[1:]
    return text


def write_csv_rows(handle, columns: list[str], rows: Iterable[dict], *, header: bool) -> None:
    """Write ``rows`` (column -> value) to an open text file, every cell escaped.

    Args:
        handle: a text file opened with ``newline=""``.
        columns: the columns, in order; a row may leave some out (written blank).
        rows: the rows; a key outside ``columns`` is an error (``ValueError``).
        header: write the column names first.
    """
    writer = csv.DictWriter(handle, fieldnames=columns, restval="", extrasaction="raise")
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow({key: spreadsheet_cell(value) for key, value in row.items()})


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV this package wrote, each cell as the text before escaping.

    Args:
        path: the CSV file (UTF-8, a header row first).

    Returns:
        One dict (column -> text) per row.
    """
    with open(path, newline="", encoding="utf-8") as handle:
        return [
            {key: cell_value(value or "") for key, value in row.items() if key is not None}
            for row in csv.DictReader(handle)
        ]
