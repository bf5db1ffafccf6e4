"""Instructor tools: run the course, release it, check and grade submissions.

Read it in the order a submission travels:

* the course: :mod:`.notebooks` (find, clean and execute the five notebooks), :mod:`.points`
  (the points table and its nbgrader metadata), :mod:`.release` (student notebooks
  without solutions, and the manifest);
* :mod:`.findings`: what every stage reports (``Finding``, severities, units);
* a submission, stage by stage: :mod:`.submission` (the archive: the student's
  ``submit`` check and zip; the grader's checked working copy of a zip or folder) ->
  :mod:`.inspection` (each notebook's saved JSON, read, never run: structure, order,
  errors, the profile it ran in, cells that patch the checks) -> :mod:`.scoring`
  (points per graded cell) -> :mod:`.claims` (Part V's claimed accuracy, recomputed from
  the saved model, loaded by :mod:`.model_loading`; memorised test images caught) ->
  :mod:`.report` (what grading writes: the row type; CSV, JSON, gradebook, one feedback
  page per student, ``manual.csv`` and the hand-graded points read back);
* beside it, by default (not under ``--trust-outputs``): :mod:`.rerun` re-executes the
  notebooks in :mod:`.sandbox` and :mod:`.verdicts` judges the checks (probes, pristine
  check cells); :mod:`.scoring` takes its points from that run. :mod:`.sandbox` also
  holds the per-submission time budget and scores a model in a child process under
  ceilings;
* :mod:`.grading`: the batch, one row per submission whatever happens;
  :mod:`.cluster`: the batch spread over Dask workers;
* :mod:`.cli`: the ``release``, ``submit`` and ``grade`` commands;
  :mod:`.nbgrader_config`: the course's nbgrader configuration;
* after the last row, the class at a glance: :mod:`.similarity` (similar solutions across
  the class) and :mod:`.class_report` (``class_report.html`` and ``.csv``).

May import the course library and :mod:`cifar_lab.tuning`; nothing imports it but the
command line.
"""
