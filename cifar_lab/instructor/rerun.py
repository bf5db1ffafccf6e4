"""Re-execution (``grade --rerun``): run a submission's notebooks again, caged, in a child process.

Each submission runs in a separate process (``python -m cifar_lab.instructor.rerun``,
the *runner*) on copies of its notebooks, with the student's outputs cleared
first so that nothing claimed survives unless it is recomputed. Two limits
apply: a per-cell timeout (default 1 hour, enough for the full profile's
training cells on a CPU) and a total timeout per submission (default 4 hours).

**Isolation** (:mod:`cifar_lab.instructor.sandbox`). The runner and the
kernels it starts run inside bubblewrap, else ``unshare``: no network, a
read-only view of everything outside their working folder, and a pid namespace
of their own, so that when the runner ends or is killed every process the
notebooks started dies with it, detached children included. Where neither
works, ``--rerun`` prints a loud warning and the README says to use a
container. The environment is built from nothing (no grader variable passes
through): a private ``HOME`` and ``TMPDIR`` inside the working folder,
``CIFAR_LAB_PROFILE``, ``CIFAR10_SOURCE`` (from ``--source``, read-only) and
the decoded-data cache (read-only when it already holds that source, else a
private one). Nothing is downloaded: without a local CIFAR-10 copy the full
profile fails and says so.

**Nothing read back that a student can write.** The runner reports to the grader
through a pipe that only it holds (the kernels do not inherit it, and the runner is made
non-dumpable so that a kernel cannot open it through ``/proc``); no pid, path
or verdict is read from the working folder. The grader kills the tree it started by
walking ``/proc`` from the runner's pid, and the pid namespace takes whatever
is left. Checks are verified with the grader's own check functions, see
:mod:`cifar_lab.instructor.pristine_checks` for how, and what that does not stop.
:func:`cifar_lab.instructor.claims.compare_claims` then compares every recorded
result with the re-executed value.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifar_lab.checks import check_int, check_number, check_optional_int
from cifar_lab.instructor.claims import DEFAULT_RERUN_TOLERANCE
from cifar_lab.instructor.findings import MEGABYTE
from cifar_lab.instructor.inspection import recorded_results
from cifar_lab.instructor.notebooks import notebook_client
from cifar_lab.instructor.pristine_checks import PRISTINE_TAG, is_check_cell, with_pristine_checks
from cifar_lab.instructor.sandbox import (
    choose_backend,
    clean_environment,
    isolation_warning,
    kill_descendants,
    sandbox_command,
    thread_variables,
)
from cifar_lab.profiles import PROFILE_ENV, get_profile

MAX_STATUS_BYTES = 16 * MEGABYTE  # the runner's report; more is cut off, not read into memory
_PR_SET_DUMPABLE, _PR_SET_CHILD_SUBREAPER = 4, 36


@dataclass(frozen=True)
class RerunSettings:
    """Limits and comparison settings for re-execution.

    Attributes:
        cell_timeout: seconds any single cell may take.
        total_timeout: seconds the whole submission may take.
        profile: ``CIFAR_LAB_PROFILE`` for the kernels (``"full"`` or ``"quick"``).
        tolerance: largest accepted |claimed - recomputed| for a recorded result.
        source: CIFAR-10 copy for the kernels (``CIFAR10_SOURCE``), or None.
        threads: TensorFlow and BLAS threads per pool in the kernels (None: their
            defaults, every core); ``grade --workers N`` sets cores // N.
    """

    cell_timeout: int = 3600
    total_timeout: int = 4 * 3600
    profile: str = "full"
    tolerance: float = DEFAULT_RERUN_TOLERANCE
    source: str | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        for name in ("cell_timeout", "total_timeout"):  # whole seconds
            check_int(name, getattr(self, name), minimum=1)
        check_optional_int("threads", self.threads, minimum=1)
        check_number("tolerance", self.tolerance, minimum=0, maximum=1, maximum_inclusive=False)
        get_profile(self.profile)  # a typo fails here, not hours later


@functools.lru_cache(maxsize=8)
def _shared_cache(source: str) -> Path | None:
    """The grader's decoded-data cache folder if it already holds ``source``, else None."""
    from cifar_lab.data.cache import default_cache_dir, fingerprint

    path, folder = Path(source), default_cache_dir()
    if not path.exists():
        return None
    return folder if (folder / f"{path.name}-{fingerprint(path)}.npz").is_file() else None


def _environment(settings: RerunSettings, work: Path) -> tuple[dict[str, str], list[Path]]:
    """(clean environment, folders the sandbox must show read-only)."""
    home, package_parent = work / ".home", Path(__file__).resolve().parents[2]
    (home / ".cache").mkdir(parents=True)
    (work / ".tmp").mkdir()
    source = str(Path(settings.source).resolve()) if settings.source else None
    shared = _shared_cache(source) if source else None
    environment = clean_environment(
        home,
        work / ".tmp",
        PYTHONPATH=str(package_parent),  # the kernels import this cifar_lab
        TF_CPP_MIN_LOG_LEVEL="3",
        CIFAR10_SOURCE=source,
        CIFAR_LAB_CACHE=str(shared or home / ".cache" / "cifar_lab"),
        **{PROFILE_ENV: settings.profile},
        **thread_variables(settings.threads),  # workers sharing the cores (grade --workers)
    )
    python = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parents[1]]
    visible = [*python, package_parent, *[Path(p) for p in (source, shared) if p]]
    return environment, visible


@functools.lru_cache(maxsize=1)
def _backend_once() -> str | None:
    backend = choose_backend()
    warning = isolation_warning(backend)
    if warning:
        print(f"\n{'!' * 78}\n{warning}\n{'!' * 78}\n", file=sys.stderr, flush=True)
    return backend


def rerun_notebooks(
    folder: Path, names: list[str], settings: RerunSettings
) -> tuple[dict[str, dict], str | None]:
    """Execute copies of ``folder/<name>.ipynb`` in order, in a sandboxed child process.

    Args:
        folder: the submission's notebook folder (not modified).
        names: notebook stems to run, in order.
        settings: limits and environment.

    Returns:
        (record per notebook that finished: ``{"status", "error", "results",
        "checks_verified"}``, None or what went wrong with the process as a
        whole, e.g. the total limit).
    """
    backend = _backend_once()
    with tempfile.TemporaryDirectory(prefix="cifar_lab_rerun_") as temporary:
        work = Path(temporary) / "work"  # the only folder the notebooks can write
        work.mkdir()
        for name in names:
            shutil.copyfile(Path(folder) / f"{name}.ipynb", work / f"{name}.ipynb")
        environment, visible = _environment(settings, work)
        read_end, write_end = os.pipe()
        command = [sys.executable, "-m", "cifar_lab.instructor.rerun", "--cell-timeout"]
        command += [str(settings.cell_timeout), "--status-fd", str(write_end)]
        command += [str(work / f"{name}.ipynb") for name in names]
        command = sandbox_command(command, backend=backend, work_dir=work, read_only=visible)
        log_path = Path(temporary) / "rerun.log"  # outside the notebooks' folder
        with open(log_path, "wb") as log:
            child = subprocess.Popen(
                command, cwd=work, env=environment, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(write_end,), start_new_session=True,
            )  # fmt: skip
        os.close(write_end)
        report = _PipeReader(read_end)
        try:
            code, problem = child.wait(timeout=settings.total_timeout), None
        except subprocess.TimeoutExpired:
            code, problem = 0, f"stopped at the total limit of {settings.total_timeout} s"
        finally:
            kill_tree(child)
        report.join()
        if code != 0:
            last = (log_path.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
            problem = f"the rerun process exited with code {code}: {last[:200]}"
        return _parse_status(report.data), problem


def kill_tree(child: subprocess.Popen) -> None:
    """SIGKILL ``child`` and everything below it, found from ``/proc``, then reap ``child``.

    The tree is read from the kernel's process table, never from a file: processes
    that left ``child``'s session are still found while ``child`` lives (the runner is a
    child subreaper, so orphans stay below it); in a pid namespace the rest dies with it.
    """
    kill_descendants(child.pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


class _PipeReader(threading.Thread):
    """Read the runner's report (at most :data:`MAX_STATUS_BYTES`) while it runs."""

    def __init__(self, descriptor: int) -> None:
        super().__init__(daemon=True)
        self.descriptor, self.data = descriptor, b""
        self.start()

    def run(self) -> None:
        with os.fdopen(self.descriptor, "rb") as pipe:
            while chunk := pipe.read(1 << 16):
                if len(self.data) < MAX_STATUS_BYTES:
                    self.data += chunk[: MAX_STATUS_BYTES - len(self.data)]


def _parse_status(data: bytes) -> dict[str, dict]:
    records = {}
    for line in data.decode("utf-8", errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and isinstance(record.get("notebook"), str):
                records[record["notebook"]] = record
    return records


def _execute(path: Path, cell_timeout: int) -> dict[str, Any]:
    """Run one notebook with cleared outputs and the grader's checks; return its record."""
    import nbformat

    record: dict[str, Any] = {"notebook": path.stem, "status": "ok", "error": None}
    notebook, verified = None, {"checks": 0}
    try:
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":  # a claim must not survive unless recomputed
                cell.outputs, cell.execution_count = [], None
        notebook = with_pristine_checks(notebook)
        client = notebook_client(notebook, path.parent, cell_timeout)
        client.on_cell_executed = functools.partial(_count_check, verified)
        client.execute()
    except Exception as error:  # cell error, timeout, dead kernel: all mean "failed"
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # IPython's colours
        lines = [line for line in text.strip().splitlines() if line.strip("-=~ ")]
        lines = lines or [type(error).__name__]  # a timeout's first line says it; its last is ---
        line = lines[0] if isinstance(error, TimeoutError) else lines[-1]
        record.update(status="failed", error=f"{type(error).__name__}: {line[:300]}")
    record["results"] = recorded_results(notebook) if notebook is not None else {}
    record["checks_verified"] = verified["checks"]
    return record


def _count_check(verified: dict, cell, cell_index: int, execute_reply: dict, **_) -> None:
    """Count check cells whose execution the kernel reported as successful."""
    tags = cell.get("metadata", {}).get("tags", [])
    ok = (execute_reply or {}).get("content", {}).get("status") == "ok"
    if ok and PRISTINE_TAG not in tags and is_check_cell(cell):
        verified["checks"] += 1


def _harden(status_fd: int) -> None:
    """Keep the report pipe from the kernels, and orphans below this process (Linux)."""
    os.set_inheritable(status_fd, False)
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)  # no /proc/<pid>/fd, no ptrace for kernels
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # double-forked daemons stay ours


def main(argv: list[str] | None = None) -> int:
    """Runner entry point: execute notebooks in order, one report line each."""
    parser = argparse.ArgumentParser(prog="python -m cifar_lab.instructor.rerun")
    parser.add_argument("--cell-timeout", type=int, required=True)
    parser.add_argument("--status-fd", type=int, required=True)
    parser.add_argument("notebooks", type=Path, nargs="+")
    args = parser.parse_args(argv)
    _harden(args.status_fd)
    signal.signal(signal.SIGTERM, lambda *_: (kill_descendants(os.getpid()), os._exit(1)))
    try:
        with os.fdopen(args.status_fd, "w", encoding="utf-8") as status:
            for path in args.notebooks:
                status.write(json.dumps(_execute(path, args.cell_timeout)) + "\n")
                status.flush()
    finally:
        kill_descendants(os.getpid())  # whatever the notebooks left running
    return 0


if __name__ == "__main__":
    sys.exit(main())
