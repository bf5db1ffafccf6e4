"""Training-loop bookkeeping: the History records a loop returns, and its checks.

Shared by the barebones (Part II) and Keras (Parts III-IV) loops: the
divergence check and the argument checks. Free of TensorFlow, so histories
can be loaded and plotted cheaply.
"""

from __future__ import annotations

import math

import numpy as np


class TrainingDivergedError(FloatingPointError):
    """The training loss became NaN or infinite."""


class History(list):
    """A list of dict records, one per validation point, ready for pandas.

    Example::

        model, history = lab.train_part34(...)
        frame = history.to_dataframe()
        frame.plot(x="iteration", y=["loss", "val_loss"])
    """

    def to_dataframe(self):
        """Return the records as a ``pandas.DataFrame`` (one row per record)."""
        import pandas as pd  # late import: pandas is only needed for analysis

        return pd.DataFrame.from_records(list(self))

    def column(self, key: str) -> list:
        """Return one field across all records, e.g. ``history.column("val_accuracy")``."""
        missing = [index for index, record in enumerate(self) if key not in record]
        if missing:
            known = sorted(self[missing[0]])
            raise KeyError(f"record {missing[0]} has no {key!r}; its fields are {known}")
        return [record[key] for record in self]

    def __repr__(self) -> str:
        if not self:
            return "History([])"
        last = ", ".join(
            f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
            for key, value in self[-1].items()
        )
        return f"History({len(self)} records; last: {last})"


def check_loss(loss: float, iteration: int, *, learning_rate: float | None = None) -> float:
    """Stop training with a clear error when the loss is NaN or infinite.

    Args:
        loss: the loss of one training step, as a Python float.
        iteration: the step number (0-based), named in the error.
        learning_rate: the learning rate, quoted in the suggested fix when known.

    Returns:
        ``loss`` unchanged, when finite.

    Raises:
        TrainingDivergedError: the loss is NaN or +/-inf.
    """
    if math.isfinite(loss):
        return loss
    advice = "Lower the learning rate (try 10x smaller)"
    if learning_rate is not None:
        advice = (
            f"The learning rate {learning_rate:g} is probably too high; "
            f"try {learning_rate / 10:g} or lower"
        )
    raise TrainingDivergedError(
        f"training diverged: the loss became {loss} at iteration {iteration}. {advice}, "
        "and check that the inputs are normalised."
    )


def check_learning_rate(learning_rate: float) -> None:
    """Raise TypeError/ValueError unless ``learning_rate`` is a positive, finite number."""
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float, np.floating)):
        raise TypeError(f"learning_rate must be a number, got {learning_rate!r}")
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be positive and finite, got {learning_rate}")


def check_loop_args(num_epochs: int, print_every: int) -> None:
    """Raise ValueError unless both are positive ints."""
    for name, value in (("num_epochs", num_epochs), ("print_every", print_every)):
        if not is_positive_int(value):
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def checked_seed(seed: int) -> int:
    """Return ``seed`` as an int; raise ValueError unless it is a non-negative int."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
    return int(seed)


def is_positive_int(value: object) -> bool:
    """Whether ``value`` is an int (not a bool) greater than zero."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0
