"""Command line for the instructor tools: ``release``, ``submit`` and ``grade``.

``cifar_lab.__main__`` calls :func:`add_cli` to register the three commands::

    python -m cifar_lab release --out student_release/
    python -m cifar_lab submit --student alice      # in the notebooks' folder
    python -m cifar_lab grade submissions/ --out report.csv [--trust-outputs] [--gradebook gb.csv]
        [--manual manual.csv | --nbgrader-db gradebook.db]
    python -m cifar_lab grade submissions/ --out report.csv --workers 4   # or --scheduler tcp://...
    python -m cifar_lab grade --write-config grading.toml   # every option with its default
    python -m cifar_lab grade submissions/ --config grading.toml   # options from the file

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

``grade --config FILE`` reads any of its options from a TOML file, keyed by the
option's name without dashes; the file's values become the options' defaults
(:func:`apply_grade_config`, called by ``cifar_lab.__main__.main`` before parsing),
so the command line overrides them (:func:`settle_config`). ``--write-config FILE``
writes every option with its default, read from the parser, and its help as a comment.
A submissions folder is checked before any work (:func:`check_submissions_folder`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from cifar_lab.instructor.findings import MEGABYTE
from cifar_lab.instructor.grading import GradeSettings
from cifar_lab.instructor.inspection import DEFAULT_MAX_NOTEBOOK_BYTES, finite_number
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

    check_submissions_folder(Path(args.submissions))  # before any work
    outputs = grade_outputs(args)
    settings = grade_settings(args, _grade_manifest(args))
    feedback = outputs.feedback_folder(Path(args.out))
    settings = dataclasses.replace(settings, feedback_dir=feedback)
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


SUBMISSIONS_HELP = "a folder of <student>.zip files or <student>/ folders"


def check_submissions_folder(folder: Path) -> None:
    """Refuse, in one line, a SUBMISSIONS that is not a folder holding any submission.

    Args:
        folder: what ``grade`` was given as SUBMISSIONS.

    Raises:
        ValueError: it is missing, a file (a notebook, a single zip) or a folder
            without a ``<student>.zip`` or ``<student>/``; the message says what
            ``grade`` looks for.
    """
    from cifar_lab.instructor.grading import find_submissions

    if folder.is_file():
        kinds = {".ipynb": "a notebook", ".zip": "a single zip"}
        kind = kinds.get(folder.suffix.lower(), "a file")
        raise ValueError(
            f"grade expects {SUBMISSIONS_HELP}; got {kind}, {folder}: put each student's "
            "work in one folder (<student>.zip or <student>/ in it) and pass that folder"
        )
    if not folder.is_dir():
        raise ValueError(f"submissions folder {folder} does not exist; pass {SUBMISSIONS_HELP}")
    found, ignored = find_submissions(folder)
    if not found:
        names = sorted(path.name for path in ignored)
        held = f" (it holds only {', '.join(names[:5])}{', ...' if len(names) > 5 else ''})"
        raise ValueError(
            f"no submissions in {folder}: grade looks for <student>.zip files and <student>/ "
            f"folders and found none{held if names else ''}"
        )


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

    from cifar_lab.instructor.class_report import write_batch_report

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
    _add_config_options(grade)
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
        help="grade on a running Dask cluster, e.g. tcp://HOST:8786 (docs/cluster.md)",
    )


def _add_rerun_options(grade: argparse.ArgumentParser) -> None:
    rerun = field_defaults(RerunSettings)
    grade.add_argument(
        "--trust-outputs",
        action="store_true",
        help="do not re-execute: score the saved outputs (a fast pre-check; edited code "
        "keeps its old outputs' points, see docs/grading.md). Default: re-execute every "
        "submission in a sandbox (runs student code) and score that run",
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
    seconds = [s for s in seconds if finite_number(s)]
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
    child = max([child, *[peak for peak in graded if finite_number(peak)]])
    return f"peak memory: grader {own:.0f} MB, largest child process {child:.0f} MB"


# grade --config FILE / --write-config FILE: every grade option in a TOML file.
# A key is an option's name without its dashes; the file's values become the
# options' defaults, so the command line overrides them.
CONFIG_KEY_OF = {"submissions": "submissions"}  # the positional keeps its name
NOT_CONFIGURABLE = ("help", "config", "write_config", "rerun")


def _add_config_options(grade: argparse.ArgumentParser) -> None:
    """Add ``--config`` and ``--write-config`` to the ``grade`` parser."""
    grade.add_argument(
        "--config",
        metavar="TOML",
        help="read any of these options from a TOML file (keys: the options' names without "
        "dashes, e.g. rerun-memory-mb = 2048); options given here override it",
    )
    grade.add_argument(
        "--write-config",
        metavar="TOML",
        action=_WriteConfig,
        help="write every option with its default and what it does to this TOML file, then stop",
    )


def config_key(action: argparse.Action) -> str:
    """The TOML key of a ``grade`` option: ``--rerun-memory-mb`` is ``rerun-memory-mb``."""
    if not action.option_strings:
        return action.dest
    return max(action.option_strings, key=len).lstrip("-")


def configurable_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The ``grade`` options a configuration file may hold, by TOML key, in --help order."""
    return {
        config_key(action): action
        for action in parser._actions  # argparse keeps no public list of them
        if action.dest not in NOT_CONFIGURABLE and action.help != argparse.SUPPRESS
    }


def _toml_value(value: Any) -> str:
    """``value`` written as TOML: a string, number, boolean or list of them."""
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # JSON's escapes are TOML's


def config_text(parser: argparse.ArgumentParser, prog: str = "python -m cifar_lab") -> str:
    """The ``grade --write-config`` file: every option, its default, and its help as a comment.

    Args:
        parser: the ``grade`` parser, whose defaults are read from the settings classes.
        prog: the program name its opening comment shows.

    Returns:
        TOML text. Options without a default (a path to give) are written commented out.
    """
    import textwrap

    lines = [
        f"# grade's options; edit, then: {prog} grade --config THIS_FILE",
        "# A key is an option's name without its dashes; options on the command line",
        "# override the file. Delete or comment out a line to follow the package's default.",
    ]
    for key, action in configurable_actions(parser).items():
        what = (action.help or "").replace("%(default)s", str(action.default))
        flag = key if not action.option_strings else f"--{key}"
        lines.append("")
        lines += textwrap.wrap(f"{flag}: {what}", 86, initial_indent="# ", subsequent_indent="# ")
        if action.choices:
            lines.append("# one of: " + ", ".join(map(str, action.choices)))
        if action.default is None or action.default == []:  # a value to give: an example
            if isinstance(action, argparse._AppendAction):
                example = "[]"
            elif action.type is None:  # text: a path or an address
                name = "SUBMISSIONS" if key == "submissions" else action.metavar or key.upper()
                example = f'"{name}"'
            else:
                example = "N"  # a number to write in
            lines.append(f"# {key} = {example}")
        else:
            lines.append(f"{key} = {_toml_value(action.default)}")
    return "\n".join(lines) + "\n"


class _WriteConfig(argparse.Action):
    """``--write-config FILE``: write :func:`config_text` there and stop, as ``--version`` does."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        path = Path(values)
        if path.exists():
            parser.exit(2, f"error: {path} exists; remove it or pass another file name\n")
        try:
            path.write_text(config_text(parser, parser.prog.rsplit(" ", 1)[0]), encoding="utf-8")
        except OSError as error:
            parser.exit(1, f"error: cannot write {path}: {error.strerror or error}\n")
        print(f"wrote {path}: grade's options and their defaults; use it with --config {path}")
        parser.exit(0)


def _config_value(key: str, action: argparse.Action, value: Any) -> Any:
    """Check one value of a configuration file as the option would; return what it sets."""
    where = f"{key} = {_toml_value(value) if not isinstance(value, dict) else '{...}'}"
    flag = action.nargs == 0  # store_true: no value on the command line
    if flag:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: {key} is a flag; write {key} = true (or leave it out)")
        return value
    if isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        return [_config_value(key, _Single(action), item) for item in items]
    if isinstance(value, bool | dict | list):
        raise ValueError(f"{where}: {key} takes one value, e.g. {key} = {_toml_value('...')}")
    try:
        converted = action.type(str(value)) if action.type else str(value)
    except (argparse.ArgumentTypeError, TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None
    if action.choices is not None and converted not in action.choices:
        raise ValueError(f"{where}: choose one of {', '.join(map(str, action.choices))}")
    return converted


class _Single:
    """One item of an ``append`` option, checked as the option checks each of its values."""

    def __init__(self, action: argparse.Action) -> None:
        self.nargs, self.type, self.choices = None, action.type, action.choices


def read_config(path: Path) -> dict[str, Any]:
    """Read a TOML configuration file (``tomllib``; ``tomli`` before Python 3.11)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    if not path.is_file():
        raise ValueError(f"--config {path} does not exist; write one with --write-config {path}")
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"--config {path} is not valid TOML: {error}") from None


@dataclasses.dataclass(frozen=True)
class GradeConfig:
    """What ``grade --config FILE`` set: the file's values and the defaults they replaced.

    Attributes:
        values: option ``dest`` to the file's value, checked as the option checks it.
        defaults: option ``dest`` to the default the parser had before the file.
    """

    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)


def apply_grade_config(parser: argparse.ArgumentParser, argv: list[str]) -> GradeConfig:
    """Make ``grade --config FILE``'s values the ``grade`` options' defaults.

    Call before parsing: an option given on the command line then overrides the
    file, and an option the file gives (``submissions``, ``out``) is no longer
    required on the command line. :func:`settle_config` finishes the job after parsing.

    Args:
        parser: the whole command line's parser (``build_parser``).
        argv: the arguments after the program name.

    Returns:
        The file's values and the defaults they replaced (empty: not ``grade``, or
        no ``--config``).

    Raises:
        ValueError: a missing or malformed file, an unknown key, a wrong value (one line).
    """
    if not argv or argv[0] != "grade":
        return GradeConfig()
    finder = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    finder.add_argument("--config")
    found, _ = finder.parse_known_args(argv[1:])
    if found.config is None:
        return GradeConfig()
    grade = _subparser(parser, "grade")
    actions = configurable_actions(grade)
    table = read_config(Path(found.config))
    unknown = sorted(set(table) - set(actions))
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], actions, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ValueError(
            f"--config {found.config}: unknown key {unknown[0]}; {hint}the keys are grade's "
            "options without their dashes (see --write-config)"
        )
    try:
        values = {actions[k].dest: _config_value(k, actions[k], v) for k, v in table.items()}
    except ValueError as error:
        raise ValueError(f"--config {found.config}: {error}") from None
    for group in grade._mutually_exclusive_groups:
        both = [config_key(a) for a in group._group_actions if a.dest in values]
        if len(both) > 1:
            raise ValueError(f"--config {found.config}: {' and '.join(both)} exclude each other")
    for key in table:
        actions[key].required = False  # given by the file
        if not actions[key].option_strings:
            actions[key].nargs = "?"  # the positional SUBMISSIONS
    before = {action.dest: action.default for action in actions.values()}
    grade.set_defaults(**values)
    return GradeConfig(values, before)


def settle_config(
    args: argparse.Namespace, parser: argparse.ArgumentParser, config: GradeConfig
) -> None:
    """After parsing: the command line wins over the file, for lists and exclusive options too.

    Args:
        args: the parsed options, changed in place.
        parser: the whole command line's parser.
        config: what :func:`apply_grade_config` returned.
    """
    values = config.values
    if not values:
        return
    grade = _subparser(parser, "grade")
    for dest, value in values.items():
        given = getattr(args, dest)
        if isinstance(value, list) and given != value and given[: len(value)] == value:
            setattr(args, dest, given[len(value) :])  # argparse appended to the file's list
    for group in grade._mutually_exclusive_groups:
        members = group._group_actions
        typed = [a for a in members if getattr(args, a.dest) != values.get(a.dest, a.default)]
        if typed:  # given on the command line: the file's choice in this group gives way
            for action in members:
                if action not in typed and action.dest in values:
                    setattr(args, action.dest, config.defaults[action.dest])


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices[command]
