"""Part V optimisers: the learning-rate schedule, optimiser and loss an MLPConfig names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cifar_lab.checks import check_int
from cifar_lab.tuning.config import MLPConfig

if TYPE_CHECKING:  # TensorFlow loads only when a model is compiled
    import keras
    from keras.optimizers.schedules import LearningRateSchedule


def build_schedule(config: MLPConfig, steps_per_epoch: int) -> float | LearningRateSchedule:
    """Return the learning rate: a float, or a schedule with linear warm-up.

    Args:
        config: uses ``learning_rate``, ``schedule``, ``warmup_epochs`` and ``epochs``.
        steps_per_epoch: optimiser steps in one epoch, at least 1.

    Returns:
        ``config.learning_rate`` for a constant rate without warm-up, otherwise a
        ``keras.optimizers.schedules.CosineDecay`` (``alpha=1`` keeps the rate
        constant after warm-up for the ``"constant"`` schedule).
    """
    import keras

    check_int("steps_per_epoch", steps_per_epoch, minimum=1)
    warmup_steps = round(config.warmup_epochs * steps_per_epoch)
    if config.schedule == "constant" and warmup_steps == 0:
        return config.learning_rate
    total_steps = config.epochs * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else config.learning_rate,
        decay_steps=max(total_steps - warmup_steps, 1),
        alpha=1.0 if config.schedule == "constant" else 0.0,
        warmup_target=config.learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def build_optimizer(config: MLPConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Return the optimiser a config names, with its learning-rate schedule.

    Args:
        config: uses ``optimizer``, ``momentum``, ``weight_decay`` and the schedule fields.
        steps_per_epoch: optimiser steps in one epoch.

    Returns:
        A fresh ``keras.optimizers.Optimizer``.
    """
    import keras

    rate = build_schedule(config, steps_per_epoch)
    decay = config.weight_decay or None  # Keras skips decoupled decay when None
    opt = keras.optimizers
    factories = {
        "sgd": lambda: opt.SGD(rate, weight_decay=decay),
        "momentum": lambda: opt.SGD(rate, momentum=config.momentum, weight_decay=decay),
        "nesterov": lambda: opt.SGD(
            rate, momentum=config.momentum, nesterov=True, weight_decay=decay
        ),
        "rmsprop": lambda: opt.RMSprop(rate, weight_decay=decay),
        "adam": lambda: opt.Adam(rate, weight_decay=decay),
        "adamw": lambda: opt.AdamW(rate, weight_decay=config.weight_decay),
    }
    return factories[config.optimizer]()


def compile_mlp(model: keras.Model, config: MLPConfig, steps_per_epoch: int) -> keras.Model:
    """Compile ``model`` with the config's optimiser, smoothed cross-entropy and accuracy.

    The loss takes one-hot float32 targets (N, 10) and logits (N, 10): Keras'
    sparse cross-entropy has no label smoothing.

    Returns:
        ``model``, compiled (XLA when ``config.jit_compile``).
    """
    import keras

    model.compile(
        optimizer=build_optimizer(config, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=config.label_smoothing
        ),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=config.jit_compile,
    )
    return model
