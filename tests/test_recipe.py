"""The reference recipe: named configs, train_best's files, reload, and the CLI."""

from __future__ import annotations

import argparse
import json

import keras
import numpy as np
import pytest

import cifar_lab.tuning.cli as recipe_cli
import cifar_lab.tuning.recipes as recipe
from cifar_lab.data.splits import load_cifar10
from cifar_lab.tuning.config import MLPConfig
from cifar_lab.tuning.layers import convolution_layers
from cifar_lab.tuning.network import build_mlp
from cifar_lab.tuning.whitening import WhiteningFit

TINY = MLPConfig(
    hidden_sizes=(24, 12), activation="maxout", batch_norm="before", dropout=0.1,
    label_smoothing=0.1, schedule="cosine", warmup_epochs=0.5, flip=True, translate=1,
    epochs=2, batch_size=64, precision="mixed_bfloat16",  # as the shipped recipe
)  # fmt: skip
SIZES = {"num_training": 320, "num_validation": 80, "num_test": 60}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("best")
    result = recipe.train_best(out, recipe=TINY, source="synthetic", verbose=False, **SIZES)
    return out, result


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


def test_named_recipes_have_no_convolutions():
    for name, config in recipe.RECIPES.items():
        whitening = None
        if config.whitening != "none":  # a stand-in fit: only the shapes matter here
            units = config.whitening_components or 3072
            whitening = WhiteningFit(
                config.whitening, np.zeros(3072, np.float32), np.zeros((3072, units), np.float32),
                np.ones(3072), 0.1,
            )  # fmt: skip
        assert convolution_layers(build_mlp(config, whitening=whitening)) == [], name


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
    assert calls == [(tmp_path, {**expected, "precision": "float32"})]
    with pytest.raises(SystemExit):
        parser.parse_args(["train-best"])  # --out is required


def test_overrides_are_applied_and_slow_bfloat16_is_announced(monkeypatch, capsys):
    config = recipe._resolve("best", 3, 7, "mixed_bfloat16")
    assert (config.epochs, config.seed, config.precision) == (3, 7, "mixed_bfloat16")
    assert recipe._resolve("best", None, None, "float32").precision == "float32"
    import cifar_lab.devices as devices

    monkeypatch.setattr(devices, "cpu_has_fast_bfloat16", lambda: False)
    monkeypatch.setattr(devices, "visible_devices", lambda kind: [])
    recipe._warn_if_bfloat16_is_slow(config)
    assert "--precision float32" in capsys.readouterr().out
    monkeypatch.setattr(devices, "cpu_has_fast_bfloat16", lambda: True)
    recipe._warn_if_bfloat16_is_slow(config)
    assert capsys.readouterr().out == ""
