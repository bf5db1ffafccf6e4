"""Optuna sweeps: resume, pruning, grid coverage, parallel workers, records and plots.

Tests taking the ``storage_url`` fixture run twice: on a SQLite file and on a
fresh database of a throw-away PostgreSQL server (marked ``postgres``; see
tests/postgres_server.py and tests/test_sweeps_postgres.py).
"""

from __future__ import annotations

import datetime
import functools
import json
import time
from pathlib import Path

import matplotlib
import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from cifar_lab.tuning.plots import (
    plot_accuracy_heatmap,
    plot_optimizer_batchnorm,
    plot_top_curves,
    results_frame,
)
from cifar_lab.tuning.sweep_setup import database_url, default_storage, make_storage
from cifar_lab.tuning.sweep_workers import mark_worker, next_step
from cifar_lab.tuning.sweeps import SweepSpec, open_study, run_sweep, run_workers

matplotlib.use("Agg")


def toy_objective(trial, params, calls: list | None = None, steps: int = 3) -> float:
    """Quality x grows with each step; records the call when a list is given."""
    if calls is not None:
        calls.append(dict(params))
    quality = params["x"]
    for step in range(steps):
        trial.report(quality * (step + 1), step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return quality + params.get("y", 0)


def logging_objective(log_path: str, trial, params) -> float:
    """Module level, so spawned workers can unpickle it; one log line per call."""
    with open(log_path, "a") as log:
        log.write(json.dumps(params, sort_keys=True) + "\n")
    time.sleep(0.05)  # long enough for workers to overlap
    return float(params["x"] * 10 + params["y"])


def sqlite_url(tmp_path: Path, name: str = "study") -> str:
    return f"sqlite:///{(tmp_path / f'{name}.db').as_posix()}"


GRID = {"x": [1, 2, 3], "y": [0, 1]}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def storage_url(request, tmp_path) -> str:
    """A SQLite file URL, or an empty database on the test PostgreSQL server."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    return request.getfixturevalue("postgres_url")


def test_resume_does_not_rerun_finished_trials(storage_url):
    spec = SweepSpec("resume", GRID, pruner="none")
    url, calls = storage_url, []
    objective = functools.partial(toy_objective, calls=calls)
    run_sweep(spec, objective, storage=url, verbose=False)
    assert sorted((c["x"], c["y"]) for c in calls) == [(x, y) for x in (1, 2, 3) for y in (0, 1)]
    calls.clear()
    study = run_sweep(spec, objective, storage=url, verbose=False)  # e.g. the notebook rerun
    assert calls == []
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 6


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # ask() simulates the crashed run
def test_resume_after_a_crash_reruns_only_the_interrupted_and_missing(storage_url):
    spec = SweepSpec("crash", GRID, pruner="none")
    url = storage_url
    study = open_study(spec, storage=url)
    finished = study.ask()  # pops the first queued point
    finished_point = {name: finished.suggest_categorical(name, GRID[name]) for name in GRID}
    study.tell(finished, toy_objective(finished, finished_point))
    crashed = study.ask()  # popped, then the kernel died: left RUNNING
    crashed_point = {name: crashed.suggest_categorical(name, GRID[name]) for name in GRID}
    calls = []
    objective = functools.partial(toy_objective, calls=calls)
    study = run_sweep(spec, objective, storage=url, verbose=False)
    assert len(calls) == 5 and crashed_point in calls and finished_point not in calls
    assert study.trials[crashed.number].state == TrialState.FAIL
    completed = study.get_trials(states=(TrialState.COMPLETE,))
    points = {(t.params["x"], t.params["y"]) for t in completed}
    assert len(completed) == 6 and len(points) == 6


def test_sampled_sweep_resumes_to_its_budget(storage_url):
    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    spec = SweepSpec("sampled", space, sampler="random", n_trials=4, pruner="none")
    url, calls = storage_url, []
    objective = functools.partial(toy_objective, calls=calls)
    run_sweep(spec, objective, storage=url, verbose=False)
    run_sweep(spec, objective, storage=url, verbose=False)
    assert len(calls) == 4


def test_median_pruner_stops_weak_trials(storage_url):
    # queue order is grid order: two strong start-up trials, a stronger one, two weak ones
    spec = SweepSpec("median", {"x": [0.5, 0.9, 1.0, 0.1, 0.05]}, startup_trials=2)
    study = run_sweep(
        spec,
        functools.partial(toy_objective, steps=5),
        storage=storage_url,
        verbose=False,
    )
    states = {t.params["x"]: t.state for t in study.trials}
    assert states == {
        0.5: TrialState.COMPLETE, 0.9: TrialState.COMPLETE, 1.0: TrialState.COMPLETE,
        0.1: TrialState.PRUNED, 0.05: TrialState.PRUNED,
    }  # fmt: skip
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert all(len(t.intermediate_values) < 5 for t in pruned)


def test_successive_halving_prunes_the_worst(storage_url):
    spec = SweepSpec(
        "halving", {"x": [1.0, 0.9, 0.2, 0.1, 0.05, 0.01]}, pruner="successive_halving"
    )
    study = run_sweep(
        spec,
        functools.partial(toy_objective, steps=5),
        storage=storage_url,
        verbose=False,
    )
    states = {t.params["x"]: t.state for t in study.trials}
    assert states[1.0] == TrialState.COMPLETE
    assert states[0.01] == TrialState.PRUNED


def test_parallel_workers_share_one_study_without_duplicates(storage_url, tmp_path):
    grid = {"x": list(range(6)), "y": [0, 1]}
    spec = SweepSpec("parallel", grid, pruner="none")
    log = tmp_path / "calls.log"
    study = run_workers(
        spec, functools.partial(logging_objective, str(log)), storage=storage_url, processes=3,
    )  # fmt: skip
    calls = log.read_text().splitlines()
    assert len(calls) == 12 and len(set(calls)) == 12  # every point run exactly once
    completed = study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted((t.params["x"], t.params["y"]) for t in completed) == sorted(
        (x, y) for x in grid["x"] for y in grid["y"]
    )
    others = [t for t in study.trials if t.state != TrialState.COMPLETE]
    assert all(t.user_attrs.get("surplus") and not t.params for t in others)
    assert len({t.user_attrs["wall_time_s"] > 0 for t in completed}) == 1


def test_default_storage_is_an_sqlite_file_in_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = default_storage("my_sweep")
    assert url == "sqlite:///runs/my_sweep.db" and (tmp_path / "runs").is_dir()
    run_sweep(SweepSpec("my_sweep", {"x": [1.0]}), toy_objective, verbose=False)
    assert (tmp_path / "runs" / "my_sweep.db").is_file()


def test_bad_specs_and_storage_are_explained():
    with pytest.raises(ValueError, match="median"):
        SweepSpec("s", GRID, pruner="hyperband")
    with pytest.raises(ValueError, match="n_trials"):
        SweepSpec("s", GRID, sampler="tpe")
    with pytest.raises(ValueError, match="non-empty list"):
        SweepSpec("s", {"x": "relu"})
    with pytest.raises(ValueError, match="letters"):
        SweepSpec("my sweep", GRID)
    with pytest.raises(ValueError, match="sqlite"):
        make_storage("runs/x.db")
    with pytest.raises(ValueError, match="heartbeat_interval"):
        SweepSpec("s", GRID, heartbeat_interval=0)


def test_postgres_urls_name_an_installed_driver(monkeypatch):
    import importlib.util

    assert database_url("sqlite:///runs/x.db") == "sqlite:///runs/x.db"
    assert database_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    installed = {"psycopg"}  # the `postgres` extra: psycopg 3, no psycopg2
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: name in installed or None)
    assert database_url("postgresql://u:pw@h:5432/db") == "postgresql+psycopg://u:pw@h:5432/db"
    assert database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    installed.add("psycopg2")
    assert database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    installed.discard("psycopg")
    assert database_url("postgres://u@h/db") == "postgresql+psycopg2://u@h/db"
    installed.clear()
    with pytest.raises(ImportError, match=r"\.\[postgres\]"):
        database_url("postgresql://u@h/db")


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # ask() stands in for a worker
def test_workers_wait_only_for_running_trials_that_can_end(tmp_path):
    spec = SweepSpec("waiting", {"x": [1.0]}, pruner="none")
    study = open_study(spec, storage=sqlite_url(tmp_path))
    assert next_step(study, spec) == "run"
    trial = study.ask()  # another worker took the last point: it may die, so wait
    assert next_step(study, spec) == "wait"
    mark_worker(trial)  # marked inside its heartbeat: the stale check will end it
    assert trial.user_attrs["worker"]["trial"] == trial.number
    assert next_step(study, spec) == "wait"
    study.tell(trial, 1.0)
    assert next_step(study, spec) == "done"
    hour_ago = datetime.datetime.now() - datetime.timedelta(hours=1)
    orphan = optuna.trial.FrozenTrial(
        number=0, trial_id=0, state=TrialState.RUNNING, value=None, values=None,
        datetime_start=hour_ago, datetime_complete=None, params={}, distributions={},
        user_attrs={}, system_attrs={}, intermediate_values={},
    )  # fmt: skip
    study.add_trial(orphan)  # no heartbeat, no mark: nobody will ever end it
    assert next_step(study, spec) == "done"


def test_mlp_trials_record_config_curves_and_time(tmp_path):
    from cifar_lab.data.splits import load_cifar10
    from cifar_lab.tuning.config import MLPConfig
    from cifar_lab.tuning.train import MLPObjective

    splits = load_cifar10(256, 64, 0, source="synthetic", verbose=False)
    base = MLPConfig(hidden_sizes=(16,), epochs=2, batch_size=64)
    objective = MLPObjective(base, splits.X_train, splits.y_train, splits.X_val, splits.y_val)
    space = {"activation": ["relu", "tanh"], "optimizer": ["adam", "sgd"]}
    spec = SweepSpec("mlp", space, pruner="none")
    study = run_sweep(spec, objective, storage=sqlite_url(tmp_path), verbose=False)
    frame = results_frame(study)
    assert len(frame) == 4 and frame["val_accuracy"].is_monotonic_decreasing
    for _, row in frame.iterrows():
        assert [record["epoch"] for record in row["history"]] == [1, 2]
        assert row["val_accuracy"] == row["history"][-1]["val_accuracy"]
        assert row["wall_time_s"] > 0 and row["hidden_sizes"] == "16" and row["epochs"] == 2
    assert set(frame["activation"]) == {"relu", "tanh"}
    heat = plot_accuracy_heatmap(frame, rows="optimizer", columns="activation")
    expected = frame.pivot_table(index="optimizer", columns="activation", values="val_accuracy")
    np.testing.assert_allclose(heat.images[0].get_array(), expected.to_numpy())
    assert len(plot_top_curves(frame, top=3).lines) == 3
    assert plot_optimizer_batchnorm(frame).images[0].get_array().shape == (2, 1)


def test_tensorboard_missing_is_explained(tmp_path):
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r'pip install -e "\.\[tensorboard\]"'):
            run_sweep(
                SweepSpec("tb", {"x": [1.0]}), toy_objective, storage=sqlite_url(tmp_path),
                tensorboard_dir=tmp_path / "tb", verbose=False,
            )  # fmt: skip
    else:
        pytest.skip("tensorboard is installed; see test_tensorboard_logs")


def test_tensorboard_logs(tmp_path):
    pytest.importorskip("tensorboard")
    history = [{"epoch": 1, "val_accuracy": 0.3}, {"epoch": 2, "val_accuracy": 0.4}]

    def objective(trial, params):
        trial.set_user_attr("history", history)
        return 0.4

    run_sweep(
        SweepSpec("tb", {"x": [1.0, 2.0]}), objective, storage=sqlite_url(tmp_path),
        tensorboard_dir=tmp_path / "tb", verbose=False,
    )  # fmt: skip
    runs = sorted(path.name for path in (tmp_path / "tb").iterdir())
    assert runs == ["trial_0000", "trial_0001"]
    assert all(any((tmp_path / "tb" / run).glob("events.out.tfevents.*")) for run in runs)


def test_trials_collect_their_own_garbage_and_skip_walking_older_objects():
    """Objects older than the sweep are frozen during it (cheap collections), freed after."""
    import gc
    import weakref

    class Node:
        def __init__(self):
            self.me = self  # a cycle: only the garbage collector frees it

    older = Node()
    older_ref = weakref.ref(older)
    frozen_during, freed_in_trial = [], []

    def objective(trial, params):
        nonlocal older
        older = None  # garbage now, but frozen: kept until the sweep ends
        frozen_during.append(gc.get_freeze_count())
        made = Node()
        made_ref = weakref.ref(made)
        del made
        gc.collect()  # as MLPObjective's clear_session does
        freed_in_trial.append(made_ref() is None and older_ref() is not None)
        return float(params["x"])

    frozen_before = gc.get_freeze_count()
    spec = SweepSpec("frozen", {"x": [1, 2]}, pruner="none")
    run_sweep(spec, objective, storage=optuna.storages.InMemoryStorage(), verbose=False)
    assert all(count > 0 for count in frozen_during) and len(frozen_during) == 2
    assert freed_in_trial == [True, True]  # a trial's own cycles are still collected
    assert gc.get_freeze_count() == frozen_before  # given back on the way out
    gc.collect()
    assert older_ref() is None  # and freed by the next full collection
