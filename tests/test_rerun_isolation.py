"""The re-execution runs student notebooks caged: each test is a cell that tries to get out.

Every kernel-starting test runs under each sandbox backend that works on this
machine (bubblewrap, ``unshare``); a backend that does not work is skipped
with its reason. The detached-child test also runs without a sandbox, where
the runner's child-subreaper sweep must still end the child.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import nbformat
import pytest
from sandbox_fixtures import QUICK, SANDBOXED, run_probe

from cifar_lab.instructor import rerun as rerun_module
from cifar_lab.instructor.claims import compare_claims
from cifar_lab.instructor.rerun import RerunSettings, rerun_notebooks
from cifar_lab.instructor.sandbox import SANDBOX_ENV, _works, isolation_warning, sandbox_command
from cifar_lab.instructor.verdicts import PRISTINE_TAG, with_pristine_checks


def _with_marker(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes().decode():
                found.append(int(entry.name))
    return found


# --------------------------------------------------------------------------- no kernel
def test_without_a_sandbox_the_warning_is_loud_and_names_the_fix(monkeypatch, capsys):
    monkeypatch.setenv(SANDBOX_ENV, "none")
    rerun_module._backend_once.cache_clear()
    try:
        assert rerun_module._backend_once() is None
    finally:
        rerun_module._backend_once.cache_clear()
    printed = capsys.readouterr().err
    assert "WARNING" in printed and "bubblewrap" in printed and "container" in printed
    assert isolation_warning("bwrap") is None


def test_sandbox_settings_reject_unknown_backends(monkeypatch):
    with pytest.raises(ValueError, match="backend"):
        sandbox_command(["true"], backend="docker", work_dir=Path("/tmp"))
    monkeypatch.setenv(SANDBOX_ENV, "chroot")
    with pytest.raises(ValueError, match="CIFAR_LAB_SANDBOX"):
        rerun_module.choose_backend()


def test_a_pristine_cell_precedes_every_code_cell():
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("x"), nbformat.v4.new_code_cell("y = 1")]
    )
    verified = with_pristine_checks(notebook)
    kinds = [PRISTINE_TAG in c.metadata.get("tags", []) for c in verified.cells]
    assert kinds == [False, True, False] and len(notebook.cells) == 2


# ------------------------------------------------------------------------- with kernels
@pytest.mark.slow
@pytest.mark.parametrize("sandbox", SANDBOXED, indirect=True)
def test_writes_outside_the_folder_have_no_effect(tmp_path, sandbox):
    grader_out, home_file = tmp_path / "report", Path.home() / f"rerun-probe-{uuid.uuid4().hex}"
    grader_out.mkdir()
    cell = f"""
def attempt(path):
    try:
        open(path, "w").write("pwned")
        return 1.0
    except OSError:
        return 0.0
lab.record("wrote_report", attempt({str(grader_out / "report.csv")!r}))
lab.record("wrote_home", attempt({str(home_file)!r}))
lab.record("wrote_own_folder", attempt("scratch.txt"))
"""
    try:
        record, problem = run_probe(tmp_path / "sub", cell)
    finally:
        home_written = home_file.exists()
        home_file.unlink(missing_ok=True)
    assert problem is None and record["status"] == "ok", record
    assert record["results"] == {"wrote_report": 0.0, "wrote_home": 0.0, "wrote_own_folder": 1.0}
    assert not (grader_out / "report.csv").exists() and not home_written


@pytest.mark.slow
@pytest.mark.parametrize("sandbox", SANDBOXED, indirect=True)
def test_the_grader_environment_does_not_reach_the_kernel(tmp_path, sandbox, monkeypatch):
    monkeypatch.setenv("GRADER_SECRET_SENTINEL", "s3cret")
    cell = """import os
lab.record("sentinel_seen", float("GRADER_SECRET_SENTINEL" in os.environ))
lab.record("private_home", float(os.environ["HOME"].startswith(os.getcwd())))"""
    record, problem = run_probe(tmp_path / "sub", cell)
    assert problem is None, record
    assert record["results"] == {"sentinel_seen": 0.0, "private_home": 1.0}


@pytest.mark.slow
@pytest.mark.parametrize("sandbox", [*SANDBOXED, "none"], indirect=True)
def test_a_detached_child_does_not_outlive_the_rerun(tmp_path, sandbox):
    marker = f"detached-{uuid.uuid4().hex}"
    cell = f"""import os, subprocess, sys, time
if os.fork() == 0:  # double fork + setsid: a daemon
    os.setsid()
    if os.fork() == 0:
        code = "import time; time.sleep(300)"
        os.execv(sys.executable, [sys.executable, "-c", code, {marker!r}])
    os._exit(0)
child = subprocess.Popen(["sleep", "300"], start_new_session=True)
time.sleep(1)
def marked(pid):
    try:
        return {marker!r} in open(f"/proc/{{pid}}/cmdline").read()
    except OSError:
        return False
daemon = any(marked(p) for p in os.listdir("/proc") if p.isdigit())
lab.record("started", float(child.poll() is None and daemon))"""
    record, problem = run_probe(tmp_path / "sub", cell)
    assert problem is None and record["results"] == {"started": 1.0}, record
    deadline = time.time() + 10
    while _with_marker(marker) and time.time() < deadline:
        time.sleep(0.2)
    assert _with_marker(marker) == []


@pytest.mark.slow
@pytest.mark.parametrize("sandbox", SANDBOXED, indirect=True)
def test_the_pid_file_trick_kills_nothing(tmp_path, sandbox):
    victim = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        cell = f"""import json, os, time
for name in ("status.jsonl", os.path.join(os.environ["TMPDIR"], "status.jsonl")):
    with open(name, "a") as out:
        out.write(json.dumps({{"kernel_pid": {victim.pid}}}) + "\\n")
        out.write(json.dumps({{"notebook": "01_probe", "status": "ok", "results": {{}}}}) + "\\n")
time.sleep(120)"""
        settings = RerunSettings(profile="quick", total_timeout=15, cell_timeout=120)
        record, problem = run_probe(tmp_path / "sub", cell, settings=settings)
        assert "total limit of 15 s" in problem and record == {}  # nothing read from the file
        time.sleep(1)
        assert victim.poll() is None, "the grader killed a process named in a student file"
    finally:
        victim.kill()
        victim.wait()


@pytest.mark.slow
@pytest.mark.parametrize("sandbox", SANDBOXED, indirect=True)
def test_no_network_inside(tmp_path, sandbox):
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        port = server.getsockname()[1]
        cell = f"""import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
    connected = 1.0
except OSError:
    connected = 0.0
lab.record("connected", connected)"""
        record, problem = run_probe(tmp_path / "sub", cell)
        assert problem is None and record["results"] == {"connected": 0.0}, record
        with pytest.raises(BlockingIOError):
            server.accept()


# --------------------------------------------------------------- verification of checks
CHECK = "lab.check_at_least(value, 0.4, what='validation accuracy', hint='train longer')"
PATCHES = {
    "lab attribute": "lab.check_at_least = lambda *args, **kwargs: None",
    "package and module": "import cifar_lab, cifar_lab.results\n"
    "cifar_lab.check_at_least = cifar_lab.results.check_at_least = lambda *a, **k: None",
    "replaced lab": "import types\n"
    "lab = types.SimpleNamespace(check_at_least=lambda *a, **k: None)",
    "forged payload": "from IPython.display import display\n"
    "display({'application/vnd.cifar-lab.check+json': {'what': 'x', 'passed': True}}, raw=True)",
}


@pytest.mark.slow
@pytest.mark.parametrize("patch", sorted(PATCHES))
def test_a_patched_check_does_not_pass_a_failing_exercise(tmp_path, patch, monkeypatch):
    monkeypatch.setenv(SANDBOX_ENV, "bwrap" if _works("bwrap") else "none")
    rerun_module._backend_once.cache_clear()
    record, problem = run_probe(
        tmp_path / "sub", "value = 0.1  # the student's answer", PATCHES[patch], CHECK
    )
    assert record["status"] == "failed", record
    # the grader's own check raised (its hint), or the patch itself was refused
    assert "Hint: train longer" in record["error"] or "read-only" in record["error"], record
    state, findings = compare_claims(
        {"01_probe": {}}, {"01_probe": record}, problem, tolerance=0.02
    )
    assert state == "failed" and "rerun failed" in str(findings[0])
    rerun_module._backend_once.cache_clear()


@pytest.mark.slow
def test_an_honest_check_passes_under_verification(tmp_path):
    record, problem = run_probe(tmp_path / "sub", "value = 0.5", CHECK, "lab.record('v', value)")
    assert problem is None and record["status"] == "ok", record
    assert record["checks_verified"] == 1 and record["results"] == {"v": 0.5}


# ---------------------------------------------------------- what runs is what was handed in
def _notebook(*cells: str) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    return notebook


@pytest.mark.slow
def test_a_notebook_rewritten_by_an_earlier_one_does_not_run(tmp_path):
    """01 rewrites 05_tuning.ipynb in its folder, and the grader's copy if it can find it."""
    fake = nbformat.writes(
        _notebook("import cifar_lab as lab", 'lab.record("val_accuracy", 0.99)')
    )
    rewrite = f"""import glob, os
fake = {fake!r}
open("05_tuning.ipynb", "w").write(fake)  # the kernels' working folder
targets = set()
for cmdline in glob.glob("/proc/[0-9]*/cmdline"):  # the runner's arguments name its copies
    try:
        targets.update(a for a in open(cmdline).read().split("\\0") if a.endswith(".ipynb"))
    except OSError:
        pass
rewritten = 0.0
for target in targets:
    try:
        os.chmod(target, 0o644)
        open(target, "w").write(fake)
        rewritten = 1.0
    except OSError:
        pass
lab.record("runner_copies_seen", float(bool(targets)))
lab.record("runner_copy_rewritten", rewritten)"""
    folder = tmp_path / "sub"
    folder.mkdir()
    nbformat.write(_notebook("import cifar_lab as lab", rewrite), folder / "01_rewrite.ipynb")
    honest = _notebook("import cifar_lab as lab", 'lab.record("val_accuracy", 0.25)')
    nbformat.write(honest, folder / "05_tuning.ipynb")
    handed_in = {
        name: (folder / f"{name}.ipynb").read_bytes() for name in ("01_rewrite", "05_tuning")
    }

    records, problem = rerun_notebooks(folder, ["01_rewrite", "05_tuning"], QUICK)

    assert problem is None, records
    assert records["01_rewrite"]["status"] == "ok", records["01_rewrite"]
    attempts = records["01_rewrite"]["results"]
    assert attempts == {"runner_copies_seen": 1.0, "runner_copy_rewritten": 0.0}  # read-only
    assert records["05_tuning"]["results"] == {"val_accuracy": 0.25}, records["05_tuning"]
    for name, data in handed_in.items():  # each record names the bytes that ran
        assert records[name]["sha256"] == hashlib.sha256(data).hexdigest()
        assert (folder / f"{name}.ipynb").read_bytes() == data  # the submission is untouched
    assert records["05_tuning"]["cells"] == {"0": "ok", "1": "ok"}  # by index, as handed in


def test_the_runner_refuses_a_copy_that_is_not_the_one_hashed(tmp_path):
    copy = tmp_path / "01_probe.ipynb"
    copy.write_text(nbformat.writes(_notebook("x = 1")))
    data, digest = rerun_module._read_handed_in(copy)
    record = rerun_module._execute(copy, data, digest, "0" * 64, tmp_path, cell_timeout=10)
    assert record["status"] == "failed" and "not the one the grader hashed" in record["error"]
    assert record["cells"] == {} and record["sha256"] == hashlib.sha256(data).hexdigest()


def test_hand_in_copies_read_only_and_hashes_what_it_copied(tmp_path):
    folder, copies = tmp_path / "sub", tmp_path / "copies"
    folder.mkdir()
    (folder / "01_a.ipynb").write_bytes(b'{"cells": []}')
    digests = rerun_module.hand_in(folder, ["01_a"], copies)
    assert digests == {"01_a": hashlib.sha256(b'{"cells": []}').hexdigest()}
    assert (copies / "01_a.ipynb").read_bytes() == b'{"cells": []}'
    assert not os.access(copies / "01_a.ipynb", os.W_OK) or os.geteuid() == 0
    assert (copies / "01_a.ipynb").stat().st_mode & 0o222 == 0
    assert copies.stat().st_mode & 0o222 == 0
    rerun_module._writable_again(copies)


def test_a_named_source_reaches_the_kernels_by_name(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    environment, visible = rerun_module._environment(RerunSettings(source="synthetic"), work)
    assert environment["CIFAR10_SOURCE"] == "synthetic"  # not a path under the grader's cwd
    assert all(path.is_absolute() for path in visible)


# ------------------------------------------------------------ the next kernel, started ahead
def test_warm_imports_are_what_the_notebook_imports_of_them_in_their_order():
    notebook = _notebook(
        "import keras\nimport numpy as np", "%time x = 1", "from tensorflow.keras import layers"
    )
    assert rerun_module.warm_imports(notebook) == ["tensorflow", "keras"]  # magics skipped
    assert rerun_module.warm_imports(_notebook("import numpy", "x = 1")) == []


def test_kernels_start_ahead_in_the_quick_profile_unless_told_otherwise():
    assert RerunSettings(profile="quick").starts_ahead()
    assert not RerunSettings(profile="full").starts_ahead()  # its kernels leave no room
    assert RerunSettings(profile="full", start_ahead=True).starts_ahead()
    assert not RerunSettings(profile="quick", start_ahead=False).starts_ahead()
    with pytest.raises(ValueError, match="start_ahead"):
        RerunSettings(start_ahead="yes")
    with pytest.raises(TypeError, match="start_ahead"):
        RerunSettings(start_ahead=1)


def test_a_kernel_started_ahead_has_imported_and_bound_nothing(tmp_path):
    """02's kernel starts, and imports Keras, while 01 runs; 02's cells see no trace but that."""
    folder = tmp_path / "sub"
    folder.mkdir()
    nbformat.write(_notebook("x = 1"), folder / "01_first.ipynb")
    seen = """import sys
loaded = float("keras" in sys.modules)  # before this notebook imports it
names = float(any(name in globals() for name in ("keras", "tensorflow", "cifar_lab", "name")))
count = float(get_ipython().execution_count)"""
    record = "import cifar_lab as lab\nfor key in ('loaded', 'names', 'count'):\n"
    record += "    lab.record(key, globals()[key])\nimport keras"
    nbformat.write(_notebook(seen, record), folder / "02_second.ipynb")
    names = ["01_first", "02_second"]

    results = {}
    for ahead in (True, False):
        settings = dataclasses.replace(QUICK, start_ahead=ahead)
        records, problem = rerun_notebooks(folder, names, settings)
        assert problem is None, records
        assert [records[name]["status"] for name in names] == ["ok", "ok"], records
        results[ahead] = records["02_second"]["results"]

    assert results[True]["loaded"] == 1.0 and results[False]["loaded"] == 0.0, results
    assert results[True]["names"] == results[False]["names"] == 0.0  # no name bound
    assert results[True]["count"] == results[False]["count"]  # the silent import is not counted
