"""The report row: every column declared once, and every output written from that declaration."""

from __future__ import annotations

import csv
import dataclasses
import json

from cifar_lab.instructor.inspection import NotebookInspection
from cifar_lab.instructor.report import (
    NotebookColumns,
    ReportFile,
    ReportRow,
    about,
    checks_field,
    gradebook_rows,
    json_only_columns,
    render_feedback,
    report_columns,
    write_gradebook,
)
from cifar_lab.instructor.scoring import CellScore, NotebookScore

NOTEBOOKS = ("01_preparation", "02_barebones_tensorflow")


@dataclasses.dataclass(frozen=True)
class RowWithLateness(ReportRow):
    """The report row with one more column, declared in this one place."""

    days_late: int | str = dataclasses.field(
        default="",
        metadata=about(
            "days after the deadline the submission arrived",
            gradebook=(4, "late"),
            feedback="days late",
        ),
    )


def _row(row_type: type[ReportRow] = ReportRow, **extra) -> ReportRow:
    inspection = NotebookInspection(
        "01_preparation", executed_in_order=True, errors=1, checks_passed=2, edited_cells=["x"]
    )
    return row_type(
        student="ada",
        status="incomplete",
        total_points=40,
        max_points=100,
        manual_points=20,
        problems=("01: cell 3 raised ValueError: no",),
        notebooks=(
            NotebookColumns.from_inspection(inspection, None),
            NotebookColumns.from_inspection(NotebookInspection(NOTEBOOKS[1], "missing"), None),
        ),
        part5_claimed_test_accuracy=0.5,
        part5_claim_verified="no",
        **extra,
    )


def test_every_column_has_a_type_and_a_meaning():
    for row_type in (ReportRow, NotebookColumns):
        for spec in dataclasses.fields(row_type):
            assert spec.type and spec.metadata["meaning"].strip(), (row_type, spec.name)


def test_columns_and_record_come_from_the_row_type():
    record = _row().record()
    assert json_only_columns() == ["checks"]  # a list: report.json only
    assert list(record) == report_columns(NOTEBOOKS) + json_only_columns()
    assert report_columns(NOTEBOOKS)[:8] == [
        "student", "status", "total_points", "max_points", "manual_points", "manual_score",
        "manual_ungraded", "problems",
    ]  # fmt: skip
    assert report_columns(NOTEBOOKS)[-1] == "student_id" and "manual" not in record
    assert record["01_executed_in_order"] == "yes" and record["01_edited_cells"] == 1
    assert record["02_executed_in_order"] == "missing" and record["02_errors"] == ""
    assert record["problems"] == ["01: cell 3 raised ValueError: no"]  # a list in JSON


def test_a_column_added_in_one_place_reaches_csv_json_gradebook_and_feedback(tmp_path):
    row = _row(RowWithLateness, days_late=3)
    report = ReportFile(tmp_path / "report.csv", NOTEBOOKS, row_type=RowWithLateness)
    report.add(row)
    with open(report.csv_path, newline="") as handle:
        (csv_row,) = list(csv.DictReader(handle))
    assert csv_row["days_late"] == "3" and list(csv_row)[-1] == "days_late"
    (json_row,) = json.loads(report.json_path.read_text())
    assert json_row["days_late"] == 3
    book = write_gradebook(report.csv_path, tmp_path / "gradebook.csv", RowWithLateness)
    with open(book, newline="") as handle:
        (book_row,) = list(csv.DictReader(handle))
    assert list(book_row) == ["student", "total", "max", "status", "late"]
    assert book_row == {"student": "ada", "total": "40", "max": "100", "status": "incomplete"} | {
        "late": "3"
    }
    page = render_feedback(row, [])
    assert "<td>days late</td><td>3</td>" in page
    assert "<td>claimed test accuracy</td><td>0.5</td>" in page
    # the plain row type has none of it
    assert "days_late" not in report_columns(NOTEBOOKS)
    assert "days late" not in render_feedback(_row(), [])
    assert "late" not in gradebook_rows([json_row])[0]


def test_checks_reach_report_json_but_not_report_csv(tmp_path):
    scores = [
        NotebookScore(
            NOTEBOOKS[0],
            (
                CellScore("splits", "solution", 2, 2, "done"),
                CellScore("splits_check", "check", 0, 1, "failed", "check failed", "x" * 900),
                CellScore("answer", "written", 0, 3, "manual"),
            ),
        )
    ]
    field = checks_field(scores)
    assert [c["grade_id"] for c in field] == ["splits_check", "answer"]  # no solution cells
    assert field[0] == {
        "notebook": NOTEBOOKS[0],
        "grade_id": "splits_check",
        "kind": "check",
        "points": 0,
        "max_points": 1,
        "status": "failed",
        "reason": "check failed",
        "message": "x" * 500,  # cut: a flood of text stays out of the report
    }
    report = ReportFile(tmp_path / "report.csv", NOTEBOOKS)
    report.add(_row(checks=field))
    (json_row,) = json.loads(report.json_path.read_text())
    assert json_row["checks"] == list(field)
    with open(report.csv_path, newline="") as handle:
        (csv_row,) = list(csv.DictReader(handle))
    assert "checks" not in csv_row and csv_row["student"] == "ada"
    resumed = ReportFile(tmp_path / "report.csv", NOTEBOOKS, resume=True)  # rewrites the CSV
    assert resumed.rows[0]["checks"] == list(field)
    with open(resumed.csv_path, newline="") as handle:
        assert "checks" not in next(csv.reader(handle))


def test_rows_graded_no_further_than_intake_show_no_part5_section():
    page = render_feedback(ReportRow("bob", "damaged", problems=("submission: not a zip",)), [])
    assert "submission: not a zip" in page and "Part V" not in page
