"""Distillation: soft targets against NumPy, train_config's targets, a student that follows."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import cifar_lab.tuning.train as mlp_training
from cifar_lab.tuning.config import MLPConfig
from cifar_lab.tuning.distillation import distill, soft_targets
from cifar_lab.tuning.train import one_hot, train_config


def images(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, 32, 32, 3)).astype(np.float32)


def linear_teacher(seed: int, scale: float = 0.05) -> tuple[keras.Model, np.ndarray, np.ndarray]:
    """Images -> logits ``flatten(x) @ W + b``; returns the model and its W (3072, 10), b (10,)."""
    rng = np.random.default_rng(seed)
    kernel = rng.normal(0, scale, (32 * 32 * 3, 10)).astype(np.float32)
    bias = rng.normal(0, 0.5, 10).astype(np.float32)
    inputs = keras.Input((32, 32, 3))
    layer = keras.layers.Dense(10)
    model = keras.Model(inputs, layer(keras.layers.Flatten()(inputs)))
    layer.set_weights([kernel, bias])
    return model, kernel, bias


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("flip", [True, False])
def test_soft_targets_mix_the_label_with_the_teachers_mean(flip):
    X, y = images(6, seed=0), np.array([0, 1, 2, 3, 9, 9])
    teachers = [linear_teacher(1), linear_teacher(2)]
    views = [X, X[:, :, ::-1]] if flip else [X]
    mean = np.mean(
        [softmax(v.reshape(len(v), -1) @ k + b) for _, k, b in teachers for v in views], axis=0
    )
    targets = soft_targets([t[0] for t in teachers], X, y, label_weight=0.3, flip=flip)
    assert targets.dtype == np.float32 and targets.shape == (6, 10)
    np.testing.assert_allclose(targets, 0.3 * np.eye(10)[y] + 0.7 * mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-5)


def test_label_weight_one_is_the_labels_and_zero_the_teachers():
    X, y = images(5, seed=3), np.array([4, 4, 0, 1, 7])
    teacher, kernel, bias = linear_teacher(4)
    np.testing.assert_array_equal(soft_targets([teacher], X, y, label_weight=1.0), one_hot(y))
    alone = soft_targets([teacher], X, y, label_weight=0.0, flip=False)
    np.testing.assert_allclose(alone, softmax(X.reshape(5, -1) @ kernel + bias), atol=1e-5)


def test_soft_targets_reject_bad_input_naming_the_fix():
    X, y = images(3, seed=5), np.array([0, 1, 2])
    teacher = linear_teacher(6)[0]
    with pytest.raises(ValueError, match="label_weight"):
        soft_targets([teacher], X, y, label_weight=1.5)
    with pytest.raises(TypeError, match=r"\[member.model for member in trained\]"):
        soft_targets(teacher, X, y)
    with pytest.raises(ValueError, match="at least one teacher"):
        soft_targets([], X, y)
    with pytest.raises(TypeError, match="each teacher"):
        soft_targets([teacher, "model.keras"], X, y)
    with pytest.raises(ValueError, match="lengths differ"):
        soft_targets([teacher], X, np.array([0, 1]))
    with pytest.raises(ValueError, match="float32 images"):
        soft_targets([teacher], X.astype(np.float64), y)


def test_train_config_trains_on_the_targets_of_its_subset(monkeypatch):
    seen = []
    real_batches = mlp_training.AugmentedBatches

    def spy(X, y, *args, **kwargs):
        seen.append((np.array(X), np.array(y)))
        return real_batches(X, y, *args, **kwargs)

    monkeypatch.setattr(mlp_training, "AugmentedBatches", spy)
    rng = np.random.default_rng(7)
    X_train, X_val = images(60, seed=8), images(20, seed=9)
    y_train, y_val = rng.integers(0, 10, 60), rng.integers(0, 10, 20)
    targets = rng.random((60, 10)).astype(np.float32)
    targets /= targets.sum(axis=1, keepdims=True)
    config = MLPConfig(hidden_sizes=(8,), num_train=40, epochs=1, batch_size=20)
    train_config(config, X_train, y_train, X_val, y_val, targets=targets, verbose=False)
    keep = np.sort(np.random.default_rng(config.seed).permutation(60)[:40])
    np.testing.assert_array_equal(seen[0][0], X_train[keep])
    np.testing.assert_array_equal(seen[0][1], targets[keep])  # the rows of the same images


def test_one_hot_targets_train_exactly_as_the_labels_do():
    rng = np.random.default_rng(10)
    X_train, X_val = images(48, seed=11), images(16, seed=12)
    y_train, y_val = rng.integers(0, 10, 48), rng.integers(0, 10, 16)
    config = MLPConfig(hidden_sizes=(8,), epochs=2, batch_size=16, flip=True)
    plain = train_config(config, X_train, y_train, X_val, y_val, verbose=False)
    targeted = train_config(
        config, X_train, y_train, X_val, y_val, targets=one_hot(y_train), verbose=False
    )
    for mine, theirs in zip(plain.model.get_weights(), targeted.model.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.parametrize(
    ("targets", "error", "match"),
    [
        ([[1.0] + [0.0] * 9] * 4, TypeError, "NumPy array"),
        (np.full((4, 9), 1 / 9, np.float32), ValueError, r"shape \(4, 10\)"),
        (np.full((3, 10), 0.1, np.float32), ValueError, r"shape \(4, 10\)"),
        (np.full((4, 10), 0.2, np.float32), ValueError, "summing to 1"),
        (np.eye(10, dtype=np.float32)[[0, 1, 2, 3]] * -1 + 0.2, ValueError, "non-negative"),
    ],
)
def test_train_config_rejects_targets_that_are_not_probabilities(targets, error, match):
    X, y = images(4, seed=13), np.array([0, 1, 2, 3])
    with pytest.raises(error, match=match):
        train_config(MLPConfig(hidden_sizes=(4,), epochs=1), X, y, X, y, targets=targets)


def test_a_student_learns_what_its_teachers_say_not_the_labels():
    """With label weight 0 and random labels, the student can only follow the teachers."""
    rng = np.random.default_rng(14)
    X_train, X_val = images(256, seed=15), images(64, seed=16)
    y_train, y_val = rng.integers(0, 10, 256), rng.integers(0, 10, 64)
    teachers = [linear_teacher(17, scale=0.2)[0], linear_teacher(18, scale=0.2)[0]]
    config = MLPConfig(hidden_sizes=(64,), epochs=30, batch_size=64, learning_rate=3e-3)
    student = distill(
        config, teachers, X_train, y_train, X_val, y_val, label_weight=0.0, verbose=False
    )
    targets = soft_targets(teachers, X_train, y_train, label_weight=0.0, flip=False)
    # Two independent teachers often split their vote between two classes; there
    # the argmax is a near-tie that matching probabilities cannot settle, so
    # judge the student where the teachers' mean has a clear winner.
    top_two = np.sort(targets, axis=1)[:, -2:]
    clear = top_two[:, 1] - top_two[:, 0] > 0.2
    chosen = np.asarray(student.model.predict(X_train, verbose=0)).argmax(axis=1)
    assert clear.sum() >= 32
    said = targets.argmax(axis=1)
    assert np.mean(chosen[clear] == said[clear]) > 0.9  # it follows the teachers...
    assert np.mean(chosen == y_train) < 0.3  # ...not the labels, which it never saw
    assert len(student.history) == 30 and student.num_images == 256


def test_distill_needs_a_config():
    with pytest.raises(TypeError, match="MLPConfig"):
        distill({"epochs": 1}, [], images(2, 0), np.array([0, 1]), images(2, 1), np.array([0, 1]))
