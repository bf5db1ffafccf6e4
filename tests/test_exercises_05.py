"""Notebook 05 (Part V, an open lab): every check catches plausible wrong designs; stubs stop it.

The notebook runs once per session, in the quick profile, in one kernel
(:mod:`executed_notebooks`); :func:`notebook_harness.run_with_mutations` then
returns to each exercise in that kernel. At each exercise (the network
builder, the training function, the five searches, the final training) the
released stub must make the following check cell raise ``NotImplementedError``
naming the exercise; each wrong answer below must make the check fail; the
model answer must pass. The searches' checks read the Optuna studies the
exercises ran, so a wrong search is caught by what its trials recorded: their
wrong answers run with :data:`NO_TRAINING`, a ``train_network`` that trains
nothing (the notebook's own run trained every trial for real), so that some
twenty searches of 5 to 18 trials each cost seconds, not minutes.
"""

from __future__ import annotations

from conftest import REPO_ROOT
from notebook_harness import Mutation, assert_checks_catch

NOTEBOOK = REPO_ROOT / "notebooks" / "05_tuning.ipynb"

# Replaces the student's train_network for the search exercises: no training, a History
# whose accuracies are a hash of the network's weights and the training arguments
# (distinct settings get distinct, repeatable scores), handed to the callbacks (the
# pruner) epoch by epoch as fit would. Its studies go to runs-mutated/: the checks
# compare with the studies of the real run (study1, study2, ...), which must stay as
# they were.
NO_TRAINING = """
import functools
import types

lab = types.SimpleNamespace(**{name: getattr(lab, name) for name in lab.__all__})
lab.create_study = functools.partial(lab.create_study, runs_dir="runs-mutated")
# keras.backend.clear_session() collects garbage: a second per trial in this kernel,
# whose saved namespaces make the heap large; nothing is trained, nothing to clear
keras = types.SimpleNamespace(**vars(keras))
keras.backend = types.SimpleNamespace(**vars(keras.backend))
keras.backend.clear_session = lambda: None

def train_network(model, X, y, *, learning_rate, epochs, optimizer="adamw", batch_size=256,
                  augment=False, validation=None, callbacks=(), seed=0):
    import zlib
    model(X[:1])
    shapes = [tuple(w.shape) for w in model.weights]
    key = repr((shapes, [type(layer).__name__ for layer in model.layers],
                [getattr(layer, "activation", None).__name__ if hasattr(layer, "activation")
                 and hasattr(layer.activation, "__name__") else None for layer in model.layers],
                float(np.asarray(model.weights[0]).std()), learning_rate, optimizer, augment))
    base = 0.15 + 0.3 * (zlib.crc32(key.encode()) % 1000) / 1000
    history = keras.callbacks.History()
    for callback in (history, *callbacks):
        callback.set_model(model)
    model.stop_training = False
    history.on_train_begin()
    for epoch in range(epochs):
        logs = {"loss": 2.0 - base, "accuracy": base + 0.1, "val_accuracy": base + 0.01 * epoch}
        for callback in (history, *callbacks):
            callback.on_epoch_end(epoch, dict(logs))
        if model.stop_training:
            break
    return history
"""
STAND_INS = {
    name: NO_TRAINING
    for name in (
        "architecture_search",
        "activation_search",
        "initializer_search",
        "optimizer_search",
        "regularisation_search",
    )
}

BUILD_NETWORK = [
    Mutation(
        "a convolution before Flatten",
        "x = keras.layers.Flatten()(inputs)",
        'x = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, padding="same")(inputs))',
    ),
    Mutation("hidden sizes ignored", "for units in hidden_sizes:", "for units in (256,):"),
    Mutation(
        "activation ignored (always ReLU)",
        "x = keras.layers.Activation(activation)(x)",
        'x = keras.layers.Activation("relu")(x)',
    ),
    Mutation(
        "every activation but tanh mapped to ReLU",
        "x = keras.layers.Activation(activation)(x)",
        'x = keras.layers.Activation("tanh" if activation == "tanh" else "relu")(x)',
    ),
    Mutation(
        "SELU built as ELU",
        "x = keras.layers.Activation(activation)(x)",
        'x = keras.layers.Activation("elu" if activation == "selu" else activation)(x)',
    ),
    Mutation(
        "PReLU as a fixed leaky ReLU (no learned slopes)",
        "x = keras.layers.PReLU()(x)",
        "x = keras.layers.LeakyReLU(negative_slope=0.25)(x)",
    ),
    Mutation(
        "softmax on the logits",
        "outputs = dense(10)(x)",
        "outputs = keras.layers.Softmax()(dense(10)(x))",
    ),
    Mutation(
        "initializer ignored",
        "kernel_initializer=initializer,",
        'kernel_initializer="glorot_uniform",',
    ),
    Mutation(
        "the output layer left at Keras's default initialiser",
        "outputs = dense(10)(x)",
        "outputs = keras.layers.Dense(10, kernel_regularizer=penalty)(x)",
    ),
    Mutation("batch norm 'before' ignored", 'if batch_norm == "before":', "if False:"),
    Mutation(
        "batch_norm='after' ignored",
        '        if batch_norm == "after":\n'
        "            x = keras.layers.BatchNormalization()(x)\n",
        "",
    ),
    Mutation(
        "batch norm always before the activation, whatever the placement",
        'if batch_norm == "before":',
        'if batch_norm != "none":',
    ),
    Mutation("dropout ignored", "if dropout > 0:", "if dropout > 0.5:"),
    Mutation("L2 ignored", "if l2 > 0 else None", "if l2 > 1 else None"),
]

TRAIN_NETWORK = [
    Mutation(
        "the learning rate ignored",
        "CosineDecay(learning_rate, max(steps, 1))",
        "CosineDecay(1e-3, max(steps, 1))",
    ),
    Mutation("epochs ignored", "epochs=epochs, shuffle=False", "epochs=5, shuffle=False"),
    Mutation(
        "the optimiser name ignored (always Adam)",
        "model.compile(optimizer=make[optimizer]()",
        'model.compile(optimizer=make["adam"]()',
    ),
    Mutation(
        "momentum trains plain SGD",
        "keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True)",
        "keras.optimizers.SGD(schedule)",
    ),
    Mutation(
        "labels shuffled apart from their images",
        "tf.data.Dataset.from_tensor_slices((X, y)).shuffle(len(y), seed=seed)",
        "tf.data.Dataset.zip((tf.data.Dataset.from_tensor_slices(X).shuffle(len(y), seed=seed),"
        " tf.data.Dataset.from_tensor_slices(y).shuffle(len(y), seed=seed + 1)))",
    ),
    Mutation("no validation", "validation_data=validation,", "validation_data=None,"),
    Mutation(
        "augmentation mapped in parallel (each run augments differently)",
        "(shift(flip(images)), labels))",
        "(shift(flip(images)), labels), num_parallel_calls=tf.data.AUTOTUNE)",
    ),
    Mutation(
        "augment ignored", "    if augment:  # in the pipeline", "    if False:  # in the pipeline"
    ),
]

ARCHITECTURE_SEARCH = [
    Mutation("one learning rate for every architecture", "rates = [1e-3, 3e-3]", "rates = [1e-3]"),
    Mutation(
        "four architectures",
        'architectures = ["64", "256", "128-64", "256-128-64", "64-64-64-64"]',
        'architectures = ["64", "256", "128-64", "256-128-64"]',
    ),
    Mutation(
        "wider only, no deeper network",
        'architectures = ["64", "256", "128-64", "256-128-64", "64-64-64-64"]',
        'architectures = ["32", "64", "128", "256", "512"]',
    ),
    Mutation(
        "the learning rate neither suggested nor recorded",
        'rate = trial.suggest_categorical("learning_rate", rates)',
        "rate = rates[trial.number % len(rates)]",
    ),
]

ACTIVATION_SEARCH = [
    Mutation(
        "three activations",
        'activations = ["relu", "leaky_relu", "prelu", "elu", "gelu", "tanh"]',
        'activations = ["relu", "elu", "tanh"]',
    ),
    Mutation(
        "an activation build_network was not checked with",
        'activations = ["relu", "leaky_relu", "prelu", "elu", "gelu", "tanh"]',
        'activations = ["relu", "silu", "prelu", "elu", "gelu"]',
    ),
    Mutation(
        "only the best architecture",
        "architectures = list(tuned)[:3]",
        "architectures = list(tuned)[:1]",
    ),
    Mutation(
        "a rate other than the one tuned for the architecture",
        'trial.set_user_attr("learning_rate", tuned[architecture])',
        'trial.set_user_attr("learning_rate", tuned[architecture] * 10)',
    ),
]

INITIALIZER_SEARCH = [
    Mutation("no all-zeros initialisation", '"he_normal", "zeros"]', '"he_normal"]'),
    Mutation(
        "three initialisers",
        'initializers = ["uniform", "normal", "lecun_uniform", "lecun_normal", "glorot_uniform",\n'
        '                    "glorot_normal", "he_uniform", "he_normal", "zeros"]',
        'initializers = ["he_normal", "glorot_uniform", "zeros"]',
    ),
    Mutation(
        "only the best setting",
        'setting = top[trial.suggest_categorical("setting", list(range(len(top))))]',
        'setting = top[0]\n        trial.suggest_categorical("setting", list(range(len(top))))',
    ),
    Mutation(
        "the settings not recorded",
        "        for key, value in setting.items():\n"
        "            trial.set_user_attr(key, value)\n",
        "",
    ),
]

OPTIMIZER_SEARCH = [
    Mutation(
        "batch norm always on",
        'batch_norms = ["none", "before"]',
        'batch_norms = ["before", "after"]',
    ),
    Mutation("no plain SGD", 'rates = {"sgd": 0.03, "momentum"', 'rates = {"momentum"'),
    Mutation(
        "one initialiser",
        'initializers = [best["initializer"], other]',
        'initializers = [best["initializer"]]',
    ),
]

# both searches on search 3's or 4's best network record it, and both must
NETWORK_RECORDS = [
    Mutation(
        "the architecture not recorded",
        '        trial.set_user_attr("architecture", best["architecture"])\n',
        "",
    ),
    Mutation(
        "the activation not recorded",
        '        trial.set_user_attr("activation", best["activation"])\n',
        "",
    ),
]

REGULARISATION_SEARCH = [
    Mutation(
        "no baseline without regulariser",
        'choices = ["none", "l2", "dropout", "batch_norm", "augmentation"]',
        'choices = ["l2", "dropout", "batch_norm", "augmentation"]',
    ),
    Mutation(
        "no augmentation",
        'choices = ["none", "l2", "dropout", "batch_norm", "augmentation"]',
        'choices = ["none", "l2", "dropout", "batch_norm"]',
    ),
]

FINAL_TRAINING = [
    Mutation(
        "trained on the search's subset, never on all images",
        "history = train_network(model, X_train, y_train, epochs=FINAL_EPOCHS,",
        "history = train_network(model, X_train[:FINE_IMAGES], y_train[:FINE_IMAGES], "
        "epochs=FINAL_EPOCHS,",
    ),
    Mutation(
        "trained on half the training images",
        "history = train_network(model, X_train, y_train, epochs=FINAL_EPOCHS,",
        "history = train_network(model, X_train[: len(y_train) // 2], "
        "y_train[: len(y_train) // 2], epochs=FINAL_EPOCHS,",
    ),
    Mutation(
        "all images trained, but an ensemble member saved and evaluated",
        "        model,\n        keras.layers.Softmax(),",
        "        member,\n        keras.layers.Softmax(),",
    ),
    Mutation(
        "saves the model that expects standardised images",
        "lab.save_final_model(raw_model, recipe,",
        "lab.save_final_model(model, recipe,",
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
        "    test = TestEvaluation(float(np.mean(raw_model.predict(data.denormalise(data.X_test),"
        ' verbose=0).argmax(axis=1) == data.y_test)), None, "")',
    ),
    Mutation(
        "what the model was trained on not recorded",
        "test.accuracy, trained=history)",
        "test.accuracy)",
    ),
]

MUTATIONS = [
    *BUILD_NETWORK,
    *TRAIN_NETWORK,
    *ARCHITECTURE_SEARCH,
    *ACTIVATION_SEARCH,
    *INITIALIZER_SEARCH,
    *OPTIMIZER_SEARCH,
    *REGULARISATION_SEARCH,
    *NETWORK_RECORDS,
    *FINAL_TRAINING,
]


def test_wrong_answers_fail_their_checks_and_stubs_stop(executed_notebooks):
    assert_checks_catch(executed_notebooks[NOTEBOOK.stem], MUTATIONS, STAND_INS)
