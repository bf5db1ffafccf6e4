"""Command line: ``python -m cifar_lab COMMAND``.

Commands:
    data   load CIFAR-10 and print a summary of the splits
    run    the main job (for now: the data summary; later all notebooks)
"""

from __future__ import annotations

import argparse
import sys
import time


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

    from cifar_lab.data import load_cifar10

    start = time.perf_counter()
    splits = load_cifar10(num_test=None, source=args.source, seed=args.seed)
    print(splits.summary())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"loaded in {time.perf_counter() - start:.1f} s, peak RSS {peak_mb:.0f} MB")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for ``python -m cifar_lab``."""
    parser = argparse.ArgumentParser(
        prog="python -m cifar_lab", description="cifar_lab course tools"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("data", "load CIFAR-10 and print a summary"),
        ("run", "the main job: currently loads the data and prints a summary"),
    ):
        sub = commands.add_parser(name, help=help_text)
        _add_data_arguments(sub)
        sub.set_defaults(handler=_data_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    from cifar_lab.formats import CorruptSourceError
    from cifar_lab.sources import CIFAR10NotFoundError

    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (CIFAR10NotFoundError, CorruptSourceError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
