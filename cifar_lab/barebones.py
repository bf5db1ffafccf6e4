"""Part II: the given pieces of the barebones TensorFlow networks.

Parameters are plain ``tf.Variable`` lists and the forward pass is written
with ``tf.matmul``. Models return unnormalised class scores (logits); the loss
applies the softmax itself (see :mod:`cifar_lab.models` for why).

Only what notebook 02 gives its students lives here: :func:`flatten`,
:func:`two_layer_fc` and :func:`kaiming_normal`. The exercises (the SGD step,
the initialisations and the three-layer network) are the students' own code,
so their answers live only in the instructor notebook's solution regions.
:mod:`cifar_lab.barebones_training` runs the loop (``train_part2``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import tensorflow as tf

from cifar_lab.checks import check_int, check_seed

ModelFn = Callable[[tf.Tensor, Sequence[tf.Variable]], tf.Tensor]


def flatten(x) -> tf.Tensor:
    """Flatten every dimension but the first.

    Args:
        x: tensor or array of shape (N, D1, ..., Dk), e.g. float32 (N, 32, 32, 3).

    Returns:
        A tensor of shape (N, D1 * ... * Dk) with the dtype of ``x``.
    """
    x = tf.convert_to_tensor(x)
    if x.shape.rank == 0:
        raise ValueError("flatten expects a batch of shape (N, ...), got a scalar")
    if x.shape[1:].is_fully_defined():  # a static width lets later shape checks and XLA see it
        return tf.reshape(x, (-1, math.prod(x.shape[1:])))
    return tf.reshape(x, (tf.shape(x)[0], -1))


def two_layer_fc(x, params: Sequence[tf.Variable]) -> tf.Tensor:
    """Two-layer fully connected network: ``relu(x @ w1) @ w2``, no biases.

    Args:
        x: inputs of shape (N, 32, 32, 3) (any shape (N, ...) that flattens to D).
        params: ``[w1, w2]``; w1 of shape (D, H), w2 of shape (H, C), same dtype as x.

    Returns:
        Scores (logits) of shape (N, C), dtype of the parameters.
    """
    w1, w2 = _unpack(params, "two_layer_fc", "[w1, w2]")
    x = _flat_input(x, w1, "two_layer_fc")
    _check_chain("two_layer_fc", x, [("w1", w1), ("w2", w2)])
    hidden = tf.nn.relu(tf.matmul(x, w1))
    return tf.matmul(hidden, w2)


def kaiming_normal(
    shape: Sequence[int], *, seed: int | None = None, dtype: tf.dtypes.DType | str = tf.float32
) -> tf.Tensor:
    """Kaiming (He) normal weights: zero mean, ``std = sqrt(2 / fan_in)``.

    Args:
        shape: (fan_in, fan_out) for a dense layer, or (KH, KW, C_in, C_out) for a
            convolution, where fan_in = KH * KW * C_in.
        seed: int for reproducible values; None draws from TensorFlow's global
            generator (repeatable after ``set_seed``).
        dtype: floating dtype of the result.

    Returns:
        A tensor of ``shape`` and ``dtype``.

    Raises:
        TypeError: a size or the seed is not an int.
        ValueError: the shape is not 2-D or 4-D, a size is < 1, or the seed is negative.
    """
    shape = tuple(shape)
    if len(shape) not in (2, 4):
        raise ValueError(
            f"kaiming_normal expects a 2-D (fan_in, fan_out) or 4-D (KH, KW, C_in, C_out) "
            f"shape of positive ints, got {shape}"
        )
    shape = tuple(check_int(f"shape[{axis}]", size, minimum=1) for axis, size in enumerate(shape))
    fan_in = shape[0] if len(shape) == 2 else shape[0] * shape[1] * shape[2]
    std = math.sqrt(2.0 / fan_in)
    if seed is None:
        return tf.random.normal(shape, stddev=std, dtype=dtype)
    seed_pair = (check_seed("seed", seed), 0)
    return tf.random.stateless_normal(shape, seed=seed_pair, stddev=std, dtype=dtype)


def _unpack(params, name: str, expected: str) -> list:
    if not isinstance(params, (list, tuple)):
        raise TypeError(f"{name} expects params as a list {expected}, got {type(params).__name__}")
    want = expected.count(",") + 1
    if len(params) != want:
        raise ValueError(f"{name} expects params {expected}, got {len(params)} tensors")
    return list(params)


def _flat_input(x, w1, name: str) -> tf.Tensor:
    x, dtype = tf.convert_to_tensor(x), tf.as_dtype(w1.dtype)  # w1 may be a NumPy array
    if x.dtype != dtype:
        raise TypeError(
            f"{name}: inputs are {x.dtype.name} but the parameters are {dtype.name}; "
            f"convert the inputs, e.g. X.astype(np.{dtype.name})"
        )
    return flatten(x)


def _check_chain(name: str, x: tf.Tensor, layers: list) -> None:
    """Check each (label, weight matrix) pair takes the previous layer's width."""
    width, source = x.shape[1], "the flattened input"
    for label, weight in layers:
        shape = tf.TensorShape(weight.shape)
        if shape.rank != 2:
            raise ValueError(f"{name}: {label} must be 2-D, got shape {tuple(shape)}")
        if width is not None and shape[0] != width:
            raise ValueError(
                f"{name}: {label} has shape {tuple(shape)} but {source} has width "
                f"{width}; {label} must have shape ({width}, ...)"
            )
        width, source = shape[1], label
