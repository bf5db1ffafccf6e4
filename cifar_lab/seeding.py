"""One place to make runs repeatable."""

from __future__ import annotations

import numpy as np

from cifar_lab.checks import check_int, check_seed

SeedLike = int | np.random.Generator | None


def as_generator(seed: SeedLike) -> np.random.Generator:
    """Turn an int, a Generator or None into a ``np.random.Generator``.

    Args:
        seed: an int seed, an existing Generator (returned as is), or None for
            fresh entropy.

    Returns:
        A NumPy Generator.

    Raises:
        TypeError: ``seed`` is none of these (e.g. a float, a str or a bool).
        ValueError: ``seed`` is a negative int.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng()
    try:
        return np.random.default_rng(check_seed("seed", seed))
    except TypeError as error:  # name the other kinds it accepts too
        message = str(error).replace(
            " must be an int,", " must be an int, a numpy Generator or None;"
        )
        raise TypeError(message) from None


def set_seed(seed: int, *, deterministic_ops: bool = False) -> None:
    """Seed Python, NumPy, TensorFlow and Keras at once.

    Both training loops seed through here (their ``seed`` argument), and so
    should notebooks: ``keras.utils.set_random_seed`` also resets Keras' global
    ``SeedGenerator``, which ``keras.random`` calls without a seed draw from.

    Args:
        seed: int in 0..2**32 - 1 (NumPy's legacy global seed allows no more).
        deterministic_ops: also make TensorFlow ops deterministic
            (``tf.config.experimental.enable_op_determinism``). Slower, and it
            stays on for the rest of the process.

    Raises:
        TypeError: ``seed`` is not an int (e.g. ``"0"``, ``0.0`` or ``True``).
        ValueError: ``seed`` is negative or too large.
    """
    seed = check_int("seed", seed, minimum=0, maximum=2**32 - 1)
    import keras  # late imports: data-only work should not pay for TensorFlow
    import tensorflow as tf

    keras.utils.set_random_seed(seed)  # Python's random, NumPy's and TensorFlow's seeds too
    if deterministic_ops:
        tf.config.experimental.enable_op_determinism()
