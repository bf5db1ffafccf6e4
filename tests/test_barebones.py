"""Tests for Part II: barebones TensorFlow models, initialisation, SGD step and loop.

The library gives ``flatten``, ``two_layer_fc``, ``kaiming_normal`` and the
loop; the SGD step, the initialisations and the three-layer network are
exercises, so those tests run notebook 02's own solution cells
(:func:`notebook_definitions.barebones`).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from conftest import datasets
from notebook_definitions import barebones as notebook

import cifar_lab as lab
from cifar_lab import barebones, barebones_training
from cifar_lab.barebones_training import check_accuracy

EXERCISES = ("training_step", "two_layer_fc_init", "three_layer_fc", "three_layer_fc_init")


def relu(a: np.ndarray) -> np.ndarray:
    return np.maximum(a, 0.0)


def softmax_loss(scores: np.ndarray, y: np.ndarray) -> float:
    """Mean softmax cross-entropy, computed in float64 NumPy."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(y)), y].mean())


def two_layer_np(x: np.ndarray, w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
    return relu(x.reshape(len(x), -1) @ w1) @ w2


def three_layer_np(x: np.ndarray, w1, b1, w2, b2, w3, b3) -> np.ndarray:
    hidden = relu(relu(x.reshape(len(x), -1) @ w1 + b1) @ w2 + b2)
    return hidden @ w3 + b3


def tiny_init(hidden: int = 16, inputs: int = 12, classes: int = 4) -> list[tf.Variable]:
    """Kaiming-initialised [w1, w2] for a two-layer net on the small test inputs."""
    return [
        tf.Variable(lab.kaiming_normal(shape)) for shape in ((inputs, hidden), (hidden, classes))
    ]


def tiny_problem(rng: np.random.Generator, num_params: int):
    """A float64 batch (5, 2, 2, 2) with labels in 0..3 and matching random parameters."""
    x = rng.normal(size=(5, 2, 2, 2))
    y = rng.integers(0, 4, size=5).astype(np.int32)
    two_layer, three_layer = [(8, 6), (6, 4)], [(8, 6), (6,), (6, 5), (5,), (5, 4), (4,)]
    shapes = two_layer if num_params == 2 else three_layer
    params = [rng.normal(scale=0.5, size=shape) for shape in shapes]
    return x, y, params


def test_flatten_matches_numpy_reshape():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    flat = barebones.flatten(x)
    assert flat.shape == (2, 60)
    np.testing.assert_array_equal(flat.numpy(), x.reshape(2, -1))
    with pytest.raises(ValueError, match="scalar"):
        barebones.flatten(np.float32(1.0))


def test_two_layer_fc_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 32, 32, 3)).astype(np.float32)
    w1, w2 = rng.normal(size=(3072, 20)) / 50, rng.normal(size=(20, 10))
    params = [tf.Variable(w1.astype(np.float32)), tf.Variable(w2.astype(np.float32))]
    scores = lab.two_layer_fc(x, params).numpy()
    expected = two_layer_np(x.astype(np.float64), w1, w2)
    assert scores.shape == (7, 10)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)
    # plain NumPy weights work too, as in the reference notebook
    from_arrays = lab.two_layer_fc(x, [p.numpy() for p in params]).numpy()
    np.testing.assert_array_equal(from_arrays, scores)


def test_no_exercise_answer_in_the_library():
    for name in EXERCISES:
        assert not hasattr(lab, name) and name not in dir(lab), name
        assert not hasattr(barebones, name) and not hasattr(barebones_training, name), name


def test_notebook_three_layer_fc_matches_numpy():
    three_layer_fc = notebook("three_layer_fc")["three_layer_fc"]
    x, _, params = tiny_problem(np.random.default_rng(1), num_params=6)
    scores = three_layer_fc(x, [tf.Variable(p) for p in params]).numpy()
    np.testing.assert_allclose(scores, three_layer_np(x, *params), rtol=1e-12)


@pytest.mark.parametrize(
    ("shape", "fan_in", "rtol"),
    [((2000, 300), 2000, 0.01), ((3, 3, 32, 64), 288, 0.05)],
)
def test_kaiming_normal_statistics(shape, fan_in, rtol):
    values = lab.kaiming_normal(shape, seed=3).numpy()
    expected_std = np.sqrt(2.0 / fan_in)
    assert values.shape == shape and values.dtype == np.float32
    # The sample std of n normals has relative error ~ 1/sqrt(2n): 0.1% and 1% here.
    assert values.std() == pytest.approx(expected_std, rel=rtol)
    assert abs(values.mean()) < 5 * expected_std / np.sqrt(values.size)


def test_kaiming_normal_seeding_and_bad_shapes():
    first = lab.kaiming_normal((30, 20), seed=1).numpy()
    np.testing.assert_array_equal(first, lab.kaiming_normal((30, 20), seed=1).numpy())
    assert not np.array_equal(first, lab.kaiming_normal((30, 20), seed=2).numpy())
    with pytest.raises(ValueError, match=r"2-D .* or 4-D"):
        lab.kaiming_normal((3, 4, 5))
    with pytest.raises(ValueError, match=r"shape\[0\] must be >= 1, got 0"):
        lab.kaiming_normal((0, 4))
    with pytest.raises(TypeError, match=r"shape\[1\] must be an int, got 4.0 \(float\)"):
        lab.kaiming_normal((3, 4.0))


def test_notebook_init_functions_shapes_types_and_scale():
    cells = notebook("two_layer_fc_init", "three_layer_fc_init")
    lab.set_seed(0)
    w1, w2 = cells["two_layer_fc_init"](hidden_size=400)
    assert isinstance(w1, tf.Variable) and isinstance(w2, tf.Variable)
    assert w1.shape == (3072, 400) and w2.shape == (400, 10) and w1.dtype == tf.float32
    assert w1.numpy().std() == pytest.approx(np.sqrt(2 / 3072), rel=0.01)
    params = cells["three_layer_fc_init"](hidden_sizes=(300, 20))
    shapes = [tuple(p.shape) for p in params]
    assert shapes == [(3072, 300), (300,), (300, 20), (20,), (20, 10), (10,)]
    assert all(isinstance(p, tf.Variable) and p.dtype == tf.float32 for p in params)
    assert all(np.all(p.numpy() == 0) for p in params[1::2])  # biases start at zero
    assert params[2].numpy().std() == pytest.approx(np.sqrt(2 / 300), rel=0.05)
    # the defaults the notebook trains with
    assert [tuple(p.shape) for p in cells["three_layer_fc_init"]()[::2]] == [
        (3072, 1024),
        (1024, 256),
        (256, 10),
    ]


@pytest.mark.parametrize(
    ("model", "num_params", "reference"),
    [("two_layer_fc", 2, two_layer_np), ("three_layer_fc", 6, three_layer_np)],
)
def test_notebook_training_step_matches_finite_differences(model, num_params, reference):
    cells = notebook("two_layer_fc", "three_layer_fc", "training_step")
    x, y, params = tiny_problem(np.random.default_rng(2), num_params)
    variables = [tf.Variable(p) for p in params]
    learning_rate = 0.5
    loss = cells["training_step"](cells[model], x, y, variables, learning_rate)
    assert float(loss) == pytest.approx(softmax_loss(reference(x, *params), y), rel=1e-12)

    eps = 1e-6
    for before, after in zip(params, variables, strict=True):
        implied_grad = (before - after.numpy()) / learning_rate
        numeric_grad = np.zeros_like(before)
        for index in np.ndindex(before.shape):
            original = before[index]
            before[index] = original + eps
            loss_plus = softmax_loss(reference(x, *params), y)
            before[index] = original - eps
            loss_minus = softmax_loss(reference(x, *params), y)
            before[index] = original
            numeric_grad[index] = (loss_plus - loss_minus) / (2 * eps)
        np.testing.assert_allclose(implied_grad, numeric_grad, rtol=1e-5, atol=1e-8)


def test_check_accuracy_counts_and_prints(capsys):
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(50, 8)).astype(np.float32), rng.integers(0, 3, 50).astype(np.int32)
    params = [tf.Variable(rng.normal(size=shape).astype(np.float32)) for shape in ((8, 6), (6, 3))]
    predictions = two_layer_np(x, *[p.numpy() for p in params]).argmax(axis=1)
    num_correct = int((predictions == y).sum())

    accuracy = check_accuracy(lab.Dataset(x, y, 16), lab.two_layer_fc, params)

    assert accuracy == pytest.approx(num_correct / 50)
    assert (
        f"Got {num_correct} / 50 correct ({100 * num_correct / 50:.2f}%)"
        in capsys.readouterr().out
    )


def test_train_part2_learns_synthetic_data(synthetic, capsys):
    train, val = datasets(synthetic)
    cells = notebook("two_layer_fc_init", "training_step")
    lab.set_seed(0)
    params = cells["two_layer_fc_init"](hidden_size=64)
    history = lab.train_part2(
        lab.two_layer_fc,
        lambda: params,  # trained in place, so the test can read them afterwards
        learning_rate=1e-2,
        train_dset=train,
        val_dset=val,
        num_epochs=3,
        print_every=20,
        progress=False,
        step_fn=cells["training_step"],
    )
    batches = len(train)  # 32 per epoch
    # validated every 20th iteration, plus each epoch's last one
    expected = sorted({*range(0, 3 * batches, 20), batches - 1, 2 * batches - 1, 3 * batches - 1})
    validations = [record for record in history if record["val_accuracy"] is not None]
    assert [record["iteration"] for record in validations] == expected
    assert [record["epoch"] for record in validations] == [i // batches for i in expected]
    assert history[-1]["loss"] < history[0]["loss"] / 2
    assert history[-1]["val_accuracy"] >= 0.8
    # the validation loss is the mean softmax cross-entropy of the trained weights
    scores = two_layer_np(synthetic.X_val.astype(np.float64), *[p.numpy() for p in params])
    assert history[-1]["val_loss"] == pytest.approx(
        softmax_loss(scores, synthetic.y_val), rel=1e-4
    )
    output = capsys.readouterr().out
    assert "Iteration 20, Epoch 1, Loss: " in output and ", Val Accuracy: " in output
    assert ", Accuracy: " not in output  # Part II measures no training accuracy


def test_model_functions_reject_bad_params():
    x = np.zeros((2, 32, 32, 3), np.float32)
    w1, w2 = tiny_init(8, inputs=3072, classes=10)
    with pytest.raises(ValueError, match=r"expects params \[w1, w2\], got 3 tensors"):
        lab.two_layer_fc(x, [w1, w2, w2])
    with pytest.raises(TypeError, match="as a list"):
        lab.two_layer_fc(x, w1)
    with pytest.raises(ValueError, match=r"w1 has shape \(3072, 8\).* width 12"):
        lab.two_layer_fc(np.zeros((2, 12), np.float32), [w1, w2])
    with pytest.raises(ValueError, match=r"w2 has shape \(9, 10\).*must have shape \(8, ...\)"):
        lab.two_layer_fc(x, [w1, tf.Variable(tf.zeros((9, 10)))])
    with pytest.raises(TypeError, match="inputs are float64"):
        lab.two_layer_fc(x.astype(np.float64), [w1, w2])


def test_train_part2_and_check_accuracy_reject_bad_inputs():
    x = np.zeros((4, 12), np.float32)
    y = np.zeros(4, np.int32)
    step = notebook("training_step")["training_step"]
    params = tiny_init()
    with pytest.raises(ValueError, match="x has 4 examples but y has 3 labels"):
        check_accuracy([(x, y[:3])], lab.two_layer_fc, params)
    with pytest.raises(ValueError, match="1-D integer"):
        check_accuracy([(x, y.astype(np.float32))], lab.two_layer_fc, params)
    with pytest.raises(TypeError, match=r"init_fn must return a list of tf\.Variable"):
        tensors = lambda: [p.read_value() for p in params]  # noqa: E731
        lab.train_part2(lab.two_layer_fc, tensors, 1e-2, [(x, y)], [(x, y)], step_fn=step)
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        lab.train_part2(lab.two_layer_fc, tiny_init, -1.0, [(x, y)], [(x, y)], step_fn=step)
    with pytest.raises(ValueError, match="print_every must be >= 1"):
        lab.train_part2(
            lab.two_layer_fc, tiny_init, 1e-2, [(x, y)], [(x, y)], print_every=0, step_fn=step
        )


def test_train_part2_uses_the_given_step_function():
    """The notebook passes the student's own training_step; it must be the one called."""
    import cifar_lab as lab

    data = lab.load_cifar10(128, 32, 32, source="synthetic", verbose=False)
    calls = []
    step = notebook("training_step")["training_step"]

    def counting_step(model_fn, x, y, params, learning_rate):
        calls.append(len(y))
        return step(model_fn, x, y, params, learning_rate)

    lab.train_part2(
        lab.two_layer_fc,
        lambda: tiny_init(16, inputs=3072, classes=10),
        1e-2,
        lab.Dataset(data.X_train, data.y_train, batch_size=32),
        lab.Dataset(data.X_val, data.y_val, batch_size=32),
        verbose=False,
        step_fn=counting_step,
    )
    assert calls == [32, 32, 32, 32]
    with pytest.raises(TypeError, match="step_fn"):
        lab.train_part2(lab.two_layer_fc, tiny_init, 1e-2, [], [], step_fn=3)
    with pytest.raises(TypeError, match="step_fn"):  # the loop has no step of its own
        lab.train_part2(lab.two_layer_fc, tiny_init, 1e-2, [], [])
