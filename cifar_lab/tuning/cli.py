"""``python -m cifar_lab train-best``: the command-line face of :mod:`cifar_lab.tuning.recipes`.

The choices and defaults come from the library (:data:`~cifar_lab.tuning.recipes.RECIPES`,
:data:`~cifar_lab.tuning.config.PRECISIONS`, :func:`~cifar_lab.tuning.recipes.train_best`'s
signature). Both modules import TensorFlow (0.7 GB) only inside ``train_best``, so
building the command-line parser stays light for commands that never train.
"""

from __future__ import annotations

import argparse
import inspect
import time
from pathlib import Path

from cifar_lab.messages import DEFAULT
from cifar_lab.tuning import recipes
from cifar_lab.tuning.config import PRECISIONS


def add_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``train-best`` on the ``python -m cifar_lab`` sub-command parsers.

    Args:
        subparsers: what ``parser.add_subparsers()`` returned.

    Returns:
        The ``train-best`` parser; its ``handler`` default runs the command and
        returns the exit code.
    """
    parser = subparsers.add_parser(
        "train-best",
        help="train the reference no-convolution recipe, evaluate it and save it",
        description="Train the best no-convolution recipe on CIFAR-10, print validation "
        "and test accuracy, and save model.keras, config.json and test_predictions.npz.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    parser.add_argument(
        "--source",
        default=None,
        help="CIFAR-10 copy (default: $CIFAR10_SOURCE, Keras cache, download)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    parser.add_argument("--seed", type=int, default=None, help="override the training seed")
    parser.add_argument(
        "--recipe",
        default=inspect.signature(recipes.train_best).parameters["recipe"].default,
        choices=sorted(recipes.RECIPES),
        help="named recipe, " + DEFAULT,
    )
    parser.add_argument(
        "--precision",
        default=None,
        choices=PRECISIONS,
        help="override the recipe's precision (default: the recipe's; a mixed_bfloat16 "
        "recipe trains in float32 on a CPU without AMX/AVX-512 BF16 and no GPU)",
    )
    parser.add_argument(
        "--members",
        type=int,
        default=None,
        help="train this many networks (seeds seed, seed+1, ...) and save one model that "
        "averages their probabilities (default: the recipe's: "
        + ", ".join(f"{name} {count}" for name, count in recipes.MEMBERS.items())
        + ", the others 1)",
    )
    parser.add_argument(
        "--no-flip-tta",
        dest="flip_tta",
        action="store_false",
        default=inspect.signature(recipes.train_best).parameters["flip_tta"].default,
        help="save the model without flip test-time augmentation (it averages the logits "
        "of each image and its mirror)",
    )
    parser.set_defaults(handler=_run_cli)
    return parser


def _run_cli(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    recipes.train_best(
        args.out, recipe=args.recipe, source=args.source, epochs=args.epochs, seed=args.seed,
        precision=args.precision, flip_tta=args.flip_tta, members=args.members,
    )  # fmt: skip
    print(f"train-best finished in {(time.perf_counter() - start) / 60:.1f} min")
    return 0
