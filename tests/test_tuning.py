"""Part V builder, layers, augmentation, whitening and config training (small and fast)."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

import cifar_lab.tuning.train as mlp_training
from cifar_lab.tuning.augment import AugmentedBatches, augment_batch
from cifar_lab.tuning.config import ACTIVATIONS, MLPConfig
from cifar_lab.tuning.layers import (
    LegacyHorizontalFlip,
    LegacyMaxout,
    Maxout,
    convolution_layers,
    mirror_model,
    raw_pixel_model,
    whitening_dense,
)
from cifar_lab.tuning.network import build_mlp
from cifar_lab.tuning.optimizers import build_optimizer, build_schedule, compile_mlp
from cifar_lab.tuning.train import one_hot, train_config
from cifar_lab.tuning.whitening import WhiteningFit, fit_whitening

D = 32 * 32 * 3


def fake_fit(components: int, seed: int = 0) -> WhiteningFit:
    """A cheap stand-in for a fitted whitening (random mean, random matrix)."""
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=D).astype(np.float32)
    matrix = (rng.normal(size=(D, components)) / np.sqrt(D)).astype(np.float32)
    return WhiteningFit("pca", mean, matrix, np.ones(D), 0.1)


def dense(fan_in: int, units: int, bias: bool = True) -> int:
    return fan_in * units + (units if bias else 0)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (MLPConfig(hidden_sizes=()), dense(D, 10)),
        (MLPConfig(hidden_sizes=(100, 50)), dense(D, 100) + dense(100, 50) + dense(50, 10)),
        (  # BN before: no dense bias; BN keeps gamma, beta, moving mean and variance
            MLPConfig(hidden_sizes=(100, 50), batch_norm="before"),
            dense(D, 100, False) + 4 * 100 + dense(100, 50, False) + 4 * 50 + dense(50, 10),
        ),
        (
            MLPConfig(hidden_sizes=(40,), batch_norm="after", dropout=0.5),
            dense(D, 40) + 4 * 40 + dense(40, 10),
        ),
        (
            MLPConfig(hidden_sizes=(20,), activation="maxout", maxout_pieces=3),
            dense(D, 60) + dense(20, 10),
        ),
        (MLPConfig(hidden_sizes=(30,), activation="prelu"), dense(D, 30) + 30 + dense(30, 10)),
    ],
)
def test_parameter_counts(config, expected):
    model = build_mlp(config)
    assert model.count_params() == expected
    assert convolution_layers(model) == []


def test_mixed_bfloat16_computes_in_bfloat16_with_float32_weights_and_logits():
    config = MLPConfig(hidden_sizes=(64, 32), batch_norm="before", activation="maxout")
    mixed = build_mlp(config.replace(precision="mixed_bfloat16"))
    full = build_mlp(config)
    full.set_weights(mixed.get_weights())
    assert mixed.get_layer("dense_0").compute_dtype == "bfloat16"
    assert mixed.get_layer("maxout_0").compute_dtype == "bfloat16"
    assert all(weight.dtype == "float32" for weight in mixed.weights)
    X = np.random.default_rng(0).normal(size=(50, 32, 32, 3)).astype(np.float32)
    logits = mixed.predict(X, verbose=0)
    assert logits.dtype == np.float32
    reference = full.predict(X, verbose=0)
    # bfloat16 keeps 8 significant bits: close to float32, yet not identical
    assert not np.array_equal(logits, reference)
    np.testing.assert_allclose(logits, reference, atol=0.05 * np.abs(reference).max())


def test_precision_is_validated():
    with pytest.raises(ValueError, match="precision"):
        MLPConfig(precision="float16")


def test_whitening_layer_counts_and_is_frozen():
    config = MLPConfig(hidden_sizes=(8,), whitening="pca", whitening_components=16)
    model = build_mlp(config, whitening=fake_fit(16))
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert frozen == dense(D, 16)
    assert model.count_params() == dense(D, 16) + dense(16, 8) + dense(8, 10)


def test_layers_are_exactly_those_asked_for():
    config = MLPConfig(
        hidden_sizes=(64, 32, 16), batch_norm="after", dropout=0.2, activation="elu"
    )
    kinds = [type(layer).__name__ for layer in build_mlp(config).layers]
    assert kinds.count("Dense") == 4
    assert kinds.count("BatchNormalization") == 3
    assert kinds.count("Dropout") == 3
    block = kinds[2:6]  # after Input and Flatten: the first hidden block, in order
    assert block == ["Dense", "Activation", "BatchNormalization", "Dropout"]
    assert model_names(config) == [
        "images", "flatten", "dense_0", "elu_0", "batch_norm_0", "dropout_0",
        "dense_1", "elu_1", "batch_norm_1", "dropout_1",
        "dense_2", "elu_2", "batch_norm_2", "dropout_2", "logits",
    ]  # fmt: skip


def model_names(config: MLPConfig) -> list[str]:
    return [layer.name for layer in build_mlp(config).layers]


def test_convolution_check_finds_nested_convolutions():
    inner = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3)])
    inputs = keras.Input((32, 32, 3))
    outer = keras.Model(inputs, keras.layers.Flatten()(inner(inputs)))
    assert len(convolution_layers(outer)) == 1


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_builds_and_runs(activation):
    model = build_mlp(MLPConfig(hidden_sizes=(12,), activation=activation))
    out = model(np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype(np.float32))
    assert out.shape == (3, 10) and np.isfinite(np.asarray(out)).all()


def test_maxout_matches_numpy():
    x = np.random.default_rng(1).normal(size=(5, 12)).astype(np.float32)
    got = np.asarray(Maxout(3)(x))
    assert np.array_equal(got, x.reshape(5, 4, 3).max(axis=2))


def test_maxout_network_is_dense_then_max():
    model = build_mlp(MLPConfig(hidden_sizes=(4,), activation="maxout", maxout_pieces=2))
    x = np.random.default_rng(2).normal(size=(6, 32, 32, 3)).astype(np.float32)
    kernel, bias = model.get_layer("dense_0").get_weights()
    pre = x.reshape(6, -1) @ kernel + bias
    hidden = keras.Model(model.input, model.get_layer("maxout_0").output)
    np.testing.assert_allclose(hidden(x), pre.reshape(6, 4, 2).max(axis=2), rtol=1e-4, atol=1e-5)


def test_maxout_rejects_bad_pieces():
    with pytest.raises(ValueError, match="pieces"):
        Maxout(1)


def test_maxout_rejects_features_not_divisible_by_pieces():
    with pytest.raises(ValueError, match="divisible by 3"):
        Maxout(3)(np.zeros((2, 10), np.float32))
    with pytest.raises(ValueError, match=r"\(N, F\)"):
        Maxout(2)(np.zeros((2, 4, 4), np.float32))


def keras_classes(model: keras.Model) -> set[str]:
    """Module-qualified class names of every layer in ``model``, nested models included."""
    found = set()
    for layer in model.layers:
        found.add(f"{type(layer).__module__}.{type(layer).__name__}")
        if isinstance(layer, keras.Model):
            found |= keras_classes(layer)
    return found


def test_maxout_network_uses_only_built_in_layers():
    model = build_mlp(MLPConfig(hidden_sizes=(6, 4), activation="maxout", maxout_pieces=3))
    classes = keras_classes(model)
    assert all(name.startswith("keras.") for name in classes), classes
    assert sum("GlobalMaxPooling1D" in name for name in classes) == 1  # one class, two layers
    assert [layer.name for layer in model.layers if "maxout" in layer.name] == [
        "maxout_0_pieces", "maxout_0", "maxout_1_pieces", "maxout_1",
    ]  # fmt: skip


def test_mirror_equals_numpy_flip_exactly_and_has_no_weights():
    x = np.random.default_rng(3).normal(size=(4, 32, 32, 3)).astype(np.float32) * 1e3
    x[0, 0, :4, 0] = [np.inf, -np.inf, np.nan, -0.0]  # copies, no arithmetic: all kept
    x[1, 5, 7, 2] = np.float32(1e-42)  # a subnormal too
    mirror = mirror_model()
    got = np.asarray(mirror(x))
    np.testing.assert_array_equal(got, x[:, :, ::-1, :])
    assert np.signbit(got[0, 0, 31 - 3, 0]) and got[1, 5, 31 - 7, 2] == x[1, 5, 7, 2]
    assert mirror.weights == [] and convolution_layers(mirror) == []
    assert all(name.startswith("keras.") for name in keras_classes(mirror))
    small = np.arange(2 * 3 * 5 * 2, dtype=np.float32).reshape(2, 3, 5, 2)
    np.testing.assert_array_equal(mirror_model(3, 5, 2)(small), small[:, :, ::-1, :])


def test_models_saved_with_the_old_library_classes_still_load(tmp_path):
    # earlier versions saved maxout and the flip as cifar_lab>Maxout, cifar_lab>HorizontalFlip
    assert keras.saving.get_registered_name(LegacyMaxout) == "cifar_lab>Maxout"
    assert keras.saving.get_registered_name(LegacyHorizontalFlip) == "cifar_lab>HorizontalFlip"
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Flatten()(LegacyHorizontalFlip()(inputs))
    x = LegacyMaxout(2)(keras.layers.Dense(8)(x))
    old = keras.Model(inputs, keras.layers.Dense(10)(x))
    old.save(tmp_path / "old.keras")
    again = keras.models.load_model(tmp_path / "old.keras", safe_mode=True)
    assert {type(layer) for layer in again.layers} >= {LegacyMaxout, LegacyHorizontalFlip}
    images = np.random.default_rng(4).normal(size=(3, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(again.predict(images, verbose=0), old.predict(images, verbose=0))
    flat = images[:, :, ::-1, :].reshape(3, -1)
    kernel, bias = old.layers[3].get_weights()
    hidden = (flat @ kernel + bias).reshape(3, 4, 2).max(axis=2)
    np.testing.assert_allclose(
        keras.Model(old.input, old.layers[4].output)(images), hidden, rtol=1e-4, atol=1e-4
    )


def test_zeros_initialisation_keeps_hidden_units_identical():
    config = MLPConfig(
        hidden_sizes=(16, 8), activation="tanh", initializer="zeros", optimizer="sgd",
        learning_rate=0.5,
    )  # fmt: skip
    model = compile_mlp(build_mlp(config), config, steps_per_epoch=1)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(32, 32, 32, 3)).astype(np.float32)
    y = one_hot(rng.integers(0, 10, 32))
    bias_before = model.get_layer("logits").get_weights()[1].copy()
    for _ in range(3):
        model.train_on_batch(x, y)
    assert not np.allclose(model.get_layer("logits").get_weights()[1], bias_before)  # it learned
    for name in ("dense_0", "dense_1"):
        kernel, bias = model.get_layer(name).get_weights()
        assert np.array_equal(kernel, np.repeat(kernel[:, :1], kernel.shape[1], axis=1))
        assert np.all(bias == bias[0])


@pytest.mark.parametrize(
    ("name", "limit"),
    [
        ("uniform", lambda fan_in, fan_out: 0.05),
        ("lecun_uniform", lambda fan_in, fan_out: np.sqrt(3 / fan_in)),
        ("glorot_uniform", lambda fan_in, fan_out: np.sqrt(6 / (fan_in + fan_out))),
        ("he_uniform", lambda fan_in, fan_out: np.sqrt(6 / fan_in)),
    ],
)
def test_uniform_initialisers_use_their_limits(name, limit):
    kernel = build_mlp(MLPConfig(hidden_sizes=(200,), initializer=name)).get_layer("dense_0")
    values = kernel.get_weights()[0]
    bound = limit(D, 200)
    assert np.abs(values).max() <= bound and np.abs(values).max() > 0.99 * bound


@pytest.mark.parametrize(
    ("name", "std"),
    [
        # variance scaling: Keras widens its truncated normal so the std is exact
        ("normal", lambda fan_in, fan_out: 0.05),
        ("lecun_normal", lambda fan_in, fan_out: np.sqrt(1 / fan_in)),
        ("glorot_normal", lambda fan_in, fan_out: np.sqrt(2 / (fan_in + fan_out))),
        ("he_normal", lambda fan_in, fan_out: np.sqrt(2 / fan_in)),
    ],
)
def test_normal_initialisers_use_their_scales(name, std):
    values = build_mlp(MLPConfig(hidden_sizes=(200,), initializer=name)).get_layer("dense_0")
    np.testing.assert_allclose(values.get_weights()[0].std(), std(D, 200), rtol=0.03)


def test_optimisers_are_configured():
    config = MLPConfig(optimizer="nesterov", momentum=0.8, learning_rate=0.02)
    sgd = build_optimizer(config, 10)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.nesterov and sgd.momentum == 0.8
    adamw = build_optimizer(config.replace(optimizer="adamw", weight_decay=0.05), 10)
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.weight_decay == 0.05
    rmsprop = build_optimizer(config.replace(optimizer="rmsprop"), 10)
    assert isinstance(rmsprop, keras.optimizers.RMSprop)


def test_cosine_schedule_with_warmup_matches_formula():
    config = MLPConfig(learning_rate=0.1, schedule="cosine", warmup_epochs=2, epochs=10)
    schedule = build_schedule(config, steps_per_epoch=5)  # 10 warm-up steps, 40 decay steps
    for step in (0, 5, 10, 30, 50):
        expected = 0.1 * step / 10 if step < 10 else 0.05 * (1 + np.cos(np.pi * (step - 10) / 40))
        np.testing.assert_allclose(float(schedule(step)), expected, atol=1e-6)
    assert build_schedule(config.replace(schedule="constant", warmup_epochs=0.0), 5) == 0.1
    constant = build_schedule(config.replace(schedule="constant"), 5)
    np.testing.assert_allclose(float(constant(30)), 0.1, atol=1e-7)


def test_label_smoothing_loss_matches_numpy():
    model = compile_mlp(build_mlp(MLPConfig(hidden_sizes=())), MLPConfig(label_smoothing=0.2), 1)
    logits = np.random.default_rng(4).normal(size=(6, 10)).astype(np.float32)
    labels = np.arange(6) % 10
    targets = one_hot(labels) * 0.8 + 0.2 / 10
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -(targets * log_softmax).sum(axis=1).mean()
    np.testing.assert_allclose(float(model.loss(one_hot(labels), logits)), expected, rtol=1e-5)


def test_config_validation_names_the_fix():
    with pytest.raises(ValueError, match=r"relu6.*leaky_relu"):
        MLPConfig(activation="relu6")
    with pytest.raises(ValueError, match="dropout"):
        MLPConfig(dropout=1.5)
    with pytest.raises(ValueError, match="whitening='pca'"):
        MLPConfig(whitening_components=10)
    with pytest.raises(ValueError, match="unknown MLPConfig fields"):
        MLPConfig.from_dict({"hiden_sizes": [1]})
    with pytest.raises(ValueError, match="fit_whitening"):
        build_mlp(MLPConfig(whitening="pca"))


def test_config_round_trip_and_hidden_size_text():
    config = MLPConfig(hidden_sizes="512-256", activation="gelu", flip=True)
    assert config.hidden_sizes == (512, 256) and config.architecture == "512-256"
    assert MLPConfig.from_dict(config.to_dict()) == config


def asymmetric_images(count: int) -> np.ndarray:
    return np.random.default_rng(5).normal(size=(count, 32, 32, 3)).astype(np.float32)


def test_augmentation_keeps_shape_dtype_and_input():
    images = asymmetric_images(8)
    before = images.copy()
    out = augment_batch(images, np.random.default_rng(0), flip=True, translate=3, noise_std=0.1)
    assert out.shape == images.shape and out.dtype == np.float32
    assert np.array_equal(images, before)


def test_flip_mirrors_the_width_axis():
    images = asymmetric_images(64)
    out = augment_batch(images, np.random.default_rng(0), flip=True)
    same = np.array([np.array_equal(o, i) for o, i in zip(out, images, strict=True)])
    mirrored = np.array([np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images, strict=True)])
    assert np.all(same ^ mirrored)  # each image is either untouched or mirrored left-right
    assert 10 < mirrored.sum() < 54


def test_translation_shifts_with_zero_fill():
    images = asymmetric_images(16)
    out = augment_batch(images, np.random.default_rng(1), translate=2)
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))
    for image, shifted in zip(padded, out, strict=True):
        windows = [image[t : t + 32, s : s + 32] for t in range(5) for s in range(5)]
        assert any(np.array_equal(shifted, window) for window in windows)


def test_noise_is_gaussian_float_not_quantised():
    images = np.zeros((50, 32, 32, 3), np.float32)
    noise = augment_batch(images, np.random.default_rng(2), noise_std=0.2)
    assert abs(noise.mean()) < 0.01 and abs(noise.std() - 0.2) < 0.005
    assert np.mean(noise == np.round(noise)) < 0.01  # uint8 noise would be whole numbers


def test_augmentation_rejects_uint8():
    with pytest.raises(TypeError, match="float32"):
        augment_batch(np.zeros((1, 32, 32, 3), np.uint8), np.random.default_rng(0), flip=True)


def test_augmented_batches_keep_labels_and_repeat_with_seed():
    images = asymmetric_images(50)
    labels = one_hot(np.arange(50) % 10)
    batches = AugmentedBatches(images, labels, 16, seed=3)
    assert len(batches) == 3  # the partial batch is dropped
    x, y = batches[1]
    rows = [int(np.flatnonzero([np.array_equal(r, i) for i in images])[0]) for r in x]
    assert np.array_equal(y, labels[rows])
    again = AugmentedBatches(images, labels, 16, seed=3, flip=True, translate=1)
    other = AugmentedBatches(images, labels, 16, seed=3, flip=True, translate=1)
    assert np.array_equal(again[2][0], other[2][0])


def correlated_rows(count: int, features: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(features, features)) * np.linspace(2, 0.05, features)
    return (rng.normal(size=(count, features)) @ mixing.T + 3.0).astype(np.float32)


def test_pca_whitening_matches_numpy():
    X = correlated_rows(3000, 24, seed=6)
    fit = fit_whitening(X, "pca", components=10, epsilon=0.1)
    centred = X.astype(np.float64) - X.mean(axis=0)
    values, vectors = np.linalg.eigh(centred.T @ centred / (len(X) - 1))
    values = values[::-1]
    eps = 0.1 * values.mean()
    np.testing.assert_allclose(fit.mean, X.mean(axis=0), rtol=1e-5)
    white = fit.transform(X)
    assert white.shape == (3000, 10) and white.dtype == np.float32
    expected = values[:10] / (values[:10] + eps)  # variance left in each component
    np.testing.assert_allclose(np.cov(white.T), np.diag(expected), atol=2e-3)


def test_zca_whitening_is_symmetric_and_regularised():
    X = correlated_rows(3000, 16, seed=7)
    fit = fit_whitening(X, "zca", epsilon=0.05)
    covariance = np.cov(X.astype(np.float64).T)
    np.testing.assert_allclose(fit.matrix, fit.matrix.T, atol=1e-5)
    identity = fit.matrix @ (covariance + fit.epsilon * np.eye(16)) @ fit.matrix
    np.testing.assert_allclose(identity, np.eye(16), atol=2e-3)


def test_whitening_uses_training_rows_only():
    train, val = correlated_rows(2000, 12, seed=8), correlated_rows(500, 12, seed=9) + 5.0
    fit = fit_whitening(train, "pca")
    np.testing.assert_allclose(fit.mean, train.mean(axis=0), rtol=1e-5)
    assert not np.allclose(fit.mean, np.concatenate([train, val]).mean(axis=0), rtol=1e-2)


def test_train_config_fits_whitening_on_the_training_subset_only(monkeypatch):
    seen = []

    def spy(rows, method, *, components, epsilon):
        seen.append(np.array(rows))
        return fake_fit(components)

    monkeypatch.setattr(mlp_training, "fit_whitening", spy)
    rng = np.random.default_rng(10)
    X_train, X_val = asymmetric_images(120), asymmetric_images(40) + 7.0
    y_train, y_val = rng.integers(0, 10, 120), rng.integers(0, 10, 40)
    config = MLPConfig(
        hidden_sizes=(8,), whitening="pca", whitening_components=4, num_train=100, epochs=1,
        batch_size=50,
    )  # fmt: skip
    trained = train_config(config, X_train, y_train, X_val, y_val, verbose=False)
    subset, _ = mlp_training.training_subset(X_train, y_train, 100, config.seed)
    assert len(seen) == 1 and np.array_equal(seen[0], subset)
    assert trained.num_images == 100  # the num_train subset, not the 120 given
    kernel, bias = trained.model.get_layer("whitening").get_weights()
    np.testing.assert_allclose(kernel, fake_fit(4).matrix)
    assert len(trained.history) == 1 and 0.0 <= trained.history[0]["val_accuracy"] <= 1.0


def test_a_fit_of_a_few_steps_runs_eagerly_with_the_same_result(monkeypatch):
    """Part V's quick trials skip fit's tracing; longer fits, and XLA, are traced."""
    rng = np.random.default_rng(14)
    X_train, X_val = asymmetric_images(96), asymmetric_images(32)
    y_train, y_val = rng.integers(0, 10, 96), rng.integers(0, 10, 32)
    short = MLPConfig(hidden_sizes=(8,), epochs=1, batch_size=48)  # 2 steps
    eager = train_config(short, X_train, y_train, X_val, y_val, verbose=False)
    assert eager.model.run_eagerly
    assert eager.num_images == 96  # num_train=None: every image given
    long = short.replace(batch_size=96 // (mlp_training.EAGER_MAX_STEPS + 1))
    assert not train_config(long, X_train, y_train, X_val, y_val, verbose=False).model.run_eagerly
    monkeypatch.setattr(mlp_training, "EAGER_MAX_STEPS", 0)  # the same two steps, traced
    traced = train_config(short, X_train, y_train, X_val, y_val, verbose=False)
    assert not traced.model.run_eagerly
    for mine, theirs in zip(eager.model.get_weights(), traced.model.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)


def test_whitening_layer_computes_the_fit_and_reloads(tmp_path):
    fit = fake_fit(6, seed=11)
    x = np.random.default_rng(12).normal(size=(4, D)).astype(np.float32)
    layer = whitening_dense(fit)
    np.testing.assert_allclose(layer(x), fit.transform(x), rtol=1e-4, atol=1e-4)
    inputs = keras.Input((32, 32, 3))
    model = raw_pixel_model(
        keras.Model(inputs, layer(keras.layers.Flatten()(inputs))), [120, 115, 100], [60, 61, 66],
        probabilities=False,
    )  # fmt: skip
    raw = np.random.default_rng(13).integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    model.save(tmp_path / "w.keras")
    again = keras.models.load_model(tmp_path / "w.keras", safe_mode=True)
    assert np.array_equal(again.predict(raw, verbose=0), model.predict(raw, verbose=0))
    standardised = (raw - np.array([120, 115, 100.0])) / np.array([60, 61, 66.0])
    np.testing.assert_allclose(
        model.predict(raw, verbose=0), fit.transform(standardised), rtol=1e-3, atol=1e-3
    )


def test_the_validation_after_each_epoch_scores_every_image_once(monkeypatch):
    """Batched as a plain pipeline, the recorded val_accuracy is the trained model's own."""
    monkeypatch.setattr(mlp_training, "VALIDATION_BATCH", 7)  # 30 images: 5 batches, one short
    rng = np.random.default_rng(15)
    X_train, X_val = asymmetric_images(64), asymmetric_images(30)
    y_train, y_val = rng.integers(0, 10, 64), rng.integers(0, 10, 30)
    config = MLPConfig(hidden_sizes=(8,), epochs=2, batch_size=32)
    trained = train_config(config, X_train, y_train, X_val, y_val, verbose=False)
    batches = list(mlp_training.validation_batches(X_val, y_val))
    assert [len(x) for x, _ in batches] == [7, 7, 7, 7, 2]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), X_val)  # in order
    logits = np.asarray(trained.model.predict(X_val, verbose=0))
    expected = float(np.mean(logits.argmax(axis=1) == y_val))
    assert trained.history[-1]["val_accuracy"] == pytest.approx(expected, abs=1e-6)


def test_augment_whitened_trains_on_whitened_images_and_puts_the_layer_first(monkeypatch):
    """The batches and the validation see ZCA-whitened images; the model whitens itself."""
    fit = dataclasses.replace(fake_fit(D, seed=16), method="zca")
    monkeypatch.setattr(mlp_training, "fit_whitening", lambda *args, **kwargs: fit)
    seen = []
    real_batches = mlp_training.AugmentedBatches

    def spy(X, *args, **kwargs):
        seen.append(np.array(X))
        return real_batches(X, *args, **kwargs)

    monkeypatch.setattr(mlp_training, "AugmentedBatches", spy)
    rng = np.random.default_rng(17)
    X_train, X_val = asymmetric_images(64), asymmetric_images(30)
    y_train, y_val = rng.integers(0, 10, 64), rng.integers(0, 10, 30)
    config = MLPConfig(
        hidden_sizes=(8,), whitening="zca", augment_whitened=True, flip=True, translate=1,
        epochs=1, batch_size=32,
    )  # fmt: skip
    trained = train_config(config, X_train, y_train, X_val, y_val, verbose=False)
    np.testing.assert_allclose(seen[0], fit.transform(X_train).reshape(X_train.shape), atol=1e-5)
    # the returned model is the fixed whitening, then the network trained on whitened images
    layer = trained.model.get_layer("whitening")
    assert not layer.trainable and layer.dtype_policy.compute_dtype == "float32"
    network = trained.model.layers[-1]
    assert isinstance(network, keras.Model) and "whitening" not in [x.name for x in network.layers]
    whitened_val = fit.transform(X_val).reshape(X_val.shape)
    logits = np.asarray(trained.model.predict(X_val, verbose=0))
    np.testing.assert_allclose(
        logits, network.predict(whitened_val, verbose=0), rtol=1e-4, atol=1e-4
    )
    # fit's validation scored the whitened validation images with the same network
    loss = keras.losses.CategoricalCrossentropy(from_logits=True)(one_hot(y_val), logits)
    assert trained.history[-1]["val_loss"] == pytest.approx(float(loss), rel=1e-4)
    assert convolution_layers(trained.model) == []


def test_augment_whitened_needs_zca():
    with pytest.raises(ValueError, match="augment_whitened needs whitening='zca'"):
        MLPConfig(whitening="pca", augment_whitened=True)
    with pytest.raises(ValueError, match="augment_whitened needs whitening='zca'"):
        MLPConfig(augment_whitened=True)
    assert MLPConfig(whitening="zca", augment_whitened=True).augment_whitened
