"""Part V support: per-profile budgets, picking winners, and saving the final model.

The tuning notebook keeps its experiments visible; this module holds the
bookkeeping around them so the notebook reads like the protocol.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Where notebook 05 saves its outputs, next to the notebooks; `submit` and `grade` read them.
PART5_DIR = "part5"
RESULTS_FILE = "results.json"
MODEL_FILE = "best_model.keras"


@dataclass(frozen=True)
class Part5Budget:
    """How much data and training each stage of the tuning protocol gets.

    Attributes:
        architectures: hidden sizes tried in stage 1, e.g. ``"1024-512"``.
        activations: activations tried in stage 1.
        coarse_train, coarse_epochs: training images and epochs of stages 1-3.
        fine_train, fine_epochs: the same for stages 4-5 (regularisation, ensemble).
        final_epochs: epochs of the final retraining on the whole training split.
        ensemble_members: networks in the stage-5 ensemble.
        initializer_settings: best stage-1 settings that try every initialiser (3).
        optimizer_settings: best stage-2 settings crossed with optimisers and batch norm (2).
        minutes: the stated wall-time budget on a 2-core CPU.
    """

    architectures: tuple[str, ...]
    activations: tuple[str, ...]
    coarse_train: int
    coarse_epochs: int
    fine_train: int
    fine_epochs: int
    final_epochs: int
    ensemble_members: int
    initializer_settings: int
    optimizer_settings: int
    minutes: int


_ARCHITECTURES = ("512", "2048", "1024-512", "2048-1024-512", "1024-1024-1024-1024")
_ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "tanh", "maxout")
BUDGETS = {
    "full": Part5Budget(_ARCHITECTURES, _ACTIVATIONS, 10_000, 4, 20_000, 8, 15, 3, 3, 2, 60),
    # quick: every stage and code path runs, on small networks and a few hundred
    # images for one epoch; each trial then costs ~1-2 s, mostly Keras set-up, so
    # stages 2-3 follow only the single best setting.
    "quick": Part5Budget(
        ("64", "256", "128-64", "256-128-64", "64-64-64-64"),
        _ACTIVATIONS,
        500,
        1,
        1_000,
        1,
        1,
        2,
        1,
        1,
        3,
    ),
}


def part5_budget(profile_name: str) -> Part5Budget:
    """Return the budget for ``"quick"`` or ``"full"``."""
    if profile_name not in BUDGETS:
        raise ValueError(f"no Part V budget for profile {profile_name!r}; use {sorted(BUDGETS)}")
    return BUDGETS[profile_name]


def study_name(stage: str, profile_name: str, budget: Part5Budget, data_source: str) -> str:
    """Name a stage's study so a resumed run only reuses trials made under the same setup.

    The name carries a short hash of the budget and the data source: changing
    either starts a fresh study instead of mixing incomparable trials.

    Args:
        stage: e.g. ``"architectures"``.
        profile_name: ``"quick"`` or ``"full"``.
        budget: the active :class:`Part5Budget`.
        data_source: ``CIFAR10Splits.source``.

    Returns:
        A study name such as ``"part5-full-3f2a9c1b-architectures"``.
    """
    digest = hashlib.sha256(f"{budget!r}|{data_source}".encode()).hexdigest()[:8]
    return f"part5-{profile_name}-{digest}-{stage}"


def top_configs(frame, columns: list[str], count: int) -> list[dict[str, Any]]:
    """The ``count`` best distinct settings of ``columns`` in a sweep's results.

    Args:
        frame: a DataFrame from :func:`cifar_lab.results_frame` (any order).
        columns: the parameters that define a setting, e.g. ``["hidden_sizes", "activation"]``.
        count: how many settings to return.

    Returns:
        Dicts of column -> value, best validation accuracy first.
    """
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"results have no columns {missing}; available: {list(frame.columns)}")
    ranked = frame.sort_values("val_accuracy", ascending=False).drop_duplicates(columns)
    return [{c: _plain(row[c]) for c in columns} for _, row in ranked.head(count).iterrows()]


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


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

    dense = next(layer for layer in model.layers if isinstance(layer, keras.layers.Dense))
    kernel = np.asarray(dense.kernel)
    return float(np.max(np.abs(kernel - kernel[:, :1])))


def save_final_model(
    raw_model, config, val_accuracy: float, test_accuracy: float, folder: str | Path = PART5_DIR
) -> Path:
    """Write ``part5/best_model.keras`` and ``part5/results.json`` for grading.

    Args:
        raw_model: a Keras model that takes raw 0..255 images (N, 32, 32, 3).
        config: the :class:`cifar_lab.MLPConfig` it was trained with.
        val_accuracy, test_accuracy: measured accuracies in [0, 1].
        folder: destination (created).

    Returns:
        The folder.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    raw_model.save(out / MODEL_FILE)
    results = {
        "val_accuracy": float(val_accuracy),
        "test_accuracy": float(test_accuracy),
        "config": config.to_dict(),
    }
    (out / RESULTS_FILE).write_text(json.dumps(results, indent=2))
    return out
