"""Sweep results: a pandas DataFrame, four plots, and optional TensorBoard HParams logs.

Example (every name is imported from this module; notebook 05 reaches
:func:`plot_study` as ``lab.plot_study``)::

    frame = results_frame(study)
    plot_accuracy_heatmap(frame, rows="hidden_sizes", columns="activation")
    plot_top_curves(frame, top=5)
    plot_optimizer_batchnorm(frame)
    plot_study(study, x="learning_rate", group="architecture")  # any Optuna study

Each plot returns its matplotlib Axes. Without ``ax=`` it draws a new figure,
which appears once in Jupyter like the course's other plots (see
:func:`cifar_lab.plots.display_once`); save it with ``ax.figure.savefig(path)``.
With ``ax=`` it draws on your figure, which your cell shows as usual.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cifar_lab.checks import check_int
from cifar_lab.plots import display_once

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from matplotlib.axes import Axes

_STATES = ("COMPLETE", "PRUNED")


def results_frame(study: optuna.Study, *, states: tuple[str, ...] = _STATES) -> pd.DataFrame:
    """One row per trial: its config, validation accuracy, curves and wall time.

    Args:
        study: an Optuna study run by :mod:`cifar_lab.tuning.sweeps`.
        states: trial states to keep (names of ``optuna.trial.TrialState``).

    Returns:
        A DataFrame sorted by val_accuracy (best first) with columns ``trial``,
        ``state``, ``val_accuracy`` (final value, or the last reported one for a
        pruned trial), ``epochs_run``, ``wall_time_s``, ``history`` (list of
        per-epoch dicts), every config field (``hidden_sizes`` as text such as
        ``"512-256"``) and every swept parameter.
    """
    import pandas as pd

    rows = []
    for trial in study.get_trials(deepcopy=False):
        if trial.state.name not in states:
            continue
        history = trial.user_attrs.get("history", [])
        row = {
            "trial": trial.number,
            "state": trial.state.name,
            "val_accuracy": _final_value(trial),
            "epochs_run": len(history) or len(trial.intermediate_values),
            "wall_time_s": trial.user_attrs.get("wall_time_s", np.nan),
        }
        row.update(
            {key: _as_cell(value) for key, value in trial.user_attrs.get("config", {}).items()}
        )
        row.update({key: _as_cell(value) for key, value in trial.params.items()})
        row["history"] = history
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values("val_accuracy", ascending=False, ignore_index=True)


def _final_value(trial: optuna.trial.FrozenTrial) -> float:
    from cifar_lab.tuning.studies import final_value  # Optuna, loaded only for a study

    return final_value(trial)


def _as_cell(value: Any) -> Any:
    if isinstance(value, (list, tuple)):  # hidden sizes: "512-256", the form sweeps use
        return "-".join(str(item) for item in value) or "none"
    return value


def plot_accuracy_heatmap(
    frame: pd.DataFrame,
    rows: str = "hidden_sizes",
    columns: str = "activation",
    *,
    value: str = "val_accuracy",
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Heat map of the best ``value`` for every (rows, columns) pair, annotated.

    Args:
        frame: from :func:`results_frame`.
        rows, columns: column names to cross, e.g. architecture x activation.
        value: the column to show (best over the trials in a cell).
        ax: axes to draw on (default: a new figure).
        title: plot title.

    Returns:
        The matplotlib Axes (``ax.figure`` is its Figure).
    """
    import matplotlib.pyplot as plt

    for name in (rows, columns, value):
        if name not in frame.columns:
            raise ValueError(
                f"column {name!r} is not in the frame; columns: {list(frame.columns)}"
            )
    table = frame.pivot_table(index=rows, columns=columns, values=value, aggfunc="max")
    own_figure = ax is None
    if own_figure:
        _, ax = plt.subplots(figsize=(1.2 * len(table.columns) + 3, 0.6 * len(table) + 2))
    image = ax.imshow(table.to_numpy(dtype=float), cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(table.columns)), [str(c) for c in table.columns], rotation=45)
    ax.set_yticks(range(len(table.index)), [str(r) for r in table.index])
    ax.set_xlabel(columns)
    ax.set_ylabel(rows)
    for (i, j), cell in np.ndenumerate(table.to_numpy(dtype=float)):
        if np.isfinite(cell):
            ax.text(j, i, f"{cell:.3f}", ha="center", va="center", color="w", fontsize=8)
    ax.figure.colorbar(image, ax=ax, label=value)
    ax.set_title(title or f"best {value}: {rows} x {columns}")
    return _finish(ax, own_figure)


def plot_optimizer_batchnorm(frame: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Heat map of the best validation accuracy, optimiser x batch-norm placement."""
    return plot_accuracy_heatmap(frame, "optimizer", "batch_norm", ax=ax)


def plot_top_curves(
    frame: pd.DataFrame,
    top: int = 5,
    *,
    metric: str = "val_accuracy",
    ax: Axes | None = None,
) -> Axes:
    """Learning curves (``metric`` per epoch) of the ``top`` best trials.

    Args:
        frame: from :func:`results_frame` (sorted best first).
        top: how many trials to draw.
        metric: a key of the per-epoch records, e.g. ``"val_accuracy"`` or ``"loss"``.
        ax: axes to draw on (default: a new figure).

    Returns:
        The matplotlib Axes (``ax.figure`` is its Figure).
    """
    import matplotlib.pyplot as plt

    top = check_int("top", top, minimum=1)
    own_figure = ax is None
    if own_figure:
        _, ax = plt.subplots(figsize=(7, 4))
    for _, row in frame.head(top).iterrows():
        history = [record for record in row["history"] if metric in record]
        epochs = [record["epoch"] for record in history]
        ax.plot(epochs, [record[metric] for record in history], marker="o",
                label=f"trial {row['trial']} ({row['val_accuracy']:.3f})")  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"top {top} trials")
    ax.legend(fontsize=8)
    return _finish(ax, own_figure)


def plot_study(
    study: optuna.Study,
    x: str = "learning_rate",
    group: str = "architecture",
    *,
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Each finished trial's result against one of its values, one series per group.

    Reads a trial's values as the checks do (``trial.params``, then
    ``trial.user_attrs``; see :mod:`cifar_lab.tuning.studies`). A numeric ``x``
    whose values span more than a factor of 10 (learning rates) is drawn on a
    log axis; a text one (activations) as categories. Pruned trials are drawn
    hollow, at the last value they reported.

    Args:
        study: an Optuna study.
        x: the trial value along the x axis.
        group: the trial value whose trials share a line (architecture); None for one.
        ax: axes to draw on (default: a new figure).
        title: plot title (default: the study's name).

    Returns:
        The matplotlib Axes (``ax.figure`` is its Figure).
    """
    import matplotlib.pyplot as plt
    import optuna

    from cifar_lab.tuning.studies import COMPARED_STATES, architecture_of, trial_value

    def value_of(trial, key):
        return architecture_of(trial) if key == "architecture" else trial_value(trial, key)

    points = []  # (group, x, result, pruned)
    for trial in study.get_trials(deepcopy=False, states=COMPARED_STATES):
        position = value_of(trial, x)
        result = _final_value(trial)
        if position is not None and np.isfinite(result):
            label = "all trials" if group is None else str(value_of(trial, group))
            points.append((label, position, result, trial.state.name == "PRUNED"))
    if not points:
        raise ValueError(f"no finished trial of {study.study_name!r} records {x!r}")
    numeric = all(isinstance(p[1], (int, float)) and not isinstance(p[1], bool) for p in points)
    categories = [] if numeric else sorted({str(p[1]) for p in points})
    own_figure = ax is None
    if own_figure:
        _, ax = plt.subplots(figsize=(7, 4))
    for label in sorted({p[0] for p in points}):
        mine = sorted(
            (p[1] if numeric else categories.index(str(p[1])), p[2], p[3])
            for p in points
            if p[0] == label
        )
        best = {}  # the best result at each x: the line; every trial: a marker
        for position, result, _ in mine:
            best[position] = max(best.get(position, -np.inf), result)
        (line,) = ax.plot(list(best), list(best.values()), marker="o", label=label)
        pruned = [(position, result) for position, result, was_pruned in mine if was_pruned]
        if pruned:
            ax.scatter(*zip(*pruned, strict=True), facecolors="none", edgecolors=line.get_color())
    if numeric:
        values = [p[1] for p in points]
        if min(values) > 0 and max(values) > 10 * min(values):
            ax.set_xscale("log")
    else:
        ax.set_xticks(range(len(categories)), categories, rotation=45)
    direction = study.direction == optuna.study.StudyDirection.MAXIMIZE
    ax.set_xlabel(x)
    ax.set_ylabel("objective (higher is better)" if direction else "objective (lower is better)")
    ax.set_title(title or f"study {study.study_name}")
    if group is not None:
        ax.legend(fontsize=8, title=group)
    return _finish(ax, own_figure)


def _finish(ax: Axes, own_figure: bool) -> Axes:
    """Tidy a figure the plot made and show it once (Jupyter); return ``ax``."""
    if own_figure:
        ax.figure.tight_layout()
        display_once(ax.figure, ax)
    return ax


def require_tensorboard():
    """Return ``tensorboard.plugins.hparams.api``, or explain how to install it."""
    try:
        from tensorboard.plugins.hparams import api as hparams_api
    except ImportError as error:
        raise ImportError(
            'TensorBoard logging needs the optional extra: pip install -e ".[tensorboard]"'
        ) from error
    return hparams_api


def log_trial_to_tensorboard(log_dir: str | Path, trial: optuna.trial.FrozenTrial) -> Path:
    """Write one trial's curves and hyper-parameters (HParams plugin) for TensorBoard.

    Args:
        log_dir: the sweep's log folder; the trial goes to ``log_dir/trial_NNNN``.
        trial: a finished trial whose user attributes hold ``history`` and ``config``.

    Returns:
        The trial's run folder. View with ``tensorboard --logdir LOG_DIR``.
    """
    hparams_api = require_tensorboard()
    import tensorflow as tf

    run_dir = Path(log_dir) / f"trial_{trial.number:04d}"
    settings = {**trial.user_attrs.get("config", {}), **trial.params}
    hparams = {key: _as_cell(value) for key, value in settings.items()}
    hparams = {
        key: value for key, value in hparams.items() if isinstance(value, (bool, int, float, str))
    }
    with tf.summary.create_file_writer(str(run_dir)).as_default():
        hparams_api.hparams(hparams, trial_id=f"trial_{trial.number:04d}")
        for record in trial.user_attrs.get("history", []):
            for key, value in record.items():
                if key != "epoch":
                    tf.summary.scalar(key, value, step=record["epoch"])
        if trial.value is not None:
            tf.summary.scalar("final_val_accuracy", trial.value, step=0)
    return run_dir
