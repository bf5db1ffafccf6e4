"""Reading JSON a student wrote: every way it can fail becomes a sentence, never a traceback.

Python's JSON parser refuses some inputs with exceptions that are not
``JSONDecodeError``: nesting deeper than the recursion limit (``RecursionError``)
and integers longer than ``sys.get_int_max_str_digits()`` (4,300 digits;
``ValueError``). Bytes that are not UTF-8 fail before parsing. Integers that do
parse may still be too large for a float (``OverflowError`` in ``float(x)``);
:func:`finite_number` answers False for them instead of raising.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any


def parse_json(data: bytes, name: str) -> tuple[Any, str | None]:
    """Parse untrusted JSON bytes.

    Args:
        data: the file's bytes.
        name: the file's name, for the message.

    Returns:
        (the parsed value, None), or (None, what is wrong with it in words).
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        where = f"byte 0x{data[error.start]:02x} at position {error.start}"
        return None, f"{name} is not UTF-8 text ({where}); save it again as UTF-8"
    try:
        return json.loads(text), None
    except RecursionError:
        depth = sys.getrecursionlimit()
        return None, f"{name} nests lists or objects too deeply to read (over ~{depth} levels)"
    except json.JSONDecodeError as error:
        return None, f"{name} is not valid JSON ({error})"
    except ValueError as error:  # int longer than the int-to-str digit limit
        if "digits" in str(error):
            limit = sys.get_int_max_str_digits()
            return None, f"{name} holds an integer with more than {limit} digits"
        return None, f"{name} is not valid JSON ({error})"
    except MemoryError:
        return None, f"{name} is too large to read"


def finite_number(value: Any) -> bool:
    """True for a finite int or float (not a bool); False for ints too large for a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # e.g. a 400-digit integer
        return False
