"""A deterministic, CIFAR-shaped, learnable stand-in for CIFAR-10.

Only ever used when asked for with ``source="synthetic"``: for tests and
offline demos. Each class is a smooth random colour pattern; every image is
its class pattern with a random brightness shift and heavy pixel noise, so a
small dense network separates the classes well above chance within a few
hundred steps, but not instantly.
"""

from __future__ import annotations

import numpy as np

from cifar_lab.checks import check_int
from cifar_lab.data.formats import RawCIFAR

SYNTHETIC_TRAIN_SIZE = 50_000
SYNTHETIC_TEST_SIZE = 10_000
_PATTERN_SEED = 20_240_610  # fixed: the classes must look the same on every machine


def _class_patterns() -> np.ndarray:
    """Return 10 smooth float patterns of shape (32, 32, 3) centred on grey."""
    rng = np.random.default_rng(_PATTERN_SEED)
    coarse = rng.normal(0.0, 1.0, size=(10, 4, 4, 3))
    smooth = coarse.repeat(8, axis=1).repeat(8, axis=2)
    return 128.0 + 45.0 * smooth


def _make_split(num_images: int, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([_PATTERN_SEED, split_seed])
    y = np.arange(num_images, dtype=np.int32) % 10
    rng.shuffle(y)
    X = np.empty((num_images, 32, 32, 3), dtype=np.uint8)
    patterns = _class_patterns()
    for start in range(0, num_images, 2048):  # chunks bound the float64 scratch memory
        labels = y[start : start + 2048]
        noise = rng.normal(0.0, 70.0, size=(labels.size, 32, 32, 3))
        shift = rng.normal(0.0, 20.0, size=(labels.size, 1, 1, 1))
        X[start : start + labels.size] = np.clip(patterns[labels] + noise + shift, 0, 255)
    return X, y


def synthetic_cifar10(
    num_train: int = SYNTHETIC_TRAIN_SIZE, num_test: int = SYNTHETIC_TEST_SIZE
) -> RawCIFAR:
    """Generate synthetic CIFAR-shaped pools; the same sizes always give the same arrays.

    Args:
        num_train: images in the training pool (at most 50,000).
        num_test: images in the test pool (at most 10,000).

    Returns:
        A :class:`RawCIFAR` with uint8 images (N, 32, 32, 3) and balanced int32 labels.
    """
    check_int("synthetic num_train", num_train, minimum=1, maximum=SYNTHETIC_TRAIN_SIZE)
    check_int("synthetic num_test", num_test, minimum=1, maximum=SYNTHETIC_TEST_SIZE)
    X_train, y_train = _make_split(num_train, 1)
    X_test, y_test = _make_split(num_test, 2)
    return RawCIFAR(X_train, y_train, X_test, y_test, "synthetic CIFAR-shaped data (not CIFAR-10)")
