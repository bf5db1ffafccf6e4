"""Part V, tuning without convolutions: configs, networks, training, sweeps, recipes.

* :mod:`~cifar_lab.tuning.config`: :class:`MLPConfig`, every choice (no TensorFlow);
* :mod:`~cifar_lab.tuning.network`, :mod:`~cifar_lab.tuning.layers`: the Keras network;
* :mod:`~cifar_lab.tuning.augment`, :mod:`~cifar_lab.tuning.whitening`: the inputs;
* :mod:`~cifar_lab.tuning.optimizers`, :mod:`~cifar_lab.tuning.train`: compiling and training;
* :mod:`~cifar_lab.tuning.sweeps`, :mod:`~cifar_lab.tuning.sweep_setup`,
  :mod:`~cifar_lab.tuning.plots`: Optuna studies and their pictures;
* :mod:`~cifar_lab.tuning.ensembles`, :mod:`~cifar_lab.tuning.recipes`: ensembles and the
  named reference recipes; :mod:`~cifar_lab.tuning.cli`: ``train-best``;
* :mod:`~cifar_lab.tuning.stages`, :mod:`~cifar_lab.tuning.part5`: notebook 05's sweep
  stages with the student's builder, budgets, the sealed test split, saved outputs.

Imports the course library, never :mod:`cifar_lab.instructor`.
"""
