"""Hostile submission files, small on disk and expensive to grade (issue 14's bomb batch).

Shared by ``tests/test_grading_limits.py`` and ``benchmarks/grading_bombs.py``.
Each builder writes one file (or returns bytes) and is cheap to build.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

from cifar_lab.results import RESULT_MIME


def conv_stack_model(path: Path, layers: int = 400, filters: int = 4) -> Path:
    """A ``.keras`` of ``layers`` built-in Conv2D layers (400 x 4 filters: ~1.7 MB on disk)."""
    import keras

    return _save_pooled(
        [keras.layers.Conv2D(filters, 3, padding="same") for _ in range(layers)], path
    )


def balloon_model(path: Path, doublings: int = 12) -> Path:
    """A ~150 KB ``.keras`` of dense-network layers whose activations balloon.

    Each ``Concatenate`` doubles the features (no weights), so an image becomes
    3072 * 2**doublings floats (50 MB at 12) before ``Reshape`` and a max pool
    (Part V's maxout construction) bring it back to 3072 for the ``Dense`` head.
    Every layer is on Part V's allow-list: only the memory ceiling stops it.
    """
    import keras

    inputs = keras.Input((32, 32, 3))
    features = keras.layers.Flatten()(inputs)
    for _ in range(doublings):
        features = keras.layers.Concatenate()([features, features])
    grouped = keras.layers.Reshape((3072, 2**doublings))(features)
    pooled = keras.layers.GlobalMaxPooling1D(data_format="channels_first")(grouped)
    keras.Model(inputs, keras.layers.Dense(10)(pooled)).save(path)
    return path


def _save_pooled(middle: list, path: Path) -> Path:
    """Save ``Input(32, 32, 3) -> middle -> GlobalAveragePooling2D -> Dense(10)`` to ``path``."""
    import keras

    head = [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)]
    keras.Sequential([keras.Input((32, 32, 3)), *middle, *head]).save(path)
    return path


def config_bomb_model(path: Path, base: Path, padding_bytes: int = 400 << 20) -> Path:
    """``base`` (a .keras file) whose ``config.json`` gains ``padding_bytes`` of trailing spaces.

    Still valid JSON; it compresses about 1000:1, so the file stays small on disk.
    """
    chunk = b" " * (1 << 20)
    with zipfile.ZipFile(base) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for member in source.infolist():
            if member.filename != "config.json":
                out.writestr(member.filename, source.read(member))
                continue
            with out.open("config.json", "w", force_zip64=True) as config:
                config.write(source.read(member))
                for _ in range(padding_bytes // len(chunk)):
                    config.write(chunk)
    return path


def many_cells(notebook: dict, cells: int = 300_000) -> dict:
    """The notebook with ``cells`` empty markdown cells (unique ids) appended."""
    extra = [
        {"cell_type": "markdown", "id": f"z{i:05x}", "metadata": {}, "source": ""}
        for i in range(cells)
    ]
    return {**notebook, "cells": notebook["cells"] + extra}


def write_compact(path: Path, notebook: dict) -> int:
    """Write JSON without spaces; return the file's size in bytes."""
    path.write_text(json.dumps(notebook, separators=(",", ":")), encoding="utf-8")
    return path.stat().st_size


def deep_json(depth: int = 200_000) -> bytes:
    """A JSON array nested ``depth`` levels deep."""
    return b"[" * depth + b"]" * depth


def huge_int(digits: int = 5000) -> str:
    """The text of a ``digits``-digit integer (Python refuses to parse more than 4,300)."""
    return "9" * digits


def add_raw_record(path: Path, name: str, raw_value: str) -> None:
    """Append a ``lab.record`` payload whose value is the raw JSON text ``raw_value``."""
    marker = '"@@VALUE@@"'
    notebook = json.loads(path.read_text(encoding="utf-8"))
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    payload = {"name": name, "value": "@@VALUE@@", "key": False}
    data = {"text/plain": f"result {name}", RESULT_MIME: payload}
    code[-1]["outputs"].append({"output_type": "display_data", "metadata": {}, "data": data})
    path.write_text(json.dumps(notebook).replace(marker, raw_value), encoding="utf-8")


def latin1_notebook(path: Path) -> None:
    """Re-save a notebook as Latin-1 with an accented word in it (not UTF-8 any more)."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    notebook["cells"][0]["source"] = "@@ACCENTED@@"
    text = json.dumps(notebook).encode("ascii")  # everything else stays escaped ASCII
    path.write_bytes(text.replace(b"@@ACCENTED@@", "Réponse: café".encode("latin-1")))


def replace_model(root: Path, model: Path) -> None:
    """Put ``model`` in place of the submission's ``part5/best_model.keras``."""
    shutil.copyfile(model, root / "part5" / "best_model.keras")
