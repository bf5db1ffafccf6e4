"""Classification metrics on NumPy arrays of labels (and, for accuracy, of class scores).

:func:`evaluate_model` is the one way a model is scored on a labelled split: the
student's Part V test accuracy and the grader's check of it both come from it.
"""

from __future__ import annotations

import numpy as np

from cifar_lab.checks import check_int


def _check_labels(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(
            f"y_true and y_pred must be 1-D arrays of equal length; got {y_true.shape} "
            f"and {y_pred.shape} (take scores.argmax(axis=1) first)"
        )
    return y_true, y_pred


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of correct predictions, from predicted labels or from class scores.

    Args:
        y_true: int labels, shape (N,).
        y_pred: predicted int labels (N,), or class scores (N, C): logits or
            probabilities, whose largest entry in each row is the prediction.

    Returns:
        Accuracy in [0, 1] as a Python float.

    Raises:
        ValueError: the shapes do not match, or N is 0.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 1:
        raise ValueError(
            f"y_true must be int labels of shape (N,), got shape {y_true.shape}; "
            "the order is accuracy(y_true, y_pred), labels first"
        )
    if y_pred.ndim == 2:
        if y_pred.shape[0] != y_true.shape[0] or y_pred.shape[1] == 0:
            raise ValueError(
                f"y_pred scores of shape {y_pred.shape} need one row of C >= 1 scores "
                f"per label; y_true has {y_true.shape[0]} labels"
            )
        y_pred = y_pred.argmax(axis=1)
    y_true, y_pred = _check_labels(y_true, y_pred)
    if y_true.size == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float(np.mean(y_true == y_pred))


EVALUATION_BATCH = 1024  # images per forward pass when a model is scored on a split


def evaluate_model(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int = 10,
    batch_size: int = EVALUATION_BATCH,
) -> tuple[float, np.ndarray]:
    """Score a model on a labelled split: batched forward passes, then :func:`accuracy`.

    The student's Part V claim (``TestSplit.evaluate``) and the grader's check of
    it call this one function, so both see the same batches and the same arithmetic.
    Direct calls (not ``model.predict``) trace nothing per model.

    Args:
        model: a Keras model (or any callable taking ``training=False``) mapping
            images (B, H, W, C) to class scores (B, num_classes).
        images: the split's images (N, H, W, C) as the model takes them; fed as float32.
        labels: int labels (N,).
        num_classes: the number of score columns the model must return.
        batch_size: images per forward pass.

    Returns:
        (accuracy in [0, 1] as a Python float, predicted labels int64 (N,)).

    Raises:
        ValueError: the model's scores are not (N, num_classes), or N is 0.
    """
    batch_size = check_int("batch_size", batch_size, minimum=1)
    labels = np.asarray(labels)
    scores = [
        np.asarray(
            model(np.asarray(images[start : start + batch_size], np.float32), training=False)
        )
        for start in range(0, len(labels), batch_size)
    ]
    scores = np.concatenate(scores) if scores else np.zeros((0, num_classes), np.float32)
    if scores.shape != (len(labels), num_classes):
        raise ValueError(
            f"the model must map images to class scores (N, {num_classes}); "
            f"got shape {scores.shape} for N = {len(labels)}"
        )
    predictions = scores.argmax(axis=1)
    return accuracy(labels, predictions), predictions


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """Count predictions per (true class, predicted class).

    Args:
        y_true: int labels in 0..num_classes-1, shape (N,).
        y_pred: int predicted labels, shape (N,).
        num_classes: number of classes C.

    Returns:
        int64 array (C, C); row i, column j counts true class i predicted as j.
    """
    num_classes = check_int("num_classes", num_classes, minimum=1)
    y_true, y_pred = _check_labels(y_true, y_pred)
    for name, labels in (("y_true", y_true), ("y_pred", y_pred)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{name} must lie in 0..{num_classes - 1}")
    flat = y_true.astype(np.int64) * num_classes + y_pred.astype(np.int64)
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)
