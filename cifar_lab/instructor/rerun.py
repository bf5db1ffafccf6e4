"""Re-execution (``grade --rerun``): run a submission's notebooks again, in a child process.

Each submission runs in a separate process (``python -m cifar_lab.instructor.rerun``)
on copies of its notebooks in a temporary folder, with the student's outputs
cleared first so that nothing claimed survives unless it is recomputed. Two
limits apply: a per-cell timeout (default 1 hour, enough for the full
profile's training cells on a CPU) and a total timeout per submission
(default 4 hours); at the total limit the process and its kernel are killed.
:func:`cifar_lab.instructor.claims.compare_claims` then compares every recorded
result with the re-executed value. Nothing is downloaded on purpose: the
kernels see ``CIFAR10_SOURCE`` (from ``--source``) and ``CIFAR_LAB_PROFILE``;
without a local CIFAR-10 copy the full profile fails and says so. Re-running
executes student code: do it in a container or an account with nothing to lose.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifar_lab.checks import check_int, check_number
from cifar_lab.instructor.claims import DEFAULT_RERUN_TOLERANCE
from cifar_lab.instructor.inspection import recorded_results
from cifar_lab.profiles import PROFILE_ENV, get_profile

KERNEL_PID_KEY = "kernel_pid"


@dataclass(frozen=True)
class RerunSettings:
    """Limits and comparison settings for re-execution.

    Attributes:
        cell_timeout: seconds any single cell may take.
        total_timeout: seconds the whole submission may take.
        profile: ``CIFAR_LAB_PROFILE`` for the kernels (``"full"`` or ``"quick"``).
        tolerance: largest accepted |claimed - recomputed| for a recorded result.
        source: CIFAR-10 copy for the kernels (``CIFAR10_SOURCE``), or None.
    """

    cell_timeout: int = 3600
    total_timeout: int = 4 * 3600
    profile: str = "full"
    tolerance: float = DEFAULT_RERUN_TOLERANCE
    source: str | None = None

    def __post_init__(self) -> None:
        for name in ("cell_timeout", "total_timeout"):  # whole seconds
            check_int(name, getattr(self, name), minimum=1)
        check_number("tolerance", self.tolerance, minimum=0, maximum=1, maximum_inclusive=False)
        get_profile(self.profile)  # a typo fails here, not hours later


def _child_environment(settings: RerunSettings) -> dict[str, str]:
    environment = {**os.environ, PROFILE_ENV: settings.profile}
    # The child and its kernels run in a temporary folder: let them import this cifar_lab.
    package_parent = str(Path(__file__).resolve().parents[2])
    environment["PYTHONPATH"] = os.pathsep.join(
        [package_parent, *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    if settings.source:
        environment["CIFAR10_SOURCE"] = settings.source
    return environment


def rerun_notebooks(
    folder: Path, names: list[str], settings: RerunSettings
) -> tuple[dict[str, dict], str | None]:
    """Execute copies of ``folder/<name>.ipynb`` in order, in a child process.

    Args:
        folder: the submission's notebook folder (not modified).
        names: notebook stems to run, in order.
        settings: limits and environment.

    Returns:
        (record per notebook that finished: ``{"status", "error", "results"}``,
        None or what went wrong with the process as a whole, e.g. the total limit).
    """
    with tempfile.TemporaryDirectory(prefix="cifar_lab_rerun_") as work:
        work_dir = Path(work)
        for name in names:
            shutil.copyfile(Path(folder) / f"{name}.ipynb", work_dir / f"{name}.ipynb")
        status, log_path = work_dir / "status.jsonl", work_dir / "rerun.log"
        command = [sys.executable, "-m", "cifar_lab.instructor.rerun", "--cell-timeout"]
        command += [str(settings.cell_timeout), "--status", str(status)]
        command += [str(work_dir / f"{name}.ipynb") for name in names]
        with open(log_path, "wb") as log:
            child = subprocess.Popen(
                command, cwd=work_dir, env=_child_environment(settings), stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            try:
                code, problem = child.wait(timeout=settings.total_timeout), None
            except subprocess.TimeoutExpired:
                _kill(child, status)
                code, problem = 0, f"stopped at the total limit of {settings.total_timeout} s"
        if code != 0:
            last = (log_path.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
            problem = f"the rerun process exited with code {code}: {last[:200]}"
        return _read_status(status), problem


def _kill(child: subprocess.Popen, status: Path) -> None:
    """Kill the child's process group, then the kernel it started (its own session)."""
    with contextlib.suppress(ProcessLookupError):  # it may have finished meanwhile
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    for line in status.read_text().splitlines() if status.exists() else []:
        record = json.loads(line)
        if KERNEL_PID_KEY in record:
            with contextlib.suppress(ProcessLookupError):  # it already shut down
                os.killpg(record[KERNEL_PID_KEY], signal.SIGKILL)


def _read_status(status: Path) -> dict[str, dict]:
    records = {}
    for line in status.read_text().splitlines() if status.exists() else []:
        record = json.loads(line)
        if "notebook" in record:
            records[record["notebook"]] = record
    return records


def _execute(path: Path, cell_timeout: int, status: Path) -> dict[str, Any]:
    """Run one notebook with cleared outputs; return its status record."""
    import nbformat
    from nbclient import NotebookClient

    record: dict[str, Any] = {"notebook": path.stem, "status": "ok", "error": None}
    notebook = None
    try:
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":  # a claim must not survive unless recomputed
                cell.outputs, cell.execution_count = [], None
        client = NotebookClient(
            notebook,
            timeout=cell_timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
        )
        # The kernel runs in its own session; its pid lets the parent kill it on timeout.
        client.on_notebook_start = lambda **_: _append(
            status, {KERNEL_PID_KEY: client.km.provisioner.pid}
        )
        client.execute()
    except Exception as error:  # cell error, timeout, dead kernel: all mean "failed"
        lines = str(error).strip().splitlines() or [type(error).__name__]
        record.update(status="failed", error=f"{type(error).__name__}: {lines[-1][:300]}")
    record["results"] = recorded_results(notebook) if notebook is not None else {}
    return record


def _append(status: Path, record: dict[str, Any]) -> None:
    with open(status, "a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Child entry point: execute notebooks in order, one status line each."""
    parser = argparse.ArgumentParser(prog="python -m cifar_lab.instructor.rerun")
    parser.add_argument("--cell-timeout", type=int, required=True)
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("notebooks", type=Path, nargs="+")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        _append(args.status, _execute(path, args.cell_timeout, args.status))
    return 0


if __name__ == "__main__":
    sys.exit(main())
