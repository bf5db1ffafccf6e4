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

SHUFFLE = "    dataset = dataset.shuffle(len(X), seed=seed, reshuffle_each_iteration=True)\n"
BATCH = "    dataset = dataset.batch(batch_size, drop_remainder=True)\n"

# make_pipeline: from_tensor_slices -> shuffle (whole set, each epoch, seeded) -> batch
# -> prefetch.
PIPELINE = [
    Mutation("pipeline: no shuffle", SHUFFLE, ""),
    Mutation(
        "pipeline: shuffle buffer of one batch",
        "dataset.shuffle(len(X),",
        "dataset.shuffle(batch_size,",
    ),
    Mutation(
        "pipeline: the same order every epoch",
        "reshuffle_each_iteration=True",
        "reshuffle_each_iteration=False",
    ),
    Mutation("pipeline: seed not passed to the shuffle", "len(X), seed=seed,", "len(X),"),
    Mutation("pipeline: batches shuffled, not examples", SHUFFLE + BATCH, BATCH + SHUFFLE),
    Mutation(
        "pipeline: last partial batch kept",
        "dataset.batch(batch_size, drop_remainder=True)",
        "dataset.batch(batch_size)",
    ),
    Mutation(
        "pipeline: no prefetch",
        "return dataset.prefetch(tf.data.AUTOTUNE)",
        "return dataset",
    ),
]

# training_callbacks: EarlyStopping (val_accuracy, max, patience, restore) and
# ModelCheckpoint (best only).
STOPPING = 'monitor="val_accuracy", mode="max", patience=patience, restore_best_weights=True'
CHECKPOINT = 'checkpoint_path, monitor="val_accuracy", mode="max", save_best_only=True'
CALLBACKS = [
    Mutation(
        "callbacks: best weights not restored",
        STOPPING,
        'monitor="val_accuracy", mode="max", patience=patience',
    ),
    Mutation(
        "callbacks: checkpoint never written (no ModelCheckpoint)",
        f"        keras.callbacks.ModelCheckpoint(\n            {CHECKPOINT}\n        ),\n",
        "",
    ),
    Mutation(
        "callbacks: checkpoint saved every epoch",
        "save_best_only=True",
        "save_best_only=False",
    ),
    Mutation(
        "callbacks: early stopping on the validation loss",
        STOPPING,
        'monitor="val_loss", mode="min", patience=patience, restore_best_weights=True',
    ),
    Mutation(
        "callbacks: accuracy minimised",
        STOPPING,
        'monitor="val_accuracy", mode="min", patience=patience, restore_best_weights=True',
    ),
    Mutation(
        "callbacks: patience fixed at 3",
        "patience=patience,",
        "patience=3,",
    ),
    Mutation(
        "callbacks: checkpoint on the validation loss",
        CHECKPOINT,
        'checkpoint_path, monitor="val_loss", mode="min", save_best_only=True',
    ),
]

# first_layer_templates: kernel (D, H) -> (H, *image_shape) in Flatten's (row-major) order.
RESHAPE = "kernel.T.reshape(kernel.shape[1], *image_shape)"
TEMPLATES = [
    Mutation(
        "templates: reshaped without transposing",
        RESHAPE,
        "kernel.reshape(kernel.shape[1], *image_shape)",
    ),
    Mutation(
        "templates: channels-first order",
        RESHAPE,
        "kernel.T.reshape(kernel.shape[1], image_shape[2], image_shape[0], "
        "image_shape[1]).transpose(0, 2, 3, 1)",
    ),
    Mutation(
        "templates: rows and columns swapped",
        RESHAPE,
        "kernel.T.reshape(kernel.shape[1], image_shape[1], image_shape[0], "
        "image_shape[2]).transpose(0, 2, 1, 3)",
    ),
    Mutation(
        "templates: column-major (Fortran) order",
        RESHAPE,
        'kernel.T.reshape(kernel.shape[1], *image_shape, order="F")',
    ),
    Mutation(
        "templates: kernel not transposed to units", RESHAPE, "kernel.reshape(*image_shape, -1)"
    ),
]

MUTATIONS = SEQUENTIAL + FUNCTIONAL + PIPELINE + CALLBACKS + TEMPLATES


def test_wrong_answers_fail_their_checks_and_stubs_stop(executed_notebooks):
    assert_checks_catch(executed_notebooks[NOTEBOOK.stem], MUTATIONS)
