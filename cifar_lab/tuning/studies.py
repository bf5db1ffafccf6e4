"""Your own Optuna studies (notebook 05's open lab): opening one, reading it, checking it.

In notebook 05 you write the network and its training in plain Keras and each
search as an Optuna objective::

    def objective(trial):
        architecture = trial.suggest_categorical("architecture", ["512", "1024-512"])
        learning_rate = trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
        ...  # build, compile and fit a Keras model
        return validation_accuracy

    study = create_study("architectures")  # runs/architectures.db, resumed if it exists
    study.optimize(objective, n_trials=10)

:func:`create_study` is the one course function here a student calls; the
checks of the notebook read the study through the others.

**What the checks read from a trial.** A trial's *architecture* and *learning
rate* are the values named :data:`ARCHITECTURE` (``"architecture"``) and
:data:`LEARNING_RATE` (``"learning_rate"``), looked up first in
``trial.params`` (what ``trial.suggest_*`` chose) and then in
``trial.user_attrs`` (what ``trial.set_user_attr`` recorded). So either suggest
them under these names, or, when you suggest them otherwise (say ``depth``
and ``width``), record them: ``trial.set_user_attr("architecture", "1024-512")``.
An architecture is compared as text: a list or tuple of hidden sizes such as
``[1024, 512]`` reads as ``"1024-512"``, a number such as ``512`` as ``"512"``.
A learning rate is compared as a float.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from cifar_lab.checks import check_int
from cifar_lab.results import check_that
from cifar_lab.tuning.sweep_setup import check_study_name, default_storage, make_storage

ARCHITECTURE = "architecture"  # the param or user attribute naming a trial's hidden sizes
LEARNING_RATE = "learning_rate"  # the param or user attribute holding its learning rate
# trials that took part in a comparison: a pruned trial was compared and lost
COMPARED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


def create_study(
    name: str,
    *,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    direction: str = "maximize",
    runs_dir: str | Path = "runs",
    fresh: bool = False,
) -> optuna.Study:
    """Open the Optuna study ``name`` in ``<runs_dir>/<name>.db``, resuming it if it exists.

    A study that exists is loaded with every trial it holds (``load_if_exists``),
    so running the cell again after a crash keeps the finished trials; trials that
    a crashed kernel left running are marked failed. ``study.optimize(objective,
    n_trials=n)`` then runs ``n`` *more* trials: to reach ``n`` in all, ask for the
    ones missing.

    Args:
        name: the study's name and file name (letters, digits, ``_-.``).
        sampler: an Optuna sampler, e.g. ``optuna.samplers.GridSampler(space)``;
            None for ``optuna.samplers.TPESampler(seed=0)``.
        pruner: an Optuna pruner; None for Optuna's default (``MedianPruner``).
        direction: ``"maximize"`` (accuracy) or ``"minimize"`` (loss).
        runs_dir: the folder of the SQLite file (created; ``runs/`` is git-ignored).
        fresh: delete the study's trials first and start again.

    Returns:
        The ``optuna.Study``.
    """
    check_study_name(name)
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
    # no heartbeats: one kernel works on its own file, and Optuna warns about heartbeats
    # on stderr when a trial is run by hand (study.ask / study.tell)
    storage = make_storage(default_storage(name, runs_dir), heartbeat_interval=None)
    if fresh and name in optuna.get_all_study_names(storage):
        optuna.delete_study(study_name=name, storage=storage)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=sampler if sampler is not None else optuna.samplers.TPESampler(seed=0),
        pruner=pruner,
        direction=direction,
        load_if_exists=True,
    )
    # one kernel works on its own file: a trial still running is the orphan of a crash
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
    return study


def trial_value(trial: FrozenTrial, key: str) -> Any:
    """The value ``key`` of a trial: its param, else its user attribute, else None."""
    if key in trial.params:
        return trial.params[key]
    return trial.user_attrs.get(key)


def architecture_of(trial: FrozenTrial) -> str | None:
    """A trial's architecture as text such as ``"1024-512"`` (None when it records none)."""
    value = trial_value(trial, ARCHITECTURE)
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return "-".join(str(int(size)) for size in value)
    return str(value)


def learning_rate_of(trial: FrozenTrial) -> float | None:
    """A trial's learning rate as a float (None when it records none)."""
    value = trial_value(trial, LEARNING_RATE)
    return None if value is None else float(value)


def final_value(trial: FrozenTrial) -> float:
    """A compared trial's result: its value, or for a pruned trial the last value it reported.

    Returns NaN for a trial with neither.
    """
    if trial.value is not None:
        return float(trial.value)
    steps = trial.intermediate_values
    return float(steps[max(steps)]) if steps else float("nan")


def learning_rates_by_architecture(study: optuna.Study) -> dict[str, list[float]]:
    """The distinct learning rates tried on each architecture, over compared trials.

    Args:
        study: an Optuna study whose trials record an architecture and a learning
            rate (see the module's docstring); trials that record neither are skipped.

    Returns:
        Architecture text -> sorted distinct learning rates, over the trials that
        completed or were pruned.
    """
    rates: dict[str, set[float]] = {}
    for trial in study.get_trials(deepcopy=False, states=COMPARED_STATES):
        architecture, rate = architecture_of(trial), learning_rate_of(trial)
        if architecture is not None and rate is not None:
            rates.setdefault(architecture, set()).add(rate)
    return {architecture: sorted(found) for architecture, found in rates.items()}


# ------------------------------------------------------------------ checks
def check_trials(study: optuna.Study, minimum: int) -> int:
    """Check that ``study`` holds at least ``minimum`` completed trials.

    Args:
        study: an Optuna study.
        minimum: completed trials required, at least 1.

    Returns:
        The number of completed trials.

    Raises:
        AssertionError: fewer (see :func:`cifar_lab.check_that`).
    """
    check_int("minimum", minimum, minimum=1)
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    check_that(
        done >= minimum,
        what=f"study {study.study_name!r} holds at least {minimum} completed trials",
        hint="run more trials: study.optimize(objective, n_trials=...) adds to the study",
        detail=f"{done} completed",
    )
    return done


def check_learning_rates(
    study: optuna.Study, *, minimum: int = 2, architectures: int = 1
) -> dict[str, list[float]]:
    """Check that every architecture compared in ``study`` was tried at ``minimum`` rates.

    Every completed or pruned trial must record an architecture and a learning
    rate (see the module's docstring); at least ``architectures`` distinct
    architectures must be compared, each at ``minimum`` distinct learning rates.

    Args:
        study: an Optuna study.
        minimum: distinct learning rates required per architecture, at least 1.
        architectures: distinct architectures required, at least 1.

    Returns:
        Architecture text -> its sorted distinct learning rates.

    Raises:
        AssertionError: a trial records no architecture or rate, too few
            architectures, or one with too few rates.
    """
    check_int("minimum", minimum, minimum=1)
    check_int("architectures", architectures, minimum=1)
    unnamed = [
        trial.number
        for trial in study.get_trials(deepcopy=False, states=COMPARED_STATES)
        if architecture_of(trial) is None or learning_rate_of(trial) is None
    ]
    check_that(
        not unnamed,
        what=f"every trial of {study.study_name!r} records its {ARCHITECTURE!r} and "
        f"{LEARNING_RATE!r}",
        hint=f'suggest them under these names (trial.suggest_float("{LEARNING_RATE}", ...)) or '
        f'record them: trial.set_user_attr("{ARCHITECTURE}", "1024-512")',
        detail=f"trials {unnamed[:10]} do not",
    )
    rates = learning_rates_by_architecture(study)
    check_that(
        len(rates) >= architectures,
        what=f"study {study.study_name!r} compares at least {architectures} architectures",
        hint="try several hidden-layer sizes and depths",
        detail=f"got {sorted(rates)}",
    )
    few = {architecture: found for architecture, found in rates.items() if len(found) < minimum}
    check_that(
        not few,
        what=f"every architecture is tried with at least {minimum} learning rates",
        hint="tune the learning rate for each architecture: a deep network often wants a "
        "smaller rate than a shallow one, so one shared rate is not a fair comparison",
        detail=f"too few for {few}",
    )
    return rates


def check_dense_only(model) -> None:
    """Check that a Keras model (nested models included) has no convolution layer.

    Raises:
        AssertionError: it has one (see :func:`cifar_lab.tuning.layers.convolution_layers`).
    """
    from cifar_lab.tuning.layers import convolution_layers  # Keras, loaded only for a model

    found = convolution_layers(model)
    check_that(
        not found,
        what="the model has no convolution layers",
        hint="Part V is about fully connected networks: use Dense layers only",
        detail=f"convolutions: {found}",
    )


def check_trained_on_all(results: dict, num_train: int) -> dict:
    """Check that a saved final model was trained on the whole training split.

    Reads ``results["trained_on"]`` as :func:`cifar_lab.tuning.part5.save_final_model`
    writes it: ``images`` is the number of training images the network was fitted
    on, or, recorded from a Keras ``History``, ``steps_per_epoch * batch_size`` (the
    last batch may hold fewer). All images means ``images >= num_train``, or for a
    ``History`` one batch short at most (a dropped remainder).

    Args:
        results: the parsed ``part5/results.json``.
        num_train: the number of training images (``len(y_train)``).

    Returns:
        The ``trained_on`` record.

    Raises:
        AssertionError: no record, or fewer images.
    """
    check_int("num_train", num_train, minimum=1)
    record = results.get("trained_on") if isinstance(results, dict) else None
    check_that(
        isinstance(record, dict) and isinstance(record.get("images"), int),
        what="results.json records what the final network was trained on",
        hint="pass the History that model.fit returned: "
        "lab.save_final_model(..., trained=history)",
        detail=f"trained_on: {record!r}",
    )
    # a History's record counts whole batches; it must add up (a record written by hand
    # with a huge batch size would otherwise excuse any number of missing images)
    steps, batch = record.get("steps_per_epoch"), record.get("batch_size")
    counted = steps is None or (
        isinstance(steps, int) and isinstance(batch, int) and record["images"] == steps * batch
    )
    check_that(
        counted,
        what="results.json's trained_on adds up: images = steps_per_epoch x batch_size",
        hint="let lab.save_final_model write trained_on from the History of your fit",
        detail=f"trained_on: {record!r}",
    )
    slack = 0 if steps is None else batch - 1  # a dropped remainder is less than a batch
    check_that(
        record["images"] + slack >= num_train,
        what=f"the final network was trained on all {num_train:,} training images",
        hint="retrain the chosen network on the whole training split, not on a search's subset",
        detail=f"trained on {record['images']:,} images, {record.get('epochs')} epoch(s)",
    )
    return record


def describe_history(history, batch_size: int) -> dict:
    """What a Keras ``History`` (from ``model.fit``) says the network was trained on.

    Args:
        history: the ``keras.callbacks.History`` that ``model.fit`` returned.
        batch_size: the batch size of that ``fit`` (its ``batch_size``, or your
            ``tf.data`` pipeline's): ``History`` counts steps, not images.

    Returns:
        ``{"images": steps_per_epoch * batch_size, "epochs": E, "steps_per_epoch": S,
        "batch_size": B}`` (JSON-ready).
    """
    import keras

    if not isinstance(history, keras.callbacks.History):
        raise TypeError(f"history must be what model.fit returned, got {type(history).__name__}")
    check_int("batch_size", batch_size, minimum=1)
    steps = history.params.get("steps")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(
            f"the History does not say how many steps an epoch took ({steps!r}); "
            "fit on arrays or on a dataset of known length, or pass steps_per_epoch"
        )
    epochs = len(history.epoch)
    return {
        "images": steps * batch_size,
        "epochs": epochs,
        "steps_per_epoch": steps,
        "batch_size": batch_size,
    }
