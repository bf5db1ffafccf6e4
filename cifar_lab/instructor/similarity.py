"""Similar solutions across a class: pairs per exercise through an inverted index of fingerprints.

Each exercise cell (found by its nbgrader ``grade_id``) is compared only with
the same exercise of the other students. Cells become winnowed fingerprints
of their normalised code (no comments, docstrings, names or formatting;
independent lines in one order). Then:

* **what everyone shares is left out**: fingerprints of the released stub,
  fingerprints held by most of the class, and cells left with fewer than
  ``min_fingerprints`` fingerprints (too short to say anything);
* **pairs** come from an inverted index fingerprint -> students: only
  students sharing a fingerprint are ever compared, never every pair of texts.

Besides pairs, the pass reports cells whose normalised code equals the
instructor's model answer ("matches the model answer": a leaked answer is a
problem of its own), identical executed outputs of a random process (the same
training curve to the last digit) and byte-identical model files.

The report says "similar", never more: deciding is the instructor's job. The
input of :func:`find_similar` is plain data (``{student: {grade_id: source}}``),
so it is tested without grading.

The module reads in the order the pass works, in three parts:

**Fingerprints**: exercise code to normalised tokens, then winnowed k-gram hashes.
*Normalising* (:func:`normalise`): the cell is parsed with :mod:`ast`;
comments go (the parser drops them), docstrings and other bare strings go,
runs of independent simple statements are put in one canonical order (so
swapping two unrelated lines changes nothing), every name the cell binds
(arguments, variables, loop targets, inner functions) is renamed ``v0``,
``v1``, ... in order of first use, and each statement is printed again by
:func:`ast.unparse` (one formatting for everyone). Names the cell only reads
(``np``, ``tf``, ``lab``) and attributes keep their spelling. Code that does
not parse falls back to its tokens without comments or spacing. Every token
keeps the lines it came from, so matches can be shown in the original code.
*Fingerprinting* (:func:`fingerprints`): hashes of every ``k`` consecutive
tokens, of which winnowing keeps the smallest in each window of ``window``
hashes (Schleimer, Wilkerson and Aiken 2003, as MOSS does). Any common run of
``k + window - 1`` tokens shares at least one fingerprint.

**Pairs per exercise** (:func:`find_similar`, with :class:`SimilaritySettings`).

**Sources**, what the pass reads: :func:`course_references` gives each
exercise's released stub and model answer from the instructor notebooks;
:func:`collect_sources` reads, from a folder of ``<student>.zip`` files and
``<student>/`` folders, each student's exercise cells (by their nbgrader
``grade_id``), executed outputs and the sha256 of the saved Part V model,
without extracting or running anything.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import itertools
import json
import re
import zipfile
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from cifar_lab.instructor.findings import MEGABYTE
from cifar_lab.instructor.release import part_label, stub_code
from cifar_lab.instructor.submission import MAX_ZIP_MEMBERS, submission_name
from cifar_lab.tuning.part5 import MODEL_FILE, PART5_DIR

# ----------------------------------------- fingerprints: normalised tokens, winnowed k-gram hashes

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


# ------------------------------------------------------------------------------ pairs per exercise

_FLOAT = re.compile(r"-?\d+\.\d{4,}(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class SimilaritySettings:
    """How similar is similar.

    Attributes:
        k: tokens per hashed k-gram.
        window: winnowing window (hashes); a common run of ``k + window - 1``
            tokens is always detected.
        threshold: report a pair whose similarity (shared fingerprints over
            the mean of both counts, 0..1) is at least this.
        min_fingerprints: ignore a cell left with fewer fingerprints once the
            stub's are removed (code shorter than a floor).
        common_fraction: ignore a fingerprint, an output or a model held by more
            than this fraction of the students (and by more than ``common_students``).
        common_students: see ``common_fraction`` (small classes keep their pairs).
        max_blocks: matching blocks kept per pair, for the report.
        max_detailed: the most similar pairs that get their matching blocks (the
            report shows no more; the others are listed without lines).
        max_chars: a longer cell is not compared (listed as skipped): parsing a
            hostile megabyte of code must not stall the batch.
    """

    k: int = 8
    window: int = 6
    threshold: float = 0.5
    min_fingerprints: int = 4
    common_fraction: float = 0.5
    common_students: int = 10
    max_blocks: int = 12
    max_detailed: int = 200
    max_chars: int = 50_000

    def __post_init__(self) -> None:
        from cifar_lab.checks import check_int, check_number

        check_int("k", self.k, minimum=1)
        check_int("window", self.window, minimum=1)
        check_number("threshold", self.threshold, minimum=0, maximum=1)
        check_int("min_fingerprints", self.min_fingerprints, minimum=1)
        check_number("common_fraction", self.common_fraction, minimum=0, maximum=1)
        check_int("common_students", self.common_students, minimum=2)
        check_int("max_blocks", self.max_blocks, minimum=1)
        check_int("max_detailed", self.max_detailed, minimum=0)
        check_int("max_chars", self.max_chars, minimum=1)


@dataclass(frozen=True)
class Reference:
    """What the instructor released and expects for one exercise.

    Attributes:
        stub: the released cell (its fingerprints are everyone's).
        model_answer: the instructor's cell ("" when unknown).
    """

    stub: str
    model_answer: str = ""


@dataclass(frozen=True)
class SimilarPair:
    """Two students whose code for one exercise is similar.

    Attributes:
        grade_id: the exercise.
        student_a, student_b: the two students (``student_a < student_b``).
        similarity: shared fingerprints over the mean fingerprint count, 0..1.
        shared: how many fingerprints they share.
        blocks: matching line ranges ``(a_first, a_last, b_first, b_last)``, 1-based,
            in ``student_a``'s order (empty beyond ``max_detailed`` pairs).
        model_answer: both cells match the model answer.
    """

    grade_id: str
    student_a: str
    student_b: str
    similarity: float
    shared: int
    blocks: tuple[tuple[int, int, int, int], ...]
    model_answer: bool = False


@dataclass(frozen=True)
class SameGroup:
    """Students with an identical output of one cell, or an identical model file.

    Attributes:
        kind: ``"output"`` or ``"model"``.
        where: the cell (``notebook:cell``) or the model file's name.
        digest: sha256 of the shared output numbers or of the file.
        students: the students, sorted.
    """

    kind: str
    where: str
    digest: str
    students: tuple[str, ...]


@dataclass(frozen=True)
class Similarity:
    """The result of one similarity pass over a class.

    Attributes:
        pairs: similar pairs, most similar first.
        model_answer: grade_id -> students whose cell matches the model answer.
        same_outputs: groups with identical executed outputs of a random process.
        same_models: groups with byte-identical model files.
        sources: the compared sources, for showing matching lines.
        skipped: grade_id -> students whose cell was the stub, too short or too long.
    """

    pairs: tuple[SimilarPair, ...] = ()
    model_answer: dict[str, tuple[str, ...]] = field(default_factory=dict)
    same_outputs: tuple[SameGroup, ...] = ()
    same_models: tuple[SameGroup, ...] = ()
    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    skipped: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _common_limit(students: int, settings: SimilaritySettings) -> float:
    """More students than this sharing something makes it common, not similar."""
    return max(settings.common_students, settings.common_fraction * students)


def _blocks(
    shared: list[int], a: dict[int, tuple[int, int]], b: dict[int, tuple[int, int]], most: int
) -> tuple[tuple[int, int, int, int], ...]:
    """Merge the line ranges of shared fingerprints into side-by-side blocks."""
    spans = sorted((*a[h], *b[h]) for h in shared)
    merged: list[list[int]] = []
    for a0, a1, b0, b1 in spans:
        last = merged[-1] if merged else None
        if last and a0 <= last[1] + 1 and last[2] - 1 <= b0 <= last[3] + 1:
            last[1], last[3] = max(last[1], a1), max(last[3], b1)
            last[2] = min(last[2], b0)
        else:
            merged.append([a0, a1, b0, b1])
    return tuple(tuple(block) for block in merged[:most])


def _exercise_pairs(
    grade_id: str,
    prints: dict[str, dict[int, tuple[int, int]]],
    matches_model: set[str],
    class_size: int,
    settings: SimilaritySettings,
) -> list[tuple[SimilarPair, list[int]]]:
    """Similar pairs of one exercise (without blocks yet) and the fingerprints they share.

    Only students that share a fingerprint are ever counted, through the
    inverted index fingerprint -> students.
    """
    index: dict[int, list[str]] = defaultdict(list)
    for student, found in prints.items():
        for value in found:
            index[value].append(student)
    limit = _common_limit(class_size, settings)
    counts: dict[tuple[str, str], list[int]] = defaultdict(list)
    for value, holders in index.items():
        if 1 < len(holders) <= limit:
            for pair in itertools.combinations(sorted(holders), 2):
                counts[pair].append(value)
    pairs = []
    for (a, b), shared in counts.items():
        similarity = 2 * len(shared) / (len(prints[a]) + len(prints[b]))
        if similarity >= settings.threshold:
            both = a in matches_model and b in matches_model
            pair = SimilarPair(grade_id, a, b, round(similarity, 4), len(shared), (), both)
            pairs.append((pair, shared))
    return pairs


def _same_groups(kind: str, digests: dict[tuple[str, str], list[str]], limit: float) -> list:
    groups = []
    for (where, digest), students in sorted(digests.items()):
        if 1 < len(students) <= limit:
            groups.append(SameGroup(kind, where, digest, tuple(sorted(students))))
    return groups


def output_digest(text: str, min_numbers: int = 3) -> str | None:
    """sha256 of the precise numbers in an output (a training curve), or None if too few.

    Args:
        text: an executed cell's output text.
        min_numbers: fewest numbers with at least four decimals that make an output
            the trace of a random process (a loss or accuracy curve).

    Returns:
        The digest of those numbers in order, or None.
    """
    numbers = _FLOAT.findall(text)
    if len(numbers) < min_numbers:
        return None
    return hashlib.sha256(" ".join(numbers).encode("ascii")).hexdigest()


def find_similar(
    sources: dict[str, dict[str, str]],
    references: dict[str, Reference],
    *,
    outputs: dict[str, dict[str, str]] | None = None,
    model_digests: dict[str, str] | None = None,
    settings: SimilaritySettings | None = None,
) -> Similarity:
    """Find similar solutions, identical random outputs and identical models in a class.

    Args:
        sources: student -> grade_id -> the exercise cell's source.
        references: grade_id -> its stub and model answer; only these exercises are compared.
        outputs: student -> cell name -> the cell's executed output text.
        model_digests: student -> sha256 of the saved model file.
        settings: thresholds (None: the defaults).

    Returns:
        The :class:`Similarity` of the class.
    """
    settings = settings or SimilaritySettings()
    students = sorted(sources)
    candidates: list[tuple[SimilarPair, list[int]]] = []
    prints_of: dict[str, dict[str, dict[int, tuple[int, int]]]] = {}
    model_answer: dict[str, tuple[str, ...]] = {}
    skipped: dict[str, tuple[str, ...]] = {}
    for grade_id, reference in sorted(references.items()):
        # every k-gram of the stub, not only its winnowed ones: a student's window may pick another
        stub_prints = fingerprints(normalise(reference.stub), settings.k, 1)
        stub_text = normalised_text(reference.stub)
        model_text = normalised_text(reference.model_answer) if reference.model_answer else None
        prints, matches, short = {}, set(), []
        for student in students:
            source = sources[student].get(grade_id)
            if not isinstance(source, str):
                continue
            if len(source) > settings.max_chars:
                short.append(student)
                continue
            tokens = normalise(source)
            text = " ".join(token for token, _, _ in tokens)
            if model_text is not None and text == model_text:
                matches.add(student)
            found = fingerprints(tokens, settings.k, settings.window)
            found = {h: lines for h, lines in found.items() if h not in stub_prints}
            if text == stub_text or len(found) < settings.min_fingerprints:
                short.append(student)
                continue
            prints[student] = found
        candidates += _exercise_pairs(grade_id, prints, matches, len(students), settings)
        prints_of[grade_id] = prints
        if matches:
            model_answer[grade_id] = tuple(sorted(matches))
        if short:
            skipped[grade_id] = tuple(short)
    limit = _common_limit(len(students), settings)
    same_outputs: dict[tuple[str, str], list[str]] = defaultdict(list)
    for student, cells in (outputs or {}).items():
        for where, text in cells.items():
            if (digest := output_digest(text)) is not None:
                same_outputs[(where, digest)].append(student)
    same_models: dict[tuple[str, str], list[str]] = defaultdict(list)
    for student, digest in (model_digests or {}).items():
        same_models[("model", digest)].append(student)
    candidates.sort(
        key=lambda c: (-c[0].similarity, c[0].grade_id, c[0].student_a, c[0].student_b)
    )
    pairs = []
    for rank, (pair, shared) in enumerate(candidates):
        if rank < settings.max_detailed:  # matching lines for the pairs the report shows
            prints = prints_of[pair.grade_id]
            blocks = _blocks(
                shared, prints[pair.student_a], prints[pair.student_b], settings.max_blocks
            )
            pair = dataclasses.replace(pair, blocks=blocks)
        pairs.append(pair)
    return Similarity(
        pairs=tuple(pairs),
        model_answer=model_answer,
        same_outputs=tuple(_same_groups("output", same_outputs, limit)),
        same_models=tuple(_same_groups("model", same_models, limit)),
        sources=sources,
        skipped=skipped,
    )


# ------------------------------------------ sources: the course's exercises, a class's submissions

_NOTEBOOK = re.compile(r"^\d\d_\w+\.ipynb$")


def _cells(notebook: dict) -> list[dict]:
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    return [cell for cell in cells if isinstance(cell, dict)] if isinstance(cells, list) else []


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    if isinstance(source, list):
        return "".join(part for part in source if isinstance(part, str))
    return source if isinstance(source, str) else ""


def _solution_id(cell: dict) -> str | None:
    """The grade_id of an nbgrader solution code cell, else None."""
    metadata = cell.get("metadata")
    nbgrader = metadata.get("nbgrader") if isinstance(metadata, dict) else None
    if cell.get("cell_type") != "code" or not isinstance(nbgrader, dict):
        return None
    grade_id = nbgrader.get("grade_id")
    return grade_id if nbgrader.get("solution") and isinstance(grade_id, str) else None


def course_references(source_dir: Path | None = None) -> dict[str, Reference]:
    """Stub and model answer of every exercise cell of the instructor notebooks.

    Args:
        source_dir: folder of the solution notebooks ``NN_name.ipynb`` (None: the course's).

    Returns:
        grade_id -> :class:`Reference` (the stub as ``release`` writes it).
    """
    from cifar_lab.instructor.notebooks import course_notebooks, notebook_dir

    folder = notebook_dir() if source_dir is None else Path(source_dir)
    references = {}
    for path in course_notebooks(folder):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        for cell in _cells(notebook):
            if grade_id := _solution_id(cell):
                source = _source(cell)
                stub = stub_code(source, part=part_label(path.stem))
                references[grade_id] = Reference(stub=stub, model_answer=source)
    return references


@dataclass(frozen=True)
class ClassSources:
    """What the similarity pass reads from a folder of submissions.

    Attributes:
        sources: student -> grade_id -> exercise cell source.
        outputs: student -> ``notebook:cell`` -> executed output text.
        model_digests: student -> sha256 of ``part5/best_model.keras``.
        problems: student -> why (part of) the submission could not be read.
    """

    sources: dict[str, dict[str, str]]
    outputs: dict[str, dict[str, str]]
    model_digests: dict[str, str]
    problems: dict[str, list[str]]


def _output_text(cell: dict) -> str:
    """The text a code cell printed: streams and plain-text results."""
    parts = []
    for output in cell.get("outputs") or []:
        if not isinstance(output, dict):
            continue
        text = output.get("text")
        data = output.get("data")
        if isinstance(data, dict):
            text = data.get("text/plain", text)
        if isinstance(text, list):
            text = "".join(part for part in text if isinstance(part, str))
        if isinstance(text, str):
            parts.append(text)
    return "".join(parts)


def _read_notebook(text: bytes, stem: str, sources: dict, outputs: dict) -> None:
    notebook = json.loads(text)
    for number, cell in enumerate(_cells(notebook)):
        if grade_id := _solution_id(cell):
            sources.setdefault(grade_id, _source(cell))
        if cell.get("cell_type") == "code" and (printed := _output_text(cell)):
            key = cell.get("id") if isinstance(cell.get("id"), str) else str(number)
            outputs[f"{stem}:{key}"] = printed


def _files(path: Path, max_bytes: int) -> tuple[dict[str, bytes], list[str]]:
    """Notebooks and the Part V model of one submission, by relative path; and problems."""
    found: dict[str, bytes] = {}
    problems: list[str] = []
    too_many = f"holds more than {MAX_ZIP_MEMBERS} files (the grader's limit); not compared"
    if path.is_dir():
        paths = []
        for p in path.rglob("*"):  # stops at the limit: a folder may hold millions
            if len(paths) == MAX_ZIP_MEMBERS:
                return found, [too_many]
            if p.is_file() and not p.is_symlink() and len(p.relative_to(path).parts) <= 3:
                paths.append(p)
        members = [
            (p.relative_to(path).as_posix(), p.stat().st_size, p.read_bytes) for p in sorted(paths)
        ]
        for name, size, read in members:
            if _wanted(name):
                if size > max_bytes:
                    problems.append(f"{name} is over the size limit; not compared")
                else:
                    found[name] = read()
        return found, problems
    with zipfile.ZipFile(path) as archive:
        if len(archive.infolist()) > MAX_ZIP_MEMBERS:
            return found, [too_many]
        for member in archive.infolist():
            name = member.filename.replace("\\", "/")
            if member.is_dir() or ".." in PurePosixPath(name).parts or not _wanted(name):
                continue
            if member.file_size > max_bytes:
                problems.append(f"{name} is over the size limit; not compared")
                continue
            with archive.open(member) as handle:
                data = handle.read(max_bytes + 1)
            if len(data) > max_bytes:
                problems.append(f"{name} unpacks to more than its declared size; not compared")
                continue
            found[name] = data
    return found, problems


def _wanted(name: str) -> bool:
    parts = PurePosixPath(name).parts
    notebook = bool(_NOTEBOOK.match(parts[-1])) and len(parts) <= 2
    return notebook or (parts[-2:] == (PART5_DIR, MODEL_FILE) and len(parts) <= 3)


def collect_sources(folder: Path, *, max_bytes: int = 64 * MEGABYTE) -> ClassSources:
    """Read exercise sources, outputs and model digests from a folder of submissions.

    Reads ``<student>.zip`` files and ``<student>/`` folders as ``grade`` does
    (notebooks at the top or in one folder inside), without extracting or running
    anything; files over ``max_bytes`` are skipped with a problem.

    Args:
        folder: the submissions folder.
        max_bytes: largest notebook or model file read.

    Returns:
        The :class:`ClassSources` of every submission (an unreadable one has problems only).
    """
    sources, outputs, digests, problems = {}, {}, {}, {}
    for path in sorted(Path(folder).iterdir()):
        if path.name.startswith(".") or not (path.is_dir() or path.suffix.lower() == ".zip"):
            continue
        student = submission_name(path)  # as grade names it
        sources[student], outputs[student], problems[student] = {}, {}, []
        try:
            files, problems[student] = _files(path, max_bytes)
        except (OSError, zipfile.BadZipFile, ValueError, RuntimeError, EOFError) as error:
            problems[student].append(f"cannot read {path.name}: {error}")
            continue
        for name, data in sorted(files.items()):
            if name.endswith(".ipynb"):
                try:
                    _read_notebook(
                        data, PurePosixPath(name).stem, sources[student], outputs[student]
                    )
                except (ValueError, TypeError, AttributeError, RecursionError) as error:
                    problems[student].append(f"{name} is not a readable notebook ({error})")
            else:
                digests[student] = hashlib.sha256(data).hexdigest()
    problems = {student: found for student, found in problems.items() if found}
    return ClassSources(sources, outputs, digests, problems)
