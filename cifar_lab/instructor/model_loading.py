"""The one way a submitted ``.keras`` model is loaded, by ``grade`` and by ``submit`` alike.

:func:`load_submitted_model` loads with Keras safe mode (which refuses to
deserialise code such as ``Lambda`` layers) and with the course library's own
registered layer classes (``cifar_lab>Maxout``, ``cifar_lab>HorizontalFlip``,
... everything :data:`LAYER_MODULES` registers with
``keras.saving.register_keras_serializable``), and only those. Before Keras
sees the file, :func:`check_model_config` reads its ``config.json`` and
refuses any class that is neither a built-in Keras object nor one of the
library's: a custom class the grader happens to have registered, a
function looked up by a registered name, a Python lambda. Keras would
otherwise resolve a registered name before it looks at the module.

TensorFlow is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import importlib
import json
import zipfile
from pathlib import Path
from typing import Any

from cifar_lab.instructor.findings import MEGABYTE, Finding, megabytes

# Every module of the package that registers Keras classes (tests/test_model_loading.py
# checks this list against the source, so a new registered layer cannot be forgotten).
LAYER_MODULES = ("cifar_lab.tuning.layers",)
LIBRARY_PACKAGE = "cifar_lab"
MAX_CONFIG_BYTES = 16 * MEGABYTE  # a Part V model's config.json is a few tens of KB
# Keras' serialised values that are data, not classes (serialization_lib handles each itself).
_DATA_CLASSES = {
    "__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__ellipsis__", "__slice__",
}  # fmt: skip


class UnsafeModelError(ValueError):
    """A submitted model names a class or function outside Keras and the course library."""


def library_objects() -> dict[str, type]:
    """The course library's registered Keras classes, by registered name.

    Returns:
        ``{"cifar_lab>Maxout": Maxout, ...}``: every class registered under the
        package ``cifar_lab`` by a module of the package itself.
    """
    import keras

    for module in LAYER_MODULES:
        importlib.import_module(module)
    return {
        name: obj
        for name, obj in keras.saving.get_custom_objects().items()
        if name.startswith(f"{LIBRARY_PACKAGE}>")
        and getattr(obj, "__module__", "").startswith(f"{LIBRARY_PACKAGE}.")
    }


def _is_keras_module(module: Any) -> bool:
    return module == "keras" or (isinstance(module, str) and module.startswith("keras."))


def _refusal(entry: dict, allowed: set[str]) -> str | None:
    """Why one serialised object must not be deserialised, or None."""
    class_name = entry.get("class_name")
    if class_name in _DATA_CLASSES:
        return None
    if class_name == "__lambda__":
        return "a Python lambda (code)"
    module, registered = entry.get("module"), entry.get("registered_name")
    names = [registered] if isinstance(registered, str) else []
    if class_name == "function" and isinstance(entry.get("config"), str):
        names.append(entry["config"])  # functions are looked up by this name
    unknown = [name for name in names if ">" in name and name not in allowed]
    if unknown:
        return f"the registered object {unknown[0]!r}"
    builtin = _is_keras_module(module) or (module == "builtins" and class_name == "function")
    if builtin or registered in allowed:
        return None
    return f"the class {module}.{class_name}"


def check_model_config(config: Any, allowed: set[str]) -> None:
    """Refuse a model config naming anything outside Keras and the course library.

    Args:
        config: the parsed ``config.json`` of a ``.keras`` file.
        allowed: registered names accepted besides Keras' built-ins.

    Raises:
        UnsafeModelError: naming the first object refused.
    """
    pending = [config]
    while pending:  # iterative: a deeply nested config cannot exhaust the stack
        value = pending.pop()
        if isinstance(value, dict):
            if "class_name" in value and "config" in value:
                reason = _refusal(value, allowed)
                if reason:
                    raise UnsafeModelError(
                        f"the model uses {reason}, which is neither a built-in Keras layer "
                        "nor one of the course library's layers (cifar_lab>...); safe "
                        "loading refuses it. Build the model from keras.layers and "
                        "cifar_lab layers only, without Lambda layers."
                    )
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)


def read_model_config(path: Path, max_bytes: int) -> Any:
    """Read ``config.json`` from a ``.keras`` archive, refusing oversized archives first.

    Args:
        path: the ``.keras`` file (a zip).
        max_bytes: the largest accepted unpacked size of the whole archive.

    Returns:
        The parsed config.
    """
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        unpacked = sum(member.file_size for member in members)
        if unpacked > max_bytes:
            raise ValueError(f"it unpacks to {megabytes(unpacked)}, over {megabytes(max_bytes)}")
        info = next((m for m in members if m.filename == "config.json"), None)
        if info is None:
            raise ValueError("it holds no config.json; save it with model.save('....keras')")
        if info.file_size > MAX_CONFIG_BYTES:
            size, limit = megabytes(info.file_size), megabytes(MAX_CONFIG_BYTES)
            raise ValueError(f"its config.json is {size}, over {limit}")
        return json.loads(archive.read(info).decode("utf-8"))


def load_submitted_model(path: str | Path, *, max_bytes: int = 512 * MEGABYTE):
    """Load a submitted ``.keras`` model exactly as the grader does.

    Args:
        path: the ``.keras`` file (untrusted).
        max_bytes: the largest accepted unpacked size of the archive.

    Returns:
        The uncompiled Keras model.

    Raises:
        UnsafeModelError: it names a class outside Keras and the course library.
        ValueError, TypeError, OSError: it is oversized, damaged or cannot be built.
    """
    import keras

    allowed = library_objects()
    check_model_config(read_model_config(Path(path), max_bytes), set(allowed))
    return keras.models.load_model(path, safe_mode=True, compile=False, custom_objects=allowed)


def model_finding(path: Path, *, max_bytes: int = 512 * MEGABYTE) -> Finding | None:
    """Load a Part V model as the grader will and check it maps raw images to (N, 10).

    ``submit`` calls this, so a model the grader cannot load is refused before
    it is handed in, with the fix.

    Args:
        path: ``part5/best_model.keras``.
        max_bytes: the largest accepted unpacked size (the grader's default).

    Returns:
        A ``flagged`` finding naming the problem and the fix, or None when it loads.
    """
    import numpy as np

    try:
        model = load_submitted_model(path, max_bytes=max_bytes)
        scores = np.asarray(model(np.zeros((2, 32, 32, 3), np.float32), training=False))
        if scores.shape != (2, 10):
            raise ValueError(f"it maps 2 raw images to shape {scores.shape}, not (2, 10)")
    except Exception as error:  # the student's file: every failure is a finding, not a crash
        reason = f"{type(error).__name__}: {str(error).split('. ')[0][:300]}"
        unsafe = isinstance(error, UnsafeModelError)
        fix = (
            "build the network from keras.layers and cifar_lab's layers only (no Lambda, "
            "no classes of your own), then re-run final_training"
            if unsafe
            else "re-run final_training in 05_tuning, which saves the raw-pixel model with "
            "lab.save_final_model(lab.raw_pixel_model(...), ...)"
        )
        message = f"{path.name} cannot be loaded the way the grader loads it ({reason})"
        return Finding("flagged", "part5", message, fix)
    return None
