"""Your own Optuna studies (notebook 05): opening, resuming, the checks that read them, the plot.

Every study here is small and generated: trials are added with ``optuna.trial.create_trial``
(or run by a two-line objective), so each check sees exactly the trials a test means.
"""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from cifar_lab.tuning import part5, studies
from cifar_lab.tuning.plots import plot_study

RATE = FloatDistribution(1e-5, 1.0, log=True)


def _study(name: str = "s") -> optuna.Study:
    return optuna.create_study(
        study_name=name, storage=optuna.storages.InMemoryStorage(), direction="maximize"
    )


def _add(study, *, value=0.5, state=TrialState.COMPLETE, user_attrs=None, **params):
    """Add one finished trial with these params (architecture as a categorical)."""
    distributions = {
        name: RATE if name == "learning_rate" else CategoricalDistribution([value_])
        for name, value_ in params.items()
    }
    pruned = state == TrialState.PRUNED
    study.add_trial(
        create_trial(
            params=params,
            distributions=distributions,
            value=value if state == TrialState.COMPLETE else None,
            intermediate_values={0: value} if pruned else None,
            user_attrs=user_attrs or {},
            state=state,
        )
    )


def _grid(study, architectures=("512", "1024-512"), rates=(1e-3, 3e-3)):
    for index, (architecture, rate) in enumerate((a, r) for a in architectures for r in rates):
        _add(study, value=0.3 + index / 100, architecture=architecture, learning_rate=rate)


# ------------------------------------------------------------------ create_study
def test_create_study_is_an_sqlite_file_in_runs_and_resumes(tmp_path):
    runs = tmp_path / "runs"
    study = studies.create_study("arch", runs_dir=runs)
    assert (runs / "arch.db").is_file()
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    study.optimize(lambda trial: trial.suggest_float("learning_rate", 1e-4, 1e-2), n_trials=3)
    again = studies.create_study("arch", runs_dir=runs)  # a second kernel, or a rerun of the cell
    assert len(again.get_trials(states=(TrialState.COMPLETE,))) == 3
    other = studies.create_study("other", runs_dir=runs)  # one file per study
    assert (runs / "other.db").is_file() and other.trials == []
    fresh = studies.create_study("arch", runs_dir=runs, fresh=True)
    assert fresh.trials == []
    # the same sampler seed gives the same first suggestions: a rerun repeats its choices
    first = studies.create_study("seeded", runs_dir=runs).ask().suggest_float("x", 0, 1)
    again = studies.create_study("seeded", runs_dir=runs, fresh=True)
    assert again.ask().suggest_float("x", 0, 1) == first


def test_create_study_fails_the_trials_a_crashed_kernel_left_running(tmp_path, recwarn):
    study = studies.create_study("crash", runs_dir=tmp_path)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    orphan = study.ask()  # started, never told: the kernel died
    orphan.suggest_float("x", 0, 1)
    resumed = studies.create_study("crash", runs_dir=tmp_path)
    states = [trial.state for trial in resumed.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL]
    # nothing on stderr for a trial run by hand (nbgrader zeroes a graded cell that warns)
    assert [str(w.message) for w in recwarn] == []


def test_create_study_validates_before_writing(tmp_path):
    with pytest.raises(ValueError, match="letters, digits"):
        studies.create_study("../escape", runs_dir=tmp_path / "runs")
    with pytest.raises(TypeError, match="must be a str"):
        studies.create_study(3, runs_dir=tmp_path / "runs")
    with pytest.raises(ValueError, match="maximize"):
        studies.create_study("x", runs_dir=tmp_path / "runs", direction="up")
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ reading trials
def test_architecture_and_rate_come_from_params_then_user_attrs():
    study = _study()
    _add(study, architecture="1024-512", learning_rate=1e-3)
    _add(study, user_attrs={"architecture": [1024, 512], "learning_rate": 3e-3}, depth="2")
    _add(study, user_attrs={"architecture": 512}, learning_rate=1e-2)
    _add(study, state=TrialState.PRUNED, architecture="512", learning_rate=1e-3)
    _add(study, state=TrialState.FAIL, architecture="512", learning_rate=5e-1)  # not compared
    _add(study, width="64")  # records neither: skipped
    assert studies.learning_rates_by_architecture(study) == {
        "1024-512": [1e-3, 3e-3],
        "512": [1e-3, 1e-2],
    }
    # a param wins over a user attribute of the same name
    _add(study, user_attrs={"learning_rate": 9.0}, architecture="64", learning_rate=0.1)
    assert studies.learning_rates_by_architecture(study)["64"] == [0.1]


# ------------------------------------------------------------------ the checks
def test_check_trials_counts_completed_trials_only():
    study = _study()
    _grid(study)  # 4 complete
    _add(study, state=TrialState.PRUNED, architecture="512", learning_rate=1e-2)
    _add(study, state=TrialState.FAIL)
    assert studies.check_trials(study, 4) == 4
    with pytest.raises(AssertionError, match=r"at least 5 completed.*4 completed"):
        studies.check_trials(study, 5)
    with pytest.raises(ValueError):
        studies.check_trials(study, 0)


def test_check_learning_rates_passes_two_rates_per_architecture():
    study = _study()
    _grid(study, architectures=("512", "2048", "1024-512"))
    rates = studies.check_learning_rates(study, minimum=2, architectures=3)
    assert rates == {a: [1e-3, 3e-3] for a in ("512", "2048", "1024-512")}


def test_check_learning_rates_fails_one_rate_for_an_architecture():
    study = _study()
    _grid(study)
    _add(study, architecture="2048", learning_rate=1e-3)  # compared at one rate only
    with pytest.raises(AssertionError, match=r"at least 2 learning rates.*'2048': \[0\.001\]"):
        studies.check_learning_rates(study)
    # one architecture at one shared rate: the unfair comparison the check is for
    shared = _study()
    for architecture in ("512", "2048", "1024-512"):
        _add(shared, architecture=architecture, learning_rate=1e-3)
    with pytest.raises(AssertionError, match="at least 2 learning rates"):
        studies.check_learning_rates(shared)


def test_check_learning_rates_fails_too_few_architectures_or_unnamed_trials():
    study = _study()
    _grid(study, architectures=("512",), rates=(1e-3, 1e-2, 1e-1))
    with pytest.raises(AssertionError, match=r"at least 2 architectures.*'512'"):
        studies.check_learning_rates(study, architectures=2)
    _add(study, lr=1e-3, architecture="64")  # "lr" is not the name the checks read
    with pytest.raises(AssertionError, match=r"records its 'architecture'.*trials \[3\]"):
        studies.check_learning_rates(study)
    empty = _study()
    with pytest.raises(AssertionError, match="at least 1 architectures"):
        studies.check_learning_rates(empty)


def _dense(conv: str | None = None):
    import keras

    inputs = keras.Input((32, 32, 3))
    hidden = inputs
    if conv == "top":
        hidden = keras.layers.Conv2D(4, 3, name="sneaky_conv")(hidden)
    if conv == "nested":
        inner = keras.Sequential([keras.layers.DepthwiseConv2D(3, name="inner_conv")])
        hidden = inner(hidden)
    hidden = keras.layers.Dense(16)(keras.layers.Flatten()(hidden))
    return keras.Model(inputs, keras.layers.Dense(10)(hidden))


def test_check_dense_only_finds_convolutions_nested_too():
    studies.check_dense_only(_dense())
    with pytest.raises(AssertionError, match=r"no convolution layers.*sneaky_conv"):
        studies.check_dense_only(_dense("top"))
    with pytest.raises(AssertionError, match="inner_conv"):
        studies.check_dense_only(_dense("nested"))


def _fit(num_images: int, batch_size: int, epochs: int = 2):
    """A tiny raw-pixel model fitted by plain Keras; returns (model, History)."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (num_images, 32, 32, 3)).astype(np.float32)
    y = np.arange(num_images) % 10
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Flatten(), keras.layers.Dense(10)])  # fmt: skip
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
    return model, history


def _saved(tmp_path, num_images, batch_size, recipe=None):
    model, history = _fit(num_images, batch_size)
    recipe = {"optimizer": "adam", "batch_size": batch_size} if recipe is None else recipe
    folder = part5.save_final_model(model, recipe, 0.5, 0.25, tmp_path, trained=history)
    return json.loads((folder / part5.RESULTS_FILE).read_text())


def test_a_keras_history_records_the_images_and_epochs_trained(tmp_path):
    results = _saved(tmp_path, 100, 32)  # 4 steps of 32 per epoch, the last holds 4
    assert results["trained_on"] == {
        "images": 128, "epochs": 2, "steps_per_epoch": 4, "batch_size": 32,
    }  # fmt: skip
    assert studies.check_trained_on_all(results, 100) == results["trained_on"]


def test_check_trained_on_all_fails_a_subset(tmp_path):
    results = _saved(tmp_path, 40, 16)  # the search's 40 images, never retrained on 100
    with pytest.raises(AssertionError, match=r"all 100 training images.*trained on 48 images"):
        studies.check_trained_on_all(results, 100)
    # a TrainedMLP's record counts images exactly: one short is a subset
    with pytest.raises(AssertionError, match="trained on 99 images"):
        studies.check_trained_on_all({"trained_on": {"images": 99, "epochs": 3}}, 100)
    studies.check_trained_on_all({"trained_on": {"images": 100, "epochs": 3}}, 100)


def test_check_trained_on_all_allows_only_a_dropped_remainder():
    record = {"images": 96, "epochs": 1, "steps_per_epoch": 3, "batch_size": 32}
    studies.check_trained_on_all({"trained_on": record}, 100)  # 100 // 32 full batches
    short = {"images": 64, "epochs": 1, "steps_per_epoch": 2, "batch_size": 32}
    with pytest.raises(AssertionError, match="trained on 64 images"):
        studies.check_trained_on_all({"trained_on": short}, 100)
    # a record whose batch size would excuse the missing images must add up
    edited = {"images": 64, "epochs": 1, "steps_per_epoch": 2, "batch_size": 1000}
    with pytest.raises(AssertionError, match="adds up"):
        studies.check_trained_on_all({"trained_on": edited}, 100)


def test_check_trained_on_all_fails_without_a_record(tmp_path):
    with pytest.raises(AssertionError, match="records what the final network was trained on"):
        studies.check_trained_on_all({"val_accuracy": 0.5}, 100)
    with pytest.raises(AssertionError, match="records what"):
        studies.check_trained_on_all({"trained_on": {"images": "all"}}, 100)


def test_a_history_without_the_batch_size_is_refused_before_writing(tmp_path):
    model, history = _fit(20, 10, epochs=1)
    with pytest.raises(ValueError, match="batch size"):
        part5.save_final_model(model, {"optimizer": "adam"}, 0.5, 0.25, tmp_path / "p",
                               trained=history)  # fmt: skip
    assert not (tmp_path / "p").exists()
    with pytest.raises(TypeError, match=r"what model\.fit returned"):
        studies.describe_history({"loss": [1.0]}, batch_size=10)


# ------------------------------------------------------------------ the plot
def test_plot_study_draws_one_line_per_architecture():
    study = _study()
    _grid(study, architectures=("512", "1024-512"), rates=(1e-4, 1e-3, 1e-2))
    _add(study, value=0.2, state=TrialState.PRUNED, architecture="512", learning_rate=3e-3)
    ax = plot_study(study)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"512", "1024-512"}
    assert ax.get_xscale() == "log"
    # each line's points are the best result at each rate, in order of rate
    x, y = lines["512"].get_data()
    assert list(x) == [1e-4, 1e-3, 3e-3, 1e-2]
    assert y[2] == pytest.approx(0.2)
    assert len(ax.collections) == 1  # the pruned trial, drawn hollow


def test_plot_study_of_a_categorical_value():
    study = _study()
    for activation, value in (("relu", 0.4), ("tanh", 0.3), ("relu", 0.45)):
        _add(study, value=value, activation=activation, architecture="512")
    ax = plot_study(study, x="activation", group=None)
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["relu", "tanh"]
    (line,) = ax.get_lines()
    np.testing.assert_allclose(line.get_ydata(), [0.45, 0.3])
    with pytest.raises(ValueError, match="records 'dropout'"):
        plot_study(study, x="dropout")
