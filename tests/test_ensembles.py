"""Ensemble averaging: probabilities, weights and the accuracy of the average."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cifar_lab.metrics import accuracy
from cifar_lab.tuning.ensembles import average_probabilities, predict_probabilities


def random_probabilities(members: int, rows: int, seed: int) -> np.ndarray:
    scores = np.random.default_rng(seed).random((members, rows, 10))
    return scores / scores.sum(axis=2, keepdims=True)


def test_average_is_the_elementwise_mean():
    probabilities = random_probabilities(3, 7, seed=0)
    expected = (probabilities[0] + probabilities[1] + probabilities[2]) / 3
    np.testing.assert_allclose(average_probabilities(list(probabilities)), expected)
    np.testing.assert_allclose(average_probabilities(probabilities).sum(axis=1), 1.0)


def test_weighted_average_normalises_the_weights():
    probabilities = random_probabilities(2, 5, seed=1)
    expected = (1 * probabilities[0] + 3 * probabilities[1]) / 4
    np.testing.assert_allclose(average_probabilities(probabilities, [1, 3]), expected)
    np.testing.assert_allclose(average_probabilities(probabilities, [0, 2]), probabilities[1])


@pytest.mark.parametrize("weights", [[1.0], [-1.0, 2.0], [0.0, 0.0]])
def test_bad_weights_are_rejected(weights):
    with pytest.raises(ValueError, match="weights"):
        average_probabilities(random_probabilities(2, 3, seed=2), weights)


def test_averaging_can_beat_every_member():
    labels = np.array([0, 1, 2])
    first = np.array([[0.6, 0.1, 0.3], [0.1, 0.4, 0.5], [0.1, 0.2, 0.7]])  # rows 0, 2 right
    second = np.array([[0.4, 0.5, 0.1], [0.1, 0.8, 0.1], [0.5, 0.1, 0.4]])  # row 1 right
    assert accuracy(labels, first) == pytest.approx(2 / 3)
    assert accuracy(labels, second) == pytest.approx(1 / 3)
    assert accuracy(labels, average_probabilities([first, second])) == 1.0


def test_accuracy_checks_shapes():
    with pytest.raises(ValueError, match="labels"):
        accuracy(np.zeros(4, dtype=int), np.zeros((3, 10)))
    with pytest.raises(ValueError, match="labels first"):  # the old (scores, labels) order
        accuracy(np.zeros((3, 10)), np.zeros(3, dtype=int))


def tiny_model(seed: int) -> keras.Model:
    inputs = keras.Input((6,))
    init = keras.initializers.RandomNormal(stddev=1.0, seed=seed)
    return keras.Model(inputs, keras.layers.Dense(10, kernel_initializer=init)(inputs))


def test_predict_probabilities_is_a_softmax_of_the_logits():
    model, x = tiny_model(3), np.random.default_rng(3).normal(size=(5, 6)).astype(np.float32)
    logits = model.predict(x, verbose=0)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(predict_probabilities(model, x), expected, rtol=1e-5)


def small_logit_network(seed: int) -> keras.Model:
    inputs = keras.Input(shape=(32, 32, 3))
    flat = keras.layers.Flatten()(inputs)
    initializer = keras.initializers.RandomNormal(stddev=0.05, seed=seed)
    return keras.Model(inputs, keras.layers.Dense(10, kernel_initializer=initializer)(flat))


def test_raw_pixel_ensemble_averages_its_members_probabilities():
    from cifar_lab.tuning.ensembles import raw_pixel_ensemble

    networks = [small_logit_network(seed) for seed in (1, 2, 3)]
    mean, std = np.array([120.0, 110.0, 100.0]), np.array([60.0, 62.0, 64.0])
    raw = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3)).astype(np.uint8)
    standardised = ((raw - mean) / std).astype(np.float32)
    expected = [predict_probabilities(net, standardised) for net in networks]  # NumPy softmax
    model = raw_pixel_ensemble(networks, mean, std)
    np.testing.assert_allclose(
        model.predict(raw, verbose=0), average_probabilities(expected), rtol=1e-4, atol=1e-6
    )
    for index, probabilities in enumerate(expected, start=1):  # each member stays readable
        member = model.get_layer(f"member_{index}")
        np.testing.assert_allclose(member.predict(raw, verbose=0), probabilities, atol=1e-5)
    single = raw_pixel_ensemble(networks[:1], mean, std)  # one network: no averaging layer
    assert [layer.name for layer in single.layers if layer.name.startswith("member")] == []
    np.testing.assert_allclose(single.predict(raw, verbose=0), expected[0], atol=1e-5)
    with pytest.raises(ValueError, match="at least one"):
        raw_pixel_ensemble([], mean, std)
    with pytest.raises(TypeError, match=r"list of keras.Model.*\[network\]"):
        raw_pixel_ensemble(networks[0], mean, std)
    with pytest.raises(TypeError, match=r"member\.model"):
        raw_pixel_ensemble(["not a model"], mean, std)
