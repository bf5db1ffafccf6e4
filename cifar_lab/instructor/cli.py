"""Command line for the instructor tools: ``release``, ``submit`` and ``grade``.

``cifar_lab.__main__`` calls :func:`add_cli` to register the three commands::

    python -m cifar_lab release --out student_release/
    python -m cifar_lab submit --student alice      # in the notebooks' folder
    python -m cifar_lab grade submissions/ --out report.csv [--trust-outputs] [--gradebook gb.csv]
        [--manual manual.csv | --nbgrader-db gradebook.db]
    python -m cifar_lab grade submissions/ --out report.csv --workers 4   # or --scheduler tcp://...

Each handler returns the process exit code: 0 on success, 1 when ``submit``
finds problems, 2 for a usage or set-up error. Option defaults are read from
:class:`~cifar_lab.instructor.grading.GradeSettings`,
:class:`~cifar_lab.instructor.rerun.RerunSettings`,
:class:`~cifar_lab.instructor.sandbox.Limits` and the library's constants, never
restated here; none of these imports TensorFlow. ``grade`` ends with the peak
memory of the grader and of its largest child (:func:`peak_memory_line`) and the
grading time per student (:func:`seconds_line`).

``grade`` re-executes every submission (:class:`RerunSettings` holds the defaults, the
quick profile among them); ``--trust-outputs`` reads the saved outputs instead. The
former ``--rerun`` is refused with a message naming the new default, so that a script
written for the old default learns that the meaning changed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from cifar_lab.instructor.findings import MEGABYTE
from cifar_lab.instructor.grading import GradeSettings
from cifar_lab.instructor.inspection import DEFAULT_MAX_NOTEBOOK_BYTES
from cifar_lab.instructor.release import MANIFEST_FILE
from cifar_lab.instructor.report import DEFAULT_ASSIGNMENT, MANUAL_FILE, GradeOutputs, ManualGrades
from cifar_lab.instructor.rerun import RerunSettings
from cifar_lab.instructor.sandbox import Limits
from cifar_lab.messages import DEFAULT
from cifar_lab.peak_memory import peak_memory_mb
from cifar_lab.profiles import PROFILES


def _release(args: argparse.Namespace) -> int:
    from cifar_lab.instructor.release import release

    source_dir = Path(args.source_dir) if args.source_dir else None
    manifest = release(Path(args.out), source_dir=source_dir, force=args.force)
    print(f"student notebooks and {manifest.name} written to {manifest.parent}")
    return 0


def _manifest_near(folder: Path, explicit: str | None) -> dict | None:
    from cifar_lab.instructor.release import load_manifest

    path = Path(explicit) if explicit else folder / MANIFEST_FILE
    if explicit or path.is_file():
        return load_manifest(path)
    print(f"note: no {MANIFEST_FILE} in {folder}; cell structure is not checked")
    return None


def _submit(args: argparse.Namespace) -> int:
    import os
    from datetime import datetime, timezone

    from cifar_lab.instructor.submission import (
        ZIP_SUFFIX,
        check_submission,
        student_id,
        submission_record,
        unexpected_problem,
        write_submission_zip,
    )
    from cifar_lab.profiles import get_profile

    student = student_id(args.student, os.environ)  # before any work: who is submitting
    folder = Path(args.notebook_dir)
    if not folder.is_dir():
        raise ValueError(f"--notebook-dir {folder} is not a folder; pass the notebooks' folder")
    manifest = _manifest_near(folder, args.manifest)
    max_bytes = int(args.max_notebook_mb * MEGABYTE)
    try:
        inspections, findings = check_submission(folder, manifest=manifest, max_bytes=max_bytes)
    except Exception as error:  # never a traceback: one problem, and exit 1
        inspections, findings = [], [unexpected_problem(error)]
    blocking = [finding for finding in findings if finding.severity != "warning"]
    for number, finding in enumerate(findings, start=1):
        label = "warning" if finding.severity == "warning" else "problem"
        print(f"{number}. [{label}] {finding}")
        if finding.fix:
            print(f"   fix: {finding.fix}")
    if blocking:
        print(f"\n{len(blocking)} problem(s): nothing was written. Fix them and run submit again.")
        return 1
    out = Path(args.out or folder / f"{student}{ZIP_SUFFIX}.zip")
    when = datetime.now(timezone.utc)
    record = submission_record(student, profile=get_profile().name, when=when)
    try:
        members = write_submission_zip(folder, out, tuple(i.name for i in inspections), record)
    except OSError as error:
        print(f"1. [problem] cannot write {out}: {error}\n\nnothing was submitted.")
        return 1
    print(f"all checks passed; wrote {out} ({len(members)} files) for student {student}")
    return 0


def _grade_manifest(args: argparse.Namespace) -> dict | None:
    from cifar_lab.instructor.notebooks import notebook_dir
    from cifar_lab.instructor.release import course_manifest, load_manifest

    if args.manifest:
        return load_manifest(Path(args.manifest))
    course = notebook_dir()
    print(f"note: cell structure compared with a release of {course} (see --manifest)")
    return course_manifest()


def rerun_settings(args: argparse.Namespace) -> RerunSettings | None:
    """Return the re-execution settings the ``grade`` options ask for.

    Args:
        args: parsed ``grade`` options.

    Returns:
        A :class:`RerunSettings`, or None with ``--trust-outputs`` (nothing is executed).
    """
    if args.trust_outputs:
        return None
    return RerunSettings(
        cell_timeout=args.cell_timeout,
        total_timeout=args.total_timeout,
        profile=args.rerun_profile,
        tolerance=args.rerun_tolerance,
        source=args.source,
        memory_bytes=int(args.rerun_memory_mb * MEGABYTE),
        disk_bytes=int(args.rerun_disk_mb * MEGABYTE),
        max_processes=args.rerun_processes,
    )


def grade_settings(args: argparse.Namespace, manifest: dict | None) -> GradeSettings:
    """Return the grading settings the ``grade`` options ask for.

    Args:
        args: parsed ``grade`` options.
        manifest: the release manifest to compare cell structure with (None: none).

    Returns:
        A :class:`GradeSettings`, with :func:`rerun_settings` as its ``rerun``.
    """
    return GradeSettings(
        manifest=manifest,
        max_notebook_bytes=int(args.max_notebook_mb * MEGABYTE),
        max_file_bytes=int(args.max_file_mb * MEGABYTE),
        tolerance=args.tolerance,
        source=args.source,
        num_test=args.num_test,
        rerun=rerun_settings(args),
        limits=limits_from_args(args),
        private_test=Path(args.private_test) if args.private_test else None,
        accept_profiles=accepted_profiles(args),
    )


def accepted_profiles(args: argparse.Namespace) -> tuple[str, ...]:
    """The profiles whose saved work ``grade`` accepts: the default and each --accept-profile."""
    default = field_defaults(GradeSettings)["accept_profiles"]
    return tuple(dict.fromkeys((*default, *args.accept_profile)))


def _grade(args: argparse.Namespace) -> int:
    from cifar_lab.instructor.findings import GradingSetupError
    from cifar_lab.instructor.grading import grade_folder
    from cifar_lab.instructor.report import ReportFile

    outputs = grade_outputs(args)
    settings = grade_settings(args, _grade_manifest(args))
    feedback = outputs.feedback_folder(Path(args.out))
    settings = dataclasses.replace(settings, feedback_dir=feedback)
    if not Path(args.submissions).is_dir():
        raise ValueError(f"submissions folder {args.submissions} does not exist; pass a folder")
    manual_csv = Path(args.out).parent / MANUAL_FILE
    settings = dataclasses.replace(settings, manual=manual_grades(args, manual_csv))
    report = ReportFile(
        Path(args.out), settings.notebooks, resume=args.resume, manual_csv=manual_csv
    )
    cluster = cluster_settings(args)
    try:  # each row is on disk as soon as it is final
        with _cluster_client(cluster, args) as client:
            grade_many = None if client is None else _grade_on(client, settings)
            rows = grade_folder(
                Path(args.submissions), settings, report=report, grade_many=grade_many
            )
    except GradingSetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    csv_path, json_path = report.csv_path, report.json_path
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "incomplete", "flagged")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    damaged = sum(r["status"] == "damaged" for r in rows)
    print(
        f"{len(rows)} submissions: {summary}, {damaged} damaged; wrote {csv_path} and {json_path}"
    )
    print(peak_memory_line(rows))
    print(seconds_line(rows))
    if feedback is not None:
        print(f"feedback for each student in {feedback}")
    print(f"written answers to grade by hand: {manual_csv} (then grade --manual {manual_csv})")
    if outputs.gradebook is not None:
        from cifar_lab.instructor.report import write_gradebook

        print(f"wrote {write_gradebook(csv_path, Path(outputs.gradebook))}")
    print("class report: similar solutions across the class, plots, leaderboard ...")
    try:
        html_path, class_csv = _class_report(args, rows, csv_path.parent, feedback)
    except Exception as error:  # the rows are final and on disk: say so, and what failed
        print(f"error: class report not written: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"wrote {html_path} and {class_csv}")
    return 0


def manual_grades(args: argparse.Namespace, manual_csv: Path) -> ManualGrades | None:
    """Read the grades ``--manual`` or ``--nbgrader-db`` names, before grading anything.

    Args:
        args: parsed ``grade`` options.
        manual_csv: the ``manual.csv`` this batch writes (refused if it would lose grades).

    Returns:
        The grades (None: neither option given).
    """
    from cifar_lab.instructor.grading import find_submissions
    from cifar_lab.instructor.report import load_grades, protect_filled, summary

    protect_filled(manual_csv, args.manual and Path(args.manual), resume=args.resume)
    students = {student for student, _ in find_submissions(Path(args.submissions))[0]}
    grades = load_grades(
        students,
        manual=args.manual and Path(args.manual),
        nbgrader_db=args.nbgrader_db and Path(args.nbgrader_db),
        assignment=args.nbgrader_assignment,
    )
    if grades is not None:
        print(summary(grades))
    return grades


def cluster_settings(args: argparse.Namespace) -> Any:
    """Return the Dask cluster the ``grade`` options ask for.

    Args:
        args: parsed ``grade`` options.

    Returns:
        A :class:`~cifar_lab.instructor.cluster.ClusterSettings`, or None without
        ``--workers`` and ``--scheduler`` (then ``distributed`` is never imported).
    """
    if args.workers is None and args.scheduler is None:
        return None
    from cifar_lab.instructor.cluster import ClusterSettings

    return ClusterSettings(workers=args.workers, scheduler=args.scheduler)


def _cluster_client(cluster: Any, args: argparse.Namespace) -> Any:
    """:func:`~cifar_lab.instructor.cluster.dask_client`'s context (yields None: no cluster)."""
    import contextlib

    if cluster is None:
        return contextlib.nullcontext()
    from cifar_lab.instructor.cluster import dask_client

    data = [args.source] if args.source and Path(args.source).exists() else []
    return dask_client(cluster, [Path(args.submissions), *data])


def _grade_on(client: Any, settings: GradeSettings) -> Any:
    from cifar_lab.instructor.cluster import grade_on

    return grade_on(client, settings)


def _class_report(
    args: argparse.Namespace, rows: list[dict], out_dir: Path, feedback: Path | None
) -> tuple[Path, Path]:
    """Write class_report.html and class_report.csv beside the report, for every row."""
    import os

    from cifar_lab.instructor.class_view.report import write_batch_report

    links = None if feedback is None else os.path.relpath(feedback, out_dir)
    return write_batch_report(rows, Path(args.submissions), out_dir, feedback_dir=links)


def grade_outputs(args: argparse.Namespace) -> GradeOutputs:
    """Return what the ``grade`` options ask to write besides the report.

    Args:
        args: parsed ``grade`` options.

    Returns:
        A :class:`~cifar_lab.instructor.report.GradeOutputs`.
    """
    feedback_dir = None if args.no_feedback else args.feedback_dir
    return GradeOutputs(gradebook=args.gradebook, feedback_dir=feedback_dir)


def _add_output_options(grade: argparse.ArgumentParser) -> None:
    outputs = field_defaults(GradeOutputs)
    grade.add_argument(
        "--gradebook",
        default=outputs["gradebook"],
        help="also write this CSV: student, total, max, status (default: none)",
    )
    grade.add_argument(
        "--feedback-dir",
        default=outputs["feedback_dir"],
        help="<student_id>.html feedback, relative to --out's folder, " + DEFAULT,
    )
    grade.add_argument("--no-feedback", action="store_true", help="write no feedback files")
    by_hand = grade.add_mutually_exclusive_group()
    by_hand.add_argument(
        "--manual",
        help=f"merge the points and comments filled into the {MANUAL_FILE} grade wrote",
    )
    by_hand.add_argument(
        "--nbgrader-db", help="merge the written answers' manual grades in nbgrader's gradebook.db"
    )
    grade.add_argument(
        "--nbgrader-assignment",
        default=DEFAULT_ASSIGNMENT,
        help="the assignment in --nbgrader-db, " + DEFAULT,
    )


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if not value > 0:  # NaN too
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def field_defaults(settings_class: type) -> dict[str, Any]:
    """Return each field's default of a settings dataclass, by field name.

    Args:
        settings_class: a dataclass whose fields all have plain defaults.

    Returns:
        ``{field name: default}``.
    """
    return {field.name: field.default for field in dataclasses.fields(settings_class)}


def _add_grade(subparsers) -> None:
    limits = field_defaults(GradeSettings)
    grade = subparsers.add_parser("grade", help="grade a folder of submissions into a report")
    grade.add_argument("submissions", help="folder of <student>.zip files or <student>/ folders")
    grade.add_argument("--out", required=True, help="report CSV; the JSON goes next to it")
    grade.add_argument("--manifest", help=f"the release's {MANIFEST_FILE} (default: re-derived)")
    grade.add_argument("--source", help="CIFAR-10 copy for the test set and the re-execution")
    grade.add_argument("--num-test", type=_positive(int), help="test images (default: all)")
    grade.add_argument(
        "--private-test",
        metavar="DIR",
        help="private labelled 32x32 images (DIR/<class>/<image>): flag Part V models that "
        "score better on the public test images than on these (memorisation)",
    )
    grade.add_argument(
        "--tolerance", type=float, default=limits["tolerance"], help="claim vs model, " + DEFAULT
    )
    megabytes = {
        name: limits[name] / MEGABYTE for name in ("max_notebook_bytes", "max_file_bytes")
    }
    grade.add_argument(
        "--max-notebook-mb",
        type=_positive(float),
        default=megabytes["max_notebook_bytes"],
        help="per notebook, " + DEFAULT,
    )
    grade.add_argument(
        "--max-file-mb",
        type=_positive(float),
        default=megabytes["max_file_bytes"],
        help="per other file (the model), " + DEFAULT,
    )
    accepted = " and ".join(limits["accept_profiles"])
    grade.add_argument(
        "--accept-profile",
        action="append",
        default=[],
        choices=sorted(PROFILES),
        help=f"also accept saved work run in this profile (e.g. quick, for a practice round); "
        f"work in a profile not accepted is flagged (default: {accepted} only)",
    )
    _add_rerun_options(grade)
    _add_limit_options(grade)
    _add_output_options(grade)
    _add_cluster_options(grade)
    grade.set_defaults(handler=_grade)


class _RerunIsTheDefault(argparse.Action):
    """``--rerun``, the former opt-in: refused, naming what replaced it."""

    def __init__(self, option_strings: list[str], dest: str, **_: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help=argparse.SUPPRESS)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        parser.error(
            "--rerun is gone: grade now re-executes every submission by default; "
            "drop --rerun (or pass --trust-outputs to read the saved outputs instead)"
        )


def _add_cluster_options(grade: argparse.ArgumentParser) -> None:
    """Add ``--workers`` and ``--scheduler`` (Dask; the ``cluster`` extra)."""
    where = grade.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=_positive(int),
        help="grade on N Dask worker processes on this machine, sharing its cores "
        '(pip install "cifar_lab[cluster]"; default: one process)',
    )
    where.add_argument(
        "--scheduler",
        help="grade on a running Dask cluster, e.g. tcp://HOST:8786 (README: "
        '"Grading a class on N machines")',
    )


def _add_rerun_options(grade: argparse.ArgumentParser) -> None:
    rerun = field_defaults(RerunSettings)
    grade.add_argument(
        "--trust-outputs",
        action="store_true",
        help="do not re-execute: score the saved outputs (a fast pre-check; edited code "
        "keeps its old outputs' points, see README). Default: re-execute every submission "
        "in a sandbox (runs student code) and score that run",
    )
    grade.add_argument("--rerun", action=_RerunIsTheDefault)
    seconds = "seconds, " + DEFAULT
    grade.add_argument(
        "--cell-timeout", type=_positive(int), default=rerun["cell_timeout"], help=seconds
    )
    grade.add_argument(
        "--total-timeout", type=_positive(int), default=rerun["total_timeout"], help=seconds
    )
    grade.add_argument(
        "--rerun-profile", choices=sorted(PROFILES), default=rerun["profile"], help=DEFAULT
    )
    grade.add_argument(
        "--rerun-tolerance",
        type=float,
        default=rerun["tolerance"],
        help="claim vs re-execution, " + DEFAULT,
    )
    grade.add_argument(
        "--rerun-memory-mb",
        type=_positive(float),
        default=rerun["memory_bytes"] / MEGABYTE,
        help="memory of one student's whole re-run (killed above), " + DEFAULT,
    )
    grade.add_argument(
        "--rerun-disk-mb",
        type=_positive(float),
        default=rerun["disk_bytes"] / MEGABYTE,
        help="what one student's re-run may write (killed when full), " + DEFAULT,
    )
    grade.add_argument(
        "--rerun-processes",
        type=_positive(int),
        default=rerun["max_processes"],
        help="processes one student's re-run may run at once (killed above), " + DEFAULT,
    )


def add_cli(subparsers) -> None:
    """Register ``release``, ``submit`` and ``grade`` on an argparse subparsers object.

    Args:
        subparsers: what ``ArgumentParser.add_subparsers()`` returned.
    """
    release = subparsers.add_parser("release", help="write student notebooks without solutions")
    release.add_argument("--out", required=True, help="folder for the student release")
    release.add_argument(
        "--source-dir", default=None, help="solution notebooks (default: the course's own)"
    )
    release.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    release.set_defaults(handler=_release)

    submit = subparsers.add_parser("submit", help="check executed notebooks and zip them")
    submit.add_argument("--notebook-dir", default=".", help="folder of your notebooks, " + DEFAULT)
    submit.add_argument(
        "--student", help="your student id (default: $JUPYTERHUB_USER; one of them is needed)"
    )
    submit.add_argument(
        "--out", help="zip to write (default: <student>_cifar_lab.zip in --notebook-dir)"
    )
    submit.add_argument("--manifest", help=f"default: {MANIFEST_FILE} in --notebook-dir")
    submit.add_argument(
        "--max-notebook-mb",
        type=_positive(float),
        default=DEFAULT_MAX_NOTEBOOK_BYTES / MEGABYTE,
        help=DEFAULT,
    )
    submit.set_defaults(handler=_submit)
    _add_grade(subparsers)


def _add_limit_options(grade: argparse.ArgumentParser) -> None:
    """Add ``--resume``, ``--model-memory-mb``, ``--model-seconds`` and ``--submission-seconds``.

    Args:
        grade: the ``grade`` sub-command's parser.
    """
    limits = Limits()
    grade.add_argument(
        "--resume", action="store_true", help="keep the rows in --out's report.json; skip them"
    )
    grade.add_argument(
        "--model-memory-mb",
        type=_positive(float),
        default=limits.model_memory_bytes / MEGABYTE,
        help="memory of the process that scores a model (killed above), " + DEFAULT,
    )
    grade.add_argument(
        "--model-seconds",
        type=_positive(float),
        default=limits.model_seconds,
        help="wall time to load and score a model, " + DEFAULT,
    )
    grade.add_argument(
        "--submission-seconds",
        type=_positive(float),
        default=limits.submission_seconds,
        help="wall time to read, check and score one submission (not its re-execution: "
        "--total-timeout), " + DEFAULT,
    )


def limits_from_args(args: argparse.Namespace) -> Limits:
    """Return the :class:`Limits` the parsed ``grade`` options ask for."""
    return Limits(
        model_memory_bytes=int(args.model_memory_mb * MEGABYTE),
        model_seconds=args.model_seconds,
        submission_seconds=args.submission_seconds,
    )


def seconds_line(rows: list[dict]) -> str:
    """The grading time per student, mean and max, from the rows' ``grading_seconds``.

    Args:
        rows: report rows (``report.json``'s records); rows without a time are left out.

    Returns:
        One line for the batch summary.
    """
    seconds = [row.get("grading_seconds") for row in rows]
    seconds = [s for s in seconds if isinstance(s, int | float) and not isinstance(s, bool)]
    if not seconds:
        return "time per student: no submission was timed"
    mean = sum(seconds) / len(seconds)
    return f"time per student: mean {mean:.1f} s, max {max(seconds):.1f} s ({len(seconds)} timed)"


def peak_memory_line(rows: list[dict] = ()) -> str:
    """This process's peak resident memory and its largest child's, in MB (Linux and macOS).

    Args:
        rows: the report's rows; their ``peak_memory_mb`` (model scoring, the whole
            re-run: trees the kernel's own count misses) count as children too.
    """
    own, child = peak_memory_mb(), peak_memory_mb(children=True)
    graded = [row.get("peak_memory_mb") for row in rows]
    child = max([child, *[peak for peak in graded if isinstance(peak, int | float)]])
    return f"peak memory: grader {own:.0f} MB, largest child process {child:.0f} MB"
