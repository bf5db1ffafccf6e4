"""``grade --rerun`` runs student notebooks caged: each test is a cell that tries to get out.

Every kernel-starting test runs under each sandbox backend that works on this
machine (bubblewrap, ``unshare``); a backend that does not work is skipped
with its reason. The detached-child test also runs without a sandbox, where
the runner's child-subreaper sweep must still end the child.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import uuid
from pathlib import Path

import nbformat
import pytest
from sandbox_fixtures import SANDBOXED, run_probe

from cifar_lab.instructor import rerun as rerun_module
from cifar_lab.instructor.claims import compare_claims
from cifar_lab.instructor.pristine_checks import PRISTINE_TAG, with_pristine_checks
from cifar_lab.instructor.rerun import RerunSettings
from cifar_lab.instructor.sandbox import SANDBOX_ENV, _works, isolation_warning, sandbox_command


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
