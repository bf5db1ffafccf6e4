"""Instructor tools: run the course, release it, check and grade submissions.

Read it in the order a submission travels:

* the course: :mod:`.notebooks` (find, clean and execute the five notebooks), :mod:`.points`
  (the points table and its nbgrader metadata), :mod:`.release` (student notebooks
  without solutions, and the manifest);
* :mod:`.findings`: what every stage reports (``Finding``, severities, units);
* a submission, stage by stage: :mod:`.submission` (zip or folder into a checked working
  copy) -> :mod:`.inspection` (each notebook read as JSON, never run; its profile;
  cells that patch the checks) -> :mod:`.scoring` (points per graded
  cell) -> :mod:`.claims` (Part V's claimed accuracy, recomputed from the saved model,
  loaded by :mod:`.model_loading`) -> :mod:`.report` (the row type; CSV, JSON,
  gradebook) and :mod:`.feedback` (one HTML page per student);
* beside it, by default (not under ``--trust-outputs``): :mod:`.rerun` re-executes the
  notebooks with :mod:`.verdicts` (probes, pristine checks) in :mod:`.sandbox`, and
  :mod:`.scoring` takes its points from that run; :mod:`.sandbox` also holds the per-submission
  time budget and scores a model in a child process under ceilings;
* :mod:`.grading`: the batch, one row per submission whatever happens;
* :mod:`.submission`: the student's ``submit`` check and zip; :mod:`.cli`: the
  ``release``, ``submit`` and ``grade`` commands.

May import the course library and :mod:`cifar_lab.tuning`; nothing imports it but the
command line.
"""
