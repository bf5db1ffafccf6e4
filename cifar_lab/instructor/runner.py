"""The main job: execute the course notebooks headless and summarise them.

``python -m cifar_lab run`` executes every notebook in ``notebooks/`` in the
chosen profile, prints progress per cell, writes executed copies and HTML to
a git-ignored folder, and ends with a table of status, wall time, the kernel's
peak memory and the headline accuracy each notebook records (read from its
machine-readable outputs, see :mod:`cifar_lab.results`).
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cifar_lab.profiles import PROFILE_ENV, get_profile
from cifar_lab.results import read_outputs


@dataclass
class NotebookRun:
    """Outcome of executing one notebook.

    Attributes:
        name: notebook file stem, e.g. ``"02_barebones_tensorflow"``.
        status: ``"ok"`` or ``"failed"``.
        seconds: wall time of the execution.
        key_result: (name, value) of the headline result, if one was recorded.
        failed_cell: index of the cell that raised, if any.
        error: the error's last line, if any.
        peak_memory_mb: the kernel process's peak resident memory (``VmHWM``) in MB,
            read after each cell; None where ``/proc`` is missing (not Linux).
    """

    name: str
    status: str
    seconds: float
    key_result: tuple[str, float] | None = None
    failed_cell: int | None = None
    error: str | None = None
    peak_memory_mb: float | None = None


# TensorFlow C++ INFO/WARNING lines would otherwise land in every notebook output.
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}


@contextmanager
def environment(**values: str):
    """Temporarily set environment variables (kernels inherit them)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _progress_hooks(name: str, notebook, start: float, verbose: bool, failure: dict):
    code_cells = [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"]

    def on_cell_execute(cell, cell_index):
        if verbose:
            first_line = next((line for line in cell.source.splitlines() if line.strip()), "")
            position = code_cells.index(cell_index) + 1 if cell_index in code_cells else "?"
            print(
                f"  [{time.perf_counter() - start:7.1f} s] {name} cell {position}/"
                f"{len(code_cells)}: {first_line[:60]}",
                flush=True,
            )

    def on_cell_error(cell, cell_index, execute_reply):
        failure.setdefault("cell", cell_index)

    return {"on_cell_execute": on_cell_execute, "on_cell_error": on_cell_error}


def peak_memory_mb(pid: int | None) -> float | None:
    """Peak resident memory (``VmHWM``) of a live process in MB, or None if unknown."""
    if pid is None:
        return None
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # not Linux, or the process has gone
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def _peak_memory_hook(client, peak: dict):
    """After each cell, note the kernel's peak memory so far (it only ever grows)."""

    def on_cell_executed(**_):
        pid = getattr(getattr(client.km, "provisioner", None), "pid", None)
        value = peak_memory_mb(pid)
        if value is not None:
            peak["mb"] = max(value, peak.get("mb", 0.0))

    return on_cell_executed


def run_notebook(
    path: Path, out_dir: Path, *, cell_timeout: int = 3600, verbose: bool = True
) -> NotebookRun:
    """Execute one notebook, save the executed copy and HTML, and summarise it.

    Args:
        path: the ``.ipynb`` to run (it is not modified).
        out_dir: folder for ``<name>.ipynb`` and ``<name>.html``.
        cell_timeout: seconds any single cell may take.
        verbose: print a progress line per cell.

    Returns:
        A :class:`NotebookRun`.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(path, as_version=4)
    start, failure, peak = time.perf_counter(), {}, {}
    client = NotebookClient(
        notebook,
        timeout=cell_timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        **_progress_hooks(path.stem, notebook, start, verbose, failure),
    )
    client.on_cell_executed = _peak_memory_hook(client, peak)
    error = None
    try:
        client.execute()
    except CellExecutionError as caught:
        error = (str(caught).strip().splitlines() or ["error"])[-1]
    except Exception as caught:  # kernel death, timeout: still save what ran
        error = f"{type(caught).__name__}: {caught}"
    seconds = time.perf_counter() - start
    _save(notebook, out_dir, path.stem)
    key = next((r for r in read_outputs(notebook)["results"] if r.get("key")), None)
    return NotebookRun(
        name=path.stem,
        status="failed" if error else "ok",
        seconds=seconds,
        key_result=(key["name"], key["value"]) if key else None,
        failed_cell=failure.get("cell") if error else None,
        error=error,
        peak_memory_mb=peak.get("mb"),
    )


def _save(notebook, out_dir: Path, stem: str) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, out_dir / f"{stem}.ipynb")
    html, _ = HTMLExporter().from_notebook_node(notebook)
    (out_dir / f"{stem}.html").write_text(html, encoding="utf-8")


def run_all(
    notebooks: list[Path],
    out_dir: Path,
    *,
    profile: str = "full",
    cell_timeout: int = 3600,
    verbose: bool = True,
) -> list[NotebookRun]:
    """Execute notebooks in order under a profile; keep going after a failure.

    Args:
        notebooks: ``.ipynb`` paths, run in the given order.
        out_dir: where executed copies and HTML go.
        profile: ``"quick"`` or ``"full"`` (sets ``CIFAR_LAB_PROFILE`` for the kernels).
        cell_timeout: seconds any single cell may take.
        verbose: print progress.

    Returns:
        One :class:`NotebookRun` per notebook.
    """
    get_profile(profile)  # fail early on a typo
    runs = []
    with environment(**{PROFILE_ENV: profile, **QUIET_TF}):
        for path in notebooks:
            if verbose:
                print(f"=== {path.name} ({profile} profile)", flush=True)
            run = run_notebook(path, out_dir, cell_timeout=cell_timeout, verbose=verbose)
            if verbose:
                memory = f", peak memory {_gigabytes(run.peak_memory_mb)}"
                print(f"=== {path.name}: {run.status} in {run.seconds:.0f} s{memory}", flush=True)
            runs.append(run)
    return runs


def _gigabytes(megabytes: float | None) -> str:
    return "-" if megabytes is None else f"{megabytes / 1024:.1f} GB"


def format_summary(runs: list[NotebookRun]) -> str:
    """Render the runs as a fixed-width table, with failures spelled out below.

    ``peak memory`` is the kernel's peak resident memory: what the machine needs
    free to run that notebook (worker processes a notebook starts are not counted).
    """
    lines = [f"{'notebook':<36}{'status':<8}{'wall time':>10}{'peak memory':>13}  key result"]
    for run in runs:
        result = f"{run.key_result[0]} = {run.key_result[1]:.4f}" if run.key_result else "-"
        memory = _gigabytes(run.peak_memory_mb)
        lines.append(f"{run.name:<36}{run.status:<8}{run.seconds:>8.0f} s{memory:>13}  {result}")
    for run in runs:
        if run.status != "ok":
            lines.append(f"FAILED: {run.name}, cell {run.failed_cell}: {run.error}")
    return "\n".join(lines)
