"""Readers for the on-disk formats CIFAR-10 comes in.

Two layouts are understood, each as a folder or as an archive:

* the official "python version" (``data_batch_1`` ... ``data_batch_5`` and
  ``test_batch``, pickled dicts), as a folder or ``cifar-10-python.tar.gz``;
* an image-folder tree (``train/<class>/*.jpg|png`` and ``test/<class>/*``),
  as a folder or a ``.tgz``/``.tar.gz``/``.zip`` archive.

Every reader returns a :class:`RawCIFAR` of uint8 images. The pickles are read
with a restricted unpickler, so a doctored file can never run code, and sizes
and nesting are checked before anything is decoded (:mod:`cifar_lab.data.limits`).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from cifar_lab.data import limits
from cifar_lab.data.archives import (  # noqa: F401  (archive_names: sources uses formats.*)
    archive_errors,
    archive_files,
    archive_names,
    open_archive,
)
from cifar_lab.data.errors import CorruptSourceError
from cifar_lab.devices import usable_cores

CLASS_NAMES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"


@dataclass(frozen=True)
class RawCIFAR:
    """Undivided CIFAR-10 pools as stored on disk.

    Attributes:
        X_train: uint8 array of shape (N_train, 32, 32, 3), NHWC.
        y_train: int32 array of shape (N_train,) with values in 0..9.
        X_test: uint8 array of shape (N_test, 32, 32, 3).
        y_test: int32 array of shape (N_test,).
        description: human-readable description of where the data came from.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    description: str


# --------------------------------------------------------------------------- pickles
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    # Python 3 writes bytes in protocol-2 pickles through _codecs.encode.
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds the objects a CIFAR batch contains."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _SAFE_GLOBALS:
            raise CorruptSourceError(
                f"refusing to load {module}.{name} from a CIFAR-10 batch: official batches "
                "hold only a dict of bytes, lists and a uint8 array. The file may be "
                "malicious; re-download it from the official site."
            )
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def read_batch(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode one pickled CIFAR-10 batch safely and check its contents.

    Args:
        data: the raw bytes of a file such as ``data_batch_1``.
        name: file name, used in error messages.

    Returns:
        images: uint8 array (N, 32, 32, 3); labels: int32 array (N,).
    """
    limits.check_member_size(name, len(data), limits.MAX_BATCH_BYTES)
    limits.check_pickle_depth(data, name)
    try:
        batch = _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except CorruptSourceError:
        raise
    except Exception as error:  # pickle raises many types on damaged input
        raise CorruptSourceError(f"{name}: not a readable CIFAR-10 batch ({error!r})") from error
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise CorruptSourceError(f"{name}: expected a dict with b'data' and b'labels'")
    images, labels = batch[b"data"], np.asarray(batch[b"labels"])
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise CorruptSourceError(f"{name}: b'data' must be a uint8 array")
    if images.ndim != 2 or images.shape[1] != 3072 or labels.shape != (images.shape[0],):
        raise CorruptSourceError(
            f"{name}: expected data of shape (N, 3072) and N labels, got "
            f"{images.shape} and {labels.shape}"
        )
    _check_labels(labels, name)
    # Rows are stored channel-major (1024 R, 1024 G, 1024 B); the course uses NHWC.
    nhwc = images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(nhwc), labels.astype(np.int32)


def _check_labels(labels: np.ndarray, name: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise CorruptSourceError(
            f"{name}: labels must lie in 0..9, got {labels.min()}..{labels.max()}"
        )


def _python_members(names: Iterator[str]) -> dict[str, str]:
    """Map batch names (``data_batch_1`` ...) to member paths inside a folder or archive."""
    wanted = {*TRAIN_BATCHES, TEST_BATCH}
    return {PurePosixPath(n).name: n for n in names if PurePosixPath(n).name in wanted}


def _assemble_python(read: dict[str, bytes], description: str) -> RawCIFAR:
    missing = sorted({*TRAIN_BATCHES, TEST_BATCH} - read.keys())
    if missing:
        raise CorruptSourceError(f"{description}: missing CIFAR-10 batches {missing}")
    train = [read_batch(read[n], n) for n in TRAIN_BATCHES]
    X_test, y_test = read_batch(read[TEST_BATCH], TEST_BATCH)
    X_train = np.concatenate([images for images, _ in train])
    y_train = np.concatenate([labels for _, labels in train])
    return RawCIFAR(X_train, y_train, X_test, y_test, description)


def read_python_dir(folder: Path) -> RawCIFAR:
    """Read the official python-format batches from a folder."""
    members = _python_members(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    read = {
        name: _read_file(folder / rel, limits.MAX_BATCH_BYTES) for name, rel in members.items()
    }
    return _assemble_python(read, f"official python-format folder {folder}")


def _read_file(path: Path, limit: int) -> bytes:
    """Read a file from disk after checking its size against ``limit``."""
    limits.check_member_size(str(path), path.stat().st_size, limit)
    return path.read_bytes()


def read_python_tar(path: Path) -> RawCIFAR:
    """Read the official ``cifar-10-python.tar.gz`` without unpacking it to disk."""
    with archive_errors(path), open_archive(path) as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        read = {}
        for name, rel in _python_members(iter(members)).items():
            limits.check_member_size(rel, members[rel].size, limits.MAX_BATCH_BYTES)
            read[name] = tar.extractfile(rel).read()
    return _assemble_python(read, f"official python-format archive {path}")


# ------------------------------------------------------------------------- image folders
def _decode_image(data: bytes, name: str) -> np.ndarray:
    try:
        with limits.open_image_header(data, name) as image:  # 32x32 checked before decoding
            pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except CorruptSourceError:
        raise
    except Exception as error:
        raise CorruptSourceError(f"{name}: cannot decode image ({error!r})") from error
    if pixels.shape != (32, 32, 3):
        raise CorruptSourceError(f"{name}: expected a 32x32 RGB image, got shape {pixels.shape}")
    return pixels


def image_key(path: str) -> tuple[str, str, str] | None:
    """Return (split, class, file) for ``.../train/<class>/<file>.jpg`` paths, else None."""
    parts = PurePosixPath(path).parts
    if len(parts) < 3 or not parts[-1].lower().endswith(IMAGE_SUFFIXES):
        return None
    split, label, file = parts[-3], parts[-2], parts[-1]
    return (split, label, file) if split in ("train", "test") else None


ImageItem = tuple[tuple[str, str, str], bytes]  # ((split, class, file), encoded bytes)


def _assemble_images(items: list[ImageItem], description: str) -> RawCIFAR:
    if not items:
        raise CorruptSourceError(f"{description}: no train/<class>/<image> files found")
    unknown = sorted({label for (_, label, _), _ in items} - set(CLASS_NAMES))
    if unknown:
        raise CorruptSourceError(
            f"{description}: unknown class folders {unknown}; expected {list(CLASS_NAMES)}"
        )
    # Sorting makes the pool independent of archive or filesystem order.
    items.sort(key=lambda item: item[0])
    splits = {}
    for split in ("train", "test"):
        chosen = [(key, data) for key, data in items if key[0] == split]
        if not chosen:
            raise CorruptSourceError(f"{description}: no images under {split}/")
        _check_every_class(description, split, {key[1] for key, _ in chosen})
        X = _decode_images(chosen)
        y = np.array([CLASS_NAMES.index(key[1]) for key, _ in chosen], dtype=np.int32)
        splits[split] = (X, y)
    return RawCIFAR(*splits["train"], *splits["test"], description)


def _decode_images(chosen: list[ImageItem], chunk: int = 2_000) -> np.ndarray:
    """Decode ``chosen`` in order into one (N, 32, 32, 3) uint8 array, on every core.

    Pillow releases the GIL while it decodes, so threads share the work: the first
    read of the 55,000-JPEG archive takes about half the time on two cores. The first
    corrupt image (in order) raises, as a one-thread loop would.
    """
    X = np.empty((len(chosen), 32, 32, 3), dtype=np.uint8)

    def decode(start: int) -> None:
        for i in range(start, min(start + chunk, len(chosen))):
            key, data = chosen[i]
            X[i] = _decode_image(data, "/".join(key))

    workers = min(usable_cores(), -(-len(chosen) // chunk))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for _ in pool.map(decode, range(0, len(chosen), chunk)):
            pass  # iterating re-raises the first failed chunk's error
    return X


def _check_every_class(description: str, split: str, present: set[str]) -> None:
    """Refuse a split in which a class folder is missing or holds no images."""
    missing = [name for name in CLASS_NAMES if name not in present]
    if missing:
        folders = ", ".join(f"{split}/{name}/" for name in missing)
        raise CorruptSourceError(
            f"{description}: no images for class {', '.join(missing)} ({folders} is missing "
            "or empty); every class needs images in train/ and test/. Copy the data set again."
        )


def read_image_dir(folder: Path) -> RawCIFAR:
    """Read an image-folder tree (``train/<class>/*``, ``test/<class>/*``) from disk."""
    items, budget = [], limits.ImageBudget(str(folder))
    for path in folder.rglob("*"):
        key = image_key(path.relative_to(folder).as_posix())
        if key is not None:
            budget.take("/".join(key), path.stat().st_size)
            items.append((key, path.read_bytes()))
    return _assemble_images(items, f"image folder {folder}")


def read_image_archive(path: Path) -> RawCIFAR:
    """Read an image-folder tree packed as ``.tgz``/``.tar.gz``/``.zip``."""
    items, budget = [], limits.ImageBudget(str(path))
    for name, size, read in archive_files(path):
        key = image_key(name)
        if key is not None:
            budget.take(name, size)
            items.append((key, read()))
    return _assemble_images(items, f"image-folder archive {path}")
