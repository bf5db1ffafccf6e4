"""The grader's probes (``cifar_lab.instructor.verdicts``): verdicts student code cannot reach.

In-process tests run each probe's kernel-side cell with ``exec`` in a namespace
holding the course's model answer (:mod:`notebook_definitions`) or a wrong
one, mutation style: the model answer passes, every mutation fails. Kernel
tests re-execute small ``01_preparation`` notebooks whose exercises are left
as ``pass`` under each attack that fooled the in-kernel checks (issue 23 §1):
every probed check stays at 0, and the model answers keep their points.
"""

from __future__ import annotations

import io
import itertools
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from notebook_definitions import notebook_definitions
from test_exercises_04 import CALLBACKS, PIPELINE, TEMPLATES

from cifar_lab.instructor import verdicts
from cifar_lab.instructor.points import POINTS
from cifar_lab.instructor.verdicts import (
    OUTPUTS_FILE,
    PROBED,
    PROBES,
    UNPROBED,
    probes_of,
    read_outputs,
    run_probe,
)

N01, N02, N05 = "01_preparation", "02_barebones_tensorflow", "05_tuning"
N03, N04 = "03_keras_model_subclassing", "04_keras_sequential_functional"
PROBE = {probe.grade_id: probe for probe in PROBES}


def _answers_01() -> dict:
    return dict(notebook_definitions(N01, "standardise_splits", "Minibatches"))


def _verdict(grade_id: str, namespace: dict, tmp_path: Path) -> dict:
    """Run one probe with ``exec`` standing in for the kernel, on ``namespace``'s names."""
    namespace = {"np": np, **namespace}
    return run_probe(PROBE[grade_id], tmp_path, lambda source: exec(source, namespace))


# ------------------------------------------------------------------- the table
def test_every_check_has_a_probe_or_is_listed_as_unprobed():
    checks = [row.grade_id for rows in POINTS.values() for row in rows if row.kind == "check"]
    assert sorted(PROBED | set(UNPROBED)) == sorted(checks)
    assert not PROBED & set(UNPROBED)
    rows = [(probe.grade_id, probe.notebook) for probe in PROBES]
    rows += [row[:2] for row in verdicts.ACCURACY_PROBES]
    rows += [(spec.grade_id, spec.notebook) for spec in verdicts.AFTER_CHECK_PROBES]
    assert len(rows) == len(PROBED)  # one probe per check
    for grade_id, notebook in rows:
        # each probe runs after the notebook that defines its names
        assert grade_id in {row.grade_id for row in POINTS[f"{notebook}.ipynb"]}


# ------------------------------------------------------ model answers, mutations
@pytest.mark.parametrize(
    "grade_id", sorted(set(PROBE) - {p.grade_id for p in verdicts.SEARCH_PROBES})
)  # the searches: test_a_search_answer_passes_its_probe
def test_the_model_answer_passes_and_leaves_nothing_behind(grade_id, tmp_path):
    answers = {
        **_answers_01(),
        **_answers_02(),
        **_answers_34(),
        **notebook_definitions(N05, "build_network", "train_network"),
    }
    verdict = _verdict(grade_id, answers, tmp_path)
    assert verdict == {"grade_id": grade_id, "passed": True, "message": ""}
    assert list(tmp_path.iterdir()) == []  # the probe folder is removed


def _standardise(sums=np.float64, ddof=0, stats_from="train", out=np.float32, count=5):
    def standardise_splits(X_train, X_val, X_test):
        source = X_train if stats_from == "train" else np.concatenate([X_train, X_val, X_test])
        pixels = source.astype(sums)
        mean = pixels.mean(axis=(0, 1, 2), dtype=sums)
        std = pixels.std(axis=(0, 1, 2), dtype=sums, ddof=ddof)
        splits = [((X - mean) / std).astype(out) for X in (X_train, X_val, X_test)]
        return (*splits, mean.astype(np.float32), std.astype(np.float32))[:count]

    return standardise_splits


STANDARDISE_MUTATIONS = {
    "float32 sums": (_standardise(sums=np.float32), "sum in float64"),
    "ddof=1": (_standardise(ddof=1), "standard deviation"),
    "statistics of all splits": (_standardise(stats_from="all"), "training pixels"),
    "float64 splits": (_standardise(out=np.float64), "float32 array of the input's shape"),
    "four values": (_standardise(count=4), "returns 5 values"),
    "left as pass": (lambda X_train, X_val, X_test: None, "no usable result"),
}


@pytest.mark.parametrize("mutation", sorted(STANDARDISE_MUTATIONS))
def test_a_wrong_standardise_splits_fails_its_probe(mutation, tmp_path):
    function, words = STANDARDISE_MUTATIONS[mutation]
    verdict = _verdict("standardise_splits_check", {"standardise_splits": function}, tmp_path)
    assert not verdict["passed"] and words in verdict["message"], verdict


def _minibatches(order: str = "rng", pairs: bool = True, keep_last: bool = True, stop=None):
    """A Minibatches class with one defect (or none, with the defaults)."""

    class Minibatches:
        def __init__(self, X, y, batch_size, shuffle=False, seed=None):
            self.X, self.y, self.batch_size, self.shuffle = X, y, batch_size, shuffle
            self.seed, self.rng = seed, np.random.default_rng(seed)

        def _order(self, n):
            if not self.shuffle:
                return np.arange(n)
            if order == "fixed seed in __iter__":
                return np.random.default_rng(self.seed).permutation(n)
            if order == "global state":
                return np.random.permutation(n)
            if order == "with replacement":
                return self.rng.integers(0, n, size=n)
            return self.rng.permutation(n)

        def __iter__(self):
            n = len(self.X)
            x_order = self._order(n)
            y_order = x_order if pairs else self._order(n)
            end = n if keep_last else n - n % self.batch_size
            for start in range(0, end, self.batch_size):
                if stop is not None and start >= stop:
                    return
                yield (
                    self.X[x_order[start : start + self.batch_size]],
                    self.y[y_order[start : start + self.batch_size]],
                )

    return Minibatches


class _EndlessMinibatches:
    def __init__(self, X, y, batch_size, shuffle=False, seed=None):
        self.X, self.y = X, y

    def __iter__(self):
        while True:
            yield self.X[:1], self.y[:1]


class _StubMinibatches:
    def __init__(self, X, y, batch_size, shuffle=False, seed=None):
        pass

    def __iter__(self):
        pass


MINIBATCHES_MUTATIONS = {
    "no reshuffle per epoch": (_minibatches(order="fixed seed in __iter__"), "its own order"),
    "global random state": (_minibatches(order="global state"), "same seed repeats"),
    "draws with replacement": (_minibatches(order="with replacement"), "exactly once"),
    "x and y shuffled apart": (_minibatches(pairs=False), "labels of its own examples"),
    "last batch dropped": (_minibatches(keep_last=False), "batch sizes"),
    "one batch only": (_minibatches(stop=1), "batch sizes"),
    "never ends": (_EndlessMinibatches, "batch sizes"),
    "left as pass": (_StubMinibatches, "no usable result"),
}


@pytest.mark.parametrize("mutation", sorted(MINIBATCHES_MUTATIONS))
def test_a_wrong_minibatches_fails_its_probe(mutation, tmp_path):
    cls, words = MINIBATCHES_MUTATIONS[mutation]
    verdict = _verdict("minibatches_check", {"Minibatches": cls}, tmp_path)
    assert not verdict["passed"] and words in verdict["message"], verdict


def test_the_unmutated_test_class_passes(tmp_path):  # the mutations above differ in one thing
    verdict = _verdict("minibatches_check", {"Minibatches": _minibatches()}, tmp_path)
    assert verdict["passed"], verdict


# ------------------------------------------------------------- 02's four probes
ANSWERS_02 = (
    "training_step",
    "two_layer_fc_init",
    "three_layer_fc",
    "three_layer_fc_init",
    "evaluate_loss",
    "overfit_tiny_subset",
    "momentum_update",
)


def _answers_02() -> dict:
    return dict(notebook_definitions(N02, "flatten", "two_layer_fc", *ANSWERS_02))


def _step(update="sub", reduce="mean", only_first=False, loss_after=False):
    def training_step(model_fn, x, y, params, learning_rate):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(y, model_fn(x, params))
            loss = tf.reduce_mean(losses) if reduce == "mean" else tf.reduce_sum(losses)
        gradients = tape.gradient(loss, params)
        for w, grad in list(zip(params, gradients, strict=True))[: 1 if only_first else None]:
            (w.assign_sub if update == "sub" else w.assign_add)(learning_rate * grad)
        return tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(y, model_fn(x, params))
        ) if loss_after else loss  # fmt: skip

    return training_step


def _init(std_of=lambda fan_in, fan_out: np.sqrt(2 / fan_in), variable=True, dtype="float32",
          bias=0.0, transpose=False):  # fmt: skip
    """two_layer_fc_init and three_layer_fc_init, with one defect (or none, by default)."""
    import tensorflow as tf

    def weights(fan_in, fan_out):
        shape = (fan_out, fan_in) if transpose else (fan_in, fan_out)
        values = np.random.default_rng().normal(scale=std_of(fan_in, fan_out), size=shape)
        values = values.astype(dtype)
        return tf.Variable(values) if variable else tf.constant(values)

    def two_layer_fc_init(hidden_size=4000):
        return [weights(3072, hidden_size), weights(hidden_size, 10)]

    def three_layer_fc_init(hidden_sizes=(1024, 256)):
        sizes, params = [3072, *hidden_sizes, 10], []
        for fan_in, fan_out in itertools.pairwise(sizes):
            params += [weights(fan_in, fan_out), tf.Variable(np.full(fan_out, bias, dtype))]
        return params

    return {"two_layer_fc_init": two_layer_fc_init, "three_layer_fc_init": three_layer_fc_init}


def _three_layer(relu_scores=False, biases=True, flatten=True):
    def three_layer_fc(x, params):
        import tensorflow as tf

        w1, b1, w2, b2, w3, b3 = params
        h = tf.reshape(x, (tf.shape(x)[0], -1)) if flatten else x
        for w, b in ((w1, b1), (w2, b2)):
            h = tf.nn.relu(tf.matmul(h, w) + (b if biases else 0))
        scores = tf.matmul(h, w3) + (b3 if biases else 0)
        return tf.nn.relu(scores) if relu_scores else scores

    return three_layer_fc


def _evaluate_loss(reduce="mean", log=np.e, step=False):
    def evaluate_loss(model_fn, x, y, params):
        import tensorflow as tf

        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(y, model_fn(x, params))
        loss = tf.reduce_mean(losses) if reduce == "mean" else tf.reduce_sum(losses)
        if step:  # a training step where only an evaluation is asked for
            _step()(model_fn, x, y, params, 0.1)
        return loss / np.log(log)

    return evaluate_loss


def _overfit(hidden=500, steps=None, rate=None, init_each_step=False):
    """overfit_tiny_subset on the model answer's init and step, with one defect (or none)."""
    answers = notebook_definitions(N02, "flatten", "two_layer_fc", *ANSWERS_02)

    def overfit_tiny_subset(x, y, num_steps=50, learning_rate=1e-2):
        params = answers["two_layer_fc_init"](hidden_size=hidden)
        for _ in range(num_steps if steps is None else steps):
            if init_each_step:
                params = answers["two_layer_fc_init"](hidden_size=hidden)
            rate_used = learning_rate if rate is None else rate
            answers["training_step"](answers["two_layer_fc"], x, y, params, rate_used)
        return params

    return overfit_tiny_subset


def _momentum(velocity=True, nesterov=False, weight_first=False):
    def momentum_update(params, grads, velocities, learning_rate, momentum):
        for w, grad, v in zip(params, grads, velocities, strict=True):
            if not velocity:  # plain SGD: the velocity never builds up
                w.assign_sub(learning_rate * grad)
                continue
            if weight_first:  # the weight moves along the old velocity
                w.assign_add(v)
            v.assign(momentum * v - learning_rate * grad)
            if nesterov:
                w.assign_add(momentum * v - learning_rate * grad)
            elif not weight_first:
                w.assign_add(v)

    return momentum_update


MUTATIONS_02 = {
    "evaluate_loss: summed loss": (
        "evaluate_loss_check", {"evaluate_loss": _evaluate_loss(reduce="sum")}),
    "evaluate_loss: log base 2": ("evaluate_loss_check", {"evaluate_loss": _evaluate_loss(log=2)}),
    "evaluate_loss: takes a training step": (
        "evaluate_loss_check", {"evaluate_loss": _evaluate_loss(step=True)}),
    "overfit_tiny_subset: one step": (
        "overfit_tiny_subset_check", {"overfit_tiny_subset": _overfit(steps=1)}),
    "overfit_tiny_subset: learning rate ignored": (
        "overfit_tiny_subset_check", {"overfit_tiny_subset": _overfit(rate=1e-4)}),
    "overfit_tiny_subset: a fresh network every step": (
        "overfit_tiny_subset_check", {"overfit_tiny_subset": _overfit(init_each_step=True)}),
    "overfit_tiny_subset: 100 hidden units": (
        "overfit_tiny_subset_check", {"overfit_tiny_subset": _overfit(hidden=100)}),
    "momentum_update: plain SGD": (
        "momentum_update_check", {"momentum_update": _momentum(velocity=False)}),
    "momentum_update: Nesterov": (
        "momentum_update_check", {"momentum_update": _momentum(nesterov=True)}),
    "momentum_update: weight before velocity": (
        "momentum_update_check", {"momentum_update": _momentum(weight_first=True)}),
    "training_step: gradient ascent": ("training_step_check", {"training_step": _step("add")}),
    "training_step: summed loss": ("training_step_check", {"training_step": _step(reduce="sum")}),
    "training_step: only w1 updated": (
        "training_step_check", {"training_step": _step(only_first=True)}),
    "training_step: loss after the update": (
        "training_step_check", {"training_step": _step(loss_after=True)}),
    "two_layer_fc_init: Xavier scale": (
        "two_layer_fc_init_check", _init(std_of=lambda fan_in, fan_out: np.sqrt(1 / fan_in))),
    "two_layer_fc_init: fan_out": (
        "two_layer_fc_init_check", _init(std_of=lambda fan_in, fan_out: np.sqrt(2 / fan_out))),
    "two_layer_fc_init: constants": ("two_layer_fc_init_check", _init(variable=False)),
    "two_layer_fc_init: transposed": ("two_layer_fc_init_check", _init(transpose=True)),
    "three_layer_fc: ReLU on the scores": (
        "three_layer_fc_check", {"three_layer_fc": _three_layer(relu_scores=True)}),
    "three_layer_fc: no biases": (
        "three_layer_fc_check", {"three_layer_fc": _three_layer(biases=False)}),
    "three_layer_fc: no flatten": (
        "three_layer_fc_check", {"three_layer_fc": _three_layer(flatten=False)}),
    "three_layer_fc_init: biases of one": ("three_layer_fc_init_check", _init(bias=1.0)),
    "three_layer_fc_init: float64": ("three_layer_fc_init_check", _init(dtype="float64")),
    "three_layer_fc_init: Xavier scale": (
        "three_layer_fc_init_check", _init(std_of=lambda fan_in, fan_out: np.sqrt(1 / fan_in))),
}  # fmt: skip


@pytest.mark.parametrize("mutation", sorted(MUTATIONS_02))
def test_a_wrong_02_answer_fails_its_probe(mutation, tmp_path):
    grade_id, replaced = MUTATIONS_02[mutation]
    verdict = _verdict(grade_id, {**_answers_02(), **replaced}, tmp_path)
    assert not verdict["passed"] and verdict["message"], verdict


@pytest.mark.parametrize("grade_id", sorted(p.grade_id for p in PROBES if p.notebook == N02))
def test_a_02_exercise_left_as_pass_fails(grade_id, tmp_path):
    stub = {name: lambda *args, **kwargs: None for name in ANSWERS_02}
    verdict = _verdict(grade_id, {**_answers_02(), **stub}, tmp_path)
    # momentum_update returns nothing: its stub leaves the weights, which the judge reads
    expected = "after step 1" if grade_id == "momentum_update_check" else "no usable result"
    assert not verdict["passed"] and expected in verdict["message"], verdict


@pytest.mark.parametrize("grade_id", sorted(p.grade_id for p in PROBES if p.notebook == N02))
def test_a_02_exercise_raising_not_implemented_fails(grade_id, tmp_path):
    def unwritten(*args, **kwargs):
        raise NotImplementedError

    stub = dict.fromkeys(ANSWERS_02, unwritten)
    verdict = _verdict(grade_id, {**_answers_02(), **stub}, tmp_path)
    assert not verdict["passed"] and "no usable result" in verdict["message"], verdict


def test_the_unmutated_02_test_functions_pass(tmp_path):  # each mutation differs in one thing
    defaults = {
        "training_step": _step(),
        "three_layer_fc": _three_layer(),
        "evaluate_loss": _evaluate_loss(),
        "overfit_tiny_subset": _overfit(),
        "momentum_update": _momentum(),
        **_init(),
    }
    for probe in probes_of(N02):
        assert _verdict(probe.grade_id, {**_answers_02(), **defaults}, tmp_path)["passed"]


# ------------------------------------------------------- 03's and 04's four probes


TOOLS_04 = ("make_pipeline", "training_callbacks", "first_layer_templates")


def _answers_34() -> dict:
    return {
        **notebook_definitions(N03, "train_step", "ThreeLayerFC"),
        **notebook_definitions(N04, "three_layer_sequential", "three_layer_functional"),
        **notebook_definitions(N04, *TOOLS_04),
    }


def _train_step(training=True, apply=True, metrics=True, loss_after=False):
    """03's train_step with one defect (or none, with the defaults)."""
    import tensorflow as tf

    def train_step(model, optimizer, loss_fn, x, y, train_loss, train_accuracy):
        with tf.GradientTape() as tape:
            scores = model(x, training=training)
            loss = loss_fn(y, scores)
        if apply:
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        if metrics:
            train_loss.update_state(loss)
            train_accuracy.update_state(y, scores)
        return loss_fn(y, model(x, training=training)) if loss_after else loss

    return train_step


def _keras_layers(relu_last=False, glorot=False, bias=True, hidden=(0, 1), glorot_last=False):
    import keras

    he = "glorot_uniform" if glorot else keras.initializers.VarianceScaling(scale=2.0)

    def dense(units, activation=None, init=he):
        return keras.layers.Dense(units, activation, use_bias=bias, kernel_initializer=init)

    def layers(hidden_sizes, num_classes):
        return [
            keras.layers.Flatten(),
            dense(hidden_sizes[hidden[0]], "relu"),
            dense(hidden_sizes[hidden[1]], "relu"),
            dense(
                num_classes, "relu" if relu_last else None, "glorot_uniform" if glorot_last else he
            ),
        ]

    return layers


def _sequential(**defect):
    import keras

    def three_layer_sequential(input_shape, hidden_sizes, num_classes):
        layers = _keras_layers(**defect)(hidden_sizes, num_classes)
        return keras.Sequential([keras.Input(shape=input_shape), *layers])

    return three_layer_sequential


def _functional(**defect):
    import keras

    def three_layer_functional(input_shape, hidden_sizes, num_classes):
        inputs = h = keras.Input(shape=input_shape)
        for layer in _keras_layers(**defect)(hidden_sizes, num_classes):
            h = layer(h)
        return keras.Model(inputs=inputs, outputs=h)

    return three_layer_functional


def _subclassed(**defect):
    import keras

    class ThreeLayerFC(keras.Model):
        def __init__(self, hidden_sizes, num_classes):
            super().__init__()
            self.stack = _keras_layers(**defect)(hidden_sizes, num_classes)

        def call(self, x, training=False):
            for layer in self.stack:
                x = layer(x)
            return x

    return ThreeLayerFC


MUTATIONS_34 = {
    "train_step: training=False": ("train_step_check", "train_step", _train_step(training=False)),
    "train_step: no update": ("train_step_check", "train_step", _train_step(apply=False)),
    "train_step: no metrics": ("train_step_check", "train_step", _train_step(metrics=False)),
    "train_step: loss after": ("train_step_check", "train_step", _train_step(loss_after=True)),
}  # fmt: skip
for _kind, (_grade_id, _name, _make) in {
    "ThreeLayerFC": ("three_layer_model_check", "ThreeLayerFC", _subclassed),
    "sequential": ("three_layer_sequential_check", "three_layer_sequential", _sequential),
    "functional": ("three_layer_functional_check", "three_layer_functional", _functional),
}.items():
    for _defect, _options in {
        "ReLU on the logits": {"relu_last": True},
        "Glorot init": {"glorot": True},
        "output layer at Keras' default (Glorot)": {"glorot_last": True},
        "no biases": {"bias": False},
        "H1 twice": {"hidden": (0, 0)},
    }.items():
        MUTATIONS_34[f"{_kind}: {_defect}"] = (_grade_id, _name, _make(**_options))
MUTATIONS_34["sequential: a functional model"] = (
    "three_layer_sequential_check",
    "three_layer_sequential",
    _functional(),
)
MUTATIONS_34["functional: a Sequential"] = (
    "three_layer_functional_check", "three_layer_functional", _sequential())  # fmt: skip


@pytest.mark.parametrize("mutation", sorted(MUTATIONS_34))
def test_a_wrong_03_or_04_answer_fails_its_probe(mutation, tmp_path):
    grade_id, name, wrong = MUTATIONS_34[mutation]
    verdict = _verdict(grade_id, {**_answers_34(), name: wrong}, tmp_path)
    assert not verdict["passed"] and verdict["message"], verdict


def test_the_unmutated_03_and_04_test_versions_pass(tmp_path):
    defaults = {
        "train_step": _train_step(),
        "ThreeLayerFC": _subclassed(),
        "three_layer_sequential": _sequential(),
        "three_layer_functional": _functional(),
        **notebook_definitions(N04, *TOOLS_04),  # the tools' mutations: the notebook's own
    }
    for probe in (*probes_of(N03), *probes_of(N04)):
        assert _verdict(probe.grade_id, defaults, tmp_path)["passed"], probe.grade_id


# ------------------------------------- 04's tools: the notebook's own wrong answers
TOOL_MUTATIONS_04 = {
    mutation.name: (grade_id, mutation)
    for grade_id, mutations in (
        ("make_pipeline_check", PIPELINE),
        ("training_callbacks_check", CALLBACKS),
        ("first_layer_templates_check", TEMPLATES),
    )
    for mutation in mutations
}


def _mutated_notebook_04(name: str, old: str, new: str):
    """Notebook 04's model answer of ``name`` with ``old`` replaced by ``new``."""
    import keras
    import nbformat
    import tensorflow as tf

    import cifar_lab as lab

    path = Path(__file__).parents[1] / "notebooks" / f"{N04}.ipynb"
    cell = next(
        c.source
        for c in nbformat.read(path, as_version=4).cells
        if c.cell_type == "code" and f"def {name}(" in c.source
    )
    assert cell.count(old) == 1, old
    namespace = {"np": np, "tf": tf, "keras": keras, "lab": lab}
    exec(compile(cell.replace(old, new), f"<{N04} mutated>", "exec"), namespace)
    return namespace[name]


@pytest.mark.parametrize("mutation", sorted(TOOL_MUTATIONS_04))
def test_a_notebook_04_tool_mutation_fails_its_probe(mutation, tmp_path):
    grade_id, change = TOOL_MUTATIONS_04[mutation]
    (name,) = PROBE[grade_id].calls
    wrong = _mutated_notebook_04(name, change.old, change.new)
    verdict = _verdict(grade_id, {name: wrong}, tmp_path)
    assert not verdict["passed"] and verdict["message"], verdict
    assert list(tmp_path.iterdir()) == []  # the checkpoints went with the probe folder


def test_the_callbacks_probe_reckons_early_stopping_as_keras_does():
    # best at epoch 3 (1-based), patience 2: epochs 4 and 5 do not improve, stop after 5
    accuracy = np.array([0.2, 0.3, 0.5, 0.4, 0.5, 0.9, 0.1])
    assert verdicts._early_stopping(accuracy, 2) == (5, 3)
    assert verdicts._early_stopping(accuracy, 3) == (7, 6)  # 0.9 comes in time
    assert verdicts._early_stopping(np.array([0.1, 0.2, 0.3]), 1) == (3, 3)  # never stops
    drawn = PROBE["training_callbacks_check"].draw(np.random.default_rng(0))
    first, second = drawn["patience"].tolist()
    assert first != second  # a fixed patience fails one of the two fits
    for run, patience in enumerate((first, second)):
        stop, best = verdicts._early_stopping(drawn[f"accuracy{run}"], patience)
        assert stop == best + patience < len(drawn[f"accuracy{run}"])  # stops early
        assert np.all(np.diff(drawn[f"loss{run}"]) < 0)  # watching the loss never stops


# ------------------------------------------------- 05's build_network and train_network
def _build_network(*defects: str):
    """05's build_network as the exercise asks for it, with ``defects`` (none: right)."""
    import keras

    def build_network(hidden_sizes, *, activation="relu", initializer="he_normal",
                      batch_norm="none", dropout=0.0, l2=0.0):  # fmt: skip
        penalty = keras.regularizers.L2(l2) if l2 > 0 and "l2" not in defects else None
        init = "glorot_uniform" if "initializer" in defects else initializer
        inputs = x = keras.Input(shape=(32, 32, 3))
        if "conv" in defects:
            x = keras.layers.Conv2D(3, 3, padding="same")(x)
        x = keras.layers.Flatten()(x)
        for units in hidden_sizes[:1] if "widths" in defects else hidden_sizes:
            x = keras.layers.Dense(units, kernel_initializer=init, kernel_regularizer=penalty)(x)
            if batch_norm == "before" and "batch_norm" not in defects:
                x = keras.layers.BatchNormalization()(x)
            if activation == "prelu":
                x = keras.layers.PReLU()(x)
            else:
                x = keras.layers.Activation("relu" if "activation" in defects else activation)(x)
            if batch_norm == "after" and "batch_norm" not in defects:
                x = keras.layers.BatchNormalization()(x)
            if dropout > 0 and "dropout" not in defects:
                x = keras.layers.Dropout(dropout)(x)
        last = "glorot_uniform" if "output initializer" in defects else init
        outputs = keras.layers.Dense(10, kernel_initializer=last, kernel_regularizer=penalty)(x)
        return keras.Model(inputs, outputs)

    return build_network


# mutation -> (the defect, words of the grader's message)
MUTATIONS_05 = {
    "activation ignored (always ReLU)": ("activation", "tanh net"),
    "initializer ignored": ("initializer", "initializer='zeros'"),
    "batch_norm ignored": ("batch_norm", "batch_norm='before' gives"),
    "dropout ignored": ("dropout", "gives Dropout"),
    "l2 ignored": ("l2", "l2 adds the penalty"),
    "a convolution": ("conv", "no convolution layers"),
    "one hidden layer only": ("widths", "gives Dense kernels"),
    "the output layer at Keras's default initialiser": ("output initializer", "output layer's"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS_05))
def test_a_wrong_build_network_fails_its_probe(mutation, tmp_path):
    defect, words = MUTATIONS_05[mutation]
    probe = PROBE["build_network_check"]
    seed = 0  # the first net draws tanh, for "activation ignored"
    assert int(probe.draw(np.random.default_rng(seed))["activation"]) == 1
    namespace = {"np": np, "build_network": _build_network(defect)}
    verdict = run_probe(probe, tmp_path, lambda source: exec(source, namespace), seed=seed)
    assert not verdict["passed"] and words in verdict["message"], verdict


def test_the_unmutated_test_build_network_passes(tmp_path):  # each mutation differs in one thing
    verdict = _verdict("build_network_check", {"build_network": _build_network()}, tmp_path)
    assert verdict["passed"], verdict


# The notebook's own mutations of its model answer (tests/test_exercises_05.py has them
# against the check cell): the probe's grid of activations x placements and its zeros
# network catch them. mutation -> ((old, new), ...), words of the grader's message.
NOTEBOOK_MUTATIONS_05 = {
    "every activation but tanh mapped to ReLU": (
        (("x = keras.layers.Activation(activation)(x)",
          'x = keras.layers.Activation("tanh" if activation == "tanh" else "relu")(x)'),),
        "elu with batch_norm="),
    "batch_norm='after' ignored": (
        (('        if batch_norm == "after":\n'
          "            x = keras.layers.BatchNormalization()(x)\n", ""),),
        "with batch_norm='after': BatchNormalization layers of sizes []"),
    "batch norm always before the activation": (
        (('if batch_norm == "before":', 'if batch_norm != "none":'),
         ('if batch_norm == "after":', "if False:")),
        "with batch_norm='after'"),
    "PReLU as a fixed leaky ReLU": (
        (("x = keras.layers.PReLU()(x)", "x = keras.layers.LeakyReLU(negative_slope=0.25)(x)"),),
        "prelu with batch_norm="),
    "SELU built as ELU": (
        (("x = keras.layers.Activation(activation)(x)",
          'x = keras.layers.Activation("elu" if activation == "selu" else activation)(x)'),),
        "selu with batch_norm="),
    "GELU as ReLU": (
        (("x = keras.layers.Activation(activation)(x)",
          'x = keras.layers.Activation("relu" if activation == "gelu" else activation)(x)'),),
        "gelu with batch_norm="),
    "the output layer left at Keras's default initialiser": (
        (("outputs = dense(10)(x)",
          "outputs = keras.layers.Dense(10, kernel_regularizer=penalty)(x)"),),
        "initializer='zeros' makes every Dense kernel zero, the output layer's too"),
}  # fmt: skip


def _notebook_cell(grade_id: str) -> str:
    """The source of notebook 05's cell ``grade_id``."""
    import nbformat

    path = Path(__file__).parents[1] / "notebooks" / f"{N05}.ipynb"
    return next(
        c.source
        for c in nbformat.read(path, as_version=4).cells
        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id
    )


def _mutated_notebook_05(grade_id: str, *replacements: tuple[str, str]):
    """Notebook 05's model answer ``grade_id`` with each (old, new) replaced."""
    import keras
    import tensorflow as tf

    import cifar_lab as lab

    cell = _notebook_cell(grade_id)
    for old, new in replacements:
        assert old in cell, old
        cell = cell.replace(old, new)
    namespace = {"np": np, "tf": tf, "keras": keras, "lab": lab}
    exec(compile(cell, f"<{N05} mutated>", "exec"), namespace)
    return namespace[grade_id]


@pytest.mark.parametrize("mutation", sorted(NOTEBOOK_MUTATIONS_05))
def test_a_notebook_05_mutation_fails_the_build_network_probe(mutation, tmp_path):
    replacements, words = NOTEBOOK_MUTATIONS_05[mutation]
    wrong = _mutated_notebook_05("build_network", *replacements)
    verdict = _verdict("build_network_check", {"build_network": wrong}, tmp_path)
    assert not verdict["passed"] and words in verdict["message"], verdict


def _notebook_05_check(build_network) -> str | None:
    """Run notebook 05's ``build_network_check`` cell in-process; its failure, or None."""
    import keras

    import cifar_lab as lab

    namespace = {"np": np, "keras": keras, "lab": lab, "build_network": build_network}
    try:
        exec(compile(_notebook_cell("build_network_check"), f"<{N05} check>", "exec"), namespace)
    except AssertionError as failure:
        return str(failure)
    return None


# PReLU as the notebook's check and the probe both take it, or both refuse it
PRELU_FORMS = {
    "one slope per unit": ("keras.layers.PReLU()(x)", True),
    "one slope shared by the layer": ("keras.layers.PReLU(shared_axes=[1])(x)", True),
    "two PReLU layers per hidden layer": (
        "keras.layers.PReLU()(keras.layers.PReLU()(x))",
        False,
    ),
}


@pytest.mark.parametrize("form", sorted(PRELU_FORMS))
def test_the_probe_takes_the_prelu_forms_the_notebooks_check_takes(form, tmp_path):
    replacement, accepted = PRELU_FORMS[form]
    network = _mutated_notebook_05("build_network", ("keras.layers.PReLU()(x)", replacement))
    in_notebook = _notebook_05_check(network)
    assert (in_notebook is None) == accepted, in_notebook
    verdict = _verdict("build_network_check", {"build_network": network}, tmp_path)
    assert verdict["passed"] == accepted, verdict
    if not accepted:  # the hint names why: PReLU layers and their slopes
        assert "prelu with batch_norm=" in verdict["message"], verdict
        assert "PReLU layers of slope shapes" in verdict["message"], verdict


def test_the_grid_covers_every_activation_the_notebook_offers_with_every_placement():
    import ast
    import re

    offered = re.search(r"^ACTIVATIONS = (\(.*?\))", _notebook_cell("build_network_check"), re.M)
    assert sorted(verdicts.GRID_ACTIVATIONS) == sorted(ast.literal_eval(offered.group(1)))
    assert verdicts.GRID_PLACES == ("none", "before", "after")
    grid = PROBE["build_network_check"].draw(np.random.default_rng(0))["grid"]
    assert sorted(map(tuple, grid.tolist())) == sorted(
        itertools.product(range(len(verdicts.GRID_ACTIVATIONS)), range(3))
    )


# train_network's mutations: each fails the probe (it trains for real: ~10 s each)
TRAIN_NETWORK_MUTATIONS = {
    "learning rate ignored": (
        ("CosineDecay(learning_rate,", "CosineDecay(1e-3,"),
        "optimizer='sgd' with learning_rate=0 leaves every weight unchanged"),
    "optimizer name ignored": (
        ("model.compile(optimizer=make[optimizer](),", 'model.compile(optimizer=make["adamw"](),'),
        "optimizer='sgd' compiles keras.optimizers.SGD"),
    "augmentation mapped in parallel": (
        ("(shift(flip(images)), labels))",
         "(shift(flip(images)), labels), num_parallel_calls=tf.data.AUTOTUNE)"),
        "trained twice with the same seed gives the same weights"),
    "augment ignored": (
        ("    if augment:  # in the pipeline", "    if False:  # in the pipeline"),
        "augment=True changes the training"),
}  # fmt: skip


@pytest.mark.parametrize("mutation", sorted(TRAIN_NETWORK_MUTATIONS))
def test_a_wrong_train_network_fails_its_probe(mutation, tmp_path):
    replacement, words = TRAIN_NETWORK_MUTATIONS[mutation]
    namespace = {
        **notebook_definitions(N05, "build_network"),
        "train_network": _mutated_notebook_05("train_network", replacement),
    }
    verdict = _verdict("train_network_check", namespace, tmp_path)
    assert not verdict["passed"] and words in verdict["message"], verdict


def _train_network_outputs(drawn: dict, **changed) -> dict:
    """What the kernel returns for a right train_network; ``changed`` replaces entries."""
    epochs = int(drawn["epochs"])
    outputs = {
        "history": np.array([1, epochs, epochs, epochs]),
        "predicted": drawn["y"][: verdicts.TINY_IMAGES].copy(),
        "moved": np.zeros(5),
        "optimizers": np.array(["SGD", "SGD", "RMSprop", "Adam", "AdamW"]),
        "momentum": np.array([0.0, 0.9, 0.0, 0.0, 0.0]),
        "augment": np.array([0.0, 0.02]),  # (twice with one seed, with and without)
    }
    return {**outputs, **changed}


def _wrong_predictions(drawn: dict, right: int) -> np.ndarray:
    labels = drawn["y"][: verdicts.TINY_IMAGES]
    return np.where(np.arange(len(labels)) < right, labels, (labels + 1) % 10)


# what the kernel may return, judged without training -> (outputs changed, words or "")
TRAIN_NETWORK_RESULTS = {
    "right": (lambda d: {}, ""),
    "exactly at the floor": (lambda d: {"predicted": _wrong_predictions(d, 95)}, ""),
    "below the floor": (lambda d: {"predicted": _wrong_predictions(d, 94)}, "fits them"),
    "another History": (lambda d: {"history": np.array([0, 40, 40, 40])}, "returns the History"),
    "epochs ignored": (
        lambda d: {"history": np.array([1, 1, 1, 1]) * (int(d["epochs"]) + 1)}, "trains"),
    "no validation curve": (
        lambda d: {"history": np.array([1, int(d["epochs"]), int(d["epochs"]), 0])},
        "history['val_accuracy']"),
    "a weight moved at rate 0": (
        lambda d: {"moved": np.array([0, 0, 1e-7, 0, 0])}, "optimizer='rmsprop' with"),
    "momentum for plain SGD": (
        lambda d: {"momentum": np.array([0.9, 0.9, 0, 0, 0])}, "without momentum"),
    "no momentum for momentum": (
        lambda d: {"momentum": np.zeros(5)}, "optimizer='momentum' compiles"),
    "Adam for AdamW": (
        lambda d: {"optimizers": np.array(["SGD", "SGD", "RMSprop", "Adam", "Adam"])},
        "keras.optimizers.AdamW"),
    "one optimiser missing": (
        lambda d: {"optimizers": np.array(["SGD", "SGD", "RMSprop", "Adam"])},
        "one result per optimiser"),
    "augmentation differs under one seed": (
        lambda d: {"augment": np.array([1e-6, 0.02])}, "a weight differs by 1e-06"),
    "augment=True trains as augment=False": (
        lambda d: {"augment": np.array([0.0, 0.0])}, "augment=True changes the training"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(TRAIN_NETWORK_RESULTS))
def test_the_train_network_probe_judges_as_the_check_does(case):
    change, words = TRAIN_NETWORK_RESULTS[case]
    drawn = PROBE["train_network_check"].draw(np.random.default_rng(0))
    message = verdicts._judge_train_network(drawn, _train_network_outputs(drawn, **change(drawn)))
    assert (message == "") == (not words) and words in message, message


def test_the_train_network_probe_draws_data_a_right_answer_fits():
    """Fresh images, labels and epochs each time, as many as the check's."""
    first, second = (PROBE["train_network_check"].draw(np.random.default_rng(s)) for s in (1, 2))
    assert first["x"].shape == (150, 32, 32, 3) and first["x"].dtype == np.float32
    assert not np.array_equal(first["x"], second["x"])
    assert not np.array_equal(first["y"], second["y"])
    assert {int(PROBE["train_network_check"].draw(np.random.default_rng(s))["epochs"])
            for s in range(20)} > {40}  # fmt: skip


# ------------------------------------------------------------------ the channel
def test_each_grading_draws_inputs_the_kernel_has_not_seen(tmp_path):
    seen = []

    def kernel(source: str) -> None:
        folder = source.split("__cifar_lab_probe(")[-1].split(")")[0].strip("'\"")
        with np.load(Path(folder) / verdicts.INPUTS_FILE) as stored:
            seen.append(stored["X_train"].copy())

    for _ in range(2):
        run_probe(PROBE["standardise_splits_check"], tmp_path, kernel)
    assert len(seen) == 2 and not np.array_equal(seen[0], seen[1])


def _forging_kernel(write) -> callable:
    """A kernel that ignores the grader's cell and writes a result file of its own."""

    def kernel(source: str) -> None:
        folder = Path(source.split("__cifar_lab_probe(")[-1].split(")")[0].strip("'\""))
        write(folder, np.load(folder / verdicts.INPUTS_FILE))

    return kernel


def _copy_inputs(folder: Path, stored) -> None:
    """A forged answer of the right names and shapes: the inputs themselves."""
    arrays = {f"r{i}": stored[k].astype(np.float32) for i, k in enumerate(stored.files[:3])}
    arrays |= {"r3": np.zeros(3, np.float32), "r4": np.ones(3, np.float32)}
    arrays |= {"big_mean": np.zeros(3, np.float32), "big_std": np.ones(3, np.float32)}
    np.savez(folder / OUTPUTS_FILE, **arrays)


def test_a_result_forged_without_the_function_fails(tmp_path):
    verdict = run_probe(PROBE["standardise_splits_check"], tmp_path, _forging_kernel(_copy_inputs))
    assert not verdict["passed"] and "mean" in verdict["message"], verdict


def _bomb(path: Path) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (10**9,)})  # fmt: skip
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("r0.npy", header.getvalue() + b"\0" * (8 << 20))


def _lying_header(path: Path) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (10**8,)})  # fmt: skip
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("r0.npy", header.getvalue() + b"\0" * 64)


BAD_RESULTS = {
    "missing": (lambda path: None, "no result was written"),
    "a symlink": (lambda path: path.symlink_to("/etc/hostname"), "no result was written"),
    "a fifo": (lambda path: os.mkfifo(path), "not a regular file"),
    "garbage": (lambda path: path.write_bytes(b"not a zip"), "not a readable .npz"),
    "object array": (
        lambda path: np.savez(path, r0=np.array([{}], dtype=object)),
        "object array",
    ),
    "too large": (lambda path: path.write_bytes(b"\0" * (65 << 20)), "over 64 MB"),
    "a deflate bomb": (_bomb, "more than 64 MB"),
    "a header that lies": (_lying_header, "more than 64 MB"),
    "too many arrays": (
        lambda path: np.savez(path, **{f"a{i}": np.zeros(1) for i in range(65)}),
        "more than 64 arrays",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RESULTS))
def test_a_result_file_outside_the_limits_is_refused_unread(case, tmp_path):
    make, words = BAD_RESULTS[case]
    path = tmp_path / OUTPUTS_FILE
    make(path)
    found = read_outputs(path)
    assert isinstance(found, str) and words in found, found


def test_a_result_file_within_the_limits_is_read(tmp_path):
    np.savez(tmp_path / OUTPUTS_FILE, r0=np.arange(3, dtype=np.int32))
    found = read_outputs(tmp_path / OUTPUTS_FILE)
    assert isinstance(found, dict) and found["r0"].tolist() == [0, 1, 2]


# ------------------------------------------------ attacks, through the real re-run
STUBS_01 = (
    "def standardise_splits(X_train, X_val, X_test):\n    pass",
    "class Minibatches:\n"
    "    def __init__(self, X, y, batch_size, shuffle=False, seed=None):\n        pass\n\n"
    "    def __iter__(self):\n        pass",
)
IN_KERNEL_CHECK = """\
result = standardise_splits(np.ones((2, 2, 2, 3), np.uint8), None, None)
lab.check_that(result is not None and len(result) == 5, what="five values", hint="return them")
lab.check_close(np.asarray(result[3]), np.ones(3), what="the mean", hint="X_train's mean")"""

ATTACKS = {
    "IPython ast_transformers": """\
import ast


class Pass(ast.NodeTransformer):
    def visit_Call(self, node):
        self.generic_visit(node)
        name = getattr(node.func, "attr", getattr(node.func, "id", ""))
        return ast.Constant(None) if name.startswith("check_") else node

    def visit_Module(self, node):
        self.generic_visit(node)
        handler = ast.ExceptHandler(type=None, name=None, body=[ast.Pass()])
        node.body = [ast.Try(body=[s], handlers=[handler], orelse=[], finalbody=[])
                     for s in node.body]
        return ast.fix_missing_locations(node)


get_ipython().ast_transformers.append(Pass())""",
    "IPython input_transformers_post forging the result": """\
import re


def forge(lines):
    found = re.search(r"__cifar_lab_probe\\('([^']+)'\\)", "".join(lines))
    if not found:
        return [line.replace("lab.check_", "(lambda *a, **k: None) or lab.check_")
                for line in lines]
    return [f"import numpy\\nfolder = {found.group(1)!r}\\n",
            "arrays = {f'r{i}': numpy.zeros(3, numpy.float32) for i in range(5)}\\n",
            "numpy.savez(folder + '/outputs.npz', **arrays)\\n"]


get_ipython().input_transformers_post.append(forge)""",
    "operator.setitem(vars(np), ...)": """\
import operator
operator.setitem(vars(np), "allclose", lambda *a, **k: True)
operator.setitem(vars(np), "all", lambda *a, **k: True)""",
    "functools.partial(setattr, np)": """\
import functools
functools.partial(setattr, np)("allclose", lambda *a, **k: True)
functools.partial(setattr, np)("array_equal", lambda *a, **k: True)""",
    "map(setattr, [np], ...)": """\
list(map(setattr, [np, np], ["allclose", "all"], [lambda *a, **k: True] * 2))""",
    "f_globals through a helper": """\
import sys
import types


def helper():
    no_op = lambda *a, **k: None
    checks = dict(check_that=no_op, check_close=no_op, check_at_least=no_op, record=no_op)
    sys._getframe(1).f_globals["lab"] = types.SimpleNamespace(**checks)


helper()""",
}


def _rerun_01(folder: Path, *cells: str) -> dict:
    """Re-run a submission whose 01_preparation is made of ``cells``; return its record."""
    import nbformat

    from cifar_lab.instructor.rerun import RerunSettings, rerun_notebooks

    folder.mkdir(parents=True, exist_ok=True)
    first = nbformat.v4.new_code_cell("import numpy as np\nimport cifar_lab as lab")
    notebook = nbformat.v4.new_notebook(
        cells=[first, *(nbformat.v4.new_code_cell(cell) for cell in cells)]
    )
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, folder / f"{N01}.ipynb")
    settings = RerunSettings(profile="quick", total_timeout=300, cell_timeout=120)
    records, problem = rerun_notebooks(folder, [N01], settings)
    assert problem is None, problem
    return records[N01]


@pytest.mark.slow
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_an_attack_in_a_solution_cell_leaves_every_probed_check_at_zero(attack, tmp_path):
    record = _rerun_01(tmp_path / "sub", ATTACKS[attack] + "\n\n" + STUBS_01[0], STUBS_01[1],
                       IN_KERNEL_CHECK)  # fmt: skip
    assert sorted(record["verdicts"]) == sorted(probe.grade_id for probe in probes_of(N01))
    for verdict in record["verdicts"].values():
        assert verdict["passed"] is False, (attack, record)
    if attack.startswith("IPython"):  # it fools the checks in the kernel, not the probes
        assert record["status"] == "ok", record


def _course_solution(grade_id: str) -> str:
    import nbformat

    from cifar_lab.instructor.notebooks import notebook_dir

    cells = nbformat.read(notebook_dir() / f"{N01}.ipynb", as_version=4).cells
    return next(
        c.source for c in cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id
    )


@pytest.mark.slow
def test_the_model_answers_pass_the_01_probes_in_a_real_kernel(tmp_path):
    record = _rerun_01(
        tmp_path / "sub", *map(_course_solution, ("standardise_splits", "minibatches"))
    )
    assert record["status"] == "ok", record
    found = {v["grade_id"]: v["passed"] for v in record["verdicts"].values()}
    assert found == {probe.grade_id: True for probe in probes_of(N01)}


# ------------------------------------------------------- points, through grading
def _submitted_01(solutions: dict[str, str]) -> dict:
    """The course's 01 as a student hands it in: run, every check printing "passed"."""
    import json
    import re

    from instructor_fixtures import check_output, executed

    from cifar_lab.instructor.notebooks import notebook_dir

    notebook = json.loads((notebook_dir() / f"{N01}.ipynb").read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in solutions:
            cell["source"] = solutions[grade_id]
    notebook = executed(notebook, {})
    for cell in notebook["cells"]:
        for _ in re.findall(r"check_(?:that|close)\(", "".join(cell["source"])):
            cell.setdefault("outputs", []).append(check_output(what="property"))
    return notebook


@pytest.mark.slow
def test_under_rerun_the_probes_decide_the_points_of_a_hooked_and_an_honest_01(tmp_path):
    import json

    from conftest import REAL_SOURCE

    from cifar_lab.instructor.grading import GradeSettings, grade_folder
    from cifar_lab.instructor.release import build_release
    from cifar_lab.instructor.rerun import RerunSettings

    if REAL_SOURCE is None:
        pytest.skip("notebook 01 loads real CIFAR-10 ($CIFAR10_SOURCE)")
    manifest = build_release()[1]
    manifest = dict(manifest, notebooks={N01: manifest["notebooks"][N01]})
    hooked = {
        "standardise_splits": ATTACKS["IPython ast_transformers"] + "\n\n" + STUBS_01[0],
        "minibatches": STUBS_01[1],
    }
    for student, solutions in (("hooked", hooked), ("honest", {})):
        (tmp_path / student).mkdir()
        notebook = _submitted_01(solutions)
        (tmp_path / student / f"{N01}.ipynb").write_text(json.dumps(notebook), encoding="utf-8")
    points = sum(PROBE_POINTS.values())
    static = GradeSettings(manifest=manifest, rerun=None)  # --trust-outputs: the saved outputs
    without = grade_folder(tmp_path, static, verbose=False)
    assert {row["student"]: row["total_points"] for row in without} == {
        "hooked": points,  # the notebook's own outputs say every check passed
        "honest": points,
    }
    rerun = RerunSettings(profile="quick", source=str(REAL_SOURCE), cell_timeout=300)
    rows = grade_folder(tmp_path, GradeSettings(manifest=manifest, rerun=rerun), verbose=False)
    by_student = {row["student"]: row for row in rows}
    assert by_student["honest"]["total_points"] == points, by_student["honest"]
    assert by_student["hooked"]["total_points"] == 0, by_student["hooked"]
    assert by_student["hooked"]["status"] == "flagged"
    for grade_id in PROBE_POINTS:
        assert any(
            f"'{grade_id}'" in problem and "failed the grader's test" in problem
            for problem in by_student["hooked"]["problems"]
        ), by_student["hooked"]["problems"]


PROBE_POINTS = {
    row.grade_id: row.points
    for rows in POINTS.values()
    for row in rows
    if row.grade_id in PROBED and row.notebook == f"{N01}.ipynb"
}


# The notebook's setup, small: the searches' globals (the data, the budget constants).
SETUP_05 = """\
import cifar_lab as lab
import keras
import numpy as np
import optuna
import tensorflow as tf

rng = np.random.default_rng(0)
X_train, y_train = rng.normal(size=(64, 32, 32, 3)).astype(np.float32), rng.integers(0, 10, 64)
X_val, y_val = rng.normal(size=(32, 32, 32, 3)).astype(np.float32), rng.integers(0, 10, 32)
QUICK = True
SEARCH_IMAGES, SEARCH_EPOCHS = 32, 2
FINE_IMAGES, FINE_EPOCHS = 32, 2
optuna.logging.set_verbosity(optuna.logging.WARNING)
"""


DEFINED = {
    N02: ("flatten", "two_layer_fc", *ANSWERS_02),
    N03: ("train_step", "ThreeLayerFC"),
    N04: ("three_layer_sequential", "three_layer_functional", *TOOLS_04),
    N05: (
        "build_network",
        "train_network",
        "architecture_search",
        "activation_search",
        "initializer_search",
        "optimizer_search",
        "regularisation_search",
    ),
}
SETUP = {N05: SETUP_05}


@pytest.mark.slow
def test_the_model_answers_pass_the_02_to_05_probes_in_real_kernels(tmp_path):
    """Notebooks made of the course's defining cells only (no training): probes in TF kernels."""
    import re

    import nbformat

    from cifar_lab.instructor.notebooks import notebook_dir
    from cifar_lab.instructor.rerun import RerunSettings, rerun_notebooks

    imports = "import cifar_lab as lab\nimport keras\nimport numpy as np\nimport tensorflow as tf"
    for stem, names in DEFINED.items():
        cells = nbformat.read(notebook_dir() / f"{stem}.ipynb", as_version=4).cells
        defining = [
            c.source
            for c in cells
            if c.cell_type == "code"
            and set(re.findall(r"^(?:def|class)\s+(\w+)", c.source, re.MULTILINE)) & set(names)
        ]
        sources = (imports, SETUP.get(stem, ""), *defining)
        notebook = nbformat.v4.new_notebook(
            cells=[nbformat.v4.new_code_cell(source) for source in sources]
        )
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
        nbformat.write(notebook, tmp_path / f"{stem}.ipynb")
    settings = RerunSettings(profile="quick", total_timeout=600, cell_timeout=300)
    records, problem = rerun_notebooks(tmp_path, list(DEFINED), settings)
    assert problem is None, problem
    verdicts_found = {g: v for stem in DEFINED for g, v in records[stem]["verdicts"].items()}
    functions = sorted(p.grade_id for p in PROBES if p.notebook in DEFINED)
    trained = sorted(grade_id for grade_id, stem, _ in verdicts.ACCURACY_PROBES if stem in DEFINED)
    assert sorted(verdicts_found) == sorted(functions + trained)
    assert all(verdicts_found[g]["passed"] for g in functions), verdicts_found
    assert not any(verdicts_found[g]["passed"] for g in trained)  # no model was trained


# ------------------------------------------------------ scoring from the verdicts
def _passed(grade_id: str, passed: bool = True) -> dict:
    return {"grade_id": grade_id, "passed": passed, "message": "" if passed else "mean is wrong"}


def test_probe_verdicts_decide_the_points_of_probed_checks():
    from cifar_lab.instructor.release import build_release
    from cifar_lab.instructor.scoring import score_notebook

    expected = build_release()[1]["notebooks"][N01]
    notebook = _submitted_01({})  # every check printed "passed"
    points = PROBE_POINTS

    def score(probes):
        found = score_notebook(N01, notebook, expected, probes=probes)
        return {c.grade_id: c.points for c in found.cells if c.kind == "check"}, found

    assert score(None)[0] == points  # not re-executed: the notebook's own outputs
    both = {g: _passed(g) for g in points}
    assert score(both)[0] == points and score(both)[1].findings == ()
    one_wrong = {**both, "minibatches_check": _passed("minibatches_check", False)}
    earned, found = score(one_wrong)
    assert earned == {**points, "minibatches_check": 0}
    cell = next(c for c in found.cells if c.grade_id == "minibatches_check")
    assert cell.status == "failed" and "mean is wrong" in cell.reason
    (finding,) = found.findings
    assert finding.severity == "flagged" and "passed in the notebook but failed" in finding.message
    assert score({})[0] == dict.fromkeys(points, 0)  # a probe that never ran is a failure
    assert "did not run" in next(
        c.reason for c in score({})[1].cells if c.points == 0 and c.max_points
    )


def test_a_probe_that_passes_earns_points_the_notebook_outputs_do_not_show():
    from cifar_lab.instructor.release import build_release
    from cifar_lab.instructor.scoring import score_notebook

    expected = build_release()[1]["notebooks"][N01]
    notebook = _submitted_01({})
    for cell in notebook["cells"]:  # the student never ran the checks
        cell["outputs"] = []
    probes = {g: _passed(g) for g in PROBE_POINTS}
    without = score_notebook(N01, notebook, expected)
    with_probes = score_notebook(N01, notebook, expected, probes=probes)
    assert without.points == 0 and with_probes.points == sum(PROBE_POINTS.values())


# ------------------------------------------------------- accuracy of trained models
TRAIN_SIZE = 1234  # the training split size the grader's _labelled images come with


def _labelled(n: int = 60, floor: float = 0.4) -> verdicts.LabelledImages:
    """Images whose class is the brightest of their first 10 numbers."""
    images = np.random.default_rng(0).normal(size=(n, 32, 32, 3)).astype(np.float32)
    labels = images.reshape(n, -1)[:, :10].argmax(axis=1)
    return verdicts.LabelledImages(images, labels, floor, TRAIN_SIZE)


def _linear_model(right: bool):
    """A Keras model that reads the class off the first 10 numbers (or random weights)."""
    import keras

    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(10)])  # fmt: skip
    kernel = np.zeros((3072, 10), np.float32)
    kernel[:10] = np.eye(10) if right else np.random.default_rng(1).normal(size=(10, 10))
    kernel[10:] = 0 if right else np.random.default_rng(2).normal(size=(3062, 10))
    model.set_weights([kernel, np.zeros(10, np.float32)])
    return model


@pytest.mark.parametrize(
    ("namespace", "passed", "words"),
    [
        ({"model_3": "right"}, True, ""),
        ({"model_3": "wrong"}, False, "below 0.4"),
        ({}, False, "no usable result"),
    ],
)
def test_an_accuracy_probe_scores_the_kernels_predictions_with_labels_it_keeps(
    namespace, passed, words, tmp_path
):
    models = {name: _linear_model(kind == "right") for name, kind in namespace.items()}
    validation = _labelled()
    seen = {}

    def kernel(source: str) -> None:
        folder = Path(source.split("__cifar_lab_probe(")[-1].split(")")[0].strip("'\""))
        with np.load(folder / verdicts.INPUTS_FILE) as stored:
            seen.update({name: stored[name] for name in stored.files})
        exec(source, {"np": np, **models})

    probe = verdicts.accuracy_probe("three_layer_model_accuracy_check", N03, "model_3", validation)
    verdict = run_probe(probe, tmp_path, kernel)
    assert verdict["passed"] is passed and words in verdict["message"], verdict
    assert sorted(seen) == ["x"]  # the labels never reach the kernel
    assert sorted(map(bytes, seen["x"])) == sorted(map(bytes, validation.images))


def test_without_the_graders_images_accuracy_probes_are_skipped_and_the_cell_decides(tmp_path):
    from cifar_lab.instructor.scoring import probe_failure

    found = verdicts.probe_notebook(N03, tmp_path, lambda source: None, validation=None)
    for grade_id, _, _ in verdicts.ACCURACY_PROBES:
        assert found[grade_id]["skipped"] is True and probe_failure(found[grade_id]) is None
    assert not found["train_step_check"]["passed"]  # the other probes ran (and failed here)
    found = verdicts.probe_notebook(N04, tmp_path, lambda source: None, validation=None)
    for grade_id in ("sequential_accuracy_check", "functional_accuracy_check"):
        assert found[grade_id]["skipped"] is True and probe_failure(found[grade_id]) is None
    assert verdicts.after_check_probe("sequential_accuracy_check", N04, None) is None
    assert "sequential_accuracy_check" not in verdicts.probe_notebook(
        N04, tmp_path, lambda source: None, validation=_labelled()
    )  # with the images, it runs right after its check cell, not here


@pytest.mark.slow
def test_the_runner_scores_a_trained_models_predictions_on_its_own_images(tmp_path):
    """03 as a random, untrained model: its accuracy is far below the floor; no model_3."""
    import nbformat

    from cifar_lab.instructor.rerun import RerunSettings, rerun_notebooks

    cells = [
        "import cifar_lab as lab\nimport keras\nimport numpy as np",
        "model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), "
        'keras.layers.Dense(10, kernel_initializer="zeros")])  # always class 0',
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, tmp_path / f"{N03}.ipynb")
    settings = RerunSettings(profile="quick", total_timeout=600, cell_timeout=300)
    records, problem = rerun_notebooks(tmp_path, [N03], settings)
    assert problem is None, problem
    found = records[N03]["verdicts"]
    assert not found["subclassed_accuracy_check"]["passed"]
    assert "model's accuracy on the grader's" in found["subclassed_accuracy_check"]["message"]
    assert "no usable result" in found["three_layer_model_accuracy_check"]["message"]


def test_the_graders_validation_images_are_the_profiles_split_as_the_notebooks_load_it():
    from cifar_lab.profiles import get_profile, load_profile_data

    validation = verdicts.load_validation("quick")
    data = load_profile_data(get_profile("quick"))
    assert validation.floor == get_profile("quick").min_val_accuracy
    assert np.array_equal(validation.images, data.X_val) and validation.images.dtype == np.float32
    assert np.array_equal(validation.labels, data.y_val)


# ---------------------------------- trained models, scored right after their check cell
AFTER = {spec.grade_id: spec for spec in verdicts.AFTER_CHECK_PROBES}


def _reading_first_ten(layers: int, right: bool = True) -> list[np.ndarray]:
    """Weight matrices and zero biases of a ReLU net whose scores are the first 10 numbers.

    relu([x, -x]) keeps x in 20 units; each further layer passes them on; the last
    layer maps [x, -x] back to x. ``right=False``: random weights instead.
    """
    rng = np.random.default_rng(3)
    first = np.zeros((3072, 20), np.float32)
    first[:10, :10], first[:10, 10:] = np.eye(10), -np.eye(10)
    middle = np.eye(20, dtype=np.float32)
    last = np.concatenate([np.eye(10), -np.eye(10)]).astype(np.float32)
    kernels = [first, *[middle] * (layers - 2), last]
    if not right:
        kernels = [rng.normal(size=k.shape).astype(np.float32) for k in kernels]
    return kernels


def _barebones_history(layers: int, right: bool = True, biases: bool = False):
    import tensorflow as tf

    from cifar_lab.history import History

    params = []
    for kernel in _reading_first_ten(layers, right):
        params += [tf.Variable(kernel)] + ([tf.Variable(np.zeros(kernel.shape[1], np.float32))]
                                           if biases else [])  # fmt: skip
    history = History([{"val_accuracy": 0.99}])
    history.params = params
    return history


def _keras_net(layers: int, form: str = "sequential", right: bool = True, conv: bool = False):
    import keras

    kernels = _reading_first_ten(layers, right)
    dense = [keras.layers.Dense(k.shape[1], activation="relu") for k in kernels[:-1]]
    dense.append(keras.layers.Dense(10))
    front = [keras.layers.Conv2D(3, 1, padding="same")] if conv else []
    if form == "sequential":
        model = keras.Sequential(
            [keras.Input((32, 32, 3)), *front, keras.layers.Flatten(), *dense]
        )
    else:
        inputs = keras.Input((32, 32, 3))
        h = inputs
        for layer in [*front, keras.layers.Flatten(), *dense]:
            h = layer(h)
        model = keras.Model(inputs, h)
    if conv:
        model.layers[0].set_weights([np.eye(3, dtype=np.float32)[None, None], np.zeros(3)])
    for layer, kernel in zip(dense, kernels, strict=True):
        layer.set_weights([kernel, np.zeros(kernel.shape[1], np.float32)])
    return model


def _trained_verdict(grade_id: str, namespace: dict, tmp_path: Path) -> dict:
    probe = verdicts.trained_probe(AFTER[grade_id], _labelled())
    return run_probe(probe, tmp_path, lambda source: exec(source, {"np": np, **namespace}))


def _two_layer_fc_namespace(**names) -> dict:
    return {**notebook_definitions(N02, "flatten", "two_layer_fc", "three_layer_fc"), **names}


TRAINED_CASES = {
    # grade_id, the kernel's names, passes?, words of the grader's message
    "02 two-layer, trained": (
        "two_layer_accuracy_check", lambda: {"history": _barebones_history(2)}, True, ""),
    "02 two-layer, untrained": (
        "two_layer_accuracy_check", lambda: {"history": _barebones_history(2, right=False)},
        False, "below 0.4"),
    "02 two-layer, training failed (no history)": (
        "two_layer_accuracy_check", dict, False, "no usable result"),
    "02 three-layer, trained": (
        "three_layer_accuracy_check",
        lambda: {"history_3": _barebones_history(3, biases=True)}, True, ""),
    "02 three-layer scored with the two-layer net's weights": (
        "three_layer_accuracy_check", lambda: {"history_3": _barebones_history(2)},
        False, "no usable result"),
    "04 Sequential, trained": (
        "sequential_accuracy_check", lambda: {"model": _keras_net(3)}, True, ""),
    "04 Sequential, untrained": (
        "sequential_accuracy_check", lambda: {"model": _keras_net(3, right=False)},
        False, "below 0.4"),
    "04 Sequential: the given two-layer net kept (its training failed)": (
        "sequential_accuracy_check", lambda: {"model": _keras_net(2)}, False,
        "3 weight matrices"),
    "04 Sequential with a convolution": (
        "sequential_accuracy_check", lambda: {"model": _keras_net(3, conv=True)}, False,
        "no convolution"),
    "04 functional, trained": (
        "functional_accuracy_check", lambda: {"model": _keras_net(3, "functional")}, True, ""),
    "04 functional: a Sequential kept": (
        "functional_accuracy_check", lambda: {"model": _keras_net(3)}, False,
        "functional keras.Model"),
    # 05: the model final_training's History trained, and the images of one epoch of its fit
    "05 final model, trained on all images (a remainder dropped)": (
        "final_training_check", lambda: _final(_keras_net(4, "functional"), TRAIN_SIZE // 256),
        True, ""),
    "05 final model, trained on all images (a smaller last batch)": (
        "final_training_check", lambda: _final(_keras_net(4, "functional"), TRAIN_SIZE // 256 + 1),
        True, ""),
    "05 final model, at train_network's own default batch size": (
        "final_training_check",
        lambda: _final(_keras_net(4, "functional"), TRAIN_SIZE // 100, batch=None, default=100),
        True, ""),
    "05 final model, untrained": (
        "final_training_check", lambda: _final(_keras_net(2, right=False), TRAIN_SIZE // 256),
        False, "below 0.4"),
    "05 final model with a convolution": (
        "final_training_check", lambda: _final(_keras_net(2, conv=True), TRAIN_SIZE // 256),
        False, "no convolution"),
    # the notebook's mutation: the search's subset, never retrained on all images
    "05 final model trained on a subset": (
        "final_training_check", lambda: _final(_keras_net(4, "functional"), TRAIN_SIZE // 1024),
        False, "all 1,234 training images: its fit ran 1 steps of 256"),
    "05 final model, at a default batch size that is not train_network's": (
        "final_training_check",
        lambda: _final(_keras_net(4, "functional"), TRAIN_SIZE // 256, batch=None, default=64),
        False, "all 1,234 training"),
    "05 final model: a History without its steps": (
        "final_training_check", lambda: _final(_keras_net(4, "functional"), None), False,
        "does not say"),
    "05 final model: a batch size that is no integer": (
        "final_training_check",
        lambda: _final(_keras_net(4, "functional"), TRAIN_SIZE // 256, batch=256.0), False,
        "all 1,234 training"),
    "05 final model: a count beyond any split": (
        "final_training_check", lambda: _final(_keras_net(4, "functional"), 10**9), False,
        "all 1,234 training"),
    "05 final model: final_training failed (no final)": (
        "final_training_check", dict, False, "no usable result"),
}  # fmt: skip


def _final(model, steps, batch=256, default=256) -> dict:
    """Notebook 05's names once final_training ran: ``final`` (its History fitted ``model``).

    ``steps``: one epoch's steps, as the History records them; ``batch``: the batch size in
    ``final["training"]`` (None: not given, ``train_network``'s ``default`` applies).
    """
    import keras

    history = keras.callbacks.History()
    history.set_model(model)
    history.set_params({"verbose": 0, "epochs": 3, "steps": steps})
    training = {"learning_rate": 1e-3, **({} if batch is None else {"batch_size": batch})}

    def train_network(model, X, y, *, learning_rate, epochs, batch_size=default):
        raise AssertionError("the probe reads train_network's default, it does not train")

    final = {"network": {}, "training": training, "history": history, "val_accuracy": 0.5}
    return {"final": final, "train_network": train_network}


@pytest.mark.parametrize("case", sorted(TRAINED_CASES))
def test_a_trained_model_probe_scores_the_model_and_its_form(case, tmp_path):
    grade_id, names, passed, words = TRAINED_CASES[case]
    namespace = _two_layer_fc_namespace(**names())
    verdict = _trained_verdict(grade_id, namespace, tmp_path)
    assert verdict["passed"] is passed and words in verdict["message"], verdict
    assert list(tmp_path.iterdir()) == []


def test_train_part2_keeps_the_variables_it_trained(synthetic):
    import cifar_lab as lab

    answers = _answers_02()
    dataset = lab.Dataset(synthetic.X_train[:128], synthetic.y_train[:128], batch_size=64)
    val = lab.Dataset(synthetic.X_val[:64], synthetic.y_val[:64], batch_size=64)
    before = []

    def init():
        params = answers["two_layer_fc_init"](hidden_size=8)
        before.extend(p.numpy() for p in params)
        return params

    step = answers["training_step"]
    history = lab.train_part2(
        answers["two_layer_fc"], init, 1e-2, dataset, val, step_fn=step, verbose=False
    )
    assert [tuple(p.shape) for p in history.params] == [(3072, 8), (8, 10)]
    assert not np.array_equal(np.asarray(history.params[0]), before[0])  # trained in place
    scores = answers["two_layer_fc"](synthetic.X_val[:64], history.params).numpy()
    found = lab.accuracy(synthetic.y_val[:64], scores.argmax(axis=1))
    assert found == pytest.approx(history[-1]["val_accuracy"])  # the model it validated


SEQUENTIAL_FITTED = """\
def fitted(functional=False):  # fitted to the validation images: quick, and well above the floor
    layers = [keras.layers.Flatten(), keras.layers.Dense(64, activation="relu"),
              keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)]
    if functional:
        inputs = keras.Input((32, 32, 3))
        h = inputs
        for layer in layers:
            h = layer(h)
        net = keras.Model(inputs, h)
    else:
        net = keras.Sequential([keras.Input((32, 32, 3)), *layers])
    net.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    net.fit(data.X_val, data.y_val, epochs=40, batch_size=100, verbose=0)
    return net"""


@pytest.mark.slow
def test_the_runner_scores_each_model_right_after_its_check_cell(tmp_path):
    """04 in short: a fitted Sequential at its check; a hooked functional keeps a Sequential."""
    import nbformat

    from cifar_lab.instructor.rerun import RerunSettings, rerun_notebooks

    def cell(source: str, grade_id: str | None = None):
        metadata = {"nbgrader": {"grade_id": grade_id}} if grade_id else {}
        return nbformat.v4.new_code_cell(source, metadata=metadata)

    cells = [
        cell("import cifar_lab as lab\nimport keras\nimport numpy as np\n"
             "data = lab.load_profile_data(lab.get_profile())"),
        cell(SEQUENTIAL_FITTED),
        cell("model = fitted()", "sequential_accuracy_check"),
        cell("model = fitted()  # as 04's given nets: a Sequential, trained"),
        cell(ATTACKS["IPython ast_transformers"]),
        # the exercise left undone: NameError, swallowed by the hook; `model` stays as it was
        cell("model = three_layer_functional((32, 32, 3), (64, 32), 10)",
             "functional_accuracy_check"),
        cell("model = None  # what the notebook leaves: the probes ran before"),
    ]  # fmt: skip
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, tmp_path / f"{N04}.ipynb")
    settings = RerunSettings(profile="quick", total_timeout=600, cell_timeout=300)
    records, problem = rerun_notebooks(tmp_path, [N04], settings)
    assert problem is None, problem
    record = records[N04]
    assert record["status"] == "ok", record  # the hook fools the notebook, not the probe
    found = record["verdicts"]
    assert found["sequential_accuracy_check"]["passed"], found
    functional = found["functional_accuracy_check"]
    assert not functional["passed"] and "functional keras.Model" in functional["message"], found


# ------------------------------------------------------------- 05's five searches
SEARCHES = ("architecture_search", "activation_search", "initializer_search",
            "optimizer_search", "regularisation_search")  # fmt: skip


def _never_trains(*args, **options):
    raise AssertionError("the search probe trained with the student's train_network")


def _searches(**replaced: str) -> dict:
    """05's answers in a namespace like the notebook's, some cells replaced (by name).

    Its ``train_network`` raises: under the probe, the searches must call the grader's.
    """
    import re

    namespace: dict = {}
    exec(SETUP_05, namespace)
    for cell in nbformat_cells(N05):
        defined = set(re.findall(r"^def\s+(\w+)", cell.source, re.MULTILINE))
        if cell.cell_type == "code" and defined & {"build_network", *SEARCHES}:
            name = next(iter(defined & set(replaced)), None)
            exec(compile(replaced.get(name, cell.source), f"<{N05}>", "exec"), namespace)
    namespace["train_network"] = _never_trains
    return namespace


def nbformat_cells(stem: str):
    import nbformat

    from cifar_lab.instructor.notebooks import notebook_dir

    return nbformat.read(notebook_dir() / f"{stem}.ipynb", as_version=4).cells


@pytest.fixture
def frozen_gc():
    """The objects alive now out of the collector's sight while a search runs.

    The model answer's ``run_trial`` calls ``keras.backend.clear_session()``, which runs
    ``gc.collect()``: half a second a trial in a test process full of objects, a few
    milliseconds in a notebook's kernel.
    """
    import gc

    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


def _search_verdict(grade_id: str, namespace: dict, tmp_path: Path, seed=None) -> dict:
    return run_probe(PROBE[grade_id], tmp_path, lambda source: exec(source, namespace), seed)


@pytest.mark.usefixtures("frozen_gc")
@pytest.mark.parametrize("name", SEARCHES)
def test_a_search_answer_passes_its_probe_without_training_or_touching_runs(
    name, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a study written to runs/ would land here
    namespace = _searches()
    before = {key: namespace[key] for key in ("lab", "train_network", "keras", "optuna")}
    verdict = _search_verdict(f"{name}_check", namespace, tmp_path)
    assert verdict == {"grade_id": f"{name}_check", "passed": True, "message": ""}
    assert list(tmp_path.iterdir()) == []  # the probe's folder, with its studies, is removed
    assert all(namespace[key] is value for key, value in before.items())  # names restored


@pytest.mark.usefixtures("frozen_gc")
def test_a_search_probe_redirects_the_graders_read_only_lab(tmp_path, monkeypatch):
    """Re-executed, ``lab`` is the grader's read-only proxy: the probe wraps it, not edits it."""
    monkeypatch.chdir(tmp_path)
    namespace = _searches()
    exec(verdicts.pristine_cell(), namespace)
    pristine = namespace["lab"]
    assert type(pristine).__name__ == "VerifiedLab"
    verdict = _search_verdict("regularisation_search_check", namespace, tmp_path)
    assert verdict["passed"], verdict
    assert namespace["lab"] is pristine and list(tmp_path.iterdir()) == []


SEARCH_MUTATIONS = {
    "four architectures": ("architecture_search", (
        ('architectures = ["64", "256", "128-64", "256-128-64", "64-64-64-64"]',
         'architectures = ["64", "256", "128-64", "256-128-64"]'),
        ("rates = [1e-3, 3e-3]", "rates = [1e-3, 3e-3, 1e-2]")), "five architectures"),
    "one rate per architecture": ("architecture_search", (
        ('architectures = ["64", "256", "128-64", "256-128-64", "64-64-64-64"]',
         'architectures = ["64", "256", "512", "128-64", "256-128-64", "64-64-64-64", '
         '"32", "16", "48", "96"]'),
        ("rates = [1e-3, 3e-3]", "rates = [1e-3]")), "two learning rates"),
    "no deeper network": ("architecture_search", (
        ('architectures = ["64", "256", "128-64", "256-128-64", "64-64-64-64"]',
         'architectures = ["64", "256", "128", "512", "32"]'),), "two or more layers"),
    "the study's best trial returned": ("architecture_search", (
        ("    return search\n\n\ndef hidden_sizes(",
         "    return search.best_trial\n\n\ndef hidden_sizes("),),
        "returns the optuna.Study"),
    "its own architectures, not tuned's": ("activation_search", (
        ("architectures = list(tuned)[:3]", 'architectures = ["64", "256", "128-64"]'),
        ("tuned[architecture]", "1e-3")), "an architecture of `tuned`"),
    "activations at one fixed rate": ("activation_search", (
        ("tuned[architecture]", "1e-3"),), "rate in `tuned`"),
    "tuned's first architecture only": ("activation_search", (
        ("architectures = list(tuned)[:3]", "architectures = list(tuned)[:1]"),),
        "first three architectures"),
    "four activations": ("activation_search", (
        ('activations = ["relu", "leaky_relu", "prelu", "elu", "gelu", "tanh"]',
         'activations = ["relu", "leaky_relu", "prelu", "elu"]'),), "five activations"),
    "initialisers without zeros": ("initializer_search", (
        ('"he_uniform", "he_normal", "zeros"]', '"he_uniform", "he_normal"]'),), "'zeros'"),
    "initialisers on a fixed setting": ("initializer_search", (
        ("setting = top[trial.suggest_categorical(",
         'setting = [{"architecture": "64", "activation": "relu", "learning_rate": 1e-3}][0 * '
         "trial.suggest_categorical("),), "settings of `top`"),
    "no RMSprop": ("optimizer_search", (
        ('"rmsprop": best["learning_rate"],\n', ""),), "rmsprop"),
    "another network": ("optimizer_search", (
        ('trial.set_user_attr("architecture", best["architecture"])',
         'trial.set_user_attr("architecture", "64")'),), "`best`'s network"),
    "batch norm always on": ("optimizer_search", (
        ('batch_norms = ["none", "before"]', 'batch_norms = ["after", "before"]'),),
        "batch norm off"),
    "no baseline": ("regularisation_search", (
        ('choices = ["none", "l2",', 'choices = ["l2",'),), "a finished trial for each"),
    "regularisers on another network": ("regularisation_search", (
        ('trial.set_user_attr("activation", best["activation"])',
         'trial.set_user_attr("activation", "relu" if best["activation"] != "relu" '
         'else "elu")'),), "`best`'s network"),
}  # fmt: skip


def _mutated_search(name: str, replacements) -> str:
    cell = next(c.source for c in nbformat_cells(N05) if f"def {name}(" in c.source)
    for old, new in replacements:
        assert old in cell, old
        cell = cell.replace(old, new)
    return cell


@pytest.mark.usefixtures("frozen_gc")
@pytest.mark.parametrize("mutation", sorted(SEARCH_MUTATIONS))
def test_a_wrong_search_fails_its_probe(mutation, tmp_path):
    name, replacements, words = SEARCH_MUTATIONS[mutation]
    namespace = _searches(**{name: _mutated_search(name, replacements)})
    verdict = _search_verdict(f"{name}_check", namespace, tmp_path, seed=0)
    assert not verdict["passed"] and words in verdict["message"], verdict


@pytest.mark.usefixtures("frozen_gc")
@pytest.mark.parametrize("name", SEARCHES)
def test_a_search_left_as_pass_fails(name, tmp_path):
    stub = f"def {name}(*args):\n    pass"
    verdict = _search_verdict(f"{name}_check", _searches(**{name: stub}), tmp_path)
    assert not verdict["passed"] and "returns the optuna.Study" in verdict["message"], verdict


@pytest.mark.usefixtures("frozen_gc")
def test_a_search_is_judged_on_the_results_the_grader_drew(tmp_path):
    """Each grading draws its own `tuned`; an answer fitted to one draw fails on another."""
    answers = _searches()
    seen = []

    def kernel(source: str) -> None:
        folder = Path(source.split("__cifar_lab_probe(")[-1].split(")")[0].strip("'\""))
        with np.load(folder / verdicts.INPUTS_FILE) as stored:
            pairs = zip(stored["architectures"].tolist(), stored["rates"].tolist(), strict=True)
            seen.append(dict(pairs))
        exec(source, answers)

    for seed in (1, 2):
        assert run_probe(PROBE["activation_search_check"], tmp_path, kernel, seed=seed)["passed"]
    assert list(seen[0]) != list(seen[1])
    wrapped = _searches()  # the answer, called on the first draw whatever it is given
    fitted = f"def activation_search(tuned):\n    return _real({seen[0]!r})"
    exec(f"_real = activation_search\n{fitted}", wrapped)
    assert _search_verdict("activation_search_check", wrapped, tmp_path, seed=1)["passed"]
    verdict = _search_verdict("activation_search_check", wrapped, tmp_path, seed=2)
    assert not verdict["passed"] and "`tuned`" in verdict["message"], verdict


@pytest.mark.usefixtures("frozen_gc")
def test_a_search_that_raises_still_gets_its_names_back(tmp_path):
    raising = "def optimizer_search(best):\n    lab.create_study('x')\n    raise ValueError"
    namespace = _searches(optimizer_search=raising)
    lab, train = namespace["lab"], namespace["train_network"]
    verdict = _search_verdict("optimizer_search_check", namespace, tmp_path)
    assert not verdict["passed"] and "no usable result" in verdict["message"], verdict
    assert namespace["lab"] is lab and namespace["train_network"] is train
    assert list(tmp_path.iterdir()) == []


def _search_outputs(found) -> dict:
    import json

    return {"search": np.frombuffer(json.dumps(found).encode(), np.uint8)}


def _trial(number: int, **values) -> dict:
    return {"number": number, "state": "COMPLETE", "params": values, "user_attrs": {}}


def test_a_search_result_beyond_the_limits_is_refused():
    judge = PROBE["architecture_search_check"].judge
    many = verdicts.MAX_SEARCH_TRIALS + 1
    trials = [_trial(i, architecture="64", learning_rate=1e-3) for i in range(many)]
    too_many = _search_outputs({"study": True, "count": many + 5, "trials": trials})
    assert f"at most {verdicts.MAX_SEARCH_TRIALS:,} trials" in judge({}, too_many)
    padding = "x" * (verdicts.MAX_SEARCH_BYTES + 1)
    too_big = _search_outputs({"study": True, "count": 0, "trials": [], "padding": padding})
    assert "text of at most" in judge({}, too_big)
    fewer = _search_outputs({"study": True, "count": 12, "trials": trials[:3]})
    assert "as the grader asked" in judge({}, fewer)


def test_the_architecture_rules_are_the_checks():
    """Ten trials: five architectures (two one-layer widths, deeper ones) at two rates each."""
    judge = PROBE["architecture_search_check"].judge
    architectures = ["64", "256", [128, 64], "256-128-64", "64-64-64-64"]  # a list reads "128-64"
    right = [
        _trial(2 * i + j, architecture=a, learning_rate=r)
        for i, a in enumerate(architectures)
        for j, r in enumerate((1e-3, "0.003"))
    ]
    assert judge({}, _search_outputs({"study": True, "count": 10, "trials": right})) == ""
    pruned = [{**trial, "state": "PRUNED"} if trial["number"] == 0 else trial for trial in right]
    found = judge({}, _search_outputs({"study": True, "count": 10, "trials": pruned}))
    assert "at least 10 completed trials, got 9" in found
    named = [*right, _trial(10, architecture="1024 x 2", learning_rate=1e-3),
             _trial(11, architecture="1024 x 2", learning_rate=1e-2)]  # fmt: skip
    found = judge({}, _search_outputs({"study": True, "count": 12, "trials": named}))
    assert "hidden sizes joined by '-'" in found


def _three_layer_outputs(drawn: dict, scores: np.ndarray) -> dict:
    """The kernel side of the three-layer probes, for a right model giving ``scores``."""
    rng = np.random.default_rng(1)
    names = ("w1", "b1", "w2", "b2", "w3", "b3")
    outputs = {"kind": np.array([1, 0, 3]), "scores": scores.astype(np.float32)}
    outputs |= {f"shape{i}": np.array(drawn[name].shape) for i, name in enumerate(names)}
    sizes = [int(np.prod(drawn["large_input_shape"])), *drawn["large_hidden_sizes"]]
    sizes.append(int(drawn["large_classes"]))
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        outputs[f"large{2 * layer}"] = rng.normal(0, np.sqrt(2 / fan_in), (fan_in, fan_out))
        outputs[f"large{2 * layer + 1}"] = np.zeros(fan_out)
    return outputs


def test_every_three_layer_draw_catches_relu_on_the_logits():
    """Each drawn case has a clearly negative right logit, so ReLU on the logits shows.

    A CI run drew a case whose right logits were all positive, where ReLU on them changed
    nothing and the wrong answer passed (about one draw in 270 before the redraw).
    """
    judge = verdicts._judge_three_layer_model("sequential", kaiming_rtol=0.03, in_order=True)
    for seed in range(600):
        drawn = verdicts._draw_three_layer_model(np.random.default_rng(seed))
        flat = drawn["x"].reshape(len(drawn["x"]), -1).astype(np.float64)
        hidden = np.maximum(
            np.maximum(flat @ drawn["w1"] + drawn["b1"], 0) @ drawn["w2"] + drawn["b2"], 0
        )
        logits = hidden @ drawn["w3"] + drawn["b3"]
        assert logits.min() < -0.5, seed
        assert judge(drawn, _three_layer_outputs(drawn, logits)) == "", seed
        refused = judge(drawn, _three_layer_outputs(drawn, np.maximum(logits, 0)))
        assert "the forward pass equals" in refused, seed


def test_every_barebones_three_layer_draw_catches_relu_on_the_scores():
    """Notebook 02's three_layer_fc probe: the same redraw, the same wrong answer refused."""
    for seed in range(600):
        drawn = verdicts._draw_three_layer_fc(np.random.default_rng(seed))
        rows = drawn["x"].reshape(len(drawn["x"]), -1).astype(np.float64)
        hidden = np.maximum(np.maximum(rows @ drawn["w1"] + drawn["b1"], 0) @ drawn["w2"]
                            + drawn["b2"], 0)  # fmt: skip
        scores = hidden @ drawn["w3"] + drawn["b3"]
        assert scores.min() < -0.5, seed
        right = {"rows": scores, "images": scores}
        assert verdicts._judge_three_layer_fc(drawn, right) == "", seed
        relu = {"rows": np.maximum(scores, 0), "images": np.maximum(scores, 0)}
        assert "relu(relu(x W1 + b1) W2 + b2) W3 + b3" in verdicts._judge_three_layer_fc(
            drawn, relu
        ), seed


def test_the_three_layer_probe_takes_logits_without_a_negative_and_refuses_probabilities():
    """A right model's logits may all be positive for some drawn weights (a CI run drew such)."""
    judge = verdicts._judge_three_layer_model("sequential", kaiming_rtol=0.03, in_order=True)
    drawn = verdicts._draw_three_layer_model(np.random.default_rng(0))
    drawn["b3"] = drawn["b3"] + 50.0  # every logit of the right model is now positive
    flat = drawn["x"].reshape(len(drawn["x"]), -1).astype(np.float64)
    hidden = np.maximum(
        np.maximum(flat @ drawn["w1"] + drawn["b1"], 0) @ drawn["w2"] + drawn["b2"], 0
    )
    logits = hidden @ drawn["w3"] + drawn["b3"]
    assert (logits > 0).all()
    assert judge(drawn, _three_layer_outputs(drawn, logits)) == ""
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    refused = judge(drawn, _three_layer_outputs(drawn, probabilities))
    assert "logits, not probabilities" in refused
    # one score per image: the shape is named, not an axis error from the probability test
    flat_scores = judge(drawn, _three_layer_outputs(drawn, logits[:, 0]))
    assert "float32 scores of shape (N, num_classes)" in flat_scores
