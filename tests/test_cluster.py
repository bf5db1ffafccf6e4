"""Grading on a Dask cluster: a worker killed mid-batch loses no row and duplicates none.

The six submissions are crafted as in ``test_grading.py`` (faked executed notebooks,
a small Keras model on synthetic data), graded with the static read
(``GradeSettings(rerun=None)``). Scoring a model in its child process takes seconds,
and a worker scores each distinct model file once (then reuses the accuracy), so a
worker's first task with a model is slow: the test kills a worker while it grades one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
from instructor_fixtures import (
    NUM_TEST,
    code_cells,
    course_source,
    distinct_model,
    edit_notebook,
    executed,
    run_cli,
    set_claim,
    train_models,
    write_submission,
    zip_folder,
)

from cifar_lab.instructor.findings import GradingSetupError
from cifar_lab.instructor.grading import GradeSettings, grade_folder
from cifar_lab.instructor.release import load_manifest, release
from cifar_lab.instructor.report import ReportFile, feedback_path
from cifar_lab.instructor.rerun import RerunSettings, _environment
from cifar_lab.instructor.sandbox import THREAD_VARIABLES
from cifar_lab.tuning.part5 import MODEL_FILE, PART5_DIR

distributed = pytest.importorskip("distributed", reason='needs pip install "cifar_lab[cluster]"')

from cifar_lab.instructor.cluster import (  # noqa: E402  (after the skip)
    ClusterSettings,
    dask_client,
    grade_on,
    with_threads,
    worker_facts,
    worker_problems,
    worker_threads,
)

STUDENTS = ("ada", "bob", "cy", "dee", "eve", "fay")


def _swap_counts(notebook: dict) -> None:
    first, second = code_cells(notebook)[1:3]
    first["execution_count"], second["execution_count"] = 3, 2


DAMAGE = {  # honest, out of order, doctored claim, weak model, no model, a folder
    "bob": lambda r: edit_notebook(r, "03_keras_model_subclassing", _swap_counts),
    "cy": lambda r: edit_notebook(r, "05_tuning", lambda nb: set_claim(nb, "test_accuracy", 0.99)),
    "eve": lambda r: (r / PART5_DIR / MODEL_FILE).unlink(),
}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Six submissions (five zips, one folder) and the settings to grade them with."""
    base = tmp_path_factory.mktemp("cluster")
    source = course_source(base / "source")
    manifest = release(base / "release", source_dir=source)
    models = train_models(base / "models")
    distinct = distinct_model(models.good, base / "models" / "copy.keras", "copy")
    folder = base / "submissions"
    folder.mkdir()
    for student in STUDENTS:
        model = {"dee": models.weak, "fay": distinct}.get(student, models.good)
        root = write_submission(base / "work" / student, source, model, models.good_accuracy)
        DAMAGE.get(student, lambda r: None)(root)
        if student == "fay":
            root.rename(folder / student)
        else:
            zip_folder(root, folder / f"{student}.zip")
    settings = GradeSettings(
        manifest=load_manifest(manifest), source="synthetic", num_test=NUM_TEST, rerun=None
    )
    return folder, settings, manifest


def _grade(
    folder: Path, settings: GradeSettings, out: Path, client=None, resume: bool = False
) -> list[dict]:
    settings = dataclasses.replace(settings, feedback_dir=out / "feedback")
    report = ReportFile(out / "report.csv", settings.notebooks, resume=resume)
    grade_many = None if client is None else grade_on(client, settings)
    return grade_folder(folder, settings, verbose=False, report=report, grade_many=grade_many)


def _rows_on_disk(out: Path) -> list[dict]:
    path = out / "report.json"
    return json.loads(path.read_text()) if path.is_file() else []


# measurements of the run, not grades: time, and the peak memory of the processes it started
# (one process scores a byte-identical model once; each worker scores its own copy)
MEASURED = ("grading_seconds", "peak_memory_mb")


def _without_timing(row: dict) -> dict:
    return {key: value for key, value in row.items() if key not in MEASURED}


def _kill_a_busy_worker(client, out: Path, killed: dict) -> None:
    """Once the first row is on disk, SIGKILL a worker process that is grading a task."""
    deadline = time.monotonic() + 300
    while not _rows_on_disk(out) and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = client.run(os.getpid)
    while time.monotonic() < deadline and len(_rows_on_disk(out)) < len(STUDENTS):
        busy = [address for address, keys in client.processing().items() if keys]
        if busy:
            killed.update(address=busy[0], pid=pids[busy[0]], rows=len(_rows_on_disk(out)))
            os.kill(pids[busy[0]], signal.SIGKILL)
            return
        time.sleep(0.05)


def test_a_worker_killed_mid_batch_loses_and_duplicates_no_row(batch, tmp_path):
    folder, settings, _ = batch
    alone = {row["student"]: row for row in _grade(folder, settings, tmp_path / "alone")}
    assert sorted(alone) == sorted(STUDENTS)
    assert {alone[s]["status"] for s in STUDENTS} >= {"ok", "incomplete", "flagged"}

    out = tmp_path / "cluster"
    killed: dict = {}
    with dask_client(ClusterSettings(workers=2), [folder]) as client:
        before = client.run(os.getpid)
        assert len(before) == 2
        killer = threading.Thread(target=_kill_a_busy_worker, args=(client, out, killed))
        killer.start()
        returned = _grade(folder, settings, out, client=client)
        killer.join()
        after = client.run(os.getpid)
        first = _rows_on_disk(out)
        (out / "report.json").write_text(json.dumps(first[:4]))  # as if stopped after 4 rows
        resumed = _grade(folder, settings, out, client=client, resume=True)  # --resume

    assert killed, "no worker was busy after the first row: nothing was killed"
    assert killed["rows"] < len(STUDENTS)  # the kill came mid-batch
    assert killed["pid"] not in after.values()  # it died; its nanny started another
    assert sorted(row["student"] for row in first) == sorted(STUDENTS)  # each student once
    assert sorted(row["student"] for row in returned) == sorted(STUDENTS)
    rows = _rows_on_disk(out)  # after --resume: the four kept, the two graded again
    assert [row["student"] for row in rows[:4]] == [row["student"] for row in first[:4]]
    assert sorted(row["student"] for row in rows) == sorted(STUDENTS)
    assert resumed == rows
    csv_lines = (out / "report.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + len(STUDENTS)
    for row in first + rows[4:]:  # the batch a worker died in, and the rows --resume added
        assert _without_timing(row) == _without_timing(alone[row["student"]]), row["student"]
        page = feedback_path(out / "feedback", row["student"]).read_text()
        assert page == feedback_path(tmp_path / "alone" / "feedback", row["student"]).read_text()


THREADS_CELL = (
    "import os\nimport cifar_lab as lab\n"
    "lab.record('val_accuracy', int(os.environ.get('TF_NUM_INTRAOP_THREADS', 0)) / 100, key=True)"
)


def _tiny_batch(base: Path, claims: dict[str, float]) -> tuple[Path, dict]:
    """A one-notebook course whose cell records the kernel's TensorFlow threads / 100."""
    source = base / "source"
    source.mkdir()
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(THREADS_CELL)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, source / "01_tiny.ipynb")
    manifest = load_manifest(release(base / "release", source_dir=source))
    batch = base / "batch"
    for student, claim in claims.items():
        executed_copy = executed(json.loads((source / "01_tiny.ipynb").read_text()), {})
        set_claim(executed_copy, "val_accuracy", claim)
        (batch / student).mkdir(parents=True)
        (batch / student / "01_tiny.ipynb").write_text(json.dumps(executed_copy))
    return batch, manifest


def test_local_workers_share_the_cores_and_so_do_their_rerun_kernels(tmp_path):
    cluster = ClusterSettings(workers=2, cores=6)
    assert cluster.threads == 3
    assert ClusterSettings(workers=8, cores=2).threads == 1
    batch, manifest = _tiny_batch(tmp_path, {"three": 0.03, "none": 0.0})
    rerun = RerunSettings(cell_timeout=120, total_timeout=600, profile="quick")
    settings = GradeSettings(manifest=manifest, rerun=rerun)  # threads: the worker's own
    with dask_client(cluster, [batch]) as client:
        seen = client.run(lambda: {name: os.environ.get(name) for name in THREAD_VARIABLES})
        rows = grade_folder(batch, settings, verbose=False, grade_many=grade_on(client, settings))
    assert list(seen.values()) == [dict.fromkeys(THREAD_VARIABLES, "3")] * 2  # the workers
    by_student = {row["student"]: row for row in rows}
    assert by_student["three"]["rerun"] == "reproduced"  # the kernel a worker started saw 3
    assert by_student["none"]["rerun"] == "not-reproduced"
    assert (
        "01: rerun: val_accuracy claimed 0.0000, recomputed 0.0300"
        in (by_student["none"]["problems"])
    )
    (tmp_path / "plain").mkdir()
    plain, _ = _environment(RerunSettings(), tmp_path / "plain")  # no --workers: no variable
    assert not set(THREAD_VARIABLES) & set(plain)
    assert worker_threads({"TF_NUM_INTRAOP_THREADS": "4"}) == 4
    assert worker_threads({"TF_NUM_INTRAOP_THREADS": "0"}) is worker_threads({}) is None
    assert with_threads(settings, 4).rerun.threads == 4
    assert with_threads(settings, None) is settings


def test_a_worker_that_differs_stops_the_batch_before_any_row(tmp_path):
    folder = tmp_path / "submissions"
    folder.mkdir()
    here = worker_facts([str(folder)])
    assert worker_problems(here, here) == []
    stale = {**here, "digest": "0" * 16}
    assert "has cifar_lab" in worker_problems(stale, here)[0]
    blind = {**here, "missing": [str(folder)]}
    assert worker_problems(blind, here) == [f"does not see {folder}"]
    assert "cannot run cifar_lab" in worker_problems(ImportError("no cifar_lab"), here)[0]
    missing = tmp_path / "nowhere"
    with distributed.LocalCluster(n_workers=1, dashboard_address=None) as running:
        scheduler = ClusterSettings(scheduler=running.scheduler_address)  # --scheduler ADDRESS
        with dask_client(scheduler, [folder]) as client:
            assert len(client.scheduler_info()["workers"]) == 1  # it passed the checks
        with (
            pytest.raises(GradingSetupError, match=r"worker tcp://\S+ does not see .*nowhere"),
            dask_client(scheduler, [folder, missing]),
        ):
            pass


def test_without_the_extra_the_options_fail_in_one_line(batch, tmp_path, monkeypatch, capsys):
    folder, _, manifest = batch
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed: ImportError
    out = tmp_path / "report.csv"
    argv = [str(folder), "--out", str(out), "--source", "synthetic", "--workers", "2"]
    assert run_cli("grade", *argv, "--manifest", str(manifest)) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert 'pip install "cifar_lab[cluster]"' in error
    assert not out.with_suffix(".json").read_text().strip("[]\n")  # no row written
    with pytest.raises(ValueError, match="exactly one"):
        ClusterSettings(workers=2, scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(ValueError, match="exactly one"):
        ClusterSettings()
