"""The package's shape: rooms, one-way dependencies, no import cycle.

The import graph is read from the source with :mod:`ast`, so an import inside
a function or under ``TYPE_CHECKING`` counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "cifar_lab"
FRONT_DOOR = {"cifar_lab", "cifar_lab.__main__"}  # the lazy API and the command line
# room -> the rooms it may import from (the front door may import anything)
ALLOWED = {
    "course": {"course"},
    "tuning": {"course", "tuning"},
    "instructor": {"course", "tuning", "instructor"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def resolve(target: str, modules: dict[str, Path]) -> str:
    """The longest known module that ``target`` names (``a.b.name`` -> ``a.b``)."""
    while target not in modules and "." in target:
        target = target.rsplit(".", 1)[0]
    return target


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every cifar_lab module that ``name`` imports, wherever the import statement is."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: climb from this module's package
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import sub` imports the submodule when there is one
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        found |= {resolve(t, modules) for t in targets if t.split(".")[0] == "cifar_lab"}
    return found - {name}


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def room(module: str) -> str:
    if module in FRONT_DOOR:
        return "front door"
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ("tuning", "instructor"):
        return parts[1]
    return "course"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, str] = {}  # "open" while on the stack, "done" after

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target, [*stack, target])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_graph_reader_sees_imports_inside_functions(tmp_path):
    # The reader itself must not miss the kinds of import that make cycles.
    fake = tmp_path / "cifar_lab"
    (fake / "tuning").mkdir(parents=True)
    (fake / "tuning" / "__init__.py").write_text("")
    (fake / "tuning" / "a.py").write_text("def f():\n    from cifar_lab.tuning import b\n")
    (fake / "tuning" / "b.py").write_text("from . import a\nimport cifar_lab.metrics as m\n")
    (fake / "metrics.py").write_text("")
    modules = {
        ".".join(p.relative_to(tmp_path).with_suffix("").parts).removesuffix(".__init__"): p
        for p in fake.rglob("*.py")
    }
    graph = {
        n: imports_of(n, p, modules) - {"cifar_lab"}
        for n, p in modules.items()
        if n != "cifar_lab"
    }
    assert graph["cifar_lab.tuning.a"] == {"cifar_lab.tuning.b", "cifar_lab.tuning"}
    assert graph["cifar_lab.tuning.b"] >= {"cifar_lab.tuning.a", "cifar_lab.metrics"}
    assert find_cycle(graph) is not None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_dependencies_point_one_way():
    wrong = sorted(
        f"{source} ({room(source)}) imports {target} ({room(target)})"
        for source, targets in import_graph().items()
        for target in targets
        if room(source) != "front door"
        and (room(target) == "front door" or room(target) not in ALLOWED[room(source)])
    )
    assert not wrong, "imports against the rooms' direction:\n" + "\n".join(wrong)


def test_rooms_exist():
    # How many modules a room holds is a judgement (docs/maintainers.md, Layout), except for the
    # instructor room's ceiling below; the Layout test keeps every module named and described.
    for subpackage in ("data", "tuning", "instructor"):
        assert (PACKAGE_DIR / subpackage / "__init__.py").is_file(), subpackage


# Issue 21: a newcomer follows one submission through instructor/ in one sitting, so the
# room holds at most this many files, any subfolder's included (its files are read too).
INSTRUCTOR_MAX_FILES = 20


def instructor_files() -> list[str]:
    """Every .py file of ``cifar_lab/instructor/``, subfolders included, relative to it."""
    room = PACKAGE_DIR / "instructor"
    return sorted(path.relative_to(room).as_posix() for path in room.rglob("*.py"))


def test_instructor_room_has_at_most_20_files():
    files = instructor_files()
    assert len(files) <= INSTRUCTOR_MAX_FILES, (
        f"instructor/ holds {len(files)} files (at most {INSTRUCTOR_MAX_FILES}): {files}"
    )


def layout_section() -> str:
    """The maintainers' guide's Layout section (docs/maintainers.md): heading to the next one."""
    readme = (PACKAGE_DIR.parent / "docs" / "maintainers.md").read_text(encoding="utf-8")
    start = readme.index("\n## Layout\n")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end != -1 else None]


def listed_modules(layout: str) -> set[str]:
    """The package's module paths the Layout's tree names, e.g. ``cifar_lab/instructor/claims.py``.

    The tree is indented two spaces per folder level; a line's first word is a
    folder (``tuning/``) or a module (``claims.py``).
    """
    tree = layout[layout.index("```\ncifar_lab/") + 4 :]
    tree = tree[: tree.index("```")]
    found, folders = set(), []
    for line in tree.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        word = line.split()[0]
        folders = folders[:depth]
        if word.endswith("/"):
            folders.append(word.rstrip("/"))
        elif word.endswith(".py"):
            found.add("/".join([*folders, word]))
    return {path for path in found if path.startswith("cifar_lab/")}


def test_layout_reader_sees_nested_modules():
    layout = (
        "## Layout\n```\ncifar_lab/\n  a.py  one\n  sub/   room\n    b.py   two\n"
        "                 continued description\n  c.py  three\n"
        "notebooks/\nsetup.py  not ours\n```\n"
    )
    assert listed_modules(layout) == {
        "cifar_lab/a.py",
        "cifar_lab/sub/b.py",
        "cifar_lab/c.py",
    }


def layout_gaps(modules: set[str], layout: str) -> tuple[list[str], list[str]]:
    """(modules the Layout does not list, listed modules that do not exist)."""
    listed = listed_modules(layout)
    return sorted(modules - listed), sorted(listed - modules)


def test_layout_gaps_name_a_missing_module():
    layout = "## Layout\n```\ncifar_lab/\n  a.py  one\n  sub/  room\n    gone.py  old\n```\n"
    modules = {"cifar_lab/a.py", "cifar_lab/sub/b.py"}
    assert layout_gaps(modules, layout) == (["cifar_lab/sub/b.py"], ["cifar_lab/sub/gone.py"])
    assert layout_gaps({"cifar_lab/a.py"}, layout) == ([], ["cifar_lab/sub/gone.py"])


def test_readme_layout_lists_every_module():
    # A module holds one idea; the Layout names each one in a line, so a new module
    # that cannot be described in one line is a sign it holds more than one.
    modules = {
        path.relative_to(PACKAGE_DIR.parent).as_posix()
        for path in PACKAGE_DIR.rglob("*.py")
        if path.name != "__init__.py" or path.parent == PACKAGE_DIR
    }
    missing, gone = layout_gaps(modules, layout_section())
    assert not missing, f"missing from the Layout: {missing}"
    assert not gone, f"in the Layout but not in the package: {gone}"


MEGABYTE_HOME = "cifar_lab/data/limits.py"  # issue 21: one megabyte constant, defined there


def megabyte_spellings(path: Path, source: str) -> list[str]:
    """Where ``source`` spells a megabyte itself: ``1 << 20``, ``2 ** 20`` or ``1024 * 1024``.

    A byte unit named ``MEGABYTE``/``MEBIBYTE``/``MB``/``MIB`` defined outside
    :data:`MEGABYTE_HOME` counts too, whatever its value. ``1 << 20`` counts only as
    (part of) a value assigned to a ``*BYTES*`` name: elsewhere it may be a plain
    count (a range of random ids).
    """
    spellings = []

    def constant(node: ast.AST, value: int) -> bool:
        return isinstance(node, ast.Constant) and node.value == value

    def spelled(node: ast.AST, shifts: bool) -> bool:
        for sub in ast.walk(node):
            if not isinstance(sub, ast.BinOp):
                continue
            if isinstance(sub.op, ast.Pow) and constant(sub.left, 2) and constant(sub.right, 20):
                return True
            product = isinstance(sub.left, ast.BinOp) and isinstance(sub.left.op, ast.Mult)
            kilo = sub.left.right if product else sub.left  # 64 * 1024 * 1024: (64 * 1024) * 1024
            if isinstance(sub.op, ast.Mult) and constant(sub.right, 1024) and constant(kilo, 1024):
                return True
            if shifts and isinstance(sub.op, ast.LShift) and constant(sub.right, 20):
                return True
        return False

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.BinOp) and spelled(node, False):
            spellings.append(f"{path}:{node.lineno}")
        if not isinstance(node, ast.Assign | ast.AnnAssign):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        unit = any(name.upper() in ("MEGABYTE", "MEBIBYTE", "MB", "MIB") for name in names)
        sized = node.value is not None and any("BYTES" in name.upper() for name in names)
        if unit and path.as_posix() != MEGABYTE_HOME:
            spellings.append(f"{path}:{node.lineno} defines {names[0]}")
        elif sized and spelled(node.value, True):
            spellings.append(f"{path}:{node.lineno}")
    return sorted(set(spellings))


def test_megabyte_reader_sees_each_spelling():
    source = (
        "MEGABYTE = 1 << 20\nMAX_BYTES = 64 * 1024 * 1024\nLIMIT_BYTES = 1 << 20\n"
        "x = 2**20\nids = choice(1 << 20)\nOK_BYTES = 64 * MEGABYTE\n"
    )
    found = megabyte_spellings(Path("cifar_lab/a.py"), source)
    assert found == [
        "cifar_lab/a.py:1 defines MEGABYTE",
        "cifar_lab/a.py:2",
        "cifar_lab/a.py:3",
        "cifar_lab/a.py:4",
    ]
    assert megabyte_spellings(Path(MEGABYTE_HOME), "MEGABYTE = 1 << 20\n") == []


def test_one_megabyte_constant():
    spellings = [
        spelling
        for path in sorted(PACKAGE_DIR.rglob("*.py"))
        for spelling in megabyte_spellings(
            path.relative_to(PACKAGE_DIR.parent), path.read_text(encoding="utf-8")
        )
    ]
    assert not spellings, f"a megabyte spelled out (use {MEGABYTE_HOME}'s MEGABYTE): {spellings}"
