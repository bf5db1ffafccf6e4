"""Grading (instructor side): one report row per student, without running their code.

``grade SUBMISSIONS_DIR --out report.csv`` reads every ``<student>.zip`` and
every ``<student>/`` sub-folder of ``SUBMISSIONS_DIR`` (the notebooks at the
top of the zip or folder, or in one folder inside it) and writes
``report.csv`` and ``report.json``: per student a status, the problems, and
per notebook whether it was executed in order, its errors and its passed and
failed checks; Part V's claimed validation and test accuracy (from the
notebook's ``lab.record`` outputs and ``part5/results.json``); the test
accuracy of the saved model, recomputed on the real test set; whether the
claims hold; and how many written answers are present.

Student files are untrusted. Zips are checked before extraction (member
count, path traversal, per-file and total uncompressed size, and sizes that
lie); notebooks over the size limit are refused unread; the model is loaded
with Keras safe mode, which refuses to deserialise code (``Lambda`` layers).
Any problem with one submission lands in its row and the batch goes on.
"""

from __future__ import annotations

import functools
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cifar_lab.checks import check_int, check_number, check_optional_int
from cifar_lab.instructor.batch import find_submissions, run_batch
from cifar_lab.instructor.claims import (
    DEFAULT_TOLERANCE,
    LazyTestSet,
    claim_findings,
    claims_of,
    compare_claims,
    verify_claims,
)
from cifar_lab.instructor.feedback import finish_row
from cifar_lab.instructor.inspection import (
    MEGABYTE,
    Finding,
    NotebookInspection,
    inspect_file,
    megabytes,
)
from cifar_lab.instructor.limits import Limits, suspended_budget
from cifar_lab.instructor.report import first_claim, notebook_columns, status_of
from cifar_lab.instructor.report_file import ReportFile
from cifar_lab.instructor.rerun import RerunSettings, rerun_notebooks
from cifar_lab.instructor.scoring import score_submission
from cifar_lab.instructor.submission import (
    COURSE_NOTEBOOKS,
    DEFAULT_MAX_NOTEBOOK_BYTES,
    read_part5_results,
)
from cifar_lab.instructor.submission_files import copy_folder, duplicate_member
from cifar_lab.tuning.part5 import MODEL_FILE, PART5_DIR
from cifar_lab.tuning.split_record import SPLIT_KEY

MAX_ZIP_MEMBERS = 200
PART5_NOTEBOOK = "05_tuning"


@dataclass(frozen=True)
class GradeSettings:
    """How ``grade`` reads and checks submissions.

    Attributes:
        manifest: the release manifest (None: no structure checks).
        max_notebook_bytes: refuse larger notebooks unread.
        max_file_bytes: refuse larger other files (the model).
        max_total_bytes: refuse zips that unpack to more.
        tolerance: largest accepted |claimed - recomputed| test accuracy.
        source: CIFAR-10 copy for the test set (``load_cifar10``'s ``source``).
        num_test: test images (None: all the source holds).
        rerun: re-execution settings, or None to execute nothing.
        limits: memory and time ceilings per submission and for scoring its model.
        feedback_dir: write ``<student>.html`` feedback there (None: no feedback).
    """

    manifest: dict | None = None
    max_notebook_bytes: int = DEFAULT_MAX_NOTEBOOK_BYTES
    max_file_bytes: int = 512 * MEGABYTE
    max_total_bytes: int = 1024 * MEGABYTE
    tolerance: float = DEFAULT_TOLERANCE
    source: str | None = None
    num_test: int | None = None
    rerun: RerunSettings | None = None
    limits: Limits = field(default_factory=Limits)
    feedback_dir: Path | None = None

    def __post_init__(self) -> None:
        for name in ("max_notebook_bytes", "max_file_bytes", "max_total_bytes"):
            check_int(name, getattr(self, name), minimum=1)
        check_number("tolerance", self.tolerance, minimum=0, maximum=1, maximum_inclusive=False)
        check_optional_int("num_test", self.num_test, minimum=1)  # None: all test images

    @property
    def notebooks(self) -> tuple[str, ...]:
        """Notebook stems every submission must hold."""
        return tuple((self.manifest or {}).get("notebooks", {})) or COURSE_NOTEBOOKS


def _zip_problem(members: list[zipfile.ZipInfo], settings: GradeSettings) -> str | None:
    """Why a zip must not be extracted at all, or None."""
    if len(members) > MAX_ZIP_MEMBERS:
        return f"zip holds {len(members)} files (more than {MAX_ZIP_MEMBERS})"
    if duplicate := duplicate_member(members):  # the last copy would win silently
        return duplicate
    for member in members:
        parts = PurePosixPath(member.filename.replace("\\", "/")).parts
        if member.filename.startswith(("/", "\\")) or ".." in parts or ":" in member.filename:
            return f"zip member {member.filename!r} has an unsafe path"
    total = sum(member.file_size for member in members)
    if total > settings.max_total_bytes:
        limit = megabytes(settings.max_total_bytes)
        return f"zip unpacks to {megabytes(total)}, over the {limit} limit (zip bomb?)"
    return None


def _copy_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path) -> None:
    """Extract one member, trusting neither its path nor its declared size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with archive.open(member) as source, open(target, "wb") as out:
        while chunk := source.read(MEGABYTE):
            written += len(chunk)
            if written > member.file_size:
                raise ValueError(f"{member.filename} unpacks to more than its declared size")
            out.write(chunk)


def extract_zip(path: Path, dest: Path, settings: GradeSettings) -> dict[str, Finding]:
    """Safely extract a submission zip into ``dest``.

    Files over their size limit are left out; an unreadable or dangerous zip
    is not extracted at all (its finding is keyed ``""``).

    Returns:
        ``damaged`` findings by the file name they concern (empty: all extracted).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            problem = _zip_problem(members, settings)
            if problem:
                return {"": Finding("damaged", "submission", problem)}
            refused = {}
            for member in members:
                name = PurePosixPath(member.filename.replace("\\", "/"))
                notebook = name.suffix == ".ipynb"
                limit = settings.max_notebook_bytes if notebook else settings.max_file_bytes
                if member.file_size <= limit:
                    _copy_member(archive, member, dest.joinpath(*name.parts))
                    continue
                size, limit_text = megabytes(member.file_size), megabytes(limit)
                message = f"{name.name} is {size}, over the {limit_text} limit; not read"
                where = name.stem if notebook else PART5_DIR
                refused[name.name] = Finding("damaged", where, message)
            return refused
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, ValueError) as error:
        message = f"{path.name} is not a readable zip ({error})"
        return {"": Finding("damaged", "submission", message)}


def notebook_root(folder: Path, names: tuple[str, ...]) -> Path:
    """The folder holding the notebooks: ``folder`` or one folder inside it."""
    candidates = [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]
    return max(candidates, key=lambda c: sum((c / f"{n}.ipynb").is_file() for n in names))


def _inspect_all(root: Path, settings: GradeSettings, refused: dict[str, Finding]) -> list:
    """Inspect each expected notebook; files refused at extraction count as damaged."""
    manifest = (settings.manifest or {}).get("notebooks", {})
    inspections = []
    for name in settings.notebooks:
        if f"{name}.ipynb" in refused:
            finding = refused[f"{name}.ipynb"]
            inspections.append(NotebookInspection(name, state="damaged", findings=[finding]))
        else:
            path = root / f"{name}.ipynb"
            inspections.append(inspect_file(path, manifest.get(name), settings.max_notebook_bytes))
    return inspections


def _part5(
    root: Path,
    inspections: list,
    settings: GradeSettings,
    test_set: LazyTestSet,
    refused: dict[str, Finding],
) -> tuple:
    """(claims, recomputed accuracy, verified, findings) for Part V."""
    saved, findings = read_part5_results(root)
    results05 = next((i.results for i in inspections if i.name == PART5_NOTEBOOK), {})
    claims = claims_of(results05, saved)
    accuracy, verified, verify_findings = verify_claims(
        root,
        claims,
        test_set,
        tolerance=settings.tolerance,
        max_bytes=settings.max_file_bytes,
        recorded_split=(saved or {}).get(SPLIT_KEY),  # re-scored on the split claimed on
    )
    if MODEL_FILE in refused:  # left out at extraction, so "missing" would mislead
        findings.append(refused[MODEL_FILE])
    elif not (root / PART5_DIR / MODEL_FILE).is_file():
        findings.append(Finding("incomplete", "part5", f"{PART5_DIR}/{MODEL_FILE} is missing"))
    return claims, accuracy, verified, findings + claim_findings(claims) + verify_findings


def _rerun(root: Path, inspections: list, settings: RerunSettings) -> tuple[str, list]:
    readable = [i for i in inspections if i.state == "ok"]
    records, problem = rerun_notebooks(root, [i.name for i in readable], settings)
    claimed = {i.name: i.results for i in readable}
    return compare_claims(claimed, records, problem, tolerance=settings.tolerance)


def grade_root(
    student: str,
    root: Path,
    settings: GradeSettings,
    test_set: LazyTestSet,
    refused: dict[str, Finding] | None = None,
) -> dict[str, Any]:
    """Grade one submission whose files are in ``root``.

    Args:
        student: the row's name.
        root: folder with the notebooks and ``part5/``.
        settings: limits, tolerance and rerun settings.
        test_set: the shared, lazily loaded test set.
        refused: findings for files left out at extraction, by file name.

    Returns:
        The report row (``problems`` as a list of strings).
    """
    refused = refused or {}
    inspections = _inspect_all(root, settings, refused)
    claims, accuracy, verified, part5 = _part5(root, inspections, settings, test_set, refused)
    scores = score_submission(
        root, inspections, settings.manifest, settings.max_notebook_bytes, verified
    )
    findings = [f for i in inspections for f in i.findings] + part5
    findings += [f for score in scores for f in score.findings]  # tampering, graded cells
    rerun_state = "not-run"
    if settings.rerun is not None:
        with suspended_budget():  # re-runs have their own --total-timeout
            rerun_state, rerun_findings = _rerun(root, inspections, settings.rerun)
        findings += rerun_findings
    present, expected = (sum(i.answers[k] for i in inspections) for k in (0, 1))
    row = {
        "student": student,
        "status": status_of(findings),
        "problems": [str(f) for f in findings],
    }
    for inspection in inspections:
        row.update(notebook_columns(inspection))
    row |= {
        "part5_claimed_val_accuracy": first_claim(claims["val"]),
        "part5_claimed_test_accuracy": first_claim(claims["test"]),
        "part5_model_test_accuracy": "" if accuracy is None else round(accuracy, 4),
        "part5_claim_verified": verified,
        "answers_present": f"{present}/{expected}",
        "rerun": rerun_state,
    }
    return finish_row(
        row, scores, findings, notebooks=settings.notebooks, feedback_dir=settings.feedback_dir
    )


def grade_submission(
    student: str, path: Path, settings: GradeSettings, test_set: LazyTestSet
) -> dict[str, Any]:
    """Grade one ``<student>.zip`` or ``<student>/`` folder; returns its report row."""
    with tempfile.TemporaryDirectory(prefix="cifar_lab_grade_") as temporary:
        if path.is_dir():  # copied, never following a link out of the submission
            refused = copy_folder(path, Path(temporary), settings, MAX_ZIP_MEMBERS)
        else:
            refused = extract_zip(path, Path(temporary), settings)
        if "" in refused:
            row = {"student": student, "status": "damaged", "problems": [str(refused[""])]}
            feedback = settings.feedback_dir
            return finish_row(row, [], [refused[""]], notebooks=(), feedback_dir=feedback)
        root = notebook_root(Path(temporary), settings.notebooks)
        return grade_root(student, root, settings, test_set, refused)


def grade_folder(
    folder: Path,
    settings: GradeSettings,
    *,
    verbose: bool = True,
    report: ReportFile | None = None,
) -> list[dict]:
    """Grade every submission in ``folder``; one row each, whatever happens.

    Args:
        folder: holds ``<student>.zip`` files and/or ``<student>/`` folders.
        settings: limits, tolerance, test set and rerun settings.
        verbose: print one line per student.
        report: write each row there as soon as it is final, skipping students
            already in it (None: only return the rows).

    Returns:
        Report rows (``problems`` as a list of strings), sorted by student.
    """
    submissions, ignored = find_submissions(folder)
    for path in ignored:
        print(f"ignored {path.name}: not a .zip or a folder")
    test_set = LazyTestSet(settings.source, settings.num_test)
    grade_one = functools.partial(grade_submission, settings=settings, test_set=test_set)
    return run_batch(submissions, grade_one, settings.limits, report=report, verbose=verbose)
