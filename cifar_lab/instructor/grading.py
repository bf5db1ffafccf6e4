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

import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from cifar_lab.checks import check_int, check_number, check_optional_int
from cifar_lab.instructor.claims import (
    DEFAULT_TOLERANCE,
    GradingSetupError,
    LazyTestSet,
    claim_findings,
    claims_of,
    compare_claims,
    verify_claims,
)
from cifar_lab.instructor.inspection import (
    MEGABYTE,
    Finding,
    NotebookInspection,
    inspect_file,
    megabytes,
)
from cifar_lab.instructor.report import first_claim, notebook_columns, status_of
from cifar_lab.instructor.rerun import RerunSettings, rerun_notebooks
from cifar_lab.instructor.submission import (
    COURSE_NOTEBOOKS,
    DEFAULT_MAX_NOTEBOOK_BYTES,
    read_part5_results,
)
from cifar_lab.tuning.part5 import MODEL_FILE, PART5_DIR

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
    """

    manifest: dict | None = None
    max_notebook_bytes: int = DEFAULT_MAX_NOTEBOOK_BYTES
    max_file_bytes: int = 512 * MEGABYTE
    max_total_bytes: int = 1024 * MEGABYTE
    tolerance: float = DEFAULT_TOLERANCE
    source: str | None = None
    num_test: int | None = None
    rerun: RerunSettings | None = None

    def __post_init__(self) -> None:
        for name in ("max_notebook_bytes", "max_file_bytes", "max_total_bytes"):
            check_int(name, getattr(self, name), minimum=1)
        check_number("tolerance", self.tolerance, minimum=0, maximum=1, maximum_inclusive=False)
        check_optional_int("num_test", self.num_test, minimum=1)  # None: all test images

    @property
    def notebooks(self) -> tuple[str, ...]:
        """Notebook stems every submission must hold."""
        return tuple((self.manifest or {}).get("notebooks", {})) or COURSE_NOTEBOOKS


def find_submissions(folder: Path) -> tuple[list[tuple[str, Path]], list[Path]]:
    """List (student, path) for each ``*.zip`` and sub-folder; also the ignored entries."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"submissions folder {folder} does not exist; pass a folder of zips")
    found, ignored = [], []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir() or path.suffix.lower() == ".zip":
            found.append((path.stem if path.is_file() else path.name, path))
        else:
            ignored.append(path)
    return found, ignored


def _zip_problem(members: list[zipfile.ZipInfo], settings: GradeSettings) -> str | None:
    """Why a zip must not be extracted at all, or None."""
    if len(members) > MAX_ZIP_MEMBERS:
        return f"zip holds {len(members)} files (more than {MAX_ZIP_MEMBERS})"
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
        root, claims, test_set, tolerance=settings.tolerance, max_bytes=settings.max_file_bytes
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
    findings = [f for i in inspections for f in i.findings] + part5
    rerun_state = "not-run"
    if settings.rerun is not None:
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
    return row | {
        "part5_claimed_val_accuracy": first_claim(claims["val"]),
        "part5_claimed_test_accuracy": first_claim(claims["test"]),
        "part5_model_test_accuracy": "" if accuracy is None else round(accuracy, 4),
        "part5_claim_verified": verified,
        "answers_present": f"{present}/{expected}",
        "rerun": rerun_state,
    }


def grade_submission(
    student: str, path: Path, settings: GradeSettings, test_set: LazyTestSet
) -> dict[str, Any]:
    """Grade one ``<student>.zip`` or ``<student>/`` folder; returns its report row."""
    if path.is_dir():
        return grade_root(student, notebook_root(path, settings.notebooks), settings, test_set)
    with tempfile.TemporaryDirectory(prefix="cifar_lab_grade_") as temporary:
        refused = extract_zip(path, Path(temporary), settings)
        if "" in refused:
            return {"student": student, "status": "damaged", "problems": [str(refused[""])]}
        root = notebook_root(Path(temporary), settings.notebooks)
        return grade_root(student, root, settings, test_set, refused)


def grade_folder(folder: Path, settings: GradeSettings, *, verbose: bool = True) -> list[dict]:
    """Grade every submission in ``folder``; one row each, whatever happens.

    Args:
        folder: holds ``<student>.zip`` files and/or ``<student>/`` folders.
        settings: limits, tolerance, test set and rerun settings.
        verbose: print one line per student.

    Returns:
        Report rows (``problems`` as a list of strings), sorted by student.
    """
    submissions, ignored = find_submissions(folder)
    for path in ignored:
        print(f"ignored {path.name}: not a .zip or a folder")
    test_set = LazyTestSet(settings.source, settings.num_test)
    rows = []
    for student, path in submissions:
        try:
            row = grade_submission(student, path, settings, test_set)
        except GradingSetupError:
            raise
        except Exception as error:  # a grader bug must not sink the batch; it is in the row
            problem = f"grader error: {type(error).__name__}: {error}"
            row = {"student": student, "status": "damaged", "problems": [problem]}
        if verbose:
            print(f"graded {student}: {row['status']}", flush=True)
        rows.append(row)
    return rows
