"""How Parts III-IV compile their steps: the training step and an evaluation step.

The training step is plain code (:func:`cifar_lab.training.gradient_step`);
:class:`TrainStep` traces it once with ``tf.function``, and :class:`Evaluator`
does the same for evaluation. XLA is asked for where it helps. Keras leaves it
off on CPU-only machines; on a GPU the whole step is compiled with XLA. On a
CPU the matrix products run faster in TensorFlow's own oneDNN kernels than in
XLA:CPU's, so only the optimizer update, a memory-bound element-wise pass over
every weight, is compiled with XLA, which fuses it into a single pass.
``benchmarks/train_speed.py`` measures these choices.

Some ops have no XLA kernel (``tf.strings``, ``tf.py_function``, the image
transform behind ``keras.layers.RandomTranslation``). Then the step falls back
to plain ``tf.function``, with a warning; see :class:`XlaFallback`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterable
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from cifar_lab.checks import check_bool_or_auto
from cifar_lab.devices import is_gpu
from cifar_lab.models import FROM_LOGITS

JitCompile = bool | str  # True, False or "auto"

# What TensorFlow 2.21 raises when XLA cannot compile a graph, before running any of it:
# InvalidArgumentError for an op without an XLA kernel ("Detected unsupported operations",
# e.g. AsString, EagerPyFunc, ImageProjectiveTransformV3), UnimplementedError for a feature
# XLA lacks. Genuine runtime errors can share these types; see XlaFallback.
XLA_COMPILE_ERRORS = (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError)


class Evaluation(NamedTuple):
    """Mean loss and accuracy over a dataset (both Python floats)."""

    loss: float
    accuracy: float


class XlaFallback:
    """Call a function compiled with XLA; if XLA cannot compile it, rebuild it without.

    The fallback is chosen by exception type (:data:`XLA_COMPILE_ERRORS`), never
    by the message. Since a genuine error can have the same type, the call is
    retried without XLA and the switch is kept only if that retry succeeds; a
    genuine error is raised again by the retry, and XLA stays on. XLA compiles
    the whole graph before running any of it, so the failed attempt changed nothing.

    Args:
        build: ``build(use_xla)`` returns the function to call, compiled or not.
        use_xla: whether to try XLA first.
        what: what the function is, for the warning (e.g. "the training step").
    """

    def __init__(self, build: Callable[[bool], Callable], use_xla: bool, what: str) -> None:
        self._build, self.uses_xla, self._what = build, use_xla, what
        self._function = build(use_xla)

    def __call__(self, *args):
        if not self.uses_xla:
            return self._function(*args)
        try:
            return self._function(*args)
        except XLA_COMPILE_ERRORS as error:
            plain = self._build(False)
            result = plain(*args)  # a genuine error, not XLA's, is raised again here
            warnings.warn(
                f"XLA could not compile {self._what} ({type(error).__name__}: "
                f"{str(error).splitlines()[0][:200]}); falling back to tf.function without XLA.",
                RuntimeWarning,
                stacklevel=3,
            )
            self.uses_xla, self._function = False, plain
            return result


class TrainStep:
    """A plain training step, traced once by ``tf.function``, with XLA where it helps.

    Args:
        step: ``step(model, optimizer, x, y) -> loss``, plain TensorFlow code
            (:func:`cifar_lab.training.gradient_step` with its options bound).
        model: a Keras model returning logits (N, C).
        optimizer: a Keras optimizer; it is built for the model's variables.
        jit_compile: True (XLA for the whole step), False (no XLA) or "auto"
            (whole step on a GPU; only the optimizer update on a CPU).
        device: the device the step runs on; only used by ``jit_compile="auto"``.

    Calling it with (x, y), float32 (N, ...) inputs and int (N,) labels, runs
    one step and returns what ``step`` returns, the batch's mean loss.
    """

    def __init__(
        self,
        step: Callable,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        *,
        jit_compile: JitCompile = "auto",
        device: str = "/CPU:0",
    ) -> None:
        check_bool_or_auto("jit_compile", jit_compile)
        self.step, self.model, self.optimizer = step, model, optimizer
        self.plan = _xla_plan(jit_compile, device)  # "step", "update" or "none"
        self._compiled: XlaFallback | None = None

    @property
    def uses_xla(self) -> bool:
        """Whether XLA compiles part of the step (False after a fallback)."""
        return self.plan != "none" and (self._compiled is None or self._compiled.uses_xla)

    def __call__(self, x, y) -> tf.Tensor:
        if self._compiled is None:  # build variables eagerly: a retrace must not create any
            probe_model(self.model, x)
            if not self.optimizer.built:
                self.optimizer.build(self.model.trainable_variables)
            self._compiled = XlaFallback(self._build, self.plan != "none", "the training step")
        return self._compiled(x, y)

    def _build(self, use_xla: bool) -> Callable:
        optimizer = self.optimizer
        if use_xla and self.plan == "update":
            optimizer = _XlaUpdate(optimizer, self.model.trainable_variables)
        step = functools.partial(self.step, self.model, optimizer)
        return _tf_function(step, jit_compile=use_xla and self.plan == "step")


class _XlaUpdate:
    """The optimizer as the step sees it, with only its update compiled by XLA.

    On a CPU the update is a memory-bound element-wise pass over every weight;
    XLA fuses it into one pass (the matrix products stay in oneDNN).
    """

    def __init__(self, optimizer: keras.optimizers.Optimizer, variables: list) -> None:
        def update(gradients):
            optimizer.apply_gradients(zip(gradients, variables, strict=True))

        self._update = _tf_function(update, jit_compile=True)

    def apply_gradients(self, pairs: Iterable) -> None:
        self._update([gradient for gradient, _ in pairs])


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
        check_bool_or_auto("jit_compile", jit_compile)
        self.model = model
        self.loss_metric = keras.metrics.SparseCategoricalCrossentropy(from_logits=FROM_LOGITS)
        self.accuracy_metric = keras.metrics.SparseCategoricalAccuracy()
        use_xla = _xla_plan(jit_compile, device) == "step"
        self._compiled = XlaFallback(self._build, use_xla, "the evaluation step")

    def __call__(self, dset: Iterable) -> Evaluation:
        """Return the mean loss and the accuracy of the model over ``dset``."""
        self.loss_metric.reset_state()
        self.accuracy_metric.reset_state()
        num_samples = 0
        for x_batch, y_batch in dset:
            if not self.model.built:
                probe_model(self.model, x_batch)
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


def probe_model(model: keras.Model, x) -> None:
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
