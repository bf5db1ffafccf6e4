"""What ``part5/results.json`` records about the test split, so the grader re-scores on it.

A Part V claim is measured on one test split: all test images in the full
profile, 500 in the quick one. The record names that split by its size, the
seed that drew it, and a SHA-256 of its images and labels; the grader rebuilds
the split from its own CIFAR-10 copy with the same size and seed, and trusts
the rebuilt images only when their hash matches.
"""

from __future__ import annotations

import hashlib

import numpy as np

SPLIT_KEY = "test_split"  # results.json key of the record
PROFILE_KEY = "profile"  # results.json key of the run profile (quick / full)


def split_fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 of a test split's (image, label) pairs, in any order.

    Accuracy does not depend on the order of the images, so neither does the
    fingerprint: the pairs are sorted before hashing.

    Args:
        images: uint8 raw pixels (N, 32, 32, 3).
        labels: int labels (N,).

    Returns:
        64 hexadecimal digits.
    """
    rows = np.ascontiguousarray(images, dtype=np.uint8).reshape(len(labels), -1)
    tags = np.asarray(labels, dtype=np.int64).astype(">i8").view(np.uint8).reshape(-1, 8)
    pairs = sorted(row.tobytes() + tag.tobytes() for row, tag in zip(rows, tags, strict=True))
    digest = hashlib.sha256()
    for pair in pairs:
        digest.update(pair)
    return digest.hexdigest()


def describe_split(images: np.ndarray, labels: np.ndarray, seed: int | None) -> dict:
    """The results.json record of a test split.

    Args:
        images: uint8 raw pixels (N, 32, 32, 3).
        labels: int labels (N,).
        seed: the int seed ``load_cifar10`` drew the split with (None: unknown).

    Returns:
        ``{"images": N, "seed": seed, "sha256": ...}`` (JSON-ready).
    """
    return {"images": len(labels), "seed": seed, "sha256": split_fingerprint(images, labels)}
