"""Ceilings for grading: a per-submission time budget, and model scoring in a limited child.

**Scoring a saved model** (:func:`score_model_sets`) runs ``claims.model_accuracies``
in a child process through :func:`~cifar_lab.instructor.sandbox.run_limited`:
an RSS watchdog kills the child's whole session once it passes
``model_memory_bytes`` (default 4 GB) or ``model_seconds`` (default 120 s).
The grader never loads a model itself, so a model that balloons takes only its
child down, and the row says which limit it passed. :mod:`~cifar_lab.instructor.sandbox`
says why resident memory is watched rather than capped with ``RLIMIT_AS``
(TensorFlow's address-space reservations).

**Per-submission budget** (:func:`submission_budget`): reading, checking and
scoring one submission must end within ``submission_seconds`` (default 300 s).
In the main thread a ``SIGALRM`` timer raises :class:`SubmissionTimeoutError`
wherever the grader is; the scoring child gets at most the time that is left.
The re-execution runs outside the budget (:func:`suspended_budget`): it has its own
``--total-timeout``. The budget is passed down as an argument, never kept in a global.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cifar_lab.checks import check_int, check_number
from cifar_lab.instructor.findings import MEGABYTE
from cifar_lab.instructor.sandbox import ChildFailedError, LimitExceededError, run_limited

MODEL_ACCURACIES = "cifar_lab.instructor.claims:model_accuracies"
__all__ = ["ChildFailedError", "LimitExceededError", "Limits", "SubmissionTimeoutError"]


@dataclass(frozen=True)
class Limits:
    """Ceilings for grading one submission.

    Attributes:
        model_memory_bytes: resident memory of the model-scoring child (all its processes).
        model_seconds: wall time of the model-scoring child.
        submission_seconds: wall time for reading, checking and scoring one
            submission (the re-execution has its own ``--total-timeout``).
    """

    model_memory_bytes: int = 4096 * MEGABYTE
    model_seconds: float = 120.0
    submission_seconds: float = 300.0

    def __post_init__(self) -> None:
        check_int("model_memory_bytes", self.model_memory_bytes, minimum=MEGABYTE)
        for name in ("model_seconds", "submission_seconds"):
            check_number(name, getattr(self, name), minimum=0, minimum_inclusive=False)


class SubmissionTimeoutError(LimitExceededError):
    """One submission used up its ``submission_seconds``."""


@dataclass
class Budget:
    """The limits and deadline of the submission being graded; peaks of its children (bytes)."""

    limits: Limits
    deadline: float
    child_peaks: list[int] = field(default_factory=list)

    def seconds_left(self) -> float:
        """Seconds until the deadline (negative once it has passed)."""
        return self.deadline - time.monotonic()

    @classmethod
    def unlimited(cls) -> Budget:
        """Default limits and no deadline: for work done outside a batch."""
        return cls(Limits(), float("inf"))


def _can_alarm() -> bool:
    main = threading.current_thread() is threading.main_thread()
    return main and hasattr(signal, "SIGALRM")


@contextlib.contextmanager
def submission_budget(limits: Limits) -> Iterator[Budget]:
    """Grade one submission within ``limits.submission_seconds``.

    Args:
        limits: the ceilings of this submission.

    Yields:
        Its :class:`Budget` (read ``child_peaks`` afterwards).

    Raises:
        SubmissionTimeoutError: inside the block, when the time is up (main thread
            only; elsewhere the scoring child still gets only the time left).
    """
    budget = Budget(limits, time.monotonic() + limits.submission_seconds)

    def on_alarm(signum: int, frame: Any) -> None:
        limit = f"{limits.submission_seconds:g} s"
        raise SubmissionTimeoutError(f"grading took longer than the {limit} per-submission limit")

    armed = _can_alarm()
    previous = signal.signal(signal.SIGALRM, on_alarm) if armed else None
    try:
        if armed:
            signal.setitimer(signal.ITIMER_REAL, limits.submission_seconds)
        yield budget
    finally:
        if armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def suspended_budget(budget: Budget | None) -> Iterator[None]:
    """Stop the per-submission clock inside the block (the re-execution has its own timeouts).

    Args:
        budget: the submission's budget (None: no clock runs, nothing to stop).
    """
    if budget is None:
        yield
        return
    armed = _can_alarm()
    if armed:
        signal.setitimer(signal.ITIMER_REAL, 0)
    started = time.monotonic()
    try:
        yield
    finally:
        budget.deadline += time.monotonic() - started
        if armed:
            signal.setitimer(signal.ITIMER_REAL, max(budget.seconds_left(), 0.001))


def score_model_sets(
    path: Path,
    sets: dict[str, tuple[np.ndarray, np.ndarray]],
    max_bytes: int,
    budget: Budget | None = None,
) -> dict[str, float]:
    """The model's accuracy on several labelled image sets, in one limited child.

    One child loads the model once and scores every set (TensorFlow's start-up
    is paid once), under the current submission's limits.

    Args:
        path: the submitted ``.keras`` file (untrusted).
        sets: {name: (raw pixels uint8 (N, 32, 32, 3), int labels (N,))}, each N >= 1.
        max_bytes: largest accepted unpacked size of the archive.
        budget: the submission's budget, whose limits apply and whose time is left
            (None: default limits, no deadline); the child's peak memory is added to it.

    Returns:
        {name: accuracy in [0, 1]}.

    Raises:
        LimitExceededError: the memory or time ceiling was passed (the message names the flag).
        SubmissionTimeoutError: the per-submission time ran out first.
        ChildFailedError: the model could not be loaded or evaluated.
    """
    names = list(sets)
    images = np.concatenate([sets[name][0] for name in names])
    labels = np.concatenate([np.asarray(sets[name][1]) for name in names])
    groups = np.repeat(np.arange(len(names)), [len(sets[name][1]) for name in names])
    kwargs = {"path": path, "images": images, "labels": labels, "groups": groups,
              "max_bytes": max_bytes}  # fmt: skip
    budget = budget if budget is not None else Budget.unlimited()
    limits, left = budget.limits, budget.seconds_left()
    if left <= 0:
        raise SubmissionTimeoutError("no time was left in the per-submission limit to score it")
    seconds = min(limits.model_seconds, left)
    memory = limits.model_memory_bytes
    try:
        result = run_limited(
            MODEL_ACCURACIES, kwargs, memory_bytes=memory, seconds=seconds, what="scoring it"
        )
    except SubmissionTimeoutError:
        raise
    except ChildFailedError as error:
        budget.child_peaks.append(error.peak_bytes)
        raise
    except LimitExceededError as error:
        budget.child_peaks.append(error.peak_bytes)
        if "memory" in str(error):
            raise LimitExceededError(f"{error} (--model-memory-mb)") from None
        if seconds < limits.model_seconds:
            limit = f"{limits.submission_seconds:g} s per-submission limit"
            raise SubmissionTimeoutError(f"scoring it used up the {limit}") from None
        raise LimitExceededError(f"{error} (--model-seconds)") from None
    budget.child_peaks.append(result.peak_bytes)
    return {name: float(value) for name, value in zip(names, result.value, strict=True)}
