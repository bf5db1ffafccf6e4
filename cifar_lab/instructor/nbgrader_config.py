# nbgrader configuration for the cifar_lab course (nbgrader 0.9.x).
#
# Copy this file to the root of your nbgrader course folder (the folder holding
# source/, release/, submitted/, autograded/, feedback/ and gradebook.db) and put the
# five notebooks in source/<assignment>/, e.g. source/cifar_lab/01_preparation.ipynb.
# Everything not set here keeps nbgrader's defaults: the solution markers
# (### BEGIN SOLUTION / ### END SOLUTION), the stubs (# YOUR CODE HERE /
# raise NotImplementedError(), YOUR ANSWER HERE) and the cell metadata the notebooks
# carry (written by `python -m cifar_lab.instructor.points --write`).
#
# Profile: nbgrader sets NBGRADER_EXECUTION=autograde|validate in the kernels it runs.
# When CIFAR_LAB_PROFILE is not set, cifar_lab then uses the quick profile (2,000
# training images, relaxed accuracy floors): the checks compute their own references
# and the accuracy floors stay above chance, so a working solution passes in minutes
# instead of the ~30 min notebook 05 takes in the full profile, per student.
# Export CIFAR_LAB_PROFILE=full before `nbgrader autograde` to grade on the full
# assignment instead. Either way, export CIFAR10_SOURCE=/path/to/cifar-10 so the
# kernels find the data. A CIFAR10_SOURCE that does not exist is an error in every
# notebook; without any copy set or found, the quick profile uses synthetic images only
# when CIFAR_LAB_PROFILE=quick was exported (with a warning), never when nbgrader's
# NBGRADER_EXECUTION chose it.
import os

import zmq

c = get_config()  # noqa: F821 (nbgrader provides get_config)

# Seconds one cell may run before nbgrader interrupts it and records a
# CellTimeoutError (nbgrader's default, 30 s, is shorter than one training epoch).
# Quick profile: the slowest cell (a Part V search) took 32 s on two shared CPU cores.
# Full profile: notebook 05 takes ~24 min in all on a CPU; 1 h per cell leaves room.
_FULL = os.environ.get("CIFAR_LAB_PROFILE") == "full"
c.Execute.timeout = 3600 if _FULL else 600
# Seconds to wait for a finished cell's last outputs (nbclient's 4 s can be too short
# on a busy grading machine, and nbgrader makes that wait an error).
c.Execute.iopub_timeout = 30

# Kernels talk to nbgrader over local TCP sockets. ipykernel >= 7 warns on every start
# ("[IPKernelApp] WARNING | Kernel is running over TCP without encryption") unless the
# kernel manager hands it CurveZMQ keys; "auto" does so for kernels whose kernelspec
# declares support (ipykernel's python3 does), and needs a pyzmq built with CurveZMQ.
if zmq.has("curve"):
    c.KernelManager.transport_encryption = "auto"
