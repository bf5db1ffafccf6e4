"""No answer in the library: nothing a solution region defines is defined or exported by cifar_lab.

A solution region is the code between ``### BEGIN SOLUTION`` and ``### END
SOLUTION`` in an exercise cell of the instructor notebooks. Its *names* are:

* the function or class the region sits in (the exercise: ``two_layer_fc_init``,
  ``ThreeLayerFC`` for a region in ``ThreeLayerFC.call``), read with :mod:`ast`;
* for a region at the top level of a cell, every function, class and variable
  defined at the top level of the region (the notebook's own globals, e.g. a
  Part V search space).

What a region inside a function defines (``scores``, ``loss``, a nested
helper) is local to that function: no student could reach it as ``lab.<name>``,
so a library name that happens to match is no answer.

No module of ``cifar_lab`` (every ``.py`` under the package, read with
:mod:`ast`) may define one of them at module level, and ``cifar_lab.__all__``
may not export one, so ``lab.<answer>`` never exists for a student to call.

A region's *distinctive lines* (:func:`distinctive_solution_lines`, for code and
for written answers) are what tests/test_wheel.py looks for in the built wheel.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

import cifar_lab
from cifar_lab.instructor.notebooks import cell_source, course_notebooks
from cifar_lab.instructor.release import BEGIN_SOLUTION, END_SOLUTION, HINT_PREFIX, build_release

PACKAGE_DIR = Path(cifar_lab.__file__).resolve().parent
DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _code(source: str) -> str:
    """Cell source with IPython magics and shell lines blanked (line numbers kept)."""
    return "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
    )


def _regions(lines: list[str]) -> list[tuple[int, int]]:
    """1-based (first, last) line numbers of the code inside each solution region."""
    regions, begin = [], None
    for number, line in enumerate(lines, start=1):
        if line.strip() == BEGIN_SOLUTION:
            begin = number
        elif line.strip() == END_SOLUTION and begin is not None:
            regions.append((begin + 1, number - 1))
            begin = None
    return regions


# A solution line shorter than this (`return x`, `)`) says nothing about the answer.
MIN_DISTINCTIVE = 12


def distinctive_solution_lines(source_dir: Path) -> dict[str, str]:
    """Lines of the solution regions and model answers that the student edition lacks.

    Args:
        source_dir: the instructor notebooks.

    Returns:
        Each stripped line of a region (code or written answer) of at least
        :data:`MIN_DISTINCTIVE` characters that appears nowhere in the release of
        ``source_dir`` (the given code and text) -> the notebook cell it is from.
        ``### HINT:`` lines are left out: release puts their text into the stub.
    """
    released, _ = build_release(source_dir)
    given = "\n".join(cell_source(c) for nb in released.values() for c in nb.cells)
    found = {}
    for path in course_notebooks(source_dir):
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
            lines = cell_source(cell).splitlines()
            for first, last in _regions(lines):
                for line in (ln.strip() for ln in lines[first - 1 : last]):
                    if len(line) < MIN_DISTINCTIVE or line.startswith(HINT_PREFIX):
                        continue
                    if line not in given:
                        found.setdefault(line, f"{path.stem} cell {index}")
    return found


def _assigned(node: ast.stmt) -> list[str]:
    targets = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    return [
        name.id for target in targets for name in ast.walk(target) if isinstance(name, ast.Name)
    ]


def region_names(source: str) -> set[str]:
    """The names the solution regions of one code cell define (see the module docstring)."""
    code = _code(source)
    lines = code.splitlines()
    names: set[str] = set()
    tree = ast.parse(code)
    for first, last in _regions(lines):
        # the exercise: the top-level def/class of the cell that holds the region
        for node in tree.body:
            if isinstance(node, DEFINITIONS) and node.lineno <= first <= node.end_lineno:
                names.add(node.name)
        if lines[first - 2][:1].isspace():  # the BEGIN marker is indented: a local region
            continue
        for node in ast.parse("\n".join(lines[first - 1 : last])).body:
            names.update([node.name] if isinstance(node, DEFINITIONS) else _assigned(node))
    return names


def solution_names() -> dict[str, str]:
    """Every name defined in a solution region of the course notebooks -> where."""
    found = {}
    for path in course_notebooks():
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
            source = cell_source(cell)
            if cell.cell_type == "code" and BEGIN_SOLUTION in source:
                for name in region_names(source):
                    found.setdefault(name, f"{path.stem} cell {index}")
    return found


def _module_level(body: list[ast.stmt]) -> set[str]:
    """Names bound at module level, including under if/try/with blocks (e.g. TYPE_CHECKING)."""
    names: set[str] = set()
    for node in body:
        if isinstance(node, DEFINITIONS):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for block in ("body", "orelse", "finalbody", "handlers"):
                for part in getattr(node, block, []):
                    names |= _module_level(part.body if block == "handlers" else [part])
        else:
            names.update(_assigned(node))
    return names


def library_definitions() -> dict[str, list[str]]:
    """Every module-level name of every module under cifar_lab/ -> the modules."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for name in _module_level(tree.body):
            found.setdefault(name, []).append(str(path.relative_to(PACKAGE_DIR.parent)))
    return found


def test_the_notebooks_have_solution_regions_to_check():
    names = solution_names()
    # the exercises the course has had since its first release, so the test checks something
    assert {"two_layer_fc_init", "three_layer_fc", "ThreeLayerFC"} <= set(names), sorted(names)


def test_no_library_module_defines_or_exports_an_answer():
    library = library_definitions()
    answers = solution_names()
    defined = {name: (where, library[name]) for name, where in answers.items() if name in library}
    exported = {name: where for name, where in answers.items() if name in cifar_lab.__all__}
    assert not defined, f"answers defined in the library (name: (notebook, modules)): {defined}"
    assert not exported, f"answers exported as lab.<name>: {exported}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (  # an exercise function: its name; its local variables stay out
            "def init(n):\n    '''doc'''\n    ### BEGIN SOLUTION\n    ### HINT: zeros\n"
            "    w = make(n)\n    return [w]\n    ### END SOLUTION\n",
            {"init"},
        ),
        (  # a method: the class; a helper local to the method stays out
            "class Net(Model):\n    def call(self, x):\n        ### BEGIN SOLUTION\n"
            "        def helper(y):\n            return y\n        return helper(x)\n"
            "        ### END SOLUTION\n",
            {"Net"},
        ),
        (  # a region at the top of a cell: its definitions and its globals
            "%matplotlib inline\nsettings = 1\n### BEGIN SOLUTION\nspace = {'lr': [1]}\n"
            "best, rest = pick(space)\ndef build(c):\n    inner = 2\n    return c\n"
            "### END SOLUTION\n",
            {"space", "best", "rest", "build"},
        ),
    ],
    ids=["function", "method", "top-level"],
)
def test_region_names(source, expected):
    assert region_names(source) == expected


def test_library_definitions_see_functions_classes_imports_and_conditional_names(tmp_path):
    tree = ast.parse(
        "import numpy as np\nfrom a import b, c as d\nX: int = 1\ndef f(): pass\n"
        "class K: pass\nif T:\n    from m import hidden\nelse:\n    y = 2\n"
        "try:\n    import z\nexcept ImportError:\n    z = None\n"
    )
    assert _module_level(tree.body) == {"np", "b", "d", "X", "f", "K", "hidden", "y", "z"}
