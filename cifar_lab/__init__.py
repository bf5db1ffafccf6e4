"""cifar_lab: a TensorFlow 2 / Keras 3 course on CIFAR-10, in five notebooks.

Use it as ``import cifar_lab as lab``. Names are imported on first use, so
loading data does not pay TensorFlow's start-up time and memory (~0.7 GB).
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

# TensorFlow's C++ INFO/WARNING lines would otherwise flood notebooks and CI logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "CLASS_NAMES": "formats",
    "CorruptSourceError": "formats",
    "CIFAR10NotFoundError": "sources",
    "CIFAR10Splits": "data",
    "load_cifar10": "data",
    "Dataset": "batching",
    "set_seed": "seeding",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cifar_lab' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"cifar_lab.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:  # let editors and type checkers see the lazy names
    from cifar_lab.batching import Dataset
    from cifar_lab.data import CIFAR10Splits, load_cifar10
    from cifar_lab.formats import CLASS_NAMES, CorruptSourceError
    from cifar_lab.seeding import set_seed
    from cifar_lab.sources import CIFAR10NotFoundError
