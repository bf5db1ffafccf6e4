"""The reference recipe: named configs, train_best's files, reload, and the CLI."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

import cifar_lab.tuning.cli as recipe_cli
import cifar_lab.tuning.recipes as recipe
import cifar_lab.tuning.train as mlp_training
from cifar_lab.data.splits import load_cifar10
from cifar_lab.tuning.config import MLPConfig
from cifar_lab.tuning.ensembles import raw_pixel_ensemble
from cifar_lab.tuning.layers import convolution_layers, raw_pixel_model
from cifar_lab.tuning.network import build_mlp
from cifar_lab.tuning.train import whitened_input
from cifar_lab.tuning.whitening import WhiteningFit

TINY = MLPConfig(
    hidden_sizes=(24, 12), activation="maxout", batch_norm="before", dropout=0.1,
    label_smoothing=0.1, schedule="cosine", warmup_epochs=0.5, flip=True, translate=1,
    epochs=2, batch_size=64, precision="mixed_bfloat16",  # as the shipped recipe
    whitening="zca", augment_whitened=True,
)  # fmt: skip
SIZES = {"num_training": 320, "num_validation": 80, "num_test": 60}


def cheap_zca(rows, method, *, components, epsilon):
    """A stand-in ZCA fit: a 3072x3072 eigendecomposition would cost ~15 s per test run."""
    assert method == "zca" and components is None
    rows = np.asarray(rows, np.float32).reshape(len(rows), -1)
    rng = np.random.default_rng(7)
    matrix = np.eye(rows.shape[1]) + rng.normal(0, 0.01, (rows.shape[1],) * 2)
    eigenvalues = np.ones(rows.shape[1])
    return WhiteningFit("zca", rows.mean(axis=0), matrix.astype(np.float32), eigenvalues, epsilon)


def train_tiny(out, config: MLPConfig, members: int):
    """train_best on synthetic data with the stand-in ZCA fit."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mlp_training, "fit_whitening", cheap_zca)
        return recipe.train_best(
            out, recipe=config, source="synthetic", precision=config.precision,
            members=members, verbose=False, **SIZES,
        )  # fmt: skip  # precision given: the automatic choice would depend on this CPU


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("best")
    return out, train_tiny(out, TINY, members=1)


@pytest.fixture(scope="module")
def trained_ensemble(tmp_path_factory):
    out = tmp_path_factory.mktemp("ensemble")
    return out, train_tiny(out, TINY.replace(epochs=1), members=2)


def raw_test_images():
    splits = load_cifar10(
        SIZES["num_training"], SIZES["num_validation"], SIZES["num_test"], source="synthetic",
        seed=0, verbose=False,
    )  # fmt: skip
    return splits.denormalise(splits.X_test), splits.y_test


def test_train_best_writes_model_config_and_predictions(trained):
    out, result = trained
    assert {p.name for p in out.iterdir()} >= {
        "model.keras",
        "config.json",
        "test_predictions.npz",
    }
    summary = json.loads((out / "config.json").read_text())
    assert MLPConfig.from_dict(summary["config"]) == TINY
    saved = np.load(out / "test_predictions.npz")
    _, labels = raw_test_images()
    assert saved["probabilities"].shape == (60, 10) and np.array_equal(saved["labels"], labels)
    assert np.array_equal(saved["predicted"], saved["probabilities"].argmax(axis=1))
    assert summary["test_accuracy"] == pytest.approx(np.mean(saved["predicted"] == labels))
    assert result.test_accuracy == summary["test_accuracy"]


def test_saved_model_reloads_and_predicts_identically_on_raw_pixels(trained):
    out, _ = trained
    model = keras.models.load_model(out / "model.keras", safe_mode=True)
    raw, _ = raw_test_images()
    assert raw.dtype == np.uint8
    predictions = model.predict(raw, batch_size=1024, verbose=0)
    np.testing.assert_array_equal(
        predictions, np.load(out / "test_predictions.npz")["probabilities"]
    )
    as_float = model.predict(raw.astype(np.float32), batch_size=1024, verbose=0)
    np.testing.assert_array_equal(as_float, predictions)
    assert convolution_layers(model) == []


def test_flip_tta_model_predicts_the_same_on_a_mirrored_image(trained):
    out, _ = trained
    summary = json.loads((out / "config.json").read_text())
    assert summary["flip_tta"] is True and set(summary["flip_tta_off"]) == {
        "val_accuracy",
        "test_accuracy",
    }
    model = keras.models.load_model(out / "model.keras", safe_mode=True)
    assert any(layer.name == "mirror" for layer in model.layers)
    raw, _ = raw_test_images()
    mirrored = raw[:, :, ::-1, :]
    np.testing.assert_array_equal(
        model.predict(mirrored, verbose=0).argmax(axis=1),
        model.predict(raw, verbose=0).argmax(axis=1),
    )
    np.testing.assert_allclose(
        model.predict(mirrored, verbose=0), model.predict(raw, verbose=0), rtol=1e-5, atol=1e-6
    )


def test_flip_tta_averages_the_logits_of_the_image_and_its_mirror():
    inner = keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    raw = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    mean, std = [120.0, 121.0, 122.0], [60.0, 61.0, 62.0]
    tta = raw_pixel_model(inner, mean, std, probabilities=False, flip_tta=True)
    plain = raw_pixel_model(inner, mean, std, probabilities=False)
    logits, mirrored = plain.predict(raw, verbose=0), plain.predict(raw[:, :, ::-1], verbose=0)
    assert not np.array_equal(logits, mirrored)  # the mirror changes the logits: a real test
    # the average of the two logits, float32 for float32; a CPU with wider vector units
    # (AVX-512) may sum the Dense layer in another order, so allow float32 rounding
    np.testing.assert_allclose(
        tta.predict(raw, verbose=0), (logits + mirrored) / 2, rtol=1e-6, atol=1e-6
    )
    assert convolution_layers(tta) == []


def all_layers(model: keras.Model) -> list:
    """Every layer of ``model``, nested models' layers included (the models too)."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if isinstance(layer, keras.Model):
            found.extend(all_layers(layer))
    return found


def test_named_recipes_have_no_convolutions_and_only_built_in_layers():
    for name, config in recipe.RECIPES.items():
        whitening = None
        if config.whitening != "none":  # a stand-in fit: only the shapes matter here
            units = config.whitening_components or 3072
            whitening = WhiteningFit(
                config.whitening, np.zeros(3072, np.float32), np.zeros((3072, units), np.float32),
                np.ones(3072), 0.1,
            )  # fmt: skip
        if config.augment_whitened:  # as train_config returns it: trained on whitened images
            plain = config.replace(whitening="none", augment_whitened=False)
            network = whitened_input(build_mlp(plain), whitening)
        else:
            network = build_mlp(config, whitening=whitening)
        assert convolution_layers(network) == [], name
        # what train_best saves (its members share the network's shapes): plain Keras
        # can load it without cifar_lab
        members = [network] * recipe.MEMBERS.get(name, 1)
        saved = raw_pixel_ensemble(members, [120.0] * 3, [60.0] * 3, flip_tta=True)
        layers = all_layers(saved)
        modules = {type(layer).__module__ for layer in layers}
        assert all(module.startswith("keras.") for module in modules), (name, modules)
        # dense-only: every layer with weights but the fixed per-channel standardisation
        # sees flat (N, F) features, so no weights are shared across pixels or patches
        fixed = (keras.layers.Normalization, keras.Model)  # a model's layers are each listed
        for layer in layers:
            if layer.weights and not isinstance(layer, fixed):
                assert len(layer.input.shape) == 2, (name, layer.name, layer.input.shape)
        assert any(layer.name == "mirror" and not layer.weights for layer in layers)


# Run with ``python -I`` from an empty folder, so that neither PYTHONPATH nor the
# working directory can supply cifar_lab; the editable install's finder still
# could, so the module is blocked first: `import cifar_lab` fails as where it is
# not installed.
_LOAD_WITH_PLAIN_KERAS = """
import sys

sys.modules["cifar_lab"] = None
try:
    import cifar_lab  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("cifar_lab is importable")
import keras
import numpy as np

model_path, images_path, out_path = sys.argv[1:]
model = keras.models.load_model(model_path, safe_mode=True)
np.save(out_path, model.predict(np.load(images_path), batch_size=1024, verbose=0))
"""


def test_saved_model_loads_with_plain_keras_where_cifar_lab_is_not_importable(trained, tmp_path):
    out, _ = trained
    config = zipfile.ZipFile(out / "model.keras").read("config.json").decode()
    assert "cifar_lab" not in config  # no class of the library is named in the file
    raw, _ = raw_test_images()
    np.save(tmp_path / "raw.npy", raw)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = [sys.executable, "-I", "-c", _LOAD_WITH_PLAIN_KERAS, str(out / "model.keras"),
               str(tmp_path / "raw.npy"), str(tmp_path / "predictions.npy")]  # fmt: skip
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    done = subprocess.run(command, cwd=empty, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_array_equal(
        np.load(tmp_path / "predictions.npy"),
        np.load(out / "test_predictions.npz")["probabilities"],
    )


def test_an_ensemble_saves_one_model_that_averages_its_members(trained_ensemble, tmp_path):
    out, result = trained_ensemble
    summary = json.loads((out / "config.json").read_text())
    assert [member["seed"] for member in summary["members"]] == [TINY.seed, TINY.seed + 1]
    seconds = [member["training_seconds"] for member in summary["members"]]
    assert result.training_seconds == pytest.approx(sum(seconds))
    # both networks' images count towards the speed: 2 x 1 epoch x 320 images
    images = 2 * 1 * SIZES["num_training"]
    assert summary["images_per_second"] == pytest.approx(images / summary["training_seconds"])
    model = keras.models.load_model(out / "model.keras", safe_mode=True)
    raw, labels = raw_test_images()
    alone = [model.get_layer(f"member_{i}").predict(raw, verbose=0) for i in (1, 2)]
    assert not np.allclose(alone[0], alone[1])  # different seeds: different networks
    saved = np.load(out / "test_predictions.npz")["probabilities"]
    np.testing.assert_allclose(saved, (alone[0] + alone[1]) / 2, rtol=1e-5, atol=1e-6)
    for member, probabilities in zip(summary["members"], alone, strict=True):
        assert member["test_accuracy"] == pytest.approx(np.mean(probabilities.argmax(1) == labels))
    assert convolution_layers(model) == []
    assert "cifar_lab" not in zipfile.ZipFile(out / "model.keras").read("config.json").decode()
    # and plain Keras, without cifar_lab, predicts the same from the saved file
    np.save(tmp_path / "raw.npy", raw)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = [sys.executable, "-I", "-c", _LOAD_WITH_PLAIN_KERAS, str(out / "model.keras"),
               str(tmp_path / "raw.npy"), str(tmp_path / "predictions.npy")]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "predictions.npy"), saved)


def test_members_are_checked_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="members"):
        recipe.train_best(tmp_path / "x", recipe="fast", source="no/such/copy", members=0)
    assert recipe.MEMBERS["xl"] > 1 and set(recipe.MEMBERS) <= set(recipe.RECIPES)


def test_unknown_recipe_is_explained(tmp_path):
    with pytest.raises(ValueError, match="baseline"):
        recipe.train_best(tmp_path, recipe="fastest", source="synthetic")


def test_cli_parses_and_calls_train_best(monkeypatch, tmp_path):
    calls = []
    parser = argparse.ArgumentParser()
    recipe_cli.add_cli(parser.add_subparsers(dest="command", required=True))  # reads train_best
    monkeypatch.setattr(recipe, "train_best", lambda out, **kwargs: calls.append((out, kwargs)))
    args = parser.parse_args(
        [
            "train-best",
            "--out",
            str(tmp_path),
            "--source",
            "synthetic",
            "--epochs",
            "3",
            "--seed",
            "7",
            "--precision",
            "float32",
        ]
    )
    assert args.handler(args) == 0
    expected = {"recipe": "best", "source": "synthetic", "epochs": 3, "seed": 7}
    assert calls == [
        (tmp_path, {**expected, "precision": "float32", "flip_tta": True, "members": None})
    ]
    args = parser.parse_args(["train-best", "--out", str(tmp_path), "--no-flip-tta"])
    args.handler(args)
    assert calls[-1][1]["flip_tta"] is False and calls[-1][1]["precision"] is None
    args = parser.parse_args(["train-best", "--out", str(tmp_path), "--recipe", "xl"])
    args.handler(args)
    assert calls[-1][1]["recipe"] == "xl" and calls[-1][1]["members"] is None  # the recipe's
    args = parser.parse_args(["train-best", "--out", str(tmp_path), "--members", "2"])
    args.handler(args)
    assert calls[-1][1]["members"] == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["train-best"])  # --out is required


def test_overrides_are_applied():
    config = recipe._resolve("best", 3, 7, "mixed_bfloat16")
    assert (config.epochs, config.seed, config.precision) == (3, 7, "mixed_bfloat16")
    assert recipe._resolve("best", None, None, "float32").precision == "float32"


LAPTOP_FLAGS = "flags\t\t: fpu sse sse2 avx avx2 fma\n"
BF16_FLAGS = "flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512_bf16\n"
AMX_FLAGS = "flags\t\t: fpu avx2 amx_tile amx_bf16 amx_int8\n"


@pytest.mark.parametrize(
    ("cpuinfo", "gpu", "expected"),
    [
        (LAPTOP_FLAGS, False, "float32"),
        (BF16_FLAGS, False, "mixed_bfloat16"),
        (AMX_FLAGS, False, "mixed_bfloat16"),
        (LAPTOP_FLAGS, True, "mixed_bfloat16"),
    ],
)
def test_precision_follows_the_cpu_flags(cpuinfo, gpu, expected, capsys):
    chosen = recipe.choose_precision("mixed_bfloat16", cpuinfo=cpuinfo, gpu=gpu)
    assert chosen == expected
    said = capsys.readouterr().out
    assert ("float32" in said and said.count("\n") == 1) if expected == "float32" else said == ""
    # a float32 recipe stays float32 whatever the machine
    assert recipe.choose_precision("float32", cpuinfo=AMX_FLAGS, gpu=True) == "float32"


def test_train_best_picks_float32_on_a_cpu_without_bf16(monkeypatch, tmp_path, capsys):
    import cifar_lab.devices as devices

    monkeypatch.setattr(devices, "cpu_has_fast_bfloat16", lambda cpuinfo=None: False)
    monkeypatch.setattr(devices, "visible_devices", lambda kind: [])
    monkeypatch.setattr(mlp_training, "fit_whitening", cheap_zca)
    recipe.train_best(
        tmp_path, recipe=TINY.replace(epochs=1), source="synthetic", verbose=True, **SIZES
    )
    summary = json.loads((tmp_path / "config.json").read_text())
    assert summary["config"]["precision"] == "float32"
    assert "precision: float32" in capsys.readouterr().out
