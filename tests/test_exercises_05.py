"""Notebook 05 (Part V, an open lab): every check catches plausible wrong designs; stubs stop it.

The notebook runs once per session, in the quick profile, in one kernel
(:mod:`executed_notebooks`); :func:`notebook_harness.run_with_mutations` then
returns to each exercise in that kernel. At each exercise (the network
builder, the five searches, the final training) the released stub must make
the following check cell raise ``NotImplementedError`` naming the exercise;
each wrong answer below must make the check fail; the model answer must pass.
"""

from __future__ import annotations

from conftest import REPO_ROOT
from notebook_harness import Mutation, assert_checks_catch

NOTEBOOK = REPO_ROOT / "notebooks" / "05_tuning.ipynb"

BUILD_NETWORK = [
    Mutation(
        "a convolution before Flatten",
        "x = keras.layers.Flatten()(inputs)",
        'x = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, padding="same")(inputs))',
    ),
    Mutation(
        "hidden sizes ignored",
        "for units in config.hidden_sizes:",
        "for units in (256,):",
    ),
    Mutation(
        "activation ignored (always ReLU)",
        "return keras.layers.Activation(config.activation)",
        'return keras.layers.Activation("relu")',
    ),
    Mutation(
        "softmax on the logits",
        "outputs = dense(10)(x)",
        "outputs = keras.layers.Softmax()(dense(10)(x))",
    ),
    Mutation(
        "initializer ignored",
        "kernel_initializer=config.initializer",
        'kernel_initializer="glorot_uniform"',
    ),
    Mutation(
        "batch norm 'before' ignored",
        'if config.batch_norm == "before":',
        'if config.batch_norm == "after" and False:',
    ),
    Mutation(
        "every activation but tanh mapped to ReLU",
        "return keras.layers.Activation(config.activation)",
        'return keras.layers.Activation("tanh" if config.activation == "tanh" else "relu")',
    ),
    Mutation(
        "batch_norm='after' ignored",
        '        if config.batch_norm == "after":\n'
        "            x = keras.layers.BatchNormalization()(x)\n",
        "",
    ),
    Mutation(
        "batch norm always before the activation, whatever the placement",
        'if config.batch_norm == "before":\n'
        "            x = keras.layers.BatchNormalization()(x)\n"
        "        x = activation()(x)\n"
        '        if config.batch_norm == "after":',
        'if config.batch_norm != "none":\n'
        "            x = keras.layers.BatchNormalization()(x)\n"
        "        x = activation()(x)\n"
        "        if False:",
    ),
    Mutation(
        "PReLU as a fixed leaky ReLU (no learned slopes)",
        "return keras.layers.PReLU()",
        "return keras.layers.LeakyReLU(negative_slope=0.25)",
    ),
    Mutation(
        "SELU built as ELU",
        "return keras.layers.Activation(config.activation)",
        'return keras.layers.Activation("elu" if config.activation == "selu" '
        "else config.activation)",
    ),
    Mutation("dropout ignored", "if config.dropout > 0:", "if config.dropout > 0.5:"),
    Mutation("L2 ignored", "if config.l2 > 0 else None", "if config.l2 > 1 else None"),
]

ARCHITECTURE_SEARCH = [
    Mutation(
        "no learning rates",
        '        "learning_rate": list(budget.learning_rates),\n',
        "",
    ),
    Mutation(
        "one learning rate for every architecture",
        "list(budget.learning_rates)",
        "list(budget.learning_rates)[:1]",
    ),
    Mutation(
        "four architectures",
        "list(budget.architectures)",
        "list(budget.architectures)[:4]",
    ),
    Mutation(
        "wider only, no deeper network",
        '"hidden_sizes": list(budget.architectures)',
        '"hidden_sizes": ["64", "128", "256", "512", "1024"]',
    ),
]

ACTIVATION_SEARCH = [
    Mutation(
        "a rate other than the tuned one",
        "learning_rate=r) for a, r in tuned.items()",
        "learning_rate=r * 3) for a, r in tuned.items()",
    ),
    Mutation(
        "three activations",
        "list(budget.activations)",
        "list(budget.activations)[:3]",
    ),
    Mutation(
        "an architecture dropped",
        "for a, r in tuned.items()]",
        "for a, r in list(tuned.items())[1:]]",
    ),
]

INITIALIZER_SEARCH = [
    Mutation(
        "no all-zeros initialisation",
        '"initializer": list(budget.initializers)',
        '"initializer": [i for i in budget.initializers if i != "zeros"]',
    ),
    Mutation(
        "three initialisers",
        '"initializer": list(budget.initializers)',
        '"initializer": list(budget.initializers)[-3:]',
    ),
    Mutation(
        "another setting than the best ones",
        '"setting": list(top), "initializer"',
        '"setting": [lab.setting(hidden_sizes="32", activation="relu")], "initializer"',
    ),
]

OPTIMIZER_SEARCH = [
    Mutation(
        "batch norm always on",
        '"batch_norm": ["none", "before"],',
        '"batch_norm": ["before", "after"],',
    ),
    Mutation(
        "no plain SGD",
        'rates = {"sgd": 3e-2, "momentum"',
        'rates = {"momentum"',
    ),
    Mutation(
        "one initialiser",
        'for i in (best["initializer"], other)]',
        'for i in (best["initializer"],)]',
    ),
    Mutation(
        "not the best network",
        'network = {"hidden_sizes": best["hidden_sizes"],',
        'network = {"hidden_sizes": "32",',
    ),
]

REGULARISATION_SEARCH = [
    Mutation(
        "no baseline without regulariser",
        '        lab.setting(batch_norm="none"),\n',
        "",
    ),
    Mutation(
        "no augmentation",
        'lab.setting(batch_norm="none", flip=True, translate=2, noise_std=0.05),',
        'lab.setting(batch_norm="none", l2=1e-3),',
    ),
    Mutation(
        "dropout only together with L2",
        'dropout=0.3),\n        lab.setting(batch_norm="before")',
        'dropout=0.3, l2=1e-4),\n        lab.setting(batch_norm="before")',
    ),
]

FINAL_TRAINING = [
    Mutation(
        "the stage-5 subset config, never retrained on all images",
        'final = lab.rung("medium", budget, network=config)',
        "final = config",
    ),
    Mutation(
        "an ensemble member reused, never retrained",
        "trained = lab.train_config(final, X_train, y_train, X_val, y_val, build=build_network)",
        "trained = members[0]",
    ),
    Mutation(
        "trained on a slice of the training images",
        "lab.train_config(final, X_train, y_train,",
        "lab.train_config(final, X_train[: len(y_train) // 2], y_train[: len(y_train) // 2],",
    ),
    Mutation(
        "all images trained, but an ensemble member saved and evaluated",
        "raw_model = lab.raw_pixel_model(trained.model, data.mean, data.std)",
        "raw_model = lab.raw_pixel_model(members[0].model, data.mean, data.std)",
    ),
    Mutation(
        "saves the model that expects standardised images",
        "lab.save_final_model(raw_model, final,",
        "lab.save_final_model(trained.model, final,",
    ),
    Mutation(
        "validation accuracy of the raw-pixel model on standardised images",
        "raw_model.predict(data.denormalise(X_val), verbose=0)",
        "raw_model.predict(X_val, verbose=0)",
    ),
    Mutation(
        "looks at the test split twice and keeps the better",
        "test = test_split.evaluate(raw_model)",
        "test = max(test_split.evaluate(raw_model), test_split.evaluate(raw_model),"
        " key=lambda e: e.accuracy)",
    ),
    Mutation(
        "test accuracy computed around test_split",
        "test = test_split.evaluate(raw_model)",
        "from cifar_lab.tuning.part5 import TestEvaluation\n"
        "    test = TestEvaluation(lab.accuracy(data.y_test, raw_model.predict("
        'data.denormalise(data.X_test), verbose=0)), None, "")',
    ),
]

MUTATIONS = [
    *BUILD_NETWORK,
    *ARCHITECTURE_SEARCH,
    *ACTIVATION_SEARCH,
    *INITIALIZER_SEARCH,
    *OPTIMIZER_SEARCH,
    *REGULARISATION_SEARCH,
    *FINAL_TRAINING,
]


def test_wrong_answers_fail_their_checks_and_stubs_stop(executed_notebooks):
    assert_checks_catch(executed_notebooks[NOTEBOOK.stem], MUTATIONS)
