"""Ensembles: average the class probabilities of several trained networks.

Averaging probabilities (not labels) of models trained with different seeds
cancels part of their independent errors; on CIFAR-10 MLPs it typically adds
a few points of accuracy for the price of training the members.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from cifar_lab.checks import check_bool, check_int
from cifar_lab.metrics import accuracy
from cifar_lab.tuning.config import MLPConfig

if TYPE_CHECKING:
    import keras

    from cifar_lab.tuning.train import TrainedMLP


def average_probabilities(
    probabilities: Sequence[np.ndarray] | np.ndarray,
    weights: Sequence[float] | None = None,
) -> np.ndarray:
    """Weighted mean of the members' class probabilities.

    Args:
        probabilities: M arrays of shape (N, C), or one array (M, N, C); each row
            a probability vector.
        weights: M non-negative weights, not all zero (default: equal); normalised here.

    Returns:
        float64 (N, C): ``sum_m w_m p_m / sum_m w_m``.
    """
    stacked = np.asarray(probabilities, dtype=np.float64)
    if stacked.ndim != 3 or stacked.shape[0] == 0:
        raise ValueError(f"need M >= 1 arrays of shape (N, C); got shape {stacked.shape}")
    if weights is None:
        return stacked.mean(axis=0)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (stacked.shape[0],) or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(
            f"weights must be {stacked.shape[0]} non-negative numbers, not all 0; got {weights}"
        )
    return np.tensordot(weights / weights.sum(), stacked, axes=1)


def predict_probabilities(
    model: keras.Model, X: np.ndarray, *, from_logits: bool = True, batch_size: int = 1024
) -> np.ndarray:
    """Class probabilities of one model.

    Args:
        model: maps X to logits (``from_logits=True``) or to probabilities.
        X: the model's input, e.g. float32 (N, 32, 32, 3).
        from_logits: apply a softmax to the outputs.
        batch_size: images per forward pass.

    Returns:
        float32 (N, C) probabilities.
    """
    check_bool("from_logits", from_logits)
    check_int("batch_size", batch_size, minimum=1)
    outputs = np.asarray(model.predict(X, batch_size=batch_size, verbose=0), dtype=np.float32)
    if not from_logits:
        return outputs
    shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))  # stable softmax
    return shifted / shifted.sum(axis=1, keepdims=True)


def train_ensemble(
    config: MLPConfig,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    members: int = 3,
    verbose: bool = True,
    build: Callable[[MLPConfig], keras.Model] | None = None,
) -> list[TrainedMLP]:
    """Train ``members`` copies of a config that differ only in their seed.

    Args:
        config: the member config; member ``i`` uses ``seed = config.seed + i``.
        X_train: float32 (N, 32, 32, 3) standardised images. y_train: int (N,).
        X_val: float32 (M, 32, 32, 3). y_val: int (M,).
        members: how many networks, at least 1.
        verbose: per-epoch lines, and each member's and the ensemble's val accuracy.
        build: optional network builder ``build(config) -> keras.Model`` (see
            :func:`cifar_lab.tuning.train.train_config`).

    Returns:
        The trained members (see :class:`cifar_lab.tuning.train.TrainedMLP`).
    """
    from cifar_lab.tuning.train import train_config

    if not isinstance(config, MLPConfig):
        raise TypeError(f"config must be an MLPConfig, got {type(config).__name__}")
    check_int("members", members, minimum=1)  # before any training
    trained, probabilities = [], []
    for index in range(members):
        member = train_config(
            config.replace(seed=config.seed + index), X_train, y_train, X_val, y_val,
            verbose=verbose, build=build,
        )  # fmt: skip
        trained.append(member)
        if verbose and members > 1:  # one network: its epochs already said it all
            probabilities.append(predict_probabilities(member.model, X_val))
            single = accuracy(y_val, probabilities[-1])
            mean = accuracy(y_val, average_probabilities(probabilities))
            print(f"member {index + 1}/{members}: val_acc {single:.4f}; ensemble {mean:.4f}")
    return trained


def raw_pixel_ensemble(
    models: Sequence[keras.Model],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    flip_tta: bool = False,
    name: str = "raw_pixel_classifier",
) -> keras.Model:
    """One Keras model that averages the class probabilities of several networks.

    Each member is wrapped by :func:`cifar_lab.tuning.layers.raw_pixel_model` (raw
    pixels in, probabilities out) and the members' outputs are averaged by a
    built-in ``Average`` layer, so plain Keras still reloads the saved model.
    Every member sees the whole image: the ensemble is as dense-only as its members.

    Args:
        models: M >= 1 networks, each float32 (N, 32, 32, 3) standardised images
            -> float32 logits (N, C).
        mean, std: per-channel statistics (3,) of the raw training pixels.
        flip_tta: each member averages the logits of the image and its mirror.
        name: name of the returned model.

    Returns:
        uint8 or float (N, 32, 32, 3) raw pixels -> float32 (N, C) probabilities;
        for one network exactly ``raw_pixel_model(model, ...)``, and otherwise its
        members are the nested models ``member_1`` ... ``member_M``.
    """
    import keras

    from cifar_lab.tuning.layers import raw_pixel_model

    if isinstance(models, keras.Model) or not isinstance(models, Sequence):
        raise TypeError(
            f"models must be a list of keras.Model, got {type(models).__name__}; "
            "pass [network] for one, or [member.model for member in trained]"
        )
    models = list(models)
    if not models:
        raise ValueError("need at least one network to build an ensemble; got none")
    for model in models:
        if not isinstance(model, keras.Model):
            raise TypeError(
                f"each member must be a keras.Model, got {type(model).__name__}; "
                "pass [member.model for member in trained]"
            )
    if len(models) == 1:
        return raw_pixel_model(models[0], mean, std, flip_tta=flip_tta, name=name)
    inputs = keras.Input(shape=(32, 32, 3), name="raw_pixels")
    outputs = [
        raw_pixel_model(model, mean, std, flip_tta=flip_tta, name=f"member_{index}")(inputs)
        for index, model in enumerate(models, start=1)
    ]
    averaged = keras.layers.Average(name="ensemble_average")(outputs)
    return keras.Model(inputs, averaged, name=name)
