"""Tests for the Part I data layer: every source format, safety, splits, cache."""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    SHARED_ARCHIVE,
    exploit_bytes,
    pickled_batch,
    tar_folder,
    write_image_dir,
    zip_folder,
)

import cifar_lab as lab
from cifar_lab.data import cache, sources
from cifar_lab.data.formats import CLASS_NAMES, CorruptSourceError
from cifar_lab.data.sources import CIFAR10NotFoundError
from cifar_lab.data.splits import CIFAR10Splits, balanced_subset, channel_stats


def _rows(X: np.ndarray) -> set[bytes]:
    """Hashable identity of raw images, to compare pools irrespective of order."""
    return {image.tobytes() for image in X}


def _raw_rows(splits: CIFAR10Splits, X: np.ndarray) -> set[bytes]:
    return _rows(splits.denormalise(X))


# ----------------------------------------------------------------------------- formats
def test_python_dir_round_trips_every_image(python_dir):
    folder, truth = python_dir
    splits = lab.load_cifar10(80, 20, None, source=folder, verbose=False)
    X_train, y_train, X_val, y_val, X_test, y_test = splits
    assert X_train.shape == (80, 32, 32, 3) and X_train.dtype == np.float32
    assert y_train.shape == (80,) and y_train.dtype == np.int32
    assert _raw_rows(splits, np.concatenate([X_train, X_val])) == _rows(truth["X_train"])
    assert _raw_rows(splits, X_test) == _rows(truth["X_test"])
    # each image keeps its own label through shuffling and splitting
    pairs = zip(truth["X_test"], truth["y_test"], strict=True)
    lookup = {x.tobytes(): label for x, label in pairs}
    restored = splits.denormalise(X_test)
    assert [lookup[x.tobytes()] for x in restored] == list(y_test)


def test_official_tarball_matches_folder(python_dir, tmp_path):
    folder, _ = python_dir
    archive = tar_folder(folder, tmp_path / "cifar-10-python.tar.gz")
    from_dir = lab.load_cifar10(80, 20, 30, source=folder, verbose=False)
    from_tar = lab.load_cifar10(80, 20, 30, source=archive, verbose=False)
    for a, b in zip(from_dir, from_tar, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("packing", ["dir", "tgz", "zip"])
def test_image_folder_sources(tmp_path, packing):
    root = tmp_path / "cifar10-png"
    truth = write_image_dir(root, per_class=12, test_per_class=4)
    source = {
        "dir": root,
        "tgz": tar_folder(root, tmp_path / "images.tgz"),
        "zip": zip_folder(root, tmp_path / "images.zip"),
    }[packing]
    splits = lab.load_cifar10(100, 20, None, source=source, verbose=False)
    assert splits.X_test.shape == (40, 32, 32, 3)
    train_pool = np.concatenate([splits.X_train, splits.X_val])
    assert _raw_rows(splits, train_pool) == _rows(truth["train"][0])
    assert np.bincount(splits.y_test, minlength=10).tolist() == [4] * 10


def test_jpeg_images_are_read(tmp_path):
    root = tmp_path / "cifar10-jpeg"
    write_image_dir(root, per_class=3, test_per_class=1, fmt="JPEG")
    splits = lab.load_cifar10(20, 10, None, source=root, verbose=False)
    assert splits.X_train.shape == (20, 32, 32, 3)


def test_images_decode_in_order_across_threads_and_the_first_corrupt_one_is_named():
    # The decode is split into chunks that threads share; the array must still follow the
    # items' order, and a corrupt image must be named as a one-thread loop would name it.
    import io

    from PIL import Image

    from cifar_lab.data import formats

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(23, 32, 32, 3), dtype=np.uint8)
    items = []
    for i, image in enumerate(pixels):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        items.append((("train", "cat", f"{i:04d}.png"), buffer.getvalue()))
    np.testing.assert_array_equal(formats._decode_images(items, chunk=4), pixels)
    broken = list(items)
    for i in (9, 17):  # two corrupt images in different chunks: the earlier one is named
        broken[i] = (items[i][0], b"not an image")
    with pytest.raises(CorruptSourceError, match=r"train/cat/0009\.png"):
        formats._decode_images(broken, chunk=4)


def test_unknown_class_folder_is_named(tmp_path):
    root = tmp_path / "images"
    write_image_dir(root, per_class=1, test_per_class=1)
    shutil.move(root / "train" / "truck", root / "train" / "lorry")
    with pytest.raises(CorruptSourceError, match="lorry"):
        lab.load_cifar10(5, 0, None, source=root, verbose=False)


# ------------------------------------------------------------------------------ safety
def test_malicious_pickle_is_refused_and_never_runs(python_dir, tmp_path):
    folder, _ = python_dir
    marker = tmp_path / "pwned"
    (folder / "data_batch_3").write_bytes(exploit_bytes(marker))
    with pytest.raises(CorruptSourceError, match=r"refusing to load posix\.system|os\.system"):
        lab.load_cifar10(50, 10, None, source=folder, verbose=False)
    assert not marker.exists()


def test_batch_with_wrong_shape_is_rejected(python_dir):
    folder, _ = python_dir
    rows = np.zeros((4, 100), np.uint8)
    import pickle

    (folder / "data_batch_2").write_bytes(
        pickle.dumps({b"data": rows, b"labels": [0, 1, 2, 3]}, protocol=2)
    )
    with pytest.raises(CorruptSourceError, match=r"\(N, 3072\)"):
        lab.load_cifar10(50, 10, None, source=folder, verbose=False)


def test_labels_out_of_range_are_rejected(python_dir):
    folder, _ = python_dir
    X = np.zeros((2, 32, 32, 3), np.uint8)
    (folder / "test_batch").write_bytes(pickled_batch(X, np.array([3, 12])))
    with pytest.raises(CorruptSourceError, match=r"0\.\.9"):
        lab.load_cifar10(50, 10, None, source=folder, verbose=False)


def test_missing_batch_is_named(python_dir):
    folder, _ = python_dir
    (folder / "data_batch_5").unlink()
    with pytest.raises(CorruptSourceError, match="data_batch_5"):
        lab.load_cifar10(50, 10, None, source=folder, verbose=False)


@pytest.mark.parametrize("cut", [0.5, 0.97])
def test_truncated_archive_gives_clear_error(python_dir, tmp_path, cut):
    folder, _ = python_dir
    archive = tar_folder(folder, tmp_path / "cifar-10-python.tar.gz")
    data = archive.read_bytes()
    archive.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(CorruptSourceError, match="truncated or corrupt"):
        lab.load_cifar10(50, 10, None, source=archive, verbose=False)


def test_garbage_file_gives_clear_error(tmp_path):
    junk = tmp_path / "cifar.tgz"
    junk.write_bytes(os.urandom(2000))
    with pytest.raises(CorruptSourceError, match="truncated or corrupt") as caught:
        lab.load_cifar10(50, 10, None, source=junk, verbose=False)
    assert "\n" not in str(caught.value)  # tarfile's several reasons, not its repr


@pytest.mark.parametrize("name", ["notes.txt", "notes"])
def test_a_file_that_is_no_archive_is_named_as_not_cifar10(tmp_path, name):
    notes = tmp_path / name
    notes.write_text("hello\n" * 100)
    with pytest.raises(CorruptSourceError, match="is not a CIFAR-10 copy") as caught:
        lab.load_cifar10(source=notes, verbose=False)
    assert str(notes) in str(caught.value) and "\n" not in str(caught.value)


def test_an_uncompressed_tar_without_its_suffix_is_read_as_an_archive(python_dir, tmp_path):
    folder, truth = python_dir
    archive = tmp_path / "cifar-copy"
    with tarfile.open(archive, "w") as tar:  # plain tar, no suffix: found by its header
        tar.add(folder, arcname="cifar-10-batches-py")
    splits = lab.load_cifar10(80, 20, None, source=archive, verbose=False)
    assert _raw_rows(splits, splits.X_test) == _rows(truth["X_test"])


# ----------------------------------------------------------------------------- splits
def test_validation_split_is_class_balanced_from_sorted_source(image_dir):
    root, _ = image_dir  # files are class-sorted on disk
    splits = lab.load_cifar10(60, 50, 20, source=root, verbose=False)
    assert np.bincount(splits.y_val, minlength=10).tolist() == [5] * 10
    assert np.bincount(splits.y_test, minlength=10).tolist() == [2] * 10
    # the training subset is shuffled, not the first classes in folder order
    assert len(np.unique(splits.y_train)) == 10


def test_splits_are_disjoint_and_seeded(image_dir):
    root, _ = image_dir
    a = lab.load_cifar10(60, 50, None, source=root, seed=1, verbose=False)
    b = lab.load_cifar10(60, 50, None, source=root, seed=1, verbose=False)
    c = lab.load_cifar10(60, 50, None, source=root, seed=2, verbose=False)
    np.testing.assert_array_equal(a.X_val, b.X_val)
    assert not np.array_equal(a.X_val, c.X_val)
    assert not (_raw_rows(a, a.X_train) & _raw_rows(a, a.X_val))


def test_generator_seed_is_accepted(image_dir):
    root, _ = image_dir
    a = lab.load_cifar10(60, 50, None, source=root, seed=np.random.default_rng(7), verbose=False)
    b = lab.load_cifar10(60, 50, None, source=root, seed=np.random.default_rng(7), verbose=False)
    np.testing.assert_array_equal(a.y_train, b.y_train)


def test_normalisation_uses_training_split_only(image_dir):
    root, _ = image_dir
    splits = lab.load_cifar10(60, 50, None, source=root, verbose=False)
    train_raw = splits.denormalise(splits.X_train).astype(np.float64)
    np.testing.assert_allclose(splits.mean, train_raw.mean(axis=(0, 1, 2)), atol=0.01)
    np.testing.assert_allclose(splits.X_train.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(splits.X_train.std(axis=(0, 1, 2)), 1, atol=1e-4)


def test_raw_pixels_are_the_same_images_unstandardised(image_dir):
    # Notebook 01 loads raw pixels and standardises them in an exercise.
    root, _ = image_dir
    splits = lab.load_cifar10(60, 50, None, source=root, seed=3, verbose=False)
    raw = lab.load_cifar10(60, 50, None, source=root, seed=3, verbose=False, standardise=False)
    for name in ("train", "val", "test"):
        pixels, standardised = getattr(raw, f"X_{name}"), getattr(splits, f"X_{name}")
        assert pixels.dtype == np.uint8
        np.testing.assert_array_equal(pixels, splits.denormalise(standardised))
        np.testing.assert_array_equal(getattr(raw, f"y_{name}"), getattr(splits, f"y_{name}"))
        assert getattr(raw, f"y_{name}").dtype == np.int32
    np.testing.assert_array_equal(raw.denormalise(raw.X_train), raw.X_train)
    assert "not standardised" in raw.summary()
    with pytest.raises(TypeError, match="standardise"):
        lab.load_cifar10(60, 50, None, source=root, verbose=False, standardise=1)


def test_channel_stats_matches_numpy():
    X = np.random.default_rng(0).integers(0, 256, size=(50, 32, 32, 3), dtype=np.uint8)
    index = np.arange(0, 50, 3)
    mean, std = channel_stats(X, index)
    subset = X[index].astype(np.float64)
    np.testing.assert_allclose(mean, subset.mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(std, subset.std(axis=(0, 1, 2)), rtol=1e-5)


def test_balanced_subset_counts_and_order():
    y = np.repeat(np.arange(10), 30)
    order = np.random.default_rng(0).permutation(len(y))
    picked = balanced_subset(y, order, 47)
    counts = np.bincount(y[picked], minlength=10)
    assert counts.sum() == 47 and counts.max() - counts.min() <= 1
    positions = [np.flatnonzero(order == i)[0] for i in picked]
    assert positions == sorted(positions)


def test_asking_for_too_many_images_says_how_many_exist(image_dir):
    root, _ = image_dir
    with pytest.raises(ValueError, match="holds 40 test images"):
        lab.load_cifar10(60, 50, 41, source=root, verbose=False)
    with pytest.raises(ValueError, match="holds 120 training images"):
        lab.load_cifar10(100, 50, None, source=root, verbose=False)


@pytest.mark.parametrize(
    "sizes, error",
    [((-1, 10, 10), ValueError), ((10, 1.5, 10), TypeError), ((0, 10, 10), ValueError)],
)
def test_bad_sizes_raise(sizes, error):
    with pytest.raises(error):
        lab.load_cifar10(*sizes, source="synthetic", verbose=False)


# ----------------------------------------------------------------------------- sources
def test_resolution_order_argument_then_env_then_keras_cache(python_dir, image_dir, monkeypatch):
    folder, _ = python_dir
    root, _ = image_dir
    monkeypatch.setenv("CIFAR10_SOURCE", str(root))
    assert sources.describe_choice(folder) == (folder.resolve(), "argument")
    assert sources.describe_choice(None) == (root.resolve(), "$CIFAR10_SOURCE")
    monkeypatch.delenv("CIFAR10_SOURCE")
    keras_copy = sources.keras_cache_candidates()[1]
    shutil.copytree(folder, keras_copy)
    assert sources.describe_choice(None) == (keras_copy, "Keras cache")


def test_offline_without_copy_names_every_fix(monkeypatch):
    monkeypatch.setattr(sources, "_is_online", lambda *a, **k: False)
    with pytest.raises(CIFAR10NotFoundError) as caught:
        lab.load_cifar10(verbose=False)
    message = str(caught.value)
    keras_dir = str(sources.keras_dataset_dir())
    for fix in ("source=", "CIFAR10_SOURCE", keras_dir, "online", "synthetic"):
        assert fix in message


def test_keras_source_offline_raises_instead_of_falling_back(monkeypatch):
    monkeypatch.setattr(sources, "_is_online", lambda *a, **k: False)
    with pytest.raises(CIFAR10NotFoundError, match="synthetic"):
        lab.load_cifar10(source="keras", verbose=False)


def test_keras_source_reads_cached_official_copy(python_dir):
    folder, truth = python_dir
    shutil.copytree(folder, sources.keras_cache_candidates()[0])
    splits = lab.load_cifar10(80, 20, None, source="keras", verbose=False)
    assert _raw_rows(splits, splits.X_test) == _rows(truth["X_test"])


def test_missing_path_and_wrong_type_are_explained(tmp_path, monkeypatch):
    missing = tmp_path / "nope.tgz"
    with pytest.raises(CIFAR10NotFoundError, match="does not exist") as caught:
        lab.load_cifar10(source=missing, verbose=False)
    assert f"source='{missing}'" in str(caught.value)
    assert "source='keras'" in str(caught.value) and "source='synthetic'" in str(caught.value)
    monkeypatch.setenv("CIFAR10_SOURCE", str(missing))
    with pytest.raises(CIFAR10NotFoundError, match=r"from \$CIFAR10_SOURCE does not"):
        lab.load_cifar10(verbose=False)
    with pytest.raises(TypeError, match="source must be"):
        lab.load_cifar10(source=42, verbose=False)


def test_folder_without_cifar_layout_is_rejected(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(CorruptSourceError, match="neither"):
        lab.load_cifar10(source=tmp_path, verbose=False)


def test_source_used_is_printed(python_dir, capsys):
    folder, _ = python_dir
    lab.load_cifar10(80, 20, None, source=folder)
    assert str(folder) in capsys.readouterr().out


# ------------------------------------------------------------------------------- cache
def _load_archive(archive: Path, cache_dir: Path) -> CIFAR10Splits:
    return lab.load_cifar10(100, 20, None, source=archive, cache_dir=cache_dir, verbose=False)


def test_cache_is_reused_then_rebuilt_when_archive_changes(tmp_path, monkeypatch):
    root = tmp_path / "images"
    write_image_dir(root, per_class=12, test_per_class=4)
    archive = tar_folder(root, tmp_path / "images.tgz")
    cache_dir = tmp_path / "cache"
    first = _load_archive(archive, cache_dir)
    entries = list(cache_dir.glob("*.npz"))
    assert len(entries) == 1

    def no_decoding(path):
        raise AssertionError("decoded again although a cache entry exists")

    with monkeypatch.context() as patch:
        patch.setattr(sources.formats, "read_image_archive", no_decoding)
        second = _load_archive(archive, cache_dir)
    np.testing.assert_array_equal(first.X_train, second.X_train)

    shutil.rmtree(root / "train" / "cat")  # a different archive must not hit the old entry
    write_image_dir(root, per_class=13, test_per_class=4)
    tar_folder(root, archive)
    third = _load_archive(archive, cache_dir)
    assert len(list(cache_dir.glob("*.npz"))) == 2
    assert not np.array_equal(first.X_train, third.X_train)


def test_interrupted_cache_write_leaves_nothing_behind(tmp_path, monkeypatch):
    root = tmp_path / "images"
    write_image_dir(root, per_class=2, test_per_class=1)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache.np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        lab.load_cifar10(10, 10, None, source=root, cache_dir=tmp_path / "c", verbose=False)
    assert list((tmp_path / "c").iterdir()) == []


def test_unreadable_cache_entry_is_rebuilt_with_a_notice(tmp_path, capsys):
    root = tmp_path / "images"
    write_image_dir(root, per_class=2, test_per_class=1)
    lab.load_cifar10(10, 10, None, source=root, cache_dir=tmp_path / "c", verbose=False)
    (entry,) = (tmp_path / "c").glob("*.npz")
    entry.write_bytes(b"not a zip")
    splits = lab.load_cifar10(10, 10, None, source=root, cache_dir=tmp_path / "c", verbose=False)
    assert splits.X_train.shape == (10, 32, 32, 3)
    assert "rebuilding" in capsys.readouterr().out


def test_cache_dir_comes_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_LAB_CACHE", str(tmp_path / "mine"))
    assert cache.default_cache_dir() == tmp_path / "mine"


# --------------------------------------------------------------------------- synthetic
def test_synthetic_is_deterministic_and_labelled():
    a = lab.load_cifar10(500, 100, 100, source="synthetic", verbose=False)
    b = lab.load_cifar10(500, 100, 100, source="synthetic", verbose=False)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert "synthetic" in a.source and "not CIFAR-10" in a.source
    assert np.bincount(a.y_val, minlength=10).tolist() == [10] * 10


def test_synthetic_is_learnable_by_a_linear_softmax():
    """A few hundred SGD steps of softmax regression must beat chance (10%) by far."""
    X_train, y_train, _, _, X_test, y_test = lab.load_cifar10(
        3000, 0, 500, source="synthetic", verbose=False
    )
    X, Xt = X_train.reshape(len(X_train), -1), X_test.reshape(len(X_test), -1)
    rng = np.random.default_rng(0)
    W = np.zeros((X.shape[1], 10))
    for _ in range(300):
        batch = rng.integers(0, len(X), 64)
        scores = X[batch] @ W
        probs = np.exp(scores - scores.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        probs[np.arange(64), y_train[batch]] -= 1
        W -= 1e-3 * X[batch].T @ probs / 64
    accuracy = np.mean((Xt @ W).argmax(axis=1) == y_test)
    assert accuracy > 0.6


def test_class_names_are_cifar_order():
    splits = lab.load_cifar10(20, 10, 10, source="synthetic", verbose=False)
    assert splits.class_names == CLASS_NAMES
    assert splits.class_names[3] == "cat" and splits.class_names[9] == "truck"


# ---------------------------------------------------------------------------- real data
@pytest.mark.skipif(not SHARED_ARCHIVE.exists(), reason=f"{SHARED_ARCHIVE} is not present")
def test_shared_archive_loads_in_full():
    # The run decodes the 55,000 JPEGs once, with this same read_source
    # (conftest.decoded_real_data), and this test's cache folder holds a link to that
    # entry: so this checks what the decode produced, and the loads that read it.
    tmp_path = Path(os.environ["CIFAR_LAB_CACHE"])
    raw, from_cache = sources.read_source(
        SHARED_ARCHIVE, cache_dir=tmp_path, num_train=0, num_test=0
    )
    assert from_cache, "the run's decoded archive should be in this test's cache"
    assert raw.X_train.shape == (50_000, 32, 32, 3) and raw.X_train.dtype == np.uint8
    assert raw.X_test.shape == (5_000, 32, 32, 3)
    assert np.bincount(raw.y_train, minlength=10).tolist() == [5_000] * 10
    splits = lab.load_cifar10(
        num_test=None, source=SHARED_ARCHIVE, cache_dir=tmp_path, verbose=False
    )
    X_train, y_train, X_val, y_val, X_test, y_test = splits
    assert X_train.shape == (49_000, 32, 32, 3) and X_train.dtype == np.float32
    assert (X_val.shape, X_test.shape) == ((1_000, 32, 32, 3), (5_000, 32, 32, 3))
    assert y_train.dtype == np.int32 and np.bincount(y_val, minlength=10).tolist() == [100] * 10
    with pytest.raises(ValueError, match="holds 5000 test images"):
        lab.load_cifar10(source=SHARED_ARCHIVE, cache_dir=tmp_path, verbose=False)
