"""Machine-readable results and checks that notebooks emit.

Notebook cells call :func:`record` for the numbers a run should be judged by
and :func:`check_at_least` for the course's promises. Both print a line for
people and attach a JSON payload under a custom MIME type, so the main job and
the grader read results from the executed notebook without scraping text.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from cifar_lab.profiles import get_profile

RESULT_MIME = "application/vnd.cifar-lab.result+json"
CHECK_MIME = "application/vnd.cifar-lab.check+json"


def _emit(text: str, mime: str, payload: dict[str, Any]) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # plain Python without IPython installed
        print(text)
        return
    if get_ipython() is None:
        print(text)
        return
    display({"text/plain": text, mime: payload}, raw=True)


def record(name: str, value: float, *, key: bool = False) -> None:
    """Publish a named result, e.g. a validation accuracy.

    Returns nothing, so a cell ending in ``lab.record(...)`` shows only the
    printed line, not a stray echo of the value. The payload also names the
    profile the notebook runs in (:func:`cifar_lab.profiles.get_profile`, as the
    notebook's own ``lab.get_profile()``), so the grader can tell quick work
    from full.

    Args:
        name: short identifier such as ``"val_accuracy"``.
        value: a finite number; a whole number given as an int (a count of
            images) is printed as one, any other value with four decimals.
        key: mark it as the notebook's headline number (shown in summaries).
    """
    if not isinstance(name, str):
        raise TypeError(f"result name must be a non-empty string, got {name!r}")
    if not name:
        raise ValueError("result name must be a non-empty string, got ''")
    # a count (int or NumPy integer, not bool) prints as 5000, not 5000.0000
    whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"result {name!r} must be finite, got {value}")
    payload = {"name": name, "value": value, "key": key, "profile": get_profile().name}
    shown = f"{int(value)}" if whole else f"{value:.4f}"
    _emit(f"result {name} = {shown}", RESULT_MIME, payload)


def check_at_least(value: float, minimum: float, *, what: str, hint: str) -> None:
    """Assert a promise such as "above 40% validation accuracy", with a helpful hint.

    Args:
        value: the measured number (e.g. accuracy in 0..1).
        minimum: the promised lower bound.
        what: what was measured, in words.
        hint: what to look at if the promise is broken.

    Raises:
        AssertionError: ``value < minimum``; the message carries ``hint``.
    """
    passed = bool(value >= minimum)
    verdict = "passed" if passed else "FAILED"
    _emit(
        f"check {verdict}: {what}: {value:.4f} (need >= {minimum:.4f})",
        CHECK_MIME,
        {"what": what, "value": float(value), "minimum": float(minimum), "passed": passed},
    )
    if not passed:
        raise AssertionError(
            f"{what}: got {value:.1%}, expected at least {minimum:.1%}.\nHint: {hint}"
        )


def check_that(condition: bool, *, what: str, hint: str, detail: str = "") -> None:
    """Assert one property of a student's code, with a hint written for that exercise.

    The check cells of the notebooks compute their own expected values (NumPy,
    first principles) and call this (or :func:`check_close`) so that a wrong
    answer stops the notebook with a message that says what to look at.

    Args:
        condition: whether the property holds.
        what: the property in words, e.g. ``"w1 has shape (3072, 4000)"``.
        hint: what to look at if it does not hold.
        detail: what was found instead (shown when the check fails).

    Raises:
        AssertionError: ``condition`` is false; the message carries ``detail`` and ``hint``.
    """
    passed = bool(condition)
    verdict = "passed" if passed else "FAILED"
    _emit(f"check {verdict}: {what}", CHECK_MIME, {"what": what, "passed": passed})
    if not passed:
        found = f" ({detail})" if detail else ""
        raise AssertionError(f"{what}: not so{found}.\nHint: {hint}")


def check_close(
    actual: Any,
    expected: Any,
    *,
    what: str,
    hint: str,
    rtol: float = 1e-5,
    atol: float = 1e-6,
) -> None:
    """Assert that an array (or number) equals a reference in shape and value.

    Args:
        actual: the student's result; a NumPy array, a tensor (anything
            ``np.asarray`` accepts) or a number.
        expected: the reference the check computed itself, same shape.
        what: what is compared, in words.
        hint: what to look at if they differ.
        rtol, atol: tolerances of ``np.allclose``.

    Raises:
        AssertionError: the shapes differ, or some value is off by more than
            ``atol + rtol * |expected|``.
    """
    import numpy as np

    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        detail = f"shape {actual.shape}, expected {expected.shape}"
        check_that(False, what=what, hint=hint, detail=detail)
    error = np.abs(actual - expected)
    worst = float(np.max(error / (atol + rtol * np.abs(expected)))) if error.size else 0.0
    detail = f"largest difference {float(np.max(error)) if error.size else 0.0:.3g}"
    check_that(
        bool(np.all(np.isfinite(actual))) and worst <= 1, what=what, hint=hint, detail=detail
    )


def read_outputs(notebook) -> dict[str, list[dict[str, Any]]]:
    """Collect the result and check payloads from an executed notebook.

    Args:
        notebook: an ``nbformat`` notebook node (or the same structure as dicts).

    Returns:
        ``{"results": [...], "checks": [...]}``, each payload with its cell index.
    """
    found: dict[str, list[dict[str, Any]]] = {"results": [], "checks": []}
    for index, cell in enumerate(notebook.get("cells", [])):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            data = output.get("data", {}) if isinstance(output, dict) else {}
            for mime, bucket in ((RESULT_MIME, "results"), (CHECK_MIME, "checks")):
                if isinstance(data.get(mime), dict):
                    found[bucket].append({**data[mime], "cell": index})
    return found
