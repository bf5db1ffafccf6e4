"""Minibatch iteration over in-memory NumPy arrays."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from cifar_lab.seeding import SeedLike, as_generator


class Dataset:
    """Iterate over ``(x_batch, y_batch)`` NumPy minibatches.

    With ``shuffle=True`` every pass draws a new permutation from the seeded
    generator, so the same ``seed`` reproduces the same sequence of epochs.
    The last, partial batch is kept.

    Args:
        X: array of shape (N, ...), e.g. float32 (N, 32, 32, 3).
        y: array of shape (N,), e.g. int32 labels.
        batch_size: positive int.
        shuffle: reshuffle at the start of every epoch.
        seed: int or ``np.random.Generator`` for the shuffle; None = fresh entropy.

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
    ) -> None:
        X, y = np.asarray(X), np.asarray(y)
        if X.ndim == 0 or y.ndim == 0 or X.shape[0] != y.shape[0]:
            raise ValueError(
                f"X and y must have the same first dimension; got X {X.shape} and y {y.shape}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"batch_size must be an int, got {batch_size!r}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.X, self.y = X, y
        self.batch_size, self.shuffle = int(batch_size), bool(shuffle)
        self._rng = as_generator(seed)

    def __len__(self) -> int:
        """Number of batches per epoch, counting the last partial one."""
        return math.ceil(self.X.shape[0] / self.batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        N, B = self.X.shape[0], self.batch_size
        if not self.shuffle:
            return ((self.X[i : i + B], self.y[i : i + B]) for i in range(0, N, B))
        order = self._rng.permutation(N)
        return ((self.X[order[i : i + B]], self.y[order[i : i + B]]) for i in range(0, N, B))

    def __repr__(self) -> str:
        return (
            f"Dataset(N={self.X.shape[0]}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, batches={len(self)})"
        )

    def to_tf_dataset(self):
        """Return the equivalent ``tf.data.Dataset`` (same batches; shuffled by tf.data).

        The tf.data pipeline reshuffles every epoch with a seed derived from
        this Dataset's generator, so it is reproducible but its order differs
        from NumPy iteration. Prefetching overlaps input with training.

        Returns:
            A ``tf.data.Dataset`` of (x_batch, y_batch) tensors.
        """
        import tensorflow as tf

        data = tf.data.Dataset.from_tensor_slices((self.X, self.y))
        if self.shuffle:
            seed = int(self._rng.integers(2**31 - 1))
            data = data.shuffle(self.X.shape[0], seed=seed, reshuffle_each_iteration=True)
        return data.batch(self.batch_size).prefetch(tf.data.AUTOTUNE)
