"""The many-machine recipe of docs/part5.md against a real PostgreSQL server.

Each test starts worker processes that run exactly that page's lines,
``open_study(spec, storage=url)`` once and ``run_worker(spec, objective,
storage=url)`` per worker, on a fresh database of a throw-away server
(tests/postgres_server.py). Objectives are tiny (no training); each finished
call appends one JSON line (pid, tag, point) to a per-process log file, so a
point run twice, or lost, shows there as well as in the study.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from cifar_lab.tuning.plots import results_frame
from cifar_lab.tuning.sweeps import SweepSpec, open_study, run_worker

pytestmark = pytest.mark.postgres
GRID = {"x": [0, 1, 2, 3, 4, 5], "y": [0, 1]}  # 12 points
ALL_POINTS = sorted((x, y) for x in GRID["x"] for y in GRID["y"])
HEARTBEAT_S = 2  # a killed worker's trial goes stale after 3 intervals
WAIT_S = 120  # generous ceilings: the machine may be busy


def _log_call(log_dir: Path, tag: str, trial, params) -> None:
    line = {"pid": os.getpid(), "tag": tag, "trial": trial.number, **params}
    with open(log_dir / f"calls-{os.getpid()}.jsonl", "a") as log:
        log.write(json.dumps(line) + "\n")


def logged_calls(log_dir: Path, tag: str | None = None) -> list[dict]:
    calls = []
    for path in sorted(log_dir.glob("calls-*.jsonl")):
        calls += [json.loads(line) for line in path.read_text().splitlines()]
    return [call for call in calls if tag is None or call["tag"] == tag]


def points(calls) -> list[tuple]:
    return sorted((call["x"], call["y"]) for call in calls)


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {WAIT_S} s waiting for {what}")
        time.sleep(0.05)


def quorum_objective(log_dir: str, quorum: int, trial, params) -> float:
    """Each worker's first call waits until ``quorum`` workers are in a trial at once."""
    folder = Path(log_dir)
    (folder / f"started-{os.getpid()}").touch()
    wait_until(lambda: len(list(folder.glob("started-*"))) >= quorum, f"{quorum} workers")
    time.sleep(0.05)
    _log_call(folder, "shared", trial, params)
    return float(params["x"] * 10 + params["y"])


def victim_objective(log_dir: str, victim: tuple, trial, params) -> float:
    """The first call on ``victim`` publishes its pid and hangs (to be killed); retries run."""
    folder = Path(log_dir)
    if (params["x"], params["y"]) == victim:
        try:
            os.close(os.open(folder / "victim.claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            pass  # the retry of the killed trial
        else:
            (folder / "victim.tmp").write_text(f"{os.getpid()} {trial.number}")
            os.rename(folder / "victim.tmp", folder / "victim.pid")
            time.sleep(600)
    time.sleep(0.05)
    _log_call(folder, "victim", trial, params)
    return float(params["x"] * 10 + params["y"])


def join_objective(log_dir: str, tag: str, trial, params) -> float:
    """The ``first`` worker's 7th call signals "half" and waits until ``second`` finished one."""
    folder = Path(log_dir)
    if tag == "first" and len(logged_calls(folder, "first")) == len(ALL_POINTS) // 2:
        (folder / "half").touch()
        wait_until(lambda: logged_calls(folder, "second"), "the second worker's first point")
    time.sleep(0.05)
    _log_call(folder, tag, trial, params)
    return float(params["x"] * 10 + params["y"])


def worker(spec, objective, url: str) -> None:
    """One worker process, as on each machine in docs/part5.md."""
    run_worker(spec, objective, storage=url)


@pytest.fixture
def start_worker():
    """Start ``worker`` in a fresh (spawned) process; kill what is left at teardown."""
    context, started = multiprocessing.get_context("spawn"), []

    def start(spec, objective, url: str):
        process = context.Process(target=worker, args=(spec, objective, url))
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        if process.is_alive():
            process.kill()
        process.join(timeout=30)


def finish(*processes) -> list[int | None]:
    for process in processes:
        process.join(timeout=WAIT_S)
    return [process.exitcode for process in processes]


def completed_points(study) -> list[tuple]:
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted((t.params["x"], t.params["y"]) for t in completed)


def test_three_workers_complete_every_grid_point_once(postgres_url, tmp_path, start_worker):
    spec = SweepSpec("shared", GRID, pruner="none", heartbeat_interval=HEARTBEAT_S)
    study = open_study(spec, storage=postgres_url)
    objective = functools.partial(quorum_objective, str(tmp_path), 3)
    workers = [start_worker(spec, objective, postgres_url) for _ in range(3)]
    assert finish(*workers) == [0, 0, 0]
    calls = logged_calls(tmp_path)
    assert points(calls) == ALL_POINTS  # every point ran, none twice
    assert {call["pid"] for call in calls} == {process.pid for process in workers}
    assert completed_points(study) == ALL_POINTS
    frame = results_frame(study)
    assert len(frame) == 12 and set(frame["state"]) == {"COMPLETE"}
    assert sorted(zip(frame["x"], frame["y"], strict=True)) == ALL_POINTS
    others = [t for t in study.trials if t.state != TrialState.COMPLETE]
    assert all(t.state == TrialState.FAIL and t.user_attrs.get("surplus") for t in others)


def test_a_killed_workers_point_is_retaken_by_another(postgres_url, tmp_path, start_worker):
    spec = SweepSpec("killed", GRID, pruner="none", heartbeat_interval=HEARTBEAT_S)
    study = open_study(spec, storage=postgres_url)
    victim = (0, 0)  # first in the queue: taken at once
    objective = functools.partial(victim_objective, str(tmp_path), victim)
    workers = [start_worker(spec, objective, postgres_url) for _ in range(3)]
    pid_file = tmp_path / "victim.pid"
    wait_until(pid_file.exists, "a worker to start the victim point")
    pid, killed_number = map(int, pid_file.read_text().split())
    os.kill(pid, signal.SIGKILL)
    killed = next(process for process in workers if process.pid == pid)
    assert sorted(finish(*workers)) == sorted([0, 0, -signal.SIGKILL])
    assert killed.exitcode == -signal.SIGKILL
    calls = logged_calls(tmp_path)
    assert points(calls) == ALL_POINTS  # the victim point once (by the retry), none twice
    victim_runs = [call["pid"] for call in calls if (call["x"], call["y"]) == victim]
    assert len(victim_runs) == 1 and victim_runs[0] != pid  # finished by a survivor
    assert completed_points(study) == ALL_POINTS
    dead = study.trials[killed_number]
    assert dead.state == TrialState.FAIL and dead.user_attrs["worker"]["pid"] == pid
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed_number]
    assert [(t.state, t.params) for t in retries] == [(TrialState.COMPLETE, {"x": 0, "y": 0})]
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


def test_a_worker_joining_halfway_takes_only_what_is_left(postgres_url, tmp_path, start_worker):
    spec = SweepSpec("joined", GRID, pruner="none", heartbeat_interval=HEARTBEAT_S)
    study = open_study(spec, storage=postgres_url)
    first = start_worker(spec, functools.partial(join_objective, str(tmp_path), "first"),
                         postgres_url)  # fmt: skip
    wait_until((tmp_path / "half").exists, "the first worker to finish half the grid")
    done_before = completed_points(study)
    second = start_worker(spec, functools.partial(join_objective, str(tmp_path), "second"),
                          postgres_url)  # fmt: skip
    assert finish(first, second) == [0, 0]
    assert len(done_before) == 6 and done_before == points(logged_calls(tmp_path, "first")[:6])
    joined = points(logged_calls(tmp_path, "second"))
    assert joined and not set(joined) & set(done_before)
    assert points(logged_calls(tmp_path)) == ALL_POINTS
    assert completed_points(study) == ALL_POINTS


def test_a_worker_started_after_all_died_retakes_the_lost_point(
    postgres_url, tmp_path, start_worker
):
    spec = SweepSpec("restarted", GRID, pruner="none", heartbeat_interval=HEARTBEAT_S)
    study = open_study(spec, storage=postgres_url)
    objective = functools.partial(victim_objective, str(tmp_path), (0, 1))  # the second point
    only = start_worker(spec, objective, postgres_url)
    wait_until((tmp_path / "victim.pid").exists, "the only worker to start the victim point")
    os.kill(only.pid, signal.SIGKILL)
    assert finish(only) == [-signal.SIGKILL]
    assert points(logged_calls(tmp_path)) == [(0, 0)]  # the rest still queued, (0, 1) RUNNING
    assert finish(start_worker(spec, objective, postgres_url)) == [0]
    assert points(logged_calls(tmp_path)) == ALL_POINTS
    assert completed_points(study) == ALL_POINTS
