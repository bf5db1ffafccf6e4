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
    "two_layer_fc_init": "barebones",
    "three_layer_fc": "barebones",
    "three_layer_fc_init": "barebones",
    "kaiming_normal": "barebones",
    "training_step": "barebones_training",
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
    from cifar_lab.barebones import (
        flatten,
        kaiming_normal,
        three_layer_fc,
        three_layer_fc_init,
        two_layer_fc,
        two_layer_fc_init,
    )
    from cifar_lab.barebones_training import check_accuracy, train_part2, training_step
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
