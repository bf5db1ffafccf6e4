"""cifar_lab: a TensorFlow 2 / Keras 3 course on CIFAR-10, in five notebooks.

Use it as ``import cifar_lab as lab``. Names are imported on first use, so
loading data does not pay TensorFlow's start-up time and memory (~0.7 GB).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from typing import TYPE_CHECKING

# TensorFlow's C++ log lines would otherwise reach notebooks and CI logs. Level 3 keeps
# FATAL only: it also hides "failed call to cuInit" (ERROR) on machines without a GPU
# driver; real failures still raise Python exceptions. Set the variable to override.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# absl prints a few lines ("oneDNN custom operations are on", "Could not find cuda
# drivers") to file descriptor 2 while TensorFlow loads, before it reads that level, so
# the first `import tensorflow` (or keras) after `import cifar_lab` passes stderr through
# a filter that drops the lines below the level (severity I=0, W=1, E=2, F=3).
_TF_LOG_LINE = re.compile(
    r"^(?:(?P<severity>[IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called)"
)


@contextlib.contextmanager
def _tensorflow_log_filter():
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")
    level = int(level) if level.isdigit() else 0
    with tempfile.TemporaryFile() as capture:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(capture.fileno(), 2)
        except (OSError, ValueError, AttributeError):  # no file descriptor 2: nothing to filter
            yield
            return
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = []
            for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True):
                match = _TF_LOG_LINE.match(line)
                severity = match and ("IWEF".index(match["severity"]) if match["severity"] else 0)
                if match is None or severity >= level:
                    kept.append(line)
            if kept:
                os.write(2, "".join(kept).encode("utf-8"))


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Runs the first import of ``tensorflow`` inside :func:`_tensorflow_log_filter`."""

    searching = False

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow" or self.searching:
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

        class QuietLoader(importlib.abc.Loader):
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                module.__spec__.loader = module.__loader__ = loader
                with contextlib.suppress(ValueError):
                    sys.meta_path.remove(finder)  # TensorFlow loads once
                with _tensorflow_log_filter():
                    loader.exec_module(module)

        spec.loader = QuietLoader()
        return spec


if "tensorflow" not in sys.modules:
    sys.meta_path.insert(0, _QuietTensorFlowImport())

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "CLASS_NAMES": "data.formats",
    "CorruptSourceError": "data.formats",
    "CIFAR10NotFoundError": "data.sources",
    "CIFAR10Splits": "data.splits",
    "load_cifar10": "data.splits",
    "Dataset": "data.batching",
    "set_seed": "seeding",
    # Parts II-IV: barebones TensorFlow, Keras models, training loops
    "flatten": "barebones",
    "two_layer_fc": "barebones",
    "kaiming_normal": "barebones",
    "check_accuracy": "barebones_training",
    "train_part2": "barebones_training",
    "TwoLayerFC": "models",
    "two_layer_sequential": "models",
    "two_layer_functional": "models",
    "classification_loss": "models",
    "train_part34": "training",
    "evaluate": "training",
    "Evaluation": "training",
    "compile_model": "models",
    "History": "history",
    "TrainingDivergedError": "history",
    "default_device": "devices",
    "resolve_device": "devices",
    # course support: profiles, results, pictures, metrics
    "Profile": "profiles",
    "get_profile": "profiles",
    "load_profile_data": "profiles",
    "record": "results",
    "check_at_least": "results",
    "check_that": "results",
    "check_close": "results",
    "accuracy": "metrics",
    "confusion_matrix": "metrics",
    "show_class_samples": "plots",
    "plot_history": "plots",
    "plot_confusion_matrix": "plots",
    "show_misclassified": "plots",
    # Part V: configurable dense networks, sweeps, ensembles, the reference recipe
    "MLPConfig": "tuning.config",
    "build_mlp": "tuning.network",
    "build_optimizer": "tuning.optimizers",
    "build_schedule": "tuning.optimizers",
    "compile_mlp": "tuning.optimizers",
    "train_config": "tuning.train",
    "TrainedMLP": "tuning.train",
    "MLPObjective": "tuning.train",
    "augment_batch": "tuning.augment",
    "fit_whitening": "tuning.whitening",
    "WhiteningFit": "tuning.whitening",
    "Maxout": "tuning.layers",
    "raw_pixel_model": "tuning.layers",
    "convolution_layers": "tuning.layers",
    "SweepSpec": "tuning.sweeps",
    "open_study": "tuning.sweeps",
    "run_sweep": "tuning.sweeps",
    "run_worker": "tuning.sweeps",
    "run_workers": "tuning.sweeps",
    "results_frame": "tuning.plots",
    "plot_accuracy_heatmap": "tuning.plots",
    "plot_top_curves": "tuning.plots",
    "plot_optimizer_batchnorm": "tuning.plots",
    "average_probabilities": "tuning.ensembles",
    "predict_probabilities": "tuning.ensembles",
    "train_ensemble": "tuning.ensembles",
    "RECIPES": "tuning.recipes",
    "train_best": "tuning.recipes",
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
    from cifar_lab.barebones import flatten, kaiming_normal, two_layer_fc
    from cifar_lab.barebones_training import check_accuracy, train_part2
    from cifar_lab.data.batching import Dataset
    from cifar_lab.data.formats import CLASS_NAMES, CorruptSourceError
    from cifar_lab.data.sources import CIFAR10NotFoundError
    from cifar_lab.data.splits import CIFAR10Splits, load_cifar10
    from cifar_lab.devices import default_device, resolve_device
    from cifar_lab.history import History, TrainingDivergedError
    from cifar_lab.metrics import accuracy, confusion_matrix
    from cifar_lab.models import (
        TwoLayerFC,
        classification_loss,
        compile_model,
        two_layer_functional,
        two_layer_sequential,
    )
    from cifar_lab.plots import (
        plot_confusion_matrix,
        plot_history,
        show_class_samples,
        show_misclassified,
    )
    from cifar_lab.profiles import Profile, get_profile, load_profile_data
    from cifar_lab.results import check_at_least, check_close, check_that, record
    from cifar_lab.seeding import set_seed
    from cifar_lab.training import Evaluation, evaluate, train_part34
    from cifar_lab.tuning.augment import augment_batch
    from cifar_lab.tuning.config import MLPConfig
    from cifar_lab.tuning.ensembles import (
        average_probabilities,
        predict_probabilities,
        train_ensemble,
    )
    from cifar_lab.tuning.layers import Maxout, convolution_layers, raw_pixel_model
    from cifar_lab.tuning.network import build_mlp
    from cifar_lab.tuning.optimizers import build_optimizer, build_schedule, compile_mlp
    from cifar_lab.tuning.plots import (
        plot_accuracy_heatmap,
        plot_optimizer_batchnorm,
        plot_top_curves,
        results_frame,
    )
    from cifar_lab.tuning.recipes import RECIPES, train_best
    from cifar_lab.tuning.sweeps import SweepSpec, open_study, run_sweep, run_worker, run_workers
    from cifar_lab.tuning.train import MLPObjective, TrainedMLP, train_config
    from cifar_lab.tuning.whitening import WhiteningFit, fit_whitening
