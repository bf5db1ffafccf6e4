"""``grade``'s options for its ceilings and ``--resume``, and its peak-memory line.

Defaults are read from :class:`~cifar_lab.instructor.limits.Limits`, never
restated here.
"""

from __future__ import annotations

import argparse
import resource
import sys

from cifar_lab.instructor.inspection import MEGABYTE
from cifar_lab.instructor.limits import Limits

DEFAULT = "default: %(default)s"


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def add_limit_options(grade: argparse.ArgumentParser) -> None:
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
        type=_positive,
        default=limits.model_memory_bytes / MEGABYTE,
        help="memory of the process that scores a model (killed above), " + DEFAULT,
    )
    grade.add_argument(
        "--model-seconds",
        type=_positive,
        default=limits.model_seconds,
        help="wall time to load and score a model, " + DEFAULT,
    )
    grade.add_argument(
        "--submission-seconds",
        type=_positive,
        default=limits.submission_seconds,
        help="wall time to read, check and score one submission (not --rerun), " + DEFAULT,
    )


def limits_from_args(args: argparse.Namespace) -> Limits:
    """Return the :class:`Limits` the parsed ``grade`` options ask for."""
    return Limits(
        model_memory_bytes=int(args.model_memory_mb * MEGABYTE),
        model_seconds=args.model_seconds,
        submission_seconds=args.submission_seconds,
    )


def _own_peak_bytes(scale: int) -> float:
    """VmHWM where there is /proc: unlike ru_maxrss, it does not carry over across exec the
    peak of a large process that forked this one (Linux keeps that in ru_maxrss)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            line = next(row for row in status if row.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024
    except (OSError, StopIteration, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def peak_memory_line() -> str:
    """This process's peak resident memory and its largest child's, in MB (Linux and macOS)."""
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    own = _own_peak_bytes(scale) / MEGABYTE
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale / MEGABYTE
    return f"peak memory: grader {own:.0f} MB, largest child process {child:.0f} MB"
