"""Reading tar and zip archives, with every low-level error turned into one clear error.

A damaged archive raises :class:`~cifar_lab.data.errors.CorruptSourceError`
saying it is "truncated or corrupt", whether the damage shows while listing
the members or only while reading one of them.
"""

from __future__ import annotations

import contextlib
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from cifar_lab.data.errors import CorruptSourceError

_ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error)


@contextlib.contextmanager
def archive_errors(path: Path) -> Iterator[None]:
    """Turn the many low-level errors of a damaged archive into one clear error."""
    try:
        yield
    except CorruptSourceError:
        raise
    except _ARCHIVE_ERRORS as error:
        # the first line only: tarfile lists one reason per compression it tried
        detail = (str(error).strip().splitlines() or [""])[0].rstrip(":")
        raise CorruptSourceError(
            f"{path}: the archive is truncated or corrupt ({type(error).__name__}: "
            f"{detail}). Download or copy it again, then retry."
        ) from error


# Leading bytes of the archives tarfile and zipfile read: gzip, bzip2, xz, zip.
_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"PK\x03\x04", b"PK\x05\x06")
_SUFFIXES = (".tar", ".tgz", ".gz", ".tbz2", ".bz2", ".txz", ".xz", ".zip")
_TAR_MAGIC_OFFSET = 257  # an uncompressed tar says "ustar" there


def looks_like_archive(path: Path) -> bool:
    """Whether a file is meant as an archive: by its name or its first bytes.

    A damaged archive still counts (it is then reported as truncated or corrupt);
    a text file or an image does not.
    """
    if path.name.lower().endswith(_SUFFIXES):
        return True
    with path.open("rb") as handle:
        head = handle.read(_TAR_MAGIC_OFFSET + 5)
    return head.startswith(_MAGIC) or head[_TAR_MAGIC_OFFSET:] == b"ustar"


def open_archive(path: Path) -> tarfile.TarFile:
    """Open a tar archive (any compression) for reading, or raise the one clear error."""
    with archive_errors(path):
        return tarfile.open(path, "r:*")


def guarded_read(path: Path, read: Callable[[], bytes]) -> Callable[[], bytes]:
    """``read``, with a damaged archive's errors turned into the one clear error.

    The caller runs it outside the generator that yields it, so the generator's
    own ``archive_errors`` would not see a truncated member's ``EOFError``.
    """

    def guarded() -> bytes:
        with archive_errors(path):
            return read()

    return guarded


def archive_files(path: Path) -> Iterator[tuple[str, int, Callable[[], bytes]]]:
    """Yield (member name, declared size, reader) for every file in a tar or zip archive."""
    with archive_errors(path):
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if not info.is_dir():
                        read = guarded_read(path, lambda info=info: archive.read(info))
                        yield info.filename, info.file_size, read
            return
        with open_archive(path) as tar:
            for member in tar:
                if member.isfile():
                    read = guarded_read(path, lambda m=member: tar.extractfile(m).read())
                    yield member.name, member.size, read


def archive_names(path: Path) -> Iterator[str]:
    """Yield the file names inside a tar or zip archive, lazily (used to detect its layout)."""
    for name, _, _ in archive_files(path):
        yield name
