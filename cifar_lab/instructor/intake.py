"""Intake: a ``<student>.zip`` or ``<student>/`` folder into the grader's own checked working copy.

Student files are untrusted, so nothing is taken in on trust of its name, size or links:

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

import os
import shutil
import stat
import zipfile
import zlib
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Protocol

from cifar_lab.instructor.findings import MEGABYTE, Finding, megabytes
from cifar_lab.tuning.part5 import PART5_DIR

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
