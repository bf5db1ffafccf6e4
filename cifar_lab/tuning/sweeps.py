"""Hyper-parameter sweeps on Optuna that resume, prune, and share one database.

**Resume instead of retrain.** A study lives in a database, by default the
SQLite file ``runs/<name>.db`` (``runs/`` is git-ignored). Running
:func:`run_sweep` again, e.g. after a kernel crash, reloads the study, keeps
every finished trial, reruns trials the crash interrupted, and runs only what
is missing.

**Pruning.** ``pruner="median"`` (or ``"successive_halving"``) stops a trial
whose validation accuracy after an epoch is worse than earlier trials' at that epoch.

**Grid sampling.** ``sampler="grid"`` enqueues every point of the grid once;
each trial takes one point from the queue.

**Many workers.** Several processes, or machines, can share one study
through a database URL. Create the study once, then start workers::

    spec = SweepSpec("part5_grid", {"activation": ["relu", "gelu"], "dropout": [0.0, 0.3]})
    url = "postgresql://user:password@db-host/sweeps"   # or "sqlite:///runs/part5.db"
    open_study(spec, storage=url)                    # once: creates it, enqueues the grid
    run_worker(spec, objective, storage=url)         # on every worker process / machine

:func:`run_workers` does both with local processes. Taking a queued point
is atomic (PostgreSQL/MySQL row locks; SQLite here runs every transaction
as ``BEGIN IMMEDIATE``), so no grid point runs twice; a worker that finds
the queue emptied under it records one empty FAIL trial (``surplus``).
Heartbeats mark trials of dead workers as failed and queue them again; a
worker stays while other trials run so that it can retake such a point
(see :mod:`cifar_lab.tuning.sweep_workers`). SQLite is fine for a few local
processes; use PostgreSQL for many machines (``pip install -e ".[postgres]"``).

An objective is ``objective(trial, params) -> float``: ``params`` are the
trial's values from the space; report per-epoch values with
``trial.report`` so the pruner can act (see :class:`cifar_lab.tuning.train.MLPObjective`).
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from cifar_lab.checks import check_int
from cifar_lab.tuning.sweep_setup import (
    FINISHED_STATES,
    QueueEmptyError,
    SweepSpec,
    default_storage,
    enqueue_missing,
    load_study,
    make_storage,
    open_study,
)
from cifar_lab.tuning.sweep_workers import mark_worker, next_step, wait_for_others

__all__ = [
    "SweepSpec", "default_storage", "make_storage", "open_study", "run_sweep", "run_worker",
    "run_workers", "suggest_params",
]  # fmt: skip
Objective = Callable[[optuna.Trial, dict[str, Any]], float]


def run_sweep(
    spec: SweepSpec,
    objective: Objective,
    *,
    storage: str | optuna.storages.BaseStorage | None = None,
    tensorboard_dir: str | Path | None = None,
    verbose: bool = True,
) -> optuna.Study:
    """Run a sweep in this process, resuming whatever the storage already holds.

    Assumes it is the only process working on the study: trials left running
    (by a crashed kernel) are marked failed and their grid points rerun.
    Finished trials are never rerun.

    Args:
        spec: the sweep.
        objective: ``objective(trial, params) -> float``, higher is better.
        storage: database URL or Optuna storage (default ``sqlite:///runs/<name>.db``).
        tensorboard_dir: also write each finished trial's curves and
            hyper-parameters there (needs ``pip install -e ".[tensorboard]"``).
        verbose: print one line per trial.

    Returns:
        The ``optuna.Study``; see :func:`results_frame`.
    """
    _check_objective(objective)
    if tensorboard_dir is not None:
        from cifar_lab.tuning.plots import require_tensorboard

        require_tensorboard()  # fail now, not after the first trial
    study = load_study(spec, storage, create=True)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)  # orphan of a crashed run
    if spec.sampler == "grid":
        enqueue_missing(study, spec)
    _work(study, spec, objective, tensorboard_dir, verbose)
    return study


def run_worker(
    spec: SweepSpec,
    objective: Objective,
    *,
    storage: str,
    tensorboard_dir: str | Path | None = None,
    verbose: bool = False,
) -> int:
    """Work on a shared study until its queue is empty or its budget is spent.

    The study must exist (call :func:`open_study` once first). Safe to run in
    many processes or machines at once on one database URL. A worker that finds
    nothing queued stays while other workers' trials run, and retakes the point
    of one whose heartbeat stops (see :mod:`cifar_lab.tuning.sweep_workers`).

    Args:
        spec: the same spec the study was opened with.
        objective: ``objective(trial, params) -> float``.
        storage: database URL shared by all workers.
        tensorboard_dir: optional TensorBoard log folder.
        verbose: print one line per trial.

    Returns:
        How many trials this worker ran.
    """
    _check_objective(objective)
    study = load_study(spec, storage, create=False)
    return _work(study, spec, objective, tensorboard_dir, verbose)


def run_workers(
    spec: SweepSpec,
    objective: Objective,
    *,
    storage: str,
    processes: int,
    tensorboard_dir: str | Path | None = None,
) -> optuna.Study:
    """Open the study, then run :func:`run_worker` in ``processes`` local processes.

    Args:
        spec: the sweep.
        objective: must be picklable (a module-level function or an object such as
            :class:`cifar_lab.tuning.train.MLPObjective`): workers are spawned.
        storage: database URL (a SQLite file works for local processes).
        processes: number of worker processes, at least 1.
        tensorboard_dir: optional TensorBoard log folder.

    Returns:
        The study, after every worker has exited.

    Raises:
        RuntimeError: a worker exited with a non-zero code.
    """
    check_int("processes", processes, minimum=1)  # before the study or any worker exists
    study = open_study(spec, storage)
    context = multiprocessing.get_context("spawn")  # fork would copy TF/SQLite state
    workers = [
        context.Process(target=run_worker, args=(spec, objective),
                        kwargs={"storage": storage, "tensorboard_dir": tensorboard_dir})
        for _ in range(processes)
    ]  # fmt: skip
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    failed = [worker.exitcode for worker in workers if worker.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} sweep worker(s) failed with exit codes {failed}")
    return study


def _check_objective(objective: Objective) -> None:
    if not callable(objective):
        raise TypeError(f"objective must be callable(trial, params) -> float, got {objective!r}")


def suggest_params(trial: optuna.Trial, space: Mapping[str, Any]) -> dict[str, Any]:
    """Ask ``trial`` for a value of every parameter in ``space`` (lists are categorical)."""
    dists = optuna.distributions
    params = {}
    for name, choices in space.items():
        if isinstance(choices, dists.FloatDistribution):
            params[name] = trial.suggest_float(
                name, choices.low, choices.high, step=choices.step, log=choices.log
            )
        elif isinstance(choices, dists.IntDistribution):
            params[name] = trial.suggest_int(
                name, choices.low, choices.high, step=choices.step, log=choices.log
            )
        elif isinstance(choices, dists.CategoricalDistribution):
            params[name] = trial.suggest_categorical(name, choices.choices)
        else:
            params[name] = trial.suggest_categorical(name, list(choices))
    return params


def _work(study, spec, objective, tensorboard_dir, verbose) -> int:
    queue_empty = []

    def run_one(trial: optuna.Trial) -> float:
        mark_worker(trial)
        try:
            params = suggest_params(trial, spec.space)
        except QueueEmptyError:
            trial.set_user_attr("surplus", True)
            queue_empty.append(trial.number)
            raise
        start = time.perf_counter()
        try:
            return objective(trial, params)
        finally:
            trial.set_user_attr("wall_time_s", time.perf_counter() - start)

    callbacks = [_trial_printer(spec)] if verbose else []
    if tensorboard_dir is not None:
        from cifar_lab.tuning.plots import log_trial_to_tensorboard

        callbacks.append(lambda study, trial: log_trial_to_tensorboard(tensorboard_dir, trial))
    ran = 0
    with _quiet_optuna(), _older_objects_frozen():
        while (step := next_step(study, spec)) != "done":
            if step == "wait":
                wait_for_others(study)
                continue
            surplus = len(queue_empty)
            study.optimize(run_one, n_trials=1, catch=(QueueEmptyError,), callbacks=callbacks)
            ran += len(queue_empty) == surplus
    return ran


def _trial_printer(spec: SweepSpec) -> Callable:
    def show(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        done = len(study.get_trials(deepcopy=False, states=FINISHED_STATES))
        value = "" if trial.value is None else f"  val_acc {trial.value:.4f}"
        seconds = trial.user_attrs.get("wall_time_s", 0.0)
        print(
            f"trial {trial.number:>3} ({done}/{spec.total_trials} finished)  "
            f"{trial.state.name.lower()}{value}  {seconds:.0f} s  {trial.params}",
            flush=True,
        )

    return show


@contextlib.contextmanager
def _older_objects_frozen() -> Iterator[None]:
    """Let the garbage collections of the trials walk only objects made since the block began.

    :class:`~cifar_lab.tuning.train.MLPObjective` collects garbage after every trial
    (``keras.backend.clear_session()`` calls ``gc.collect()``). With TensorFlow, Keras,
    Optuna, pandas and a notebook's data loaded, a full collection walks some 350,000
    objects: about 0.15 s of CPU, more than a 2-step quick-profile trial trains (notebook
    05 in the quick profile: 67 CPU seconds without the freeze, 56 with it, run side by
    side with ``benchmarks/notebook_times.py 05``). Objects alive when
    the block begins go to the permanent generation (``gc.freeze()``), which collections
    skip; on the way out they are given back (``gc.unfreeze()``). Nothing alive is freed:
    a frozen object only counts as a reference from outside. One that became garbage
    during the block is freed by the first full collection after it.
    """
    gc.collect()  # garbage of earlier work is freed now rather than frozen for the sweep
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Silence Optuna's per-trial INFO logs while we print our own line."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)
