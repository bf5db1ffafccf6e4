"""Static tamper detection: student cells that patch the checks or the library.

A check cell proves something only if ``lab.check_at_least`` and friends are
the library's. :func:`find_patches` reads the cells a student wrote (added
cells, solution cells, edited given cells) with :mod:`ast`, never running
them, and reports code that could change what a check reports:

* writing an attribute or item of an imported protected module (``cifar_lab``,
  ``numpy``, ``tensorflow``, ``keras``, ``IPython``, ``sys``, ``builtins``, ...),
  or of a name taken from one (``r = lab.results``; ``lab.check_that = ...``;
  ``sys.modules[...] = ...``), or through ``globals()``, ``vars()`` or
  ``get_ipython()``; ``setattr``/``delattr`` on them; ``.update``-like calls
  on them; writing ``__code__``, ``__globals__``, ``__dict__``, frame globals;
* rebinding a name the notebook imported a protected module as (``lab = Fake()``);
* importing ``builtins``, ``unittest.mock``, ``pytest`` or ``ctypes``; any use of
  ``monkeypatch`` or ``__builtins__``; ``exec``/``eval``/``compile``/``__import__``;
  tracers (``sys.settrace``); running code through IPython (``run_cell``, ``push``);
  the check payloads' MIME type or the library's files named in a string;
* magics and shell lines (``%run``, ``!sed ... cifar_lab``) and code that does
  not parse, when they mention any of the above.

Each cell is parsed once and its tree walked once (alias roots are memoised),
so the work is linear in the notebook's size. Static reading is best effort:
``grade``'s re-execution is what verifies the checks by running them.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable

from cifar_lab.instructor.findings import Finding
from cifar_lab.instructor.notebooks import cell_source
from cifar_lab.instructor.release import source_digest

PROTECTED_MODULES = frozenset(
    {"cifar_lab", "numpy", "tensorflow", "keras", "IPython", "builtins", "sys", "math"}
    | {"importlib", "json"}
)
DEFAULT_ALIASES = {"lab": "cifar_lab", "cifar_lab": "cifar_lab", "np": "numpy"}
DEFAULT_ALIASES |= {"tf": "tensorflow", "keras": "keras", "sys": "sys", "builtins": "builtins"}
CHECK_NAMES = frozenset({"check_at_least", "check_that", "check_close", "_emit", "read_outputs"})
PATCH_ATTRIBUTES = frozenset(
    {"__code__", "__globals__", "__dict__", "__defaults__", "__kwdefaults__", "__closure__"}
    | {"__class__", "__builtins__", "f_globals", "f_locals", "f_builtins"}
)
NAMESPACE_CALLS = frozenset({"globals", "locals", "vars", "get_ipython"})
ALIAS_CALLS = frozenset({"import_module", "__import__", "getattr", "vars"})
MUTATORS = frozenset({"update", "setdefault", "__setitem__", "__delitem__", "pop", "popitem"})
SETTERS = frozenset({"setattr", "delattr", "__setattr__", "__delattr__"})
DYNAMIC = frozenset({"exec", "eval", "compile", "__import__"})
IPYTHON_RUNNERS = frozenset({"run_cell", "run_line_magic", "run_cell_magic", "ex", "ev", "push"})
FORBIDDEN_IMPORTS = ("builtins", "unittest.mock", "mock", "pytest", "_pytest", "ctypes")
FLAGGED_NAMES = frozenset({"monkeypatch", "MonkeyPatch", "__builtins__", "CHECK_MIME"})
PYTHON_CELL_MAGICS = frozenset({"%%time", "%%timeit", "%%capture", "%%prun"})
MAX_PER_CELL = 3
SUSPICIOUS = re.compile(
    r"check_at_least|check_that|check_close|_emit|read_outputs|\.record\b|cifar_lab|cifar-lab"
    r"|setattr|delattr|sys\.modules|builtins|monkeypatch|__code__|__globals__|site-packages"
)
LIBRARY_STRING = re.compile(r"site-packages|cifar_lab[/\\]|vnd\.cifar-lab")
ASSIGNED_MAGIC = re.compile(r"[\w.,\s]*=\s*[!%]")  # x = !ls: never valid Python
HELP = re.compile(r"\?\??[\w.]+|[\w.]+\?\??")  # obj? and ??obj
Patch = tuple[int, str]  # (line, what the code does)


def _dotted(node: ast.AST) -> str:
    """``lab.results.check_that``, ``sys.modules[...]``, ``globals()[...]``, for messages."""
    suffix = ""
    for _ in range(8):  # bounded: a message, not a parser
        if isinstance(node, ast.Attribute):
            suffix, node = f".{node.attr}{suffix}", node.value
        elif isinstance(node, ast.Subscript):
            suffix, node = f"[...]{suffix}", node.value
        elif isinstance(node, ast.Call):
            suffix, node = f"(...){suffix}", node.func
        else:
            break
    head = node.id if isinstance(node, ast.Name) else "..."
    return (head + suffix)[:80]


class _Reader:
    """Walks the cells of one notebook in order, keeping the aliases of protected modules."""

    def __init__(self) -> None:
        self.modules = dict(DEFAULT_ALIASES)  # name -> module, from imports: not to be rebound
        self.derived: set[str] = set()  # names taken from a protected module
        self._roots: dict[int, tuple[str, bool]] = {}

    def root(self, node: ast.AST) -> tuple[str, bool]:
        """(root name or "namespace()", whether a patch attribute is on the way), memoised."""
        chain, found = [], None
        while found is None:
            if id(node) in self._roots:
                found = self._roots[id(node)]
                break
            chain.append(node)
            if isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
                node = node.value
            elif isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else ""
                if name in NAMESPACE_CALLS and not node.args:
                    found = ("namespace()", False)
                elif name in ALIAS_CALLS and node.args:
                    node = node.args[0]
                else:
                    node = node.func
            else:
                found = (node.id if isinstance(node, ast.Name) else "", False)
        root, patched = found
        for item in reversed(chain):
            patched = patched or (
                isinstance(item, ast.Attribute) and item.attr in PATCH_ATTRIBUTES
            )
            self._roots[id(item)] = (root, patched)
        return root, patched

    def forget_roots(self) -> None:
        self._roots.clear()

    def protected(self, node: ast.AST) -> bool:
        root, patched = self.root(node)
        return patched or root == "namespace()" or root in self.modules or root in self.derived

    def _bind(self, name: str, module: str | None, line: int, out: list[Patch]) -> None:
        """A name is (re)bound; ``module``: the module it is now imported as, if any."""
        root = (module or "").split(".")[0]
        if name in self.modules and root not in PROTECTED_MODULES:
            out.append((line, f"rebinds {name}, which names the {self.modules[name]} module"))
        elif root in PROTECTED_MODULES:
            self.modules.setdefault(name, root)

    def imports(self, node: ast.Import | ast.ImportFrom, out: list[Patch]) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                self._check_import(alias.name, node.lineno, out)
                self._bind(bound, alias.name, node.lineno, out)
            return
        base = node.module or ""
        for alias in node.names:
            self._check_import(f"{base}.{alias.name}", node.lineno, out)
            if alias.name == "*":
                if base.split(".")[0] not in PROTECTED_MODULES:
                    out.append((node.lineno, f"imports * from {base}, which may rebind lab"))
                continue
            bound = alias.asname or alias.name
            if base.split(".")[0] in PROTECTED_MODULES:
                self.derived.add(bound)  # e.g. `from cifar_lab import results`
            elif bound in self.modules:
                message = f"rebinds {bound}, which names the {self.modules[bound]} module"
                out.append((node.lineno, message))

    def _check_import(self, name: str, line: int, out: list[Patch]) -> None:
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN_IMPORTS):
            out.append((line, f"imports {name}, which can patch the library"))

    def targets(self, targets: Iterable[ast.AST], value: ast.AST | None, out: list[Patch]) -> None:
        """Assignment (or deletion) targets: writes into protected objects, rebinding aliases."""
        for target in targets:
            if isinstance(target, (ast.Tuple, ast.List)):
                self.targets(target.elts, None, out)
            elif isinstance(target, ast.Starred):
                self.targets([target.value], None, out)
            elif isinstance(target, ast.Name):
                self._bind(target.id, None, target.lineno, out)
                if value is not None and self._is_alias_value(value):
                    self.derived.add(target.id)
            elif self.protected(target) or (
                isinstance(target, ast.Attribute) and target.attr in CHECK_NAMES
            ):
                out.append((target.lineno, f"writes {_dotted(target)}"))

    def _is_alias_value(self, value: ast.AST) -> bool:
        """``lab.results``, ``sys.modules[...]``, ``importlib.import_module(...)``."""
        if isinstance(value, (ast.Name, ast.Attribute)):
            return self.protected(value)
        if isinstance(value, ast.Subscript):
            return _dotted(value.value) == "sys.modules"
        if isinstance(value, ast.Call):
            func = value.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            return name in ALIAS_CALLS and self.protected(value)
        return False

    def call(self, node: ast.Call, out: list[Patch]) -> None:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if isinstance(func, ast.Name) and name in DYNAMIC:
            out.append((node.lineno, f"runs dynamic code with {name}()"))
        elif name in SETTERS and node.args:
            named = [a.value for a in node.args[:2] if isinstance(a, ast.Constant)]
            if self.protected(node.args[0]) or any(
                n in CHECK_NAMES or n in PATCH_ATTRIBUTES for n in named
            ):
                out.append((node.lineno, f"calls {name} on {_dotted(node.args[0])}"))
        elif isinstance(func, ast.Attribute) and name in MUTATORS and self.protected(func.value):
            out.append((node.lineno, f"changes {_dotted(func.value)} with .{name}()"))
        elif name in ("settrace", "setprofile"):
            out.append((node.lineno, f"installs a tracer with {name}()"))
        elif name in IPYTHON_RUNNERS and self.root(func)[0] == "namespace()":
            out.append((node.lineno, f"runs code through IPython's {name}()"))

    def statement(self, node: ast.AST, out: list[Patch]) -> None:
        """Inspect one node of the tree (called for every node, once)."""
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            self.imports(node, out)
        elif isinstance(node, ast.Assign):
            self.targets(node.targets, node.value, out)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For, ast.AsyncFor)):
            self.targets([node.target], None, out)
        elif isinstance(node, ast.NamedExpr):
            self.targets([node.target], node.value, out)
        elif isinstance(node, ast.Delete):
            self.targets(node.targets, None, out)
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            self.targets([node.optional_vars], None, out)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self._bind(node.name, None, node.lineno, out)
        elif isinstance(node, ast.Call):
            self.call(node, out)
        elif isinstance(node, ast.Name) and node.id in FLAGGED_NAMES:
            out.append((node.lineno, f"uses {node.id}"))
        elif isinstance(node, ast.Attribute) and node.attr in ("CHECK_MIME", "__file__"):
            if self.protected(node.value):
                out.append((node.lineno, f"reads {_dotted(node)}"))
        elif isinstance(node, ast.Constant) and LIBRARY_STRING.search(str(node.value)):
            out.append((node.lineno, "names the library's files or check outputs"))


def _mask_magics(source: str) -> tuple[str | None, list[Patch]]:
    """Python source with IPython magics and shell lines blanked, and patches found in them.

    Returns:
        (the source to parse, or None for a non-Python cell magic such as %%bash; patches).
    """
    lines = source.split("\n")
    patches: list[Patch] = []
    if lines[0].lstrip().startswith("%%"):
        magic = lines[0].split()[0]
        if magic not in PYTHON_CELL_MAGICS:
            hit = SUSPICIOUS.search(source)
            return None, [(1, f"{magic} cell mentions {hit.group()}")] if hit else []
        lines[0] = ""
    for index, line in enumerate(lines):
        stripped = line.lstrip()
        magic = stripped.startswith(("!", "%")) or ASSIGNED_MAGIC.match(stripped)
        if magic or HELP.fullmatch(stripped.rstrip()):
            if stripped.startswith(("%run", "%load ")):
                patches.append((index + 1, "runs another file with " + stripped.split()[0]))
            elif magic and (hit := SUSPICIOUS.search(stripped)):
                patches.append((index + 1, f"a magic or shell line mentions {hit.group()}"))
            lines[index] = line[: len(line) - len(stripped)] + "pass"
    return "\n".join(lines), patches


def _read_cell(reader: _Reader, source: str, scan: bool) -> list[Patch]:
    """Patches in one cell's source; learns its imports either way."""
    reader.forget_roots()  # node ids are only unique within one tree
    masked, patches = _mask_magics(source)
    if masked is None:
        return patches
    try:
        tree = ast.parse(masked)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        hit = SUSPICIOUS.search(source) if scan else None
        return patches + ([(1, f"code that does not parse mentions {hit.group()}")] if hit else [])
    found: list[Patch] = []
    for node in ast.walk(tree):
        if scan:
            reader.statement(node, found)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            reader.imports(node, [])  # given code: learn its aliases, trust it
    return patches + found if scan else []


def find_patches(cells: Iterable[tuple[str, bool]]) -> dict[int, list[Patch]]:
    """Find code that patches the checks or the library in a notebook's code cells.

    Args:
        cells: (source, scan) per code cell, in notebook order; ``scan`` False
            for unedited given cells, which are read only for their imports.

    Returns:
        Position among the given cells -> up to 3 (line, description) patches;
        cells without any are absent.
    """
    reader, found = _Reader(), {}
    for position, (source, scan) in enumerate(cells):
        patches = _read_cell(reader, source, scan)
        if patches:
            found[position] = sorted(set(patches))[:MAX_PER_CELL]
    return found


def tamper_findings(name: str, cells: list[dict], released: dict) -> list[Finding]:
    """Flag every added or edited code cell that patches the checks or the library."""
    code = [i for i, cell in enumerate(cells) if cell.get("cell_type") == "code"]

    def scan(cell: dict) -> bool:  # unedited given cells are the release's own code
        entry = released.get(cell.get("id"))
        given = entry is not None and entry["kind"] == "given"
        return not (given and source_digest(cell_source(cell)) == entry["sha256"])

    patches = find_patches((cell_source(cells[i]), scan(cells[i])) for i in code)
    findings = []
    for position, found in patches.items():
        index = code[position]
        what = "; ".join(f"line {line}: {text}" for line, text in found)
        number = f"{position + 1}/{len(code)}"  # numbered as run's progress lines number it
        message = f"cell {number} (id {cells[index].get('id', '?')}) may patch the checks: {what}"
        fix = "remove that code; a notebook that patches the checks scores 0 for its checks"
        findings.append(Finding("flagged", name, message, fix))
    return findings
