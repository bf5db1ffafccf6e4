"""Feedback: ``feedback/<student_id>.html``, one HTML page per student, written from the row.

HTML, like nbgrader's ``generate_feedback``, so it opens in any browser and
uploads to an LMS as it is; every text in it is escaped (check messages and
problems come from the student's own notebook). It lists, per notebook, each
graded check with the points earned out of its points and, when it earned
nothing, why, with the failing check's message and hint as the notebook
printed them; the written answers, with the points and comment a person gave
(``grade --manual``) or as awaiting a person; the problems found; and
Part V's claimed accuracies next to the test accuracy the grader recomputed
from the saved model. It holds no cell source, so no solution text, and
nothing the student could not see in their own notebook apart from the
grader's verdicts. Problems appear in the grader's words only
(:meth:`~cifar_lab.instructor.findings.Finding.for_student`): nothing a student's
code printed while the grader re-ran it (an error line, a log) reaches this page.
Which report columns it shows, and their labels, the row type declares
(:class:`~cifar_lab.instructor.report.ReportRow`).

The file is named by the row's ``student_id``
(:func:`~cifar_lab.instructor.report.student_id`), unique per student name, so
"dup name" and "dup_name", or "Ada" and "ada" on a case-insensitive file system,
get pages of their own.
"""

from __future__ import annotations

import html
from pathlib import Path

from cifar_lab.instructor.report import ReportRow, feedback_items, student_id
from cifar_lab.instructor.scoring import CellScore, NotebookScore

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
