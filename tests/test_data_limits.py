"""Data-layer limits: damaged or doctored sources are refused before they are expanded.

Each fixture is built here, small: a 1 GiB member is only declared (a tar
header) or sparse (a file with a hole), a 144-megapixel PNG is a few KB, and
a deeply nested pickle is a few hundred KB of opcodes.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import tarfile
import tracemalloc
import zlib
from pathlib import Path

import pytest
from conftest import tar_folder, write_image_dir, zip_folder

import cifar_lab as lab
from cifar_lab.data import formats, limits
from cifar_lab.data.formats import CorruptSourceError, read_batch

GIB = 1 << 30


def _load(source: Path, **sizes) -> None:
    lab.load_cifar10(sizes.get("train", 5), 0, None, source=source, verbose=False)


def _peak_bytes(action) -> int:
    """Peak of Python and NumPy allocations (tracemalloc) while ``action()`` runs."""
    tracemalloc.start()
    try:
        action()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def _refusal(action) -> tuple[str, int]:
    """The CorruptSourceError message ``action()`` raises, and the peak allocation meanwhile."""
    errors = []

    def refused() -> None:
        with pytest.raises(CorruptSourceError) as caught:
            action()
        errors.append(str(caught.value))

    peak = _peak_bytes(refused)
    return errors[0], peak


# ------------------------------------------------------------------ truncated archives
@pytest.mark.parametrize("packing", ["tgz", "zip"])
@pytest.mark.parametrize("cut", [0.3, 0.6, 0.9])
def test_truncated_image_archive_gives_the_promised_message(tmp_path, packing, cut):
    root = tmp_path / "cifar10-png"
    write_image_dir(root, per_class=3, test_per_class=1)
    pack = tar_folder if packing == "tgz" else zip_folder
    archive = pack(root, tmp_path / f"images.{packing}")
    data = archive.read_bytes()
    archive.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(CorruptSourceError, match="truncated or corrupt"):
        _load(archive)


# ------------------------------------------------------------- member and image sizes
def _tar_with_declared_member(path: Path, name: str, size: int) -> Path:
    """An uncompressed tar whose only member's header declares ``size`` bytes (few written)."""
    info = tarfile.TarInfo(name)
    info.size = size
    path.write_bytes(info.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 1024)
    return path


def test_huge_declared_tar_member_is_refused_before_reading(tmp_path):
    archive = _tar_with_declared_member(tmp_path / "images.tar", "c/train/cat/0000.png", GIB)
    message, peak = _refusal(lambda: _load(archive))
    assert "1,073,741,824 bytes, over the 1,048,576-byte limit" in message
    assert peak < 64 << 20, f"{peak / 2**20:.0f} MiB allocated while refusing it"


def test_huge_sparse_batch_file_is_refused_before_reading(python_dir):
    folder, _ = python_dir
    with open(folder / "data_batch_2", "wb") as handle:
        handle.truncate(GIB)  # a hole: nothing is written to disk
    message, peak = _refusal(lambda: _load(folder, train=50))
    assert "data_batch_2 is 1,073,741,824 bytes, over the 67,108,864-byte limit" in message
    assert peak < 64 << 20, f"{peak / 2**20:.0f} MiB allocated while refusing it"


def _png_claiming(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of one colour: 12000x12000 compresses to a few KB."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    compressor, row = zlib.compressobj(9), b"\0" * (1 + (width + 7) // 8)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", pixels)
        + chunk(b"IEND", b"")
    )


def test_huge_png_is_refused_from_its_header(tmp_path):
    root = tmp_path / "images"
    write_image_dir(root, per_class=1, test_per_class=1)
    bomb = _png_claiming(12_000, 12_000)
    assert len(bomb) < 64 << 10  # a small file...
    (root / "train" / "cat" / "0000.png").write_bytes(bomb)  # ...claiming 144 megapixels
    message, peak = _refusal(lambda: _load(root))
    assert "train/cat/0000.png: the image is 12000x12000 pixels" in message
    assert "before decoding" in message
    assert peak < 64 << 20, f"{peak / 2**20:.0f} MiB allocated while refusing it"


def test_oversized_image_file_is_refused_unread(tmp_path):
    root = tmp_path / "images"
    write_image_dir(root, per_class=1, test_per_class=1)
    (root / "test" / "dog" / "9999.png").write_bytes(os.urandom(limits.MAX_IMAGE_BYTES + 1))
    with pytest.raises(CorruptSourceError, match=r"test/dog/9999\.png is 1,048,577 bytes"):
        _load(root)


def test_total_image_bytes_are_limited(tmp_path, monkeypatch):
    root = tmp_path / "images"
    write_image_dir(root, per_class=2, test_per_class=1)
    monkeypatch.setattr(limits, "MAX_IMAGES_BYTES", 2000)  # a few images' worth
    with pytest.raises(CorruptSourceError, match="its images add up to more than 2,000 bytes"):
        _load(tar_folder(root, tmp_path / "images.tgz"))


# ----------------------------------------------------------------------------- pickles
DEEP_LISTS = b"\x80\x02" + b"]" * 100_000 + b"a" * 99_999 + b"."  # [[[[...]]]]
DEEP_TUPLES = b"\x80\x02N" + b"\x85" * 100_000 + b"."  # ((((None,),),),)


@pytest.mark.parametrize("payload", [DEEP_LISTS, DEEP_TUPLES], ids=["lists", "tuples"])
def test_deeply_nested_pickle_is_refused_before_unpickling(payload, monkeypatch):
    built = []
    monkeypatch.setattr(formats._RestrictedUnpickler, "load", lambda self: built.append(1))
    with pytest.raises(CorruptSourceError, match="nests deeper than 32 levels"):
        read_batch(payload, "data_batch_1")
    assert not built  # the unpickler never ran


def test_official_batch_nesting_is_accepted():
    import numpy as np
    from conftest import pickled_batch

    X = np.zeros((3, 32, 32, 3), np.uint8)
    limits.check_pickle_depth(pickled_batch(X, np.arange(3)), "data_batch_1")  # no error
    images, labels = read_batch(pickled_batch(X, np.arange(3)), "data_batch_1")
    assert images.shape == (3, 32, 32, 3) and labels.tolist() == [0, 1, 2]


def test_damaged_pickle_stream_is_a_clear_error():
    with pytest.raises(CorruptSourceError, match="not a readable CIFAR-10 batch"):
        limits.check_pickle_depth(b"\x80\x02a.", "data_batch_1")  # APPEND on an empty stack


# ------------------------------------------------------------------------ class folders
@pytest.mark.parametrize("how", ["empty", "missing"])
@pytest.mark.parametrize("packing", ["dir", "tgz"])
def test_empty_or_missing_class_folder_is_named(tmp_path, how, packing):
    root = tmp_path / "images"
    write_image_dir(root, per_class=2, test_per_class=1)
    folder = root / "test" / "cat"
    shutil.rmtree(folder)
    if how == "empty":
        folder.mkdir()
    source = root if packing == "dir" else tar_folder(root, tmp_path / "images.tgz")
    with pytest.raises(CorruptSourceError, match=r"no images for class cat \(test/cat/ is"):
        _load(source)


def test_limits_module_reads_its_own_limits():
    # the documented limits: one image a few KB, one batch 31 MB, CIFAR images 32x32
    assert limits.MAX_IMAGE_BYTES == 1 << 20 and limits.MAX_BATCH_BYTES == 64 << 20
    assert limits.IMAGE_SIZE == (32, 32)
    with pytest.raises(CorruptSourceError, match="cannot decode image"):
        limits.open_image_header(io.BytesIO(b"not an image").getvalue(), "x.png")
