"""The submission archive: packed and checked by the student, unpacked and checked by the grader.

**Submission check** (student side): every notebook inspected, Part V outputs present.

A submission is the folder of executed notebooks plus Part V's outputs, which
notebook 05 saves next to the notebooks:

* ``part5/results.json``: a JSON object with at least ``"val_accuracy"`` and
  ``"test_accuracy"`` (floats) and ``"config"`` (an object);
* ``part5/best_model.keras``: a self-contained Keras model that takes RAW
  images (N, 32, 32, 3) with values 0-255 (float or uint8) and returns class
  scores or logits (N, 10).

Notebook 05 also records ``lab.record("test_accuracy", x, key=True)`` and
``lab.record("best_val_accuracy", y)``.

Notebooks are inspected with :mod:`cifar_lab.instructor.inspection` (read as JSON, never
executed); each problem is a :class:`~cifar_lab.instructor.findings.Finding`.

**Who submits.** ``submit`` names the student: ``--student``, else
``$JUPYTERHUB_USER`` (on JupyterHub every login is ``jovyan``, so the login name
says nothing), else it asks for ``--student``. It writes ``submission.json`` into
the zip: ``{"format": 1, "student", "cifar_lab_version", "profile",
"submitted_at"}`` (the profile is ``$CIFAR_LAB_PROFILE``'s, as ``submit`` ran; the
time is UTC). The grader reads it as hostile input (:func:`read_submission_record`:
at most :data:`MAX_RECORD_BYTES`, a JSON object, an id of :data:`STUDENT_ID_RULE`),
uses its id for the report row, and flags a submission whose file name
(:func:`submission_name`) names someone else.

**Intake** (grader side, the last part of this module): a ``<student>.zip`` or
``<student>/`` folder into the grader's own checked working copy
(:func:`extract_zip`, :func:`copy_folder`). Student files are untrusted, so nothing
is taken in on trust of its name, size or links:

* **Zips** are checked before extraction (member count, path traversal, per-file and
  total uncompressed size, and sizes that lie). Two members with the same name make
  the submission ``damaged``: extraction would keep one copy silently (the last one
  wins), so what is graded would depend on the order of a list the student controls.
* **Folders** are copied, file by file, into the grader's own temporary folder,
  with the limits a zip gets (files, per-file and total size). A symbolic link is
  never followed outside the submission: a link to another student's notebook (or
  to any file elsewhere) is a ``flagged`` finding and the file is not graded; a
  link to a file inside the submission is read as that file. Anything that is not
  a regular file (a FIFO, a device) is not read.

Files over their limit are left out with a finding keyed by their name; a
submission that cannot be taken in at all has its finding under the key ``""``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import zipfile
import zlib
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from cifar_lab.checks import check_pattern
from cifar_lab.instructor.claims import read_part5_results
from cifar_lab.instructor.findings import MEGABYTE, Finding, megabytes
from cifar_lab.instructor.inspection import (
    DEFAULT_MAX_NOTEBOOK_BYTES,
    NotebookInspection,
    inspect_file,
)
from cifar_lab.instructor.model_loading import model_finding
from cifar_lab.instructor.notebooks import COURSE_NOTEBOOKS
from cifar_lab.instructor.release import ANSWER_PLACEHOLDER, ANSWER_PREFIX
from cifar_lab.tuning.part5 import MODEL_FILE, PART5_DIR, RESULTS_FILE

RECORD_FILE = "submission.json"
RECORD_FORMAT = 1
MAX_RECORD_BYTES = 4096  # a record is ~150 bytes; never read more of a student's file
STUDENT_ENV = "JUPYTERHUB_USER"
ZIP_SUFFIX = "_cifar_lab"  # submit's default zip: <student>_cifar_lab.zip
STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
STUDENT_ID_RULE = "1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"


def check_submission(
    folder: Path, *, manifest: dict | None = None, max_bytes: int = DEFAULT_MAX_NOTEBOOK_BYTES
) -> tuple[list[NotebookInspection], list[Finding]]:
    """Check a folder of executed notebooks as ``submit`` does.

    Args:
        folder: the notebook folder (with ``part5/`` inside).
        manifest: the release manifest (None: no structure checks).
        max_bytes: refuse notebook files larger than this.

    Returns:
        (one inspection per course notebook, every finding).
    """
    names = tuple((manifest or {}).get("notebooks", {})) or COURSE_NOTEBOOKS
    expected = (manifest or {}).get("notebooks", {})
    inspections = [
        inspect_file(Path(folder) / f"{name}.ipynb", expected.get(name), max_bytes)
        for name in names
    ]
    findings = [finding for inspection in inspections for finding in inspection.findings]
    _, part5 = read_part5_results(Path(folder))
    if not (Path(folder) / PART5_DIR / MODEL_FILE).is_file():
        fix = "run 05_tuning to the end; it saves the best model there"
        part5.append(Finding("incomplete", "part5", f"{PART5_DIR}/{MODEL_FILE} is missing", fix))
    elif loaded := model_finding(Path(folder) / PART5_DIR / MODEL_FILE):  # as grade loads it
        part5.append(loaded)
    for inspection in inspections:
        done, total = inspection.answers
        if done < total:
            message = f"{total - done} of {total} written answers are empty"
            fix = f"replace {ANSWER_PLACEHOLDER} in the {ANSWER_PREFIX} cells"
            findings.append(Finding("warning", inspection.name, message, fix))
    return inspections, findings + part5


def unexpected_problem(error: Exception) -> Finding:
    """A problem for an error that checking a submission did not foresee (never a traceback)."""
    message = f"could not be checked ({type(error).__name__}: {str(error)[:300]})"
    fix = "save each notebook again from Jupyter; if it persists, send this line to the instructor"
    return Finding("damaged", "submission", message, fix)


def student_id(explicit: str | None, environ: Mapping[str, str]) -> str:
    """Return the id ``submit`` records: ``explicit`` (--student), else $JUPYTERHUB_USER.

    Args:
        explicit: the ``--student`` option (None: not given).
        environ: the environment, e.g. ``os.environ``.

    Returns:
        The student id, checked against :data:`STUDENT_ID`.

    Raises:
        ValueError: neither is set, or the id is not of :data:`STUDENT_ID_RULE`.
    """
    if explicit is not None:
        return check_pattern("--student", explicit, STUDENT_ID, STUDENT_ID_RULE)
    if environ.get(STUDENT_ENV):
        return check_pattern(STUDENT_ENV, environ[STUDENT_ENV], STUDENT_ID, STUDENT_ID_RULE)
    raise ValueError(
        "who is submitting? pass --student YOUR_ID, the id your course knows you by "
        f"(on JupyterHub ${STUDENT_ENV} gives it)"
    )


def package_version() -> str:
    """The installed cifar_lab's version (``"unknown"`` when run from an uninstalled tree).

    Read from the distribution's metadata: an instructor module never imports the
    package's front door, ``cifar_lab.__version__`` (tests/test_architecture.py).
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cifar_lab")
    except PackageNotFoundError:
        return "unknown"


def submission_record(student: str, *, profile: str, when: datetime) -> dict[str, Any]:
    """Return the ``submission.json`` that ``submit`` writes into the zip.

    Args:
        student: the student id (see :func:`student_id`).
        profile: the profile ``submit`` ran under, e.g. ``"full"``.
        when: the time of submission (timezone-aware: written with its offset).

    Returns:
        ``{"format", "student", "cifar_lab_version", "profile", "submitted_at"}``.
    """
    return {
        "format": RECORD_FORMAT,
        "student": student,
        "cifar_lab_version": package_version(),
        "profile": profile,
        "submitted_at": when.isoformat(timespec="seconds"),
    }


def write_submission_zip(
    folder: Path, out: Path, names: tuple[str, ...], record: dict[str, Any]
) -> list[str]:
    """Zip the notebooks, Part V's outputs and ``record`` as ``submission.json``.

    Args:
        folder: the checked notebook folder.
        out: the zip to write.
        names: the notebook stems to zip.
        record: what :func:`submission_record` returned.

    Returns:
        The archive's member names.
    """
    members = [f"{name}.ipynb" for name in names]
    members += [f"{PART5_DIR}/{RESULTS_FILE}", f"{PART5_DIR}/{MODEL_FILE}"]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member in members:
            archive.write(Path(folder) / member, arcname=member)
        archive.writestr(RECORD_FILE, json.dumps(record, indent=1) + "\n")
    return [*members, RECORD_FILE]


def submission_name(path: Path) -> str:
    """The student a submission's name gives: ``alice`` for alice.zip, alice_cifar_lab.zip, alice/.

    Args:
        path: a ``.zip`` file or a folder in the submissions folder.

    Returns:
        Its name without ``.zip`` and without submit's ``_cifar_lab`` ending.
    """
    name = path.name if path.is_dir() else path.stem
    return name.removesuffix(ZIP_SUFFIX) or name


def _record_problem(path: Path) -> tuple[str | None, str]:
    """(the id in ``path``, "") when it is a valid record, else (None, why not)."""
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode):
        return None, "it is not a regular file"
    if info.st_size > MAX_RECORD_BYTES:
        return None, f"it is {info.st_size} bytes, over {MAX_RECORD_BYTES}"
    with open(path, "rb") as file:
        data = file.read(MAX_RECORD_BYTES + 1)[:MAX_RECORD_BYTES]
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        return None, f"it is not JSON ({type(error).__name__})"
    if not isinstance(record, dict):
        return None, f"it holds a {type(record).__name__}, not a JSON object"
    student = record.get("student")
    if not isinstance(student, str) or not STUDENT_ID.fullmatch(student):
        return None, f"its student is not an id of {STUDENT_ID_RULE}"
    return student, ""


def read_submission_record(root: Path) -> tuple[str | None, Finding | None]:
    """Read the student id from a submission's ``submission.json`` (hostile input).

    Args:
        root: the submission's notebook folder, a copy the grader made.

    Returns:
        (the id, None) for a valid record; (None, a ``flagged`` finding) for a record
        that is there but not valid; (None, None) when there is none (a submission
        zipped by hand, or by an older ``submit``).
    """
    path = Path(root) / RECORD_FILE
    if not os.path.lexists(path):
        return None, None
    try:
        student, problem = _record_problem(path)
    except OSError as error:
        student, problem = None, f"it cannot be read ({type(error).__name__})"
    if student is not None:
        return student, None
    message = f"{RECORD_FILE} is not valid: {problem}; the student id is the file name's"
    return None, Finding("flagged", "submission", message)


def submission_identity(name: str, root: Path) -> tuple[str, list[Finding]]:
    """The report row's student and the findings about who submitted.

    Args:
        name: the student the submission's name gives (:func:`submission_name`).
        root: the submission's notebook folder, a copy the grader made.

    Returns:
        (the id ``submission.json`` names, else ``name``; a ``flagged`` finding when the
        record is invalid or names someone other than ``name``).
    """
    student, finding = read_submission_record(root)
    if student is None:
        return name, [finding] if finding else []
    if student != name:
        message = (
            f"{RECORD_FILE} names student {student!r}, but the submission is named {name!r}; "
            f"graded as {student!r}"
        )
        fix = "ask the student who made this zip; submit names it <student>_cifar_lab.zip"
        return student, [Finding("flagged", "submission", message, fix)]
    return student, []


# --------------------- intake (grader side): a zip or folder into the grader's own checked copy
MAX_ZIP_MEMBERS = 200


class FileLimits(Protocol):
    """The size limits intake applies (``GradeSettings`` has them)."""

    max_notebook_bytes: int  # per notebook
    max_file_bytes: int  # per other file (the model)
    max_total_bytes: int  # all files together, unpacked


def duplicate_member(members: list[zipfile.ZipInfo]) -> str | None:
    """Why a zip with repeated member names must not be extracted, or None.

    Args:
        members: the zip's file members.

    Returns:
        A message naming the first repeated name, or None when every name is unique.
    """
    names = Counter(PurePosixPath(m.filename.replace("\\", "/")).as_posix() for m in members)
    repeated = [name for name, count in names.items() if count > 1]
    if not repeated:
        return None
    name = repeated[0]
    return (
        f"zip holds {names[name]} members named {name!r}; extraction would keep only the "
        "last one silently. Zip each file once."
    )


def _finding_for(relative: PurePosixPath, severity: str, message: str) -> tuple[str, Finding]:
    """The refused-file key and finding for one file, as ``extract_zip`` reports them."""
    where = relative.stem if relative.suffix == ".ipynb" else PART5_DIR
    return relative.name, Finding(severity, where, message)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _regular_files(source: Path) -> tuple[list[tuple[PurePosixPath, str]], dict[str, Finding]]:
    """(relative path, real path to read) per readable file; findings for the rest."""
    root = os.path.realpath(source)
    files, refused = [], {}
    for folder, dirs, names in os.walk(source, followlinks=False):
        for name in sorted(names + [d for d in dirs if os.path.islink(os.path.join(folder, d))]):
            path = os.path.join(folder, name)
            relative = PurePosixPath(Path(path).relative_to(source).as_posix())
            target = os.path.realpath(path)
            if os.path.islink(path) and not _inside(target, root):
                message = f"{relative} is a symbolic link to {target}, outside the submission"
                key, finding = _finding_for(relative, "flagged", message + "; not followed")
                refused[key] = finding
                continue
            mode = os.stat(target).st_mode if os.path.exists(target) else 0
            if stat.S_ISREG(mode):
                files.append((relative, target))
            elif not stat.S_ISDIR(mode):
                message = f"{relative} is not a regular file; not read"
                key, finding = _finding_for(relative, "damaged", message)
                refused[key] = finding
    return files, refused


def copy_folder(
    source: Path, dest: Path, settings: FileLimits, max_files: int = MAX_ZIP_MEMBERS
) -> dict[str, Finding]:
    """Copy a folder submission into ``dest`` under the limits a zip gets.

    Args:
        source: the ``<student>/`` folder (untrusted).
        dest: an empty folder of the grader's.
        settings: the size limits.
        max_files: the most files a submission may hold.

    Returns:
        Findings by the file name they concern, as ``extract_zip`` returns them;
        the key ``""`` means nothing was copied.
    """
    files, refused = _regular_files(Path(source))
    if len(files) > max_files:
        message = f"the folder holds {len(files)} files (more than {max_files})"
        return {"": Finding("damaged", "submission", message)}
    sizes = {relative: os.stat(real).st_size for relative, real in files}
    if sum(sizes.values()) > settings.max_total_bytes:
        total, limit = megabytes(sum(sizes.values())), megabytes(settings.max_total_bytes)
        return {"": Finding("damaged", "submission", f"the folder holds {total}, over {limit}")}
    for relative, real in files:
        notebook = relative.suffix == ".ipynb"
        limit = settings.max_notebook_bytes if notebook else settings.max_file_bytes
        if sizes[relative] > limit:
            message = f"{relative.name} is {megabytes(sizes[relative])}, over the "
            message += f"{megabytes(limit)} limit; not read"
            key, finding = _finding_for(relative, "damaged", message)
            refused[key] = finding
            continue
        target = dest.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(real, target, follow_symlinks=False)
    return refused


def _zip_problem(members: list[zipfile.ZipInfo], settings: FileLimits) -> str | None:
    """Why a zip must not be extracted at all, or None."""
    if len(members) > MAX_ZIP_MEMBERS:
        return f"zip holds {len(members)} files (more than {MAX_ZIP_MEMBERS})"
    if duplicate := duplicate_member(members):  # the last copy would win silently
        return duplicate
    for member in members:
        parts = PurePosixPath(member.filename.replace("\\", "/")).parts
        if member.filename.startswith(("/", "\\")) or ".." in parts or ":" in member.filename:
            return f"zip member {member.filename!r} has an unsafe path"
    total = sum(member.file_size for member in members)
    if total > settings.max_total_bytes:
        limit = megabytes(settings.max_total_bytes)
        return f"zip unpacks to {megabytes(total)}, over the {limit} limit (zip bomb?)"
    return None


def _copy_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path) -> None:
    """Extract one member, trusting neither its path nor its declared size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with archive.open(member) as source, open(target, "wb") as out:
        while chunk := source.read(MEGABYTE):
            written += len(chunk)
            if written > member.file_size:
                raise ValueError(f"{member.filename} unpacks to more than its declared size")
            out.write(chunk)


def extract_zip(path: Path, dest: Path, settings: FileLimits) -> dict[str, Finding]:
    """Safely extract a submission zip into ``dest``.

    Files over their size limit are left out; an unreadable or dangerous zip
    is not extracted at all (its finding is keyed ``""``).

    Returns:
        ``damaged`` findings by the file name they concern (empty: all extracted).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            problem = _zip_problem(members, settings)
            if problem:
                return {"": Finding("damaged", "submission", problem)}
            refused = {}
            for member in members:
                name = PurePosixPath(member.filename.replace("\\", "/"))
                notebook = name.suffix == ".ipynb"
                limit = settings.max_notebook_bytes if notebook else settings.max_file_bytes
                if member.file_size <= limit:
                    _copy_member(archive, member, dest.joinpath(*name.parts))
                    continue
                size, limit_text = megabytes(member.file_size), megabytes(limit)
                message = f"{name.name} is {size}, over the {limit_text} limit; not read"
                where = name.stem if notebook else PART5_DIR
                refused[name.name] = Finding("damaged", where, message)
            return refused
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, ValueError) as error:
        message = f"{path.name} is not a readable zip ({error})"
        return {"": Finding("damaged", "submission", message)}


def notebook_root(folder: Path, names: tuple[str, ...]) -> Path:
    """The folder holding the notebooks: ``folder`` or one folder inside it."""
    candidates = [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]
    return max(candidates, key=lambda c: sum((c / f"{n}.ipynb").is_file() for n in names))
