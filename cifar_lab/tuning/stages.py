"""Part V sweep stages of your own design: settings, an objective with your builder, runs.

* :func:`setting` / :func:`expand` -- several config fields in one grid value,
  e.g. an architecture together with the learning rate tuned for it;
* :class:`StageObjective` and :func:`run_stage` -- run a
  :class:`~cifar_lab.tuning.sweeps.SweepSpec` with your ``build(config) -> keras.Model``;
  finished trials are reused only when spec, base config, builder and data are unchanged;
* :func:`candidate_configs` -- every config a spec can train, for checks;
* :func:`top_configs` -- the best distinct settings of a results table.

Import them from this module (``from cifar_lab.tuning.stages import run_stage``);
``cifar_lab`` does not re-export them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import itertools
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

SETTING_PARAM = "setting"  # a grid parameter named so, or ending in "_setting", is expanded


def _text(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "-".join(str(v) for v in value) or "none"
    if isinstance(value, (bool, type(None))):
        return json.dumps(value)
    if isinstance(value, np.generic):
        value = value.item()
    text = str(value)
    if any(mark in text for mark in ",="):
        raise ValueError(f"a setting value may not contain ',' or '=': {value!r}")
    return text


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a name such as "gelu" or hidden sizes such as "1024-512"


def setting(**fields: Any) -> str:
    """Pack config fields into one grid value, e.g. ``"hidden_sizes=512, learning_rate=0.001"``.

    A grid crosses its parameters; a setting keeps fields together that belong
    together (an architecture and its tuned learning rate, an optimiser and its rate).
    """
    if not fields:
        raise ValueError("a setting needs at least one field, e.g. setting(activation='relu')")
    return ", ".join(f"{name}={_text(value)}" for name, value in fields.items())


def expand(params: Mapping[str, Any]) -> dict[str, Any]:
    """Trial parameters -> config fields: every ``*setting`` parameter is unpacked.

    Raises:
        ValueError: two parameters set the same field.
    """
    fields: dict[str, Any] = {}
    for name, value in params.items():
        is_setting = name == SETTING_PARAM or name.endswith("_" + SETTING_PARAM)
        if is_setting and not isinstance(value, str):
            raise ValueError(f"{name} must be a string from setting(...), got {value!r}")
        pairs = [part.split("=", 1) for part in value.split(", ")] if is_setting else [[name]]
        for pair in pairs:
            if is_setting and len(pair) != 2:
                raise ValueError(f"{name}={value!r} is not like 'activation=gelu, dropout=0.1'")
            if not is_setting:
                key, item = name, value
            else:  # hidden sizes stay text: "512" is one layer of 512, not a number
                key = pair[0]
                item = pair[1] if key == "hidden_sizes" else _value(pair[1])
            if key in fields:
                raise ValueError(f"{key!r} is set twice by the parameters {dict(params)}")
            fields[key] = item
    return fields


# ------------------------------------------------------------------ stages
class StageObjective:
    """Sweep objective: train ``base`` changed by a trial's (expanded) parameters.

    Like :class:`cifar_lab.tuning.train.MLPObjective`, with two additions: parameters named
    ``setting`` or ``*_setting`` are unpacked with :func:`expand`, and ``build``
    (your ``build(config) -> keras.Model``) builds every network.

    Args:
        base: the config every trial starts from (its budget: epochs, subset size).
        data: the :class:`~cifar_lab.data.splits.CIFAR10Splits`; trials use only train and
            validation.
        build: network builder, or None for :func:`cifar_lab.tuning.network.build_mlp`.
    """

    def __init__(self, base, data, *, build: Callable | None = None) -> None:
        from cifar_lab.tuning.train import MLPObjective

        self.objective = MLPObjective(
            base, data.X_train, data.y_train, data.X_val, data.y_val, build=build
        )
        self.base, self.build = base, build

    def __call__(self, trial: Any, params: dict[str, Any]) -> float:
        return self.objective(trial, expand(params))

    def config(self, params: Mapping[str, Any]):
        """The config a trial with these parameters trains."""
        return self.base.replace(**expand(params))

    def fingerprint(self) -> str:
        """Hash of what a trial's result depends on besides its parameters."""
        X_train, y_train, X_val, y_val = self.objective.data
        step = max(1, len(X_train) // 64)
        parts = [
            json.dumps(self.base.to_dict(), sort_keys=True), _source(self.build),
            str((X_train.shape, X_val.shape)), y_train.tobytes(), y_val.tobytes(),
            X_train[::step].tobytes(),
        ]  # fmt: skip
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part if isinstance(part, bytes) else part.encode())
        return digest.hexdigest()


def candidate_configs(spec, base) -> list:
    """Every config a spec can train from ``base``, for checking a search's design.

    A grid gives its points; a sampled space gives the product of its choices,
    a numeric range standing for its two ends.

    Args:
        spec: a :class:`cifar_lab.tuning.sweeps.SweepSpec` of config fields and settings.
        base: the :class:`cifar_lab.tuning.config.MLPConfig` its trials start from.

    Returns:
        A list of :class:`cifar_lab.tuning.config.MLPConfig`.
    """
    if spec.sampler == "grid":
        points = spec.grid
    else:
        choices = {
            name: [values.low, values.high] if hasattr(values, "low")
            else list(getattr(values, "choices", values))
            for name, values in spec.space.items()
        }  # fmt: skip
        combos = itertools.product(*choices.values())
        points = [dict(zip(choices, combo, strict=True)) for combo in combos]
    return [base.replace(**expand(point)) for point in points]


def _source(function: Callable | None) -> str:
    if function is None:
        return "build_mlp"
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        code = function.__code__
        return repr((code.co_code, code.co_consts, code.co_names))


def run_stage(spec, objective: StageObjective, *, verbose: bool = True):
    """Run a sweep with ``objective`` and return its results, best first.

    The study is stored as ``runs/<spec.name>-<hash>.db``; the hash covers the
    spec, the base config, the builder's source and the data, so a rerun reuses
    finished trials only when nothing they depend on changed.

    Args:
        spec: a :class:`cifar_lab.tuning.sweeps.SweepSpec` whose parameters are config
            fields or settings.
        objective: a :class:`StageObjective`.
        verbose: one line per trial.

    Returns:
        :func:`cifar_lab.tuning.plots.results_frame` of the study (config fields as columns).
    """
    from cifar_lab.tuning.plots import results_frame
    from cifar_lab.tuning.sweeps import run_sweep

    if not isinstance(objective, StageObjective):
        raise TypeError(f"objective must be a StageObjective, got {objective!r}")
    candidate_configs(spec, objective.base)  # a typo fails now, not after an hour of trials
    what = repr((spec.name, dict(spec.space), spec.sampler, spec.n_trials, spec.pruner,
                 spec.warmup_steps, spec.startup_trials, spec.seed))  # fmt: skip
    digest = hashlib.sha256((what + objective.fingerprint()).encode()).hexdigest()[:10]
    named = dataclasses.replace(spec, name=f"{spec.name}-{digest}")
    with _quiet():
        study = run_sweep(named, objective, verbose=verbose)
    return results_frame(study)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No Optuna "using an existing study" line, no TensorFlow retracing warnings.

    Every trial builds and fits a new model, so TensorFlow's advice against
    retracing in a loop does not apply; the trial lines say what happens.
    """
    import optuna
    import tensorflow as tf

    logger, verbosity = tf.get_logger(), optuna.logging.get_verbosity()
    level = logger.level
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)
        logger.setLevel(level)


def top_configs(frame, columns: list[str], count: int) -> list[dict[str, Any]]:
    """The ``count`` best distinct settings of ``columns`` in a sweep's results.

    Args:
        frame: a DataFrame from :func:`cifar_lab.tuning.plots.results_frame` (any order).
        columns: the fields that define a setting, e.g. ``["hidden_sizes", "activation"]``.
        count: how many settings to return.

    Returns:
        Dicts of column -> value, best validation accuracy first.
    """
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"results have no columns {missing}; available: {list(frame.columns)}")
    ranked = frame.sort_values("val_accuracy", ascending=False).drop_duplicates(columns)
    return [{c: _plain(row[c]) for c in columns} for _, row in ranked.head(count).iterrows()]


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
