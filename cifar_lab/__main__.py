"""Command line: ``python -m cifar_lab COMMAND``.

Commands:
    data             load CIFAR-10 and print a summary of the splits
    notebooks        copy the student edition of the five notebooks into a folder
    run              the main job: execute the notebooks headless and summarise them
                     (--notebooks DIR: a student's own folder)
    refresh-outputs  maintainers: refresh the committed outputs of checked cells
    nbgrader-config  instructors: write the course's nbgrader_config.py into a folder
    train-best       train and evaluate the best no-convolution recipe (Part V)
    release          instructors: write student notebooks without solutions
    submit           students: check executed notebooks and zip them
    grade            instructors: grade a folder of submissions into a report

Every command finds the course notebooks in a checkout's ``notebooks/`` (the
instructor's, with solutions) or, once installed from a wheel, the student edition in
``cifar_lab/student_edition/`` (see :func:`cifar_lab.instructor.notebooks.notebook_dir`).
Option defaults and choices come from the library; building the parser never imports
TensorFlow.

An error a command raises for its user (a wrong value, a missing or unreadable
file) is printed as one plain line, its fixes spelled as this command's options
(see :mod:`cifar_lab.messages`), with exit code 2 for a wrong value or missing
data, as for a wrong option, and 1 for any other operating-system error.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
from pathlib import Path

from cifar_lab import __version__
from cifar_lab.messages import DEFAULT

NBGRADER_CONFIG = "nbgrader_config.py"  # shipped in cifar_lab/instructor/


def _defaults(function) -> dict:
    """Return the keyword defaults of ``function``: what an option left out falls back to."""
    parameters = inspect.signature(function).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    from cifar_lab.data.splits import load_cifar10

    parser.add_argument(
        "--source",
        default=None,
        help="CIFAR-10 copy: official tar.gz/folder, image-folder tree/archive, "
        "'keras' or 'synthetic' (default: $CIFAR10_SOURCE, Keras cache, download)",
    )
    seed = _defaults(load_cifar10)["seed"]
    parser.add_argument("--seed", type=int, default=seed, help="shuffle/split seed, " + DEFAULT)


def _data_summary(args: argparse.Namespace) -> int:
    from cifar_lab.data.splits import load_cifar10
    from cifar_lab.peak_memory import peak_memory_mb

    start = time.perf_counter()
    splits = load_cifar10(num_test=None, source=args.source, seed=args.seed)
    print(splits.summary())
    peak_mb = peak_memory_mb()
    print(f"loaded in {time.perf_counter() - start:.1f} s, peak RSS {peak_mb:.0f} MB")
    return 0


def _select_notebooks(prefixes: list[str] | None, folder: Path | None = None) -> list[Path]:
    from cifar_lab.instructor.notebooks import course_notebooks, notebook_dir

    folder = notebook_dir() if folder is None else folder
    notebooks = course_notebooks(folder)
    if not notebooks:
        raise ValueError(f"no NN_name.ipynb notebooks in {folder}; pass your notebooks' folder")
    chosen = [p for p in notebooks if not prefixes or any(p.stem.startswith(k) for k in prefixes)]
    if not chosen:
        raise ValueError(
            f"no notebooks matched --only {' '.join(prefixes or [])} in {folder}; "
            f"use prefixes of {', '.join(p.stem for p in notebooks)}"
        )
    return chosen


def _notebooks_to_run(folder: str | None) -> Path | None:
    """The folder ``run`` executes: --notebooks, else the checkout's (None).

    Installed, the course's own notebooks are the student edition, whose exercises
    stop at their stubs: a student runs their own copy, named with --notebooks.
    """
    from cifar_lab.instructor.notebooks import notebooks_installed

    if folder is not None:
        if not Path(folder).is_dir():
            raise ValueError(f"--notebooks {folder} is not a folder; pass your notebooks' folder")
        return Path(folder)
    if notebooks_installed():
        raise ValueError(
            "this installed cifar_lab holds the student edition, whose exercises are yours to "
            "write: copy it with `cifar-lab notebooks --out DIR`, work in DIR, then pass "
            "--notebooks DIR"
        )
    return None


def _check_source(source: str | None) -> None:
    """Fail now, in one line, on a wrong --source or $CIFAR10_SOURCE, not in every notebook."""
    from cifar_lab.data.sources import check_configured_source

    check_configured_source(source)


def _run_notebooks(args: argparse.Namespace) -> int:
    from cifar_lab.instructor.notebooks import format_summary, run_all

    _check_source(args.source)
    if args.source:
        os.environ["CIFAR10_SOURCE"] = args.source  # the kernels inherit it
    out_dir = Path(args.out)
    notebooks = _select_notebooks(args.only, _notebooks_to_run(args.notebooks))
    runs = run_all(notebooks, out_dir, profile=args.profile, cell_timeout=args.cell_timeout)
    print()
    print(format_summary(runs))
    print(f"executed notebooks and HTML: {out_dir.resolve()}")
    return 0 if all(run.status == "ok" for run in runs) else 1


def _refresh_outputs(args: argparse.Namespace) -> int:
    from cifar_lab.instructor.notebooks import (
        notebook_dir,
        notebooks_installed,
        refresh_checked_outputs,
    )

    if notebooks_installed():
        raise ValueError(
            f"refresh-outputs rewrites the course notebooks in place, and these are the "
            f"installed copies in {notebook_dir()}; run it from a cifar_lab checkout"
        )
    refresh_checked_outputs(_select_notebooks(args.only))
    return 0


def _copy_notebooks(args: argparse.Namespace) -> int:
    import importlib.util
    import shlex

    from cifar_lab.instructor.release import MANIFEST_FILE, copy_student_edition

    written = copy_student_edition(Path(args.out), force=args.force)
    print(
        f"copied the student edition of the {len(written)} course notebooks "
        f"(exercises to fill in, no solutions) and {MANIFEST_FILE}:"
    )
    for path in written:
        print(f"  {path}")
    print(f"next: jupyter lab {shlex.quote(args.out)}")
    if importlib.util.find_spec("jupyterlab") is None:
        print("      (JupyterLab is not installed: pip install 'cifar_lab[student]')")
    print(f"check your work with: cifar-lab run --notebooks {shlex.quote(args.out)}")
    return 0


def _add_notebooks_command(commands) -> None:
    notebooks = commands.add_parser(
        "notebooks",
        help="copy the student edition of the five course notebooks into a folder",
        description="Copy the student edition of the five course notebooks (exercises "
        "to fill in, no solutions) into --out, then open them with `jupyter lab OUT`.",
    )
    notebooks.add_argument("--out", required=True, help="folder to copy them into (created)")
    notebooks.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    notebooks.set_defaults(handler=_copy_notebooks)


def _write_nbgrader_config(args: argparse.Namespace) -> int:
    import shutil

    import cifar_lab.instructor

    shipped = Path(cifar_lab.instructor.__file__).parent / NBGRADER_CONFIG
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} is a file; pass your nbgrader course folder as --out")
    target = out_dir / NBGRADER_CONFIG
    if target.exists() and not args.force:
        raise ValueError(f"{target} exists; pass --force to overwrite it")
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shipped, target)
    print(f"wrote {target}")
    print(
        "next: copy the five source notebooks (with their solutions) from the repository's "
        f"notebooks/ into {out_dir / 'source' / 'cifar_lab'}/; they are not in the package"
    )
    return 0


def _add_nbgrader_config_command(commands) -> None:
    config = commands.add_parser(
        "nbgrader-config",
        help="instructors: write the course's nbgrader_config.py into a folder",
        description=f"Write the course's {NBGRADER_CONFIG} (execution timeouts, kernel "
        "set-up) into an nbgrader course folder.",
    )
    config.add_argument("--out", required=True, help="the nbgrader course folder (created)")
    config.add_argument("--force", action="store_true", help="overwrite an existing config")
    config.set_defaults(handler=_write_nbgrader_config)


def _add_run_commands(commands) -> None:
    from cifar_lab.instructor.notebooks import run_all
    from cifar_lab.profiles import PROFILES

    defaults = _defaults(run_all)
    run = commands.add_parser("run", help="execute the notebooks headless and summarise them")
    run.add_argument(
        "--profile", choices=sorted(PROFILES), default=defaults["profile"], help=DEFAULT
    )
    run.add_argument(
        "--out", default="outputs", help="folder for executed copies and HTML, " + DEFAULT
    )
    run.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 01 02")
    run.add_argument(
        "--notebooks",
        default=None,
        help="run the notebooks of this folder, in place (default: a checkout's notebooks/)",
    )
    run.add_argument(
        "--cell-timeout", type=int, default=defaults["cell_timeout"], help="seconds, " + DEFAULT
    )
    run.add_argument("--source", default=None, help="CIFAR-10 copy (sets $CIFAR10_SOURCE)")
    run.set_defaults(handler=_run_notebooks)

    refresh = commands.add_parser(
        "refresh-outputs",
        help="maintainers: re-run notebooks (quick); keep only nbval-check-output outputs",
    )
    refresh.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 01 02")
    refresh.set_defaults(handler=_refresh_outputs)


def program_name(argv0: str) -> str:
    """Return the name the command was called by, for usage lines.

    Args:
        argv0: ``sys.argv[0]``: the console script's path (``.../bin/cifar-lab``), or
            this file's path under ``python -m cifar_lab``.

    Returns:
        The script's file name, or ``"python -m cifar_lab"``.
    """
    name = Path(argv0).name
    if not name or name.endswith(".py") or name.startswith("-"):  # -m, -c, a script
        return "python -m cifar_lab"
    return name


def build_parser(prog: str = "python -m cifar_lab") -> argparse.ArgumentParser:
    """Return the argument parser for ``python -m cifar_lab``.

    Args:
        prog: the program name its usage lines show (see :func:`program_name`).

    Returns:
        The parser; each sub-command sets a ``handler`` that returns the exit code.
    """
    from cifar_lab.instructor.cli import add_cli as add_instructor_commands
    from cifar_lab.tuning.cli import add_cli as add_recipe_command

    parser = argparse.ArgumentParser(prog=prog, description="cifar_lab course tools")
    parser.add_argument("--version", action="version", version=f"cifar_lab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="load CIFAR-10 and print a summary")
    _add_data_arguments(data)
    data.set_defaults(handler=_data_summary)
    _add_notebooks_command(commands)
    _add_run_commands(commands)
    _add_nbgrader_config_command(commands)
    add_recipe_command(commands)
    add_instructor_commands(commands)
    return parser


def command_flags(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """Map each option of one sub-command to its flag: ``{"source": "--source", ...}``.

    Args:
        parser: the parser from :func:`build_parser`.
        command: the sub-command's name, e.g. ``"data"``.

    Returns:
        Python keyword (the option's ``dest``) to its longest option string.
    """
    # argparse lists a parser's actions only in _actions (stable since Python 3.2)
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    actions = commands.choices[command]._actions
    return {a.dest: max(a.option_strings, key=len) for a in actions if a.option_strings}


def _report(error: BaseException, flags: dict[str, str]) -> None:
    """Print an error for a command-line user: one plain line, fixes as options."""
    from cifar_lab.messages import cli_spelling, plain_line

    text = plain_line(str(error)) or type(error).__name__
    print(f"error: {cli_spelling(text, flags)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code.

    Args:
        argv: the arguments after the program name (None: ``sys.argv[1:]``).

    Returns:
        The handler's exit code; 2 after a wrong value or missing data, 1 after
        another operating-system error (each printed as one line, no traceback).
    """
    from cifar_lab.data.sources import CIFAR10NotFoundError
    from cifar_lab.instructor.cli import apply_grade_config, settle_config

    parser = build_parser(program_name(sys.argv[0]))
    argv = sys.argv[1:] if argv is None else argv
    try:  # grade --config FILE: the file's values become the defaults, before parsing
        from_file = apply_grade_config(parser, argv)
    except ValueError as error:
        _report(error, {})
        return 2
    args = parser.parse_args(argv)
    settle_config(args, parser, from_file)
    try:
        return args.handler(args)
    except (CIFAR10NotFoundError, ValueError) as error:  # CorruptSourceError is a ValueError
        _report(error, command_flags(parser, args.command))
        return 2
    except OSError as error:
        _report(error, command_flags(parser, args.command))
        return 1


if __name__ == "__main__":
    sys.exit(main())
