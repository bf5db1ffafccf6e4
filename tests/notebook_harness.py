"""Run a course notebook cell by cell in one kernel, swapping wrong answers into its exercises.

A check in a notebook is only as good as the wrong answers it catches. The
mutation tests use :func:`run_with_mutations`: the notebook runs top to
bottom in the quick profile; at every exercise cell (one with a solution
region) it first runs the released stub and expects the next check cell to
stop with the stub's ``NotImplementedError``, then runs each wrong answer
and expects the check to fail, and finally runs the real solution and
expects the check to pass before going on.
"""

from __future__ import annotations

import os
import queue
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from cifar_lab.instructor.notebooks import cell_source
from cifar_lab.instructor.release import BEGIN_SOLUTION, part_label, release_notebook

CHECK_CALL = "lab.check_"


@dataclass(frozen=True)
class Mutation:
    """One plausible wrong answer: replace ``old`` by ``new`` in an exercise cell.

    ``old`` must occur exactly once in the instructor's cell, so a test fails
    loudly when the notebook changes under it.
    """

    name: str
    old: str
    new: str


@dataclass
class Outcome:
    """What running one piece of code in the kernel gave."""

    ok: bool
    ename: str = ""
    evalue: str = ""
    stdout: str = ""


class KernelSession:
    """One Python kernel that runs code strings and reports errors by type and message."""

    def __init__(self, cwd: Path, env: dict[str, str], timeout: float) -> None:
        from jupyter_client import KernelManager

        self.timeout = timeout
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(cwd=str(cwd), env=env)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=120)

    def run(self, code: str) -> Outcome:
        chunks: list[str] = []

        def keep_output(message: dict) -> None:
            if message["msg_type"] == "stream":
                chunks.append(message["content"]["text"])

        try:
            reply = self.client.execute_interactive(
                code, timeout=self.timeout, output_hook=keep_output, store_history=False
            )
        except (TimeoutError, queue.Empty):
            return Outcome(False, "Timeout", f"no reply within {self.timeout} s", "".join(chunks))
        content = reply["content"]
        ok = content["status"] == "ok"
        return Outcome(ok, content.get("ename", ""), content.get("evalue", ""), "".join(chunks))

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@dataclass
class MutationReport:
    """What :func:`run_with_mutations` saw, for the test's assertions and failure messages."""

    stubs: dict[str, Outcome] = field(default_factory=dict)  # exercise -> check's outcome
    # exercise -> {mutation name -> the check's outcome (or the mutated cell's, if it failed)}
    caught: dict[str, dict[str, Outcome]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def kernel_environment(source: Path | None) -> dict[str, str]:
    """The environment of the kernel: the quick profile, quiet TensorFlow, the real data."""
    env = {**os.environ, "CIFAR_LAB_PROFILE": "quick", "TF_CPP_MIN_LOG_LEVEL": "3"}
    if source is not None:
        env["CIFAR10_SOURCE"] = str(source)
    return env


def exercise_name(source: str) -> str:
    """The first function or class a cell defines, used to name its exercise."""
    for line in source.splitlines():
        for keyword in ("def ", "class "):
            if line.startswith(keyword):
                return line[len(keyword) :].split("(")[0].split(":")[0].strip()
    return source.strip().splitlines()[0][:40]


def check_cell_after(cells: list, index: int) -> int:
    """Index of the check cell of exercise cell ``index``: the very next code cell.

    It must call a ``lab.check_*``; nothing may run between an exercise and its
    check, so that a wrong answer meets the check exactly as the student's would.
    """
    later = next((i for i in range(index + 1, len(cells)) if cells[i].cell_type == "code"), None)
    if later is None or CHECK_CALL not in cell_source(cells[later]):
        raise AssertionError(f"the code cell after exercise cell {index} must call {CHECK_CALL}*")
    return later


def _apply(source: str, mutation: Mutation) -> str:
    count = source.count(mutation.old)
    assert count == 1, f"mutation {mutation.name!r}: {mutation.old!r} occurs {count} times"
    return source.replace(mutation.old, mutation.new)


def _exercise(session, cells, index, stub, mutations, report) -> None:
    """Stub, each wrong answer, then the solution, each followed by the check cell."""
    source, name = cell_source(cells[index]), exercise_name(cell_source(cells[index]))
    check = cell_source(cells[check_cell_after(cells, index)])
    if not session.run(stub).ok:
        report.problems.append(f"{name}: the released stub itself fails to run")
    report.stubs[name] = session.run(check)
    caught = report.caught.setdefault(name, {})
    for mutation in (m for m in mutations if m.old in source):
        ran = session.run(_apply(source, mutation))
        caught[mutation.name] = session.run(check) if ran.ok else ran
    solved = session.run(source)
    if not solved.ok:
        report.problems.append(f"{name}: the solution fails: {solved.ename}: {solved.evalue}")


def run_with_mutations(
    path: Path, mutations: list[Mutation], work_dir: Path, *, source: Path | None
) -> MutationReport:
    """Run notebook ``path`` in the quick profile, trying its stubs and ``mutations``.

    Args:
        path: an instructor notebook (with solution regions).
        mutations: wrong answers; each applies to the exercise cell holding its ``old``.
        work_dir: an empty folder; the notebook runs there (it may write files).
        source: CIFAR-10 copy for the kernel, or None for the profile's default.

    Returns:
        The report: per exercise the check's outcome on the stub, per mutation
        the check's outcome, and any cell that failed when it should not have.
    """
    notebook = nbformat.read(path, as_version=4)
    released = release_notebook(notebook, part=part_label(path.stem), name=path.name)
    stubs = {cell.get("id"): cell_source(cell) for cell in released.cells}
    cells = notebook.cells
    exercises = [i for i, c in enumerate(cells) if BEGIN_SOLUTION in cell_source(c)]
    last = max(check_cell_after(cells, i) for i in exercises if cells[i].cell_type == "code")
    shutil.copy(path, work_dir / path.name)
    session = KernelSession(work_dir, kernel_environment(source), timeout=900)
    report = MutationReport()
    try:
        for index, cell in enumerate(cells[: last + 1]):
            if cell.cell_type != "code":
                continue
            if index in exercises:
                _exercise(session, cells, index, stubs[cell.get("id")], mutations, report)
                continue
            outcome = session.run(cell_source(cell))
            if not outcome.ok:
                report.problems.append(f"cell {index}: {outcome.ename}: {outcome.evalue}")
                break
    finally:
        session.close()
    return report


MIN_MUTATIONS_PER_EXERCISE = 2


def assert_checks_catch(path: Path, mutations: list[Mutation], work_dir: Path, source) -> None:
    """The assertions of a notebook's mutation test (see the module docstring).

    Args:
        path: the instructor notebook.
        mutations: at least two wrong answers per exercise cell.
        work_dir: an empty folder to run in.
        source: CIFAR-10 copy for the kernel, or None.
    """
    report = run_with_mutations(path, mutations, work_dir, source=source)
    assert not report.problems, report.problems
    for exercise, outcome in report.stubs.items():
        assert outcome.ename == "NotImplementedError", f"{exercise}: stub gave {outcome}"
        assert exercise in outcome.evalue, f"{exercise}: stub message {outcome.evalue!r}"
    applied = {name for caught in report.caught.values() for name in caught}
    assert applied == {m.name for m in mutations}, "some mutations matched no exercise"
    for exercise, caught in report.caught.items():
        assert len(caught) >= MIN_MUTATIONS_PER_EXERCISE, f"{exercise}: only {sorted(caught)}"
        survivors = [name for name, outcome in caught.items() if outcome.ok]
        assert not survivors, f"{exercise}: the check passed these wrong answers: {survivors}"
