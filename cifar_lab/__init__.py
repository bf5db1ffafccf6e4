"""cifar_lab: a TensorFlow 2 / Keras 3 course on CIFAR-10, in five notebooks.

Use it as ``import cifar_lab as lab``. ``lab`` holds the names the notebooks use;
everything else is imported from its module (``cifar_lab.models``,
``cifar_lab.tuning.sweeps``, ...). Names are imported on first use, so loading data
does not pay TensorFlow's start-up time and memory (~0.7 GB).
"""

from __future__ import annotations

import warnings as _warnings
from importlib import import_module
from typing import TYPE_CHECKING

from cifar_lab.graph_memory import install as _install_fit_release
from cifar_lab.quiet_tensorflow import install as _install_quiet_tensorflow

_install_quiet_tensorflow()
# Optuna imports tqdm.auto, which warns "IProgress not found" on stderr where ipywidgets is
# not installed (a student's plain install); no course code shows a tqdm bar in a notebook,
# and notebook 05 imports optuna itself (see cifar_lab.tuning for the same filter)
_warnings.filterwarnings("ignore", message="IProgress not found")
_install_fit_release()  # every model.fit lets its model and data go (a TensorFlow leak)

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
    # Part V (notebook 05): the layer check, Optuna studies, the test split, saving
    "convolution_layers": "tuning.layers",
    "create_study": "tuning.studies",
    "plot_study": "tuning.plots",
    "TestSplit": "tuning.part5",
    "weights_fingerprint": "tuning.part5",
    "save_final_model": "tuning.part5",
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
    from cifar_lab.tuning.layers import convolution_layers
    from cifar_lab.tuning.part5 import TestSplit, save_final_model, weights_fingerprint
    from cifar_lab.tuning.plots import plot_study
    from cifar_lab.tuning.studies import create_study
