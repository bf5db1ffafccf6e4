"""Instructor tools: run the course, release it, check and grade submissions.

* :mod:`~cifar_lab.instructor.nbtools`, :mod:`~cifar_lab.instructor.runner`: find and execute
  the course notebooks (``run``, ``refresh-outputs``);
* :mod:`~cifar_lab.instructor.release`: student notebooks without solutions, and the manifest;
* :mod:`~cifar_lab.instructor.inspection`, :mod:`~cifar_lab.instructor.submission`: read
  notebooks as JSON and check a submission (``submit``);
* :mod:`~cifar_lab.instructor.grading`, :mod:`~cifar_lab.instructor.rerun`: grade a batch
  (``grade``), optionally re-executing it;
* :mod:`~cifar_lab.instructor.cli`: the ``release``, ``submit`` and ``grade`` commands.

May import the course library and :mod:`cifar_lab.tuning`; nothing imports it but the
command line.
"""
