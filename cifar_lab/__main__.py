"""Command line: ``python -m cifar_lab COMMAND``.

Commands:
    data             load CIFAR-10 and print a summary of the splits
    run              the main job: execute the notebooks headless and summarise them
    refresh-outputs  maintainers: refresh the committed outputs of checked cells
    train-best       train and evaluate the best no-convolution recipe (Part V)
    release          instructors: write student notebooks without solutions
    submit           students: check executed notebooks and zip them
    grade            instructors: grade a folder of submissions into a report
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        default=None,
        help="CIFAR-10 copy: official tar.gz/folder, image-folder tree/archive, "
        "'keras' or 'synthetic' (default: $CIFAR10_SOURCE, Keras cache, download)",
    )
    parser.add_argument("--seed", type=int, default=0, help="shuffle/split seed (default 0)")


def _data_summary(args: argparse.Namespace) -> int:
    import resource

    from cifar_lab.data.splits import load_cifar10

    start = time.perf_counter()
    splits = load_cifar10(num_test=None, source=args.source, seed=args.seed)
    print(splits.summary())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"loaded in {time.perf_counter() - start:.1f} s, peak RSS {peak_mb:.0f} MB")
    return 0


def _select_notebooks(prefixes: list[str] | None) -> list[Path]:
    from cifar_lab.instructor.nbtools import course_notebooks

    notebooks = course_notebooks()
    return [p for p in notebooks if not prefixes or any(p.stem.startswith(k) for k in prefixes)]


def _run_notebooks(args: argparse.Namespace) -> int:
    from cifar_lab.instructor.nbtools import notebook_dir
    from cifar_lab.instructor.runner import format_summary, run_all

    if args.source:
        os.environ["CIFAR10_SOURCE"] = args.source  # the kernels inherit it
    notebooks = _select_notebooks(args.only)
    if not notebooks:
        print(
            f"error: no notebooks matched {args.only or '*'} in {notebook_dir()}", file=sys.stderr
        )
        return 2
    out_dir = Path(args.out)
    runs = run_all(notebooks, out_dir, profile=args.profile, cell_timeout=args.cell_timeout)
    print()
    print(format_summary(runs))
    print(f"executed notebooks and HTML: {out_dir.resolve()}")
    return 0 if all(run.status == "ok" for run in runs) else 1


def _refresh_outputs(args: argparse.Namespace) -> int:
    from cifar_lab.instructor.nbtools import course_notebooks, refresh_checked_outputs

    notebooks = [
        p
        for p in course_notebooks()
        if not args.only or any(p.stem.startswith(k) for k in args.only)
    ]
    refresh_checked_outputs(notebooks)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for ``python -m cifar_lab``."""
    parser = argparse.ArgumentParser(
        prog="python -m cifar_lab", description="cifar_lab course tools"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="load CIFAR-10 and print a summary")
    _add_data_arguments(data)
    data.set_defaults(handler=_data_summary)

    run = commands.add_parser("run", help="execute the notebooks headless and summarise them")
    run.add_argument("--profile", choices=["quick", "full"], default="full")
    run.add_argument("--out", default="outputs", help="folder for executed copies and HTML")
    run.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 01 02")
    run.add_argument("--cell-timeout", type=int, default=3600, help="seconds per cell")
    run.add_argument("--source", default=None, help="CIFAR-10 copy (sets $CIFAR10_SOURCE)")
    run.set_defaults(handler=_run_notebooks)

    refresh = commands.add_parser(
        "refresh-outputs",
        help="maintainers: re-run notebooks (quick) and keep only # NBVAL_CHECK_OUTPUT outputs",
    )
    refresh.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 01 02")
    refresh.set_defaults(handler=_refresh_outputs)

    from cifar_lab.instructor.cli import add_cli as add_instructor_commands
    from cifar_lab.tuning.cli import add_cli as add_recipe_command

    add_recipe_command(commands)
    add_instructor_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    from cifar_lab.data.formats import CorruptSourceError
    from cifar_lab.data.sources import CIFAR10NotFoundError

    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (CIFAR10NotFoundError, CorruptSourceError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
