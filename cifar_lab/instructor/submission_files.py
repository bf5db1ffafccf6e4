"""A submission's files, taken in without trusting their names or links.

* **Zips:** two members with the same name make the submission ``damaged``:
  extraction would keep one copy silently (the last one wins), so what is
  graded would depend on the order of a list the student controls.
* **Folders:** a ``<student>/`` submission is copied, file by file, into the
  grader's own temporary folder before it is graded, with the limits a zip
  gets (files, per-file and total size). A symbolic link is never followed
  outside the submission: a link to another student's notebook (or to any
  file elsewhere) is a ``flagged`` finding and the file is not graded; a link
  to a file inside the submission is read as that file. Anything that is not
  a regular file (a FIFO, a device) is not read.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

from cifar_lab.instructor.inspection import Finding, megabytes
from cifar_lab.tuning.part5 import PART5_DIR


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


def copy_folder(source: Path, dest: Path, settings: Any, max_files: int) -> dict[str, Finding]:
    """Copy a folder submission into ``dest`` under the limits a zip gets.

    Args:
        source: the ``<student>/`` folder (untrusted).
        dest: an empty folder of the grader's.
        settings: a ``GradeSettings`` (``max_notebook_bytes``, ``max_file_bytes``,
            ``max_total_bytes``).
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
