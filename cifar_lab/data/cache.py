"""On-disk cache of decoded image-folder sources.

Decoding 55,000 JPEGs takes a while; the decoded uint8 pools are stored as one
``.npz`` named after a hash of the source, so a second load takes seconds and a
changed archive is decoded afresh. Files are written to a temporary name and
renamed into place, so an interrupted run never leaves a half-written cache.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cifar_lab.data.formats import RawCIFAR
from cifar_lab.data.limits import MEGABYTE

CACHE_ENV = "CIFAR_LAB_CACHE"
_CACHE_VERSION = "v1"  # bump when the decoded layout changes


def default_cache_dir() -> Path:
    """Return the cache folder: ``$CIFAR_LAB_CACHE``, else ``$XDG_CACHE_HOME/cifar_lab``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cifar_lab"


def fingerprint(source: Path) -> str:
    """Hash a file's bytes, or a folder's file names, sizes and modification times."""
    digest = hashlib.sha256(_CACHE_VERSION.encode())
    if source.is_file():
        with source.open("rb") as handle:
            for block in iter(lambda: handle.read(MEGABYTE), b""):
                digest.update(block)
    else:
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            stat = path.stat()
            digest.update(
                f"{path.relative_to(source)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode()
            )
    return digest.hexdigest()[:20]


def cached_read(
    source: Path, read: Callable[[Path], RawCIFAR], cache_dir: Path | None
) -> tuple[RawCIFAR, bool]:
    """Return ``read(source)``, served from the cache when a matching entry exists.

    Args:
        source: archive or folder being read.
        read: function that decodes ``source`` into a :class:`RawCIFAR`.
        cache_dir: cache folder; None means :func:`default_cache_dir`.

    Returns:
        The decoded pools and whether they came from the cache.
    """
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    entry = folder / f"{source.name}-{fingerprint(source)}.npz"
    if entry.exists():
        try:
            with np.load(entry) as saved:
                arrays = {key: saved[key] for key in ("X_train", "y_train", "X_test", "y_test")}
            return RawCIFAR(**arrays, description=f"{source} (decoded cache {entry})"), True
        except (OSError, ValueError, KeyError) as error:
            print(f"Decode cache {entry} is unreadable ({error!r}); rebuilding it.")
            entry.unlink(missing_ok=True)
    raw = read(source)
    _write_atomically(entry, raw)
    return raw, False


def _write_atomically(entry: Path, raw: RawCIFAR) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=entry.parent, prefix=".partial-", suffix=".npz")
    try:
        with os.fdopen(handle, "wb") as out:
            np.savez(
                out, X_train=raw.X_train, y_train=raw.y_train, X_test=raw.X_test, y_test=raw.y_test
            )
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the cache may be shared
        os.replace(temporary, entry)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
