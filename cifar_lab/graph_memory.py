"""Let a trained Keras model's memory go: the leak that made Part V sweeps grow (issue #11).

With TensorFlow 2.21 / Keras 3.15 every ``model.fit`` kept the trained weights
and optimiser state for the rest of the process, ``keras.backend.clear_session()``
and ``gc.collect()`` notwithstanding. Keras' TensorFlow optimiser all-reduces
the gradients, even on one device, through ``ReplicaContext.all_reduce``, a
``tf.custom_gradient``; traced inside the train step, ``tf.custom_gradient``
registers a gradient function under a fresh name (``CustomGradient-<n>``) in
TensorFlow's global gradient registry and never removes it
(tensorflow/tensorflow#97697, #80895). That function's closure holds tensors
of the traced train step, hence its graph, whose captures hold the model's
variables and optimiser slots, and whose outer graph holds every ``tf.data``
generator built in it (Keras feeds a ``PyDataset`` through
``Dataset.from_generator``), hence each trial's training subset. In
``benchmarks/memory_profile.py`` a 2048-1024-512 trial on 5,000 images left
170-220 MB behind, and 15 small trials 1.8 GB.

The registered function is only used while that train step is traced, so it
can go once ``fit`` returns: :func:`forget_traced_gradients` drops the names
registered inside its block. ``import cifar_lab`` runs :func:`install`, which
wraps ``keras.Model.fit`` in it when Keras is imported: a student's own
``model.fit`` in an Optuna search (notebook 05) then lets each trial's model
and data go as well. Without it the model answer of notebook 05 grew to
12 GB in the full profile.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

from cifar_lab.first_import import on_first_import

_PREFIX = "CustomGradient-"


def _gradient_registry() -> dict | None:
    """TensorFlow's name -> gradient function table, or None if this TF hides it."""
    from tensorflow.python.framework import ops

    return getattr(getattr(ops, "_gradient_registry", None), "_registry", None)


def traced_gradient_count() -> int:
    """How many ``tf.custom_gradient`` functions the registry holds (0 if unknown)."""
    registry = _gradient_registry()
    return 0 if registry is None else sum(name.startswith(_PREFIX) for name in list(registry))


@contextlib.contextmanager
def forget_traced_gradients() -> Iterator[None]:
    """Remove the custom gradients that functions traced inside the block registered.

    Wrap a ``model.fit`` (or any training that traces a train step) in it; on the
    way out, even after an exception such as ``optuna.TrialPruned``, the
    ``CustomGradient-<n>`` entries added meanwhile are removed, so the traced
    graphs, the model's variables and the training data can be freed with the
    model. Functions traced earlier keep working: their graphs already hold
    their gradients. Not for use while another thread traces a train step.
    """
    registry = _gradient_registry()
    before = set(registry) if registry is not None else set()
    try:
        yield
    finally:
        if registry is not None:
            for name in [n for n in list(registry) if n.startswith(_PREFIX) and n not in before]:
                registry.pop(name, None)


def release_after_fit() -> None:
    """Wrap ``keras.Model.fit`` in :func:`forget_traced_gradients` (once; Keras imported)."""
    import keras

    fit = keras.Model.fit
    if getattr(fit, "releases_traced_gradients", False):
        return

    @functools.wraps(fit)
    def fit_then_release(self, *args, **kwargs):
        with forget_traced_gradients():
            return fit(self, *args, **kwargs)

    fit_then_release.releases_traced_gradients = True
    keras.Model.fit = fit_then_release


def install() -> None:
    """Have every ``keras.Model.fit`` forget its traced gradients: now, or when Keras loads."""
    on_first_import("keras", after=release_after_fit)
