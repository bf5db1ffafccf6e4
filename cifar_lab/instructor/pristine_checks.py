"""How ``grade``'s re-execution verifies the checks without trusting the student's copy of them.

A check passes in the re-execution when the check cell runs to its end in a
fresh kernel with the grader's own check functions. Before **every** code
cell of the re-executed copy the runner inserts a cell of its own
(:func:`pristine_cell`) that

* compiles ``cifar_lab/results.py`` from the source text the *grader* read
  before any student code ran (embedded in the cell as a literal, so nothing
  the kernel imported or patched is used to build the check functions), and
* rebinds ``lab`` to a read-only module that holds those fresh
  ``check_at_least``, ``check_that``, ``check_close`` and ``record`` and
  forwards every other name to the real ``cifar_lab``.

The verdict is whether the check cell raised (the kernel's execute reply,
read by the runner, a process the kernel cannot write to); the check payloads
a cell displays, which any cell can forge, are not read for it. The
notebook stops at the first failed check, as it would for the student.

What this stops: a cell, added or in the student's solution, that rebinds
``lab.check_at_least`` (or ``check_that``, ``check_close``, ``record``) to a
no-op, patches ``cifar_lab.results`` or ``cifar_lab.checks``, replaces
``lab`` or ``sys.modules["cifar_lab"]``, or displays a forged "passed"
payload; in each case the next check runs the grader's function anyway.

What it does **not** stop: code written to attack this harness from inside the kernel
process. Student code and the checks share one Python process, and Python
cannot protect one part of a process from another: a student function that a
check calls can rebind ``lab`` in its caller's globals mid-cell, swap the
``__code__`` of a check function, patch NumPy (``np.allclose``, ``np.all``)
or builtins that the checks use, or swallow the exception inside IPython.
Stopping that would need the student's functions called in one process and
compared in another, with only data in between. Such code is conspicuous in the
notebook: the static checks flag added and edited cells, and an instructor
should read every flagged submission.

That separation is :mod:`cifar_lab.instructor.verdicts`: for every check it
probes, the runner calls the student's functions in the kernel with inputs it
drew, reads back arrays and judges them itself, and those verdicts decide the
points. The pristine check cells remain the verdict only for the checks listed
in ``verdicts.UNPROBED`` (the accuracy checks and Part V's), and a second,
weaker signal for the rest.
"""

from __future__ import annotations

import copy
from pathlib import Path

import cifar_lab.results as results_module

# Names the proxy takes from the grader's copy of cifar_lab/results.py.
PRISTINE_NAMES = ("check_at_least", "check_that", "check_close", "record")
PRISTINE_TAG = "cifar-lab-grader-pristine"

_TEMPLATE = """\
def __cifar_lab_pristine(source, names):
    import importlib, sys, types
    checks = {"__name__": "cifar_lab.results"}
    exec(compile(source, "<grader copy of cifar_lab/results.py>", "exec"), checks)
    real = importlib.import_module("cifar_lab")

    class VerifiedLab(types.ModuleType):
        def __getattr__(self, name):
            return getattr(real, name)

        def __setattr__(self, name, value):
            raise AttributeError(f"lab.{name} is read-only while the grader re-runs the checks")

    proxy = VerifiedLab("cifar_lab")
    for name in names:
        types.ModuleType.__setattr__(proxy, name, checks[name])
    return proxy


lab = __cifar_lab_pristine({source!r}, {names!r})
del __cifar_lab_pristine
"""


def pristine_cell() -> str:
    """The source of the cell that rebinds ``lab`` to the grader's check functions.

    Returns:
        Python source embedding the text of ``cifar_lab/results.py`` as read now.
    """
    source = Path(results_module.__file__).read_text(encoding="utf-8")
    return _TEMPLATE.replace("{source!r}", repr(source)).replace("{names!r}", repr(PRISTINE_NAMES))


def with_pristine_checks(notebook):
    """Return a copy of ``notebook`` with :func:`pristine_cell` before every code cell.

    Args:
        notebook: an ``nbformat`` v4 notebook node (not modified).

    Returns:
        The new notebook; the inserted cells carry the metadata tag :data:`PRISTINE_TAG`.
    """
    import nbformat

    guard = pristine_cell()
    verified = copy.deepcopy(notebook)
    cells = []
    for cell in verified.cells:
        if cell.cell_type == "code":
            inserted = nbformat.v4.new_code_cell(guard)
            inserted.metadata["tags"] = [PRISTINE_TAG]
            cells.append(inserted)
        cells.append(cell)
    verified.cells = cells
    return verified


def is_check_cell(cell) -> bool:
    """True for a code cell that calls a check (``lab.check_...`` or a helper ``check_...``)."""
    return cell.get("cell_type") == "code" and "check_" in "".join(cell.get("source", ""))
