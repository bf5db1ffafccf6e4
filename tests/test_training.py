"""Tests for the training loops (shared bookkeeping, the compiled Keras loop), evaluation,
the XLA fallback, devices, progress and History."""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import datasets
from notebook_definitions import barebones

import cifar_lab as lab
from cifar_lab import compiled_step
from cifar_lab.compiled_step import TrainStep, XlaFallback
from cifar_lab.devices import resolve_device, visible_devices
from cifar_lab.history import RECORD_KEYS, History, TrainingDivergedError, TrainingLog
from cifar_lab.models import TwoLayerFC, classification_loss, compile_model, two_layer_sequential
from cifar_lab.training import evaluate, gradient_step

INPUT_SHAPE = (32, 32, 3)
MODEL_INITS = {
    "subclassed": lambda: TwoLayerFC(64, 10, seed=0),
    "sequential": lambda: two_layer_sequential(INPUT_SHAPE, 64, 10, seed=0),
    "functional": lambda: lab.two_layer_functional(INPUT_SHAPE, 64, 10, seed=0),
}


def sgd(learning_rate: float = 1e-2):
    return lambda: keras.optimizers.SGD(learning_rate=learning_rate)


def numpy_loss_and_accuracy(scores: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    shifted = scores.astype(np.float64) - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(len(y)), y].mean()
    return float(loss), float((scores.argmax(axis=1) == y).mean())


@pytest.mark.parametrize("variant", sorted(MODEL_INITS))
def test_train_part34_learns_synthetic_data(synthetic, variant, capsys):
    train, val = datasets(synthetic)
    model, history = lab.train_part34(
        MODEL_INITS[variant], sgd(), train, val, num_epochs=2, print_every=25, progress=False
    )
    batches = len(train)  # 32 per epoch: a curve record after every step
    assert history.column("iteration") == list(range(2 * batches))
    validations = history.validations()
    assert validations.column("iteration") == [0, 25, batches - 1, 50, 2 * batches - 1]
    assert validations.column("epoch") == [0, 0, 0, 1, 1]
    assert set(history[0]) == {
        "iteration",
        "epoch",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
    }
    assert history[-1]["val_loss"] < history[0]["val_loss"] / 2
    assert history[-1]["val_accuracy"] >= 0.8
    # the returned model is the trained one
    assert evaluate(model, val).accuracy == pytest.approx(history[-1]["val_accuracy"])
    assert "Iteration 25, Epoch 1, Loss: " in capsys.readouterr().out


def test_the_three_keras_variants_train_to_the_same_weights(synthetic):
    """Same seed, same data order: subclassed, Sequential and functional end bit-identical.

    This is why tests/test_real_training.py trains only the Sequential variant on
    the full 49,000 images: the other two would repeat the same arithmetic.
    """
    unseeded = {
        "subclassed": lambda: TwoLayerFC(40, 10),
        "sequential": lambda: two_layer_sequential(INPUT_SHAPE, 40, 10),
        "functional": lambda: lab.two_layer_functional(INPUT_SHAPE, 40, 10),
    }
    trained = {}
    for variant, model_init in unseeded.items():
        train, val = datasets(synthetic)
        model, history = lab.train_part34(
            model_init, sgd(), train, val, num_epochs=1, print_every=10, seed=3, progress=False
        )
        trained[variant] = (model.get_weights(), history.column("loss"))
    weights, losses = trained["sequential"]
    assert len(weights) == 4 and len(losses) == len(train)
    for variant in ("subclassed", "functional"):
        for mine, theirs in zip(trained[variant][0], weights, strict=True):
            np.testing.assert_array_equal(mine, theirs)
        assert trained[variant][1] == losses
    # the seed decides the initial weights: another seed trains to other weights
    other_model, _ = lab.train_part34(
        unseeded["sequential"], sgd(), *datasets(synthetic), num_epochs=1, seed=4, progress=False
    )
    assert not np.array_equal(other_model.get_weights()[0], weights[0])


def test_history_to_dataframe(synthetic):
    train, val = datasets(synthetic)
    _, history = lab.train_part34(MODEL_INITS["sequential"], sgd(), train, val, verbose=False)
    frame = history.validations().to_dataframe()
    assert list(frame.columns) == [
        "iteration",
        "epoch",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
    ]
    assert frame["val_accuracy"].tolist() == history.validations().column("val_accuracy")
    assert len(history.to_dataframe()) == len(history) > len(frame)  # with the curve records
    with pytest.raises(KeyError, match="no 'val_acc'"):
        history.column("val_acc")


def test_training_log_loss_is_the_epochs_running_mean_of_step_losses():
    losses, sizes = [2.0, 1.0, 4.0, 0.5], [64, 64, 44, 64]
    log = TrainingLog(range(3), num_epochs=2, print_every=100, verbose=False)
    with log:
        epochs = log.epochs(lambda: {"val_accuracy": 0.5})
        next(epochs)
        for loss, size in zip(losses[:3], sizes[:3], strict=True):
            log.step(loss, size)
        next(epochs)  # the end of epoch 0: validates after iteration 2
        log.step(np.float32(losses[3]), sizes[3])
        assert next(epochs, "done") == "done"  # the end of epoch 1
    validations = log.history.validations()
    assert validations.column("iteration") == [0, 2, 3]
    assert validations.column("epoch") == [0, 0, 1]
    assert validations[1]["loss"] == pytest.approx(np.average(losses[:3], weights=sizes[:3]))
    assert validations[2]["loss"] == 0.5  # a new epoch starts a new mean
    assert all(list(record) == list(RECORD_KEYS) for record in log.history)
    assert validations[0]["accuracy"] is None and validations[0]["val_accuracy"] == 0.5
    # 3 steps per epoch: a curve record after each step that is not validated
    curve = log.history[1]
    assert (curve["iteration"], curve["epoch"], curve["val_accuracy"]) == (1, 0, None)
    assert curve["loss"] == pytest.approx(np.average(losses[:2], weights=sizes[:2]))
    assert log.history.column("iteration") == [0, 1, 2, 3]


def test_training_log_curve_has_25_points_per_epoch_with_or_without_len():
    for batches, first_epoch_stride in ((range(766), 30), (iter(range(766)), 10)):
        log = TrainingLog(batches, num_epochs=2, print_every=700, verbose=False)
        for _ in log.epochs(lambda: {"val_accuracy": 0.5}):
            for _ in range(766):
                log.step(1.0, 64)
        epochs = log.history.column("epoch")
        assert epochs.count(0) >= 25 and epochs.count(1) >= 25
        assert log.history[1]["iteration"] == first_epoch_stride - 1
        # without len(), the first epoch's length sets the stride from the second on
        assert log.curve_every == 30
        assert log.history[-1]["iteration"] == 2 * 766 - 1
        assert log.history[-1]["val_accuracy"] == 0.5
        assert log.history.validations().column("iteration") == [0, 700, 765, 1400, 1531]


def test_training_log_rejects_unknown_fields_and_quotes_the_current_learning_rate():
    log = TrainingLog([1], num_epochs=1, print_every=1, verbose=False)
    with pytest.raises(KeyError, match="val_acc"):
        next(log.epochs(lambda: {"val_acc": 0.5}))
        log.step(1.0, 8)
    rates = iter([0.5, 2.0])
    log = TrainingLog([1], num_epochs=1, print_every=1, verbose=False)
    next(log.epochs(dict, learning_rate=lambda: next(rates)))
    with pytest.raises(TrainingDivergedError, match=r"at iteration 0\. The learning rate 0\.5"):
        log.step(float("inf"), 8)


def compiled_train_step(model: keras.Model, learning_rate: float, jit_compile) -> TrainStep:
    """train_part34's step: the plain gradient_step with its loss and metric, compiled."""
    accuracy = keras.metrics.SparseCategoricalAccuracy()
    step = functools.partial(gradient_step, loss_fn=classification_loss(), accuracy=accuracy)
    return TrainStep(step, model, keras.optimizers.SGD(learning_rate), jit_compile=jit_compile)


def test_gradient_step_is_one_sgd_step_on_the_mean_loss():
    """The plain step, uncompiled: the loss before the update, then W -= lr * dL/dW."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    x = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 1.0]], np.float32)
    y = np.array([1, 0])
    kernel, bias = (w.astype(np.float64) for w in model.get_weights())
    scores = x @ kernel + bias
    probs = np.exp(scores - scores.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    dscores = probs.copy()
    dscores[np.arange(2), y] -= 1
    dscores /= 2
    accuracy = keras.metrics.SparseCategoricalAccuracy()
    loss = gradient_step(
        model, keras.optimizers.SGD(0.5), x, y, loss_fn=classification_loss(), accuracy=accuracy
    )
    np.testing.assert_allclose(float(loss), -np.mean(np.log(probs[np.arange(2), y])), rtol=1e-5)
    new_kernel, new_bias = model.get_weights()
    np.testing.assert_allclose(new_kernel, kernel - 0.5 * x.T @ dscores, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(new_bias, bias - 0.5 * dscores.sum(axis=0), rtol=1e-4, atol=1e-6)
    assert float(accuracy.result()) == np.mean(scores.argmax(axis=1) == y)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compilation_modes_compute_the_same_updates(synthetic, jit_compile):
    x, y = synthetic.X_train[:64], synthetic.y_train[:64]
    reference, other = MODEL_INITS["sequential"](), MODEL_INITS["sequential"]()
    steps = [
        compiled_train_step(reference, 0.05, jit_compile="auto"),
        compiled_train_step(other, 0.05, jit_compile=jit_compile),
    ]
    for _ in range(3):
        for step in steps:
            step(x, y)
    for mine, theirs in zip(other.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-5)
    assert steps[0].uses_xla and steps[1].uses_xla == jit_compile


class StringLength(keras.layers.Layer):
    """Identity with a string op that XLA cannot compile."""

    def call(self, x):
        length = tf.strings.length(tf.strings.as_string(tf.reduce_sum(x)))
        return x + 0.0 * tf.cast(length, x.dtype)


@pytest.mark.parametrize(
    "no_xla_kernel",
    [StringLength, lambda: keras.layers.RandomTranslation(0.1, 0.1, seed=0)],
    ids=["tf.strings", "RandomTranslation"],
)
def test_falls_back_when_xla_cannot_compile(synthetic, no_xla_kernel):
    """Real TensorFlow: an op without an XLA kernel raises InvalidArgumentError, caught by type."""
    model = keras.Sequential(
        [keras.Input(INPUT_SHAPE), no_xla_kernel(), *MODEL_INITS["sequential"]().layers]
    )
    step = compiled_train_step(model, 1e-2, jit_compile=True)
    x, y = synthetic.X_train[:64], synthetic.y_train[:64]
    before = model.get_weights()
    with pytest.warns(RuntimeWarning, match="InvalidArgumentError.*falling back to tf.function"):
        step(x, y)
    assert not step.uses_xla
    assert step.optimizer.iterations.numpy() == 1  # the failed XLA attempt applied nothing
    assert not np.allclose(model.get_weights()[0], before[0])


def fake_build(error: Exception | None, *, plain_error: Exception | None = None):
    """``build(use_xla)`` for XlaFallback: the XLA version raises ``error``, the plain one
    returns "plain" (or raises ``plain_error``); ``calls`` records which ran."""
    calls = []

    def build(use_xla):
        def function(*args):
            calls.append("xla" if use_xla else "plain")
            raised = error if use_xla else plain_error
            if raised is not None:
                raise raised
            return "xla" if use_xla else "plain"

        return function

    return build, calls


UNRELATED_TEXT = "no phrase that any XLA message contains"


@pytest.mark.parametrize("error_type", compiled_step.XLA_COMPILE_ERRORS)
def test_fallback_is_chosen_by_exception_type_not_message(error_type):
    build, calls = fake_build(error_type(None, None, UNRELATED_TEXT))
    compiled = XlaFallback(build, True, "the fake step")
    with pytest.warns(RuntimeWarning, match=f"{error_type.__name__}: {UNRELATED_TEXT}"):
        assert compiled(1, 2) == "plain"
    assert not compiled.uses_xla and calls == ["xla", "plain"]
    assert compiled(1, 2) == "plain" and calls == ["xla", "plain", "plain"]  # XLA stays off


def test_fallback_lets_other_errors_through_and_keeps_xla_for_genuine_ones(recwarn):
    for other in (
        ValueError("Detected unsupported operations"),
        tf.errors.InternalError(None, None, "x"),
    ):
        build, calls = fake_build(other)
        compiled = XlaFallback(build, True, "the fake step")
        with pytest.raises(type(other)):
            compiled()
        assert compiled.uses_xla and calls == ["xla"]  # not retried: not a compile error's type
    # A genuine error of a compile error's type: the retry without XLA raises it too.
    genuine = tf.errors.InvalidArgumentError(None, None, "labels out of range")
    build, calls = fake_build(genuine, plain_error=genuine)
    compiled = XlaFallback(build, True, "the fake step")
    with pytest.raises(tf.errors.InvalidArgumentError, match="labels out of range"):
        compiled()
    assert compiled.uses_xla and calls == ["xla", "plain"]
    assert not recwarn.list  # no fallback announced


def test_train_step_falls_back_on_a_simulated_compile_failure(synthetic, monkeypatch):
    """TrainStep's XLA function raises the error type with an unrelated message: it still
    falls back, trains without XLA and applies the update once."""
    real_tf_function = compiled_step._tf_function

    def failing_when_compiled(function, *, jit_compile):
        if not jit_compile:
            return real_tf_function(function, jit_compile=False)

        def fails(*args):
            raise tf.errors.UnimplementedError(None, None, UNRELATED_TEXT)

        return fails

    monkeypatch.setattr(compiled_step, "_tf_function", failing_when_compiled)
    model = MODEL_INITS["sequential"]()
    step = compiled_train_step(model, 1e-2, jit_compile=True)
    with pytest.warns(RuntimeWarning, match="falling back"):
        loss = float(step(synthetic.X_train[:64], synthetic.y_train[:64]))
    assert np.isfinite(loss) and not step.uses_xla
    assert step.optimizer.iterations.numpy() == 1


# ---- Both loops, train_part2 (Part II) and train_part34 (Parts III-IV), keep the same books.

TINY_SHAPE, TINY_CLASSES = (2, 2, 3), 4
LOOPS = ("train_part2", "train_part34")


def tiny_batches(num_batches: int = 5, batch_size: int = 8) -> list:
    """Random float32 (8, 2, 2, 3) inputs with int32 labels in 0..3, as a list of batches."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(num_batches * batch_size, *TINY_SHAPE)).astype(np.float32)
    y = rng.integers(0, TINY_CLASSES, len(X)).astype(np.int32)
    return list(lab.Dataset(X, y, batch_size))


class Unsized:
    """Batches without a len(), like a generator-backed dataset: epoch ends are found by
    running out of batches."""

    def __init__(self, batches) -> None:
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)


class OverflowOnPass:
    """The same batches every pass, except that on pass ``epoch`` batch ``index`` holds the
    largest float32: the scores overflow and the loss is NaN. (NaN inputs would not do: on a
    CPU the compiled step's fused MatMul+ReLU maps NaN to 0, and its loss stays finite.)"""

    def __init__(self, batches, epoch: int, index: int) -> None:
        self.batches, self.epoch, self.index, self.passes = batches, epoch, index, 0

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for index, (x, y) in enumerate(self.batches):
            poisoned = self.passes == self.epoch and index == self.index
            yield (np.full_like(x, np.finfo(np.float32).max) if poisoned else x), y
        self.passes += 1


def run_loop(loop: str, train, val, *, learning_rate: float = 0.1, **kwargs) -> History:
    """A two-layer net (hidden 16) on the tiny data with either loop; returns its History.

    The initial weights come from the global seeds (no seed of their own)."""
    if loop == "train_part2":
        # notebook 02's own SGD step; weights as its init draws them, at the tiny sizes
        step = barebones("training_step")["training_step"]
        init = lambda: [  # noqa: E731
            tf.Variable(lab.kaiming_normal(shape)) for shape in ((12, 16), (16, TINY_CLASSES))
        ]
        return lab.train_part2(
            lab.two_layer_fc,
            init,
            learning_rate,
            train,
            val,
            step_fn=step,
            verbose=False,
            **kwargs,
        )
    _, history = lab.train_part34(
        lambda: two_layer_sequential(TINY_SHAPE, 16, TINY_CLASSES),
        sgd(learning_rate),
        train,
        val,
        verbose=False,
        **kwargs,
    )
    return history


@pytest.mark.parametrize("sized", [True, False], ids=["with len", "without len"])
def test_both_loops_keep_the_same_records_on_the_same_schedule(sized):
    batches = tiny_batches()  # 5 per epoch: iterations 0-4, then 5-9
    train = batches if sized else Unsized(batches)
    histories = {
        loop: run_loop(loop, train, batches, num_epochs=2, print_every=3, seed=0) for loop in LOOPS
    }
    for history in histories.values():
        # validated every 3rd iteration (0, 3, 6, 9) and each epoch's last (4, 9), 9 only once
        validations = history.validations()
        assert validations.column("iteration") == [0, 3, 4, 6, 9]
        assert validations.column("epoch") == [0, 0, 0, 1, 1]
        # the curve: every step (5 per epoch); without len(), every 10th in the first epoch
        expected = range(10) if sized else [0, 3, 4, *range(5, 10)]
        assert history.column("iteration") == list(expected)
        assert all(list(record) == list(RECORD_KEYS) for record in history)
        for key in ("loss", "val_loss", "val_accuracy"):
            assert all(np.isfinite(value) for value in validations.column(key)), key
    part2, part34 = (histories[loop].validations() for loop in LOOPS)
    assert part2.column("accuracy") == [None] * 5  # its step returns a loss
    assert all(0 <= value <= 1 for value in part34.column("accuracy"))


@pytest.mark.parametrize("loop", LOOPS)
def test_both_loops_stop_at_the_iteration_whose_loss_is_nan(loop):
    batches = tiny_batches()
    train = OverflowOnPass(batches, epoch=1, index=1)  # the 2nd step of the 2nd epoch: iteration 6
    with pytest.raises(
        TrainingDivergedError, match=r"became nan at iteration 6\. The learning rate 0\.1 "
    ):
        run_loop(loop, train, batches, num_epochs=3, print_every=2, seed=0)
    assert train.passes == 1  # stopped in the 2nd pass, before finishing it


@pytest.mark.parametrize("loop", LOOPS)
def test_both_loops_stop_on_a_huge_learning_rate(loop):
    batches = tiny_batches()
    with pytest.raises(TrainingDivergedError, match="learning rate 1e\\+12") as error:
        run_loop(loop, batches, batches, learning_rate=1e12, num_epochs=20, seed=0)
    # the loss of iteration 0 is computed before any update, so it is always finite
    assert int(str(error.value).split("at iteration ")[1].split(".")[0]) >= 1


@pytest.mark.parametrize("loop", LOOPS)
def test_both_loops_repeat_exactly_with_the_same_seed(loop):
    batches = tiny_batches()

    def run(seed):
        X, y = map(np.concatenate, zip(*batches, strict=True))
        train = lab.Dataset(X, y, 8, shuffle=True, seed=0)  # the same order in every run
        return run_loop(loop, train, batches, num_epochs=2, print_every=2, seed=seed)

    first = run(seed=3)
    assert first == run(seed=3)
    assert first != run(seed=4)


def test_set_seed_repeats_keras_random_draws():
    """set_seed is the loops' one seeding path, so it must reset Keras' global SeedGenerator."""
    lab.set_seed(1)
    first = keras.ops.convert_to_numpy(keras.random.normal((4,)))
    lab.set_seed(1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(keras.random.normal((4,))), first)


def test_evaluate_matches_numpy(synthetic):
    model = MODEL_INITS["functional"]()
    X, y = synthetic.X_val[:150], synthetic.y_val[:150]
    expected_loss, expected_accuracy = numpy_loss_and_accuracy(model.predict(X, verbose=0), y)
    loss, accuracy = evaluate(model, lab.Dataset(X, y, 64))  # batches 64, 64, 22
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert accuracy == pytest.approx(expected_accuracy)
    with pytest.raises(ValueError, match="empty"):
        evaluate(model, [])


def test_fit_with_compile_model_agrees_with_evaluate(synthetic):
    model = compile_model(MODEL_INITS["sequential"](), keras.optimizers.SGD(learning_rate=1e-2))
    model.fit(synthetic.X_train, synthetic.y_train, batch_size=64, epochs=1, verbose=0)
    keras_loss, keras_accuracy = model.evaluate(synthetic.X_test, synthetic.y_test, verbose=0)
    loss, accuracy = evaluate(model, lab.Dataset(synthetic.X_test, synthetic.y_test, 64))
    assert accuracy >= 0.8
    assert (loss, accuracy) == (pytest.approx(keras_loss, rel=1e-4), pytest.approx(keras_accuracy))


@pytest.mark.filterwarnings("ignore:.*received `from_logits=True`:UserWarning")  # Keras' own
def test_warns_about_softmax_outputs(synthetic):
    def softmax_model():
        return keras.Sequential(
            [keras.Input(INPUT_SHAPE), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")]
        )

    train, val = datasets(synthetic)
    with pytest.warns(UserWarning, match="look like softmax probabilities"):
        lab.train_part34(softmax_model, sgd(), train, val, verbose=False)


def test_train_part34_rejects_bad_arguments(synthetic):
    train, val = datasets(synthetic)
    model_init = MODEL_INITS["sequential"]
    with pytest.raises(TypeError, match="model_init_fn must return a keras"):
        lab.train_part34(lambda: "model", sgd(), train, val, verbose=False)
    with pytest.raises(TypeError, match="optimizer_init_fn must return a keras"):
        lab.train_part34(model_init, lambda: "sgd", train, val, verbose=False)
    with pytest.raises(ValueError, match="unknown jit_compile 'yes'; choose from 'auto'"):
        lab.train_part34(model_init, sgd(), train, val, jit_compile="yes")
    with pytest.raises(TypeError, match="jit_compile must be True, False or 'auto'"):
        lab.train_part34(model_init, sgd(), train, val, jit_compile=1)
    with pytest.raises(ValueError, match="num_epochs must be >= 1"):
        lab.train_part34(model_init, sgd(), train, val, num_epochs=0)
    with pytest.raises(ValueError, match="GPU:3"):
        lab.train_part34(model_init, sgd(), train, val, device="/GPU:3")


def test_bfloat16_detection_reads_cpu_flags():
    from cifar_lab.devices import cpu_has_fast_bfloat16

    assert cpu_has_fast_bfloat16("flags\t: fpu avx2 avx512f amx_bf16 amx_tile")
    assert cpu_has_fast_bfloat16("flags\t: fpu avx512_bf16")
    assert not cpu_has_fast_bfloat16("flags\t: fpu avx2 avx512f avx512_bf16x")
    assert not cpu_has_fast_bfloat16("")


def test_resolve_device():
    has_gpu = bool(visible_devices("GPU"))
    assert resolve_device(None) == ("/GPU:0" if has_gpu else "/CPU:0")
    assert resolve_device("cpu") == "/CPU:0"
    assert resolve_device("/device:CPU:0") == "/CPU:0"
    with pytest.raises(ValueError, match="not understood"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="CPU:5"):
        resolve_device("/CPU:5")
    with pytest.raises(TypeError, match="must be a string"):
        resolve_device(0)
