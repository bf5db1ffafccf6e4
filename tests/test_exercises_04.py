"""Notebook 04: every exercise's check catches plausible wrong answers; every stub stops it.

The notebook runs once per session, in the quick profile, in one kernel
(:mod:`executed_notebooks`); :func:`notebook_harness.run_with_mutations` then
returns to each exercise in that kernel. At each exercise the released
stub must make the following check cell raise ``NotImplementedError`` naming
the exercise; each wrong answer below must make the check fail; the real
solution must pass it.
"""

from __future__ import annotations

from conftest import REPO_ROOT
from notebook_harness import Mutation, assert_checks_catch

NOTEBOOK = REPO_ROOT / "notebooks" / "04_keras_sequential_functional.ipynb"

# three_layer_sequential: a keras.Sequential list of layers.
SEQUENTIAL = [
    Mutation(
        "sequential: first ReLU dropped",
        'Dense(hidden_sizes[0], activation="relu", kernel_initializer=initializer)',
        "Dense(hidden_sizes[0], kernel_initializer=initializer)",
    ),
    Mutation(
        "sequential: second ReLU dropped",
        'Dense(hidden_sizes[1], activation="relu", kernel_initializer=initializer)',
        "Dense(hidden_sizes[1], kernel_initializer=initializer)",
    ),
    Mutation(
        "sequential: softmax output",
        "Dense(num_classes, kernel_initializer=initializer)",
        'Dense(num_classes, activation="softmax", kernel_initializer=initializer)',
    ),
    Mutation(
        "sequential: ReLU on the output",
        "Dense(num_classes, kernel_initializer=initializer)",
        'Dense(num_classes, activation="relu", kernel_initializer=initializer)',
    ),
    Mutation(
        "sequential: second hidden size taken from the first",
        'Dense(hidden_sizes[1], activation="relu", kernel_initializer=initializer)',
        'Dense(hidden_sizes[0], activation="relu", kernel_initializer=initializer)',
    ),
    Mutation(
        "sequential: Flatten left out",
        "            keras.layers.Flatten(),\n",
        "",
    ),
    Mutation(
        "sequential: Glorot (Keras' default) instead of He",
        "initializer = keras.initializers.VarianceScaling(scale=2.0)",
        'initializer = "glorot_uniform"',
    ),
    Mutation(
        "sequential: LeCun std sqrt(1/fan_in) instead of He",
        "initializer = keras.initializers.VarianceScaling(scale=2.0)",
        "initializer = keras.initializers.VarianceScaling(scale=1.0)",
    ),
    Mutation(
        "sequential: output layer left at Keras' default (Glorot)",
        "keras.layers.Dense(num_classes, kernel_initializer=initializer),",
        "keras.layers.Dense(num_classes),",
    ),
    Mutation(
        "sequential: output layer at LeCun std sqrt(1/fan_in)",
        "keras.layers.Dense(num_classes, kernel_initializer=initializer),",
        "keras.layers.Dense(num_classes, kernel_initializer="
        "keras.initializers.VarianceScaling(scale=1.0)),",
    ),
    Mutation(
        "sequential: random biases",
        'Dense(hidden_sizes[0], activation="relu", kernel_initializer=initializer)',
        'Dense(hidden_sizes[0], activation="relu", kernel_initializer=initializer, '
        'bias_initializer="random_normal")',
    ),
    Mutation(
        "sequential: no output bias",
        "Dense(num_classes, kernel_initializer=initializer)",
        "Dense(num_classes, kernel_initializer=initializer, use_bias=False)",
    ),
]

# three_layer_functional: keras.Input -> layers called on tensors -> keras.Model.
FUNCTIONAL = [
    Mutation(
        "functional: second hidden layer applied to the flattened input",
        'activation="relu", kernel_initializer=he)(h1)',
        'activation="relu", kernel_initializer=he)(x)',
    ),
    Mutation(
        "functional: scores computed from the first hidden layer",
        "Dense(num_classes, kernel_initializer=he)(h2)",
        "Dense(num_classes, kernel_initializer=he)(h1)",
    ),
    Mutation(
        "functional: second ReLU dropped",
        'Dense(hidden_sizes[1], activation="relu", kernel_initializer=he)',
        "Dense(hidden_sizes[1], kernel_initializer=he)",
    ),
    Mutation(
        "functional: softmax output",
        "Dense(num_classes, kernel_initializer=he)",
        'Dense(num_classes, activation="softmax", kernel_initializer=he)',
    ),
    Mutation(
        "functional: hidden sizes swapped",
        'Dense(hidden_sizes[0], activation="relu", kernel_initializer=he)(x)\n'
        "    h2 = keras.layers.Dense(hidden_sizes[1],",
        'Dense(hidden_sizes[1], activation="relu", kernel_initializer=he)(x)\n'
        "    h2 = keras.layers.Dense(hidden_sizes[0],",
    ),
    Mutation(
        "functional: Glorot normal instead of He",
        "he = keras.initializers.VarianceScaling(scale=2.0)",
        "he = keras.initializers.GlorotNormal()",
    ),
    Mutation(
        "functional: output layer left at Keras' default (Glorot)",
        "scores = keras.layers.Dense(num_classes, kernel_initializer=he)(h2)",
        "scores = keras.layers.Dense(num_classes)(h2)",
    ),
    Mutation(
        "functional: output layer at a fixed std 0.05 (random_normal)",
        "scores = keras.layers.Dense(num_classes, kernel_initializer=he)(h2)",
        'scores = keras.layers.Dense(num_classes, kernel_initializer="random_normal")(h2)',
    ),
    Mutation(
        "functional: no biases in the hidden layers",
        'activation="relu", kernel_initializer=he)(x)',
        'activation="relu", kernel_initializer=he, use_bias=False)(x)',
    ),
    Mutation(
        "functional: wrapped in a keras.Sequential",
        "return keras.Model(inputs=inputs, outputs=scores)",
        "return keras.Sequential([keras.Model(inputs=inputs, outputs=scores)])",
    ),
]

MUTATIONS = SEQUENTIAL + FUNCTIONAL


def test_wrong_answers_fail_their_checks_and_stubs_stop(executed_notebooks):
    assert_checks_catch(executed_notebooks[NOTEBOOK.stem], MUTATIONS)
