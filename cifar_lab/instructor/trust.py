"""What a check payload in a handed-in notebook proves, recomputed, never read as written.

A check payload is JSON in the notebook's outputs (see :mod:`cifar_lab.results`),
which a student can edit like any other text. Its ``passed`` field is therefore
never taken on trust:

* ``lab.check_at_least`` payloads carry ``value`` and ``minimum``: the check
  passes only when ``value >= minimum`` is recomputed here, the claimed
  ``passed`` agrees, and ``minimum`` is no lower than the lowest promise any
  profile makes (a lowered threshold is a doctored output);
* ``lab.check_that`` / ``lab.check_close`` payloads carry only ``what`` and
  ``passed`` (the comparison happened inside the kernel): ``passed`` must be
  the JSON value ``true``. Only ``grade --rerun`` can verify these further.

Imports neither inspection nor grading, so :mod:`~cifar_lab.instructor.inspection`
can use it.
"""

from __future__ import annotations

from typing import Any

from cifar_lab.instructor.untrusted import finite_number
from cifar_lab.profiles import PROFILES

# the lowest accuracy promise of any profile: a check_at_least minimum below it is doctored
TRUSTED_MINIMUM = min(min(p.min_val_accuracy, p.min_fit_accuracy) for p in PROFILES.values())
VERDICTS = ("passed", "failed", "forged")


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, or None (bools, strings, huge ints, NaN)."""
    return float(value) if finite_number(value) else None


def check_verdict(payload: Any) -> tuple[str, str]:
    """Recompute whether one check payload passed.

    Args:
        payload: the decoded JSON of one check output (any JSON value).

    Returns:
        (verdict, reason): verdict is ``"passed"``, ``"failed"`` (the check says
        it failed, or its numbers say so) or ``"forged"`` (it claims to pass but
        its own numbers contradict it, or the threshold was lowered); reason is
        "" for ``"passed"``, else one sentence.
    """
    if not isinstance(payload, dict):
        return "forged", "the check output is not a JSON object"
    claimed = payload.get("passed")
    what = str(payload.get("what", "?"))[:200]
    if "value" not in payload and "minimum" not in payload:
        if claimed is True:
            return "passed", ""
        return "failed", f"check failed: {what}"
    value, minimum = _finite(payload.get("value")), _finite(payload.get("minimum"))
    if value is None or minimum is None:
        return "forged", f"check '{what}' has no numeric value and minimum"
    if minimum < TRUSTED_MINIMUM:
        message = f"check '{what}' has minimum {minimum:.4f}, below every profile's promise"
        return "forged", f"{message} ({TRUSTED_MINIMUM:.2f}): the output was edited"
    if value < minimum:
        if claimed is True:
            message = f"check '{what}' claims to pass but {value:.4f} < minimum {minimum:.4f}"
            return "forged", message + ": the output was edited"
        return "failed", f"check failed: {what}: {value:.4f} < {minimum:.4f}"
    if claimed is not True:
        return "forged", f"check '{what}' says it failed although {value:.4f} >= {minimum:.4f}"
    return "passed", ""


def check_passed(payload: Any) -> bool:
    """True when :func:`check_verdict` recomputes a pass."""
    return check_verdict(payload)[0] == "passed"
