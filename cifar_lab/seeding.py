"""One place to make runs repeatable."""

from __future__ import annotations

import random

import numpy as np

SeedLike = int | np.random.Generator | None


def as_generator(seed: SeedLike) -> np.random.Generator:
    """Turn an int, a Generator or None into a ``np.random.Generator``.

    Args:
        seed: an int seed, an existing Generator (returned as is), or None for
            fresh entropy.

    Returns:
        A NumPy Generator.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)):
        if seed is not None and seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        return np.random.default_rng(seed)
    raise TypeError(f"seed must be an int, a numpy Generator or None; got {seed!r}")


def set_seed(seed: int, *, deterministic_ops: bool = False) -> None:
    """Seed Python, NumPy and TensorFlow at once.

    Args:
        seed: non-negative int.
        deterministic_ops: also make TensorFlow ops deterministic
            (``tf.config.experimental.enable_op_determinism``). Slower, and it
            stays on for the rest of the process.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    import tensorflow as tf  # late import: data-only work should not pay for TensorFlow

    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    if deterministic_ops:
        tf.config.experimental.enable_op_determinism()
