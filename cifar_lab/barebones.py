"""Part II: fully connected networks in barebones TensorFlow.

Parameters are plain ``tf.Variable`` lists, the forward pass is written with
``tf.matmul``, gradients come from ``tf.GradientTape`` and the update is SGD
by hand. Models return unnormalised class scores (logits); the loss applies
the softmax itself (see :mod:`cifar_lab.models` for why).

Typical use::

    params = two_layer_fc_init(hidden_size=4000, seed=0)
    history = train_part2(two_layer_fc, lambda: params, 1e-2, train_dset, val_dset)

``params`` is updated in place, so keeping a reference to it, as above, keeps
the trained weights.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

from cifar_lab.devices import resolve_device
from cifar_lab.history import (
    History,
    check_learning_rate,
    check_loop_args,
    check_loss,
    checked_seed,
    is_positive_int,
)
from cifar_lab.progress import Progress
from cifar_lab.seeding import set_seed

INPUT_SIZE = 32 * 32 * 3
NUM_CLASSES = 10

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
    _check_chain("two_layer_fc", x, [("w1", w1, None), ("w2", w2, None)])
    hidden = tf.nn.relu(tf.matmul(x, w1))
    return tf.matmul(hidden, w2)


def three_layer_fc(x, params: Sequence[tf.Variable]) -> tf.Tensor:
    """Three-layer fully connected network with biases (the "write your own" exercise).

    ``scores = relu(relu(x @ w1 + b1) @ w2 + b2) @ w3 + b3``

    Args:
        x: inputs of shape (N, 32, 32, 3) (any shape (N, ...) that flattens to D).
        params: ``[w1, b1, w2, b2, w3, b3]``; w1 (D, H1), b1 (H1,), w2 (H1, H2),
            b2 (H2,), w3 (H2, C), b3 (C,), all the dtype of x.

    Returns:
        Scores (logits) of shape (N, C).
    """
    w1, b1, w2, b2, w3, b3 = _unpack(params, "three_layer_fc", "[w1, b1, w2, b2, w3, b3]")
    x = _flat_input(x, w1, "three_layer_fc")
    _check_chain("three_layer_fc", x, [("w1", w1, b1), ("w2", w2, b2), ("w3", w3, b3)])
    hidden1 = tf.nn.relu(tf.matmul(x, w1) + b1)
    hidden2 = tf.nn.relu(tf.matmul(hidden1, w2) + b2)
    return tf.matmul(hidden2, w3) + b3


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
    """
    shape = tuple(shape)
    if len(shape) not in (2, 4) or not all(is_positive_int(size) for size in shape):
        raise ValueError(
            f"kaiming_normal expects a 2-D (fan_in, fan_out) or 4-D (KH, KW, C_in, C_out) "
            f"shape of positive ints, got {shape}"
        )
    fan_in = shape[0] if len(shape) == 2 else shape[0] * shape[1] * shape[2]
    std = math.sqrt(2.0 / fan_in)
    if seed is None:
        return tf.random.normal(shape, stddev=std, dtype=dtype)
    return tf.random.stateless_normal(shape, seed=(checked_seed(seed), 0), stddev=std, dtype=dtype)


def two_layer_fc_init(
    hidden_size: int = 4000,
    *,
    input_size: int = INPUT_SIZE,
    num_classes: int = NUM_CLASSES,
    seed: int | None = None,
    dtype: tf.dtypes.DType | str = tf.float32,
) -> list[tf.Variable]:
    """Create ``[w1, w2]`` for :func:`two_layer_fc` with Kaiming normal values.

    Args:
        hidden_size: H, the width of the hidden layer.
        input_size: D, the flattened input width (3072 for CIFAR-10).
        num_classes: C.
        seed: int for reproducible weights, or None (see :func:`kaiming_normal`).
        dtype: floating dtype of the weights.

    Returns:
        Two ``tf.Variable``: w1 of shape (D, H) and w2 of shape (H, C).
    """
    sizes = _check_sizes(input_size=input_size, hidden_size=hidden_size, num_classes=num_classes)
    return _dense_variables(sizes, seed, dtype, biases=False)


def three_layer_fc_init(
    hidden_size_1: int = 1000,
    hidden_size_2: int = 500,
    *,
    input_size: int = INPUT_SIZE,
    num_classes: int = NUM_CLASSES,
    seed: int | None = None,
    dtype: tf.dtypes.DType | str = tf.float32,
) -> list[tf.Variable]:
    """Create ``[w1, b1, w2, b2, w3, b3]`` for :func:`three_layer_fc`.

    Weights are Kaiming normal, biases zero.

    Args:
        hidden_size_1, hidden_size_2: H1 and H2, the hidden widths.
        input_size: D, the flattened input width (3072 for CIFAR-10).
        num_classes: C.
        seed: int for reproducible weights, or None (see :func:`kaiming_normal`).
        dtype: floating dtype of the parameters.

    Returns:
        Six ``tf.Variable`` of shapes (D, H1), (H1,), (H1, H2), (H2,), (H2, C), (C,).
    """
    sizes = _check_sizes(
        input_size=input_size,
        hidden_size_1=hidden_size_1,
        hidden_size_2=hidden_size_2,
        num_classes=num_classes,
    )
    return _dense_variables(sizes, seed, dtype, biases=True)


def training_step(
    model_fn: ModelFn, x, y, params: Sequence[tf.Variable], learning_rate: float
) -> tf.Tensor:
    """One SGD step: forward, softmax cross-entropy loss, gradients, in-place update.

    Args:
        model_fn: e.g. :func:`two_layer_fc`; maps (x, params) to logits (N, C).
        x: inputs, e.g. float32 (N, 32, 32, 3).
        y: integer labels of shape (N,) in 0..C-1.
        params: the ``tf.Variable`` list that ``model_fn`` reads; updated in place.
        learning_rate: positive float.

    Returns:
        The mean loss over the batch before the update, a scalar tensor.
    """
    check_learning_rate(learning_rate)
    _check_variables(params)
    y = _labels(y, x)
    with tf.GradientTape() as tape:
        scores = model_fn(x, params)
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=scores)
        )
    # Outside the tape, so the backward pass itself is not recorded.
    gradients = tape.gradient(loss, params)
    for index, (variable, gradient) in enumerate(zip(params, gradients, strict=True)):
        if gradient is None:
            raise ValueError(f"params[{index}] does not affect the loss; check model_fn uses it")
        variable.assign_sub(learning_rate * gradient)
    return loss


def check_accuracy(dset: Iterable, model_fn: ModelFn, params: Sequence[tf.Variable]) -> float:
    """Classify every batch of ``dset`` and print ``Got N / M correct (P%)``.

    Args:
        dset: iterable of (x_batch, y_batch), e.g. a :class:`cifar_lab.Dataset`.
        model_fn: maps (x, params) to scores (N, C).
        params: the parameters to evaluate.

    Returns:
        The accuracy, a float in [0, 1].
    """
    num_correct, num_samples = count_correct(dset, model_fn, params)
    print(_accuracy_message(num_correct, num_samples))
    return num_correct / num_samples


def count_correct(
    dset: Iterable, model_fn: ModelFn, params: Sequence[tf.Variable]
) -> tuple[int, int]:
    """Return (correctly classified, total) over ``dset``, silently."""
    num_correct = num_samples = 0
    for x_batch, y_batch in dset:
        predictions = np.argmax(model_fn(x_batch, params).numpy(), axis=1)
        num_correct += int(np.sum(predictions == np.asarray(y_batch)))
        num_samples += len(y_batch)
    if num_samples == 0:
        raise ValueError("the dataset is empty; there is nothing to check accuracy on")
    return num_correct, num_samples


def train_part2(
    model_fn: ModelFn,
    init_fn: Callable[[], Sequence[tf.Variable]],
    learning_rate: float,
    train_dset: Iterable,
    val_dset: Iterable,
    num_epochs: int = 1,
    print_every: int = 700,
    device: str | None = None,
    *,
    seed: int | None = None,
    verbose: bool = True,
    progress: bool | None = None,
    step_fn: Callable | None = None,
) -> History:
    """Train a barebones model with :func:`training_step`, validating as it goes.

    Validation runs at every ``print_every``-th iteration and after each epoch.

    Args:
        model_fn: e.g. :func:`two_layer_fc`.
        init_fn: no-argument function returning the ``tf.Variable`` list; it is
            called under ``device``. The variables are trained in place.
        learning_rate: positive float.
        train_dset, val_dset: iterables of (x_batch, y_batch).
        num_epochs: passes over ``train_dset``.
        print_every: validate (and print, when verbose) every this many iterations.
        device: TensorFlow device; None picks the GPU when visible, else the CPU.
        seed: if given, seeds Python, NumPy and TensorFlow first (reproducible init).
        verbose: print the loss and validation accuracy lines.
        progress: show a progress line; None follows ``verbose``.
        step_fn: the step to use instead of :func:`training_step`, with the same
            signature ``(model_fn, x, y, params, learning_rate) -> loss``; the
            notebook passes the student's own ``training_step`` here.

    Returns:
        A :class:`History` of records ``{iteration, epoch, loss, val_accuracy}``
        (epoch 0-based; loss of that iteration's batch; accuracy in [0, 1]).

    Raises:
        TrainingDivergedError: the loss became NaN or infinite.
    """
    check_learning_rate(learning_rate)
    check_loop_args(num_epochs, print_every)
    if step_fn is not None and not callable(step_fn):
        raise TypeError(f"step_fn must be callable like training_step, got {step_fn!r}")
    step = training_step if step_fn is None else step_fn
    device = resolve_device(device)
    if seed is not None:
        set_seed(seed)
    history = History()
    total = len(train_dset) * num_epochs if hasattr(train_dset, "__len__") else None
    show_progress = verbose if progress is None else progress
    with tf.device(device), Progress(total, enabled=show_progress, description="train") as bar:
        params = init_fn()
        validate = functools.partial(_validate, bar, verbose, val_dset, model_fn, params)
        iteration, loss = 0, math.nan
        for epoch in range(num_epochs):
            for x_batch, y_batch in train_dset:
                loss = float(step(model_fn, x_batch, y_batch, params, learning_rate))
                check_loss(loss, iteration, learning_rate=learning_rate)
                bar.update(loss=loss)
                if iteration % print_every == 0:
                    history.append(validate(iteration, epoch, loss))
                iteration += 1
            if iteration and history.column("iteration")[-1] != iteration - 1:
                history.append(validate(iteration - 1, epoch, loss))  # end of the epoch
    return history


def _validate(bar, verbose, val_dset, model_fn, params, iteration, epoch, loss) -> dict:
    num_correct, num_samples = count_correct(val_dset, model_fn, params)
    if verbose:
        bar.write(f"Iteration {iteration}, loss = {loss:.4f}")
        bar.write(_accuracy_message(num_correct, num_samples))
    return {
        "iteration": iteration,
        "epoch": epoch,
        "loss": loss,
        "val_accuracy": num_correct / num_samples,
    }


def _accuracy_message(num_correct: int, num_samples: int) -> str:
    return f"Got {num_correct} / {num_samples} correct ({100 * num_correct / num_samples:.2f}%)"


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
    """Check each weight matrix takes the previous layer's width (and its bias matches)."""
    width, source = x.shape[1], "the flattened input"
    for label, weight, bias in layers:
        shape = tf.TensorShape(weight.shape)
        if shape.rank != 2:
            raise ValueError(f"{name}: {label} must be 2-D, got shape {tuple(shape)}")
        if width is not None and shape[0] != width:
            raise ValueError(
                f"{name}: {label} has shape {tuple(shape)} but {source} has width "
                f"{width}; {label} must have shape ({width}, ...)"
            )
        if bias is not None and tuple(bias.shape) != (shape[1],):
            raise ValueError(
                f"{name}: bias for {label} has shape {tuple(bias.shape)}, expected ({shape[1]},)"
            )
        width, source = shape[1], label


def _labels(y, x) -> tf.Tensor:
    y = tf.convert_to_tensor(y)
    if not y.dtype.is_integer or y.shape.rank != 1:
        raise ValueError(f"y must be a 1-D integer array of labels, got {y.dtype.name} {y.shape}")
    x_shape = tuple(getattr(x, "shape", ()))
    num_inputs = x_shape[0] if x_shape else None
    if num_inputs is not None and y.shape[0] is not None and y.shape[0] != num_inputs:
        raise ValueError(f"x has {num_inputs} examples but y has {y.shape[0]} labels")
    return y


def _check_variables(params) -> None:
    if not isinstance(params, (list, tuple)) or not all(
        isinstance(p, tf.Variable) for p in params
    ):
        raise TypeError(
            "training_step updates params in place, so they must be a list of tf.Variable "
            "(as returned by two_layer_fc_init); wrap tensors with tf.Variable(...)"
        )


def _check_sizes(**sizes: int) -> list[int]:
    for name, value in sizes.items():
        if not is_positive_int(value):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    return [int(value) for value in sizes.values()]


def _dense_variables(sizes: list[int], seed: int | None, dtype, *, biases: bool) -> list:
    params = []
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        layer_seed = None if seed is None else checked_seed(seed) + layer
        params.append(tf.Variable(kaiming_normal((fan_in, fan_out), seed=layer_seed, dtype=dtype)))
        if biases:
            params.append(tf.Variable(tf.zeros((fan_out,), dtype=dtype)))
    return params
