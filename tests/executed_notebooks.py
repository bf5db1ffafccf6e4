"""Each course notebook executed once per test run, shared by every test that needs it.

The session fixture ``executed_notebooks`` (``conftest.py``) runs an instructor
notebook top to bottom the first time a test asks for it: one kernel, the
quick profile, real CIFAR-10 when the tests have it (``conftest.REAL_SOURCE``),
in a folder of its own. What comes out is an :class:`ExecutedNotebook`: the executed copy (as
nbclient writes it, the way nbgrader and JupyterLab run a notebook) with the
files it wrote. The output comparison (``test_notebooks.py``) and the mutation
tests (``test_exercises_0N.py``) read that one execution.

Before each exercise cell (one with a solution region) the kernel saves its
namespace, so the mutation tests can later put it back and try wrong answers
against the state the exercise saw, in the same kernel, without running the
notebook again. The kernel stays up only while a collected mutation test still
needs it.
"""

from __future__ import annotations

import copy
import os
import shutil
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from cifar_lab.instructor.release import BEGIN_SOLUTION

CELL_TIMEOUT = 1800  # seconds; a quick-profile cell takes well under a minute
# Kept on the IPython shell object, not in the namespace the notebook sees.
_SAVE = "get_ipython().saved_namespaces = getattr(get_ipython(), 'saved_namespaces', dict())\n"
_SAVE += "get_ipython().saved_namespaces[{key!r}] = dict(get_ipython().user_ns)"
# One expression whose value is None, so nothing is displayed; the lambda's arguments are
# read before the namespace is cleared.
_RESTORE = (
    "(lambda namespace, saved: namespace.clear() or namespace.update(saved))"
    "(get_ipython().user_ns, get_ipython().saved_namespaces[{key!r}])"
)


@dataclass
class Outcome:
    """What running one piece of code in the kernel gave."""

    ok: bool
    ename: str = ""
    evalue: str = ""
    stdout: str = ""


class NotebookKernel:
    """One kernel run by nbclient: the notebook's cells, then any code between or after them.

    nbclient writes each executed cell back into the notebook at its index, so code
    that is not a cell of the notebook runs in a scratch cell appended at the end.
    """

    def __init__(self, notebook, cwd: Path, env: dict[str, str]) -> None:
        from nbclient import NotebookClient

        self.notebook = notebook
        notebook.cells.append(nbformat.v4.new_code_cell("", metadata={"tags": []}))
        self.scratch = len(notebook.cells) - 1
        self.client = NotebookClient(
            notebook,
            timeout=CELL_TIMEOUT,
            interrupt_on_timeout=True,
            kernel_name="python3",
            resources={"metadata": {"path": str(cwd)}},
        )
        self._stack = ExitStack()
        self._stack.enter_context(self.client.setup_kernel(env=env))

    def execute(self, index: int, execution_count: int) -> str | None:
        """Run notebook cell ``index`` as Jupyter would; the error report if it raised."""
        from nbclient.exceptions import CellExecutionError, CellTimeoutError

        cell = self.notebook.cells[index]
        try:
            self.client.execute_cell(cell, index, execution_count=execution_count)
        except (CellExecutionError, CellTimeoutError) as error:
            return str(error)
        return None

    def run(self, code: str) -> Outcome:
        """Run ``code`` outside the notebook's history; report its error and its stdout."""
        from nbclient.exceptions import CellTimeoutError

        cell = nbformat.v4.new_code_cell(code, metadata={"tags": ["raises-exception"]})
        # nbclient updates a display (the library's progress line) in the notebook's cell
        # at the index it ran under: make that cell this one, with no stale display ids
        self.client.nb.cells[self.scratch] = cell
        self.client.clear_display_id_mapping(self.scratch)
        try:
            self.client.execute_cell(cell, self.scratch, store_history=False)
        except CellTimeoutError:
            return Outcome(False, "Timeout", f"no reply within {CELL_TIMEOUT} s")
        stdout = "".join(
            o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout"
        )
        error = next((o for o in cell.outputs if o.output_type == "error"), None)
        if error is not None:
            return Outcome(False, error.ename, error.evalue, stdout)
        return Outcome(True, stdout=stdout)

    def save_namespace(self, key: str) -> None:
        outcome = self.run(_SAVE.format(key=key))
        assert outcome.ok, outcome

    def restore_namespace(self, key: str) -> None:
        """Put back the names (not the objects' contents) saved under ``key``."""
        outcome = self.run(_RESTORE.format(key=key))
        assert outcome.ok, outcome

    def close(self) -> None:
        self._stack.close()


def exercise_cells(notebook) -> list[int]:
    """Indices of the code cells with a solution region: the exercises."""
    return [
        index
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and BEGIN_SOLUTION in cell.source
    ]


def kernel_environment(source: Path | None, scratch: Path, cache: Path) -> dict[str, str]:
    """The kernel's environment: quick profile, quiet TensorFlow, the data, private caches.

    ``cache`` is the decoded-data folder the five notebooks share (the data is decoded once).
    """
    env = {**os.environ, "CIFAR_LAB_PROFILE": "quick", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("CIFAR10_SOURCE", None)
    if source is not None:
        env["CIFAR10_SOURCE"] = str(source)
    env["CIFAR_LAB_CACHE"] = str(cache)  # away from the user's
    env["KERAS_HOME"] = str(scratch / "keras_home")
    return env


@dataclass
class ExecutedNotebook:
    """One instructor notebook executed top to bottom in the quick profile.

    Attributes:
        source: the instructor notebook in the repository.
        notebook: the executed copy (outputs, execution counts 1..n); cells after a
            failing one are not run.
        folder: the notebook's working folder as the run left it, holding the executed
            copy under the source's name and every file the notebook wrote.
        problem: nbclient's report of the first cell that raised, or None.
        kernel: the kernel, still up while a mutation test needs it, else None.
        exercises: indices of the exercise cells; the kernel saved its namespace just
            before running each (:meth:`namespace_key`).
    """

    source: Path
    notebook: nbformat.NotebookNode
    folder: Path
    problem: str | None
    kernel: NotebookKernel | None = None
    exercises: list[int] = field(default_factory=list)

    def namespace_key(self, index: int) -> str:
        """The key of the namespace saved just before exercise cell ``index`` ran."""
        return f"before-cell-{index}"

    def close_kernel(self) -> None:
        if self.kernel is not None:
            self.kernel.close()
            self.kernel = None


def execute_notebook(
    source: Path, scratch: Path, *, data: Path | None, cache: Path, keep_kernel: bool
) -> ExecutedNotebook:
    """Execute ``source`` once in ``scratch/run``; save the namespace before each exercise.

    Args:
        source: an instructor notebook.
        scratch: an empty folder for the run, its copy and its caches.
        data: the CIFAR-10 copy for the kernel, or None for the profile's default.
        cache: the decoded-data folder (``$CIFAR_LAB_CACHE``) for the kernel.
        keep_kernel: leave the kernel up for the mutation tests.

    Returns:
        The executed notebook; ``folder`` is ``scratch/executed``, a copy of the run
        folder taken when the last cell finished.
    """
    work = scratch / "run"
    work.mkdir(parents=True)
    shutil.copy(source, work / source.name)
    working = nbformat.read(source, as_version=4)
    exercises = exercise_cells(working)
    kernel = NotebookKernel(working, work, kernel_environment(data, scratch, cache))
    run = ExecutedNotebook(source, working, scratch / "executed", None, exercises=exercises)
    try:
        count = 0
        for index, cell in enumerate(working.cells[: kernel.scratch]):
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            if index in exercises:
                kernel.save_namespace(run.namespace_key(index))
            count += 1
            run.problem = kernel.execute(index, count)
            if run.problem is not None:
                run.problem = f"{source.name} cell {index}: {run.problem}"
                break
    except Exception as error:  # a dead kernel: every test of this notebook reports it
        run.problem = f"{source.name}: the run stopped: {type(error).__name__}: {error}"
    finally:
        # the executed copy; the kernel keeps its working notebook and scratch cell
        run.notebook = copy.deepcopy(working)
        del run.notebook.cells[kernel.scratch]
        if keep_kernel and run.problem is None:
            run.kernel = kernel
        else:
            kernel.close()
    shutil.copytree(work, run.folder)
    nbformat.write(run.notebook, run.folder / source.name)
    return run


class ExecutedNotebooks:
    """The session's executions, by notebook stem; each runs when first asked for.

    Args:
        notebook_dir: the instructor notebooks.
        scratch: an empty folder; each notebook runs in a subfolder named by its stem.
        data: the CIFAR-10 copy for the kernels, or None.
        kernels_wanted: stems whose kernel stays up for a mutation test.
    """

    def __init__(
        self, notebook_dir: Path, scratch: Path, data: Path | None, kernels_wanted: set[str]
    ) -> None:
        self.notebook_dir, self.scratch, self.data = notebook_dir, scratch, data
        self.kernels_wanted = kernels_wanted
        self.cache = scratch / "cache"  # one decoded-data folder for the five notebooks
        self.cache.mkdir(parents=True, exist_ok=True)
        self.runs: dict[str, ExecutedNotebook] = {}

    def __getitem__(self, stem: str) -> ExecutedNotebook:
        if stem not in self.runs:
            self.runs[stem] = execute_notebook(
                self.notebook_dir / f"{stem}.ipynb",
                self.scratch / stem,
                data=self.data,
                cache=self.cache,
                keep_kernel=stem in self.kernels_wanted,
            )
        return self.runs[stem]

    def close(self) -> None:
        for run in self.runs.values():
            run.close_kernel()


def mutation_tests_collected(items) -> set[str]:
    """Stems of the notebooks whose mutation test (a module with ``MUTATIONS``) will run."""
    stems = set()
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and hasattr(module, "MUTATIONS") and hasattr(module, "NOTEBOOK"):
            stems.add(Path(module.NOTEBOOK).stem)
    return stems
