"""The ladder rungs as recipes for a student's own network (tuning/ladder.py, part5.rung)."""

from __future__ import annotations

import dataclasses

import pytest

from cifar_lab.tuning import part5
from cifar_lab.tuning.config import MLPConfig
from cifar_lab.tuning.ladder import NETWORK_FIELDS, rung_config
from cifar_lab.tuning.recipes import RECIPES, train_best

STUDENT = MLPConfig(
    hidden_sizes="512-256", activation="gelu", initializer="lecun_uniform", batch_norm="after",
    dropout=0.2, l2=1e-4, optimizer="sgd", learning_rate=0.5, epochs=3, batch_size=64, flip=False,
)  # fmt: skip
ALL_FIELDS = [field.name for field in dataclasses.fields(MLPConfig)]


def test_the_ladder_has_its_four_named_rungs_and_best_stays_the_default():
    assert {"fast", "medium", "best", "long"} <= set(RECIPES)
    epochs = [RECIPES[name].epochs for name in ("fast", "medium", "best", "long")]
    assert epochs == sorted(epochs) and len(set(epochs)) == 4
    assert train_best.__kwdefaults__["recipe"] == "best"


@pytest.mark.parametrize("rung", sorted(RECIPES))
def test_rung_keeps_the_recipe_but_drops_whitening_and_bfloat16(rung):
    config = rung_config(rung)
    recipe = RECIPES[rung]
    assert config.whitening == "none" and config.precision == "float32"
    assert config.num_train is None and not config.augment_whitened
    for field in ALL_FIELDS:
        if field not in ("whitening", "augment_whitened", "precision", "num_train"):
            assert getattr(config, field) == getattr(recipe, field), field


def test_rung_takes_the_network_from_your_config_and_the_training_from_the_rung():
    config = rung_config("medium", network=STUDENT)
    for field in NETWORK_FIELDS:
        assert getattr(config, field) == getattr(STUDENT, field), field
    for field in ("optimizer", "learning_rate", "schedule", "epochs", "batch_size", "flip",
                  "translate", "label_smoothing", "weight_decay"):  # fmt: skip
        assert getattr(config, field) == getattr(RECIPES["medium"], field), field
    assert config.hidden_sizes == (512, 256) and config.epochs == 44


def test_fewer_epochs_shrink_the_warmup_in_proportion():
    fast = RECIPES["fast"]
    config = rung_config("fast", epochs=2, num_train=300)
    assert config.epochs == 2 and config.num_train == 300
    assert config.warmup_epochs == pytest.approx(fast.warmup_epochs * 2 / fast.epochs)
    assert rung_config("fast", epochs=fast.epochs * 3).warmup_epochs == fast.warmup_epochs


def test_part5_rung_follows_the_profile_budget():
    full, quick = part5.part5_budget("full"), part5.part5_budget("quick")
    assert part5.rung("fast", full) == rung_config("fast")
    assert part5.rung("medium", quick, network=STUDENT) == rung_config(
        "medium", network=STUDENT, epochs=quick.rung_epochs, num_train=quick.rung_train
    )
    assert part5.rung("medium", quick).epochs == quick.rung_epochs < RECIPES["medium"].epochs


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match=r"'fastest'.*choose from"):
        rung_config("fastest")
    with pytest.raises(TypeError, match=r"network must be an MLPConfig.*dict"):
        rung_config("fast", network={"hidden_sizes": "512"})
    for epochs in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="epochs must be a positive int"):
            rung_config("fast", epochs=epochs)
    with pytest.raises(TypeError, match=r"budget must be a Part5Budget.*str"):
        part5.rung("fast", "quick")
