"""Tests for the compiled Keras training loop, evaluation, devices, progress and History."""

from __future__ import annotations

import io

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import datasets

import cifar_lab as lab
from cifar_lab.devices import visible_devices
from cifar_lab.progress import Progress
from cifar_lab.training import TrainStep

INPUT_SHAPE = (32, 32, 3)
MODEL_INITS = {
    "subclassed": lambda: lab.TwoLayerFC(64, 10, seed=0),
    "sequential": lambda: lab.two_layer_sequential(INPUT_SHAPE, 64, 10, seed=0),
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
    batches = len(train)  # 32 per epoch
    assert history.column("iteration") == [0, 25, batches - 1, 50, 2 * batches - 1]
    assert history.column("epoch") == [0, 0, 0, 1, 1]
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
    assert lab.evaluate(model, val).accuracy == pytest.approx(history[-1]["val_accuracy"])
    assert "Iteration 25, Epoch 1, Loss: " in capsys.readouterr().out


def test_same_seed_same_history(synthetic):
    def run(seed):
        train, val = datasets(synthetic, seed=0)
        init = lambda: lab.TwoLayerFC(32, 10)  # noqa: E731 - no seed: relies on train_part34's
        _, history = lab.train_part34(
            init, sgd(), train, val, print_every=10, seed=seed, verbose=False
        )
        return history

    first = run(seed=3)
    assert first == run(seed=3)
    assert first != run(seed=4)


def test_history_to_dataframe(synthetic):
    train, val = datasets(synthetic)
    _, history = lab.train_part34(MODEL_INITS["sequential"], sgd(), train, val, verbose=False)
    frame = history.to_dataframe()
    assert list(frame.columns) == [
        "iteration",
        "epoch",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
    ]
    assert frame["val_accuracy"].tolist() == history.column("val_accuracy")
    with pytest.raises(KeyError, match="no 'val_acc'"):
        history.column("val_acc")


def test_training_loss_metric_is_the_mean_of_step_losses(synthetic):
    model = MODEL_INITS["functional"]()
    step = TrainStep(model, keras.optimizers.SGD(1e-2))
    losses, sizes = [], []
    for x, y in lab.Dataset(synthetic.X_train[:300], synthetic.y_train[:300], 64):  # last has 44
        losses.append(float(step(x, y)))
        sizes.append(len(y))
    assert float(step.loss_metric.result()) == pytest.approx(np.average(losses, weights=sizes))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compilation_modes_compute_the_same_updates(synthetic, jit_compile):
    x, y = synthetic.X_train[:64], synthetic.y_train[:64]
    reference, other = MODEL_INITS["sequential"](), MODEL_INITS["sequential"]()
    steps = [
        TrainStep(reference, keras.optimizers.SGD(0.05), jit_compile="auto"),
        TrainStep(other, keras.optimizers.SGD(0.05), jit_compile=jit_compile),
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


def test_falls_back_when_xla_cannot_compile(synthetic):
    model = keras.Sequential(
        [keras.Input(INPUT_SHAPE), StringLength(), *MODEL_INITS["sequential"]().layers]
    )
    step = TrainStep(model, keras.optimizers.SGD(1e-2), jit_compile=True)
    x, y = synthetic.X_train[:64], synthetic.y_train[:64]
    before = model.get_weights()
    with pytest.warns(RuntimeWarning, match="falling back to tf.function without XLA"):
        step(x, y)
    assert not step.uses_xla
    assert step.optimizer.iterations.numpy() == 1  # the failed XLA attempt applied nothing
    assert not np.allclose(model.get_weights()[0], before[0])


def test_stops_on_divergence(synthetic):
    train, val = datasets(synthetic)
    with pytest.raises(lab.TrainingDivergedError, match=r"at iteration \d+.*learning rate 1e\+06"):
        lab.train_part34(
            MODEL_INITS["sequential"], sgd(1e6), train, val, num_epochs=5, verbose=False
        )


def test_evaluate_matches_numpy(synthetic):
    model = MODEL_INITS["functional"]()
    X, y = synthetic.X_val[:150], synthetic.y_val[:150]
    expected_loss, expected_accuracy = numpy_loss_and_accuracy(model.predict(X, verbose=0), y)
    loss, accuracy = lab.evaluate(model, lab.Dataset(X, y, 64))  # batches 64, 64, 22
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert accuracy == pytest.approx(expected_accuracy)
    with pytest.raises(ValueError, match="empty"):
        lab.evaluate(model, [])


def test_fit_with_compile_model_agrees_with_evaluate(synthetic):
    model = lab.compile_model(
        MODEL_INITS["sequential"](), keras.optimizers.SGD(learning_rate=1e-2)
    )
    model.fit(synthetic.X_train, synthetic.y_train, batch_size=64, epochs=1, verbose=0)
    keras_loss, keras_accuracy = model.evaluate(synthetic.X_test, synthetic.y_test, verbose=0)
    loss, accuracy = lab.evaluate(model, lab.Dataset(synthetic.X_test, synthetic.y_test, 64))
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
    with pytest.raises(ValueError, match="jit_compile must be True, False or 'auto'"):
        lab.train_part34(model_init, sgd(), train, val, jit_compile="yes")
    with pytest.raises(ValueError, match="num_epochs must be a positive int"):
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
    assert lab.resolve_device(None) == ("/GPU:0" if has_gpu else "/CPU:0")
    assert lab.resolve_device("cpu") == "/CPU:0"
    assert lab.resolve_device("/device:CPU:0") == "/CPU:0"
    with pytest.raises(ValueError, match="not understood"):
        lab.resolve_device("tpu")
    with pytest.raises(ValueError, match="CPU:5"):
        lab.resolve_device("/CPU:5")
    with pytest.raises(TypeError, match="must be a string"):
        lab.resolve_device(0)


def test_progress_is_quiet_when_disabled_or_short_and_reports_otherwise():
    quiet = io.StringIO()
    with Progress(10, enabled=False, stream=quiet, delay=0) as bar:
        for _ in range(10):
            bar.update(loss=1.0)
    with Progress(10, stream=quiet) as bar:  # finishes well within the 2 s delay
        bar.update()
    assert quiet.getvalue() == ""

    log = io.StringIO()
    with Progress(10, description="train", stream=log, delay=0, log_interval=0) as bar:
        bar.update(3, loss=0.5)
        bar.write("validation line")
    assert log.getvalue().splitlines()[0].startswith("train  3/10")
    assert "loss 0.5000" in log.getvalue() and "validation line\n" in log.getvalue()


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_one_line_on_a_terminal():
    terminal = FakeTerminal()
    with Progress(4, stream=terminal, delay=0) as bar:
        bar.update(loss=1.0)
        bar.write("validation line")
    text = terminal.getvalue()
    assert text.startswith("\r1/4") and "loss 1.0000" in text
    assert "\rvalidation line\n" in text  # the progress line was blanked first
