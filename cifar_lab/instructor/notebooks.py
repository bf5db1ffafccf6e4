"""The course notebooks as files: where they are, how their cells read, cleaned, executed.

* :func:`notebook_dir`, :func:`course_notebooks`, :data:`COURSE_NOTEBOOKS`: find the five
  notebooks (installed wheel or checkout); the one list of their names;
* :func:`cell_source`, :func:`strip_outputs`: read a cell, clean a notebook. Policy:
  notebooks are committed without outputs, except code cells tagged
  ``nbval-check-output``, whose (deterministic) outputs nbval compares;
* :func:`notebook_client`: the one ``NotebookClient`` set-up (``run``, ``refresh-outputs``
  and ``grade``'s re-execution all execute through it);
* :func:`run_all`, :func:`format_summary`: ``python -m cifar_lab run`` executes every
  notebook in the chosen profile, prints progress per cell, writes executed copies and
  HTML to a git-ignored folder, and ends with a table of status, wall time, the
  kernel's peak memory and the headline accuracy each notebook records (read from its
  machine-readable outputs, see :mod:`cifar_lab.results`).
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifar_lab.instructor.findings import MEGABYTE
from cifar_lab.messages import plain_line
from cifar_lab.peak_memory import peak_resident_bytes
from cifar_lab.profiles import PROFILE_ENV, get_profile
from cifar_lab.results import read_outputs

# nbval compares the outputs of cells carrying this tag (with --nbval-lax); a tag
# keeps the cell's source free of a comment students would have to ignore.
CHECK_TAG = "nbval-check-output"
# the course, in order: every list of its notebooks is this one
COURSE_NOTEBOOKS = (
    "01_preparation",
    "02_barebones_tensorflow",
    "03_keras_model_subclassing",
    "04_keras_sequential_functional",
    "05_tuning",
)
FIRST_NOTEBOOK = f"{COURSE_NOTEBOOKS[0]}.ipynb"
PART5_NOTEBOOK = COURSE_NOTEBOOKS[-1]  # its outputs hold the Part V claims
# the student edition: what `release` writes from the instructor notebooks, committed
# in the package (tests/test_student_edition.py keeps it current) and shipped in the
# wheel instead of the instructor notebooks, which hold the answers
STUDENT_EDITION = Path(__file__).resolve().parents[1] / "student_edition"
# a checkout: the repository root, with the instructor notebooks in notebooks/
_CHECKOUT = Path(__file__).resolve().parents[2]


def notebook_dir() -> Path:
    """Return the folder of the course notebooks.

    A checkout (editable install or not) has the instructor notebooks, with their
    solutions, in the top-level ``notebooks/``; an installed wheel carries only the
    student edition, ``cifar_lab/student_edition/``.

    Returns:
        The folder holding ``01_preparation.ipynb`` and the other course notebooks.

    Raises:
        FileNotFoundError: neither place holds the course notebooks.
    """
    checkout = _CHECKOUT / "notebooks"
    if (_CHECKOUT / "pyproject.toml").is_file() and (checkout / FIRST_NOTEBOOK).is_file():
        return checkout
    if (STUDENT_EDITION / FIRST_NOTEBOOK).is_file():
        return STUDENT_EDITION
    raise FileNotFoundError(
        f"the course notebooks are in neither {checkout} nor {STUDENT_EDITION}; "
        "reinstall cifar_lab (pip install cifar_lab) or run from a checkout"
    )


def course_notebooks(folder: Path | None = None) -> list[Path]:
    """Return the course notebooks (``NN_name.ipynb``) in order.

    Args:
        folder: where to look; ``None`` means :func:`notebook_dir`.
    """
    folder = notebook_dir() if folder is None else Path(folder)
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def notebooks_installed() -> bool:
    """True when :func:`notebook_dir` is the installed student edition, not a checkout's.

    Returns:
        Whether the course notebooks are the student edition inside the installed
        ``cifar_lab`` package (no solutions, and nothing should be written there).
    """
    return notebook_dir() == STUDENT_EDITION


def join_source(source: str | list[str]) -> str:
    """Return a cell source as one string (Jupyter may store it as a list of lines).

    Args:
        source: a cell's ``source`` field: a string or a list of lines.

    Returns:
        The lines joined, or the string itself.
    """
    return "".join(source) if isinstance(source, list) else str(source)


def cell_source(cell: dict[str, Any]) -> str:
    """Return a cell's source as one string (empty when the cell has none).

    Args:
        cell: a notebook cell, as a dict or an nbformat node.

    Returns:
        The source, joined by :func:`join_source`.
    """
    return join_source(cell.get("source", ""))


def is_checked(cell) -> bool:
    """True for a code cell whose output nbval compares (tagged ``nbval-check-output``)."""
    tags = cell.get("metadata", {}).get("tags", [])
    return cell.get("cell_type") == "code" and CHECK_TAG in tags


# Metadata an execution writes (nbclient/JupyterLab timings, the ExecuteTime extension,
# papermill): timestamps that neither the repository nor a student's copy should carry.
EXECUTION_METADATA = ("execution", "ExecuteTime", "papermill")


def strip_outputs(notebook, *, keep_checked: bool = True):
    """Return a copy without outputs, execution counts and execution timestamps.

    Checked cells may keep their outputs and execution counts.

    Args:
        notebook: an nbformat notebook node.
        keep_checked: keep the outputs of cells tagged ``nbval-check-output``.

    Returns:
        The cleaned copy; ``notebook`` itself is not modified.
    """
    cleaned = copy.deepcopy(notebook)
    cleaned.metadata.pop("papermill", None)
    for cell in cleaned.cells:
        for key in EXECUTION_METADATA:
            cell.get("metadata", {}).pop(key, None)
        if cell.cell_type != "code":
            continue
        # nbval rejects a cell that has outputs but no execution count, so checked
        # cells keep theirs; every other cell loses both.
        if not (keep_checked and is_checked(cell)):
            cell.execution_count = None
            cell.outputs = []
    return cleaned


# ------------------------------------------------------------ executing notebooks
def notebook_client(notebook, folder: Path, cell_timeout: int, **hooks: Callable):
    """The one ``NotebookClient`` set-up: the python3 kernel, started in ``folder``.

    Args:
        notebook: an nbformat v4 notebook node (executed in place).
        folder: the kernel's working folder (the notebook's own).
        cell_timeout: seconds any single cell may take.
        **hooks: nbclient's ``on_cell_*`` callbacks.

    Returns:
        The client; call ``execute()``.
    """
    import zmq
    from nbclient import NotebookClient
    from traitlets.config import Config

    config = Config()
    # Without CurveZMQ keys every kernel warns "... TCP without encryption" on stderr;
    # "auto" hands keys to kernels that support them (ipykernel does), as nbgrader_config.py.
    if zmq.has("curve"):
        config.KernelManager.transport_encryption = "auto"
    return NotebookClient(
        notebook,
        timeout=cell_timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(folder)}},
        config=config,
        **hooks,
    )


def refresh_checked_outputs(paths: list[Path], *, cell_timeout: int = 1800) -> None:
    """Re-execute notebooks in the quick profile and commit only checked outputs.

    For maintainers: run after editing a cell tagged ``nbval-check-output``.

    Args:
        paths: notebooks to refresh in place.
        cell_timeout: seconds any single cell may take.
    """
    import nbformat

    with environment(CIFAR_LAB_PROFILE="quick", **QUIET_TF):
        for path in paths:
            notebook = nbformat.read(path, as_version=4)
            notebook_client(notebook, path.parent, cell_timeout).execute()
            nbformat.write(strip_outputs(notebook), path)
            print(f"refreshed {path}")


@dataclass
class NotebookRun:
    """Outcome of executing one notebook.

    Attributes:
        name: notebook file stem, e.g. ``"02_barebones_tensorflow"``.
        status: ``"ok"`` or ``"failed"``.
        seconds: wall time of the execution.
        key_result: (name, value) of the headline result, if one was recorded.
        failed_cell: the code cell that raised, as the progress lines number it
            (``"2/3"``: the second of three code cells), if any.
        error: the error's last line, if any.
        peak_memory_mb: the kernel process's peak resident memory (``VmHWM``) in MB,
            read after each cell; None where ``/proc`` is missing (not Linux).
    """

    name: str
    status: str
    seconds: float
    key_result: tuple[str, float] | None = None
    failed_cell: str | None = None
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
        # the numbering of the progress lines: position among the code cells, from 1
        position = code_cells.index(cell_index) + 1 if cell_index in code_cells else "?"
        failure.setdefault("cell", f"{position}/{len(code_cells)}")

    return {"on_cell_execute": on_cell_execute, "on_cell_error": on_cell_error}


def _peak_memory_hook(client, peak: dict):
    """After each cell, note the kernel's peak memory so far (it only ever grows)."""

    def on_cell_executed(**_):
        pid = getattr(getattr(client.km, "provisioner", None), "pid", None)
        value = None if pid is None else peak_resident_bytes(pid)
        if value is not None:
            peak["mb"] = max(value / MEGABYTE, peak.get("mb", 0.0))

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
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(path, as_version=4)
    start, failure, peak = time.perf_counter(), {}, {}
    hooks = _progress_hooks(path.stem, notebook, start, verbose, failure)
    client = notebook_client(notebook, path.parent, cell_timeout, **hooks)
    client.on_cell_executed = _peak_memory_hook(client, peak)
    error = None
    try:
        client.execute()
    except CellExecutionError as caught:
        # IPython colours its tracebacks: keep the last line, as plain text
        error = plain_line((str(caught).strip().splitlines() or ["error"])[-1])
    except Exception as caught:  # kernel death, timeout: still save what ran
        error = plain_line(f"{type(caught).__name__}: {caught}")
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
