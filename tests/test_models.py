"""Tests for the three Keras versions of the two-layer network."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import cifar_lab as lab
from cifar_lab.models import TwoLayerFC, two_layer_sequential

INPUT_SHAPE = (32, 32, 3)


def build_all(hidden_size: int, seeds: tuple[int | None, int | None, int | None]) -> list:
    """Subclassed, Sequential and functional models, each built."""
    subclassed = TwoLayerFC(hidden_size, 10, seed=seeds[0])
    subclassed(np.zeros((1, *INPUT_SHAPE), np.float32))  # a subclassed model builds on first call
    return [
        subclassed,
        two_layer_sequential(INPUT_SHAPE, hidden_size, 10, seed=seeds[1]),
        lab.two_layer_functional(INPUT_SHAPE, hidden_size, 10, seed=seeds[2]),
    ]


def logits(model, x: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


def test_variants_agree_after_copying_weights():
    x = np.random.default_rng(0).normal(size=(6, *INPUT_SHAPE)).astype(np.float32)
    subclassed, sequential, functional = build_all(24, seeds=(1, 2, 3))
    assert not np.allclose(logits(subclassed, x), logits(sequential, x))  # differ before copying
    for model in (sequential, functional):
        model.set_weights(subclassed.get_weights())
        np.testing.assert_allclose(logits(model, x), logits(subclassed, x), rtol=1e-6, atol=1e-6)


def test_variants_share_architecture_and_initialisation():
    models = build_all(16, seeds=(7, 7, 7))
    shapes = [[w.shape for w in model.get_weights()] for model in models]
    assert shapes == [[(3072, 16), (16,), (16, 10), (10,)]] * 3
    reference = models[0].get_weights()
    for model in models[1:]:
        for mine, theirs in zip(model.get_weights(), reference, strict=True):
            np.testing.assert_array_equal(mine, theirs)


def test_forward_pass_matches_numpy_and_returns_logits():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, *INPUT_SHAPE)).astype(np.float32)
    model = lab.two_layer_functional(INPUT_SHAPE, 12, 10, seed=0)
    w1, b1, w2, b2 = [w.astype(np.float64) for w in model.get_weights()]
    b1, b2 = b1 + rng.normal(size=b1.shape), b2 + rng.normal(size=b2.shape)  # non-zero biases
    model.set_weights([w1, b1, w2, b2])
    expected = np.maximum(x.reshape(5, -1) @ w1 + b1, 0) @ w2 + b2
    scores = logits(model, x)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(scores.sum(axis=1), 1.0)  # logits, not probabilities


def test_he_initialisation_scale():
    kernel, bias, second, _ = two_layer_sequential(INPUT_SHAPE, 400, 10, seed=0).get_weights()
    # 1.2M samples: the std is within 0.5% of sqrt(2 / fan_in) (truncated normal, rescaled).
    assert kernel.std() == pytest.approx(np.sqrt(2 / 3072), rel=0.005)
    assert second.std() == pytest.approx(np.sqrt(2 / 400), rel=0.05)
    assert np.all(bias == 0)


def test_classification_loss_uses_logits():
    rng = np.random.default_rng(2)
    scores = rng.normal(scale=5, size=(8, 10)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    expected = -log_probs[np.arange(8), y].mean()
    loss = float(lab.classification_loss()(y, scores))
    assert loss == pytest.approx(expected, rel=1e-5)


def test_subclassed_config_round_trip():
    model = TwoLayerFC(32, 5, seed=3)
    clone = TwoLayerFC.from_config(model.get_config())
    assert (clone.hidden_size, clone.num_classes, clone.seed) == (32, 5, 3)


@pytest.mark.parametrize("builder", [two_layer_sequential, lab.two_layer_functional])
def test_builders_reject_bad_arguments(builder):
    with pytest.raises(ValueError, match="hidden_size must be >= 1, got 0"):
        builder(INPUT_SHAPE, 0, 10)
    with pytest.raises(TypeError, match=r"num_classes must be an int, got 2.5 \(float\)"):
        builder(INPUT_SHAPE, 8, 2.5)
    with pytest.raises(TypeError, match="input_shape must be a tuple"):
        builder("32x32x3", 8, 10)
    with pytest.raises(ValueError, match="leave out the batch dimension"):
        builder((None, 32, 32, 3), 8, 10)
    with pytest.raises(ValueError, match="hidden_size must be >= 1"):
        TwoLayerFC(-4, 10)
