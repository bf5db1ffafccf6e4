"""The grade report: :class:`ReportRow`, the one row type, and every file written from it.

**The row** (:class:`ReportRow`, with one :class:`NotebookColumns` per notebook)
declares every column once, in report order, with its type and its meaning
(:func:`about`); a column may also name its gradebook column and its label on
the feedback page. ``report.csv`` and ``report.json`` (:func:`report_columns`,
:meth:`ReportRow.record`), the gradebook (:func:`gradebook_rows`) and the
feedback page (:mod:`~cifar_lab.instructor.feedback`) all read that declaration,
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

**Written answers** (``manual.csv``, :mod:`~cifar_lab.instructor.manual_grades`): each row
carries its student's written answers (not a column); :class:`ReportFile` appends them
to ``manual.csv`` beside the report as the row is added.

**Every CSV cell** goes through :func:`~cifar_lab.instructor.spreadsheet.spreadsheet_cell`
(text a spreadsheet would run as a formula is quoted), and each student's files are
named by :func:`student_id`, unique per name (``feedback/<student_id>.html``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifar_lab.instructor.inspection import NotebookInspection
from cifar_lab.instructor.manual_grades import MANUAL_COLUMNS, ManualEntry, tidy_points
from cifar_lab.instructor.points import COURSE_MAX_POINTS
from cifar_lab.instructor.scoring import NotebookScore
from cifar_lab.instructor.spreadsheet import read_csv_rows, write_csv_rows

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
