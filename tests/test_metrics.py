"""Tests for metrics and plots."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

import cifar_lab as lab
from cifar_lab.data.formats import CLASS_NAMES
from cifar_lab.metrics import confusion_matrix


def test_confusion_matrix_matches_loop_reference():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    expected = np.zeros((4, 4), int)
    for t, p in zip(y_true, y_pred, strict=True):
        expected[t, p] += 1
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, 4), expected)
    assert lab.accuracy(y_true, y_pred) == pytest.approx(np.trace(expected) / 200)


def test_accuracy_takes_labels_or_scores():
    y_true = np.array([0, 1, 2, 1])
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [-1.0, 3.0, 0.0]])
    assert lab.accuracy(y_true, scores) == lab.accuracy(y_true, scores.argmax(axis=1)) == 0.75
    assert lab.accuracy(list(y_true), scores.tolist()) == 0.75  # array-likes too


def test_metrics_reject_bad_shapes_and_labels():
    with pytest.raises(ValueError, match="argmax"):
        confusion_matrix(np.zeros(3), np.zeros((3, 10)))
    with pytest.raises(ValueError, match="y_true has 3 labels"):
        lab.accuracy(np.zeros(3), np.zeros((4, 10)))
    with pytest.raises(ValueError, match="labels first"):
        lab.accuracy(np.zeros((3, 10)), np.zeros(3))
    with pytest.raises(ValueError, match="empty"):
        lab.accuracy(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match=r"0\.\.3"):
        confusion_matrix(np.array([0, 5]), np.array([0, 1]), 4)


def test_plots_draw_what_they_claim():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (60, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(60) % 10
    names = CLASS_NAMES
    grid = lab.show_class_samples(images, labels, names, samples_per_class=3)
    assert len(grid.axes) == 30 and grid.axes[0].get_title() == "airplane"
    history = [
        {"iteration": i, "loss": 2.0 - i / 10, "val_accuracy": i / 10, "val_loss": None}
        for i in range(5)
    ]
    curves = lab.plot_history(history)
    loss_axis, accuracy_axis = curves.axes
    assert len(loss_axis.lines) == 1 and len(accuracy_axis.lines) == 1
    np.testing.assert_allclose(accuracy_axis.lines[0].get_ydata(), [0, 0.1, 0.2, 0.3, 0.4])
    predictions = labels.copy()
    predictions[:7] = (predictions[:7] + 1) % 10
    matrix = lab.plot_confusion_matrix(labels, predictions, names)
    assert "88.3%" in matrix.axes[0].get_title()
    wrong = lab.show_misclassified(images, labels, predictions, names, num_images=5)
    assert "7 of 60" in wrong._suptitle.get_text() and len(wrong.axes) == 5
    with pytest.raises(TypeError, match="uint8"):
        lab.show_class_samples(images.astype(np.float32), labels, names)
    with pytest.raises(ValueError, match="iteration"):
        lab.plot_history([])
    per_epoch = lab.plot_history([{"epoch": e, "val_accuracy": e / 4} for e in range(1, 4)])
    assert per_epoch.axes[1].get_xlabel() == "epoch"
    np.testing.assert_allclose(per_epoch.axes[1].lines[0].get_xdata(), [1, 2, 3])
