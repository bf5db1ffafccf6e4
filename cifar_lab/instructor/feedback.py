"""Per-student feedback: ``feedback/<student>.html``, written as each row is final.

HTML, like nbgrader's ``generate_feedback``, so it opens in any browser and
uploads to an LMS as it is; every text in it is escaped (check messages and
problems come from the student's own notebook). It lists, per notebook, each
graded check with the points earned out of its points and, when it earned
nothing, why, with the failing check's message and hint as the notebook
printed them; the written answers awaiting a person; the problems found; and
Part V's claimed accuracies next to the test accuracy the grader recomputed
from the saved model. It holds no cell source, so no solution text, and
nothing the student could not see in their own notebook apart from the
grader's verdicts.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from cifar_lab.instructor.inspection import Finding
from cifar_lab.instructor.scoring import CellScore, NotebookScore, score_columns

STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
    "table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.3em .5em;"
    "text-align:left;vertical-align:top}pre{white-space:pre-wrap;margin:.3em 0}"
    ".passed{color:#060}.failed{color:#a00}"
)
PART5_ROWS = (
    ("part5_claimed_val_accuracy", "claimed validation accuracy"),
    ("part5_claimed_test_accuracy", "claimed test accuracy"),
    ("part5_model_test_accuracy", "test accuracy of your saved model, recomputed by the grader"),
    ("part5_claim_verified", "claims confirmed by the saved model"),
)


def feedback_path(folder: Path, student: str) -> Path:
    """``folder/<student>.html``; characters other than letters, digits, ``.-_`` become ``_``."""
    safe = re.sub(r"[^\w.-]", "_", student).lstrip(".") or "student"
    return Path(folder) / f"{safe}.html"


def _cell_row(cell: CellScore) -> str:
    points = f"{cell.points} / {cell.max_points}"
    if cell.kind == "written":
        result = {
            "manual": "answered; awaiting manual grading",
            "unanswered": "not answered",
        }.get(cell.status, html.escape(cell.reason or cell.status))
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


def _part5_section(row: dict[str, Any]) -> str:
    items = "".join(
        f"<tr><td>{label}</td><td>{html.escape(str(row.get(key, '')) or 'none')}</td></tr>"
        for key, label in PART5_ROWS
    )
    return f"<h2>Part V</h2><table>{items}</table>"


def render_feedback(
    row: dict[str, Any], scores: list[NotebookScore], fixes: dict[str, str] | None = None
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
    student = html.escape(str(row.get("student", "")))
    parts = [f"<h1>cifar_lab feedback: {student}</h1>"]
    if scores:
        total, most = row.get("total_points", ""), row.get("max_points", "")
        manual = row.get("manual_points", 0)
        parts.append(
            f"<p>Points so far: <b>{total} of {most}</b>. {manual} of the {most} are for "
            "written answers, which a person grades after this.</p>"
        )
    parts.append(f"<p>Status: <b>{html.escape(str(row.get('status', '')))}</b></p>")
    problems = row.get("problems") or []
    if problems:
        items = "".join(
            f"<li>{html.escape(p)}" + (f"<br>fix: {html.escape(fixes[p])}" if fixes.get(p) else "")
            for p in problems
        )
        parts.append(f"<h2>Problems</h2><ul>{items}</ul>")
    parts += [_notebook_section(score) for score in scores]
    if "part5_claim_verified" in row:
        parts.append(_part5_section(row))
    body = "\n".join(parts)
    head = f'<meta charset="utf-8"><title>cifar_lab feedback: {student}</title>'
    head += f"<style>{STYLE}</style>"
    return f"<!DOCTYPE html>\n<html><head>{head}</head>\n<body>\n{body}\n</body></html>\n"


def write_feedback(
    folder: Path,
    row: dict[str, Any],
    scores: list[NotebookScore],
    fixes: dict[str, str] | None = None,
) -> Path:
    """Write ``folder/<student>.html`` (see :func:`render_feedback`); returns its path."""
    path = feedback_path(folder, str(row.get("student", "")))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_feedback(row, scores, fixes), encoding="utf-8")
    return path


def finish_row(
    row: dict[str, Any],
    scores: list[NotebookScore],
    findings: list[Finding],
    *,
    notebooks: tuple[str, ...],
    feedback_dir: Path | None,
) -> dict[str, Any]:
    """Add the points columns to a finished report row and write the student's feedback.

    Args:
        row: the report row, otherwise final.
        scores: the notebooks' scores (empty: none could be scored).
        findings: the problems behind ``row["problems"]`` (for their fixes).
        notebooks: the report's notebooks, in order.
        feedback_dir: where ``<student>.html`` goes (None: no feedback).

    Returns:
        The row with ``NN_points``, ``NN_max_points``, ``total_points``,
        ``max_points`` and ``manual_points`` (blank when nothing was scored).
    """
    row = row | score_columns(scores, notebooks)
    if feedback_dir is not None:
        write_feedback(feedback_dir, row, scores, {str(f): f.fix for f in findings if f.fix})
    return row
