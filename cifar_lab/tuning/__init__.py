"""Part V, tuning without convolutions: configs, networks, training, sweeps, recipes.

* :mod:`~cifar_lab.tuning.config`: :class:`MLPConfig`, every choice (no TensorFlow);
* :mod:`~cifar_lab.tuning.network`, :mod:`~cifar_lab.tuning.layers`: the Keras network;
* :mod:`~cifar_lab.tuning.augment`, :mod:`~cifar_lab.tuning.whitening`: the inputs;
* :mod:`~cifar_lab.tuning.optimizers`, :mod:`~cifar_lab.tuning.train`: compiling and training;
* :mod:`~cifar_lab.tuning.sweeps`, :mod:`~cifar_lab.tuning.sweep_setup`,
  :mod:`~cifar_lab.tuning.plots`: Optuna studies and their pictures;
* :mod:`~cifar_lab.tuning.studies`: your own Optuna studies in notebook 05 (opening,
  reading, checking);
* :mod:`~cifar_lab.tuning.ensembles`, :mod:`~cifar_lab.tuning.distillation`,
  :mod:`~cifar_lab.tuning.recipes`: ensembles, distilling one into a single network, and
  the named reference recipes; :mod:`~cifar_lab.tuning.cli`: ``train-best``;
* :mod:`~cifar_lab.tuning.stages`, :mod:`~cifar_lab.tuning.part5`: notebook 05's sweep
  stages with the student's builder, budgets, the sealed test split, saved outputs.

Imports the course library, never :mod:`cifar_lab.instructor`.

Importing this package first imports ``tqdm.auto`` with one warning silenced. Optuna,
which the sweep modules import, imports it; in a Jupyter kernel without ipywidgets (a
plain ``pip install cifar_lab``) that import warns "IProgress not found" on stderr, and
nbgrader gives 0 to a graded cell that wrote to stderr. Nothing in the course shows a
tqdm bar (Optuna's is off unless asked for), so the warning says nothing a student needs.
"""

import contextlib
import warnings

# only around this import: later warnings are untouched. tqdm comes with Optuna; should
# a later Optuna go without it, there is nothing to silence.
with warnings.catch_warnings(), contextlib.suppress(ImportError):
    warnings.filterwarnings("ignore", message="IProgress not found")
    import tqdm.auto  # noqa: F401  (imported once; Optuna's import then finds it loaded)
