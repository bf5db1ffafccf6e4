"""Tests for the Part V plumbing: budgets, settings, stages with your builder, the test split."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import optuna
import pandas as pd
import pytest

import cifar_lab as lab
from cifar_lab.tuning import part5, stages
from cifar_lab.tuning.config import MLPConfig
from cifar_lab.tuning.part5 import MODEL_FILE, RESULTS_FILE
from cifar_lab.tuning.sweeps import SweepSpec
from cifar_lab.tuning.train import train_config


def test_budgets_cover_the_protocol():
    for name in ("quick", "full"):
        budget = part5.part5_budget(name)
        assert len(budget.architectures) >= 5 and len(budget.activations) >= 5
        assert len(budget.learning_rates) >= 2
        assert len(budget.initializers) >= 6 and "zeros" in budget.initializers
        depths = [len(MLPConfig(hidden_sizes=a).hidden_sizes) for a in budget.architectures]
        assert depths.count(1) >= 2 and max(depths) >= 2  # wider and deeper
    assert part5.part5_budget("full").minutes == 60
    assert part5.part5_budget("quick").minutes == 3
    with pytest.raises(ValueError, match="'huge'"):
        part5.part5_budget("huge")


def test_setting_packs_fields_and_expand_unpacks_them():
    packed = stages.setting(hidden_sizes="1024-512", learning_rate=3e-3, flip=True, num_train=None)
    assert packed == "hidden_sizes=1024-512, learning_rate=0.003, flip=true, num_train=null"
    fields = stages.expand({"setting": packed, "activation": "gelu"})
    assert fields == {
        "hidden_sizes": "1024-512", "learning_rate": 0.003, "flip": True, "num_train": None,
        "activation": "gelu",
    }  # fmt: skip
    # one hidden layer stays text, not the number 512; tuples are written as text
    one_layer = stages.setting(hidden_sizes=(512,))
    assert stages.expand({"setting": one_layer}) == {"hidden_sizes": "512"}
    assert stages.expand({"optimizer_setting": "optimizer=sgd, learning_rate=0.03"}) == {
        "optimizer": "sgd", "learning_rate": 0.03,
    }  # fmt: skip
    with pytest.raises(ValueError, match="set twice"):
        stages.expand({"setting": "activation=relu", "activation": "tanh"})
    with pytest.raises(ValueError, match="not like"):
        stages.expand({"setting": "activation relu"})
    with pytest.raises(ValueError, match="may not contain"):
        stages.setting(activation="a,b")
    with pytest.raises(ValueError, match="at least one field"):
        stages.setting()


def test_candidate_configs_of_grids_and_sampled_spaces():
    base = MLPConfig(epochs=1)
    grid = SweepSpec("g", {"setting": ["hidden_sizes=64, learning_rate=0.01"],
                               "activation": ["relu", "tanh"]})  # fmt: skip
    configs = stages.candidate_configs(grid, base)
    assert [(c.hidden_sizes, c.learning_rate, c.activation) for c in configs] == [
        ((64,), 0.01, "relu"), ((64,), 0.01, "tanh"),
    ]  # fmt: skip
    sampled = SweepSpec(
        "s", {"hidden_sizes": ["64", "32-16"],
              "learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)},
        sampler="random", n_trials=5,
    )  # fmt: skip
    rates = {(c.hidden_sizes, c.learning_rate) for c in stages.candidate_configs(sampled, base)}
    assert rates == {((64,), 1e-4), ((64,), 1e-2), ((32, 16), 1e-4), ((32, 16), 1e-2)}
    with pytest.raises(ValueError, match="hidden_size"):
        stages.candidate_configs(SweepSpec("t", {"hidden_size": ["64"]}), base)


def _builder(calls):
    import keras

    def build(config):
        calls.append(config)
        inputs = keras.Input((32, 32, 3))
        x = keras.layers.Flatten()(inputs)
        for units in config.hidden_sizes:
            x = keras.layers.Dense(units, activation=config.activation)(x)
        return keras.Model(inputs, keras.layers.Dense(10)(x))

    return build


def test_run_stage_trains_with_your_builder_and_reuses_only_unchanged_trials(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    data = lab.load_cifar10(200, 50, 50, source="synthetic", verbose=False)
    base = MLPConfig(hidden_sizes=(8,), epochs=1, batch_size=64)
    calls = []
    objective = stages.StageObjective(base, data, build=_builder(calls))
    spec = SweepSpec(
        "stage", {"setting": ["hidden_sizes=8, learning_rate=0.01", "hidden_sizes=4-4"],
                  "activation": ["relu", "tanh"]}, pruner="none",
    )  # fmt: skip
    frame = stages.run_stage(spec, objective, verbose=False)
    assert len(frame) == 4 and len(calls) == 4
    assert sorted(frame["hidden_sizes"]) == ["4-4", "4-4", "8", "8"]
    assert set(frame["learning_rate"]) == {0.01, base.learning_rate}
    assert frame["val_accuracy"].is_monotonic_decreasing
    stages.run_stage(spec, objective, verbose=False)  # same spec, base, builder, data: reused
    assert len(calls) == 4
    other = stages.StageObjective(base.replace(epochs=2), data, build=_builder(calls))
    assert len(stages.run_stage(spec, other, verbose=False)) == 4 and len(calls) == 8
    with pytest.raises(TypeError, match="StageObjective"):
        stages.run_stage(spec, lambda trial, params: 0.0)


def test_top_configs_ranks_distinct_settings():
    frame = pd.DataFrame(
        {
            "hidden_sizes": ["512", "512", "1024", "2048"],
            "activation": ["relu", "relu", "elu", "tanh"],
            "val_accuracy": [0.5, 0.45, 0.4, 0.55],
        }
    )
    top = stages.top_configs(frame, ["hidden_sizes", "activation"], 2)
    assert top == [
        {"hidden_sizes": "2048", "activation": "tanh"},
        {"hidden_sizes": "512", "activation": "relu"},
    ]
    with pytest.raises(ValueError, match="optimizer"):
        stages.top_configs(frame, ["optimizer"], 1)


def test_zeros_initialisation_keeps_hidden_units_identical():
    data = lab.load_cifar10(300, 50, 50, source="synthetic", verbose=False)
    config = MLPConfig(hidden_sizes=(16, 8), initializer="zeros", epochs=1, batch_size=64)
    trained = train_config(config, *list(data)[:4], verbose=False)
    assert part5.hidden_units_identical(trained.model) == 0.0
    random_init = train_config(config.replace(initializer="he_normal"), *list(data)[:4],
                                   verbose=False)  # fmt: skip
    assert part5.hidden_units_identical(random_init.model) > 0.01


def test_train_config_with_your_builder():
    data = lab.load_cifar10(200, 50, 50, source="synthetic", verbose=False)
    calls = []
    config = MLPConfig(hidden_sizes=(6,), activation="tanh", epochs=1, batch_size=64)
    trained = train_config(config, *list(data)[:4], verbose=False, build=_builder(calls))
    assert calls == [config] and trained.model.layers[-1].units == 10
    with pytest.raises(ValueError, match="whitening"):
        train_config(config.replace(whitening="pca"), *list(data)[:4], verbose=False,
                         build=_builder(calls))  # fmt: skip


def _raw_model():
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255),
                             keras.layers.Flatten(), keras.layers.Dense(10)])  # fmt: skip


def test_test_split_logs_every_evaluation(tmp_path):
    import keras

    data = lab.load_cifar10(100, 20, 40, source="synthetic", verbose=False)
    split = part5.TestSplit(data)
    model = _raw_model()
    assert len(split) == 40 and split.take_log() == []
    result = split.evaluate(model)
    raw = data.denormalise(data.X_test)
    predictions = model.predict(raw, verbose=0).argmax(axis=1)
    np.testing.assert_array_equal(result.predictions, predictions)
    assert result.accuracy == pytest.approx(np.mean(predictions == data.y_test))
    np.testing.assert_array_equal(split.labels, data.y_test)
    split.evaluate(model)
    log = split.take_log()
    assert len(log) == 2 and split.take_log() == []
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    assert log[0].fingerprint == part5.weights_fingerprint(reloaded)
    retrained = _raw_model()
    retrained.layers[-1].bias.assign(np.ones(10, np.float32))
    assert log[0].fingerprint != part5.weights_fingerprint(retrained)
    with pytest.raises(ValueError, match=r"\(N, 10\)"):
        split.evaluate(keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                                         keras.layers.Dense(3)]))  # fmt: skip


@pytest.mark.parametrize("described", ["config", "dict"])
def test_save_final_model_writes_what_grading_reads(tmp_path, described):
    import keras

    config = MLPConfig(hidden_sizes=(8,), epochs=1)
    given = config if described == "config" else {"layers": [8], "note": "my own network"}
    model = _raw_model()
    folder = part5.save_final_model(model, given, 0.5, 0.25, tmp_path / "part5")
    results = json.loads((folder / RESULTS_FILE).read_text())
    assert results["val_accuracy"] == 0.5 and results["test_accuracy"] == 0.25
    if described == "config":
        assert MLPConfig.from_dict(results["config"]) == config
    else:
        assert results["config"] == given
    reloaded = keras.models.load_model(folder / MODEL_FILE, safe_mode=True)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))
    # the class report's leaderboard shows it; counted from the weights, not assumed
    counted = sum(int(np.prod(weight.shape)) for weight in reloaded.weights)
    assert results[part5.PARAMETERS_KEY] == counted > 0
    assert "trained_on" not in results  # nothing said about the training: nothing recorded


def test_save_final_model_records_the_images_and_epochs_trained(tmp_path):
    trained = SimpleNamespace(num_images=1234, history=[{"epoch": 1}, {"epoch": 2}])
    config = MLPConfig(hidden_sizes=(8,), epochs=2)
    folder = part5.save_final_model(_raw_model(), config, 0.5, 0.25, tmp_path, trained=trained)
    results = json.loads((folder / RESULTS_FILE).read_text())
    assert results["trained_on"] == {"images": 1234, "epochs": 2}
