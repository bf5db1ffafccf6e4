"""One rule for bad arguments: TypeError for a wrong type, ValueError for a wrong value.

The unit tests pin down :mod:`cifar_lab.checks`; the parametrised tests call
the public functions with a float, a bool or a str where an int belongs (and
a non-number where a number belongs), and with a zero or negative value, and
expect the rule's exception naming the argument. Every call is tiny, and the
callbacks that would start real work raise, so an argument checked too late
fails the test instead of training.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pytest

import cifar_lab as lab
from cifar_lab import checks
from cifar_lab.instructor.grading import GradeSettings
from cifar_lab.instructor.rerun import RerunSettings
from cifar_lab.metrics import confusion_matrix
from cifar_lab.models import TwoLayerFC, compile_model, two_layer_sequential
from cifar_lab.tuning.augment import AugmentedBatches, augment_batch
from cifar_lab.tuning.config import MLPConfig
from cifar_lab.tuning.ensembles import predict_probabilities, train_ensemble
from cifar_lab.tuning.layers import Maxout
from cifar_lab.tuning.optimizers import build_schedule
from cifar_lab.tuning.plots import plot_top_curves
from cifar_lab.tuning.recipes import train_best
from cifar_lab.tuning.sweeps import SweepSpec, run_workers
from cifar_lab.tuning.whitening import fit_whitening

# ---------------------------------------------------------------- checks.py itself


def test_check_int_accepts_python_and_numpy_ints():
    assert checks.check_int("n", 3) == 3
    value = checks.check_int("n", np.int64(3), minimum=1, maximum=3)
    assert value == 3 and type(value) is int


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (2.0, r"2\.0 \(float\); write 2"),
        (2.5, r"2\.5 \(float\)$"),
        (True, r"True \(bool\)"),
        (np.bool_(False), r"False \(bool\)"),
        ("3", r"'3' \(str\); write 3 without quotes"),
        (None, r"None \(NoneType\)"),
        (np.float32(4.0), r"4\.0 \(float32\); write 4"),
    ],
)
def test_check_int_rejects_other_types_with_the_fix(value, shown):
    with pytest.raises(TypeError, match=r"^num_epochs must be an int, got " + shown):
        checks.check_int("num_epochs", value)


def test_check_int_bounds_are_inclusive_and_named():
    assert checks.check_int("k", 1, minimum=1, maximum=1) == 1
    with pytest.raises(ValueError, match=r"^num_epochs must be >= 1, got 0$"):
        checks.check_int("num_epochs", 0, minimum=1)
    with pytest.raises(ValueError, match=r"^translate must be >= 0 and <= 31, got 32$"):
        checks.check_int("translate", 32, minimum=0, maximum=31)
    with pytest.raises(ValueError, match=r"^k must be <= 3, got 4$"):
        checks.check_int("k", np.int32(4), maximum=3)  # shown as 4, not np.int32(4)


def test_check_optional_int_passes_none_and_mentions_it():
    assert checks.check_optional_int("num_test", None, minimum=1) is None
    assert checks.check_optional_int("num_test", 5, minimum=1) == 5
    with pytest.raises(TypeError, match=r"^num_test must be an int or None, got 5\.0"):
        checks.check_optional_int("num_test", 5.0)
    with pytest.raises(ValueError, match=r"^num_test must be >= 1, got 0$"):
        checks.check_optional_int("num_test", 0, minimum=1)


def test_check_number_accepts_ints_and_numpy_floats():
    assert checks.check_number("lr", 1) == 1.0
    value = checks.check_number("lr", np.float32(0.5), minimum=0, minimum_inclusive=False)
    assert value == 0.5 and type(value) is float


@pytest.mark.parametrize("value", [True, "0.1", None, [0.1], np.array([0.1])])
def test_check_number_rejects_non_numbers(value):
    with pytest.raises(TypeError, match=r"^learning_rate must be a number, got "):
        checks.check_number("learning_rate", value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float64("nan")])
def test_check_number_rejects_non_finite_values(value):
    with pytest.raises(ValueError, match=r"^learning_rate must be a finite number, got"):
        checks.check_number("learning_rate", value)


def test_check_number_bounds_inclusive_or_not():
    assert checks.check_number("dropout", 0.0, minimum=0.0) == 0.0
    with pytest.raises(ValueError, match=r"^learning_rate must be > 0, got 0$"):
        checks.check_number("learning_rate", 0, minimum=0, minimum_inclusive=False)
    with pytest.raises(ValueError, match=r"^tolerance must be >= 0 and < 1, got 1\.0$"):
        checks.check_number("tolerance", 1.0, minimum=0, maximum=1, maximum_inclusive=False)
    with pytest.raises(ValueError, match=r"^dropout must be <= 0\.99, got 1\.5$"):
        checks.check_number("dropout", 1.5, maximum=0.99)


def test_check_bool_accepts_only_bools():
    assert checks.check_bool("flip", True) is True
    assert checks.check_bool("flip", np.bool_(False)) is False
    for value in (1, 0, "yes", None):
        with pytest.raises(TypeError, match=r"^flip must be True or False, got"):
            checks.check_bool("flip", value)


def test_check_choice_separates_type_and_value():
    assert checks.check_choice("method", "pca", ("pca", "zca")) == "pca"
    with pytest.raises(ValueError, match=r"^unknown method 'PCA'; choose from 'pca', 'zca'$"):
        checks.check_choice("method", "PCA", ("pca", "zca"))
    with pytest.raises(TypeError, match=r"^method must be a str, one of 'pca', 'zca'; got 1"):
        checks.check_choice("method", 1, ("pca", "zca"))


def test_check_seed_is_a_non_negative_int():
    assert checks.check_seed("seed", 0) == 0
    with pytest.raises(ValueError, match=r"^seed must be >= 0, got -1$"):
        checks.check_seed("seed", -1)
    with pytest.raises(TypeError, match=r"^seed must be an int, got '0' \(str\)"):
        checks.check_seed("seed", "0")


def test_long_values_are_shortened_in_messages():
    with pytest.raises(TypeError) as caught:
        checks.check_int("batch_size", list(range(1000)))
    assert len(str(caught.value)) < 120 and "(list)" in str(caught.value)


# ---------------------------------------------------------------- the rule, across the package


def _never(*args: Any) -> Any:
    raise AssertionError("work started before the arguments were checked")


X4 = np.zeros((4, 2), np.float32)
Y4 = np.zeros(4, np.int32)
IMAGES = np.zeros((4, 8, 8, 3), np.float32)
CIFAR_X = np.zeros((4, 32, 32, 3), np.float32)
NOWHERE = "/nonexistent/cifar-10"  # a source that would fail differently if it were read


class Case(NamedTuple):
    """``call(value)`` passes ``value`` as the argument ``name``; ``bad`` breaks its range."""

    name: str
    call: Callable[[Any], Any]
    bad: Any


def _fit_whitening(components):
    return fit_whitening(X4 + np.arange(4)[:, None], components=components)


def _train_part2(num_epochs=1, print_every=1, seed=None, learning_rate=1e-2):
    return lab.train_part2(
        lab.two_layer_fc,
        _never,
        learning_rate,
        [],
        [],
        num_epochs,
        print_every,
        step_fn=_never,
        seed=seed,
        verbose=False,
    )


def _train_part34(num_epochs=1, print_every=1, seed=None):
    return lab.train_part34(
        _never, _never, [], [], num_epochs, print_every=print_every, seed=seed, verbose=False
    )


INT_CASES = [
    Case("batch_size", lambda v: lab.Dataset(X4, Y4, v), 0),
    Case("seed", lambda v: lab.Dataset(X4, Y4, 2, shuffle=True, seed=v), -1),
    Case("seed", lambda v: lab.set_seed(v), -1),
    Case("shape[1]", lambda v: lab.kaiming_normal((3, v)), 0),
    Case("seed", lambda v: lab.kaiming_normal((3, 2), seed=v), -1),
    Case("hidden_size", lambda v: TwoLayerFC(v, 10), 0),
    Case("num_classes", lambda v: two_layer_sequential((4,), 8, v), 0),
    Case("input_shape[0]", lambda v: lab.two_layer_functional((v,), 8, 10), 0),
    Case("seed", lambda v: two_layer_sequential((4,), 8, 10, seed=v), -1),
    Case("num_epochs", lambda v: _train_part2(num_epochs=v), 0),
    Case("print_every", lambda v: _train_part2(print_every=v), 0),
    Case("seed", lambda v: _train_part2(seed=v), -1),
    Case("num_epochs", lambda v: _train_part34(num_epochs=v), 0),
    Case("print_every", lambda v: _train_part34(print_every=v), 0),
    Case("seed", lambda v: _train_part34(seed=v), -1),
    Case("num_training", lambda v: lab.load_cifar10(v, source=NOWHERE), 0),
    Case("num_validation", lambda v: lab.load_cifar10(10, v, source=NOWHERE), -1),
    Case("num_test", lambda v: lab.load_cifar10(10, 10, v, source=NOWHERE), -1),
    Case("seed", lambda v: lab.load_cifar10(10, 10, 10, source=NOWHERE, seed=v), -1),
    Case("num_classes", lambda v: confusion_matrix(Y4, Y4, v), 0),
    Case(
        "samples_per_class",
        lambda v: lab.show_class_samples(
            np.zeros((4, 32, 32, 3), np.uint8), Y4, ["a"], samples_per_class=v
        ),
        0,
    ),
    Case(
        "num_images",
        lambda v: lab.show_misclassified(
            np.zeros((4, 32, 32, 3), np.uint8), Y4, Y4, ["a"], num_images=v
        ),
        0,
    ),
    Case("epochs", lambda v: MLPConfig(epochs=v), 0),
    Case("batch_size", lambda v: MLPConfig(batch_size=v), 0),
    Case("translate", lambda v: MLPConfig(translate=v), -1),
    Case("maxout_pieces", lambda v: MLPConfig(maxout_pieces=v), 1),
    Case("seed", lambda v: MLPConfig(seed=v), -1),
    Case("num_train", lambda v: MLPConfig(num_train=v), 0),
    Case("whitening_components", lambda v: MLPConfig(whitening="pca", whitening_components=v), 0),
    Case("hidden_sizes[1]", lambda v: MLPConfig(hidden_sizes=(8, v)), 0),
    Case("translate", lambda v: augment_batch(IMAGES, np.random.default_rng(0), translate=v), -1),
    Case("batch_size", lambda v: AugmentedBatches(IMAGES, Y4, v), 0),
    Case("seed", lambda v: AugmentedBatches(IMAGES, Y4, 2, seed=v), -1),
    Case("components", _fit_whitening, 0),
    Case("pieces", lambda v: Maxout(v), 1),
    Case(
        "members",
        lambda v: train_ensemble(MLPConfig(), CIFAR_X, Y4, CIFAR_X, Y4, members=v, verbose=False),
        0,
    ),
    Case("batch_size", lambda v: predict_probabilities(None, X4, batch_size=v), 0),
    Case("steps_per_epoch", lambda v: build_schedule(MLPConfig(), v), 0),
    Case("n_trials", lambda v: SweepSpec("s", {"x": [1]}, sampler="random", n_trials=v), 0),
    Case("warmup_steps", lambda v: SweepSpec("s", {"x": [1]}, warmup_steps=v), -1),
    Case("startup_trials", lambda v: SweepSpec("s", {"x": [1]}, startup_trials=v), -1),
    Case("seed", lambda v: SweepSpec("s", {"x": [1]}, seed=v), -1),
    Case(
        "processes",
        lambda v: run_workers(
            SweepSpec("s", {"x": [1]}), _never, storage="sqlite://", processes=v
        ),
        0,
    ),
    Case("top", lambda v: plot_top_curves(None, v), 0),
    Case(
        "num_training",
        lambda v: train_best("unused", num_training=v, source=NOWHERE, verbose=False),
        0,
    ),
    Case("epochs", lambda v: train_best("unused", epochs=v, verbose=False), 0),
    Case("cell_timeout", lambda v: RerunSettings(cell_timeout=v), 0),
    Case("max_file_bytes", lambda v: GradeSettings(max_file_bytes=v), 0),
    Case("num_test", lambda v: GradeSettings(num_test=v), 0),
]

NUMBER_CASES = [
    Case("learning_rate", lambda v: _train_part2(learning_rate=v), 0.0),
    Case("learning_rate", lambda v: MLPConfig(learning_rate=v), 0.0),
    Case("dropout", lambda v: MLPConfig(dropout=v), 1.0),
    Case("momentum", lambda v: MLPConfig(momentum=v), -0.5),
    Case(
        "noise_std",
        lambda v: augment_batch(IMAGES, np.random.default_rng(0), noise_std=v),
        -0.1,
    ),
    Case("epsilon", lambda v: fit_whitening(X4, epsilon=v), 0.0),
    Case("tolerance", lambda v: RerunSettings(tolerance=v), 1.0),
    Case("tolerance", lambda v: GradeSettings(tolerance=v), -0.1),
]


def _ids(cases: list[Case]) -> list[str]:
    return [f"{index}-{case.name}" for index, case in enumerate(cases)]


@pytest.mark.parametrize("case", INT_CASES, ids=_ids(INT_CASES))
@pytest.mark.parametrize("wrong", [2.0, True, "3"], ids=["float", "bool", "str"])
def test_a_non_int_where_an_int_belongs_is_a_type_error(case, wrong, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # train_best creates its output folder
    with pytest.raises(TypeError, match=rf"^{re.escape(case.name)} must be an int"):
        case.call(wrong)


@pytest.mark.parametrize("case", INT_CASES, ids=_ids(INT_CASES))
def test_an_int_out_of_range_is_a_value_error(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=rf"{re.escape(case.name)} must be >=.* got {case.bad}$"):
        case.call(case.bad)


@pytest.mark.parametrize("case", NUMBER_CASES, ids=_ids(NUMBER_CASES))
@pytest.mark.parametrize("wrong", [True, "0.1", None], ids=["bool", "str", "none"])
def test_a_non_number_where_a_number_belongs_is_a_type_error(case, wrong):
    with pytest.raises(TypeError, match=rf"^{re.escape(case.name)} must be a number"):
        case.call(wrong)


@pytest.mark.parametrize("case", NUMBER_CASES, ids=_ids(NUMBER_CASES))
@pytest.mark.parametrize("bad", ["range", math.nan, math.inf], ids=["range", "nan", "inf"])
def test_a_number_out_of_range_or_not_finite_is_a_value_error(case, bad):
    with pytest.raises(ValueError, match=rf"^{re.escape(case.name)} must be "):
        case.call(case.bad if bad == "range" else bad)


def test_the_same_slip_gets_the_same_answer_everywhere():
    """The issue's examples: these used to disagree (TypeError here, ValueError there)."""
    for call in (
        lambda: lab.Dataset(X4, Y4, 2.0),
        lambda: lab.kaiming_normal((3, 2.0)),
        lambda: lab.set_seed("0"),
        lambda: lab.Dataset(X4, Y4, 2, seed="0"),
        lambda: MLPConfig(epochs=2.0),
    ):
        with pytest.raises(TypeError, match="must be an int"):
            call()


def test_check_bool_or_auto():
    from cifar_lab.checks import check_bool_or_auto

    assert check_bool_or_auto("jit_compile", "auto") == "auto"
    assert check_bool_or_auto("jit_compile", np.bool_(True)) is True
    with pytest.raises(TypeError, match="jit_compile must be True, False or 'auto', got 1"):
        check_bool_or_auto("jit_compile", 1)
    with pytest.raises(ValueError, match="unknown jit_compile 'yes'"):
        check_bool_or_auto("jit_compile", "yes")
    with pytest.raises(TypeError, match="jit_compile"):
        compile_model(None, None, jit_compile=1.0)


def test_check_pattern_wants_a_str_that_matches_in_full():
    import re

    from cifar_lab.checks import check_pattern

    word = re.compile(r"[a-z]+")
    assert check_pattern("name", "abc", word, "lower-case letters") == "abc"
    with pytest.raises(TypeError, match="name must be a str"):
        check_pattern("name", 3, word, "lower-case letters")
    with pytest.raises(ValueError, match="use lower-case letters"):
        check_pattern("name", "abc1", word, "lower-case letters")  # a prefix match is not enough
