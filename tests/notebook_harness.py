"""Swap wrong answers into a notebook's exercises and expect each exercise's check to fail.

A check in a notebook is only as good as the wrong answers it catches. The
notebook runs once per test session (:mod:`executed_notebooks`), which saves
the kernel's namespace just before each exercise cell (one with a solution
region). :func:`run_with_mutations` then goes back to each exercise in that
same kernel: it restores the saved namespace, runs the released stub and
expects the next check cell to stop with the stub's ``NotImplementedError``;
it restores again before each wrong answer and expects the check to fail; and
it restores once more, runs the real solution and expects the check to pass,
so a wrong answer cannot pass for failing in a state the restore left broken.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nbformat
from executed_notebooks import ExecutedNotebook, NotebookKernel, Outcome

from cifar_lab.instructor.notebooks import cell_source
from cifar_lab.instructor.release import part_label, release_notebook

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
class MutationReport:
    """What :func:`run_with_mutations` saw, for the test's assertions and failure messages."""

    stubs: dict[str, Outcome] = field(default_factory=dict)  # exercise -> check's outcome
    # exercise -> {mutation name -> the check's outcome (or the mutated cell's, if it failed)}
    caught: dict[str, dict[str, Outcome]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


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


def _exercise(
    kernel: NotebookKernel, key: str, cells, index, stub, mutations, report, stand_ins
) -> None:
    """Stub, each wrong answer, then the solution, each from the saved namespace, each checked.

    After each restore, ``stand_ins[name]`` (when the exercise has one) runs first: code
    that replaces a costly name of the namespace for this exercise's runs only.
    """
    source, name = cell_source(cells[index]), exercise_name(cell_source(cells[index]))
    check = cell_source(cells[check_cell_after(cells, index)])
    stand_in = stand_ins.get(name)

    def restore() -> None:
        kernel.restore_namespace(key)
        if stand_in is not None:
            ran = kernel.run(stand_in)
            assert ran.ok, f"{name}: the stand-in failed: {ran.ename}: {ran.evalue}"

    restore()
    if not kernel.run(stub).ok:
        report.problems.append(f"{name}: the released stub itself fails to run")
    report.stubs[name] = kernel.run(check)
    caught = report.caught.setdefault(name, {})
    for mutation in (m for m in mutations if m.old in source):
        restore()
        ran = kernel.run(_apply(source, mutation))
        caught[mutation.name] = kernel.run(check) if ran.ok else ran
    restore()
    solved = kernel.run(source)
    checked = kernel.run(check) if solved.ok else solved
    if not checked.ok:
        report.problems.append(
            f"{name}: after the wrong answers the solution fails its check: "
            f"{checked.ename}: {checked.evalue}"
        )


def run_with_mutations(
    run: ExecutedNotebook, mutations: list[Mutation], stand_ins: dict[str, str] | None = None
) -> MutationReport:
    """Try the stubs and ``mutations`` of executed notebook ``run`` in its kernel.

    Args:
        run: the session's execution of an instructor notebook, kernel still up.
        mutations: wrong answers; each applies to the exercise cell holding its ``old``.
        stand_ins: exercise name -> code run after each restore of that exercise's
            namespace (e.g. a ``train_network`` that does not train, for checks that read
            only what a search recorded); None for none.

    Returns:
        The report: per exercise the check's outcome on the stub, per mutation
        the check's outcome, and any cell that failed when it should not have.
        The kernel is shut down afterwards.
    """
    report = MutationReport()
    if run.problem is not None:
        report.problems.append(f"the notebook did not run: {run.problem}")
        return report
    assert run.kernel is not None, f"{run.source.name}: its kernel is gone (already mutated?)"
    notebook = nbformat.read(run.source, as_version=4)
    name = run.source.name
    released = release_notebook(notebook, part=part_label(run.source.stem), name=name)
    stubs = {cell.get("id"): cell_source(cell) for cell in released.cells}
    cells = notebook.cells
    try:
        for index in run.exercises:
            stub = stubs[cells[index].get("id")]
            _exercise(
                run.kernel,
                run.namespace_key(index),
                cells,
                index,
                stub,
                mutations,
                report,
                stand_ins or {},
            )
    finally:
        run.close_kernel()
    return report


MIN_MUTATIONS_PER_EXERCISE = 2


def assert_checks_catch(
    run: ExecutedNotebook, mutations: list[Mutation], stand_ins: dict[str, str] | None = None
) -> None:
    """The assertions of a notebook's mutation test (see the module docstring).

    Args:
        run: the session's execution of the instructor notebook.
        mutations: at least two wrong answers per exercise cell.
        stand_ins: see :func:`run_with_mutations`.
    """
    report = run_with_mutations(run, mutations, stand_ins)
    assert not report.problems, report.problems
    assert report.stubs, f"{run.source.name}: no exercise found"
    for exercise, outcome in report.stubs.items():
        assert outcome.ename == "NotImplementedError", f"{exercise}: stub gave {outcome}"
        assert exercise in outcome.evalue, f"{exercise}: stub message {outcome.evalue!r}"
    applied = {name for caught in report.caught.values() for name in caught}
    assert applied == {m.name for m in mutations}, "some mutations matched no exercise"
    for exercise, caught in report.caught.items():
        assert len(caught) >= MIN_MUTATIONS_PER_EXERCISE, f"{exercise}: only {sorted(caught)}"
        survivors = [name for name, outcome in caught.items() if outcome.ok]
        assert not survivors, f"{exercise}: the check passed these wrong answers: {survivors}"
