"""CSV cells a spreadsheet shows as text: every CSV the grader writes goes through here.

Student names, answers and problems are student-controlled text. A cell that
starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return) is run
as a formula by Excel, LibreOffice and Google Sheets when the CSV is opened
(CSV injection). As OWASP advises, such a text cell is written with a single
quote in front (``'=1+2``), which spreadsheets show as text. A text cell that
already starts with a quote gets one more, so that :func:`cell_value` undoes
:func:`spreadsheet_cell` exactly and reading a CSV back gives the original text.

Only text is escaped: an ``int`` or ``float`` cell (a negative total, say) is
written as the number it is, since a spreadsheet reads a number as a number,
never as a formula.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"


def spreadsheet_cell(value: Any) -> Any:
    """The value as a CSV cell: text a spreadsheet would run gets a leading ``'``.

    Args:
        value: any cell value; only ``str`` values are changed.

    Returns:
        ``value``, or ``"'" + value`` for text starting with a formula character or a quote.
    """
    if isinstance(value, str) and value[:1] in (*FORMULA_STARTS, QUOTE):
        return QUOTE + value
    return value


def cell_value(text: str) -> str:
    """Undo :func:`spreadsheet_cell` on a cell read back from a CSV this package wrote."""
    if text[:1] == QUOTE and text[1:2] in (*FORMULA_STARTS, QUOTE):
        return text[1:]
    return text


def write_csv_rows(handle, columns: list[str], rows: Iterable[dict], *, header: bool) -> None:
    """Write ``rows`` (column -> value) to an open text file, every cell escaped.

    Args:
        handle: a text file opened with ``newline=""``.
        columns: the columns, in order; a row may leave some out (written blank).
        rows: the rows; a key outside ``columns`` is an error (``ValueError``).
        header: write the column names first.
    """
    writer = csv.DictWriter(handle, fieldnames=columns, restval="", extrasaction="raise")
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow({key: spreadsheet_cell(value) for key, value in row.items()})


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV this package wrote, each cell as the text before escaping.

    Args:
        path: the CSV file (UTF-8, a header row first).

    Returns:
        One dict (column -> text) per row.
    """
    with open(path, newline="", encoding="utf-8") as handle:
        return [
            {key: cell_value(value or "") for key, value in row.items() if key is not None}
            for row in csv.DictReader(handle)
        ]
