"""Re-scoring a Part V model on the test split its claim was measured on.

``part5/results.json`` records that split (``test_split``: its size, the seed
that drew it and a SHA-256 of its images and labels; see
:mod:`cifar_lab.tuning.split_record`). The grader rebuilds it from its own
CIFAR-10 copy with ``load_cifar10(num_test=size, seed=seed)`` and uses it only
when the hash matches, so a quick-profile submission (500 test images) is
re-scored on its own 500 images and verifies.

A split the grader cannot rebuild (another copy of CIFAR-10, synthetic data,
an unrecorded seed, a malformed record) is reported as such, never as a
mismatch: the model is scored on the grader's own test set, and the claim is
flagged only when it differs from that score by more than sampling error
allows (three standard errors of the two splits, plus the tolerance).
Submissions without a record are scored on the grader's test set, as before.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cifar_lab.instructor.inspection import Finding
from cifar_lab.tuning.split_record import split_fingerprint

MAX_SPLIT_IMAGES = 100_000
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class SplitChoice:
    """The test images a model is scored on, and what the row should say about them.

    Attributes:
        images, labels: uint8 raw pixels (N, 32, 32, 3) and int labels (N,).
        problem: why the recorded split cannot be rebuilt (None: rebuilt, or none recorded).
        findings: notes for the row (a smaller split than the grader's own).
    """

    images: np.ndarray
    labels: np.ndarray
    problem: str | None = None
    findings: list[Finding] = field(default_factory=list)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def record_problem(record: Any) -> str | None:
    """Why an (untrusted) ``test_split`` record cannot name a split, or None."""
    if not isinstance(record, dict):
        return "its test_split record is not an object"
    size, seed, digest = record.get("images"), record.get("seed"), record.get("sha256")
    if not _is_int(size) or not 1 <= size <= MAX_SPLIT_IMAGES:
        return f"its test_split size {str(size)[:20]!r} is not a count of images"
    if seed is None:
        return "the split was drawn with an unrecorded seed (a Generator)"
    if not _is_int(seed) or not 0 <= seed < 2**32:
        return f"its test_split seed {str(seed)[:20]!r} is not a seed"
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        return "its test_split hash is not a SHA-256"
    return None


def rebuild(source: Any, record: dict) -> tuple[tuple[np.ndarray, np.ndarray] | None, str | None]:
    """Rebuild a recorded split from the grader's CIFAR-10 copy.

    Args:
        source: the grader's ``load_cifar10`` source.
        record: a valid ``test_split`` record.

    Returns:
        ((images, labels), None) when the rebuilt images hash as recorded, else (None, why not).
    """
    from cifar_lab.data.splits import load_cifar10

    size, seed = record["images"], record["seed"]
    for num_test in (size, None):  # None: all, when the copy's classes are unbalanced
        try:
            splits = load_cifar10(
                1, 0, num_test, source=source, seed=seed, standardise=False, verbose=False
            )
        except ValueError as error:
            reason = str(error).split(";")[0]
            continue
        images, labels = splits.X_test, splits.y_test
        if len(labels) == size and split_fingerprint(images, labels) == record["sha256"]:
            return (images, labels), None
        reason = (
            "its images differ from the grader's copy of CIFAR-10 (another copy, or synthetic)"
        )
    return None, f"{size:,} images drawn with seed {seed}: {reason}"


def choose_split(test_set: Any, record: Any) -> SplitChoice:
    """The split to score on: the recorded one when it can be rebuilt, else the grader's own.

    Args:
        test_set: the grader's ``LazyTestSet`` (``arrays()``, ``source``, ``rebuilt`` cache).
        record: ``results.json``'s ``test_split`` value, or None when absent.

    Returns:
        A :class:`SplitChoice`.
    """
    images, labels = test_set.arrays()
    if record is None:
        return SplitChoice(images, labels)
    problem = record_problem(record)
    if problem is not None:
        return SplitChoice(images, labels, problem)
    key = (record["images"], record["seed"], record["sha256"])
    cache = test_set.__dict__.setdefault("rebuilt", {})
    if key not in cache:
        cache[key] = rebuild(test_set.source, record)
    rebuilt, problem = cache[key]
    if rebuilt is None:
        return SplitChoice(images, labels, problem)
    notes = []
    if len(rebuilt[1]) < len(labels):
        message = (
            f"test accuracy measured and re-scored on {len(rebuilt[1]):,} test images "
            f"(the split results.json records), not the grader's {len(labels):,}"
        )
        notes.append(Finding("warning", "part5", message))
    return SplitChoice(*rebuilt, None, notes)


def unverifiable(
    claims: dict[str, float], accuracy: float, choice: SplitChoice, tolerance: float
) -> tuple[str, list[Finding]]:
    """Findings for claims measured on a split the grader cannot rebuild.

    Args:
        claims: {where: claimed test accuracy}.
        accuracy: the model's accuracy on the grader's own test set.
        choice: the split choice (its ``problem`` is set).
        tolerance: the grader's tolerance.

    Returns:
        ("not-checked" or "no", findings): a warning when every claim lies within
        sampling error of ``accuracy``, a flag otherwise.
    """
    n = len(choice.labels)
    spread = math.sqrt(max(accuracy * (1 - accuracy), 0.01) * 2 / n)  # both splits ~n images
    findings = []
    for where, value in claims.items():
        close = abs(value - accuracy) <= tolerance + 3 * spread
        head = f"{where} claims test accuracy {value:.4f} on a split the grader cannot rebuild"
        tail = f"on the grader's {n:,} test images the model scores {accuracy:.4f}"
        verdict = "within sampling error; not verified" if close else "beyond sampling error"
        severity = "warning" if close else "flagged"
        findings.append(
            Finding(severity, "part5", f"{head} ({choice.problem}); {tail}, {verdict}")
        )
    verified = "no" if any(f.severity == "flagged" for f in findings) else "not-checked"
    return verified, findings
