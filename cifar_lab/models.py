"""Parts III-IV: the two-layer network as a Keras model, written three ways.

:class:`TwoLayerFC` (subclassing), :func:`two_layer_sequential` and
:func:`two_layer_functional` build the same network, Flatten -> Dense(H, ReLU)
-> Dense(C), with the same layer names, He-normal kernels and zero biases.
Their weights are interchangeable, and with the same ``seed`` they start from
the same values.

Logits, not softmax. Every model in this course ends with a linear layer and
returns unnormalised scores (logits); the softmax lives inside the loss,
``SparseCategoricalCrossentropy(from_logits=True)`` (see
:func:`classification_loss`). Computing ``log(softmax(z))`` in one fused op
uses the log-sum-exp trick and stays finite when one logit dominates, whereas
a softmax layer followed by a log underflows to ``log(0) = -inf`` and its
gradient vanishes when the probabilities saturate. Predictions are unchanged:
``argmax`` of the logits equals ``argmax`` of the probabilities, so the
accuracy metrics work on logits directly. Call ``keras.ops.softmax`` on the
outputs when probabilities are needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from cifar_lab.checks import check_bool_or_auto, check_int, check_seed

FROM_LOGITS = True  # the one place the logits-or-probabilities choice is made


def classification_loss() -> keras.losses.Loss:
    """The course's loss: mean softmax cross-entropy on integer labels and logits."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=FROM_LOGITS)


class TwoLayerFC(keras.Model):
    """Two-layer fully connected network, written by subclassing ``keras.Model``.

    Args:
        hidden_size: H, the width of the hidden ReLU layer.
        num_classes: C, the number of output scores.
        seed: int for reproducible initial weights, or None.

    Call it on float inputs of shape (N, ...), e.g. (N, 32, 32, 3); it returns
    float32 logits of shape (N, C).
    """

    def __init__(self, hidden_size: int, num_classes: int, *, seed: int | None = None) -> None:
        super().__init__(name="two_layer_fc")
        self.hidden_size, self.num_classes, self.seed = hidden_size, num_classes, seed
        self.flatten, self.fc1, self.fc2 = _layers(hidden_size, num_classes, seed)

    def call(self, x, training: bool = False):
        """Return logits (N, C) for inputs x (N, ...); ``training`` is unused (no dropout)."""
        return self.fc2(self.fc1(self.flatten(x)))

    def get_config(self) -> dict:
        return {
            "hidden_size": self.hidden_size,
            "num_classes": self.num_classes,
            "seed": self.seed,
        }


def two_layer_sequential(
    input_shape: Sequence[int], hidden_size: int, num_classes: int, *, seed: int | None = None
) -> keras.Sequential:
    """The same two-layer network as a ``keras.Sequential`` stack.

    Args:
        input_shape: shape of one example, e.g. (32, 32, 3).
        hidden_size: H, the width of the hidden ReLU layer.
        num_classes: C, the number of output scores.
        seed: int for reproducible initial weights, or None.

    Returns:
        A built model mapping float32 (N, *input_shape) to logits (N, C).
    """
    shape = _check_input_shape(input_shape)
    flatten, fc1, fc2 = _layers(hidden_size, num_classes, seed)
    return keras.Sequential(
        [keras.Input(shape=shape), flatten, fc1, fc2], name="two_layer_sequential"
    )


def two_layer_functional(
    input_shape: Sequence[int], hidden_size: int, num_classes: int, *, seed: int | None = None
) -> keras.Model:
    """The same two-layer network built with the Keras functional API.

    Args:
        input_shape: shape of one example, e.g. (32, 32, 3).
        hidden_size: H, the width of the hidden ReLU layer.
        num_classes: C, the number of output scores.
        seed: int for reproducible initial weights, or None.

    Returns:
        A built model mapping float32 (N, *input_shape) to logits (N, C).
    """
    shape = _check_input_shape(input_shape)
    flatten, fc1, fc2 = _layers(hidden_size, num_classes, seed)
    inputs = keras.Input(shape=shape)
    scores = fc2(fc1(flatten(inputs)))
    return keras.Model(inputs=inputs, outputs=scores, name="two_layer_functional")


def compile_model(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    *,
    jit_compile: bool | str = "auto",
) -> keras.Model:
    """Compile a logits model for ``fit``/``evaluate`` with the course's loss and accuracy.

    Args:
        model: a Keras model returning logits (N, C).
        optimizer: e.g. ``keras.optimizers.SGD(learning_rate=1e-2)``.
        jit_compile: passed to ``model.compile`` ("auto" is Keras' rule: XLA
            only when a GPU is visible).

    Returns:
        The same model, compiled.
    """
    jit_compile = check_bool_or_auto("jit_compile", jit_compile)
    model.compile(
        optimizer=optimizer,
        loss=classification_loss(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
    )
    return model


def _layers(hidden_size: int, num_classes: int, seed: int | None) -> tuple:
    """Flatten and the two Dense layers, shared by all three ways of building the model."""
    hidden_size = check_int("hidden_size", hidden_size, minimum=1)
    num_classes = check_int("num_classes", num_classes, minimum=1)
    seed = None if seed is None else check_seed("seed", seed)
    seeds = (None, None) if seed is None else (seed, seed + 1)
    # He (Kaiming) init suits ReLU: VarianceScaling(scale=2, fan_in), as in the reference.
    fc1 = keras.layers.Dense(
        hidden_size,
        activation="relu",
        kernel_initializer=keras.initializers.HeNormal(seed=seeds[0]),
        name="fc1",
    )
    fc2 = keras.layers.Dense(
        num_classes, kernel_initializer=keras.initializers.HeNormal(seed=seeds[1]), name="fc2"
    )
    return keras.layers.Flatten(name="flatten"), fc1, fc2


def _check_input_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        raise TypeError(f"input_shape must be a tuple such as (32, 32, 3), got {input_shape!r}")
    if not input_shape or any(size is None for size in input_shape):
        raise ValueError(
            f"input_shape must be a non-empty tuple of positive ints such as (32, 32, 3), "
            f"got {tuple(input_shape)}; leave out the batch dimension"
        )
    return tuple(
        check_int(f"input_shape[{axis}]", size, minimum=1) for axis, size in enumerate(input_shape)
    )
