"""Classification metrics on NumPy label arrays."""

from __future__ import annotations

import numpy as np


def _check_labels(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(
            f"y_true and y_pred must be 1-D arrays of equal length; got {y_true.shape} "
            f"and {y_pred.shape} (take scores.argmax(axis=1) first)"
        )
    return y_true, y_pred


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of correct predictions.

    Args:
        y_true: int labels, shape (N,).
        y_pred: int predicted labels, shape (N,).

    Returns:
        Accuracy in [0, 1] as a Python float.
    """
    y_true, y_pred = _check_labels(y_true, y_pred)
    if y_true.size == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """Count predictions per (true class, predicted class).

    Args:
        y_true: int labels in 0..num_classes-1, shape (N,).
        y_pred: int predicted labels, shape (N,).
        num_classes: number of classes C.

    Returns:
        int64 array (C, C); row i, column j counts true class i predicted as j.
    """
    y_true, y_pred = _check_labels(y_true, y_pred)
    for name, labels in (("y_true", y_true), ("y_pred", y_pred)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{name} must lie in 0..{num_classes - 1}")
    flat = y_true.astype(np.int64) * num_classes + y_pred.astype(np.int64)
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)
