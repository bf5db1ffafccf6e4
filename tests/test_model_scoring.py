"""One way to score a model on a labelled split, for the student's claim and the grader's check."""

from __future__ import annotations

import numpy as np
import pytest

from cifar_lab import metrics


class _CountingModel:
    """Scores = the first 10 pixel values; remembers the shape of each batch it is called on."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, ...]] = []

    def __call__(self, images, training):
        assert training is False and images.dtype == np.float32
        self.batches.append(images.shape)
        return images.reshape(len(images), -1)[:, :10]


def test_evaluate_model_scores_in_batches_then_takes_accuracy():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (2500, 4, 4, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 2500)
    model = _CountingModel()
    value, predictions = metrics.evaluate_model(model, images, labels)
    assert [shape[0] for shape in model.batches] == [1024, 1024, 452]
    expected = images.reshape(2500, -1)[:, :10].argmax(axis=1)
    np.testing.assert_array_equal(predictions, expected)
    assert value == metrics.accuracy(labels, expected)
    with pytest.raises(ValueError, match=r"\(N, 12\)"):
        metrics.evaluate_model(model, images[:3], labels[:3], num_classes=12)
    with pytest.raises(ValueError, match="empty"):
        metrics.evaluate_model(model, images[:0], labels[:0])


def test_the_claim_and_its_check_are_scored_by_the_same_function():
    # part5's TestSplit.evaluate (the student's claim) and the grader's model_accuracy
    # (its check) must not drift apart: both call evaluate_model, with its batch size.
    from cifar_lab.instructor import claims
    from cifar_lab.tuning import part5

    assert part5.evaluate_model is metrics.evaluate_model
    assert claims.evaluate_model is metrics.evaluate_model
