"""Part II training: accuracy checks and the training loop around the student's SGD step.

The models live in notebook 02 and :mod:`cifar_lab.barebones`; the step that
computes the loss under ``tf.GradientTape`` and updates the weights by hand is
the student's ``training_step`` (an exercise of notebook 02), which the loop
calls on every minibatch::

    params = init_fn()
    history = train_part2(two_layer_fc, lambda: params, 1e-2, train_dset, val_dset,
                          step_fn=training_step)

``params`` is updated in place, so keeping a reference to it, as above, keeps
the trained weights.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

from cifar_lab.barebones import ModelFn
from cifar_lab.checks import check_int, check_number, check_optional_int
from cifar_lab.devices import resolve_device
from cifar_lab.history import History, TrainingLog

# step_fn(model_fn, x, y, params, learning_rate) -> the batch's mean loss, as notebook 02's
# training_step: it updates params in place.
StepFn = Callable[[ModelFn, tf.Tensor, tf.Tensor, Sequence[tf.Variable], float], tf.Tensor]


def check_accuracy(dset: Iterable, model_fn: ModelFn, params: Sequence[tf.Variable]) -> float:
    """Classify every batch of ``dset`` and print ``Got N / M correct (P%)``.

    Args:
        dset: iterable of (x_batch, y_batch), e.g. a :class:`cifar_lab.Dataset`.
        model_fn: maps (x, params) to scores (N, C).
        params: the parameters to evaluate.

    Returns:
        The accuracy, a float in [0, 1].
    """
    _, num_correct, num_samples = tally(dset, model_fn, params)
    print(f"Got {num_correct} / {num_samples} correct ({100 * num_correct / num_samples:.2f}%)")
    return num_correct / num_samples


def tally(
    dset: Iterable, model_fn: ModelFn, params: Sequence[tf.Variable]
) -> tuple[float, int, int]:
    """Return (summed softmax cross-entropy loss, correctly classified, total) over ``dset``."""
    total_loss, num_correct, num_samples = 0.0, 0, 0
    for x_batch, y_batch in dset:
        scores = model_fn(x_batch, params)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=_labels(y_batch, x_batch), logits=scores
        )
        total_loss += float(tf.reduce_sum(losses))
        num_correct += int(np.sum(np.argmax(scores.numpy(), axis=1) == np.asarray(y_batch)))
        num_samples += len(y_batch)
    if num_samples == 0:
        raise ValueError("the dataset is empty; there is nothing to check accuracy on")
    return total_loss, num_correct, num_samples


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
    step_fn: StepFn,
    seed: int | None = None,
    verbose: bool = True,
    progress: bool | None = None,
) -> History:
    """Train a barebones model with the SGD step ``step_fn``, validating as it goes.

    The bookkeeping (seeding, the NaN check, when to validate, the records) is
    :class:`cifar_lab.history.TrainingLog`'s, shared with ``train_part34``:
    validation runs after every ``print_every``-th iteration (0, print_every,
    ...) and after the last iteration of each epoch.

    Args:
        model_fn: e.g. :func:`two_layer_fc`.
        init_fn: no-argument function returning the list of ``tf.Variable``
            that ``model_fn`` reads; it is called under ``device``. The
            variables are trained in place.
        learning_rate: positive float.
        train_dset, val_dset: iterables of (x_batch, y_batch).
        num_epochs: passes over ``train_dset``.
        print_every: validate (and print, when verbose) every this many iterations.
        device: TensorFlow device; None picks the GPU when visible, else the CPU.
        step_fn: one SGD step, ``step_fn(model_fn, x, y, params, learning_rate)``,
            that updates ``params`` in place and returns the batch's mean loss
            before the update; the notebook passes the student's ``training_step``.
        seed: if given, seeds Python, NumPy, TensorFlow and Keras first (reproducible init).
        verbose: print a line at each validation.
        progress: show a progress line; None follows ``verbose``.

    Returns:
        A :class:`History` of records ``{iteration, epoch, loss, accuracy,
        val_loss, val_accuracy}``, as ``train_part34`` returns: epoch is 0-based,
        loss the running mean over the epoch so far, accuracies in [0, 1].
        ``accuracy`` (training) is None: the step returns only the loss.
        Its ``params`` attribute holds the trained variables, so that
        ``model_fn(x, history.params)`` is the trained model.

    Raises:
        TypeError: ``step_fn`` is not callable, or ``init_fn`` returned
            something other than a list of ``tf.Variable``.
        TrainingDivergedError: the loss became NaN or infinite.
    """
    check_number("learning_rate", learning_rate, minimum=0, minimum_inclusive=False)
    check_int("num_epochs", num_epochs, minimum=1)
    check_int("print_every", print_every, minimum=1)
    seed = check_optional_int("seed", seed, minimum=0)
    if not callable(step_fn):
        raise TypeError(f"step_fn must be callable like training_step, got {step_fn!r}")
    device = resolve_device(device)
    log = TrainingLog(
        train_dset, num_epochs, print_every, seed=seed, verbose=verbose, progress=progress
    )
    with tf.device(device), log:
        params = init_fn()  # after the log's seeding, so the initial weights repeat
        _check_variables(params)
        validate = functools.partial(_validation, val_dset, model_fn, params)
        for _epoch in log.epochs(validate, learning_rate=learning_rate):
            for x_batch, y_batch in train_dset:
                loss = step_fn(model_fn, x_batch, y_batch, params, learning_rate)
                log.step(loss, len(y_batch))  # stops on NaN; validates when due
    history = log.history
    history.params = params  # the trained model is model_fn with these (the grader scores it)
    return history


def _validation(val_dset: Iterable, model_fn: ModelFn, params) -> dict[str, float]:
    total_loss, num_correct, num_samples = tally(val_dset, model_fn, params)
    return {"val_loss": total_loss / num_samples, "val_accuracy": num_correct / num_samples}


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
        listed = isinstance(params, (list, tuple))
        found = [type(p).__name__ for p in params] if listed else type(params).__name__
        raise TypeError(
            "init_fn must return a list of tf.Variable, which the step updates in place; "
            f"got {found!r}. Wrap each tensor with tf.Variable(...)"
        )
