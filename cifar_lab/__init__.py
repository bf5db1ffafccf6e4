"""cifar_lab: a TensorFlow 2 / Keras 3 course on CIFAR-10, in five notebooks.

Use it as ``import cifar_lab as lab``. ``lab`` holds the names the notebooks use;
everything else is imported from its module (``cifar_lab.models``,
``cifar_lab.tuning.sweeps``, ...). Names are imported on first use, so loading data
does not pay TensorFlow's start-up time and memory (~0.7 GB).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from cifar_lab.quiet_tensorflow import install as _install_quiet_tensorflow

_install_quiet_tensorflow()

__version__ = "0.1.0"

# public name -> module that defines it; tests/test_package.py checks that the
# TYPE_CHECKING block below imports exactly these names from these modules
_EXPORTS = {
    # Parts I-IV: data, seeding, barebones TensorFlow, Keras models, training loops
    "Dataset": "data.batching",
    "load_cifar10": "data.splits",
    "set_seed": "seeding",
    "flatten": "barebones",
    "two_layer_fc": "barebones",
    "kaiming_normal": "barebones",
    "train_part2": "barebones_training",
    "two_layer_functional": "models",
    "classification_loss": "models",
    "train_part34": "training",
    "default_device": "devices",
    # course support: profiles, results, pictures, metrics
    "get_profile": "profiles",
    "load_profile_data": "profiles",
    "record": "results",
    "check_at_least": "results",
    "check_that": "results",
    "check_close": "results",
    "accuracy": "metrics",
    "show_class_samples": "plots",
    "plot_history": "plots",
    "plot_confusion_matrix": "plots",
    "show_misclassified": "plots",
    "show_templates": "plots",
    # Part V (notebook 05): configs, networks, sweeps, ensembles, the ladder, saving
    "MLPConfig": "tuning.config",
    "train_config": "tuning.train",
    "TrainedMLP": "tuning.train",
    "Maxout": "tuning.layers",
    "raw_pixel_model": "tuning.layers",
    "convolution_layers": "tuning.layers",
    "SweepSpec": "tuning.sweeps",
    "plot_accuracy_heatmap": "tuning.plots",
    "plot_top_curves": "tuning.plots",
    "plot_optimizer_batchnorm": "tuning.plots",
    "average_probabilities": "tuning.ensembles",
    "predict_probabilities": "tuning.ensembles",
    "train_ensemble": "tuning.ensembles",
    "RECIPES": "tuning.recipes",
    "StageObjective": "tuning.stages",
    "candidate_configs": "tuning.stages",
    "expand": "tuning.stages",
    "run_stage": "tuning.stages",
    "setting": "tuning.stages",
    "top_configs": "tuning.stages",
    "part5_budget": "tuning.part5",
    "rung": "tuning.part5",
    "hidden_units_identical": "tuning.part5",
    "weights_fingerprint": "tuning.part5",
    "TestSplit": "tuning.part5",
    "save_final_model": "tuning.part5",
    "PART5_DIR": "tuning.part5",
    "RESULTS_FILE": "tuning.part5",
    "MODEL_FILE": "tuning.part5",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cifar_lab' has no attribute {name!r}")
    value = getattr(import_module(f"cifar_lab.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return list(__all__)  # what a student may use, not this module's own imports


if TYPE_CHECKING:  # let editors and type checkers see the lazy names
    from cifar_lab.barebones import flatten, kaiming_normal, two_layer_fc
    from cifar_lab.barebones_training import train_part2
    from cifar_lab.data.batching import Dataset
    from cifar_lab.data.splits import load_cifar10
    from cifar_lab.devices import default_device
    from cifar_lab.metrics import accuracy
    from cifar_lab.models import classification_loss, two_layer_functional
    from cifar_lab.plots import (
        plot_confusion_matrix,
        plot_history,
        show_class_samples,
        show_misclassified,
        show_templates,
    )
    from cifar_lab.profiles import get_profile, load_profile_data
    from cifar_lab.results import check_at_least, check_close, check_that, record
    from cifar_lab.seeding import set_seed
    from cifar_lab.training import train_part34
    from cifar_lab.tuning.config import MLPConfig
    from cifar_lab.tuning.ensembles import (
        average_probabilities,
        predict_probabilities,
        train_ensemble,
    )
    from cifar_lab.tuning.layers import Maxout, convolution_layers, raw_pixel_model
    from cifar_lab.tuning.part5 import (
        MODEL_FILE,
        PART5_DIR,
        RESULTS_FILE,
        TestSplit,
        hidden_units_identical,
        part5_budget,
        rung,
        save_final_model,
        weights_fingerprint,
    )
    from cifar_lab.tuning.plots import (
        plot_accuracy_heatmap,
        plot_optimizer_batchnorm,
        plot_top_curves,
    )
    from cifar_lab.tuning.recipes import RECIPES
    from cifar_lab.tuning.stages import (
        StageObjective,
        candidate_configs,
        expand,
        run_stage,
        setting,
        top_configs,
    )
    from cifar_lab.tuning.sweeps import SweepSpec
    from cifar_lab.tuning.train import TrainedMLP, train_config
