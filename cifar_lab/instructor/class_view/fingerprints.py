"""Exercise code to fingerprints: normalised tokens, then winnowed k-gram hashes.

**Normalising** (:func:`normalise`): the cell is parsed with :mod:`ast`;
comments go (the parser drops them), docstrings and other bare strings go,
runs of independent simple statements are put in one canonical order (so
swapping two unrelated lines changes nothing), every name the cell binds
(arguments, variables, loop targets, inner functions) is renamed ``v0``,
``v1``, ... in order of first use, and each statement is printed again by
:func:`ast.unparse` (one formatting for everyone). Names the cell only reads
(``np``, ``tf``, ``lab``) and attributes keep their spelling. Code that does
not parse falls back to its tokens without comments or spacing. Every token
keeps the lines it came from, so matches can be shown in the original code.

**Fingerprinting** (:func:`fingerprints`): hashes of every ``k`` consecutive
tokens, of which winnowing keeps the smallest in each window of ``window``
hashes (Schleimer, Wilkerson and Aiken 2003, as MOSS does). Any common run of
``k + window - 1`` tokens shares at least one fingerprint.
"""

from __future__ import annotations

import ast
import functools
import itertools
import re
import zlib

_TOKEN = re.compile(
    r"""[A-Za-z_]\w*|\d[\w.]*|'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|\*\*|//|==|!=|<=|>=|->|:=|\S"""
)
_NAME = re.compile(r"(?<![.\w])[A-Za-z_]\w*")  # not an attribute: X.mean is no name
_SIMPLE = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr)
_BODIES = ("body", "orelse", "finalbody")
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.ExceptHandler)

Token = tuple[str, int, int]  # (text, first line, last line) in the original source, 1-based


def _bound_names(tree: ast.AST) -> set[str]:
    """Names the code binds: assigned names, arguments, defined functions and classes."""
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, _DEFINITIONS):
            bound.add(node.name or "")
    return bound - {""}


def _is_bare_string(node: ast.AST) -> bool:
    value = getattr(node, "value", None)
    return (
        isinstance(node, ast.Expr)
        and isinstance(value, ast.Constant)
        and isinstance(value.value, str)
    )


def _root_name(node: ast.AST) -> str | None:
    """``self`` for ``self.x[0].y``; the name a mutation goes through."""
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _reads_writes(statement: ast.stmt) -> tuple[set[str], set[str]]:
    """Names a simple statement reads and writes.

    A method call made for its effect (``params.append(w)``, its value unused)
    writes its local object; one whose value is used (``X.mean()``) only reads it.
    """
    reads, writes = set(), set()
    for node in ast.walk(statement):
        if isinstance(node, ast.Name):
            (writes if isinstance(node.ctx, ast.Store | ast.Del) else reads).add(node.id)
        elif isinstance(node, ast.Attribute | ast.Subscript) and isinstance(node.ctx, ast.Store):
            writes.add(_root_name(node) or "")  # self.x = ... changes self
    if isinstance(statement, ast.AugAssign) and (root := _root_name(statement.target)):
        reads.add(root)
    call = statement.value if isinstance(statement, ast.Expr) else None
    if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute):
        writes.add(_root_name(call.func) or "")  # a call for its effect changes its object
    return reads, writes - {""}


def _masked(statement: ast.stmt, bound: set[str]) -> str:
    """The statement's text with every bound name as ``_``: its canonical sort key."""
    text = ast.unparse(statement)
    statement.printed = text  # kept for _statement_lines: printing is most of the work
    return _NAME.sub(lambda m: "_" if m.group() in bound else m.group(), text)


def _canonical_run(run: list[ast.stmt], bound: set[str]) -> list[ast.stmt]:
    """Order a run of simple statements canonically, keeping every dependency's order."""
    effects = [_reads_writes(statement) for statement in run]
    keys = [_masked(statement, bound) for statement in run]
    before = {j: set() for j in range(len(run))}
    for i, j in itertools.combinations(range(len(run)), 2):
        (reads_i, writes_i), (reads_j, writes_j) = effects[i], effects[j]
        if writes_i & (reads_j | writes_j) or writes_j & reads_i:
            before[j].add(i)
    done: list[int] = []
    while len(done) < len(run):
        ready = [j for j in range(len(run)) if j not in done and before[j] <= set(done)]
        done.append(min(ready, key=lambda j: (keys[j], j)))
    return [run[j] for j in done]


def _canonical_body(body: list[ast.stmt], bound: set[str]) -> list[ast.stmt]:
    """Drop bare strings, order runs of independent simple statements; recurse into blocks."""
    kept = [statement for statement in body if not _is_bare_string(statement)]
    ordered: list[ast.stmt] = []
    run: list[ast.stmt] = []
    for statement in [*kept, None]:
        if isinstance(statement, _SIMPLE):
            run.append(statement)
            continue
        ordered += _canonical_run(run, bound) if len(run) > 1 else run
        run = []
        if statement is not None:
            _canonical_blocks(statement, bound)
            ordered.append(statement)
    return ordered or [ast.Pass(lineno=body[0].lineno if body else 1, col_offset=0)]


def _canonical_blocks(node: ast.AST, bound: set[str]) -> None:
    for name in _BODIES:
        if isinstance(getattr(node, name, None), list) and getattr(node, name):
            setattr(node, name, _canonical_body(getattr(node, name), bound))
    for handler in getattr(node, "handlers", []) or []:
        handler.body = _canonical_body(handler.body, bound)
    for case in getattr(node, "cases", []) or []:
        case.body = _canonical_body(case.body, bound)


def _header(node: ast.stmt) -> str:
    """The first line(s) of a compound statement, without its blocks."""
    blocks = {name: getattr(node, name, None) for name in (*_BODIES, "handlers", "cases")}
    for name in blocks:
        if hasattr(node, name):
            setattr(node, name, [])
    try:
        text = ast.unparse(node)
    finally:
        for name, value in blocks.items():
            if value is not None:
                setattr(node, name, value)
    return "\n".join(line for line in text.splitlines() if line.strip())


def _statement_lines(body: list, out: list[tuple[str, int, int]]) -> None:
    """(text, first line, last line) of every statement, headers of blocks included."""
    for node in body:
        last = getattr(node, "end_lineno", None) or node.lineno
        compound = any(getattr(node, name, None) for name in (*_BODIES, "handlers", "cases"))
        if not compound:
            out.append((getattr(node, "printed", None) or ast.unparse(node), node.lineno, last))
            continue
        out.append((_header(node), node.lineno, node.lineno))
        for name in ("body", "handlers", "cases", "orelse", "finalbody"):
            _statement_lines(getattr(node, name, None) or [], out)


def _renamed_tokens(lines: list[tuple[str, int, int]], bound: set[str]) -> list[Token]:
    """Tokens of the printed statements, bound names renamed ``v0``, ``v1``, ... in order of use.

    A name right after ``.`` is an attribute (``X.mean``), never renamed.
    """
    names: dict[str, str] = {}
    tokens: list[Token] = []
    previous = ""
    for text, first, last in lines:
        for token in _TOKEN.findall(text):
            if token in bound and previous != ".":
                token = names.setdefault(token, f"v{len(names)}")
            tokens.append((token, first, last))
            previous = token
    return tokens


def _fallback_tokens(source: str) -> list[Token]:
    """Tokens of code that does not parse: no comments, no spacing, names kept."""
    tokens: list[Token] = []
    for number, line in enumerate(source.splitlines(), start=1):
        code = line.split("#", 1)[0]  # naive about "#" in strings; this code is broken anyway
        tokens += [(token, number, number) for token in _TOKEN.findall(code)]
    return tokens


def normalise(source: str) -> list[Token]:
    """Normalise one cell's code into tokens that carry their original lines.

    Args:
        source: the cell's source (Python; IPython magics make it unparsable).

    Returns:
        ``(token, first line, last line)`` per token, in canonical order, lines 1-based.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return _fallback_tokens(source)
    try:
        bound = _bound_names(tree)
        tree.body = _canonical_body(tree.body, bound) if tree.body else []
        lines: list[tuple[str, int, int]] = []
        _statement_lines(tree.body, lines)
    except RecursionError:  # a hostile cell nests too deeply for unparse
        return _fallback_tokens(source)
    return _renamed_tokens(lines, bound)


def normalised_text(source: str) -> str:
    """One string per normalised cell: equal for code equal up to names, comments, format."""
    return " ".join(token for token, _, _ in normalise(source))


@functools.lru_cache(maxsize=65536)
def _token_id(token: str) -> int:
    """A stable number per token (CRC-32): k-grams hash as tuples of ints, the same every run."""
    return zlib.crc32(token.encode("utf-8", "surrogatepass"))


def fingerprints(tokens: list[Token], k: int, window: int) -> dict[int, tuple[int, int]]:
    """Winnow the k-gram hashes of a token stream.

    Args:
        tokens: from :func:`normalise`.
        k: tokens per k-gram.
        window: hashes per winnowing window.

    Returns:
        fingerprint -> (first line, last line) of its first k-gram in the original source.
    """
    if not tokens:
        return {}
    k = min(k, len(tokens))
    ids = [_token_id(token) for token, _, _ in tokens]
    # (hash, -position): min() picks the smallest hash, the rightmost one on ties, as
    # winnowing prescribes; a tuple of ints hashes the same in every process
    grams = [(hash(tuple(ids[i : i + k])), -i) for i in range(len(ids) - k + 1)]
    chosen: dict[int, tuple[int, int]] = {}
    span = min(window, len(grams))
    for start in range(len(grams) - span + 1):
        value, position = min(grams[start : start + span])
        if value not in chosen:
            first, last = tokens[-position], tokens[-position + k - 1]
            chosen[value] = (min(first[1], last[1]), max(first[2], last[2]))
    return chosen
