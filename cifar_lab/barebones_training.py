"""Part II training: the GradientTape SGD step, accuracy checks and the training loop.

The models live in :mod:`cifar_lab.barebones`; this module trains them with
plain ``tf.GradientTape`` and a hand-written SGD update::

    params = two_layer_fc_init(hidden_size=4000, seed=0)
    history = train_part2(two_layer_fc, lambda: params, 1e-2, train_dset, val_dset)

``params`` is updated in place, so keeping a reference to it, as above, keeps
the trained weights.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

from cifar_lab.barebones import ModelFn
from cifar_lab.devices import resolve_device
from cifar_lab.history import History, check_learning_rate, check_loop_args, check_loss
from cifar_lab.progress import Progress
from cifar_lab.seeding import set_seed


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
