"""Trials release what they held (issue #11): no model, traced graph or data outlives a trial.

TensorFlow kept every trained Keras model's train step graph (with the model's
variables) and its data generator (with the trial's training subset) for the
whole process, through the custom gradients it registers while tracing. These
tests count live objects after each trial; RSS is measured in
``benchmarks/memory_profile.py``, not here.
"""

from __future__ import annotations

import gc
import weakref

import keras
import numpy as np
import optuna
import pytest
from tensorflow.python.framework import func_graph

from cifar_lab.graph_memory import forget_traced_gradients, traced_gradient_count
from cifar_lab.tuning import train as train_module
from cifar_lab.tuning.augment import AugmentedBatches
from cifar_lab.tuning.config import MLPConfig
from cifar_lab.tuning.sweeps import SweepSpec, run_sweep
from cifar_lab.tuning.train import MLPObjective, TrainedMLP, train_config


def _data(train: int = 96, val: int = 32):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(train + val, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, train + val).astype(np.int32)
    return X[:train].copy(), y[:train], X[train:].copy(), y[train:]


TINY = MLPConfig(hidden_sizes=(8,), epochs=1, batch_size=16, num_train=64)


def _live(kind) -> list:
    gc.collect()
    return [obj for obj in gc.get_objects() if isinstance(obj, kind)]


def _count(kind) -> int:
    return len(_live(kind))  # an int, so a failure prints a number, not the objects


class _Tracked:
    """Weak references to every model and training subset train_config makes."""

    def __init__(self, monkeypatch):
        self.models: list[weakref.ref] = []
        self.subsets: list[weakref.ref] = []
        build, tracker = train_module.build_mlp, self

        def build_mlp(*args, **kwargs):
            model = build(*args, **kwargs)
            tracker.models.append(weakref.ref(model))
            return model

        class Batches(AugmentedBatches):
            def __init__(self, X, *args, **kwargs):
                super().__init__(X, *args, **kwargs)
                tracker.subsets.append(weakref.ref(X))

        monkeypatch.setattr(train_module, "build_mlp", build_mlp)
        monkeypatch.setattr(train_module, "AugmentedBatches", Batches)

    def alive(self) -> tuple[int, int]:
        gc.collect()
        return (
            sum(ref() is not None for ref in self.models),
            sum(ref() is not None for ref in self.subsets),
        )


def test_sweep_trials_leave_no_model_graph_or_data_behind(monkeypatch):
    tracked = _Tracked(monkeypatch)
    X_train, y_train, X_val, y_val = _data()
    objective = MLPObjective(TINY, X_train, y_train, X_val, y_val)
    spec = SweepSpec(
        "memory", {"hidden_sizes": ["8", "16"], "activation": ["relu", "elu"]}, pruner="none"
    )
    keras.backend.clear_session()
    graphs_before, gradients_before = _count(func_graph.FuncGraph), traced_gradient_count()
    others_before = _count(TrainedMLP), _count(AugmentedBatches)  # earlier tests' leftovers
    run_sweep(spec, objective, storage=optuna.storages.InMemoryStorage(), verbose=False)
    assert len(tracked.models) == 4 and len(tracked.subsets) == 4
    assert tracked.alive() == (0, 0)  # every model and 64-image training subset freed
    assert _count(func_graph.FuncGraph) == graphs_before  # no traced train step kept
    assert traced_gradient_count() == gradients_before  # the root cause (issue #11)
    trained_after, batches_after = _count(TrainedMLP), _count(AugmentedBatches)
    assert trained_after <= others_before[0] and batches_after <= others_before[1]


def test_each_trial_releases_before_the_next_starts(monkeypatch):
    tracked = _Tracked(monkeypatch)
    X_train, y_train, X_val, y_val = _data()
    objective = MLPObjective(TINY, X_train, y_train, X_val, y_val)
    keras.backend.clear_session()
    graphs_before, gradients_before = _count(func_graph.FuncGraph), traced_gradient_count()
    study = optuna.create_study(direction="maximize")
    for activation in ("relu", "gelu", "elu"):
        trial = study.ask()
        study.tell(trial, objective(trial, {"activation": activation}))
        assert tracked.alive() == (0, 0), activation
        assert _count(func_graph.FuncGraph) == graphs_before, activation
        assert traced_gradient_count() == gradients_before, activation
    assert len(tracked.models) == 3


def test_train_config_frees_its_data_even_without_clear_session(monkeypatch):
    # Ensembles and notebook cells call train_config without clear_session().
    tracked = _Tracked(monkeypatch)
    X_train, y_train, X_val, y_val = _data()
    graphs_before, gradients_before = _count(func_graph.FuncGraph), traced_gradient_count()
    trained = train_config(TINY, X_train, y_train, X_val, y_val, verbose=False)
    assert tracked.alive() == (1, 0)  # the model is returned; its training subset is not kept
    assert traced_gradient_count() == gradients_before
    assert all(len(batches.X) == 0 for batches in _live(AugmentedBatches))
    del trained
    assert tracked.alive() == (0, 0)
    assert _count(func_graph.FuncGraph) == graphs_before  # its train step went with it


def test_a_trial_stopped_mid_fit_releases_too(monkeypatch):
    # Pruning raises optuna.TrialPruned from the epoch hook, inside model.fit.
    tracked = _Tracked(monkeypatch)
    X_train, y_train, X_val, y_val = _data()
    gradients_before = traced_gradient_count()

    def prune(record):
        raise optuna.TrialPruned("pruned")

    with pytest.raises(optuna.TrialPruned):
        train_config(TINY, X_train, y_train, X_val, y_val, verbose=False, on_epoch_end=prune)
    keras.backend.clear_session()
    assert tracked.alive() == (0, 0)
    assert traced_gradient_count() == gradients_before


def test_forget_traced_gradients_keeps_earlier_entries():
    registry = _registry()
    registry["CustomGradient-earlier-test"] = {"type": None, "location": None}
    try:
        with forget_traced_gradients():
            registry["CustomGradient-inside-test"] = {"type": None, "location": None}
            registry["NotACustomGradient-test"] = {"type": None, "location": None}
        assert "CustomGradient-inside-test" not in registry
        assert "CustomGradient-earlier-test" in registry  # not ours to drop
        assert "NotACustomGradient-test" in registry  # only custom gradients are dropped
    finally:
        for name in ("CustomGradient-earlier-test", "NotACustomGradient-test"):
            registry.pop(name, None)


def _registry() -> dict:
    from tensorflow.python.framework import ops

    return ops._gradient_registry._registry
