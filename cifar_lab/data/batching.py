"""Minibatch iteration over in-memory NumPy arrays."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from cifar_lab.checks import check_bool, check_int
from cifar_lab.seeding import SeedLike, as_generator


class Dataset:
    """Iterate over ``(x_batch, y_batch)`` NumPy minibatches.

    With ``shuffle=True`` every pass draws a new permutation from the seeded
    generator, so the same ``seed`` reproduces the same sequence of epochs.
    The last, partial batch is kept unless ``drop_remainder=True``.

    Args:
        X: array of shape (N, ...), e.g. float32 (N, 32, 32, 3).
        y: array of shape (N,), e.g. int32 labels.
        batch_size: positive int.
        shuffle: reshuffle at the start of every epoch.
        seed: int or ``np.random.Generator`` for the shuffle; None = fresh entropy.
        drop_remainder: leave out the last batch of an epoch when it holds fewer
            than ``batch_size`` examples. For training: a step on a few examples
            (2,000 = 31 x 64 + 16) moves the weights as far as a full one on a much
            noisier gradient, and a validation right after it judges that step.
            With ``shuffle=True`` other examples are left out in every epoch.

    Example::

        train_dset = Dataset(X_train, y_train, batch_size=64, shuffle=True, seed=0)
        for x_batch, y_batch in train_dset:
            ...
    """

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        shuffle: bool = False,
        seed: SeedLike = None,
        *,
        drop_remainder: bool = False,
    ) -> None:
        X, y = np.asarray(X), np.asarray(y)
        if X.ndim == 0 or y.ndim == 0 or X.shape[0] != y.shape[0]:
            raise ValueError(
                f"X and y must have the same first dimension; got X {X.shape} and y {y.shape}"
            )
        self.X, self.y = X, y
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.shuffle = check_bool("shuffle", shuffle)
        self.drop_remainder = check_bool("drop_remainder", drop_remainder)
        if self.drop_remainder and X.shape[0] < self.batch_size:
            raise ValueError(
                f"drop_remainder=True with {X.shape[0]} examples and batch_size="
                f"{self.batch_size} leaves no batch at all; use a smaller batch_size"
            )
        self._rng = as_generator(seed)

    def __len__(self) -> int:
        """Number of batches per epoch, counting the last partial one unless dropped."""
        if self.drop_remainder:
            return self.X.shape[0] // self.batch_size
        return math.ceil(self.X.shape[0] / self.batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        N, B = self.X.shape[0], self.batch_size
        starts = range(0, len(self) * B, B)
        if not self.shuffle:
            return ((self.X[i : i + B], self.y[i : i + B]) for i in starts)
        order = self._rng.permutation(N)
        return ((self.X[order[i : i + B]], self.y[order[i : i + B]]) for i in starts)

    def __repr__(self) -> str:
        return (
            f"Dataset(N={self.X.shape[0]}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, batches={len(self)}"
            f"{', drop_remainder=True' if self.drop_remainder else ''})"
        )
