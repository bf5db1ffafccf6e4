"""Argument checks shared by the whole package: one rule, one message style.

The rule: a value of the wrong *type* raises ``TypeError`` (a bool, a float or
a str where an int belongs; a non-number where a number belongs); a value of
the right type but the wrong *value* raises ``ValueError`` (negative, zero,
out of range, NaN or infinite, not one of the choices). Every message names
the argument, quotes the value and says what would be accepted, e.g.
``num_epochs must be an int, got 2.0 (float); write 2``.

NumPy integer scalars count as ints and NumPy floating scalars as numbers;
bools never count as either, although Python treats ``True`` as ``1``,
because a bool where a count belongs is almost always a misplaced argument.
Free of TensorFlow, so the data layer and the configs stay cheap to import.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from typing import Any

import numpy as np

_BOOLS = (bool, np.bool_)


def check_int(
    name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Return ``value`` as a Python int, or raise if it is not an int within the bounds.

    Args:
        name: the argument's name, quoted in the error.
        value: the value to check; ``int`` or a NumPy integer, never a bool.
        minimum: smallest allowed value (inclusive), or None.
        maximum: largest allowed value (inclusive), or None.

    Returns:
        ``int(value)``.

    Raises:
        TypeError: ``value`` is not an int (a bool, a float, a str, ...).
        ValueError: ``value`` is outside ``[minimum, maximum]``.
    """
    if isinstance(value, _BOOLS) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {_describe(value)}{_int_hint(value)}")
    _check_bounds(name, int(value), minimum, maximum, True, True)
    return int(value)


def check_optional_int(
    name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    """Like :func:`check_int`, but None passes through (for "None means all/default").

    Args:
        name: the argument's name, quoted in the error.
        value: None, or an int checked as by :func:`check_int`.
        minimum: smallest allowed value (inclusive), or None.
        maximum: largest allowed value (inclusive), or None.

    Returns:
        None, or ``int(value)``.
    """
    if value is None:
        return None
    try:
        return check_int(name, value, minimum=minimum, maximum=maximum)
    except TypeError as error:  # say that None was an option too
        raise TypeError(
            str(error).replace(" must be an int,", " must be an int or None,")
        ) from None


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    minimum_inclusive: bool = True,
    maximum_inclusive: bool = True,
) -> float:
    """Return ``value`` as a Python float, or raise if it is not a finite number in range.

    Args:
        name: the argument's name, quoted in the error.
        value: an int, a float or a NumPy number; never a bool.
        minimum: lower bound, or None.
        maximum: upper bound, or None.
        minimum_inclusive: whether ``value == minimum`` is allowed (False: ``> minimum``).
        maximum_inclusive: whether ``value == maximum`` is allowed (False: ``< maximum``).

    Returns:
        ``float(value)``.

    Raises:
        TypeError: ``value`` is not a real number (a bool, a str, None, ...).
        ValueError: ``value`` is NaN, infinite, or outside the bounds.
    """
    if isinstance(value, _BOOLS) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {_describe(value)}")
    plain = (
        value.item() if isinstance(value, np.generic) else value
    )  # repr 0.5, not np.float32(0.5)
    if not math.isfinite(plain):
        raise ValueError(f"{name} must be a finite number, got {plain!r}")
    _check_bounds(name, plain, minimum, maximum, minimum_inclusive, maximum_inclusive)
    return float(plain)


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` as a Python bool, or raise TypeError if it is not True or False.

    Args:
        name: the argument's name, quoted in the error.
        value: ``True``, ``False`` or a NumPy bool (not 0/1, not a string).

    Returns:
        ``bool(value)``.
    """
    if not isinstance(value, _BOOLS):
        raise TypeError(f"{name} must be True or False, got {_describe(value)}")
    return bool(value)


def check_bool_or_auto(name: str, value: Any) -> bool | str:
    """Return ``value`` if it is True, False or ``"auto"`` (e.g. Keras' ``jit_compile``).

    Args:
        name: the argument's name, quoted in the error.
        value: ``True``, ``False`` or ``"auto"``.

    Returns:
        ``value`` as a Python bool, or ``"auto"``.

    Raises:
        TypeError: ``value`` is neither a bool nor a str.
        ValueError: ``value`` is a str other than ``"auto"``.
    """
    if isinstance(value, str):
        return check_choice(name, value, ("auto",))
    if not isinstance(value, _BOOLS):
        raise TypeError(f"{name} must be True, False or 'auto', got {_describe(value)}")
    return bool(value)


def check_choice(name: str, value: Any, choices: Collection[str]) -> str:
    """Return ``value`` if it is one of the string ``choices``, else raise.

    Args:
        name: the argument's name, quoted in the error.
        value: the chosen name.
        choices: the allowed names.

    Returns:
        ``value``, unchanged.

    Raises:
        TypeError: ``value`` is not a str.
        ValueError: ``value`` is a str but not one of ``choices``.
    """
    allowed = ", ".join(repr(choice) for choice in choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {allowed}; got {_describe(value)}")
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose from {allowed}")
    return value


def check_seed(name: str, value: Any) -> int:
    """Return a random seed as a Python int: a non-negative int.

    Args:
        name: the argument's name, quoted in the error (usually ``"seed"``).
        value: the seed.

    Returns:
        ``int(value)``.

    Raises:
        TypeError: ``value`` is not an int.
        ValueError: ``value`` is negative.
    """
    return check_int(name, value, minimum=0)


def _check_bounds(
    name: str, value, minimum, maximum, minimum_inclusive: bool, maximum_inclusive: bool
) -> None:
    """Raise ValueError, stating every bound, when ``value`` lies outside them."""
    too_low = minimum is not None and (value < minimum if minimum_inclusive else value <= minimum)
    too_high = maximum is not None and (value > maximum if maximum_inclusive else value >= maximum)
    if too_low or too_high:
        bounds = []
        if minimum is not None:
            bounds.append(f"{'>=' if minimum_inclusive else '>'} {minimum}")
        if maximum is not None:
            bounds.append(f"{'<=' if maximum_inclusive else '<'} {maximum}")
        raise ValueError(f"{name} must be {' and '.join(bounds)}, got {value!r}")


def _describe(value: Any) -> str:
    """``2.0 (float)``: the value and its type, so ``"3"`` and ``3`` read differently."""
    text = repr(value.item() if isinstance(value, np.generic) else value)
    if len(text) > 60:  # an array or a long list: the type says enough
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _int_hint(value: Any) -> str:
    """The fix for the commonest slip, a whole float such as ``2.0`` or ``1e3``."""
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and value == int(value):
        return f"; write {int(value)}"
    if isinstance(value, str):
        try:
            return f"; write {int(value)} without quotes"
        except ValueError:  # not a number written as text: no hint beats a wrong one
            return ""
    return ""


def check_pattern(name: str, value: Any, pattern: re.Pattern[str], description: str) -> str:
    """Return ``value`` if it is a str that ``pattern`` matches in full, else raise.

    Args:
        name: the argument's name, quoted in the error.
        value: the text to check.
        pattern: a compiled regular expression the whole text must match.
        description: what ``pattern`` accepts, in words, for the error.

    Returns:
        ``value``, unchanged.

    Raises:
        TypeError: ``value`` is not a str.
        ValueError: ``value`` does not match ``pattern``.
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str ({description}), got {_describe(value)}")
    if not pattern.fullmatch(value):
        raise ValueError(f"{name} {value[:80]!r} is not valid: use {description}")
    return value
