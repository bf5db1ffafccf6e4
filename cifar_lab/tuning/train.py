"""Train an :class:`~cifar_lab.tuning.config.MLPConfig` with Keras ``fit``.

Batches are drawn and augmented in NumPy (:class:`cifar_lab.tuning.augment.AugmentedBatches`)
and fed to an XLA-compiled train step; whitening is fitted on the training
subset only. One concise line per epoch, switchable off with ``verbose=False``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from cifar_lab.data.formats import NUM_CLASSES
from cifar_lab.graph_memory import forget_traced_gradients
from cifar_lab.history import History
from cifar_lab.progress import Progress
from cifar_lab.seeding import set_seed
from cifar_lab.tuning.augment import AugmentedBatches
from cifar_lab.tuning.config import MLPConfig
from cifar_lab.tuning.layers import whitening_dense
from cifar_lab.tuning.network import build_mlp
from cifar_lab.tuning.optimizers import compile_mlp
from cifar_lab.tuning.whitening import WhiteningFit, fit_whitening

EpochHook = Callable[[dict[str, Any]], None]
# Keras traces fit's train and validation functions anew for every model: about a second of
# CPU per trial, more than a few steps cost eagerly (measured: 0.7-0.9 s eagerly against
# 1.8-2.2 s traced for a 2-step trial, same accuracies). Part V's quick-profile trials take
# 2 steps and there are about 65 of them, so a fit of at most this many steps runs eagerly.
EAGER_MAX_STEPS = 8
VALIDATION_BATCH = 1024  # images per validation batch after each epoch


@dataclass
class TrainedMLP:
    """What :func:`train_config` returns.

    Attributes:
        config: the config trained.
        model: the trained Keras model: float32 (N, 32, 32, 3) standardised images
            -> float32 logits (N, 10).
        whitening: the whitening fitted on the training subset, or None.
        history: one record per epoch: epoch (1-based), loss, accuracy, val_loss,
            val_accuracy, learning_rate, seconds (cumulative wall time).
        seconds: wall time of the whole call, whitening fit included.
        num_images: training images the network was fitted on: all those given, or
            the ``config.num_train`` subset (what Part V's final check reads).
    """

    config: MLPConfig
    model: keras.Model
    whitening: WhiteningFit | None
    history: History
    seconds: float
    num_images: int


def one_hot(labels: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Int labels (N,) in 0..num_classes-1 -> float32 one-hot targets (N, num_classes)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or (labels.size and not 0 <= labels.min() <= labels.max() < num_classes):
        raise ValueError(f"labels must be 1-D ints in 0..{num_classes - 1}; got {labels!r}")
    return np.eye(num_classes, dtype=np.float32)[labels]


def training_subset(
    X: np.ndarray, y: np.ndarray, size: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``size`` images of a seeded shuffle (all of them when size is None).

    Args:
        X: float32 (N, 32, 32, 3) images. y: (N, ...) labels or targets.
        size: images to keep, at most N, or None.
        seed: int seed of the shuffle.

    Returns:
        X (size, 32, 32, 3) float32 and y (size, ...), copies only when a subset is taken.
    """
    if size is None or size == len(X):
        return X, y
    if size > len(X):
        raise ValueError(f"num_train={size} but only {len(X)} training images were given")
    keep = np.sort(np.random.default_rng(seed).permutation(len(X))[:size])
    return X[keep], y[keep]


def train_config(
    config: MLPConfig,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    verbose: bool = True,
    on_epoch_end: EpochHook | None = None,
    build: Callable[[MLPConfig], keras.Model] | None = None,
    targets: np.ndarray | None = None,
) -> TrainedMLP:
    """Train the network a config describes and validate it after every epoch.

    Args:
        config: network, optimiser, augmentation and budget.
        X_train: float32 (N, 32, 32, 3) standardised training images.
        y_train: int (N,) labels in 0..9.
        X_val: float32 (M, 32, 32, 3) validation images. y_val: int (M,) labels.
        verbose: print one line per epoch and a progress line within long epochs.
        on_epoch_end: called with each epoch's record; it may raise (e.g.
            ``optuna.TrialPruned``) to stop training early.
        build: your own network builder, ``build(config) -> keras.Model``
            (standardised images -> logits), used instead of :func:`build_mlp`;
            it needs ``config.whitening == "none"``.
        targets: float32 (N, 10) probability rows to train on instead of the one-hot
            ``y_train`` (e.g. :func:`cifar_lab.tuning.distillation.soft_targets`);
            validation still uses ``y_val``.

    Returns:
        A :class:`TrainedMLP`.
    """
    start = time.perf_counter()
    _check_split("train", X_train, y_train)
    _check_split("validation", X_val, y_val)
    fit_targets = one_hot(y_train) if targets is None else _check_targets(targets, len(X_train))
    set_seed(config.seed)
    X_fit, fit_targets = training_subset(X_train, fit_targets, config.num_train, config.seed)
    whitening = None
    if config.whitening != "none":  # fitted on the training subset only: no leak from val/test
        whitening = fit_whitening(
            X_fit, config.whitening,
            components=config.whitening_components, epsilon=config.whitening_epsilon,
        )  # fmt: skip
    if build is not None and whitening is not None:
        raise ValueError("whitening needs build_mlp; with build= set whitening='none'")
    X_check = X_val
    if whitening is not None and config.augment_whitened:
        # ZCA output keeps the pixel layout, so the whitened images are images again
        X_fit = whitening.transform(X_fit).reshape(X_fit.shape)
        X_check = whitening.transform(X_val).reshape(X_val.shape)
    batches = AugmentedBatches(
        X_fit, fit_targets, min(config.batch_size, len(X_fit)),
        flip=config.flip, translate=config.translate, noise_std=config.noise_std,
        seed=config.seed,
    )  # fmt: skip
    if build is not None:
        network = build(config)
    elif config.augment_whitened:  # the data is whitened already: train without the layer
        network = build_mlp(config.replace(whitening="none", augment_whitened=False))
    else:
        network = build_mlp(config, whitening=whitening)
    model = compile_mlp(network, config, len(batches))
    if not config.jit_compile and config.epochs * len(batches) <= EAGER_MAX_STEPS:
        model.run_eagerly = True  # see EAGER_MAX_STEPS
    history = History()
    report = _EpochReport(config.epochs, len(batches), history, start, verbose, on_epoch_end)
    try:  # without these two, TensorFlow keeps model and data alive (issue #11)
        with forget_traced_gradients():
            model.fit(
                batches,
                epochs=config.epochs,
                validation_data=validation_batches(X_check, y_val),
                callbacks=[report],
                verbose=0,
            )
    finally:
        batches.release()  # TF keeps the generator until clear_session(); not its data
    if config.augment_whitened:
        model = whitened_input(model, whitening)
    seconds = time.perf_counter() - start
    return TrainedMLP(config, model, whitening, history, seconds, num_images=len(X_fit))


def whitened_input(network: keras.Model, whitening: WhiteningFit) -> keras.Model:
    """Put the fixed ZCA layer in front of a network trained on whitened images.

    The layer computes in float32, as the training images were whitened in NumPy.

    Args:
        network: float32 (N, 32, 32, 3) ZCA-whitened images -> logits (N, 10).
        whitening: the ZCA fit the training images were whitened with.

    Returns:
        A ``keras.Model``: float32 (N, 32, 32, 3) standardised images -> logits (N, 10),
        built-in layers only, sharing ``network``'s weights.
    """
    inputs = keras.Input(shape=(32, 32, 3), name="images")
    rows = keras.layers.Flatten(name="flatten_for_whitening")(inputs)
    whitened = whitening_dense(whitening, dtype="float32")(rows)
    images = keras.layers.Reshape((32, 32, 3), name="whitened_images")(whitened)
    return keras.Model(inputs, network(images), name=network.name)


def validation_batches(X_val: np.ndarray, y_val: np.ndarray):
    """The validation split for ``fit``: :data:`VALIDATION_BATCH`-image batches, in order.

    The batches Keras would cut from the arrays, built as a plain ``tf.data`` pipeline:
    from arrays, Keras builds one that can shuffle and slice (an index dataset and mapped
    functions), about 0.05 s of CPU more per ``fit``, and Part V's quick sweeps run ~65
    fits of about 0.4 s each.

    Args:
        X_val: float32 (M, 32, 32, 3) validation images. y_val: int (M,) labels.

    Returns:
        A ``tf.data.Dataset`` of (float32 (B, 32, 32, 3), float32 one-hot (B, 10)) batches.
    """
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((X_val, one_hot(y_val))).batch(VALIDATION_BATCH)


def _check_split(name: str, X: np.ndarray, y: np.ndarray) -> None:
    if not isinstance(X, np.ndarray) or X.ndim != 4 or X.shape[1:] != (32, 32, 3):
        raise ValueError(f"X_{name} must be a NumPy array (N, 32, 32, 3); got {np.shape(X)}")
    if X.dtype != np.float32:
        raise TypeError(f"X_{name} must be standardised float32 images, got {X.dtype}")
    if np.shape(y) != (len(X),):
        raise ValueError(f"y_{name} must have shape ({len(X)},), got {np.shape(y)}")


def _check_targets(targets: np.ndarray, count: int) -> np.ndarray:
    if not isinstance(targets, np.ndarray):
        raise TypeError(f"targets must be a NumPy array (N, 10), got {type(targets).__name__}")
    if targets.shape != (count, NUM_CLASSES):
        raise ValueError(f"targets must have shape ({count}, {NUM_CLASSES}), got {targets.shape}")
    targets = targets.astype(np.float32, copy=False)
    rows = targets.sum(axis=1)
    valid = np.isfinite(targets).all() and (targets >= 0).all()
    if not valid or not np.allclose(rows, 1, atol=1e-3):
        raise ValueError(
            "targets must be probability rows (non-negative, each summing to 1); "
            f"row sums range {rows.min():.4g}..{rows.max():.4g}: normalise them, or pass "
            "one_hot(labels)"
        )
    return targets


class _EpochReport(keras.callbacks.Callback):
    """Record each epoch, print one line, and show one progress display for the whole fit."""

    def __init__(
        self, epochs: int, steps: int, history: History, start: float, verbose: bool,
        hook: EpochHook | None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.epochs, self.steps, self.history = epochs, steps, history
        self.start, self.verbose, self.hook = start, verbose, hook
        self.bar = Progress(None, enabled=False)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.bar = Progress(self.epochs * self.steps, enabled=self.verbose)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.bar.description = f"epoch {epoch + 1}/{self.epochs}"

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.bar.update(loss=float(logs["loss"]) if logs and "loss" in logs else None)

    def on_train_end(self, logs: dict | None = None) -> None:
        self.bar.close()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        record = {"epoch": epoch + 1}
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            record[key] = float(logs[key])
        # the schedule's value at the optimiser's current step
        record["learning_rate"] = float(np.asarray(self.model.optimizer.learning_rate))
        record["seconds"] = time.perf_counter() - self.start
        self.history.append(record)
        if self.verbose:
            self.bar.write(_epoch_line(record, self.epochs))
        if self.hook is not None:
            self.hook(record)


def _epoch_line(record: dict[str, Any], epochs: int) -> str:
    return (
        f"epoch {record['epoch']:>3}/{epochs}  loss {record['loss']:.4f}  "
        f"acc {record['accuracy']:.4f}  val_loss {record['val_loss']:.4f}  "
        f"val_acc {record['val_accuracy']:.4f}  lr {record['learning_rate']:.2e}  "
        f"{record['seconds']:.0f} s"
    )


class MLPObjective:
    """Sweep objective: train ``base.replace(**params)`` and return its final val accuracy.

    Records on the trial: ``config`` (dict) and ``history`` (per-epoch records,
    updated every epoch, so pruned trials keep their partial curves). Reports
    each epoch's validation accuracy so the study's pruner can stop it.
    Picklable, so :func:`cifar_lab.tuning.sweeps.run_workers` can ship it to workers.

    Args:
        base: config that every trial starts from.
        X_train: float32 (N, 32, 32, 3) standardised training images. y_train: int (N,).
        X_val: float32 (M, 32, 32, 3) validation images. y_val: int (M,).
        verbose: print each trial's epoch lines.
        build: optional network builder passed to :func:`train_config` (a function
            defined in a notebook does not pickle for :func:`run_workers`).
    """

    def __init__(
        self,
        base: MLPConfig,
        X_train: np.ndarray,
        y_train: np.ndarray,
        X_val: np.ndarray,
        y_val: np.ndarray,
        *,
        verbose: bool = False,
        build: Callable[[MLPConfig], keras.Model] | None = None,
    ) -> None:
        if not isinstance(base, MLPConfig):
            raise TypeError(f"base must be an MLPConfig, got {type(base).__name__}")
        _check_split("train", X_train, y_train)
        _check_split("validation", X_val, y_val)
        self.base, self.verbose, self.build = base, verbose, build
        self.data = (X_train, y_train, X_val, y_val)

    def __call__(self, trial: Any, params: dict[str, Any]) -> float:
        import optuna

        config = self.base.replace(**params)
        trial.set_user_attr("config", config.to_dict())
        history: list[dict[str, Any]] = []

        def report(record: dict[str, Any]) -> None:
            history.append(record)
            trial.set_user_attr("history", history)
            trial.report(record["val_accuracy"], record["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {record['epoch']}")

        try:
            train_config(
                config, *self.data, verbose=self.verbose, on_epoch_end=report, build=self.build
            )
        finally:
            keras.backend.clear_session()  # free this trial's graphs, pruned or not
        return history[-1]["val_accuracy"]
