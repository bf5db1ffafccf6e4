"""Run code around a module's first import, without importing it: the one import hook.

``import cifar_lab`` must stay light (no TensorFlow start-up), yet two things have to
happen when TensorFlow or Keras is loaded later: TensorFlow's start-up log is filtered
while it loads (:mod:`cifar_lab.quiet_tensorflow`) and ``keras.Model.fit`` is wrapped
once Keras is there (:mod:`cifar_lab.graph_memory`). :func:`on_first_import` puts a
finder first on ``sys.meta_path`` that hands the real loader's work through ``around``
and runs ``after``; it removes itself, so later imports cost nothing.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager


class _FirstImport(importlib.abc.MetaPathFinder):
    """Finds ``name`` through the other finders and wraps its loader (see the module)."""

    def __init__(self, name: str, around, after) -> None:
        self.name, self.around, self.after = name, around, after
        self.searching = False

    def find_spec(self, name, path=None, target=None):
        if name != self.name or self.searching:
            return None
        self.searching = True  # let the other finders find the real spec
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.searching = False
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        finder = self

        class WrappingLoader(importlib.abc.Loader):
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                module.__spec__.loader = module.__loader__ = loader
                with contextlib.suppress(ValueError):
                    sys.meta_path.remove(finder)  # a module loads once
                with finder.around():
                    loader.exec_module(module)
                finder.after()

        spec.loader = WrappingLoader()
        return spec


def on_first_import(
    name: str,
    *,
    after: Callable[[], None],
    around: Callable[[], AbstractContextManager] = contextlib.nullcontext,
) -> None:
    """Run ``after()`` once module ``name`` is imported (now, if it already is).

    Args:
        name: a top-level module name, e.g. ``"keras"``.
        after: called once the module has loaded.
        around: a context manager factory the module's loading runs inside (not used
            when the module is already loaded).
    """
    if name in sys.modules:
        after()
        return
    waiting = [f for f in sys.meta_path if isinstance(f, _FirstImport) and f.name == name]
    if not waiting:
        sys.meta_path.insert(0, _FirstImport(name, around, after))
