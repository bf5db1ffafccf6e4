"""The course's reference solutions, taken from the instructor notebooks themselves.

The library holds no exercise's answer (``lab.two_layer_fc_init`` and friends
are gone), so tests that need a working answer run the notebook's own cells:
:func:`notebook_definitions` executes the code cells that define the given
functions or classes, solution regions included, in notebook order, into one
namespace that has ``np``, ``tf``, ``keras`` and ``lab`` like the notebooks.
"""

from __future__ import annotations

import functools
import re
from types import MappingProxyType

import nbformat
import numpy as np

from cifar_lab.instructor.notebooks import course_notebooks

_DEFINITION = re.compile(r"^(?:def|class)\s+(\w+)", re.MULTILINE)


@functools.cache
def notebook_definitions(stem: str, *names: str) -> MappingProxyType:
    """Execute the cells of notebook ``stem`` that define ``names``; return the namespace.

    Args:
        stem: a course notebook's file stem, e.g. ``"02_barebones_tensorflow"``.
        names: top-level functions or classes to define; the cells that define
            them run in notebook order (list a helper such as ``flatten`` too).

    Returns:
        A read-only view of the namespace, with every name defined.
    """
    import keras
    import tensorflow as tf

    import cifar_lab as lab

    path = next(p for p in course_notebooks() if p.stem == stem)
    namespace: dict = {"np": np, "tf": tf, "keras": keras, "lab": lab}
    for cell in nbformat.read(path, as_version=4).cells:
        defined = set(_DEFINITION.findall(cell.source)) if cell.cell_type == "code" else set()
        if defined & set(names):
            exec(compile(cell.source, f"<{stem}>", "exec"), namespace)
    missing = [name for name in names if name not in namespace]
    assert not missing, f"{stem} no longer defines {missing}"
    return MappingProxyType(namespace)


def barebones(*names: str) -> MappingProxyType:
    """Notebook 02's definitions of ``names`` (with ``flatten``, which its networks use)."""
    return notebook_definitions("02_barebones_tensorflow", "flatten", *names)
