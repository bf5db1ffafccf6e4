"""Tests for the Part V protocol helpers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import cifar_lab as lab
from cifar_lab.tuning import part5
from cifar_lab.tuning.part5 import MODEL_FILE, RESULTS_FILE


def test_budgets_cover_the_protocol():
    for name in ("quick", "full"):
        budget = part5.part5_budget(name)
        assert len(budget.architectures) >= 5 and len(budget.activations) >= 5
    assert part5.part5_budget("full").minutes == 60
    assert part5.part5_budget("quick").minutes == 3
    with pytest.raises(ValueError, match="'huge'"):
        part5.part5_budget("huge")


def test_study_name_changes_with_budget_and_data():
    quick, full = part5.part5_budget("quick"), part5.part5_budget("full")
    name = part5.study_name("architectures", "quick", quick, "synthetic")
    assert name.startswith("part5-quick-") and name.endswith("-architectures")
    assert name == part5.study_name("architectures", "quick", quick, "synthetic")
    assert name != part5.study_name("architectures", "quick", full, "synthetic")
    assert name != part5.study_name("architectures", "quick", quick, "cifar10-jpeg.tgz")


def test_top_configs_ranks_distinct_settings():
    frame = pd.DataFrame(
        {
            "hidden_sizes": ["512", "512", "1024", "2048"],
            "activation": ["relu", "relu", "elu", "tanh"],
            "val_accuracy": [0.5, 0.45, 0.4, 0.55],
        }
    )
    top = part5.top_configs(frame, ["hidden_sizes", "activation"], 2)
    assert top == [
        {"hidden_sizes": "2048", "activation": "tanh"},
        {"hidden_sizes": "512", "activation": "relu"},
    ]
    with pytest.raises(ValueError, match="optimizer"):
        part5.top_configs(frame, ["optimizer"], 1)


def test_zeros_initialisation_keeps_hidden_units_identical():
    data = lab.load_cifar10(300, 50, 50, source="synthetic", verbose=False)
    config = lab.MLPConfig(hidden_sizes=(16, 8), initializer="zeros", epochs=1, batch_size=64)
    trained = lab.train_config(config, *list(data)[:4], verbose=False)
    assert part5.hidden_units_identical(trained.model) == 0.0
    random_init = lab.train_config(config.replace(initializer="he_normal"), *list(data)[:4],
                                   verbose=False)  # fmt: skip
    assert part5.hidden_units_identical(random_init.model) > 0.01


def test_save_final_model_writes_what_grading_reads(tmp_path):
    import keras

    config = lab.MLPConfig(hidden_sizes=(8,), epochs=1)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(10)])  # fmt: skip
    folder = part5.save_final_model(model, config, 0.5, 0.25, tmp_path / "part5")
    results = json.loads((folder / RESULTS_FILE).read_text())
    assert results["val_accuracy"] == 0.5 and results["test_accuracy"] == 0.25
    assert lab.MLPConfig.from_dict(results["config"]) == config
    reloaded = keras.models.load_model(folder / MODEL_FILE, safe_mode=True)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))
