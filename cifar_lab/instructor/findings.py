"""What grading finds wrong, in words: :class:`Finding`, its severities, and the shared units.

Every stage (intake, inspection, scoring, claims, re-run) reports a problem with
a submission as a :class:`Finding` with a severity, in the order the report
uses for a submission's status (:func:`status_of`): ``damaged`` (cannot be
graded as handed in: unreadable, too large, cells deleted/duplicated/reordered,
files missing), ``flagged`` (needs a person: claims that disagree, edited checks,
structure that cannot be verified), ``incomplete`` (not executed in order,
errors, failed checks, Part V outputs missing); ``warning`` never changes it.

A problem of the grader itself is no finding: :class:`GradingSetupError` stops the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from cifar_lab.data.limits import MEGABYTE  # the one byte unit (2**20)

SEVERITIES = ("damaged", "flagged", "incomplete", "warning")


class GradingSetupError(RuntimeError):
    """The grader itself cannot work (e.g. no test set); not a student's problem."""


@dataclass(frozen=True)
class Finding:
    """One problem with a submission.

    Attributes:
        severity: one of :data:`SEVERITIES`.
        where: notebook stem, ``"part5"`` or ``"submission"``.
        message: what is wrong.
        fix: what the student should do about it.
        detail: text the student's code produced while the grader ran it (a re-run's
            error line). The instructor's report shows it after the message; the
            student's feedback never does (:meth:`for_student`), so a re-run cannot
            send back what it read.
    """

    severity: str
    where: str
    message: str
    fix: str = ""
    detail: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    def __str__(self) -> str:
        return self.for_student() + (f" ({self.detail})" if self.detail else "")

    def for_student(self) -> str:
        """The finding in the grader's own words only: what the student's feedback shows."""
        return f"{self.where[:2] if self.where[:2].isdigit() else self.where}: {self.message}"


def status_of(findings: list[Finding]) -> str:
    """The worst severity among ``findings`` (damaged > flagged > incomplete), else "ok"."""
    severities = {finding.severity for finding in findings}
    return next((s for s in SEVERITIES[:3] if s in severities), "ok")


def megabytes(size: float) -> str:
    """Format a byte count for messages, e.g. "20.0 MB"."""
    return f"{size / MEGABYTE:.1f} MB"
