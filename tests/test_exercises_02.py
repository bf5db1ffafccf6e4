"""Notebook 02: every exercise's check catches plausible wrong answers; every stub stops it.

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

NOTEBOOK = REPO_ROOT / "notebooks" / "02_barebones_tensorflow.ipynb"

TRAINING_STEP = [
    Mutation(
        "gradient ascent (assign_add)",
        "w.assign_sub(learning_rate * grad_w)",
        "w.assign_add(learning_rate * grad_w)",
    ),
    Mutation(
        "learning rate left out",
        "w.assign_sub(learning_rate * grad_w)",
        "w.assign_sub(grad_w)",
    ),
    Mutation(
        "weights rebound, not updated in place",
        "w.assign_sub(learning_rate * grad_w)",
        "w = w - learning_rate * grad_w",
    ),
    Mutation(
        "summed loss, not the mean",
        "loss = tf.reduce_mean(losses)",
        "loss = tf.reduce_sum(losses)",
    ),
    Mutation(
        "softmax applied twice",
        "labels=y, logits=scores)",
        "labels=y, logits=tf.nn.softmax(scores))",
    ),
    Mutation(
        "per-example losses returned",
        "    return loss\n",
        "    return losses\n",
    ),
]

TWO_LAYER_FC_INIT = [
    Mutation(
        "kaiming std 1/fan_in",
        "w1 = tf.Variable(lab.kaiming_normal((32 * 32 * 3, hidden_size)))",
        "w1 = tf.Variable(tf.random.normal((32 * 32 * 3, hidden_size)) / (32 * 32 * 3))",
    ),
    Mutation(
        "hidden size ignored",
        "w2 = tf.Variable(lab.kaiming_normal((hidden_size, 10)))",
        "w2 = tf.Variable(lab.kaiming_normal((4000, 10)))",
    ),
    Mutation(
        "tensors, not variables",
        "return [w1, w2]\n    ### END SOLUTION",
        "return [tf.convert_to_tensor(w1), w2]\n    ### END SOLUTION",
    ),
]

THREE_LAYER_FC = [
    Mutation(
        "ReLU dropped on the first hidden layer",
        "h1 = tf.nn.relu(tf.matmul(flatten(x), w1) + b1)",
        "h1 = tf.matmul(flatten(x), w1) + b1",
    ),
    Mutation(
        "ReLU dropped on the second hidden layer",
        "h2 = tf.nn.relu(tf.matmul(h1, w2) + b2)",
        "h2 = tf.matmul(h1, w2) + b2",
    ),
    Mutation(
        "bias added after the ReLU",
        "tf.nn.relu(tf.matmul(h1, w2) + b2)",
        "tf.nn.relu(tf.matmul(h1, w2)) + b2",
    ),
    Mutation(
        "output bias missing",
        "return tf.matmul(h2, w3) + b3",
        "return tf.matmul(h2, w3)",
    ),
    Mutation(
        "ReLU on the logits",
        "return tf.matmul(h2, w3) + b3",
        "return tf.nn.relu(tf.matmul(h2, w3) + b3)",
    ),
    Mutation(
        "weights on the left (transposed scores)",
        "return tf.matmul(h2, w3) + b3",
        "return tf.matmul(w3, h2, transpose_a=True, transpose_b=True) + b3[:, None]",
    ),
    Mutation(
        "input not flattened",
        "tf.matmul(flatten(x), w1)",
        "tf.matmul(x, w1)",
    ),
]

THREE_LAYER_FC_INIT = [
    Mutation(
        "biases start at one",
        "params.append(tf.Variable(tf.zeros((fan_out,))))",
        "params.append(tf.Variable(tf.ones((fan_out,))))",
    ),
    Mutation(
        "random biases",
        "params.append(tf.Variable(tf.zeros((fan_out,))))",
        "params.append(tf.Variable(tf.random.normal((fan_out,))))",
    ),
    Mutation(
        "biases are tensors, not variables",
        "params.append(tf.Variable(tf.zeros((fan_out,))))",
        "params.append(tf.zeros((fan_out,)))",
    ),
    Mutation(
        "kaiming std 1/fan_in (three layers)",
        "tf.Variable(lab.kaiming_normal((fan_in, fan_out)))",
        "tf.Variable(tf.random.normal((fan_in, fan_out)) / fan_in)",
    ),
    Mutation(
        "Glorot scale instead of Kaiming",
        "tf.Variable(lab.kaiming_normal((fan_in, fan_out)))",
        "tf.Variable(tf.random.normal((fan_in, fan_out)) * np.sqrt(2 / (fan_in + fan_out)))",
    ),
    Mutation(
        "float64 weights from NumPy",
        "tf.Variable(lab.kaiming_normal((fan_in, fan_out)))",
        "tf.Variable(np.random.normal(0, np.sqrt(2 / fan_in), (fan_in, fan_out)))",
    ),
    Mutation(
        "weight shapes transposed",
        "lab.kaiming_normal((fan_in, fan_out))",
        "lab.kaiming_normal((fan_out, fan_in))",
    ),
    Mutation(
        "hidden_sizes ignored",
        "sizes = [32 * 32 * 3, *hidden_sizes, 10]",
        "sizes = [32 * 32 * 3, 1024, 256, 10]",
    ),
]

EVALUATE_LOSS = [
    Mutation(
        "summed loss, not the mean",
        "return tf.reduce_mean(losses)",
        "return tf.reduce_sum(losses)",
    ),
    Mutation(
        "log base 10",
        "return tf.reduce_mean(losses)",
        "return tf.reduce_mean(losses) / np.log(10)",
    ),
    Mutation(
        "softmax applied before the loss",
        "logits=model_fn(x, params))",
        "logits=tf.nn.softmax(model_fn(x, params)))",
    ),
    Mutation(
        "evaluation takes a training step",
        "    return tf.reduce_mean(losses)\n",
        "    return training_step(model_fn, x, y, params, 0.1)\n",
    ),
]

OVERFIT_TINY_SUBSET = [
    Mutation(
        "one step only",
        "for _ in range(num_steps):",
        "for _ in range(1):",
    ),
    Mutation(
        "fresh weights at every step",
        "training_step(two_layer_fc, x, y, params, learning_rate)",
        "training_step(two_layer_fc, x, y, two_layer_fc_init(hidden_size=500), learning_rate)",
    ),
    Mutation(
        "learning rate far too small",
        "training_step(two_layer_fc, x, y, params, learning_rate)",
        "training_step(two_layer_fc, x, y, params, learning_rate * 1e-3)",
    ),
    Mutation(
        "trained on a tenth of the subset",
        "training_step(two_layer_fc, x, y, params, learning_rate)",
        "training_step(two_layer_fc, x[:10], y[:10], params, learning_rate)",
    ),
    Mutation(
        "default hidden size",
        "params = two_layer_fc_init(hidden_size=500)",
        "params = two_layer_fc_init()",
    ),
]

MOMENTUM_UPDATE = [
    Mutation(
        "plain SGD, velocity unused",
        "        w.assign_add(v)\n",
        "        w.assign_sub(learning_rate * grad)\n",
    ),
    Mutation(
        "velocity rebound, not kept between steps",
        "v.assign(momentum * v - learning_rate * grad)",
        "v = momentum * v - learning_rate * grad",
    ),
    Mutation(
        "weight moved before the velocity is updated",
        "        v.assign(momentum * v - learning_rate * grad)\n        w.assign_add(v)\n",
        "        w.assign_add(v)\n        v.assign(momentum * v - learning_rate * grad)\n",
    ),
    Mutation(
        "dampened gradient (1 - momentum)",
        "v.assign(momentum * v - learning_rate * grad)",
        "v.assign(momentum * v - (1 - momentum) * learning_rate * grad)",
    ),
    Mutation(
        "gradient ascent",
        "v.assign(momentum * v - learning_rate * grad)",
        "v.assign(momentum * v + learning_rate * grad)",
    ),
]

MUTATIONS = (
    TRAINING_STEP
    + TWO_LAYER_FC_INIT
    + EVALUATE_LOSS
    + OVERFIT_TINY_SUBSET
    + THREE_LAYER_FC
    + THREE_LAYER_FC_INIT
    + MOMENTUM_UPDATE
)


def test_wrong_answers_fail_their_checks_and_stubs_stop(executed_notebooks):
    assert_checks_catch(executed_notebooks[NOTEBOOK.stem], MUTATIONS)
