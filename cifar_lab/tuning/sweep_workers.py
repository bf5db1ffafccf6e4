"""When a sweep worker runs a trial, waits, or leaves; how it takes over a dead worker's trial.

A worker runs while a grid point is queued (or, for sampled sweeps, while
fewer trials have started than the budget). After that it does not leave
while another worker's trial is still running: that worker, or its machine,
may die. Waiting, it checks every second for running trials
whose heartbeat went silent for the grace period (3 intervals), marks them
FAIL, and Optuna's retry callback (set by
:func:`cifar_lab.tuning.sweep_setup.make_storage`) queues their points
again, which the waiting worker then takes. It leaves when nothing is queued
and nothing is running.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from collections import Counter
from datetime import datetime

import optuna
from optuna.trial import TrialState

from cifar_lab.tuning.sweep_setup import SweepSpec

WORKER_ATTR = "worker"
POLL_S = 1.0  # a waiting worker looks again this often (at most one heartbeat interval)


def mark_worker(trial: optuna.Trial) -> None:
    """Record in ``trial``'s user attributes which process runs it: host, pid, trial number.

    Args:
        trial: a running trial, inside the objective (its heartbeat already beats).
    """
    mark = {"host": socket.gethostname(), "pid": os.getpid(), "trial": trial.number}
    trial.set_user_attr(WORKER_ATTR, mark)


def heartbeat_interval(study: optuna.Study) -> int | None:
    """The study storage's heartbeat interval in seconds, or None without heartbeats."""
    getter = getattr(study._storage, "get_heartbeat_interval", None)  # no public accessor
    return getter() if getter is not None else None


def next_step(study: optuna.Study, spec: SweepSpec) -> str:
    """What a worker does next: ``"run"`` a trial, ``"wait"`` for running ones, or ``"done"``.

    Args:
        study: the shared study.
        spec: its sweep.

    Returns:
        ``"run"`` when a grid point is queued or a sampled sweep's budget is not
        all started; else ``"wait"`` while a trial runs that a heartbeat can still
        fail (so its point can be retaken); else ``"done"``.
    """
    trials = study.get_trials(deepcopy=False)
    states = Counter(trial.state for trial in trials)
    if spec.sampler == "grid":
        if states[TrialState.WAITING]:
            return "run"
    elif sum(states[s] for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)) < (
        spec.total_trials
    ):
        return "run"
    interval = heartbeat_interval(study)
    if interval is None:
        return "done"
    now = datetime.now()
    running = [t for t in trials if t.state == TrialState.RUNNING and _live(t, now, 3 * interval)]
    return "wait" if running else "done"


def _live(trial: optuna.trial.FrozenTrial, now: datetime, grace_s: float) -> bool:
    """Whether ``trial`` will end by itself or by the stale check, rather than never."""
    if (trial.user_attrs.get(WORKER_ATTR) or {}).get("trial") == trial.number:
        return True  # marked inside its heartbeat: a dead worker's trial goes stale
    start = trial.datetime_start  # unmarked: only just started, or an orphan without heartbeat
    return start is None or (now - start).total_seconds() < grace_s


def wait_for_others(study: optuna.Study) -> None:
    """Fail running trials whose heartbeat went silent (queueing their points again), then
    sleep :data:`POLL_S` (or one heartbeat interval if shorter).

    Args:
        study: the shared study, on a storage with heartbeats.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    time.sleep(min(heartbeat_interval(study) or POLL_S, POLL_S))
