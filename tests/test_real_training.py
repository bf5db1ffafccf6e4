"""Real CIFAR-10, the reference's settings: one epoch of the two-layer network in each loop (slow).

Hidden size 4000, SGD with learning rate 1e-2, batch size 64, a 49,000 /
1,000 train/validation split. The assignment promises at least 40% validation
accuracy after one epoch of each custom loop, and ``compile``/``fit`` at least
42% on validation and test (mean of three seeds). Runs where ``../shared/data/cifar10-jpeg.tgz``
(or ``$CIFAR10_SOURCE``) exists; takes several minutes on two CPU cores.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REAL_SOURCE, requires_real_data
from notebook_definitions import barebones

import cifar_lab as lab
from cifar_lab.models import TwoLayerFC, compile_model, two_layer_sequential

HIDDEN_SIZE, LEARNING_RATE, BATCH_SIZE = 4000, 1e-2, 64
INPUT_SHAPE = (32, 32, 3)
FIT_SEEDS = (0, 1, 2)  # fixed in advance; see the fit test


# Read at import: conftest's autouse fixture hides these variables inside each test.
SOURCE = REAL_SOURCE
CACHE_DIR = os.environ.get("CIFAR_LAB_CACHE")

# `promise`: not in `make test` (10 minutes); `make test-promises` runs them, and CI runs both
pytestmark = [pytest.mark.slow, pytest.mark.promise, requires_real_data]

KERAS_MODELS = {
    "subclassed": lambda: TwoLayerFC(HIDDEN_SIZE, 10),
    "sequential": lambda: two_layer_sequential(INPUT_SHAPE, HIDDEN_SIZE, 10),
    "functional": lambda: lab.two_layer_functional(INPUT_SHAPE, HIDDEN_SIZE, 10),
}


@pytest.fixture(scope="module")
def cifar10():
    # num_test=None: every test image the source holds (the shared archive has 5,000).
    return lab.load_cifar10(49_000, 1_000, None, source=SOURCE, seed=0, cache_dir=CACHE_DIR)


def datasets(splits) -> tuple[lab.Dataset, lab.Dataset]:
    train = lab.Dataset(splits.X_train, splits.y_train, BATCH_SIZE, shuffle=True, seed=0)
    return train, lab.Dataset(splits.X_val, splits.y_val, BATCH_SIZE)


def report(name: str, **accuracies: float) -> None:
    values = ", ".join(f"{key} {100 * value:.2f}%" for key, value in accuracies.items())
    print(f"\nREAL CIFAR-10, one epoch, {name}: {values}")


def test_barebones_two_layer_reaches_40_percent(cifar10):
    train, val = datasets(cifar10)
    cells = barebones("two_layer_fc_init", "training_step")  # notebook 02's solutions
    history = lab.train_part2(
        lab.two_layer_fc,
        lambda: cells["two_layer_fc_init"](HIDDEN_SIZE),
        LEARNING_RATE,
        train,
        val,
        num_epochs=1,
        # the notebook's step, traced once by tf.function: the same arithmetic as the eager
        # step the notebook runs, in about two thirds of the time on a 2-core CPU
        step_fn=tf.function(cells["training_step"]),
        seed=0,
    )
    report("barebones train_part2", validation=history[-1]["val_accuracy"])
    assert history[-1]["iteration"] == len(train) - 1
    assert history[-1]["val_accuracy"] >= 0.40


def test_keras_custom_loop_reaches_40_percent(cifar10):
    """The Sequential variant, for all three.

    Subclassed, Sequential and functional train to bit-identical weights from
    the same seed (tests/test_training.py::
    test_the_three_keras_variants_train_to_the_same_weights), so one full-data
    run keeps the promise for the three; the other two would repeat its arithmetic.
    """
    variant = "sequential"
    train, val = datasets(cifar10)
    _, history = lab.train_part34(
        KERAS_MODELS[variant],
        lambda: keras.optimizers.SGD(learning_rate=LEARNING_RATE),
        train,
        val,
        num_epochs=1,
        seed=0,
    )
    report(f"train_part34 {variant}", validation=history[-1]["val_accuracy"])
    assert history[-1]["iteration"] == len(train) - 1
    assert history[-1]["val_accuracy"] >= 0.40


def fit_once(splits, seed: int) -> tuple[float, float]:
    """One epoch of compile/fit; returns (validation accuracy, test accuracy)."""
    keras.utils.set_random_seed(seed)
    model = compile_model(
        KERAS_MODELS["sequential"](), keras.optimizers.SGD(learning_rate=LEARNING_RATE)
    )
    model.fit(splits.X_train, splits.y_train, batch_size=BATCH_SIZE, epochs=1, verbose=2)
    _, val_accuracy = model.evaluate(splits.X_val, splits.y_val, verbose=0)
    _, test_accuracy = model.evaluate(splits.X_test, splits.y_test, verbose=0)
    report(f"compile/fit/evaluate, seed {seed}", validation=val_accuracy, test=test_accuracy)
    return val_accuracy, test_accuracy


def test_compile_fit_evaluate_reaches_42_percent(cifar10):
    """The promise is checked on the mean of three fixed seeds, 0, 1 and 2.

    A 1,000-image validation split alone has a sampling s.d. of about 1.6
    points, and one epoch's result moves by as much from seed to seed, so a
    single run cannot tell a 42% method from a 40% one.
    """
    results = np.array([fit_once(cifar10, seed) for seed in FIT_SEEDS])
    val_accuracy, test_accuracy = results.mean(axis=0)
    report("compile/fit/evaluate, mean of 3 seeds", validation=val_accuracy, test=test_accuracy)
    assert val_accuracy >= 0.42
    assert test_accuracy >= 0.42
