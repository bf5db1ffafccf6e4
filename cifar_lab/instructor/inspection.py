"""Inspection: what a handed-in notebook's saved JSON says, read and never run, and what is wrong.

Shared by ``python -m cifar_lab submit`` (student side) and ``grade``. Notebooks
are read as plain JSON, never executed, and refused unread above a size limit.
Everything in them is text a student can edit, so nothing is taken as written:

* **JSON** (:func:`parse_json`): every way Python's parser can fail becomes a
  sentence, never a traceback: nesting deeper than the recursion limit
  (``RecursionError``), integers longer than ``sys.get_int_max_str_digits()``
  (``ValueError``), bytes that are not UTF-8. Integers that do parse may still be
  too large for a float; :func:`finite_number` answers False for them.
* **Check payloads** (:func:`check_verdict`): a payload's ``passed`` field is
  never trusted. ``lab.check_at_least`` payloads carry ``value`` and
  ``minimum``: the check passes only when ``value >= minimum`` is recomputed
  here, the claimed ``passed`` agrees, and ``minimum`` is no lower than the
  lowest promise any profile makes (a lowered threshold is a doctored output);
  ``lab.check_that`` / ``lab.check_close`` payloads carry only ``what`` and
  ``passed``, which must be the JSON value ``true`` (only ``grade``'s re-execution can
  verify these further).
* **Structure and execution** (:func:`inspect_notebook`): cells compared with
  the release manifest, the execution order (:func:`first_out_of_order`), error
  outputs (:func:`error_text`), recorded results, written answers.

**The run profile** (the second part, :func:`submission_profile`): the profile a
submission's saved work ran in, and whether the assignment accepts it.
Every ``lab.record`` payload names the profile its notebook ran in
(:func:`cifar_lab.results.record`), and ``part5/results.json`` names the profile
the saved model was trained in (:func:`cifar_lab.tuning.part5.save_final_model`).
``grade`` reads both, writes the submission's profile in the report's ``profile``
column and, unless told to accept it (``grade --accept-profile quick``, for
practice rounds), flags work done in a profile the assignment does not ask for:
quick-profile work trains on a tenth of the data and would otherwise earn every
autograded point.

A name is what the student's files say, so anything but a known profile name
counts as not recorded. Work saved before profiles were recorded names none:
its profile is ``"unknown"`` and it is not flagged.

**Tampering** (the last part, :func:`find_patches`): student cells that patch the
checks or the library. A check cell proves something only if ``lab.check_at_least``
and friends are the library's. :func:`find_patches` reads the cells a student wrote (added
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

Each problem is a :class:`~cifar_lab.instructor.findings.Finding`.
"""

from __future__ import annotations

import ast
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifar_lab.instructor.findings import MEGABYTE, Finding, megabytes
from cifar_lab.instructor.notebooks import cell_source
from cifar_lab.instructor.release import (
    ANSWER_PLACEHOLDER,
    ANSWER_PREFIX,
    is_answer_cell,
    source_digest,
)
from cifar_lab.profiles import PROFILES
from cifar_lab.results import read_outputs
from cifar_lab.tuning.split_record import PROFILE_KEY


# ------------------------------------------------------------ values a student wrote
def parse_json(data: bytes, name: str) -> tuple[Any, str | None]:
    """Parse untrusted JSON bytes.

    Args:
        data: the file's bytes.
        name: the file's name, for the message.

    Returns:
        (the parsed value, None), or (None, what is wrong with it in words).
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        where = f"byte 0x{data[error.start]:02x} at position {error.start}"
        return None, f"{name} is not UTF-8 text ({where}); save it again as UTF-8"
    try:
        return json.loads(text), None
    except RecursionError:
        depth = sys.getrecursionlimit()
        return None, f"{name} nests lists or objects too deeply to read (over ~{depth} levels)"
    except json.JSONDecodeError as error:
        return None, f"{name} is not valid JSON ({error})"
    except ValueError as error:  # int longer than the int-to-str digit limit
        if "digits" in str(error):
            limit = sys.get_int_max_str_digits()
            return None, f"{name} holds an integer with more than {limit} digits"
        return None, f"{name} is not valid JSON ({error})"
    except MemoryError:
        return None, f"{name} is too large to read"


def finite_number(value: Any) -> bool:
    """True for a finite int or float (not a bool); False for ints too large for a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # e.g. a 400-digit integer
        return False


# the lowest accuracy promise of any profile: a check_at_least minimum below it is doctored
TRUSTED_MINIMUM = min(min(p.min_val_accuracy, p.min_fit_accuracy) for p in PROFILES.values())
VERDICTS = ("passed", "failed", "forged")


def check_verdict(payload: Any) -> tuple[str, str]:
    """Recompute whether one check payload passed.

    Args:
        payload: the decoded JSON of one check output (any JSON value).

    Returns:
        (verdict, reason): verdict is ``"passed"``, ``"failed"`` (the check says
        it failed, or its numbers say so) or ``"forged"`` (it claims to pass but
        its own numbers contradict it, or the threshold was lowered); reason is
        "" for ``"passed"``, else one sentence.
    """
    if not isinstance(payload, dict):
        return "forged", "the check output is not a JSON object"
    claimed = payload.get("passed")
    what = str(payload.get("what", "?"))[:200]
    if "value" not in payload and "minimum" not in payload:
        if claimed is True:
            return "passed", ""
        return "failed", f"check failed: {what}"
    value, minimum = payload.get("value"), payload.get("minimum")
    if not (finite_number(value) and finite_number(minimum)):
        return "forged", f"check '{what}' has no numeric value and minimum"
    if minimum < TRUSTED_MINIMUM:
        message = f"check '{what}' has minimum {minimum:.4f}, below every profile's promise"
        return "forged", f"{message} ({TRUSTED_MINIMUM:.2f}): the output was edited"
    if value < minimum:
        if claimed is True:
            message = f"check '{what}' claims to pass but {value:.4f} < minimum {minimum:.4f}"
            return "forged", message + ": the output was edited"
        return "failed", f"check failed: {what}: {value:.4f} < {minimum:.4f}"
    if claimed is not True:
        return "forged", f"check '{what}' says it failed although {value:.4f} >= {minimum:.4f}"
    return "passed", ""


def check_passed(payload: Any) -> bool:
    """True when :func:`check_verdict` recomputes a pass."""
    return check_verdict(payload)[0] == "passed"


# ------------------------------------------------------------------ one notebook
DEFAULT_MAX_NOTEBOOK_BYTES = 20 * MEGABYTE
RESTART_FIX = "re-run {name} from the top (Kernel > Restart Kernel and Run All Cells), then save"


@dataclass
class NotebookInspection:
    """What one executed notebook shows, read without running it.

    Attributes:
        name: notebook stem.
        state: ``"ok"``, ``"missing"`` or ``"damaged"``.
        executed_in_order: None when the notebook could not be read.
        errors, checks_passed, checks_failed: counts.
        edited_cells: ids of given (non-solution) cells whose source differs from the release.
        results: recorded results by name (last value wins).
        profiles: the profiles those results say they ran in (see :func:`notebook_profiles`).
        answers: (present, expected) written answers.
        findings: the problems found.
    """

    name: str
    state: str = "ok"
    executed_in_order: bool | None = None
    errors: int = 0
    checks_passed: int = 0
    checks_failed: int = 0
    edited_cells: list[str] = field(default_factory=list)
    results: dict[str, float] = field(default_factory=dict)
    profiles: frozenset[str] = frozenset()
    answers: tuple[int, int] = (0, 0)
    findings: list[Finding] = field(default_factory=list)


def read_notebook_json(path: Path, max_bytes: int) -> tuple[dict | None, Finding | None]:
    """Read a notebook as JSON, refusing files over ``max_bytes`` before parsing them.

    Returns:
        (notebook dict, None) or (None, a ``damaged`` Finding).
    """
    name = path.stem
    size = path.stat().st_size
    if size > max_bytes:
        message = f"{path.name} is {megabytes(size)}, over the {megabytes(max_bytes)} limit"
        fix = "clear huge outputs (e.g. long printouts) and run the notebook again"
        return None, Finding("damaged", name, message, fix)
    notebook, problem = parse_json(path.read_bytes(), path.name)
    if problem is not None:
        fix = "the file is truncated or was edited by hand; save it again from Jupyter"
        return None, Finding("damaged", name, problem, fix)
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        return None, Finding("damaged", name, f"{path.name} is not a notebook (no cell list)")
    if notebook.get("nbformat") != 4:
        return None, Finding("damaged", name, f"{path.name} is not an nbformat 4 notebook")
    return notebook, None


def first_out_of_order(cells: list[dict]) -> tuple[int, int] | None:
    """The one walk of the execution order: where the counts 1, 2, 3, ... first break.

    Args:
        cells: the notebook's cells (JSON objects).

    Returns:
        (index of the first code cell whose execution count is not the next one,
        the count it should have had), or None when every code cell ran in order.
    """
    expected = 1
    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "code" or not cell_source(cell).strip():
            continue  # Jupyter does not count empty cells
        if cell.get("execution_count") != expected:
            return index, expected
        expected += 1
    return None


def error_texts(cell: dict, max_chars: int = 600) -> list[str]:
    """The one reader of error outputs: ``"Name: value"`` of each, values cut at ``max_chars``."""
    return [
        f"{output.get('ename', 'Error')}: {str(output.get('evalue', ''))[:max_chars]}"
        for output in cell.get("outputs") or []
        if isinstance(output, dict) and output.get("output_type") == "error"
    ]


def headings_above(cells: list[dict]) -> list[str]:
    """Where a student finds each cell in JupyterLab: the heading above it, in words.

    Cell ids are invisible in JupyterLab, so a problem names the cell's place too.

    Args:
        cells: the notebook's cells (JSON objects), in order.

    Returns:
        One text per cell, ``"under the heading 'Part II: ...'"`` (the nearest
        Markdown heading at or above it), or ``"above the first heading"``.
    """
    places, place = [], "above the first heading"
    for cell in cells:  # one pass: linear in the notebook's size
        if cell.get("cell_type") == "markdown":
            lines = cell_source(cell).splitlines()
            titles = [line.lstrip("#").strip() for line in lines if line.startswith("#")]
            if titles and titles[-1]:
                title = titles[-1] if len(titles[-1]) <= 80 else titles[-1][:77] + "..."
                place = f"under the heading '{title}'"
        places.append(place)
    return places


def cell_numbers(cells: list[dict]) -> list[str]:
    """Each cell's number as ``run``'s progress lines give it: ``"2/14"``, the code cells' count.

    One numbering everywhere: the position among the notebook's code cells, from 1,
    over their number. A Markdown cell gets its position among all cells, ``"md 3"``.

    Args:
        cells: the notebook's cells (JSON objects), in order.

    Returns:
        One label per cell.
    """
    total = sum(cell.get("cell_type") == "code" for cell in cells)
    numbers, seen = [], 0
    for index, cell in enumerate(cells):
        if cell.get("cell_type") == "code":
            seen += 1
            numbers.append(f"{seen}/{total}")
        else:
            numbers.append(f"md {index + 1}")
    return numbers


def _order_finding(name: str, cells: list[dict]) -> Finding | None:
    """The first code cell that breaks the 1, 2, 3, ... execution counts, if any."""
    broken = first_out_of_order(cells)
    if broken is None:
        return None
    index, expected = broken
    count = cells[index].get("execution_count")
    label = f"cell {cell_numbers(cells)[index]} (id {cells[index].get('id', '?')})"
    place = headings_above(cells[: index + 1])[index]
    if count is None:
        message = f"{label} was never run, {place}"
    else:
        message = (
            f"{label} ran out of order (execution count {count}, expected {expected}), {place}"
        )
    return Finding("incomplete", name, message, RESTART_FIX.format(name=name))


def _error_findings(name: str, cells: list[dict]) -> list[Finding]:
    fix = "fix the code, then " + RESTART_FIX.format(name=name)
    places, numbers = headings_above(cells), cell_numbers(cells)
    return [
        Finding("incomplete", name, f"cell {numbers[index]} raised {error}, {places[index]}", fix)
        for index, cell in enumerate(cells)
        for error in error_texts(cell, max_chars=200)  # a problem line, not the whole message
    ]


def _check_findings(name: str, notebook: dict, expected: dict | None) -> tuple[int, int, list]:
    """Count passed and failed checks; report failed ones and checks that never ran."""
    checks = read_outputs(notebook)["checks"]
    findings = []
    places, numbers = headings_above(notebook["cells"]), cell_numbers(notebook["cells"])
    for check in checks:
        if not check_passed(check):  # recomputed from value and minimum, not read
            where = f"cell {numbers[check['cell']]}, {places[check['cell']]}"
            message = f"check failed in {where}: {check.get('what', '?')}"
            fix = "read the hint under that cell and fix the code it names"
            findings.append(Finding("incomplete", name, message, fix))
    ran = {notebook["cells"][check["cell"]].get("id") for check in checks}
    place_of: dict[Any, str] = {}
    for cell, place in zip(notebook["cells"], places, strict=True):
        place_of.setdefault(cell.get("id"), place)
    for entry in (expected or {}).get("cells", []):
        if entry["has_check"] and entry["id"] not in ran:
            message = f"the check in cell id {entry['id']} did not run or printed no result"
            message += f", {place_of[entry['id']]}" if entry["id"] in place_of else ""
            findings.append(Finding("incomplete", name, message, RESTART_FIX.format(name=name)))
    passed = sum(check_passed(check) for check in checks)
    return passed, len(checks) - passed, findings


def recorded_results(notebook: dict) -> dict[str, float]:
    """Numeric ``lab.record`` results of a notebook by name (the last value wins)."""
    found = {}
    for result in read_outputs(notebook)["results"]:
        value = result.get("value")
        if isinstance(result.get("name"), str) and finite_number(value):
            found[result["name"]] = float(value)
    return found


def answer_is_present(cell: dict[str, Any] | None) -> bool:
    """True when a written-answer cell holds more than the prefix and no placeholder."""
    if cell is None:
        return False
    text = cell_source(cell).strip()
    text = text[len(ANSWER_PREFIX) :] if text.startswith(ANSWER_PREFIX) else text
    return bool(text.strip()) and ANSWER_PLACEHOLDER not in text


def _answers(cells: list[dict], expected: dict | None) -> tuple[int, int]:
    if expected is None:
        answer_cells = [cell for cell in cells if is_answer_cell(cell)]
    else:
        by_id = {cell.get("id"): cell for cell in cells}
        wanted = [entry["id"] for entry in expected["cells"] if entry["kind"] == "answer"]
        answer_cells = [by_id.get(cell_id) for cell_id in wanted]
    return sum(answer_is_present(cell) for cell in answer_cells), len(answer_cells)


def foreign_notebook(name: str, cells: list[dict], expected: dict) -> Finding | None:
    """A ``damaged`` finding when none of the notebook's cells is one of the release's.

    Another course's notebook saved under a course notebook's name would otherwise
    give one problem per released cell and per graded cell; this is the one line.

    Args:
        name: notebook stem.
        cells: its cells (JSON objects).
        expected: its release-manifest entry.

    Returns:
        The finding, or None (the notebook shares a cell with the release, or its cells
        have no ids to compare).
    """
    ids = [cell.get("id") for cell in cells]
    released = {entry["id"] for entry in expected["cells"]}
    if not released or not all(isinstance(i, str) and i for i in ids):
        return None
    if not released.isdisjoint(ids):
        return None
    message = (
        f"{name}.ipynb is not a notebook of this course: none of its {len(ids)} cells "
        "is one of the release's (another course's notebook under this name?)"
    )
    fix = "start again from the release notebook and copy your work into it"
    return Finding("damaged", name, message, fix)


def structure_findings(name: str, cells: list[dict], expected: dict) -> tuple[list, list[str]]:
    """Compare cell ids with the release: deleted, duplicated, reordered, edited cells.

    Added cells are allowed. Returns (findings, ids of edited given cells).
    """
    ids = [cell.get("id") for cell in cells]  # every step below is linear in len(cells)
    if not all(isinstance(cell_id, str) and cell_id for cell_id in ids):
        message = "cannot verify structure: some cells have no id (saved by an old Jupyter?)"
        return [Finding("flagged", name, message)], []
    released = {entry["id"]: entry for entry in expected["cells"]}
    fix = "start again from the release notebook and copy your work into it"
    foreign = foreign_notebook(name, cells, expected)
    if foreign is not None:  # one line, not one per missing cell
        return [foreign], []
    counts = Counter(ids)
    places: dict[str, str] = {}
    for cell_id, place in zip(ids, headings_above(cells), strict=True):
        places.setdefault(cell_id, place)  # of equal ids, the first
    findings = [
        Finding("damaged", name, f"cell id {cell_id} is duplicated, {places[cell_id]}", fix)
        for cell_id in sorted(i for i, n in counts.items() if n > 1 and i in released)
    ]
    for cell_id, entry in released.items():
        if cell_id not in counts:
            message = f"cell id {cell_id} was deleted ('{entry['first_line']}')"
            findings.append(Finding("damaged", name, message, fix))
    kept = [i for i in counts if i in released]  # first occurrences, in order
    order = [entry["id"] for entry in expected["cells"] if entry["id"] in counts]
    moved = next((mine for mine, theirs in zip(kept, order, strict=True) if mine != theirs), None)
    if moved:
        message = f"cells reordered (first: id {moved}), {places[moved]}"
        findings.append(Finding("damaged", name, message, fix))
    by_id = {cell.get("id"): cell for cell in cells}
    edited = [
        cell_id
        for cell_id, entry in released.items()
        if entry["kind"] == "given"
        and cell_id in by_id
        and source_digest(cell_source(by_id[cell_id])) != entry["sha256"]
    ]
    for cell_id in edited:
        if released[cell_id]["has_check"]:
            message = f"the check cell id {cell_id} was edited, {places[cell_id]}"
            findings.append(Finding("flagged", name, message))
    return findings, edited


def inspect_notebook(name: str, notebook: dict, expected: dict | None) -> NotebookInspection:
    """Inspect one executed notebook (a JSON dict) without running it.

    Args:
        name: notebook stem.
        notebook: the parsed notebook.
        expected: its release-manifest entry, or None to skip structure checks.

    Returns:
        A :class:`NotebookInspection`; malformed content becomes a ``damaged`` finding.
    """
    inspection = NotebookInspection(name)
    try:
        cells = [cell for cell in notebook["cells"] if isinstance(cell, dict)]
        if len(cells) != len(notebook["cells"]):
            raise TypeError("a cell is not a JSON object")
        foreign = foreign_notebook(name, cells, expected) if expected else None
        if foreign is not None:  # nothing else in it is worth a line
            inspection.state, inspection.findings = "damaged", [foreign]
            return inspection
        order = _order_finding(name, cells)
        errors = _error_findings(name, cells)
        passed, failed, check_problems = _check_findings(name, notebook, expected)
        structure, edited = structure_findings(name, cells, expected) if expected else ([], [])
        inspection.executed_in_order = order is None
        inspection.errors, inspection.edited_cells = len(errors), edited
        inspection.checks_passed, inspection.checks_failed = passed, failed
        inspection.results = recorded_results(notebook)
        inspection.profiles = notebook_profiles(notebook)
        inspection.answers = _answers(cells, expected)
        inspection.findings = [*structure, *([order] if order else []), *errors, *check_problems]
    except (TypeError, KeyError, AttributeError, IndexError, ValueError, OverflowError) as error:
        inspection.state = "damaged"
        message = f"malformed notebook content ({type(error).__name__}: {error})"
        inspection.findings = [Finding("damaged", name, message, "save it again from Jupyter")]
    return inspection


def inspect_file(path: Path, expected: dict | None, max_bytes: int) -> NotebookInspection:
    """Read (size-guarded) and inspect one notebook file; a missing file is ``damaged``."""
    if not path.is_file():
        fix = f"save {path.name} next to the other notebooks"
        finding = Finding("damaged", path.stem, f"{path.name} is missing", fix)
        return NotebookInspection(path.stem, state="missing", findings=[finding])
    notebook, problem = read_notebook_json(path, max_bytes)
    if problem is not None:
        return NotebookInspection(path.stem, state="damaged", findings=[problem])
    return inspect_notebook(path.stem, notebook, expected)


# ------------------------------------------------------------ the profile the saved work ran in
UNKNOWN = "unknown"  # the column's value when no saved result names a profile
MIXED = "mixed"  # ... and when they name more than one
FIX = "run every notebook again in the full profile (unset CIFAR_LAB_PROFILE), then submit"


def profile_name(value: Any) -> str | None:
    """A recorded profile name if it is one of :data:`cifar_lab.profiles.PROFILES`, else None."""
    return value if isinstance(value, str) and value in PROFILES else None


def notebook_profiles(notebook: dict) -> frozenset[str]:
    """The profiles named by a notebook's ``lab.record`` payloads (empty: none named one).

    Args:
        notebook: a parsed notebook (JSON dict or nbformat node), untrusted.

    Returns:
        The known profile names found, e.g. ``frozenset({"quick"})``.
    """
    found = (profile_name(result.get(PROFILE_KEY)) for result in read_outputs(notebook)["results"])
    return frozenset(name for name in found if name is not None)


def part5_profiles(saved: Mapping[str, Any] | None) -> frozenset[str]:
    """The profile ``part5/results.json`` names (empty: none, or not a known name).

    Args:
        saved: the parsed results.json (``read_part5_results``), or None when unreadable.
    """
    name = profile_name(saved.get(PROFILE_KEY)) if isinstance(saved, Mapping) else None
    return frozenset() if name is None else frozenset({name})


def profile_label(profiles: Iterable[str]) -> str:
    """The report's value for a set of profile names: the one name, "mixed" or "unknown"."""
    names = set(profiles)
    if not names:
        return UNKNOWN
    return names.pop() if len(names) == 1 else MIXED


def profile_findings(
    by_place: Mapping[str, frozenset[str]], accepted: Iterable[str]
) -> list[Finding]:
    """One ``flagged`` finding per profile the work ran in that the assignment does not accept.

    Args:
        by_place: profiles per place: a notebook stem or ``"part5"``.
        accepted: the accepted profile names (``GradeSettings.accept_profiles``).

    Returns:
        E.g. "ran in the quick profile; this assignment asks for full (01, 05, part5)".
    """
    accepted = tuple(accepted)
    asked = " or ".join(accepted)
    findings = []
    for name in sorted(set().union(*by_place.values()) - set(accepted)):
        places = ", ".join(
            place[:2] if place[:2].isdigit() else place
            for place, profiles in by_place.items()
            if name in profiles
        )
        message = f"ran in the {name} profile; this assignment asks for {asked} ({places})"
        findings.append(Finding("flagged", "submission", message, FIX))
    return findings


def submission_profile(
    inspections: Iterable[Any], saved_part5: Mapping[str, Any] | None, accepted: Iterable[str]
) -> tuple[str, list[Finding]]:
    """The ``profile`` column of a submission and the findings about it.

    Args:
        inspections: its notebooks' ``NotebookInspection`` objects (``name``, ``profiles``).
        saved_part5: its parsed ``part5/results.json``, or None.
        accepted: the profile names the assignment accepts.

    Returns:
        (``"full"``, ``"quick"``, ``"mixed"`` or ``"unknown"``; :func:`profile_findings`).
    """
    by_place = {inspection.name: inspection.profiles for inspection in inspections}
    by_place["part5"] = part5_profiles(saved_part5)
    return profile_label(set().union(*by_place.values())), profile_findings(by_place, accepted)


# ---------------------------------- cells that patch the checks or the library, read, never run
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
