"""Part I: load CIFAR-10, carve out a class-balanced validation split, normalise.

Typical use::

    X_train, y_train, X_val, y_val, X_test, y_test = lab.load_cifar10()

The returned :class:`CIFAR10Splits` also carries the class names, the
per-channel mean and std (from the training split only) and the source used.
``standardise=False`` returns the raw uint8 pixels instead (notebook 01
standardises them in an exercise).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cifar_lab.checks import check_bool, check_int, check_optional_int
from cifar_lab.data.formats import CLASS_NAMES, RawCIFAR
from cifar_lab.data.sources import describe_choice, read_source
from cifar_lab.seeding import SeedLike, as_generator

_CHUNK = 4096  # images converted to float at a time; bounds temporary memory


@dataclass(frozen=True)
class CIFAR10Splits:
    """CIFAR-10 splits; unpacks like six arrays.

    Attributes:
        X_train, X_val, X_test: float32 arrays of shape (N, 32, 32, 3), NHWC,
            standardised per channel with the training mean and std; or, when
            loaded with ``standardise=False``, the raw uint8 pixels 0..255.
        y_train, y_val, y_test: int32 arrays of shape (N,) with values in 0..9.
        class_names: the 10 class names, index = label.
        mean, std: float32 arrays of shape (3,): per-channel statistics of the
            raw 0..255 training pixels used for normalisation (0 and 1 when the
            pixels were left raw).
        source: description of where the images came from.
        seed: the int seed of the shuffle and split (None when a Generator was
            given); with the source and ``len(y_test)`` it rebuilds the same test
            images, which is how the grader re-scores a Part V model.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...] = CLASS_NAMES
    mean: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))
    std: np.ndarray = field(default_factory=lambda: np.ones(3, np.float32))
    source: str = ""
    seed: int | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        yield from (self.X_train, self.y_train, self.X_val, self.y_val, self.X_test, self.y_test)

    def denormalise(self, X: np.ndarray) -> np.ndarray:
        """Map normalised images back to uint8 pixels (N, 32, 32, 3) for display.

        Raw uint8 pixels (``standardise=False``) come back unchanged.
        """
        return np.clip(np.rint(X * self.std + self.mean), 0, 255).astype(np.uint8)

    def summary(self) -> str:
        """Return a short, printable description of the splits."""
        lines = [f"source: {self.source}"]
        for name, X, y in (
            ("train", self.X_train, self.y_train),
            ("validation", self.X_val, self.y_val),
            ("test", self.X_test, self.y_test),
        ):
            counts = np.bincount(y, minlength=10)
            lines.append(
                f"{name:>10}: X {X.shape} {X.dtype}, y {y.shape} {y.dtype}, "
                f"per class {counts.min()}..{counts.max()}"
            )
        if self.X_train.dtype == np.uint8:
            lines.append("pixels: raw uint8 0..255, not standardised")
        else:
            lines.append(f"channel mean {np.round(self.mean, 2)}, std {np.round(self.std, 2)}")
        return "\n".join(lines)


def load_cifar10(
    num_training: int = 49_000,
    num_validation: int = 1_000,
    num_test: int | None = 10_000,
    *,
    source: str | os.PathLike | None = None,
    seed: SeedLike = 0,
    cache_dir: str | os.PathLike | None = None,
    verbose: bool = True,
    standardise: bool = True,
) -> CIFAR10Splits:
    """Load CIFAR-10 and return normalised train/validation/test splits.

    The training pool is shuffled with ``seed`` before splitting (image-folder
    copies are sorted by class), and the validation and any test subset are
    drawn class-balanced. See :mod:`cifar_lab.data.sources` for how ``source`` is
    resolved when it is None.

    Args:
        num_training: training images, taken from the official training set.
        num_validation: validation images, also from the training set, disjoint.
        num_test: test images; None means all the source holds.
        source: a path (official tarball or folder, image-folder tree or
            archive), ``"keras"`` (official download) or ``"synthetic"``.
        seed: int or ``np.random.Generator`` controlling the shuffle and split.
        cache_dir: folder for decoded image caches (default ``~/.cache/cifar_lab``).
        verbose: print the source used and the load time.
        standardise: subtract the training split's per-channel mean and divide
            by its std; False returns the raw uint8 pixels.

    Returns:
        A :class:`CIFAR10Splits`; images float32 (N, 32, 32, 3) (uint8 when
        ``standardise=False``), labels int32 (N,).

    Raises:
        TypeError: a size is not an int, the seed is neither an int nor a Generator,
            or ``standardise`` is not a bool.
        ValueError: a size or the seed is negative, or a size is larger than the source holds.
        CIFAR10NotFoundError: no source is available (the message lists fixes).
    """
    _check_sizes(num_training, num_validation, num_test)
    check_bool("standardise", standardise)
    rng = as_generator(seed)  # a bad seed fails now, not after reading the source
    start = time.perf_counter()
    chosen, reason = describe_choice(source)
    raw, from_cache = read_source(
        chosen,
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
        num_train=num_training + num_validation,
        num_test=num_test or 10_000,
    )
    splits = split_and_normalise(
        raw, num_training, num_validation, num_test, seed=rng, standardise=standardise
    )
    if isinstance(seed, (int, np.integer)):  # recorded, so the test split can be rebuilt
        splits = dataclasses.replace(splits, seed=int(seed))
    if verbose:
        how = "from decode cache" if from_cache else "decoded"
        print(
            f"CIFAR-10 source ({reason}): {raw.description} "
            f"[{how}, {time.perf_counter() - start:.1f} s]"
        )
    return splits


def _check_sizes(num_training: int, num_validation: int, num_test: int | None) -> None:
    check_int("num_training", num_training, minimum=1)
    check_int("num_validation", num_validation, minimum=0)
    check_optional_int("num_test", num_test, minimum=0)


def split_and_normalise(
    raw: RawCIFAR,
    num_training: int,
    num_validation: int,
    num_test: int | None,
    *,
    seed: SeedLike = 0,
    standardise: bool = True,
) -> CIFAR10Splits:
    """Shuffle, split class-balanced, and standardise raw pools.

    Args:
        raw: uint8 pools as read from a source.
        num_training, num_validation, num_test: split sizes (num_test None = all).
        seed: int or Generator for the shuffle.
        standardise: False keeps the pixels raw (uint8, mean 0 and std 1 recorded).

    Returns:
        The :class:`CIFAR10Splits`.
    """
    available_train, available_test = len(raw.y_train), len(raw.y_test)
    if num_training + num_validation > available_train:
        raise ValueError(
            f"asked for {num_training} training + {num_validation} validation images, but "
            f"the source holds {available_train} training images; lower num_training."
        )
    if num_test is not None and num_test > available_test:
        raise ValueError(
            f"asked for num_test={num_test}, but the source holds {available_test} test "
            f"images; pass num_test={available_test} or num_test=None for all of them."
        )
    rng = as_generator(seed)
    pool = rng.permutation(available_train)
    val_index = balanced_subset(raw.y_train, pool, num_validation)
    train_index = pool[~np.isin(pool, val_index)][:num_training]
    test_order = rng.permutation(available_test)
    test_index = (
        test_order if num_test is None else balanced_subset(raw.y_test, test_order, num_test)
    )

    if not standardise:
        return CIFAR10Splits(
            raw.X_train[train_index],
            raw.y_train[train_index].astype(np.int32),
            raw.X_train[val_index],
            raw.y_train[val_index].astype(np.int32),
            raw.X_test[test_index],
            raw.y_test[test_index].astype(np.int32),
            class_names=CLASS_NAMES,
            source=raw.description,
        )
    mean, std = channel_stats(raw.X_train, train_index)
    return CIFAR10Splits(
        *_normalised(raw.X_train, raw.y_train, train_index, mean, std),
        *_normalised(raw.X_train, raw.y_train, val_index, mean, std),
        *_normalised(raw.X_test, raw.y_test, test_index, mean, std),
        class_names=CLASS_NAMES,
        mean=mean,
        std=std,
        source=raw.description,
    )


def balanced_subset(y: np.ndarray, order: np.ndarray, size: int) -> np.ndarray:
    """Pick ``size`` indices from ``order`` with class counts as equal as possible.

    Args:
        y: int labels of the whole pool, shape (N,).
        order: a permutation of (a subset of) ``arange(N)`` to draw from, in order.
        size: how many indices to return.

    Returns:
        int64 indices of shape (size,), in the order they appear in ``order``.
    """
    if size == 0:
        return np.empty(0, dtype=np.int64)
    classes = np.unique(y[order])
    quota = np.full(len(classes), size // len(classes))
    quota[: size % len(classes)] += 1
    chosen = []
    for label, want in zip(classes, quota, strict=True):
        members = order[y[order] == label]
        if len(members) < want:
            raise ValueError(f"class {label} has only {len(members)} images; need {want}")
        chosen.append(members[:want])
    picked = np.concatenate(chosen)
    return order[np.isin(order, picked)]


def channel_stats(X: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-channel mean and std of ``X[index]``, from 256-bin pixel histograms.

    Counting uint8 values avoids a float copy of the training set.

    Args:
        X: uint8 images (N, 32, 32, 3).
        index: int indices of the images to use.

    Returns:
        mean, std: float32 arrays of shape (3,).
    """
    counts = np.zeros((3, 256), dtype=np.int64)
    for start in range(0, len(index), _CHUNK):
        chunk = X[index[start : start + _CHUNK]]
        for channel in range(3):
            counts[channel] += np.bincount(chunk[..., channel].ravel(), minlength=256)
    values = np.arange(256, dtype=np.float64)
    total = counts.sum(axis=1)
    mean = counts @ values / total
    var = counts @ values**2 / total - mean**2
    return mean.astype(np.float32), np.sqrt(np.maximum(var, 1e-12)).astype(np.float32)


def _normalised(
    X: np.ndarray, y: np.ndarray, index: np.ndarray, mean: np.ndarray, std: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    out = np.empty((len(index), *X.shape[1:]), dtype=np.float32)
    for start in range(0, len(index), _CHUNK):
        rows = index[start : start + _CHUNK]
        block = out[start : start + len(rows)]
        block[...] = X[rows]
        block -= mean
        block /= std
    return out, y[index].astype(np.int32)
