"""Part V plumbing: budgets, the ladder for your network, the sealed test split, saving.

Notebook 05 is an open lab: the student writes the network builder, the search
spaces and the final training; this module holds only the bookkeeping around
them, so that no design decision lives here (the sweep stages are in
:mod:`cifar_lab.tuning.stages`; the notebook reaches both as ``lab.*``):

* :class:`Part5Budget` -- how much data and training each stage gets per profile;
* :func:`rung` -- a rung of the time-to-accuracy ladder for your builder;
* :class:`TestSplit` -- the test images behind one method that logs every use;
* :func:`save_final_model` -- ``part5/best_model.keras`` and ``part5/results.json``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifar_lab.metrics import evaluate_model
from cifar_lab.profiles import get_profile
from cifar_lab.results import record
from cifar_lab.tuning.config import MLPConfig
from cifar_lab.tuning.ladder import rung_config
from cifar_lab.tuning.split_record import PROFILE_KEY, SPLIT_KEY, describe_split

# Where notebook 05 saves its outputs, next to the notebooks; `submit` and `grade` read them.
PART5_DIR = "part5"
RESULTS_FILE = "results.json"
MODEL_FILE = "best_model.keras"
PARAMETERS_KEY = "parameters"  # results.json key of the model's parameter count


@dataclass(frozen=True)
class Part5Budget:
    """How much data and training the stages of notebook 05 get in one profile.

    The model answer uses every field; a student's own design may use them or not.

    Attributes:
        architectures: example hidden sizes, e.g. ``"1024-512"``.
        learning_rates: example learning rates to try for every architecture.
        activations: example activations.
        initializers: example kernel initialisers (Keras names).
        coarse_train, coarse_epochs: training images and epochs of the coarse stages.
        fine_train, fine_epochs: the same for regularisation and the ensemble.
        rung_epochs, rung_train: epochs and training images of the ladder rungs that
            :func:`rung` gives (the first full training and the final one); None
            keeps the rung's own epochs and the whole training split.
        ensemble_members: networks in the ensemble.
        top_settings: best settings that go on to the initialiser stage.
        minutes: the wall-time budget of the whole notebook on a 2-core CPU.
    """

    architectures: tuple[str, ...]
    learning_rates: tuple[float, ...]
    activations: tuple[str, ...]
    initializers: tuple[str, ...]
    coarse_train: int
    coarse_epochs: int
    fine_train: int
    fine_epochs: int
    rung_epochs: int | None
    rung_train: int | None
    ensemble_members: int
    top_settings: int
    minutes: int


_ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "tanh", "maxout")
_INITIALIZERS = (  # the reference's list, and LeCun normal
    "uniform", "normal", "lecun_uniform", "lecun_normal", "glorot_uniform", "glorot_normal",
    "he_uniform", "he_normal", "zeros",
)  # fmt: skip
BUDGETS = {
    "full": Part5Budget(
        architectures=("512", "2048", "1024-512", "2048-1024-512", "1024-1024-1024-1024"),
        learning_rates=(1e-4, 3e-4, 1e-3),
        activations=_ACTIVATIONS,
        initializers=_INITIALIZERS,
        coarse_train=10_000,
        coarse_epochs=4,
        fine_train=20_000,
        fine_epochs=8,
        rung_epochs=None,
        rung_train=None,
        ensemble_members=3,
        top_settings=3,
        minutes=60,
    ),
    # quick: every stage and code path runs, on small networks and a few hundred
    # images for one epoch, with the fewest choices the checks accept (65 trials);
    # each trial then takes 2 steps and costs ~1 s of CPU, mostly Keras set-up
    # (run eagerly, see train.EAGER_MAX_STEPS). The rungs see the 2,000 training
    # images 3 times: after 2 epochs (4 steps at batch 1024) a small final network
    # reached 17.6-20.8% validation accuracy, too close to the 14% promise; after 3,
    # 20-21%.
    "quick": Part5Budget(
        architectures=("64", "256", "128-64", "256-128-64", "64-64-64-64"),
        learning_rates=(1e-3, 3e-3),
        activations=("relu", "elu", "gelu", "tanh", "maxout"),
        initializers=("normal", "lecun_normal", "glorot_uniform", "he_normal", "zeros", "uniform"),
        coarse_train=500,
        coarse_epochs=1,
        fine_train=1_000,
        fine_epochs=1,
        rung_epochs=3,
        rung_train=None,
        ensemble_members=2,
        top_settings=1,
        minutes=3,
    ),
}


def part5_budget(profile_name: str) -> Part5Budget:
    """Return the budget for ``"quick"`` or ``"full"``."""
    if profile_name not in BUDGETS:
        raise ValueError(f"no Part V budget for profile {profile_name!r}; use {sorted(BUDGETS)}")
    return BUDGETS[profile_name]


def rung(name: str, budget: Part5Budget, network: MLPConfig | None = None) -> MLPConfig:
    """Ladder rung ``name`` of ``RECIPES`` for your ``build_network``, sized to ``budget``.

    ``RECIPES`` is :data:`cifar_lab.tuning.recipes.RECIPES`.

    Args:
        name: ``"fast"``, ``"medium"``, ``"best"``, ``"long"`` or ``"xl"`` (which
            gives one of the networks that ``train-best`` averages for that rung).
        budget: the profile's budget (its ``rung_epochs`` and ``rung_train``).
        network: your config, whose layers, activation, initialiser, batch norm,
            dropout and L2 replace the rung's; None keeps the rung's network.

    Returns:
        The config to pass to
        :func:`cifar_lab.tuning.train.train_config` ``(..., build=build_network)``.
    """
    if not isinstance(budget, Part5Budget):
        raise TypeError(f"budget must be a Part5Budget, got {type(budget).__name__}")
    return rung_config(
        name, network=network, epochs=budget.rung_epochs, num_train=budget.rung_train
    )


def hidden_units_identical(model) -> float:
    """Largest difference between any two hidden units' incoming weights, per first layer.

    Zero means every unit of the first hidden layer computes the same function:
    the symmetry that all-zeros initialisation never breaks.

    Args:
        model: a Keras model whose first ``Dense`` layer is the first hidden layer.

    Returns:
        ``max |W[:, j] - W[:, 0]|`` over all units j, as a float.
    """
    import keras

    dense = next(layer for layer in _all_layers(model) if isinstance(layer, keras.layers.Dense))
    kernel = np.asarray(dense.kernel)
    return float(np.max(np.abs(kernel - kernel[:, :1])))


def _all_layers(model) -> list:
    import keras

    found = []
    for layer in model.layers:
        found.extend(_all_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return found


# ------------------------------------------------------------------ the test split
def weights_fingerprint(model) -> str:
    """sha256 of all of a model's weights, in order: equal for a model and its saved copy."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight, dtype=np.float32).tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class TestEvaluation:
    """One use of the test split: the model's accuracy, its predicted labels, its weights' hash."""

    __test__ = False  # not a pytest test class
    accuracy: float
    predictions: np.ndarray
    fingerprint: str


class TestSplit:
    """The test images behind one method, :meth:`evaluate`, which logs every use.

    Choices are made on the validation split; the test split is evaluated once,
    on the final model. The log lets a check verify that.

    Args:
        data: the :class:`cifar_lab.data.splits.CIFAR10Splits`; its test images are kept as
            raw uint8 pixels (N, 32, 32, 3), the input of a saved Part V model.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, data) -> None:
        self._X = data.denormalise(data.X_test)
        self._y = np.asarray(data.y_test)
        self._seed = getattr(data, "seed", None)  # with the size, rebuilds the split
        self._log: list[TestEvaluation] = []

    def record(self) -> dict:
        """What results.json says of this split: size, seed, hash (see ``split_record``)."""
        return describe_split(self._X, self._y, self._seed)

    def __len__(self) -> int:
        return len(self._y)

    def __repr__(self) -> str:
        return f"TestSplit({len(self)} images, evaluated {len(self._log)} time(s) unchecked)"

    @property
    def labels(self) -> np.ndarray:
        """The true labels (N,), e.g. for a confusion matrix of the one evaluation."""
        return self._y.copy()

    def evaluate(self, model) -> TestEvaluation:
        """Accuracy of ``model`` (raw 0..255 pixels -> class scores (N, 10)) on the test split."""
        accuracy, predictions = evaluate_model(model, self._X, self._y)  # as the grader scores it
        evaluation = TestEvaluation(
            _SplitAccuracy(accuracy, self), predictions, weights_fingerprint(model)
        )
        self._log.append(evaluation)
        return evaluation

    def take_log(self) -> list[TestEvaluation]:
        """The evaluations since the last call (oldest first); the log starts empty again."""
        log, self._log = self._log, []
        return log


class _SplitAccuracy(float):
    """A test accuracy that remembers its split, for ``save_final_model`` to record."""

    def __new__(cls, value: float, split: TestSplit) -> _SplitAccuracy:
        accuracy = super().__new__(cls, value)
        accuracy.split = split
        return accuracy


def save_final_model(
    raw_model,
    config,
    val_accuracy: float,
    test_accuracy: float,
    folder: str | Path = PART5_DIR,
    *,
    test_split: TestSplit | None = None,
    trained=None,
) -> Path:
    """Write ``part5/best_model.keras`` and ``part5/results.json`` for grading.

    It also publishes the two numbers as the notebook's results
    (:func:`cifar_lab.record`): ``best_val_accuracy`` and, as the headline,
    ``test_accuracy``; the grader compares them with what it re-measures.

    results.json also records the run profile (``grade`` flags quick-profile
    work, see :mod:`cifar_lab.instructor.inspection`) and the test split the
    test accuracy was measured on (size, seed, hash), so the grader re-scores
    the model on the same images.

    Args:
        raw_model: a Keras model that takes raw 0..255 images (N, 32, 32, 3).
        config: the :class:`cifar_lab.tuning.config.MLPConfig` it was trained with, or a dict
            describing your own network and training (JSON-ready values).
        val_accuracy, test_accuracy: measured accuracies in [0, 1].
        folder: destination (created).
        test_split: the split ``test_accuracy`` was measured on; None means the
            :class:`TestSplit` whose ``evaluate`` gave ``test_accuracy`` (not recorded
            when it did not come from one).
        trained: what the model was trained by, recorded as ``trained_on``: the
            :class:`cifar_lab.tuning.train.TrainedMLP` it comes from (its training images and
            epochs), or the ``keras.callbacks.History`` that your ``model.fit``
            returned (its epochs and steps per epoch; ``config`` must then give the
            ``"batch_size"``, see :func:`cifar_lab.tuning.studies.describe_history`);
            None records nothing.

    Returns:
        The folder.
    """
    described = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    trained_on = None if trained is None else _trained_on(trained, described)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    raw_model.save(out / MODEL_FILE)
    results = {
        "val_accuracy": float(val_accuracy),
        "test_accuracy": float(test_accuracy),
        "config": described,
        # the profile the notebook runs in (its lab.get_profile()): quick under nbgrader too
        PROFILE_KEY: get_profile().name,
        PARAMETERS_KEY: int(raw_model.count_params()),  # the class report's leaderboard
    }
    if test_split is None:
        test_split = getattr(test_accuracy, "split", None)
    if test_split is not None:
        results[SPLIT_KEY] = test_split.record()
    if trained_on is not None:  # what the network saw, next to the recipe in "config"
        results["trained_on"] = trained_on
    (out / RESULTS_FILE).write_text(json.dumps(results, indent=2))
    record("best_val_accuracy", float(val_accuracy))
    record("test_accuracy", float(test_accuracy), key=True)
    return out


def _trained_on(trained, described: dict) -> dict:
    """The ``trained_on`` record of a TrainedMLP or of a Keras ``History`` (checked first)."""
    if hasattr(trained, "num_images"):
        return {"images": int(trained.num_images), "epochs": len(trained.history)}
    from cifar_lab.tuning.studies import describe_history

    if "batch_size" not in described:
        raise ValueError(
            "trained= is a History, which counts steps, not images: give the fit's "
            'batch size in the config, e.g. {"batch_size": 256, ...}'
        )
    return describe_history(trained, batch_size=described["batch_size"])
