"""What the similarity pass reads: exercise references of the course, and a class's submissions.

:func:`course_references` gives each exercise's released stub and model
answer from the instructor notebooks; :func:`collect_sources` reads, from a
folder of ``<student>.zip`` files and ``<student>/`` folders, each student's
exercise cells (by their nbgrader ``grade_id``), executed outputs and the
sha256 of the saved Part V model, without extracting or running anything.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cifar_lab.instructor.class_view.similarity import Reference
from cifar_lab.instructor.release import part_label, stub_code
from cifar_lab.instructor.submission import MAX_ZIP_MEMBERS, submission_name
from cifar_lab.tuning.part5 import MODEL_FILE, PART5_DIR

MEGABYTE = 1 << 20
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
