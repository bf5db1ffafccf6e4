"""Parts III-IV: a compiled custom training loop for Keras models, and evaluation.

:func:`train_part34` runs the reference's GradientTape loop with the step
compiled by ``tf.function``. XLA is asked for where it helps. Keras leaves it
off on CPU-only machines; on a GPU the whole step is compiled with XLA. On a
CPU the matrix products run faster in TensorFlow's own oneDNN kernels than in
XLA:CPU's, so only the optimizer update, a memory-bound element-wise pass over
every weight, is compiled with XLA, which fuses it into a single pass. If XLA
cannot compile an op, the step falls back to plain ``tf.function`` with a
warning. ``benchmarks/train_speed.py`` measures these choices.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterable
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from cifar_lab.devices import is_gpu, resolve_device
from cifar_lab.history import History, check_loop_args, check_loss
from cifar_lab.models import FROM_LOGITS, classification_loss
from cifar_lab.progress import Progress

JitCompile = bool | str  # True, False or "auto"

# Phrases TensorFlow uses when XLA cannot compile a graph (as opposed to a runtime error).
_XLA_COMPILE_ERRORS = (
    "Detected unsupported operations",
    "tf2xla conversion failed",
    "XLA_CPU_JIT",
    "XLA_GPU_JIT",
)


class Evaluation(NamedTuple):
    """Mean loss and accuracy over a dataset (both Python floats)."""

    loss: float
    accuracy: float


class _XlaFallback:
    """Call a function compiled with XLA; if XLA cannot compile it, rebuild it without."""

    def __init__(self, build: Callable[[bool], Callable], use_xla: bool, what: str) -> None:
        self._build, self.uses_xla, self._what = build, use_xla, what
        self._function = build(use_xla)

    def __call__(self, *args):
        try:
            return self._function(*args)
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as error:
            if not self.uses_xla or not any(text in str(error) for text in _XLA_COMPILE_ERRORS):
                raise
            # XLA compiles the whole graph before running any of it, so nothing was updated.
            warnings.warn(
                f"XLA could not compile {self._what} ({str(error).splitlines()[0][:200]}); "
                "falling back to tf.function without XLA.",
                RuntimeWarning,
                stacklevel=3,
            )
            self.uses_xla, self._function = False, self._build(False)
            return self._function(*args)


class TrainStep:
    """The compiled training step of :func:`train_part34`: forward, loss, gradients, update.

    Also accumulates the epoch's running training loss and accuracy in
    ``loss_metric`` and ``accuracy_metric`` (reset them with :meth:`reset_metrics`).

    Args:
        model: a Keras model returning logits (N, C).
        optimizer: a Keras optimizer; it is built for the model's variables.
        is_training: passed to the model as ``training=`` (dropout, batch norm).
        jit_compile: True (XLA for the whole step), False (no XLA) or "auto"
            (whole step on a GPU; only the optimizer update on a CPU).
        device: the device the step runs on; only used by ``jit_compile="auto"``.

    Calling it with (x, y), float32 (N, ...) inputs and int (N,) labels, runs
    one step and returns the batch's mean loss as a scalar tensor.
    """

    def __init__(
        self,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        *,
        is_training: bool = True,
        jit_compile: JitCompile = "auto",
        device: str = "/CPU:0",
    ) -> None:
        _check_jit_compile(jit_compile)
        self.model, self.optimizer, self.is_training = model, optimizer, bool(is_training)
        self.plan = _xla_plan(jit_compile, device)  # "step", "update" or "none"
        self.loss_fn = classification_loss()
        self.loss_metric = keras.metrics.Mean(name="loss")
        self.accuracy_metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self._compiled: _XlaFallback | None = None

    @property
    def uses_xla(self) -> bool:
        """Whether XLA compiles part of the step (False after a fallback)."""
        return self.plan != "none" and (self._compiled is None or self._compiled.uses_xla)

    def reset_metrics(self) -> None:
        """Start a new running average of the training loss and accuracy."""
        self.loss_metric.reset_state()
        self.accuracy_metric.reset_state()

    def __call__(self, x, y) -> tf.Tensor:
        if self._compiled is None:  # build variables eagerly: a retrace must not create any
            _probe(self.model, x)
            if not self.optimizer.built:
                self.optimizer.build(self.model.trainable_variables)
            self._compiled = _XlaFallback(self._build, self.plan != "none", "the training step")
        return self._compiled(x, y)

    def _build(self, use_xla: bool) -> Callable:
        variables = self.model.trainable_variables

        def apply(gradients):
            self.optimizer.apply_gradients(zip(gradients, variables, strict=True))

        if use_xla and self.plan == "update":
            apply = _tf_function(apply, jit_compile=True)

        def step(x, y):
            with tf.GradientTape() as tape:
                scores = self.model(x, training=self.is_training)
                loss = self.loss_fn(y, scores)
                if self.model.losses:  # regularisation terms added by layers
                    loss += tf.add_n(self.model.losses)
            apply(tape.gradient(loss, variables))
            self.loss_metric.update_state(loss, sample_weight=tf.shape(y)[0])
            self.accuracy_metric.update_state(y, scores)
            return loss

        return _tf_function(step, jit_compile=use_xla and self.plan == "step")


class Evaluator:
    """Compiled evaluation of one model, reusable across calls without retracing.

    Args:
        model: a Keras model returning logits (N, C).
        jit_compile: True, False or "auto" (XLA on a GPU only: on a CPU the
            forward pass is all matrix products, where XLA does not help).
        device: the device it runs on; only used by ``jit_compile="auto"``.
    """

    def __init__(
        self, model: keras.Model, *, jit_compile: JitCompile = "auto", device: str = "/CPU:0"
    ) -> None:
        _check_jit_compile(jit_compile)
        self.model = model
        self.loss_metric = keras.metrics.SparseCategoricalCrossentropy(from_logits=FROM_LOGITS)
        self.accuracy_metric = keras.metrics.SparseCategoricalAccuracy()
        use_xla = _xla_plan(jit_compile, device) == "step"
        self._compiled = _XlaFallback(self._build, use_xla, "the evaluation step")

    def __call__(self, dset: Iterable) -> Evaluation:
        """Return the mean loss and the accuracy of the model over ``dset``."""
        self.loss_metric.reset_state()
        self.accuracy_metric.reset_state()
        num_samples = 0
        for x_batch, y_batch in dset:
            if not self.model.built:
                _probe(self.model, x_batch)
            self._compiled(x_batch, y_batch)
            num_samples += len(y_batch)
        if num_samples == 0:
            raise ValueError("the dataset is empty; there is nothing to evaluate")
        return Evaluation(float(self.loss_metric.result()), float(self.accuracy_metric.result()))

    def _build(self, use_xla: bool) -> Callable:
        def step(x, y):
            scores = self.model(x, training=False)
            self.loss_metric.update_state(y, scores)
            self.accuracy_metric.update_state(y, scores)

        return _tf_function(step, jit_compile=use_xla)


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

    Validation runs at every ``print_every``-th iteration and after each epoch.

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
        jit_compile: True, False or "auto" (see :class:`TrainStep`).
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
    check_loop_args(num_epochs, print_every)
    _check_jit_compile(jit_compile)
    device = resolve_device(device)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    history = History()
    total = len(train_dset) * num_epochs if hasattr(train_dset, "__len__") else None
    show_progress = verbose if progress is None else progress
    with tf.device(device), Progress(total, enabled=show_progress, description="train") as bar:
        model = _checked(model_init_fn(), keras.Model, "model_init_fn")
        optimizer = _checked(optimizer_init_fn(), keras.optimizers.Optimizer, "optimizer_init_fn")
        step = TrainStep(
            model, optimizer, is_training=is_training, jit_compile=jit_compile, device=device
        )
        evaluator = Evaluator(model, jit_compile=jit_compile, device=device)
        validate = functools.partial(_validate, bar, verbose, step, evaluator, val_dset)
        iteration = 0
        for epoch in range(num_epochs):
            step.reset_metrics()
            for x_batch, y_batch in train_dset:
                loss = float(step(x_batch, y_batch))
                if not math.isfinite(loss):
                    check_loss(loss, iteration, learning_rate=_learning_rate(optimizer))
                bar.update(loss=loss)
                if iteration % print_every == 0:
                    history.append(validate(iteration, epoch))
                iteration += 1
            if iteration and history[-1]["iteration"] != iteration - 1:
                history.append(validate(iteration - 1, epoch))  # end of the epoch
    return model, history


def _validate(bar, verbose, step, evaluator, val_dset, iteration, epoch) -> dict:
    val_loss, val_accuracy = evaluator(val_dset)
    record = {
        "iteration": iteration,
        "epoch": epoch,
        "loss": float(step.loss_metric.result()),
        "accuracy": float(step.accuracy_metric.result()),
        "val_loss": val_loss,
        "val_accuracy": val_accuracy,
    }
    if verbose:
        bar.write(
            f"Iteration {iteration}, Epoch {epoch + 1}, Loss: {record['loss']:.4f}, "
            f"Accuracy: {100 * record['accuracy']:.2f}, Val Loss: {val_loss:.4f}, "
            f"Val Accuracy: {100 * val_accuracy:.2f}"
        )
    return record


def _learning_rate(optimizer: keras.optimizers.Optimizer) -> float | None:
    try:
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    except (AttributeError, TypeError, ValueError):  # e.g. a custom optimizer without one
        return None


def _probe(model: keras.Model, x) -> None:
    """Run the model eagerly on two examples: this builds it, and checks it returns logits."""
    scores = keras.ops.convert_to_numpy(model(x[:2], training=False))
    if scores.ndim != 2:
        raise ValueError(f"the model must return scores of shape (N, C), got {scores.shape}")
    if np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-4):
        warnings.warn(
            "the model's outputs look like softmax probabilities, but this course's loss "
            "expects logits (from_logits=True); remove the final softmax activation.",
            UserWarning,
            stacklevel=4,
        )


def _tf_function(function: Callable, *, jit_compile: bool) -> Callable:
    """``tf.function`` whose retracing count is this object's own.

    TensorFlow counts traces per code object, so every TrainStep would share one
    count and repeated training runs would trigger spurious "excessive
    retracing" warnings; a ``functools.partial`` is counted on its own.
    """
    return tf.function(functools.partial(function), jit_compile=jit_compile)


def _xla_plan(jit_compile: JitCompile, device: str) -> str:
    if jit_compile == "auto":
        return "step" if is_gpu(device) else "update"
    return "step" if jit_compile else "none"


def _check_jit_compile(jit_compile: JitCompile) -> None:
    if not (isinstance(jit_compile, bool) or jit_compile == "auto"):
        raise ValueError(f"jit_compile must be True, False or 'auto', got {jit_compile!r}")


def _checked(value, expected: type, producer: str):
    if not isinstance(value, expected):
        raise TypeError(
            f"{producer} must return a {expected.__module__}.{expected.__name__}, "
            f"got {type(value).__name__}"
        )
    return value
