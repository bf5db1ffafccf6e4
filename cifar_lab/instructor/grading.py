"""Grading (instructor side): one report row per student, its points from re-executing it.

``grade SUBMISSIONS_DIR --out report.csv`` reads every ``<student>.zip`` and
every ``<student>/`` sub-folder of ``SUBMISSIONS_DIR`` (the notebooks at the
top of the zip or folder, or in one folder inside it) and writes
``report.csv`` and ``report.json``: per student a status, the problems, and
per notebook whether it was executed in order, its errors and its passed and
failed checks; Part V's claimed validation and test accuracy (from the
notebook's ``lab.record`` outputs and ``part5/results.json``); the test
accuracy of the saved model, recomputed on the real test set; whether the
claims hold; and how many written answers are present.

**Points come from re-execution** (:mod:`~cifar_lab.instructor.rerun`): by default every
submission's notebooks run again, caged, and a check earns its points only when it runs
to its end there; a check that passed as saved and fails when re-executed is flagged.
``GradeSettings(rerun=None)`` (``grade --trust-outputs``) is the fast static read: the
saved outputs are scored, and the row's ``executed`` column says "not re-executed".
Part V's model is always the one handed in (``part5/``); what the re-run saves is discarded.

Student files are untrusted. Zips are checked before extraction (member
count, path traversal, per-file and total uncompressed size, and sizes that
lie); notebooks over the size limit are refused unread; the model is loaded
with Keras safe mode, which refuses to deserialise code (``Lambda`` layers).
Any problem with one submission lands in its row and the batch goes on.

**The batch**: one row per submission, whatever happens, written as soon as it is final.

Each submission is graded inside a :func:`~cifar_lab.instructor.sandbox.submission_budget`
(reading, checking and scoring within ``submission_seconds``). Anything that
goes wrong becomes that student's row with a reason, never the end of the
batch: a time limit, a ``RecursionError`` or ``MemoryError`` from a hostile
file, or a grader bug. Only :class:`~cifar_lab.instructor.findings.GradingSetupError`
(the grader cannot work at all, e.g. no test set) stops the batch. With a
:class:`~cifar_lab.instructor.report.ReportFile`, each row is on disk
before the next submission starts, and students already in it are skipped
(``grade --resume``).

**On a Dask cluster** (``grade --workers N`` / ``--scheduler``,
:mod:`~cifar_lab.instructor.cluster`): each submission is one task; the rows still come
back to this process, which writes each one as its task finishes.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifar_lab.checks import check_choice, check_int, check_number, check_optional_int
from cifar_lab.instructor.claims import (
    DEFAULT_TOLERANCE,
    LazyTestSet,
    choose_split,
    claim_findings,
    claims_of,
    compare_claims,
    read_part5_results,
    verify_claims,
)
from cifar_lab.instructor.findings import (
    MEGABYTE,
    Finding,
    GradingSetupError,
    status_of,
)
from cifar_lab.instructor.inspection import (
    DEFAULT_MAX_NOTEBOOK_BYTES,
    NotebookInspection,
    inspect_file,
    submission_profile,
)
from cifar_lab.instructor.notebooks import COURSE_NOTEBOOKS, PART5_NOTEBOOK
from cifar_lab.instructor.report import (
    NOT_EXECUTED,
    RE_EXECUTED,
    ManualGrades,
    NotebookColumns,
    ReportFile,
    ReportRow,
    checks_field,
    first_claim,
    manual_entries,
    manual_totals,
    merge_manual,
    tidy_points,
    write_feedback,
)
from cifar_lab.instructor.rerun import RerunSettings, rerun_notebooks
from cifar_lab.instructor.sandbox import (
    Budget,
    Limits,
    SubmissionTimeoutError,
    submission_budget,
    suspended_budget,
)
from cifar_lab.instructor.scoring import NotebookScore, score_submission
from cifar_lab.instructor.submission import (
    copy_folder,
    extract_zip,
    notebook_root,
    submission_identity,
    submission_name,
)
from cifar_lab.profiles import PROFILES
from cifar_lab.tuning.part5 import MODEL_FILE, PARAMETERS_KEY, PART5_DIR
from cifar_lab.tuning.split_record import PROFILE_KEY, SPLIT_KEY, split_fingerprint


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
        rerun: re-execution settings (points come from that run), or None to execute
            nothing and score the saved outputs (``--trust-outputs``).
        limits: memory and time ceilings per submission and for scoring its model.
        feedback_dir: write ``<student_id>.html`` feedback there (None: no feedback).
        manual: written answers graded by hand, student -> grade_id -> grade
            (:mod:`~cifar_lab.instructor.report`; None: none given).
        private_test: the instructor's private labelled images (``<class>/<image>``),
            scored next to the public test set against memorisation (None: none).
        accept_profiles: profiles the saved work may have run in; work saved in any
            other (quick, by default) is flagged (``grade --accept-profile``).
    """

    manifest: dict | None = None
    max_notebook_bytes: int = DEFAULT_MAX_NOTEBOOK_BYTES
    max_file_bytes: int = 512 * MEGABYTE
    max_total_bytes: int = 1024 * MEGABYTE
    tolerance: float = DEFAULT_TOLERANCE
    source: str | None = None
    num_test: int | None = None
    rerun: RerunSettings | None = field(default_factory=RerunSettings)
    limits: Limits = field(default_factory=Limits)
    feedback_dir: Path | None = None
    manual: ManualGrades | None = None
    private_test: Path | None = None
    accept_profiles: tuple[str, ...] = ("full",)

    def __post_init__(self) -> None:
        for name in ("max_notebook_bytes", "max_file_bytes", "max_total_bytes"):
            check_int(name, getattr(self, name), minimum=1)
        check_number("tolerance", self.tolerance, minimum=0, maximum=1, maximum_inclusive=False)
        check_optional_int("num_test", self.num_test, minimum=1)  # None: all test images
        if not isinstance(self.accept_profiles, tuple):
            raise TypeError(f"accept_profiles must be a tuple, got {self.accept_profiles!r}")
        if not self.accept_profiles:
            raise ValueError("accept_profiles must name at least one profile")
        for name in self.accept_profiles:
            check_choice("accept_profiles", name, PROFILES)

    @property
    def notebooks(self) -> tuple[str, ...]:
        """Notebook stems every submission must hold."""
        return tuple((self.manifest or {}).get("notebooks", {})) or COURSE_NOTEBOOKS


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
    budget: Budget | None,
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
        profile=(saved or {}).get(PROFILE_KEY),  # whose validation split is recomputed
        budget=budget,
    )
    if MODEL_FILE in refused:  # left out at extraction, so "missing" would mislead
        findings.append(refused[MODEL_FILE])
    elif not (root / PART5_DIR / MODEL_FILE).is_file():
        findings.append(Finding("incomplete", "part5", f"{PART5_DIR}/{MODEL_FILE} is missing"))
    return claims, accuracy, verified, findings + claim_findings(claims) + verify_findings


MAX_PARAMETERS = 10**12  # a recorded count above it is no count (results.json is untrusted)


def _leaderboard_fields(root: Path, test_set: LazyTestSet, scored: bool) -> dict[str, Any]:
    """The row's ``part5_split`` and ``part5_parameters`` (none: no model was scored).

    ``part5_split`` names the images the model was scored on by their count and
    fingerprint, so that the class report ranks only models scored on the same images.
    """
    if not scored:
        return {}
    saved = read_part5_results(root)[0] or {}
    choice = choose_split(test_set, saved.get(SPLIT_KEY))  # as verify_claims chose (cached)
    # one fingerprint per split array: the batch's students share a few splits
    known = test_set.__dict__.setdefault("fingerprints", {})
    if id(choice.images) not in known:  # the array is kept, so its id is never reused
        known[id(choice.images)] = (choice.images, split_fingerprint(choice.images, choice.labels))
    digest = known[id(choice.images)][1]
    fields: dict[str, Any] = {"part5_split": f"{len(choice.labels):,} test images {digest[:12]}"}
    count = saved.get(PARAMETERS_KEY)
    if isinstance(count, int) and not isinstance(count, bool) and 0 <= count < MAX_PARAMETERS:
        fields["part5_parameters"] = count
    return fields


def _rerun(
    root: Path, inspections: list, settings: RerunSettings, budget: Budget | None
) -> tuple[str, list, dict[str, dict] | None]:
    """(rerun state, findings, the runner's record per notebook) of one re-execution.

    The records hold each code cell's outcome and the probes' verdicts. With no
    readable notebook nothing runs: ("not-run", [], None), as under --trust-outputs.
    """
    readable = [i for i in inspections if i.state == "ok"]
    if not readable:
        return "not-run", [], None
    records, problem = rerun_notebooks(root, [i.name for i in readable], settings, budget)
    claimed = {i.name: i.results for i in readable}
    state, findings = compare_claims(claimed, records, problem, tolerance=settings.tolerance)
    return state, findings + _hashes_finding(records), records


def _hashes_finding(records: dict[str, dict]) -> list[Finding]:
    """A note of the SHA-256 of each notebook as the grader copied it and ran it."""
    ran = [f"{name[:2]} sha256 {record.get('sha256')}" for name, record in records.items()]
    if not ran:
        return []
    return [Finding("warning", "rerun", "re-executed as handed in: " + ", ".join(ran))]


def grade_root(
    student: str,
    root: Path,
    settings: GradeSettings,
    test_set: LazyTestSet,
    refused: dict[str, Finding] | None = None,
    budget: Budget | None = None,
    identity: list[Finding] | None = None,
) -> ReportRow:
    """Grade one submission whose files are in ``root``: inspection, scoring, claims, rerun.

    Args:
        student: the row's name.
        root: folder with the notebooks and ``part5/``.
        settings: limits, tolerance and rerun settings.
        test_set: the shared, lazily loaded test set.
        refused: findings for files left out at extraction, by file name.
        budget: the submission's time budget (None: no deadline).
        identity: findings about who submitted (``submission.json``).

    Returns:
        The report row; the student's feedback page is written when settings ask for one.
    """
    refused = refused or {}
    inspections = _inspect_all(root, settings, refused)
    claims, accuracy, verified, part5 = _part5(
        root, inspections, settings, test_set, refused, budget
    )
    rerun_state, rerun_findings, records = "not-run", [], None
    if settings.rerun is not None:  # after part5/ was read; before scoring: probes decide points
        with suspended_budget(budget):  # re-runs have their own --total-timeout
            rerun_state, rerun_findings, records = _rerun(
                root, inspections, settings.rerun, budget
            )
    scores = score_submission(
        root, inspections, settings.manifest, settings.max_notebook_bytes, verified, records
    )
    scores = merge_manual(scores, (settings.manual or {}).get(student))
    findings = [f for i in inspections for f in i.findings] + part5 + list(identity or [])
    findings += [f for score in scores for f in score.findings]  # tampering, graded cells
    findings += rerun_findings
    profile, profile_problems = submission_profile(
        inspections, read_part5_results(root)[0], settings.accept_profiles
    )
    findings += profile_problems
    present, expected = (sum(i.answers[k] for i in inspections) for k in (0, 1))
    by_name = {score.name: score for score in scores}
    row = ReportRow(
        student=student,
        status=status_of(findings),
        problems=tuple(str(f) for f in findings),
        notebooks=tuple(
            NotebookColumns.from_inspection(i, by_name.get(i.name)) for i in inspections
        ),
        **_points(scores),
        profile=profile,
        part5_claimed_val_accuracy=first_claim(claims["val"]),
        part5_claimed_test_accuracy=first_claim(claims["test"]),
        part5_model_test_accuracy="" if accuracy is None else round(accuracy, 4),
        part5_claim_verified=verified,
        answers_present=f"{present}/{expected}",
        rerun=rerun_state,
        manual=manual_entries(student, scores),
        executed=NOT_EXECUTED if records is None else RE_EXECUTED,
        checks=checks_field(scores),
        **_leaderboard_fields(root, test_set, accuracy is not None),
    )
    return _with_feedback(row, scores, findings, settings.feedback_dir)


def _points(scores: list[NotebookScore]) -> dict[str, int | float]:
    """The row's points columns (none when nothing was scored: they stay blank)."""
    if not scores:
        return {}
    return {
        "total_points": tidy_points(sum(score.points for score in scores)),
        "max_points": sum(score.max_points for score in scores),
        "manual_points": sum(score.manual_points for score in scores),
        **manual_totals(scores),
    }


def _with_feedback(
    row: ReportRow, scores: list[NotebookScore], findings: list[Finding], folder: Path | None
) -> ReportRow:
    """Write the student's feedback page (when ``folder`` is given); return the row.

    The page lists the findings in the grader's words only (:meth:`Finding.for_student`):
    no text the student's code produced while the grader ran it reaches the student.
    """
    if folder is not None:
        problems = tuple(f.for_student() for f in findings)
        fixes = {f.for_student(): f.fix for f in findings if f.fix}
        write_feedback(folder, dataclasses.replace(row, problems=problems), scores, fixes)
    return row


def grade_submission(
    student: str,
    path: Path,
    settings: GradeSettings,
    test_set: LazyTestSet,
    budget: Budget | None = None,
) -> ReportRow:
    """Grade one ``<student>.zip`` or ``<student>/`` folder; returns its report row."""
    with tempfile.TemporaryDirectory(prefix="cifar_lab_grade_") as temporary:
        if path.is_dir():  # copied, never following a link out of the submission
            refused = copy_folder(path, Path(temporary), settings)
        else:
            refused = extract_zip(path, Path(temporary), settings)
        if "" in refused:
            row = ReportRow(student, "damaged", problems=(str(refused[""]),))
            return _with_feedback(row, [], [refused[""]], settings.feedback_dir)
        root = notebook_root(Path(temporary), settings.notebooks)
        student, identity = submission_identity(student, root)  # submission.json's id
        return grade_root(student, root, settings, test_set, refused, budget, identity)


def grade_folder(
    folder: Path,
    settings: GradeSettings,
    *,
    verbose: bool = True,
    report: ReportFile | None = None,
    grade_many: GradeMany | None = None,
) -> list[dict]:
    """Grade every submission in ``folder``; one row each, whatever happens.

    Args:
        folder: holds ``<student>.zip`` files and/or ``<student>/`` folders.
        settings: limits, tolerance, test set and rerun settings.
        verbose: print one line per student.
        report: write each row there as soon as it is final, skipping students
            already in it (None: only return the rows).
        grade_many: grades the submissions elsewhere, e.g. as Dask tasks
            (:func:`cifar_lab.instructor.cluster.grade_on`; None: in this process).

    Returns:
        Report rows (``problems`` as a list of strings), sorted by student.
    """
    submissions, ignored = find_submissions(folder)
    for path in ignored:
        print(f"ignored {path.name}: not a .zip or a folder")
    test_set = LazyTestSet(settings.source, settings.num_test, private_test=settings.private_test)

    def grade_one(student: str, path: Path, budget: Budget) -> ReportRow:
        return grade_submission(student, path, settings, test_set, budget)

    return run_batch(
        submissions,
        grade_one,
        settings.limits,
        report=report,
        verbose=verbose,
        grade_many=grade_many,
    )


MAX_PROBLEMS = 50  # per row; a notebook of 300k failing cells must not make a 30 MB cell


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
            found.append((submission_name(path), path))
        else:
            ignored.append(path)
    return found, ignored


def error_row(student: str, status: str, problem: str) -> ReportRow:
    """A row with only a status and one problem (the other columns stay blank)."""
    return ReportRow(student, status, problems=(problem,))


def _grader_error(error: BaseException) -> str:
    """Name a grader exception and where it happened (the innermost cifar_lab frame)."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "cifar_lab" in f.filename]
    where = f" in {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"grader error{where}: {type(error).__name__}: {str(error)[:300]}"


GradeOne = Callable[[str, Path, Budget], ReportRow]  # (student, path, budget) -> the row
# (student, path) pairs -> (row, child peaks) of each, in the order they finish
GradeMany = Callable[[list[tuple[str, Path]]], Iterable[tuple[ReportRow, list[int]]]]


def grade_safely(
    student: str, path: Path, grade_one: GradeOne, limits: Limits
) -> tuple[ReportRow, list[int]]:
    """Grade one submission within its budget; any failure becomes its row.

    Returns:
        (the row, the peak resident bytes of each child process it started).
    """
    peaks: list[int] = []
    start = time.perf_counter()
    try:
        with submission_budget(limits) as budget:
            peaks = budget.child_peaks
            row = grade_one(student, path, budget)
    except GradingSetupError:
        raise
    except SubmissionTimeoutError as error:
        problem = f"submission: not graded: {error} (--submission-seconds)"
        row = error_row(student, "flagged", problem)
    except RecursionError:
        row = error_row(student, "damaged", "submission: a file nests too deeply to be read")
    except MemoryError:
        row = error_row(student, "damaged", "submission: the grader ran out of memory reading it")
    except Exception as error:  # a grader bug must not sink the batch; it is in the row
        row = error_row(student, "damaged", _grader_error(error))
    if len(row.problems) > MAX_PROBLEMS:
        hidden = len(row.problems) - MAX_PROBLEMS
        problems = (*row.problems[:MAX_PROBLEMS], f"... and {hidden} more problems")
        row = dataclasses.replace(row, problems=problems)
    row = dataclasses.replace(row, grading_seconds=round(time.perf_counter() - start, 1))
    if peaks:
        row = dataclasses.replace(row, peak_memory_mb=round(max(peaks) / MEGABYTE))
    return row, peaks


def run_batch(
    submissions: list[tuple[str, Path]],
    grade_one: GradeOne,
    limits: Limits,
    *,
    report: ReportFile | None = None,
    verbose: bool = True,
    grade_many: GradeMany | None = None,
) -> list[dict[str, Any]]:
    """Grade each submission in turn; write each row as soon as it is final.

    Args:
        submissions: (student, path) pairs, in report order.
        grade_one: returns the row of one submission, graded within the budget it is given.
        limits: the per-submission limits.
        report: where rows go as they finish (None: only returned); students
            already in it are skipped.
        verbose: print one line per student.
        grade_many: grades the submissions not yet in ``report`` elsewhere (a Dask
            cluster), yielding each row as it finishes (None: :func:`grade_safely`
            here, in order).

    Returns:
        Every row as ``report.json`` holds it (:meth:`ReportRow.record`): those already
        in ``report`` first, then the new ones.
    """
    done = report.students if report is not None else set()
    rows = list(report.rows) if report is not None else []
    pending = []
    for student, path in submissions:
        if student in done:
            if verbose:
                print(f"skipped {student}: already in the report (--resume)", flush=True)
            continue
        pending.append((student, path))
    if grade_many is None:
        finished = (grade_safely(student, path, grade_one, limits) for student, path in pending)
    else:
        finished = grade_many(pending)
    for row, peaks in finished:  # the row is written here, in this process, once
        rows.append(report.add(row) if report is not None else row.record())
        if verbose:
            child = f" (peak {max(peaks) / MEGABYTE:.0f} MB)" if peaks else ""
            print(f"graded {row.student}: {row.status}{child}", flush=True)
    return rows
