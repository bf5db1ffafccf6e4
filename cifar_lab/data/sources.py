"""Find CIFAR-10: decide which source to read and read it.

Resolution order (the first that applies wins):

1. the ``source`` argument;
2. the environment variable ``CIFAR10_SOURCE``;
3. the Keras cache (``~/.keras/datasets/cifar-10-batches-py``, or the Keras 3
   location ``cifar-10-batches-py-target/cifar-10-batches-py`` beside it);
4. the official download through Keras, when the machine is online.

A source given by 1 or 2 is the copy meant: when it does not exist, the error
names the path and where it came from, and the later steps are not tried.
Nothing falls back silently: if none applies, :class:`CIFAR10NotFoundError`
lists the ways to fix it. Synthetic data is used only when asked for.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path, PurePosixPath

from cifar_lab.data import formats
from cifar_lab.data.archives import looks_like_archive
from cifar_lab.data.cache import cached_read
from cifar_lab.data.formats import CorruptSourceError, RawCIFAR
from cifar_lab.data.synthetic import synthetic_cifar10

SOURCE_ENV = "CIFAR10_SOURCE"
OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


class CIFAR10NotFoundError(FileNotFoundError):
    """No CIFAR-10 copy was found and it cannot be downloaded."""


def keras_dataset_dir() -> Path:
    """Folder where Keras keeps downloaded data sets (honours ``KERAS_HOME``)."""
    home = os.environ.get("KERAS_HOME") or Path.home() / ".keras"
    return Path(home) / "datasets"


def keras_cache_candidates() -> list[Path]:
    """Folders where an earlier Keras download of CIFAR-10 may be unpacked."""
    base = keras_dataset_dir()
    return [
        base / "cifar-10-batches-py",
        base / "cifar-10-batches-py-target" / "cifar-10-batches-py",
    ]


def _is_online(host: str = "www.cs.toronto.edu", timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def not_found_message() -> str:
    """Explain every way to make CIFAR-10 available.

    Fixes are spelled as Python keyword arguments (``source='...'``); the command
    line shows them as its own options (see :mod:`cifar_lab.messages`).
    """
    keras_dirs = " or ".join(str(p) for p in keras_cache_candidates())
    return (
        "CIFAR-10 was not found and this machine cannot reach the official download "
        f"({OFFICIAL_URL}). Fix it in one of these ways:\n"
        "  1. pass a local copy, source='/path/to/cifar-10-python.tar.gz' (or its unpacked "
        "folder, or an image-folder tree/archive: train/<class>/*.jpg, test/<class>/*.jpg);\n"
        f"  2. set the environment variable {SOURCE_ENV} to that path;\n"
        f"  3. unpack the official archive into {keras_dirs};\n"
        "  4. go online once, so Keras can download and cache it;\n"
        "  5. for a demo only, ask for stand-in data explicitly with source='synthetic'."
    )


def configured_source(source: str | os.PathLike | None) -> tuple[str | Path, str] | None:
    """Return (source, where it was set) when one was given, else None.

    A source is given by the ``source`` argument or, without one, by
    ``$CIFAR10_SOURCE``. Whoever gave it meant that copy: a path that does not
    exist is an error naming the path and where it came from, never a reason to
    look elsewhere.

    Args:
        source: the ``source`` argument of ``load_cifar10`` (None = not given).

    Returns:
        The normalised source (a resolved Path, ``"keras"`` or ``"synthetic"``)
        and ``"argument"`` or ``"$CIFAR10_SOURCE"``; None when neither is set.

    Raises:
        TypeError: ``source`` is neither a path nor a string.
        CIFAR10NotFoundError: the given path does not exist.
    """
    if source is not None:
        return _normalise(source, from_environment=False), "argument"
    if os.environ.get(SOURCE_ENV):
        return _normalise(os.environ[SOURCE_ENV], from_environment=True), f"${SOURCE_ENV}"
    return None


def describe_choice(source: str | os.PathLike | None) -> tuple[str | Path, str]:
    """Apply the resolution order and return (source, why it was chosen)."""
    configured = configured_source(source)
    if configured is not None:
        return configured
    for folder in keras_cache_candidates():
        if (folder / "data_batch_1").exists():
            return folder, "Keras cache"
    if _is_online():
        return "keras", "official download"
    raise CIFAR10NotFoundError(not_found_message())


def check_configured_source(source: str | os.PathLike | None) -> None:
    """Refuse now a given source that cannot be CIFAR-10, before any long job starts.

    Checks what :func:`configured_source` checks, and that a path has a CIFAR-10
    layout (:func:`detect_layout` reads only its first few entries). A source
    left unset passes: the usual resolution order applies later.

    Raises:
        CIFAR10NotFoundError: the given path does not exist.
        CorruptSourceError: it exists but holds no CIFAR-10 layout.
    """
    configured = configured_source(source)
    if configured is not None and isinstance(configured[0], Path):
        detect_layout(configured[0])


_LAYOUTS = (
    "a cifar-10-python.tar.gz, its unpacked folder or an image-folder tree/archive "
    "(train/<class>/*.jpg, test/<class>/*.jpg)"
)


def _normalise(source: str | os.PathLike, *, from_environment: bool) -> str | Path:
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"source must be a path or one of 'keras', 'synthetic'; got {type(source).__name__}"
        )
    if isinstance(source, str) and source in ("keras", "synthetic"):
        return source
    path = Path(source).expanduser()
    if path.exists():
        return path.resolve()
    if from_environment:
        raise CIFAR10NotFoundError(
            f"CIFAR-10 copy {str(source)!r} from ${SOURCE_ENV} does not exist: export "
            f"{SOURCE_ENV}=/path/to/the/copy ({_LAYOUTS}), or unset {SOURCE_ENV} to use "
            "the Keras cache or the download."
        )
    # the fixes are keyword arguments, which the command line shows as its options
    raise CIFAR10NotFoundError(
        f"CIFAR-10 copy source={str(source)!r} does not exist: correct the path "
        f"({_LAYOUTS}), or use source='keras' to download it or source='synthetic' "
        "for stand-in data."
    )


def read_source(
    source: str | Path, *, cache_dir: Path | None, num_train: int, num_test: int
) -> tuple[RawCIFAR, bool]:
    """Read the raw pools from a resolved source.

    Args:
        source: a path, ``"keras"`` or ``"synthetic"`` (as from :func:`describe_choice`).
        cache_dir: folder for decoded image-folder caches; None for the default.
        num_train, num_test: images needed; only the synthetic source uses them.

    Returns:
        The pools and whether they were served from the decode cache.
    """
    if source == "synthetic":
        return synthetic_cifar10(num_train, num_test), False
    if source == "keras":
        return _read_keras(), False
    path = Path(source)
    layout = detect_layout(path)
    if layout == "python-dir":
        return formats.read_python_dir(path), False
    if layout == "python-archive":
        return formats.read_python_tar(path), False
    reader = formats.read_image_dir if layout == "image-dir" else formats.read_image_archive
    return cached_read(path, reader, cache_dir)


def detect_layout(path: Path) -> str:
    """Classify a path as python-dir, python-archive, image-dir or image-archive.

    Stops at the first telling file name, so even a large archive is classified
    after reading only its first few entries.
    """
    if path.is_dir():
        names = (p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
        kind = "dir"
    elif looks_like_archive(path):
        names = formats.archive_names(path)
        kind = "archive"
    else:
        raise CorruptSourceError(
            f"{path} is not a CIFAR-10 copy (neither a folder nor a tar or zip archive): "
            f"use {_LAYOUTS}."
        )
    for name in names:
        if PurePosixPath(name).name == "data_batch_1":
            return f"python-{kind}"
        if formats.image_key(name) is not None:
            return f"image-{kind}"
    raise CorruptSourceError(
        f"{path} holds neither the official python batches (data_batch_1 ... test_batch) "
        f"nor an image-folder tree: use {_LAYOUTS}."
    )


def _read_keras() -> RawCIFAR:
    """Read Keras' cached copy, downloading the official archive first if needed."""
    for folder in keras_cache_candidates():
        if (folder / "data_batch_1").exists():
            return formats.read_python_dir(folder)
    if not _is_online():
        raise CIFAR10NotFoundError(not_found_message())
    import keras  # imported late: TensorFlow costs ~0.7 GB and is not needed otherwise

    archive = keras.utils.get_file(
        fname="cifar-10-python.tar.gz",
        origin=OFFICIAL_URL,
        file_hash="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    )
    return formats.read_python_tar(Path(archive))
