"""Parts III-IV: the custom training loop for Keras models, and evaluation.

:func:`train_part34` runs the reference's GradientTape loop: :func:`gradient_step`,
plain code, once per minibatch. :class:`~cifar_lab.compiled_step.TrainStep` traces it
once with ``tf.function``; that module says where XLA is used and how the step falls
back when XLA cannot compile it. The
bookkeeping (seeding, the NaN check, the validation schedule, the records) is
:class:`~cifar_lab.history.TrainingLog`'s, shared with Part II's ``train_part2``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import keras
import tensorflow as tf

from cifar_lab.checks import check_bool_or_auto, check_int, check_optional_int
from cifar_lab.compiled_step import Evaluation, Evaluator, JitCompile, TrainStep
from cifar_lab.devices import resolve_device
from cifar_lab.history import History, TrainingLog
from cifar_lab.models import classification_loss

__all__ = ["Evaluation", "evaluate", "gradient_step", "train_part34"]


def gradient_step(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    x: tf.Tensor,
    y: tf.Tensor,
    *,
    loss_fn: Callable,
    accuracy: keras.metrics.Metric,
    is_training: bool = True,
) -> tf.Tensor:
    """One step of gradient descent on the batch (x, y): forward, loss, gradients, update.

    Args:
        model: a Keras model mapping float32 x (N, ...) to logits (N, C).
        optimizer: a Keras optimizer; it updates ``model.trainable_variables``.
        x: float32 inputs (N, ...); y: int labels (N,).
        loss_fn: ``loss_fn(y, logits)``, the scalar mean over the batch.
        accuracy: a ``SparseCategoricalAccuracy`` the batch is added to.
        is_training: passed to the model as ``training=`` (dropout, batch norm).

    Returns:
        The batch's scalar loss, computed with the weights before the update.
    """
    with tf.GradientTape() as tape:
        scores = model(x, training=is_training)
        loss = loss_fn(y, scores)
        if model.losses:  # regularisation terms added by layers
            loss += tf.add_n(model.losses)
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
    accuracy.update_state(y, scores)
    return loss


def evaluate(
    model: keras.Model,
    dset: Iterable,
    *,
    device: str | None = None,
    jit_compile: JitCompile = "auto",
) -> Evaluation:
    """Mean softmax cross-entropy loss and accuracy of a logits model over a dataset.

    Args:
        model: a Keras model mapping float32 (N, ...) to logits (N, C).
        dset: iterable of (x_batch, y_batch); y int labels of shape (N,).
        device: TensorFlow device; None picks the GPU when visible, else the CPU.
        jit_compile: True, False or "auto" (see :class:`Evaluator`).

    Returns:
        ``Evaluation(loss, accuracy)``: per-example mean loss, accuracy in [0, 1].
    """
    device = resolve_device(device)
    with tf.device(device):
        return Evaluator(model, jit_compile=jit_compile, device=device)(dset)


def train_part34(
    model_init_fn: Callable[[], keras.Model],
    optimizer_init_fn: Callable[[], keras.optimizers.Optimizer],
    train_dset: Iterable,
    val_dset: Iterable,
    num_epochs: int = 1,
    is_training: bool = True,
    print_every: int = 700,
    device: str | None = None,
    *,
    seed: int | None = None,
    jit_compile: JitCompile = "auto",
    verbose: bool = True,
    progress: bool | None = None,
) -> tuple[keras.Model, History]:
    """Train a Keras model with a compiled GradientTape step, validating as it goes.

    Validation runs after every ``print_every``-th iteration (0, print_every,
    ...) and after the last iteration of each epoch, as in ``train_part2``.

    Args:
        model_init_fn: no-argument function returning a Keras model that outputs logits.
        optimizer_init_fn: no-argument function returning a Keras optimizer.
        train_dset, val_dset: iterables of (x_batch, y_batch): float32 (N, ...)
            inputs and int (N,) labels, e.g. :class:`cifar_lab.Dataset`.
        num_epochs: passes over ``train_dset``.
        is_training: passed to the model as ``training=`` during the updates.
        print_every: validate (and print, when verbose) every this many iterations.
        device: TensorFlow device; None picks the GPU when visible, else the CPU.
        seed: if given, seeds Python, NumPy, TensorFlow and Keras first.
        jit_compile: True, False or "auto" (see :class:`~cifar_lab.compiled_step.TrainStep`).
        verbose: print a line at each validation.
        progress: show a progress line; None follows ``verbose``.

    Returns:
        (model, history). ``history`` is a :class:`History` of records
        ``{iteration, epoch, loss, accuracy, val_loss, val_accuracy}``: epoch is
        0-based, loss and accuracy are running means over the epoch so far,
        accuracies are in [0, 1].

    Raises:
        TrainingDivergedError: the loss became NaN or infinite.
    """
    check_int("num_epochs", num_epochs, minimum=1)
    check_int("print_every", print_every, minimum=1)
    seed = check_optional_int("seed", seed, minimum=0)
    check_bool_or_auto("jit_compile", jit_compile)
    device = resolve_device(device)
    log = TrainingLog(
        train_dset, num_epochs, print_every, seed=seed, verbose=verbose, progress=progress
    )
    with tf.device(device), log:
        model = _checked(model_init_fn(), keras.Model, "model_init_fn")  # after the seeding
        optimizer = _checked(optimizer_init_fn(), keras.optimizers.Optimizer, "optimizer_init_fn")
        accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        plain_step = functools.partial(
            gradient_step,
            loss_fn=classification_loss(),
            accuracy=accuracy,
            is_training=is_training,
        )
        step = TrainStep(plain_step, model, optimizer, jit_compile=jit_compile, device=device)
        evaluator = Evaluator(model, jit_compile=jit_compile, device=device)
        validate = functools.partial(_validation, accuracy, evaluator, val_dset)
        learning_rate = functools.partial(_learning_rate, optimizer)
        for _epoch in log.epochs(validate, learning_rate=learning_rate):
            accuracy.reset_state()  # the training accuracy is a running mean per epoch
            for x_batch, y_batch in train_dset:
                loss = step(x_batch, y_batch)
                log.step(loss, len(y_batch))  # stops on NaN; validates when due
    return model, log.history


def _validation(
    accuracy: keras.metrics.Metric, evaluator: Evaluator, val_dset: Iterable
) -> dict[str, float]:
    val_loss, val_accuracy = evaluator(val_dset)
    return {
        "accuracy": float(accuracy.result()),
        "val_loss": val_loss,
        "val_accuracy": val_accuracy,
    }


def _learning_rate(optimizer: keras.optimizers.Optimizer) -> float | None:
    try:
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    except (AttributeError, TypeError, ValueError):  # e.g. a custom optimizer without one
        return None


def _checked(value, expected: type, producer: str):
    if not isinstance(value, expected):
        raise TypeError(
            f"{producer} must return a {expected.__module__}.{expected.__name__}, "
            f"got {type(value).__name__}"
        )
    return value
