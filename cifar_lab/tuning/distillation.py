"""Distillation: train one network on the averaged predictions of several.

An ensemble of dense networks (:mod:`cifar_lab.tuning.ensembles`) beats each of
its members, but costs a forward pass per member. Hinton, Vinyals & Dean (2015)
train a single *student* on the teachers' class probabilities instead of (or
mixed with) the hard labels: the probabilities say which wrong classes look
alike, which is more information per image than one label.

Here the targets are computed once, before training, from each training image
and its mirror (offline distillation): the student's flips and shifts are drawn
as usual, and a small shift barely changes what the teachers would say. With
temperature 1 and a target that mixes the one-hot label and the teachers'
probabilities, cross-entropy splits into the two terms of the usual
distillation loss::

    CE(w * onehot + (1 - w) * p_teacher, q) = w * CE(onehot, q) + (1 - w) * CE(p_teacher, q)

so the student trains through :func:`cifar_lab.tuning.train.train_config` unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from cifar_lab.checks import check_bool, check_number
from cifar_lab.tuning.config import MLPConfig
from cifar_lab.tuning.ensembles import average_probabilities, predict_probabilities

if TYPE_CHECKING:
    import keras

    from cifar_lab.tuning.train import TrainedMLP


def soft_targets(
    teachers: Sequence[keras.Model],
    X: np.ndarray,
    y: np.ndarray,
    *,
    label_weight: float = 0.5,
    flip: bool = True,
) -> np.ndarray:
    """Training targets that mix the labels with the teachers' mean probabilities.

    Args:
        teachers: M >= 1 networks, each float32 (N, 32, 32, 3) images (as the
            student sees them) -> float32 logits (N, C).
        X: float32 (N, 32, 32, 3) training images.
        y: int (N,) labels in 0..C-1.
        label_weight: weight w of the one-hot label, in [0, 1]; 0 trains on the
            teachers alone, 1 on the labels alone.
        flip: average each teacher over the image and its mirror (the width axis),
            as the student is trained on both.

    Returns:
        float32 (N, C): ``w * onehot(y) + (1 - w) * mean_m p_m``; each row sums to 1.
    """
    import keras

    from cifar_lab.tuning.train import one_hot

    check_number("label_weight", label_weight, minimum=0, maximum=1)
    check_bool("flip", flip)
    if isinstance(teachers, keras.Model) or not isinstance(teachers, Sequence):
        raise TypeError(
            f"teachers must be a list of keras.Model, got {type(teachers).__name__}; "
            "pass [member.model for member in trained]"
        )
    if not teachers:
        raise ValueError("need at least one teacher network to distill from; got none")
    for teacher in teachers:
        if not isinstance(teacher, keras.Model):
            raise TypeError(f"each teacher must be a keras.Model, got {type(teacher).__name__}")
    X = np.asarray(X)
    if X.ndim != 4 or X.dtype != np.float32:
        raise ValueError(f"X must be float32 images (N, 32, 32, 3); got {X.dtype} {X.shape}")
    views = [X, X[:, :, ::-1]] if flip else [X]
    predicted = average_probabilities(
        [predict_probabilities(teacher, view) for teacher in teachers for view in views]
    )
    labels = one_hot(y, predicted.shape[1])
    if len(labels) != len(X):
        raise ValueError(f"X and y lengths differ: {len(X)} and {len(labels)}")
    return (label_weight * labels + (1 - label_weight) * predicted).astype(np.float32)


def distill(
    config: MLPConfig,
    teachers: Sequence[keras.Model],
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    label_weight: float = 0.5,
    verbose: bool = True,
) -> TrainedMLP:
    """Train the network ``config`` describes on the teachers' soft targets.

    Args:
        config: the student's network, optimiser, augmentation and budget.
        teachers: M >= 1 trained networks, float32 (N, 32, 32, 3) standardised
            images -> logits (N, 10), e.g. ``[m.model for m in train_ensemble(...)]``.
        X_train: float32 (N, 32, 32, 3) standardised training images. y_train: int (N,).
        X_val: float32 (M, 32, 32, 3) validation images. y_val: int (M,) labels;
            the student is validated on the labels, never on the teachers.
        label_weight: weight of the one-hot label in the targets (see :func:`soft_targets`).
        verbose: the student's per-epoch lines.

    Returns:
        The student, a :class:`~cifar_lab.tuning.train.TrainedMLP`; its training
        ``accuracy`` counts agreement with the targets' most likely class.
    """
    from cifar_lab.tuning.train import train_config

    if not isinstance(config, MLPConfig):
        raise TypeError(f"config must be an MLPConfig, got {type(config).__name__}")
    targets = soft_targets(teachers, X_train, y_train, label_weight=label_weight, flip=config.flip)
    return train_config(config, X_train, y_train, X_val, y_val, targets=targets, verbose=verbose)
