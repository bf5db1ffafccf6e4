"""Re-execution (what ``grade`` does by default): run a submission's notebooks again, caged.

Each submission runs in a separate process (``python -m cifar_lab.instructor.rerun``,
the *runner*) on copies of its notebooks, with the student's outputs cleared
first so that nothing claimed survives unless it is recomputed. Limits: a
per-cell timeout (default 1 hour, enough for the full profile's training cells
on a CPU), and for the whole re-run of a submission a total timeout (default 4
hours), a memory ceiling (4096 MB, all its processes together), a disk quota
(1024 MB) and a process limit (64), watched by the grader
(:func:`~cifar_lab.instructor.sandbox.watch_tree`); past any of them the re-run is
killed and the row names the limit. Its peak memory joins the row's
``peak_memory_mb`` and the grader's closing peak line.
The default profile is the quick one (:class:`RerunSettings`, the one place it is set).

**What runs is what was handed in.** Before anything runs, the grader copies every
notebook into a folder of its own outside the kernels' working folder (read-only,
and only ever shown read-only in the sandbox) and hashes each copy (SHA-256). The
runner reads every notebook from there, and checks its hash, before the first cell
of the first notebook runs; it then executes them from memory, with the kernels
started in the working folder. A file the student's code writes (a rewritten
``05_tuning.ipynb`` included) is never read back as a notebook. Each notebook's
record carries the hash it ran from.

**Each notebook in a fresh kernel, started ahead.** Every notebook runs in a kernel of
its own. While one notebook runs, the next one's kernel is already started (same
set-up, folder, environment and cage) and imports, silently and binding no name, what
that notebook imports of :data:`WARM_IMPORTS` (TensorFlow, Keras): kernel start and
imports then overlap the running notebook instead of adding to the re-run's time
(in the quick profile, the grading default; see ``RerunSettings.start_ahead``).

**Isolation** (:mod:`cifar_lab.instructor.sandbox`). The runner and the
kernels it starts run inside bubblewrap, else ``unshare``: no network, under
bubblewrap nothing visible but the Python install and environment, the course
package and the data (read-only) and their working folder, and a pid namespace
of their own, so that when the runner ends or is killed every process the
notebooks started dies with it, detached children included. Where neither
works, ``grade`` prints a loud warning and docs/grading.md says to use a
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
is left. Checks are verified with the grader's own check functions, see the pristine
checks in :mod:`cifar_lab.instructor.verdicts` for how, and what that does not stop;
after each notebook the runner runs the grader's probes of it in its kernel
(:mod:`cifar_lab.instructor.verdicts`), whose verdicts decide the probed checks.
:func:`cifar_lab.instructor.claims.compare_claims` then compares every recorded
result with the re-executed value.

**Nothing sent back that a student's code wrote.** A failed notebook's error text,
and the runner's log, are the student's code talking: the first goes to the
instructor's report as a finding's ``detail``, the second to the grader's console,
and neither to the student's feedback, which names failures and limits in the
grader's words only (so a cell cannot print a file it read into it).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import hashlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifar_lab.checks import (
    check_bool_or_auto,
    check_int,
    check_number,
    check_optional_int,
)
from cifar_lab.instructor.claims import DEFAULT_RERUN_TOLERANCE
from cifar_lab.instructor.findings import MEGABYTE
from cifar_lab.instructor.inspection import recorded_results
from cifar_lab.instructor.notebooks import notebook_client
from cifar_lab.instructor.sandbox import (
    Budget,
    Ceilings,
    choose_backend,
    clean_environment,
    isolation_warning,
    kill_descendants,
    python_install,
    sandbox_command,
    thread_variables,
    watch_tree,
)
from cifar_lab.instructor.verdicts import (
    PRISTINE_TAG,
    PROBE_TIMEOUT,
    accuracy_notebooks,
    after_check_probe,
    is_check_cell,
    load_validation,
    probe_notebook,
    run_probe_async,
    with_pristine_checks,
)
from cifar_lab.profiles import PROFILE_ENV, get_profile

MAX_STATUS_BYTES = 16 * MEGABYTE  # the runner's report; more is cut off, not read into memory
_PR_SET_DUMPABLE, _PR_SET_CHILD_SUBREAPER = 4, 36
NAMED_SOURCES = ("keras", "synthetic")  # load_cifar10's sources that are not paths
_POSITION = "cifar_lab_rerun_position"  # cell metadata: its index in the handed-in file


@dataclass(frozen=True)
class RerunSettings:
    """Limits and comparison settings for re-execution.

    Attributes:
        cell_timeout: seconds any single cell may take.
        total_timeout: seconds the whole submission may take.
        profile: ``CIFAR_LAB_PROFILE`` for the kernels (``"full"`` or ``"quick"``).
        tolerance: largest accepted |claimed - recomputed| for a recorded result.
        source: CIFAR-10 copy for the kernels (``CIFAR10_SOURCE``), or None.
        memory_bytes: resident memory of the whole re-run (runner, kernels, whatever they
            start), summed; past it the re-run is killed.
        disk_bytes: what the notebooks may write (bubblewrap: a tmpfs of this size).
        max_processes: live processes in the cage, the sandbox's own included.
        threads: TensorFlow and BLAS threads per pool in the kernels (None: their
            defaults, every core); ``grade --workers N`` sets cores // N.
        start_ahead: start each notebook's kernel, and its imports, while the previous
            notebook runs (True, :func:`_start_ahead`), or each one in its turn (False);
            ``"auto"``: in the quick profile only. The kernel started ahead counts
            towards ``memory_bytes`` (~0.7 GB resident once TensorFlow is loaded): room
            the quick profile leaves (its whole re-run peaked at 2.2 GB), the full one
            not (notebook 04's kernel alone peaks at 3.1 GB there).
    """

    cell_timeout: int = 3600
    total_timeout: int = 4 * 3600
    profile: str = "quick"  # the grading default: every notebook re-runs in minutes
    tolerance: float = DEFAULT_RERUN_TOLERANCE
    source: str | None = None
    memory_bytes: int = 4096 * MEGABYTE
    disk_bytes: int = 1024 * MEGABYTE
    max_processes: int = 64
    threads: int | None = None
    start_ahead: bool | str = "auto"

    def __post_init__(self) -> None:
        for name in ("cell_timeout", "total_timeout"):  # whole seconds
            check_int(name, getattr(self, name), minimum=1)
        for name in ("memory_bytes", "disk_bytes"):
            check_int(name, getattr(self, name), minimum=MEGABYTE)
        check_int("max_processes", self.max_processes, minimum=8)  # the cage itself uses ~4
        check_optional_int("threads", self.threads, minimum=1)
        check_bool_or_auto("start_ahead", self.start_ahead)
        check_number("tolerance", self.tolerance, minimum=0, maximum=1, maximum_inclusive=False)
        get_profile(self.profile)  # a typo fails here, not hours later

    def starts_ahead(self) -> bool:
        """Whether the next notebook's kernel starts while one runs (``start_ahead`` resolved)."""
        return self.profile == "quick" if self.start_ahead == "auto" else bool(self.start_ahead)


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
    package = Path(__file__).resolve().parents[1]  # cifar_lab/, not the checkout around it
    home, package_parent = work / ".home", package.parent
    (home / ".cache").mkdir(parents=True)
    (work / ".tmp").mkdir()
    source = settings.source  # a named source ("synthetic") passes as it is; a path, resolved
    if source and source not in NAMED_SOURCES:
        source = str(Path(source).resolve())
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
    folders = [Path(p) for p in (source, shared) if p and p not in NAMED_SOURCES]
    visible = [*python_install(), package, *folders]
    return environment, visible


@functools.lru_cache(maxsize=1)
def _backend_once() -> str | None:
    backend = choose_backend()
    warning = isolation_warning(backend)
    if warning:
        print(f"\n{'!' * 78}\n{warning}\n{'!' * 78}\n", file=sys.stderr, flush=True)
    return backend


def rerun_notebooks(
    folder: Path, names: list[str], settings: RerunSettings, budget: Budget | None = None
) -> tuple[dict[str, dict], str | None]:
    """Execute copies of ``folder/<name>.ipynb`` in order, in a sandboxed child process.

    Args:
        folder: the submission's notebook folder (not modified).
        names: notebook stems to run, in order.
        settings: limits and environment.
        budget: the submission's budget; the re-run's peak memory is added to its
            ``child_peaks`` (None: not recorded).

    Returns:
        (record per notebook that finished: ``{"status", "error", "error_kind",
        "results", "checks_verified", "cells", "sha256", "verdicts"}``, None or what
        went wrong with the process as a whole in the grader's own words, e.g. the
        limit it passed). ``error`` is text the student's code produced (for the
        instructor only); ``error_kind`` says what failed in the grader's words
        (e.g. "a cell raised an error"). ``cells`` maps the index (a
        string) of each code cell that ran, in the notebook as handed in, to
        ``"ok"`` or ``"error"``, as the kernel replied;
        ``sha256`` is the hash of the notebook as handed in, the one that ran;
        ``verdicts`` maps grade_id to the grader's probe verdict.
    """
    backend = _backend_once()
    with tempfile.TemporaryDirectory(prefix="cifar_lab_rerun_") as temporary:
        work = Path(temporary) / "work"  # the only folder the notebooks can write
        work.mkdir()
        handed_in = Path(temporary) / "handed_in"  # outside it, read-only
        digests = hand_in(Path(folder), names, handed_in)
        environment, visible = _environment(settings, work)
        read_end, write_end = os.pipe()
        # -P: the runner imports nothing from its working folder, which the kernels can write
        command = [sys.executable, "-P", "-m", "cifar_lab.instructor.rerun", "--cell-timeout"]
        command += [str(settings.cell_timeout), "--status-fd", str(write_end)]
        command += ["--work-dir", str(work), "--max-file-bytes", str(settings.disk_bytes)]
        command += [] if settings.starts_ahead() else ["--one-kernel-at-a-time"]
        for name in names:  # one hash per notebook, in the notebooks' order
            command += ["--sha256", digests[name]]
        command += [str(handed_in / f"{name}.ipynb") for name in names]
        disk = settings.disk_bytes if backend == "bwrap" else None
        command = sandbox_command(
            command,
            backend=backend,
            work_dir=work,
            read_only=[*visible, handed_in],
            disk_bytes=disk,
        )
        log_path = Path(temporary) / "rerun.log"  # outside the notebooks' folder
        with open(log_path, "wb") as log:
            child = subprocess.Popen(
                command, cwd=work, env=environment, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(write_end,), start_new_session=True,
            )  # fmt: skip
        os.close(write_end)
        report = _PipeReader(read_end)
        ceilings = Ceilings(
            settings.memory_bytes, settings.disk_bytes, settings.max_processes,
            settings.total_timeout,
        )  # fmt: skip
        tmpfs = disk is not None  # else the folder is walked for its size
        try:
            peak, problem = watch_tree(child, ceilings, work, what="the re-run", tmpfs=tmpfs)
        finally:
            kill_tree(child)
        report.join()
        if budget is not None:
            budget.child_peaks.append(peak)
        if problem is None and child.returncode != 0:  # the runner or the sandbox failed
            problem = f"the rerun process exited with code {child.returncode}"
            _print_log_tail(log_path, problem)
        _writable_again(handed_in)  # so that the temporary folder can be removed
        records = _parse_status(report.data)
        if problem is None and any(r.get("disk_full") is True for r in records.values()):
            # a write that fills the tmpfs fails at once: the run can end between two samples
            problem = f"the re-run filled its {settings.disk_bytes / MEGABYTE:.0f} MB disk quota"
        return records, problem


def _print_log_tail(log_path: Path, problem: str) -> None:
    """Show the instructor the end of the runner's log (it may hold student text: never a row)."""
    tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
    print(f"{problem}; its log ends:", *[f"  {line[:300]}" for line in tail], sep="\n")


def hand_in(folder: Path, names: list[str], copies: Path) -> dict[str, str]:
    """Copy ``folder/<name>.ipynb`` into ``copies``, read-only; return each copy's SHA-256.

    Each file is read once; the hash is of the bytes written, so the copy is what was hashed.

    Args:
        folder: the submission's notebook folder.
        names: notebook stems.
        copies: a new folder, made read-only once filled.

    Returns:
        ``{name: hex digest}``.
    """
    copies.mkdir()
    digests = {}
    for name in names:
        data = (folder / f"{name}.ipynb").read_bytes()
        copy = copies / f"{name}.ipynb"
        copy.write_bytes(data)
        copy.chmod(0o444)
        digests[name] = hashlib.sha256(data).hexdigest()
    copies.chmod(0o555)
    return digests


def _writable_again(copies: Path) -> None:
    with contextlib.suppress(OSError):
        copies.chmod(0o755)


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


# how a failed notebook is named to the student (the error's own text is the student's)
_ERROR_KINDS = {
    "CellExecutionError": "a cell raised an error",
    "CellTimeoutError": "a cell ran longer than the cell timeout",
    "DeadKernelError": "the kernel died",
}


def _read_handed_in(path: Path) -> tuple[bytes, str]:
    """The bytes of one handed-in copy and their SHA-256 (read before any cell runs)."""
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


def _prepare(data: bytes, digest: str, expected: str):
    """The notebook to run: parsed from the handed-in bytes, outputs cleared, pristine checks.

    Args:
        data: the handed-in copy's bytes, read before any notebook ran.
        digest: their SHA-256.
        expected: the SHA-256 the grader computed when it made the copy.

    Returns:
        An nbformat v4 notebook node.

    Raises:
        ValueError: the hashes differ, or the bytes are not a notebook.
    """
    import nbformat

    if digest != expected:  # never runs: something changed the grader's copy
        raise ValueError(f"the notebook is not the one the grader hashed ({expected})")
    notebook = nbformat.reads(data.decode("utf-8"), as_version=4)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":  # a claim must not survive unless recomputed
            cell.outputs, cell.execution_count = [], None
        cell.metadata[_POSITION] = index  # set on every cell; the kernel never sees it
    return with_pristine_checks(notebook)


# ------------------------------------------- the next kernel, started while one runs
# What the course notebooks import in their first cell (cifar_lab first: it quiets
# TensorFlow's start-up log). Importing TensorFlow and Keras takes a fresh kernel
# several seconds of one core; done while the previous notebook runs, it leaves the
# critical path. A kernel started ahead imports those of them that its notebook imports
# itself (:func:`warm_imports`), binding no name: the notebook's own ``import``
# statements still run, and find the modules loaded.
WARM_IMPORTS = ("cifar_lab", "tensorflow", "keras")


def warm_imports(notebook) -> list[str]:
    """The modules of :data:`WARM_IMPORTS` that a notebook's code cells import, in that order.

    Args:
        notebook: an nbformat notebook node.

    Returns:
        Top-level package names, e.g. ``["cifar_lab", "tensorflow", "keras"]``; cells
        that are not plain Python (magics) are skipped.
    """
    imported = set()
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.partition(".")[0])
    return [name for name in WARM_IMPORTS if name in imported]


@dataclass
class _Ahead:
    """A notebook prepared, and its kernel started, before its turn (:func:`_start_ahead`).

    Attributes:
        notebook: the prepared notebook node (:func:`_prepare`).
        client: its ``NotebookClient``, whose kernel manager has started the kernel.
        shell: the client that asked the kernel for :data:`WARM_IMPORTS` (None: not asked).
        request: the id of that request.
    """

    notebook: Any
    client: Any
    shell: Any = None
    request: str = ""


def _start_ahead(
    data: bytes, digest: str, expected: str, work: Path, cell_timeout: int
) -> _Ahead | None:
    """Prepare a notebook and start its kernel now, which imports :data:`WARM_IMPORTS`.

    The kernel is started as the notebook's own would be (same client set-up, folder,
    environment and cage), only earlier: it boots, and imports what the notebook imports
    of :data:`WARM_IMPORTS` silently (no history, no execution count, no name bound),
    while the previous notebook runs. A notebook that runs before it can reach it, as
    it could reach the next kernel through the files they share (the working folder,
    ``HOME``): the grader's pristine checks and probes, not the kernel's past, decide
    the points.

    Args:
        data, digest, expected: as :func:`_prepare` takes them.
        work: the kernels' working folder.
        cell_timeout: seconds any single cell may take.

    Returns:
        The started notebook, or None when preparing or starting failed: the
        notebook then starts in its turn and fails there as it would have.
    """
    try:
        notebook = _prepare(data, digest, expected)
        client = notebook_client(notebook, work, cell_timeout)
        client.km = client.create_kernel_manager()
        client.start_new_kernel()  # launches the process and returns while it boots
    except Exception:
        return None  # a half-started kernel is ended with the runner's others
    ahead, modules = _Ahead(notebook, client), warm_imports(notebook)
    if not modules:
        return ahead
    with contextlib.suppress(Exception):  # not asked: the notebook imports them itself
        from jupyter_client.blocking import BlockingKernelClient

        info: dict[str, Any] = dict(client.km.get_connection_info(session=True))
        for key in ("curve_publickey", "curve_secretkey"):  # as KernelManager.client
            if isinstance(info.get(key), str):
                info[key] = info[key].encode("ascii")
        shell = BlockingKernelClient(**info, connection_file=client.km.connection_file)
        shell.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
        # queued by ZeroMQ until the kernel listens
        source = f"[__import__(name) for name in {modules!r}]"
        ahead.request = shell.execute(source, silent=True, store_history=False, allow_stdin=False)
        ahead.shell = shell
    return ahead


def _await_imports(ahead: _Ahead, timeout: float) -> None:
    """Wait until the kernel started ahead has answered its import request, then close it.

    The notebook's first cell then runs after the imports, never alongside them. A
    kernel that died or does not answer in ``timeout`` seconds is left to the
    notebook's client, which reports it as it would any kernel that failed to start.
    """
    import queue

    if ahead.shell is None:
        return
    process = getattr(getattr(ahead.client.km, "provisioner", None), "process", None)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and (process is None or process.poll() is None):
            try:
                reply = ahead.shell.get_shell_msg(timeout=1)
            except queue.Empty:
                continue
            if reply.get("parent_header", {}).get("msg_id") == ahead.request:
                return
    except Exception:  # a closed or broken channel: the notebook's client takes over
        return
    finally:
        with contextlib.suppress(Exception):
            ahead.shell.stop_channels()


def _execute(
    path: Path,
    data: bytes,
    digest: str,
    expected: str,
    work: Path,
    cell_timeout: int,
    validation=None,
    ahead: _Ahead | None = None,
) -> dict[str, Any]:
    """Run one handed-in notebook, outputs cleared, with the grader's checks; return its record.

    Args:
        path: the grader's read-only copy (its stem names the record).
        data: its bytes, read before any notebook ran.
        digest: their SHA-256.
        expected: the SHA-256 the grader computed when it made the copy.
        work: the kernel's working folder (the only one it can write).
        cell_timeout: seconds any single cell may take.
        validation: the grader's labelled images for the accuracy probes, or None.
        ahead: this notebook, prepared and its kernel started by :func:`_start_ahead`
            (None: prepared and started now).

    Returns:
        ``{"notebook", "status", "error", "sha256", "results", "checks_verified", "cells",
        "verdicts"}``.
    """
    record: dict[str, Any] = {"notebook": path.stem, "status": "ok", "error": None}
    record["sha256"], record["error_kind"] = digest, None
    notebook, verified, client, hook = None, {"checks": 0, "cells": {}}, None, None
    try:
        if ahead is not None:
            notebook, client = ahead.notebook, ahead.client
            _await_imports(ahead, cell_timeout)
        else:
            notebook = _prepare(data, digest, expected)
            client = notebook_client(notebook, work, cell_timeout)
        hook = _AfterCell(verified, client, path.stem, work, validation)
        client.on_cell_executed = hook
        client.execute(cleanup_kc=False)  # the kernel stays up for the grader's probes
    except Exception as error:  # cell error, timeout, dead kernel: all mean "failed"
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # IPython's colours
        lines = [line for line in text.strip().splitlines() if line.strip("-=~ ")]
        lines = lines or [type(error).__name__]  # a timeout's first line says it; its last is ---
        line = lines[0] if isinstance(error, TimeoutError) else lines[-1]
        kind = type(error).__name__
        words = _ERROR_KINDS.get(kind, kind)
        record.update(status="failed", error=f"{kind}: {line[:300]}", error_kind=words)
    record["results"] = recorded_results(notebook) if notebook is not None else {}
    record["checks_verified"] = verified["checks"]
    record["cells"] = verified["cells"]
    record["disk_full"] = _disk_full(work)  # before the probes, which write there too
    after = hook.verdicts if hook is not None else {}  # probes right after their checks
    record["verdicts"] = _probe_verdicts(client, path.stem, work, cell_timeout, validation) | after
    return record


# ------------------------------------------------- verdicts (cifar_lab.instructor.verdicts)
def _probe_verdicts(
    client, notebook: str, work: Path, cell_timeout: int, validation
) -> dict[str, dict]:
    """Run the grader's probes of one notebook in its kernel; judge them here; kill the kernel.

    Args:
        client: the notebook's ``NotebookClient``, its kernel still up (None: it never started).
        notebook: the notebook's stem.
        work: the kernel's working folder (the probes' folders are made there).
        cell_timeout: the re-run's cell limit (a probe gets at most PROBE_TIMEOUT).
        validation: the grader's labelled images for the accuracy probes, or None.
    """
    import nbformat

    def execute(source: str) -> None:
        cell = nbformat.v4.new_code_cell(source)  # not part of the notebook: no results read
        client.execute_cell(cell, len(client.nb.cells), store_history=False)

    try:
        if client is not None and client.kc is not None:
            client.timeout, client.interrupt_on_timeout = min(cell_timeout, PROBE_TIMEOUT), True
            return probe_notebook(notebook, work, execute, validation)
        return probe_notebook(notebook, work, _no_kernel, validation)
    finally:
        if client is not None:
            # killed, not asked to shut down: nothing more is read from it, and a kernel
            # that has loaded TensorFlow takes seconds to exit politely (~3.5 s measured)
            client.shutdown_kernel = "immediate"
            with contextlib.suppress(Exception):
                client._cleanup_kernel()


def _disk_full(work: Path) -> bool:
    """Whether the working folder's file system has under 1 MB left (the tmpfs quota is spent)."""
    try:
        usage = os.statvfs(work)
    except OSError:
        return False
    return usage.f_bavail * usage.f_frsize < MEGABYTE


def _no_kernel(source: str) -> None:
    raise RuntimeError("the notebook's kernel did not start")


def _validation_for(notebooks: list[Path]):
    """The grader's labelled validation images, loaded before any student code runs.

    Loaded now, not later: the kernels can write the private data cache. None when
    no notebook has an accuracy probe, or the images cannot be loaded (those probes
    are then skipped).
    """
    if not accuracy_notebooks() & {path.stem for path in notebooks}:
        return None
    try:
        return load_validation()
    except Exception as error:  # a grader problem: the checks keep their re-run verdict
        print(f"cannot load the validation images for the probes: {error}", file=sys.stderr)
        return None


class _AfterCell:
    """nbclient's ``on_cell_executed`` hook: note the cell, then run a probe due after it.

    A trained model is scored right after its check cell ran (before the next cell
    can rebind its name): :func:`cifar_lab.instructor.verdicts.after_check_probe`.
    Only a handed-in cell (one with its position) can set a probe off, once per check.

    Attributes:
        verdicts: grade_id -> the grader's verdict of each probe that ran.
    """

    def __init__(self, verified: dict, client, notebook: str, work: Path, validation) -> None:
        self._verified, self._client, self._notebook = verified, client, notebook
        self._work, self._validation = work, validation
        self.verdicts: dict[str, dict] = {}

    async def __call__(self, cell, cell_index: int, execute_reply: dict, **_) -> None:
        _count_check(self._verified, cell, cell_index, execute_reply)
        metadata = cell.get("metadata", {})
        grade_id = metadata.get("nbgrader", {}).get("grade_id")
        if _POSITION not in metadata or grade_id in self.verdicts:
            return
        probe = after_check_probe(grade_id, self._notebook, self._validation)
        if probe is not None:
            self.verdicts[grade_id] = await run_probe_async(probe, self._work, self._execute)

    async def _execute(self, source: str) -> None:
        """Run one grader cell in the kernel, with the probes' time limit, interrupting on it."""
        import nbformat

        client = self._client
        saved = client.timeout, client.interrupt_on_timeout
        client.timeout = min(client.timeout or PROBE_TIMEOUT, PROBE_TIMEOUT)
        client.interrupt_on_timeout = True  # the notebook's next cell must find the kernel idle
        try:
            cell = nbformat.v4.new_code_cell(source)  # not part of the notebook: no results read
            await client.async_execute_cell(cell, len(client.nb.cells), store_history=False)
        finally:
            client.timeout, client.interrupt_on_timeout = saved


def _count_check(verified: dict, cell, cell_index: int, execute_reply: dict, **_) -> None:
    """Note a handed-in cell's outcome by its position; count check cells that succeeded.

    ``verified["cells"]`` maps the cell's index in the file as handed in (what scoring
    locates) to ``"ok"`` or ``"error"``, from the kernel's execute reply.
    """
    metadata = cell.get("metadata", {})
    ok = (execute_reply or {}).get("content", {}).get("status") == "ok"
    if _POSITION in metadata:  # not one of the grader's inserted cells
        verified["cells"][str(metadata[_POSITION])] = "ok" if ok else "error"
    if ok and PRISTINE_TAG not in metadata.get("tags", []) and is_check_cell(cell):
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
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--sha256", action="append", required=True, help="one per notebook")
    parser.add_argument("--max-file-bytes", type=int, default=None)
    parser.add_argument("--one-kernel-at-a-time", action="store_true")
    parser.add_argument("notebooks", type=Path, nargs="+")
    args = parser.parse_args(argv)
    if len(args.sha256) != len(args.notebooks):
        parser.error("give one --sha256 per notebook")
    _harden(args.status_fd)
    if args.max_file_bytes is not None:  # no file over the disk quota, even without a tmpfs
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.max_file_bytes, args.max_file_bytes))
    signal.signal(signal.SIGTERM, lambda *_: (kill_descendants(os.getpid()), os._exit(1)))
    # every notebook is read, and hashed, before the first cell of the first one runs
    handed_in = [(path, *_read_handed_in(path)) for path in args.notebooks]
    queued = [(data, digest, expected) for (_, data, digest), expected in
              zip(handed_in, args.sha256, strict=True)]  # fmt: skip

    def start(index: int) -> _Ahead | None:  # the kernel of notebook ``index``, started now
        if args.one_kernel_at_a_time or index >= len(queued):
            return None
        return _start_ahead(*queued[index], args.work_dir, args.cell_timeout)

    try:
        ahead = start(0)  # boots while the validation images load; no student code ran yet
        validation = _validation_for(args.notebooks)
        with os.fdopen(args.status_fd, "w", encoding="utf-8") as status:
            for index, (path, data, digest) in enumerate(handed_in):
                current, ahead = ahead, start(index + 1)
                record = _execute(
                    path, data, digest, args.sha256[index], args.work_dir, args.cell_timeout,
                    validation, current,
                )  # fmt: skip
                status.write(json.dumps(record) + "\n")
                status.flush()
    finally:
        kill_descendants(os.getpid())  # whatever the notebooks left running
    return 0


if __name__ == "__main__":
    sys.exit(main())
