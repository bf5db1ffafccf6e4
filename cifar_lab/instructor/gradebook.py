"""The gradebook: one row per student (student, total, max, status), ready for an LMS upload.

``grade --gradebook gradebook.csv`` writes it after the batch, from the
report on disk, so students kept from an earlier run (``--resume``) are in it
too. ``total`` is the autograded points (written answers count 0 until a
person grades them); ``max`` is the course's maximum; a submission that
could not be scored at all has total 0.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from cifar_lab.instructor.points import COURSE_MAX_POINTS

GRADEBOOK_COLUMNS = ("student", "total", "max", "status")


@dataclass(frozen=True)
class GradeOutputs:
    """What ``grade`` writes besides ``report.csv`` and ``report.json``.

    Attributes:
        gradebook: path of the gradebook CSV (None: no gradebook).
        feedback_dir: folder for ``<student>.html`` feedback, relative to the
            report's folder unless absolute (None: no feedback).
    """

    gradebook: str | None = None
    feedback_dir: str | None = "feedback"

    def feedback_folder(self, report: Path) -> Path | None:
        """The feedback folder for a report written to ``report`` (None: none)."""
        if self.feedback_dir is None:
            return None
        return Path(report).parent / self.feedback_dir  # an absolute feedback_dir wins


def gradebook_rows(report_rows: list[dict]) -> list[dict[str, object]]:
    """One gradebook row per report row, in the report's order."""
    rows = []
    for row in report_rows:
        total = row.get("total_points", "")
        most = row.get("max_points", "")
        rows.append(
            {
                "student": row.get("student", ""),
                "total": int(total) if str(total).strip() else 0,
                "max": int(most) if str(most).strip() else COURSE_MAX_POINTS,
                "status": row.get("status", ""),
            }
        )
    return rows


def write_gradebook(report_csv: Path, out: Path) -> Path:
    """Write the gradebook for the report at ``report_csv``.

    Args:
        report_csv: the ``report.csv`` that ``grade`` wrote.
        out: the gradebook CSV to write.

    Returns:
        ``out``.
    """
    with open(report_csv, newline="", encoding="utf-8") as handle:
        report_rows = list(csv.DictReader(handle))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=GRADEBOOK_COLUMNS)
        writer.writeheader()
        writer.writerows(gradebook_rows(report_rows))
    return out
