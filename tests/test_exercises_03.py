"""Notebook 03: every exercise's check catches plausible wrong answers; every stub stops it.

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

NOTEBOOK = REPO_ROOT / "notebooks" / "03_keras_model_subclassing.ipynb"

APPLY = "optimizer.apply_gradients(zip(gradients, model.trainable_variables))"

TRAIN_STEP = [
    Mutation(
        "gradient step sign flipped",
        APPLY,
        "optimizer.apply_gradients(zip([-g for g in gradients], model.trainable_variables))",
    ),
    Mutation("apply_gradients missing", APPLY, "pass"),
    Mutation(
        "hard-coded learning rate instead of the optimizer",
        APPLY,
        "for g, v in zip(gradients, model.trainable_variables):\n        v.assign_sub(1e-2 * g)",
    ),
    Mutation(
        "update applied twice",
        APPLY,
        f"{APPLY}\n    {APPLY}",
    ),
    Mutation(
        "loss computed outside the tape (no gradients)",
        "        loss = loss_fn(y, scores)\n",
        "    loss = loss_fn(y, scores)\n",
    ),
    Mutation(
        "training=False", "scores = model(x, training=True)", "scores = model(x, training=False)"
    ),
    Mutation("training flag left out", "scores = model(x, training=True)", "scores = model(x)"),
    Mutation(
        "softmax of the logits into a from_logits loss",
        "loss = loss_fn(y, scores)",
        "loss = loss_fn(y, tf.nn.softmax(scores))",
    ),
    Mutation(
        "from_logits=False loss on logits",
        "loss = loss_fn(y, scores)",
        "loss = keras.losses.SparseCategoricalCrossentropy()(y, scores)",
    ),
    Mutation("loss metric not updated", "train_loss.update_state(loss)", "pass"),
    Mutation("accuracy metric not updated", "train_accuracy.update_state(y, scores)", "pass"),
    Mutation(
        "metrics reset inside the step",
        "train_loss.update_state(loss)",
        "train_loss.reset_state()\n    train_loss.update_state(loss)",
    ),
    Mutation(
        "loss returned after the update",
        "    return loss\n",
        "    return loss_fn(y, model(x, training=True))\n",
    ),
    Mutation("nothing returned", "    return loss\n", "    return None\n"),
]

THREE_LAYER_FC = [
    Mutation(
        "ReLU dropped on the second hidden layer",
        'hidden_sizes[1], activation="relu", kernel_initializer=initializer',
        "hidden_sizes[1], kernel_initializer=initializer",
    ),
    Mutation(
        "softmax on the output",
        "keras.layers.Dense(num_classes, kernel_initializer=initializer)",
        'keras.layers.Dense(num_classes, activation="softmax", kernel_initializer=initializer)',
    ),
    Mutation(
        "ReLU on the output",
        "keras.layers.Dense(num_classes, kernel_initializer=initializer)",
        'keras.layers.Dense(num_classes, activation="relu", kernel_initializer=initializer)',
    ),
    Mutation(
        "hidden_sizes[0] used twice",
        'hidden_sizes[1], activation="relu"',
        'hidden_sizes[0], activation="relu"',
    ),
    Mutation(
        "second hidden layer missing",
        "self.fc2 = keras.layers.Dense(\n"
        '            hidden_sizes[1], activation="relu", kernel_initializer=initializer\n'
        "        )",
        "self.fc2 = keras.layers.Identity()",
    ),
    Mutation(
        "call() skips fc2",
        "return self.fc3(self.fc2(self.fc1(self.flatten(x))))",
        "return self.fc3(self.fc1(self.flatten(x)))",
    ),
    Mutation(
        "no biases (use_bias=False)",
        'hidden_sizes[0], activation="relu", kernel_initializer=initializer',
        'hidden_sizes[0], activation="relu", kernel_initializer=initializer, use_bias=False',
    ),
    Mutation(
        "Keras' default initialiser (Glorot) on the first layer",
        'hidden_sizes[0], activation="relu", kernel_initializer=initializer',
        'hidden_sizes[0], activation="relu"',
    ),
    Mutation(
        "Kaiming scale 1 instead of 2",
        "VarianceScaling(scale=2.0)",
        "VarianceScaling(scale=1.0)",
    ),
]

MUTATIONS = TRAIN_STEP + THREE_LAYER_FC


def test_wrong_answers_fail_their_checks_and_stubs_stop(executed_notebooks):
    assert_checks_catch(executed_notebooks[NOTEBOOK.stem], MUTATIONS)
