"""Names in files the grader writes: CSV cells a spreadsheet cannot run, feedback files per id.

Every CSV the grader writes (report, gradebook, manual.csv, class_report.csv) escapes
text cells that start with ``=``, ``+``, ``-`` or ``@`` with one quote (OWASP's
advice); numbers stay numbers. Feedback files are named by a unique id per student.
"""

from __future__ import annotations

import csv
import json

import pytest

from cifar_lab.instructor.class_report import write_class_report
from cifar_lab.instructor.report import (
    MANUAL_COLUMNS,
    ManualEntry,
    ReportFile,
    ReportRow,
    cell_value,
    feedback_path,
    read_csv_rows,
    spreadsheet_cell,
    student_id,
    write_feedback,
    write_gradebook,
)

NOTEBOOKS = ("01_preparation",)
FORMULAS = ["=1+2", "+1", "-1+cmd|' /C calc'!A0", "@SUM(A1)", "\t=1", "\r=1"]


@pytest.mark.parametrize("text", FORMULAS)
def test_formula_text_gets_one_quote(text):
    assert spreadsheet_cell(text) == "'" + text
    assert cell_value(spreadsheet_cell(text)) == text


@pytest.mark.parametrize("text", ["alice", "", "a=b", "'", "'=1", "''", "1e3", "x-1"])
def test_every_text_reads_back_as_it_was(text):
    assert cell_value(spreadsheet_cell(text)) == text


def test_numbers_stay_numbers():
    """Only text is escaped: a negative number is a number to a spreadsheet, not a formula."""
    for number in (-3, -0.5, 0, 7):
        assert spreadsheet_cell(number) == number
    assert spreadsheet_cell("-3") == "'-3"  # text that looks like a number is still text


def _raw_rows(path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _no_formula(path) -> None:
    """No cell a spreadsheet would run: text starting with = + - @ (numbers are numbers)."""
    for row in _raw_rows(path):
        for cell in row:
            assert cell[:1] not in ("=", "+", "-", "@") or _is_number(cell), (path.name, cell)


def test_report_gradebook_and_manual_csv_escape_every_text_cell(tmp_path):
    entry = ManualEntry("=1+2", "answer_zero_init", "Why?", "@me -- see", 2, "", "+good")
    row = ReportRow(
        "=1+2",
        "-flagged",
        total_points=-1,
        max_points=100,
        problems=("=HYPERLINK()",),
        manual=(entry,),
    )
    report = ReportFile(tmp_path / "report.csv", NOTEBOOKS, manual_csv=tmp_path / "manual.csv")
    report.add(row)
    book = write_gradebook(report.csv_path, tmp_path / "gradebook.csv")
    for path in (report.csv_path, book, tmp_path / "manual.csv"):
        _no_formula(path)
    (csv_row,) = read_csv_rows(report.csv_path)
    assert (csv_row["student"], csv_row["status"], csv_row["problems"]) == (
        "=1+2",
        "-flagged",
        "=HYPERLINK()",
    )
    assert csv_row["total_points"] == "-1"  # a number, written as one
    (book_row,) = read_csv_rows(book)
    assert book_row == {"student": "=1+2", "total": "-1", "max": "100", "status": "-flagged"}
    assert _raw_rows(book)[1][0] == "'=1+2"
    (manual_row,) = read_csv_rows(tmp_path / "manual.csv")
    assert list(manual_row) == list(MANUAL_COLUMNS)
    assert (manual_row["student"], manual_row["answer"], manual_row["comment"]) == (
        "=1+2",
        "@me -- see",
        "+good",
    )
    (json_row,) = json.loads(report.json_path.read_text())
    assert json_row["student"] == "=1+2"  # the JSON holds the name itself


def test_class_report_csv_escapes_failure_messages(tmp_path):
    check = {"kind": "check", "grade_id": "=x_check", "status": "failed", "max_points": 5}
    rows = [{"student": "a", "checks": [check | {"reason": "=cmd|' /C calc'!A0"}]}]
    _, csv_path = write_class_report(rows, None, tmp_path, feedback_dir=None)
    _no_formula(csv_path)
    (entry,) = read_csv_rows(csv_path)
    assert (entry["check"], entry["most_common_failure"]) == ("=x_check", "=cmd|' /C calc'!A0")


def test_student_ids_are_unique_and_file_safe():
    names = ["dup name", "dup_name", "Ada", "ada", "../etc/passwd", "=1+2", ".hidden", "", "é"]
    ids = [student_id(name) for name in names]
    assert len({i.lower() for i in ids}) == len(names)  # distinct even ignoring case
    for value in ids:
        assert value and not value.startswith(".")
        assert all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in value), value
    assert student_id("dup name") == student_id("dup name")  # stable across runs (--resume)


def test_colliding_names_get_distinct_feedback_files_and_the_id_is_in_the_row(tmp_path):
    rows = [ReportRow(name, "ok") for name in ("dup name", "dup_name", "Ada", "ada")]
    paths = [write_feedback(tmp_path, row, []) for row in rows]
    assert len({path.name.lower() for path in paths}) == 4
    for row, path in zip(rows, paths, strict=True):
        assert path == feedback_path(tmp_path, row.student) == tmp_path / f"{row.student_id}.html"
        assert f"feedback: {row.student}</h1>" in path.read_text()  # its own page, not overwritten
        assert row.record()["student_id"] == row.student_id
