"""The grade report: one row per student, as CSV and JSON, and its columns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cifar_lab.instructor.inspection import SEVERITIES, Finding, NotebookInspection
from cifar_lab.instructor.report_file import ReportFile


def status_of(findings: list[Finding]) -> str:
    """The worst severity among ``findings`` (damaged > flagged > incomplete), else "ok"."""
    severities = {finding.severity for finding in findings}
    return next((s for s in SEVERITIES[:3] if s in severities), "ok")


def notebook_columns(inspection: NotebookInspection) -> dict[str, Any]:
    """The report's ``NN_*`` columns for one inspected notebook."""
    key = inspection.name[:2]
    if inspection.state != "ok":
        blank = dict.fromkeys(("errors", "checks_passed", "checks_failed", "edited_cells"), "")
        return {
            f"{key}_executed_in_order": inspection.state,
            **{f"{key}_{k}": v for k, v in blank.items()},
        }
    return {
        f"{key}_executed_in_order": "yes" if inspection.executed_in_order else "no",
        f"{key}_errors": inspection.errors,
        f"{key}_checks_passed": inspection.checks_passed,
        f"{key}_checks_failed": inspection.checks_failed,
        f"{key}_edited_cells": len(inspection.edited_cells),
    }


def report_columns(notebooks: tuple[str, ...]) -> list[str]:
    """The report's columns, in order."""
    per_notebook = [
        "executed_in_order",
        "errors",
        "checks_passed",
        "checks_failed",
        "edited_cells",
        "points",  # autograded points earned, from the points table (see scoring.py)
        "max_points",  # including written answers, graded by hand
    ]
    columns = ["student", "status", "total_points", "max_points", "manual_points", "problems"]
    columns += [f"{name[:2]}_{field}" for name in notebooks for field in per_notebook]
    columns += [
        "part5_claimed_val_accuracy",
        "part5_claimed_test_accuracy",
        "part5_model_test_accuracy",
        "part5_claim_verified",
        "answers_present",
        "rerun",
    ]
    return columns


def first_claim(values: dict[str, float]) -> float | str:
    """The first claimed value, rounded for the report, or "" when none was claimed."""
    return round(next(iter(values.values())), 4) if values else ""


def write_report(rows: list[dict], out: Path, notebooks: tuple[str, ...]) -> tuple[Path, Path]:
    """Write the rows as CSV to ``out`` and as JSON next to it (``.json``).

    ``grade`` itself writes each row as it finishes (:class:`ReportFile`); this
    writes a finished list the same way.

    Returns:
        (csv path, json path).
    """
    report = ReportFile(Path(out), report_columns(notebooks))
    report.extend(rows)
    return report.csv_path, report.json_path
