"""The report on disk, written row by row so that a crash or a kill loses no finished row.

Each row is appended to ``report.csv`` (flushed and ``fsync``-ed) as soon as it
is final, then ``report.json`` (every row so far) is rewritten atomically: a
temporary file, ``fsync``, ``os.replace``. ``report.json`` is therefore always
complete, valid JSON, and it is what ``grade --resume`` reads: students already
in it are skipped, and ``report.csv`` is rewritten from it (dropping a CSV row
whose JSON write a kill interrupted; that student is graded again).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from pathlib import Path
from typing import Any


def _csv_text(rows: list[dict], columns: list[str], *, header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", extrasaction="raise")
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow({**row, "problems": "; ".join(row.get("problems", []))})
    return buffer.getvalue()


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file, fsync, rename)."""
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "w", encoding="utf-8", errors="backslashreplace", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    with contextlib.suppress(OSError):  # make the rename itself durable
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def read_rows(json_path: Path) -> list[dict[str, Any]]:
    """The rows of an existing ``report.json``.

    Raises:
        ValueError: the file is not a report this tool wrote (the message names it).
    """
    try:
        rows = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot resume from {json_path}: {error}") from error
    if not isinstance(rows, list) or not all(
        isinstance(row, dict) and isinstance(row.get("student"), str) for row in rows
    ):
        raise ValueError(f"cannot resume from {json_path}: it is not a list of report rows")
    return rows


class ReportFile:
    """``report.csv`` and ``report.json``, one row added at a time.

    Args:
        out: the CSV path; the JSON goes next to it (``.json``).
        columns: the CSV columns, in order.
        resume: keep the rows already in ``report.json`` (else start empty).
    """

    def __init__(self, out: Path, columns: list[str], *, resume: bool = False) -> None:
        self.csv_path = Path(out)
        self.json_path = self.csv_path.with_suffix(".json")
        self.columns = list(columns)
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        resumable = resume and self.json_path.is_file()
        self.rows: list[dict[str, Any]] = read_rows(self.json_path) if resumable else []
        _replace(self.csv_path, _csv_text(self.rows, self.columns, header=True))
        self._write_json()

    @property
    def students(self) -> set[str]:
        """Students that already have a row."""
        return {row["student"] for row in self.rows}

    def add(self, row: dict[str, Any]) -> None:
        """Append one final row to both files, durably, before returning."""
        self.extend([row])

    def extend(self, rows: list[dict[str, Any]]) -> None:
        """Append final rows to both files, durably, before returning."""
        text = _csv_text(rows, self.columns, header=False)  # raises before writing on bad keys
        with open(
            self.csv_path, "a", encoding="utf-8", errors="backslashreplace", newline=""
        ) as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        self.rows.extend(rows)
        self._write_json()

    def _write_json(self) -> None:
        _replace(self.json_path, json.dumps(self.rows, indent=1) + "\n")
