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

Part V asks for a fully connected network, so :func:`refused_layers` also reads
every layer the config names, nested models included, and refuses any layer
outside :data:`DENSE_NETWORK_LAYERS`: no convolution, attention, locally
connected or recurrent layer can be handed in (the refusal names the layer).
The list holds what honest models contain: ``Dense``, activations, dropout
and noise, batch / layer normalisation, ``Normalization`` and ``Rescaling`` for
raw pixels, ``Flatten`` / ``Reshape`` / ``Permute``, the course's built-in-only
constructions (maxout is ``Reshape`` + ``GlobalMaxPooling1D``, the mirror of flip
test-time augmentation is ``Cropping2D`` columns + ``Concatenate``, averaged with
``Average``), ``Add`` / ``Maximum`` for residual and maxout-like dense blocks, and
the augmentation layers that do nothing at inference (``RandomFlip``,
``RandomTranslation``).

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


# Part V's dense networks may name these Keras layers and nothing else (see the docstring).
DENSE_NETWORK_LAYERS = frozenset({
    "InputLayer", "Dense", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
    "Dropout", "AlphaDropout", "GaussianDropout", "GaussianNoise", "BatchNormalization",
    "LayerNormalization", "Normalization", "Rescaling", "Identity", "Flatten", "Reshape",
    "Permute", "Cropping2D", "Concatenate", "Average", "Add", "Maximum", "GlobalMaxPooling1D",
    "RandomFlip", "RandomTranslation",
})  # fmt: skip
MODEL_CLASSES = frozenset({"Functional", "Sequential", "Model"})  # nested models: looked inside


class UnsafeModelError(ValueError):
    """A submitted model names a class or function outside Keras and the course library."""


class ForbiddenLayerError(ValueError):
    """A submitted Part V model uses a layer outside the dense-network allow-list."""


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


def _keras_layer_class(class_name: Any) -> type | None:
    """The Keras layer class a config's ``class_name`` resolves to (aliases too), or None."""
    import keras

    if not isinstance(class_name, str) or not class_name.isidentifier():
        return None
    found = getattr(keras.layers, class_name, None)
    if isinstance(found, type) and issubclass(found, keras.layers.Layer):
        return found
    return None


def refused_layers(config: Any) -> list[str]:
    """Every layer of a model config outside :data:`DENSE_NETWORK_LAYERS`, nested models included.

    An entry counts as a layer when its ``class_name`` is a Keras layer class (an
    alias such as ``Convolution2D`` resolves to ``Conv2D``) or its module is one of
    Keras' layer or model modules; so neither another module nor an alias hides a
    convolution.

    Args:
        config: the parsed ``config.json`` of a ``.keras`` file.

    Returns:
        ``"Conv2D (layer 'conv2d')"``-style descriptions, in the order found; empty
        for a dense network.
    """
    import keras

    allowed = {getattr(keras.layers, name) for name in DENSE_NETWORK_LAYERS}
    refused, pending = [], [config]
    while pending:  # iterative: a deeply nested config cannot exhaust the stack
        value = pending.pop()
        if isinstance(value, dict):
            class_name, module = value.get("class_name"), value.get("module")
            if "config" in value and class_name not in MODEL_CLASSES:
                layer = _keras_layer_class(class_name)
                in_layers = isinstance(module, str) and (
                    ".layers" in module or module.startswith(("keras.models", "keras.src.models"))
                )
                if (layer is not None and layer not in allowed) or (layer is None and in_layers):
                    inner = value["config"] if isinstance(value["config"], dict) else {}
                    shown = layer.__name__ if layer is not None else str(class_name)[:60]
                    refused.append(f"{shown} (layer {str(inner.get('name'))[:60]!r})")
            pending.extend(reversed(list(value.values())))
        elif isinstance(value, list):
            pending.extend(reversed(value))
    return refused


def check_dense_network(config: Any) -> None:
    """Refuse a Part V model config that uses a layer outside the dense-network allow-list.

    Args:
        config: the parsed ``config.json`` of a ``.keras`` file.

    Raises:
        ForbiddenLayerError: naming the first refused layer and how many there are.
    """
    refused = refused_layers(config)
    if refused:
        more = f" and {len(refused) - 1} more" if len(refused) > 1 else ""
        raise ForbiddenLayerError(
            f"the model uses {refused[0]}{more}, a layer Part V does not allow: it asks "
            "for a fully connected network (no convolution, attention, locally connected "
            "or recurrent layers)"
        )


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
        ForbiddenLayerError: it uses a layer outside :data:`DENSE_NETWORK_LAYERS`.
        ValueError, TypeError, OSError: it is oversized, damaged or cannot be built.
    """
    import keras

    allowed = library_objects()
    config = read_model_config(Path(path), max_bytes)
    check_model_config(config, set(allowed))
    check_dense_network(config)
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
            "Part V is fully connected networks only: build the network from Dense layers, "
            "activations, dropout and normalisation (no Conv*, attention or recurrent layers)"
            if isinstance(error, ForbiddenLayerError)
            else "build the network from keras.layers and cifar_lab's layers only (no Lambda, "
            "no classes of your own), then re-run final_training"
            if unsafe
            else "re-run final_training in 05_tuning: wrap the network in a keras.Sequential "
            "with keras.layers.Normalization(mean=data.mean, variance=data.std**2) before it and "
            "keras.layers.Softmax() after it, and save that with lab.save_final_model(...)"
        )
        message = f"{path.name} cannot be loaded the way the grader loads it ({reason})"
        return Finding("flagged", "part5", message, fix)
    return None
