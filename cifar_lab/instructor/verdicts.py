"""Check verdicts student code cannot reach: the grader's probes, then the pristine checks.

A notebook's check cells run in the student's kernel, and one Python process
cannot protect one part of itself from another (see **the pristine checks**, below,
for what re-running them stops and what it does not). So under ``grade``'s
re-execution the points of a probed check come from a **probe** instead, run by the
runner (:mod:`cifar_lab.instructor.rerun`, a process the kernels cannot write to) once
a notebook has run:

1. the runner draws fresh inputs from a seed the student never saw
   (:func:`secrets.randbits`) and writes them, as ``.npz``, into a new folder
   with a random name in the kernel's working folder;
2. it executes a short cell of its own in the kernel (:func:`probe_source`)
   that loads them (``allow_pickle=False``), calls the student's function by
   name, converts what it returns to NumPy arrays and saves them with
   ``np.savez`` (``allow_pickle=False``);
3. it reads that file back with :func:`read_outputs` (a regular file, size
   and member limits before anything is parsed, no object arrays, no pickle),
   computes the reference itself, in NumPy, from the inputs it kept in memory,
   and compares (:class:`Probe`'s ``judge``).

Nothing the kernel prints, displays or records decides a verdict; a missing,
malformed or oversized result is a failed probe. The kernel can rewrite the
grader's cell (an IPython hook) or patch NumPy in its own process, but it never
sees the reference or the seed, so a result passes only if the kernel computed
the right answer for inputs it had not seen.

Every auto-graded check has a probe (:data:`UNPROBED`, the checks that would keep only
the re-run check cell's verdict, is empty); a test holds the table against the points
table:

* :data:`PROBES`, run once the notebook has run: each exercise function on inputs
  drawn now (notebook 04's tools too: the kernel iterates ``make_pipeline`` over
  numbered examples and returns two epochs' ids and labels; it fits a tiny model with
  ``training_callbacks`` while a callback of the grader's reports the validation
  accuracies the grader drew, and returns the epochs run and the weights kept and
  checkpointed, which the grader compares with its own early-stopping reckoning; it
  returns ``first_layer_templates`` of grader-drawn kernels, compared with NumPy's
  reshape); notebook 05's ``build_network`` (logits against the grader's NumPy forward
  pass, for every activation and batch-norm placement) and ``train_network`` (it fits
  100 images the grader drew; a zero rate moves no weight; the optimiser class of each
  name), and its five searches (:data:`SEARCH_PROBES`: the kernel runs the search on
  earlier results the grader drew, with a ``train_network`` that does not train and
  its studies in a scratch folder, and returns the study's trials as JSON text, at most
  :data:`MAX_SEARCH_TRIALS`; the grader applies the check's rules to them itself);
* :data:`ACCURACY_PROBES` (notebook 03's models, once the notebook has run) and
  :data:`AFTER_CHECK_PROBES` (02's barebones nets, 04's Sequential and functional
  nets, 05's final model), which the runner runs **right after the handed-in cell
  that carries the check's grade_id** (:func:`after_check_probe`, from nbclient's
  ``on_cell_executed`` hook), because notebook 04 rebinds ``model`` after each
  check. The kernel returns the model's predicted class ids on the grader's
  validation images (labels kept by the grader), its weight matrices' shapes and
  its form; the grader requires the form the exercise asks for (a two-layer net
  kept from an earlier cell, whose training "passed" under a hook, fails) and
  computes the accuracy against the profile's floor.

What the probes do not prove: the validation images are public CIFAR-10, so a
model fitted to them passes an accuracy probe (the probe shows that the student's
code produced a trained model of the right form, not how it was trained); Part V's
model is checked against memorisation separately (:mod:`cifar_lab.instructor.claims`).
The re-run check cells (pristine check functions) still run, as a second signal.

**The pristine checks** (the last part of this module): how the re-execution verifies
the checks without trusting the student's copy of them. A check passes in the
re-execution when the check cell runs to its end in a fresh kernel with the grader's
own check functions. Before **every** code cell of the re-executed copy the runner
inserts a cell of its own (:func:`pristine_cell`) that

* compiles ``cifar_lab/results.py`` from the source text the *grader* read
  before any student code ran (embedded in the cell as a literal, so nothing
  the kernel imported or patched is used to build the check functions), and
* rebinds ``lab`` to a read-only module that holds those fresh
  ``check_at_least``, ``check_that``, ``check_close`` and ``record`` and
  forwards every other name to the real ``cifar_lab``.

The verdict is whether the check cell raised (the kernel's execute reply,
read by the runner, a process the kernel cannot write to); the check payloads
a cell displays, which any cell can forge, are not read for it. The
notebook stops at the first failed check, as it would for the student.

What this stops: a cell, added or in the student's solution, that rebinds
``lab.check_at_least`` (or ``check_that``, ``check_close``, ``record``) to a
no-op, patches ``cifar_lab.results`` or ``cifar_lab.checks``, replaces
``lab`` or ``sys.modules["cifar_lab"]``, or displays a forged "passed"
payload; in each case the next check runs the grader's function anyway.

What it does **not** stop: code written to attack this harness from inside the kernel
process. Student code and the checks share one Python process, and Python
cannot protect one part of a process from another: a student function that a
check calls can rebind ``lab`` in its caller's globals mid-cell, swap the
``__code__`` of a check function, patch NumPy (``np.allclose``, ``np.all``)
or builtins that the checks use, or swallow the exception inside IPython.
Stopping that would need the student's functions called in one process and
compared in another, with only data in between. Such code is conspicuous in the
notebook: the static checks flag added and edited cells, and an instructor
should read every flagged submission.

That separation is the probes above: for every check, the runner calls the
student's functions (or asks for a trained model's predictions) in the kernel with
inputs it drew, reads back arrays and judges them itself, and those verdicts decide the
points; the pristine check cells are a second, weaker signal.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import math
import os
import secrets
import shutil
import stat
import tempfile
import textwrap
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import cifar_lab.results as results_module
from cifar_lab.instructor.findings import MEGABYTE
from cifar_lab.instructor.notebooks import COURSE_NOTEBOOKS
from cifar_lab.metrics import accuracy

N01, N02, N03, N04, N05 = COURSE_NOTEBOOKS  # the probes' notebooks, by number

MAX_OUTPUT_BYTES = 64 * MEGABYTE  # one result file, and the arrays it unpacks to
MAX_OUTPUT_ARRAYS = 64
PROBE_TIMEOUT = 300  # seconds for one probe cell (at most the re-run's cell timeout)
INPUTS_FILE, OUTPUTS_FILE = "inputs.npz", "outputs.npz"
SEED_BITS = 64
PIXELS = 32 * 32 * 3  # the flattened CIFAR-10 image the init functions size w1 for

Inputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class Probe:
    """How the grader verifies one graded check without trusting the kernel.

    Attributes:
        grade_id: the check's row in the points table.
        notebook: stem of the notebook whose kernel holds the student's names.
        calls: the student's names the kernel-side code calls (for messages).
        draw: fresh inputs from the grader's generator: name -> array. Names
            starting with ``_`` (e.g. the labels of images) stay in the grader.
        body: kernel-side Python run with ``inputs`` (name -> array, as drawn)
            and ``numpy`` in scope; it sets ``outputs`` (name -> array-like).
        judge: ``(inputs, outputs) -> message``: "" when the outputs are right,
            else what is wrong, in the grader's own words. It may raise on
            outputs of a wrong shape or type: that is a failed probe.
    """

    grade_id: str
    notebook: str
    calls: tuple[str, ...]
    draw: Callable[[np.random.Generator], Inputs]
    body: str
    judge: Callable[[Inputs, Inputs], str]


# ------------------------------------------------------------------- the channel
_CELL = """\
def __cifar_lab_probe(folder):
    import numpy
    with numpy.load(folder + {inputs!r}, allow_pickle=False) as stored:
        inputs = {{name: stored[name] for name in stored.files}}
{body}
    arrays = {{str(name): numpy.asarray(value) for name, value in outputs.items()}}
    numpy.savez(folder + {outputs!r}, allow_pickle=False, **arrays)


try:
    __cifar_lab_probe({folder!r})
finally:
    del __cifar_lab_probe
"""


def probe_source(probe: Probe, folder: Path) -> str:
    """The cell the runner executes in the kernel for ``probe``, reading and writing ``folder``.

    Args:
        probe: the probe.
        folder: the probe's own folder (holds :data:`INPUTS_FILE`).

    Returns:
        Python source; it writes :data:`OUTPUTS_FILE` into ``folder``, or raises.
    """
    body = textwrap.indent(textwrap.dedent(probe.body).strip("\n"), "    ")
    return _CELL.format(
        inputs=f"/{INPUTS_FILE}", outputs=f"/{OUTPUTS_FILE}", body=body, folder=str(folder)
    )


def _write_exclusive(path: Path, data: bytes) -> None:
    """Write a new file; fail rather than follow or reuse anything already at ``path``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(path, flags, 0o644)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def _read_capped(path: Path, max_bytes: int) -> bytes | str:
    """The bytes of a regular file of at most ``max_bytes``, else why not (never blocks)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError:
        return "no result was written"
    with os.fdopen(descriptor, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            return "the result is not a regular file"
        if info.st_size > max_bytes:
            return f"the result is over {max_bytes // MEGABYTE} MB"
        data = file.read(max_bytes + 1)
    return data if len(data) <= max_bytes else f"the result is over {max_bytes // MEGABYTE} MB"


_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def read_outputs(path: Path, max_bytes: int = MAX_OUTPUT_BYTES) -> Inputs | str:
    """Read a result file the kernel wrote, with limits before any parsing.

    Args:
        path: the ``.npz`` file.
        max_bytes: the largest file, and the largest total of its arrays' data.

    Returns:
        name -> array (plain dtypes only, no object arrays), or a message saying
        why the file cannot be used.
    """
    data = _read_capped(path, max_bytes)
    if isinstance(data, str):
        return data
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            if len(members) > MAX_OUTPUT_ARRAYS:
                return f"the result holds more than {MAX_OUTPUT_ARRAYS} arrays"
            if sum(member.file_size for member in members) > max_bytes:
                return f"the result unpacks to more than {max_bytes // MEGABYTE} MB"
            total = 0
            for member in members:
                if not member.filename.endswith(".npy"):
                    return "the result holds a file that is not an array"
                with archive.open(member) as file:
                    reader = _HEADER_READERS.get(np.lib.format.read_magic(file))
                    if reader is None:
                        return "the result holds an array of an unknown format version"
                    shape, _, dtype = reader(file)
                if dtype.hasobject:
                    return "the result holds an object array"
                total += int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            if total > max_bytes:
                return f"the result's arrays hold more than {max_bytes // MEGABYTE} MB"
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}
    except Exception:  # a truncated, forged or otherwise malformed file
        return "the result is not a readable .npz file of arrays"


def _no_result_message(probe: Probe, why: str) -> str:
    names = " and ".join(probe.calls)
    return (
        f"the grader called {names} on inputs of its own and got no usable result ({why}): "
        "it raised an error, returned something that is not arrays, or took too long"
    )


def run_probe(
    probe: Probe, work: Path, execute: Callable[[str], object], seed: int | None = None
) -> dict:
    """Run one probe through the kernel and judge its result here.

    Args:
        probe: the probe.
        work: the kernel's working folder (a new probe folder is made in it).
        execute: runs one cell's source in the student's kernel; whatever it
            returns or raises is ignored (only the result file is read).
        seed: the inputs' seed; None (grading) draws a fresh one the kernel never sees.

    Returns:
        ``{"grade_id", "passed": bool, "message": str}``: the grader's verdict.
    """
    inputs, folder = _staged(probe, work, seed)
    try:
        with contextlib.suppress(Exception):  # error, timeout, dead kernel: the file decides
            execute(probe_source(probe, folder))
        outputs = read_outputs(folder / OUTPUTS_FILE)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return _judged(probe, inputs, outputs)


async def run_probe_async(
    probe: Probe, work: Path, execute: Callable[[str], Awaitable], seed: int | None = None
) -> dict:
    """:func:`run_probe` for a caller inside the kernel client's event loop.

    The runner uses it to probe a trained model right after its check cell ran
    (:data:`AFTER_CHECK_PROBES`), from nbclient's ``on_cell_executed`` hook.

    Args:
        probe: the probe.
        work: the kernel's working folder.
        execute: a coroutine function running one cell's source in the kernel.
        seed: as :func:`run_probe`.

    Returns:
        The grader's verdict, as :func:`run_probe`.
    """
    inputs, folder = _staged(probe, work, seed)
    try:
        with contextlib.suppress(Exception):  # error, timeout, dead kernel: the file decides
            await execute(probe_source(probe, folder))
        outputs = read_outputs(folder / OUTPUTS_FILE)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return _judged(probe, inputs, outputs)


def _staged(probe: Probe, work: Path, seed: int | None) -> tuple[Inputs, Path]:
    """Draw the probe's inputs and write the shown ones into a new probe folder in ``work``."""
    rng = np.random.default_rng(secrets.randbits(SEED_BITS) if seed is None else seed)
    inputs = probe.draw(rng)
    folder = Path(tempfile.mkdtemp(prefix=".probe-", dir=work))
    try:
        buffer = io.BytesIO()
        shown = {name: value for name, value in inputs.items() if not name.startswith("_")}
        np.savez(buffer, allow_pickle=False, **shown)  # "_" names stay with the grader
        _write_exclusive(folder / INPUTS_FILE, buffer.getvalue())
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return inputs, folder


def _judged(probe: Probe, inputs: Inputs, outputs: Inputs | str) -> dict:
    """The verdict on what the kernel returned (a message: no usable result)."""
    if isinstance(outputs, str):
        message = _no_result_message(probe, outputs)
    else:
        try:
            message = probe.judge(inputs, outputs)
        except Exception as error:  # outputs of the wrong names, shapes or types
            message = f"{' and '.join(probe.calls)} returned results of the wrong form ({error})"
    return {"grade_id": probe.grade_id, "passed": not message, "message": message[:500]}


def probes_of(notebook: str) -> tuple[Probe, ...]:
    """The probes of one notebook (its stem), in notebook order."""
    return tuple(probe for probe in PROBES if probe.notebook == notebook)


def probe_notebook(
    notebook: str,
    work: Path,
    execute: Callable[[str], object],
    validation: LabelledImages | None = None,
) -> dict[str, dict]:
    """Run every probe of ``notebook`` (a stem) against the kernel that just ran it.

    Args:
        notebook: the notebook's stem.
        work: the kernel's working folder.
        execute: runs one cell's source in the kernel (see :func:`run_probe`).
        validation: the grader's labelled images for the accuracy probes; None
            (the grader could not load them): those checks are marked skipped and
            keep the re-run check cell's verdict.

    Returns:
        grade_id -> verdict (see :func:`run_probe`; a skipped one has ``"skipped": True``).
        The :data:`AFTER_CHECK_PROBES` ran earlier (the runner merges their
        verdicts); they appear here only as skipped, when ``validation`` is None.
    """
    verdicts = {probe.grade_id: run_probe(probe, work, execute) for probe in probes_of(notebook)}
    message = "the grader could not load its validation images"
    skipped = {"passed": False, "skipped": True, "message": message}
    for spec in AFTER_CHECK_PROBES:
        if spec.notebook == notebook and validation is None:
            verdicts[spec.grade_id] = {"grade_id": spec.grade_id, **skipped}
    for grade_id, stem, model in ACCURACY_PROBES:
        if stem != notebook:
            continue
        if validation is None:
            verdicts[grade_id] = {"grade_id": grade_id, **skipped}
        else:
            verdicts[grade_id] = run_probe(accuracy_probe(grade_id, stem, model, validation),
                                           work, execute)  # fmt: skip
    return verdicts


# --------------------------------------------------------- accuracy of trained models
@dataclass(frozen=True)
class LabelledImages:
    """Images the grader holds with their labels, and the accuracy a trained model must reach.

    Attributes:
        images: float32 (N, 32, 32, 3), prepared as the notebooks' ``X_val``
            (standardised with the training statistics).
        labels: int (N,) class ids; never written to the kernel.
        floor: the profile's ``min_val_accuracy``.
        train_size: the profile's training split size (the notebooks' ``len(y_train)``);
            None: not known, a trained model's image count is not checked.
    """

    images: np.ndarray
    labels: np.ndarray
    floor: float
    train_size: int | None = None


# Kernel-side: the trained model's class ids; ``{model}`` is the notebook's variable.
_ACCURACY_BODY = """
import keras

trained = {model}
scores = trained.predict(inputs["x"], verbose=0) if hasattr(trained, "predict") else trained(
    inputs["x"]
)
outputs = {{"classes": keras.ops.convert_to_numpy(scores).argmax(axis=1).astype(numpy.int32)}}
"""


def accuracy_probe(grade_id: str, notebook: str, model: str, validation: LabelledImages) -> Probe:
    """A probe asking the kernel for ``model``'s predictions on the grader's images.

    Args:
        grade_id: the accuracy check.
        notebook: its notebook's stem.
        model: the name of the trained model in the notebook's namespace.
        validation: the grader's labelled images (shuffled afresh for each probe).

    Returns:
        The probe; it passes when the grader's accuracy of the predicted class ids
        (:func:`cifar_lab.metrics.accuracy`) is at least ``validation.floor``.
    """

    def draw(rng: np.random.Generator) -> Inputs:
        order = rng.permutation(len(validation.labels))
        return {"x": validation.images[order], "_labels": validation.labels[order]}

    def judge(inputs: Inputs, outputs: Inputs) -> str:
        classes, labels = outputs["classes"], inputs["_labels"]
        if classes.shape != labels.shape or not np.issubdtype(classes.dtype, np.integer):
            return f"{model} gives one int class id per image, got {classes.dtype} {classes.shape}"
        return _accuracy_verdict(model, labels, classes, validation.floor)

    return Probe(grade_id, notebook, (model,), draw, _ACCURACY_BODY.format(model=model), judge)


def _accuracy_verdict(model: str, labels: np.ndarray, classes: np.ndarray, floor: float) -> str:
    """Empty when class ids ``classes`` (int, (N,)) reach ``floor`` on ``labels``; else why not."""
    found = accuracy(labels, classes)
    if found >= floor:
        return ""
    return (
        f"{model}'s accuracy on the grader's {len(labels):,} validation images is "
        f"{found:.4f}, below {floor}"
    )


# (grade_id, notebook, the trained model's name in the notebook once it has run)
ACCURACY_PROBES: tuple[tuple[str, str, str], ...] = (
    ("subclassed_accuracy_check", N03, "model"),
    ("three_layer_model_accuracy_check", N03, "model_3"),
)


# ------------------------------------------- trained models, right after their check cell
@dataclass(frozen=True)
class TrainedProbe:
    """A trained model the grader scores right after its check cell ran in the re-run.

    Run then, not once the notebook has run: notebook 04 rebinds ``model`` after
    each check, and a hooked submission whose training failed keeps an earlier
    (given, trained) model under the name. So the grader also checks the
    model's form, which no earlier model of the notebook has.

    Attributes:
        grade_id: the accuracy check; the probe runs after the handed-in cell that
            carries this grade_id (the first one), before the next cell.
        notebook: the notebook's stem.
        model: what the kernel-side code scores, in the grader's messages.
        body: kernel-side code that sets ``scores`` ((N, 10) for ``inputs["x"]``),
            ``kernels`` (the model's 2-D weight matrices) and ``form``
            (is a keras.Sequential, is a functional model, convolution layers).
        layers: the number of weight matrices, chained 3072 -> ... -> 10; None: any.
        form: "barebones", "sequential", "functional" or "any" (a Keras model).
        fitted: kernel-side code that sets ``steps`` (the steps of one epoch of the fit
            that trained the model) and ``batch`` (its batch size): together, the
            training images it saw, which must be the profile's whole training split
            (``LabelledImages.train_size``, a dropped remainder of less than a batch
            excepted); None: not checked.
    """

    grade_id: str
    notebook: str
    model: str
    body: str
    layers: int | None
    form: str
    fitted: str | None = None


# Kernel-side, after ``body`` has set scores, kernels and form.
_TRAINED_OUTPUTS = """
import keras

outputs = {
    "classes": keras.ops.convert_to_numpy(scores).argmax(axis=1).astype(numpy.int32),
    "kernels": numpy.array(
        [tuple(int(d) for d in w.shape) for w in kernels if len(w.shape) == 2], numpy.int64
    ).reshape(-1, 2),
    "form": numpy.array([bool(v) for v in form[:2]] + [int(form[2])], numpy.int64),
}
"""

# A barebones model (Part II): the forward function and the variables train_part2
# trained (History.params), called on the grader's images.
_BAREBONES_TRAINED = """
import tensorflow as tf

kernels = list({history}.params)
scores = {forward}(tf.constant(inputs["x"]), kernels)
form = (False, False, 0)
"""

# A Keras model (Parts IV, V): its predictions in batches, its weights, its form.
_KERAS_TRAINED = """
import keras

import cifar_lab

scored = {model}
scores = scored.predict(inputs["x"], batch_size=256, verbose=0)
kernels = list(scored.trainable_weights)
try:  # a subclassed model may raise rather than say it has no inputs
    functional = isinstance(scored, keras.Model) and bool(scored.inputs)
except Exception:
    functional = False
convolutions = len(cifar_lab.convolution_layers(scored))
form = (isinstance(scored, keras.Sequential), functional, convolutions)
"""


def _keras_trained(grade_id, notebook, model, layers, form, fitted=None) -> TrainedProbe:
    return TrainedProbe(
        grade_id, notebook, model, _KERAS_TRAINED.format(model=model), layers, form, fitted
    )


# Kernel-side, when the spec reads the fit: steps and batch size as plain integers (-1: none).
_FITTED_OUTPUT = """
outputs["fitted"] = numpy.array(
    [int(v) if isinstance(v, (int, numpy.integer)) else -1 for v in (steps, batch)], numpy.int64
)
"""
MAX_TRAIN_IMAGES = 10**7  # an image count beyond any split (the whole of CIFAR-10 is 60,000)

# Part V's final network: final_training() returns the History of its fit. A Keras History
# counts steps, not images (``params["steps"]``, one epoch's); the batch size is the one
# final_training says it passed to train_network (``final["training"]["batch_size"]``), else
# train_network's own default. The grader reads both from the live History whose model it
# scores, rather than from part5/results.json: that file records the same two numbers
# (lab.save_final_model writes them from this History and the recipe's batch size), but any
# cell can write it, and it need not describe the model scored here. The check cell holds
# results.json to this History (its epochs) and to all training images.
_FINAL_FITTED = """
import inspect

history, training = final["history"], final["training"]
steps = history.params.get("steps")
if "batch_size" in training:
    batch = training["batch_size"]
else:  # train_network's default
    batch = inspect.signature(train_network).parameters["batch_size"].default
"""


def _barebones_trained(grade_id, forward, history, layers) -> TrainedProbe:
    body = _BAREBONES_TRAINED.format(forward=forward, history=history)
    return TrainedProbe(
        grade_id, N02, f"{forward}(x, {history}.params)", body, layers, "barebones"
    )


# Each probe's floor is the profile's one-model promise, min_val_accuracy (the check's
# own floor, except for 04's functional net: its check holds the mean of three seeds
# to min_fit_accuracy, and the notebook keeps seed 0's model only; min_fit_accuracy is
# at least min_val_accuracy in every profile, so the mean stays the re-run cell's test).
AFTER_CHECK_PROBES: tuple[TrainedProbe, ...] = (
    _barebones_trained("two_layer_accuracy_check", "two_layer_fc", "history", 2),
    _barebones_trained("three_layer_accuracy_check", "three_layer_fc", "history_3", 3),
    _keras_trained("sequential_accuracy_check", N04, "model", 3, "sequential"),
    _keras_trained("functional_accuracy_check", N04, "model", 3, "functional"),
    _keras_trained(
        "final_training_check", N05, 'final["history"].model', None, "any", _FINAL_FITTED
    ),
)


def _chained(kernels: np.ndarray, layers: int | None) -> bool:
    """Whether the (k, 2) matrix shapes map 3072 pixels to 10 scores, one into the next."""
    if kernels.ndim != 2 or kernels.shape[1:] != (2,) or len(kernels) == 0:
        return False
    if layers is not None and len(kernels) != layers:
        return False
    linked = all(a[1] == b[0] for a, b in itertools.pairwise(kernels.tolist()))
    return linked and kernels[0, 0] == PIXELS and kernels[-1, 1] == 10


def trained_probe(spec: TrainedProbe, validation: LabelledImages) -> Probe:
    """The probe that scores ``spec``'s trained model on the grader's images.

    Args:
        spec: the trained model and the form it must have.
        validation: the grader's labelled images (shuffled afresh for each probe).

    Returns:
        The probe; it passes when the model has ``spec``'s form (no convolutions;
        ``spec.layers`` weight matrices from 3072 pixels to 10 scores) and the
        grader's accuracy of its predicted class ids is at least ``validation.floor``.
    """

    def draw(rng: np.random.Generator) -> Inputs:
        order = rng.permutation(len(validation.labels))
        return {"x": validation.images[order], "_labels": validation.labels[order]}

    def judge(inputs: Inputs, outputs: Inputs) -> str:
        classes, labels = outputs["classes"], inputs["_labels"]
        sequential, functional, convolutions = (int(v) for v in outputs["form"])
        kernels = outputs["kernels"]
        wanted = "" if spec.layers is None else f"{spec.layers} "
        conditions = [
            (classes.shape == labels.shape and np.issubdtype(classes.dtype, np.integer),
             f"{spec.model} gives one class id per image ({len(labels)}), "
             f"got {classes.dtype} {classes.shape}"),
            (convolutions == 0, f"{spec.model} has no convolution layers"),
            (spec.form != "sequential" or sequential, f"{spec.model} is a keras.Sequential"),
            (spec.form != "functional" or (functional and not sequential),
             f"{spec.model} is a functional keras.Model, not a keras.Sequential"),
            (spec.layers is None or _chained(kernels, spec.layers),
             f"{spec.model} has {wanted}weight matrices from {PIXELS} pixels to 10 scores, "
             f"got {[tuple(k) for k in kernels.tolist()]}"),
        ]  # fmt: skip
        if spec.fitted is not None and validation.train_size is not None:
            conditions.append(_fitted_on_all(outputs["fitted"], validation.train_size))
        failure = _first_failure(conditions)
        if failure:
            return failure
        return _accuracy_verdict(spec.model, labels, classes, validation.floor)

    body = spec.body + _TRAINED_OUTPUTS
    if spec.fitted is not None and validation.train_size is not None:
        body += spec.fitted + _FITTED_OUTPUT
    return Probe(spec.grade_id, spec.notebook, (spec.model,), draw, body, judge)


def _fitted_on_all(fitted: np.ndarray, train_size: int) -> tuple[bool, str]:
    """Whether a fit of ``fitted`` = (steps per epoch, batch size) saw all ``train_size`` images.

    As :func:`cifar_lab.tuning.studies.check_trained_on_all` reads a History's record:
    steps x batch images, one batch short at most (a dropped remainder); a batch larger
    than the split holds the whole split.
    """
    readable = fitted.shape == (2,) and np.issubdtype(fitted.dtype, np.integer)
    steps, batch = (int(v) for v in fitted) if readable else (-1, -1)
    batch = min(batch, train_size)
    images = steps * batch
    holds = steps >= 1 and batch >= 1 and train_size <= images + batch - 1 <= MAX_TRAIN_IMAGES
    return holds, (
        f"the model was trained on all {train_size:,} training images: its fit ran "
        f"{steps} steps of {batch} images an epoch"
        + (" (the History does not say how many)" if steps < 0 else "")
    )


def after_check_probe(
    grade_id: str | None, notebook: str, validation: LabelledImages | None
) -> Probe | None:
    """The probe to run right after the cell carrying ``grade_id`` in ``notebook`` ran.

    Returns:
        None when that check has no such probe, or the grader has no images.
    """
    if validation is None:
        return None
    spec = next(
        (s for s in AFTER_CHECK_PROBES if (s.grade_id, s.notebook) == (grade_id, notebook)), None
    )
    return None if spec is None else trained_probe(spec, validation)


def accuracy_notebooks() -> frozenset[str]:
    """The stems of the notebooks whose probes need the grader's validation images."""
    return frozenset(
        [stem for _, stem, _ in ACCURACY_PROBES] + [s.notebook for s in AFTER_CHECK_PROBES]
    )


def load_validation(profile_name: str | None = None) -> LabelledImages:
    """The profile's validation split, loaded by the grader (the runner, before any kernel runs).

    Args:
        profile_name: the profile (None: ``$CIFAR_LAB_PROFILE``, as the notebooks read it).

    Returns:
        The split as the notebooks see it (standardised), with the profile's floor.
    """
    from cifar_lab.profiles import get_profile, load_profile_data

    profile = get_profile(profile_name)
    data = load_profile_data(profile)
    images, labels = np.array(data.X_val, dtype=np.float32), np.array(data.y_val)
    return LabelledImages(images, labels, profile.min_val_accuracy, len(data.y_train))


# ----------------------------------------------------------- comparison helpers
def _close(actual, expected, *, rtol: float = 1e-5, atol: float = 1e-6) -> bool:
    """``np.allclose`` with equal shapes required (no broadcasting a wrong answer)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    return actual.shape == expected.shape and bool(np.allclose(actual, expected, rtol, atol))


def _first_failure(conditions: list[tuple[bool, str]]) -> str:
    """The message of the first condition that does not hold ("" when all hold)."""
    return next((message for holds, message in conditions if not holds), "")


# ------------------------------------------------------- 01: standardise_splits
_BIG_IMAGES = 1000  # enough pixels that a float32 sum drifts past the tolerance (70x)


def _draw_standardise(rng: np.random.Generator) -> Inputs:
    height, width = (int(v) for v in rng.integers(2, 7, size=2))
    low = rng.integers(0, 120, size=3)
    high = low + rng.integers(20, 136, size=3)  # a different spread per channel
    sizes = rng.integers(2, 9, size=3)
    splits = {
        name: rng.integers(low, high, size=(int(n), height, width, 3)).astype(np.uint8)
        for name, n in zip(("X_train", "X_val", "X_test"), sizes, strict=True)
    }
    big_low = rng.integers(150, 200, size=3)  # bright images: large sums, as real photos
    big = rng.integers(big_low, 256, size=(_BIG_IMAGES + 6, 32, 32, 3)).astype(np.uint8)
    bigs = {"big": big[:_BIG_IMAGES], "big_val": big[-6:-3], "big_test": big[-3:]}
    return {**splits, **bigs}


_STANDARDISE_BODY = """
result = standardise_splits(inputs["X_train"], inputs["X_val"], inputs["X_test"])
outputs = {f"r{i}": value for i, value in enumerate(result)}
big = standardise_splits(inputs["big"], inputs["big_val"], inputs["big_test"])
if len(big) == 5:
    outputs["big_mean"], outputs["big_std"] = big[3], big[4]
"""


def _judge_standardise(inputs: Inputs, outputs: Inputs) -> str:
    count = len([name for name in outputs if name.startswith("r")])
    if count != 5:
        return f"standardise_splits returns 5 values (3 splits, mean, std), not {count}"
    pixels = inputs["X_train"].reshape(-1, 3).astype(np.float64)
    mean, std = pixels.mean(axis=0), pixels.std(axis=0)
    big = inputs["big"].reshape(-1, 3).astype(np.float64)
    conditions = []
    for name, index in (("mean", 3), ("std", 4)):
        value = outputs[f"r{index}"]
        conditions.append(
            (
                value.shape == (3,) and value.dtype == np.float32,
                f"{name} is a float32 array of shape (3,)",
            )
        )
    conditions += [
        (_close(outputs["r3"], mean), "mean is the per-channel mean of the training pixels"),
        (
            _close(outputs["r4"], std),
            "std is the per-channel standard deviation (ddof=0) of the training pixels",
        ),
    ]
    for index, name in enumerate(("X_train", "X_val", "X_test")):
        out, images = outputs[f"r{index}"], inputs[name]
        conditions += [
            (out.dtype == np.float32 and out.shape == images.shape,
             f"the standardised {name} is a float32 array of the input's shape"),
            (_close(out, (images - mean) / std, atol=1e-5),
             f"the standardised {name} is (pixels - training mean) / training std"),
        ]  # fmt: skip
    exact = np.concatenate([big.mean(axis=0), big.std(axis=0)])
    found = np.concatenate([outputs["big_mean"].ravel(), outputs["big_std"].ravel()])
    conditions.append(
        (
            _close(found, exact),
            f"on {_BIG_IMAGES:,} images, mean and std are exact (sum in float64)",
        )
    )
    return _first_failure(conditions)


# --------------------------------------------------------------- 01: Minibatches
def _draw_minibatches(rng: np.random.Generator) -> Inputs:
    divisor, count = int(rng.integers(2, 6)), int(rng.integers(3, 7))
    n = divisor * count  # divisor divides n; remainder does not
    remainder = next(b for b in rng.permutation(np.arange(2, n)) if n % b)
    ids = rng.choice(1 << 20, size=n, replace=False)
    labels = rng.choice(1 << 20, size=n, replace=False)
    seeds = rng.choice(1 << 30, size=2, replace=False)
    return {
        "X": np.repeat(ids.astype(np.float32), 4).reshape(n, 2, 2),
        "y": labels.astype(np.int64),
        "batch_sizes": np.array([remainder, divisor, n + int(rng.integers(1, 9))]),
        "seeds": seeds.astype(np.int64),
    }


_MINIBATCHES_BODY = """
import itertools
X, y = inputs["X"], inputs["y"]
limit = len(X) + 2  # more batches than examples is wrong; never loop for ever


def epoch(batches, key):
    xs, ys, sizes = [], [], []
    for x_batch, y_batch in itertools.islice(iter(batches), limit):
        x_batch, y_batch = numpy.asarray(x_batch), numpy.asarray(y_batch)
        xs.append(x_batch.reshape(len(x_batch), -1)[:, 0])
        ys.append(y_batch.reshape(-1))
        sizes.append(len(x_batch))
    outputs[key + "_x"] = numpy.concatenate(xs) if xs else numpy.zeros(0)
    outputs[key + "_y"] = numpy.concatenate(ys) if ys else numpy.zeros(0)
    outputs[key + "_sizes"] = numpy.asarray(sizes, dtype=numpy.int64)


outputs = {}
for size in inputs["batch_sizes"]:
    epoch(Minibatches(X, y, batch_size=int(size)), f"plain{int(size)}")
first_seed, other_seed = (int(seed) for seed in inputs["seeds"])
size = int(inputs["batch_sizes"][0])
shuffled = Minibatches(X, y, batch_size=size, shuffle=True, seed=first_seed)
epoch(shuffled, "first")
epoch(shuffled, "second")
again = Minibatches(X, y, batch_size=size, shuffle=True, seed=first_seed)
epoch(again, "again_first")
epoch(again, "again_second")
epoch(Minibatches(X, y, batch_size=size, shuffle=True, seed=other_seed), "other")
"""


def _judge_minibatches(inputs: Inputs, outputs: Inputs) -> str:
    ids = {float(v): i for i, v in enumerate(inputs["X"][:, 0, 0])}
    labels = {int(v): i for i, v in enumerate(inputs["y"])}
    n, in_order = len(ids), list(range(len(ids)))

    def positions(key: str) -> tuple[list, list, list]:
        x = [ids.get(float(v), -1) for v in outputs[f"{key}_x"]]
        y = [labels.get(int(v), -1) for v in outputs[f"{key}_y"]]
        return x, y, [int(s) for s in outputs[f"{key}_sizes"]]

    sizes = {int(b): positions(f"plain{int(b)}")[2] for b in inputs["batch_sizes"]}
    expected = {b: [min(b, n - s) for s in range(0, n, b)] for b in sizes}
    conditions = [
        (sizes == expected,
         f"{n} examples in batches of {sorted(sizes)} give batch sizes {expected}, "
         "the last batch smaller when batch_size does not divide N"),
    ]  # fmt: skip
    for b in sizes:
        x, y, _ = positions(f"plain{b}")
        conditions.append(
            (
                x == in_order and y == in_order,
                "with shuffle=False an epoch visits the examples in order",
            )
        )
    epochs = {
        key: positions(key) for key in ("first", "second", "again_first", "again_second", "other")
    }
    size = int(inputs["batch_sizes"][0])
    for key in ("first", "second"):
        x, y, batch_sizes = epochs[key]
        conditions += [
            (x == y, "shuffled: every x_batch comes with the labels of its own examples"),
            (sorted(x) == in_order and batch_sizes == expected[size],
             "a shuffled epoch visits each example exactly once"),
        ]  # fmt: skip
    first, second = epochs["first"][0], epochs["second"][0]
    conditions += [
        (first != in_order, "shuffle=True changes the order"),
        (second != first, "every epoch has its own order"),
        (epochs["again_first"][0] == first and epochs["again_second"][0] == second,
         "the seed fixes the sequence of orders: the same seed repeats it"),
        (epochs["other"][0] != first, "another seed gives another order"),
    ]  # fmt: skip
    return _first_failure(conditions)


# ---------------------------------------------------------- 02: barebones TensorFlow

# Kernel-side: arrays of whatever the student's function returned (tensors, variables).
_AS_ARRAYS = """
import tensorflow as tf


def as_array(value):
    return numpy.asarray(value.numpy() if hasattr(value, "numpy") else value)
"""


def _draw_training_step(rng: np.random.Generator) -> Inputs:
    n, d1, d2, hidden, classes = (int(v) for v in rng.integers([3, 1, 2, 3, 3], [9, 4, 4, 8, 7]))
    return {
        "x": rng.normal(size=(n, d1, d2)).astype(np.float32),
        "y": rng.integers(0, classes, size=n).astype(np.int32),
        "w1": rng.normal(scale=0.5, size=(d1 * d2, hidden)).astype(np.float32),
        "w2": rng.normal(scale=0.5, size=(hidden, classes)).astype(np.float32),
        "learning_rate": np.array(rng.uniform(0.1, 1.0)),
    }


# Kernel-side: the grader's own two-layer network, for the probes of a step or a loss
# (only the function under test is the student's).
_GRADER_TWO_LAYER = """

def model(x, params):
    w1, w2 = params
    hidden = tf.nn.relu(tf.matmul(tf.reshape(x, (tf.shape(x)[0], -1)), w1))
    return tf.matmul(hidden, w2)

"""

_TRAINING_STEP_BODY = (
    _AS_ARRAYS
    + _GRADER_TWO_LAYER
    + """

v1, v2 = tf.Variable(inputs["w1"]), tf.Variable(inputs["w2"])
rate = float(inputs["learning_rate"])
loss = training_step(model, inputs["x"], inputs["y"], [v1, v2], rate)
outputs = {"loss": as_array(loss), "w1": v1.numpy(), "w2": v2.numpy()}
"""
)


def _judge_training_step(inputs: Inputs, outputs: Inputs) -> str:
    x, y = inputs["x"].reshape(len(inputs["x"]), -1).astype(np.float64), inputs["y"]
    w1, w2 = inputs["w1"].astype(np.float64), inputs["w2"].astype(np.float64)
    rate, rows = float(inputs["learning_rate"]), np.arange(len(y))
    hidden = np.maximum(x @ w1, 0)
    scores = hidden @ w2
    probs = np.exp(scores - scores.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(probs[rows, y]))
    d_scores = probs.copy()
    d_scores[rows, y] -= 1
    d_scores /= len(y)  # d(mean loss) / d(scores)
    grad_w2 = hidden.T @ d_scores
    grad_w1 = x.T @ ((d_scores @ w2.T) * (hidden > 0))
    return _first_failure([
        (_close(outputs["loss"].reshape(()), loss, rtol=1e-4),
         "training_step returns the mean cross-entropy loss of the minibatch, before the update"),
        (_close(outputs["w1"], w1 - rate * grad_w1, rtol=1e-4, atol=1e-5),
         "after one step, w1 equals w1 - learning_rate * d(loss)/d(w1)"),
        (_close(outputs["w2"], w2 - rate * grad_w2, rtol=1e-4, atol=1e-5),
         "after one step, w2 equals w2 - learning_rate * d(loss)/d(w2)"),
    ])  # fmt: skip


def _kaiming_failures(name: str, values: np.ndarray, rtol: float) -> list[tuple[bool, str]]:
    """Kaiming-normal statistics of one weight matrix: std sqrt(2 / fan_in), mean 0."""
    expected_std = np.sqrt(2 / values.shape[0])
    values = values.astype(np.float64)
    return [
        (_close(values.std(), expected_std, rtol=rtol, atol=0),
         f"the std of {name} (fan_in {values.shape[0]}) is sqrt(2 / fan_in)"),
        (abs(values.mean()) < 5 * expected_std / np.sqrt(values.size), f"{name} is centred on 0"),
    ]  # fmt: skip


_INIT_OUTPUTS = """
outputs = {f"p{i}": as_array(p) for i, p in enumerate(params)}
outputs["variables"] = numpy.array([isinstance(p, tf.Variable) for p in params])
"""


def _draw_two_layer_init(rng: np.random.Generator) -> Inputs:
    return {"hidden_size": np.array(int(rng.integers(300, 701)))}


_TWO_LAYER_INIT_BODY = (
    _AS_ARRAYS
    + 'params = two_layer_fc_init(hidden_size=int(inputs["hidden_size"]))'
    + _INIT_OUTPUTS
)


def _params(outputs: Inputs) -> list[np.ndarray]:
    return [outputs[f"p{i}"] for i in range(len([k for k in outputs if k.startswith("p")]))]


def _judge_two_layer_init(inputs: Inputs, outputs: Inputs) -> str:
    hidden, params = int(inputs["hidden_size"]), _params(outputs)
    shapes = [p.shape for p in params]
    expected = [(PIXELS, hidden), (hidden, 10)]
    if shapes != expected:
        return f"two_layer_fc_init({hidden}) returns [w1, w2] of shapes {expected}"
    conditions = [(bool(np.all(outputs["variables"])), "both are tf.Variable")]
    for name, values in zip(("w1", "w2"), params, strict=True):
        conditions += _kaiming_failures(name, values, rtol=0.05)
    return _first_failure(conditions)


_THREE_LAYER_NAMES = ("w1", "b1", "w2", "b2", "w3", "b3")


def _three_layer_logits(inputs: Inputs) -> np.ndarray:
    """relu(relu(x W1 + b1) W2 + b2) W3 + b3 in float64: float (N, classes)."""
    w1, b1, w2, b2, w3, b3 = (inputs[name].astype(np.float64) for name in _THREE_LAYER_NAMES)
    flat = inputs["x"].reshape(len(inputs["x"]), -1).astype(np.float64)
    return np.maximum(np.maximum(flat @ w1 + b1, 0) @ w2 + b2, 0) @ w3 + b3


def _with_a_negative_logit(draw: Callable[[np.random.Generator], Inputs]):
    """``draw`` redrawn until a right three-layer model's logits include one below -0.5.

    Without one, a model with ReLU on its logits gives the very same scores, and that wrong
    answer passes (seeds 0-599: 5 draws of notebook 02's case and 2 of notebook 03/04's had
    no negative logit; CI runs drew such). Fewer than 1 draw in 20 is redrawn.
    """

    def drawn(rng: np.random.Generator) -> Inputs:
        for _ in range(1000):
            inputs = draw(rng)
            if _three_layer_logits(inputs).min() < -0.5:
                return inputs
        raise AssertionError("1,000 draws without a negative logit: the draw is broken")

    return drawn


@_with_a_negative_logit
def _draw_three_layer_fc(rng: np.random.Generator) -> Inputs:
    n, height, width, h1, h2, classes = (
        int(v) for v in rng.integers([3, 1, 1, 3, 3, 3], [9, 4, 4, 8, 8, 7])
    )
    sizes = [height * width * 3, h1, h2, classes]
    params = {}
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes), start=1):
        params[f"w{layer}"] = rng.normal(size=(fan_in, fan_out)).astype(np.float32)
        params[f"b{layer}"] = rng.normal(size=fan_out).astype(np.float32)  # biases != 0
    return {"x": rng.normal(size=(n, height, width, 3)).astype(np.float32), **params}


_THREE_LAYER_FC_BODY = (
    _AS_ARRAYS
    + """
names = ("w1", "b1", "w2", "b2", "w3", "b3")
variables = [tf.Variable(inputs[name]) for name in names]
images = inputs["x"]
rows = images.reshape(len(images), -1)
outputs = {
    "rows": as_array(three_layer_fc(tf.constant(rows), variables)),
    "images": as_array(three_layer_fc(tf.constant(images), variables)),
}
"""
)


def _judge_three_layer_fc(inputs: Inputs, outputs: Inputs) -> str:
    rows = inputs["x"].reshape(len(inputs["x"]), -1)
    expected = _three_layer_logits(inputs)
    what = "three_layer_fc on x of shape {}: relu(relu(x W1 + b1) W2 + b2) W3 + b3"
    return _first_failure([
        (_close(outputs["rows"], expected, rtol=1e-4, atol=1e-5), what.format(rows.shape)),
        (_close(outputs["images"], expected, rtol=1e-4, atol=1e-5),
         what.format(inputs["x"].shape)),
    ])  # fmt: skip


def _draw_three_layer_init(rng: np.random.Generator) -> Inputs:
    return {"hidden_sizes": np.array([int(rng.integers(60, 141)), int(rng.integers(30, 81))])}


_THREE_LAYER_INIT_BODY = (
    _AS_ARRAYS
    + 'params = three_layer_fc_init(hidden_sizes=tuple(int(h) for h in inputs["hidden_sizes"]))'
    + _INIT_OUTPUTS
)


def _judge_three_layer_init(inputs: Inputs, outputs: Inputs) -> str:
    h1, h2 = (int(h) for h in inputs["hidden_sizes"])
    params = _params(outputs)
    expected = [(PIXELS, h1), (h1,), (h1, h2), (h2,), (h2, 10), (10,)]
    shapes = [p.shape for p in params]
    if shapes != expected:
        return f"three_layer_fc_init(({h1}, {h2})) returns six parameters of shapes {expected}"
    conditions = [
        (bool(np.all(outputs["variables"])) and all(p.dtype == np.float32 for p in params),
         "all six are float32 tf.Variable"),
    ]  # fmt: skip
    for layer, (w, b) in enumerate(zip(params[0::2], params[1::2], strict=True), start=1):
        conditions += _kaiming_failures(f"w{layer}", w, rtol=5 / np.sqrt(2 * w.size))
        conditions.append((bool(np.all(b == 0)), f"b{layer} starts at zero"))
    return _first_failure(conditions)


# ----------------------------- 02: evaluate_loss, overfit_tiny_subset, momentum_update
def _draw_evaluate_loss(rng: np.random.Generator) -> Inputs:
    return _draw_training_step(rng)  # the same tiny net; only the learning rate goes unused


_EVALUATE_LOSS_BODY = (
    _AS_ARRAYS
    + _GRADER_TWO_LAYER
    + """

v1, v2 = tf.Variable(inputs["w1"]), tf.Variable(inputs["w2"])
loss = evaluate_loss(model, inputs["x"], inputs["y"], [v1, v2])
outputs = {"loss": as_array(loss), "w1": v1.numpy(), "w2": v2.numpy()}
"""
)


def _judge_evaluate_loss(inputs: Inputs, outputs: Inputs) -> str:
    x, y = inputs["x"].reshape(len(inputs["x"]), -1).astype(np.float64), inputs["y"]
    w1, w2 = inputs["w1"].astype(np.float64), inputs["w2"].astype(np.float64)
    scores = np.maximum(x @ w1, 0) @ w2
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -np.mean(log_probs[np.arange(len(y)), y])
    unchanged = all(np.array_equal(outputs[name], inputs[name]) for name in ("w1", "w2"))
    return _first_failure([
        (_close(outputs["loss"].reshape(()), loss, rtol=1e-4),
         "evaluate_loss returns the mean softmax cross-entropy of the scores (natural log)"),
        (unchanged, "evaluate_loss leaves the weights unchanged"),
    ])  # fmt: skip


OVERFIT_HIDDEN = 500  # the exercise's network: two_layer_fc_init(hidden_size=500)
OVERFIT_FLOOR = 0.95  # the check cell's floor on the training accuracy


def _draw_overfit_tiny_subset(rng: np.random.Generator) -> Inputs:
    # Gaussian images with random labels: nothing but memorising them fits them (a fresh
    # network scores about 1/10, one step or a rate 100x too small under 0.3), and
    # 100 points in 3,072 dimensions are separable, so 50 right steps reach 100%.
    n = int(rng.integers(80, 121))
    return {
        "x": rng.normal(size=(n, 32, 32, 3)).astype(np.float32),
        "y": rng.integers(0, 10, size=n).astype(np.int32),
    }


_OVERFIT_TINY_SUBSET_BODY = (
    _AS_ARRAYS
    + """
params = overfit_tiny_subset(inputs["x"], inputs["y"], num_steps=50, learning_rate=1e-2)
outputs = {f"p{i}": as_array(p) for i, p in enumerate(params)}
"""
)


def _judge_overfit_tiny_subset(inputs: Inputs, outputs: Inputs) -> str:
    params = _params(outputs)
    expected = [(PIXELS, OVERFIT_HIDDEN), (OVERFIT_HIDDEN, 10)]
    if [p.shape for p in params] != expected:
        return f"overfit_tiny_subset returns [w1, w2] of shapes {expected}"
    w1, w2 = (p.astype(np.float64) for p in params)
    x, y = inputs["x"].reshape(len(inputs["x"]), -1).astype(np.float64), inputs["y"]
    accuracy = float(np.mean((np.maximum(x @ w1, 0) @ w2).argmax(axis=1) == y))
    return _first_failure([
        (accuracy >= OVERFIT_FLOOR,
         f"after 50 full-batch steps, the training accuracy on the grader's {len(y)} images "
         f"is at least {OVERFIT_FLOOR} (got {accuracy:.2f})"),
    ])  # fmt: skip


MOMENTUM_STEPS = 4  # enough for the velocity to matter: step 2 on differs from plain SGD


def _draw_momentum_update(rng: np.random.Generator) -> Inputs:
    rows, columns = (int(v) for v in rng.integers(2, 6, size=2))
    shapes = [(rows, columns), (columns,)]  # a weight matrix and a bias
    drawn = {
        "learning_rate": np.array(rng.uniform(0.05, 0.5)),
        "momentum": np.array(rng.uniform(0.5, 0.95)),
    }
    for i, shape in enumerate(shapes):
        drawn[f"w{i}"] = rng.normal(size=shape).astype(np.float32)
        drawn[f"g{i}"] = rng.normal(size=(MOMENTUM_STEPS, *shape)).astype(np.float32)
    return drawn


_MOMENTUM_UPDATE_BODY = (
    _AS_ARRAYS
    + """
names = sorted(name for name in inputs if name.startswith("w"))
params = [tf.Variable(inputs[name]) for name in names]
velocities = [tf.Variable(tf.zeros_like(inputs[name])) for name in names]
rate, mu = float(inputs["learning_rate"]), float(inputs["momentum"])
after = {name: [] for name in names}
for step in range(len(inputs["g0"])):
    grads = [tf.constant(inputs["g" + name[1:]][step]) for name in names]
    momentum_update(params, grads, velocities, rate, mu)
    for name, w in zip(names, params):
        after[name].append(w.numpy())
outputs = {name: numpy.stack(values) for name, values in after.items()}
"""
)


def _judge_momentum_update(inputs: Inputs, outputs: Inputs) -> str:
    rate, mu = float(inputs["learning_rate"]), float(inputs["momentum"])
    names = sorted(name for name in inputs if name.startswith("w"))
    # keras.optimizers.SGD(momentum=mu), nesterov=False: v <- mu v - rate g; w <- w + v
    weights = [inputs[name].astype(np.float64) for name in names]
    velocities = [np.zeros_like(w) for w in weights]
    conditions = []
    for step in range(MOMENTUM_STEPS):
        grads = [inputs["g" + name[1:]][step].astype(np.float64) for name in names]
        velocities = [mu * v - rate * g for v, g in zip(velocities, grads, strict=True)]
        weights = [w + v for w, v in zip(weights, velocities, strict=True)]
        for name, expected in zip(names, weights, strict=True):
            conditions.append((
                _close(outputs[name][step], expected, rtol=1e-5, atol=1e-5),
                f"after step {step + 1}, weight {name[1:]} equals "
                f"keras.optimizers.SGD(momentum={mu:.3f})'s: v <- momentum v - learning_rate g, "
                "w <- w + v",
            ))  # fmt: skip
    return _first_failure(conditions)


# -------------------------------------------------- 03 and 04: three-layer Keras models


def _distinct(rng: np.random.Generator, low: int, high: int, count: int) -> list[int]:
    """``count`` different integers in [low, high): every weight shape differs from the rest."""
    return [int(v) for v in rng.choice(np.arange(low, high), size=count, replace=False)]


@_with_a_negative_logit
def _draw_three_layer_model(rng: np.random.Generator) -> Inputs:
    height, width = (int(v) for v in rng.integers(2, 5, size=2))
    features = height * width * 2
    h1, h2, classes = _distinct(rng, 3, 16, 3)
    while features in (h1, h2, classes):
        features, width = features + height * 2, width + 1
    sizes = [features, h1, h2, classes]
    weights = {}
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes), start=1):
        weights[f"w{layer}"] = rng.normal(0, 1 / np.sqrt(fan_in), (fan_in, fan_out))
        weights[f"b{layer}"] = rng.normal(0, 0.5, fan_out)  # non-zero: a missing bias shows
    return {
        "input_shape": np.array([height, width, 2]),
        "hidden_sizes": np.array([h1, h2]),
        "num_classes": np.array(classes),
        "x": rng.normal(size=(int(rng.integers(4, 9)), height, width, 2)).astype(np.float32),
        **{name: value.astype(np.float32) for name, value in weights.items()},
        "large_input_shape": np.array([int(rng.integers(15, 26)), 40]),
        "large_hidden_sizes": np.array(_distinct(rng, 300, 501, 2)),
        # ~300 classes: with 10, Glorot's sqrt(2 / (fan_in + fan_out)) is within 1.3% of
        # He's sqrt(2 / fan_in) on the output layer, and no test could tell them apart
        "large_classes": np.array(int(rng.integers(250, 351))),
    }


# Kernel-side: ``build(input_shape, hidden_sizes, num_classes)`` is defined before this.
_THREE_LAYER_MODEL_BODY = """
import keras

names = ("w1", "b1", "w2", "b2", "w3", "b3")
shape = tuple(int(v) for v in inputs["input_shape"])
hidden = tuple(int(v) for v in inputs["hidden_sizes"])
model = build(shape, hidden, int(inputs["num_classes"]))
model(inputs["x"][:1])  # a subclassed model makes its weights on its first call
outputs = {
    "kind": numpy.array([
        isinstance(model, keras.Sequential),
        isinstance(model, keras.Model) and bool(getattr(model, "inputs", None)),
        len([layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]),
    ])
}
for index, weight in enumerate(model.trainable_weights):
    outputs[f"shape{index}"] = numpy.array(weight.shape, dtype=numpy.int64)
by_shape = {tuple(weight.shape): weight for weight in model.trainable_weights}
for name in names:  # every shape is different, so the shape says which weight is which
    by_shape[inputs[name].shape].assign(inputs[name])
outputs["scores"] = keras.ops.convert_to_numpy(model(inputs["x"]))
large_shape = tuple(int(v) for v in inputs["large_input_shape"])
large_hidden = tuple(int(v) for v in inputs["large_hidden_sizes"])
large = build(large_shape, large_hidden, int(inputs["large_classes"]))
large(numpy.zeros((1, *large_shape), numpy.float32))
for index, weight in enumerate(large.trainable_weights):
    outputs[f"large{index}"] = keras.ops.convert_to_numpy(weight)
"""


def _three_layer_model_body(build: str) -> str:
    return f"def build(input_shape, hidden_sizes, num_classes):\n    return {build}\n\n" + (
        _THREE_LAYER_MODEL_BODY
    )


def _judge_three_layer_model(kind: str, kaiming_rtol: float, in_order: bool):
    """A judge for ThreeLayerFC (kind "subclassed") or a function building a keras model."""
    names = _THREE_LAYER_NAMES

    def judge(inputs: Inputs, outputs: Inputs) -> str:
        is_sequential, is_functional, dense = (int(v) for v in outputs["kind"])
        expected = [inputs[name].shape for name in names]
        count = len([name for name in outputs if name.startswith("shape")])
        shapes = [tuple(int(v) for v in outputs[f"shape{i}"]) for i in range(count)]
        if not in_order:  # a subclassed model lists its weights in the order it made them
            shapes, expected = sorted(shapes), sorted(expected)
        reference = _three_layer_logits(inputs)
        scores = outputs["scores"]
        # probabilities: no negative score and rows summing to 1 (a negative is not required:
        # the judge takes logits of any weights); a wrong shape is named by its own condition
        probabilities = (
            scores.ndim == 2
            and bool((scores >= 0).all())
            and bool(np.allclose(scores.sum(axis=1), 1.0, atol=1e-3))
        )
        kinds = {
            "subclassed": (dense == 3, "the model has three Dense layers"),
            "sequential": (bool(is_sequential), "it returns a keras.Sequential"),
            "functional": (bool(is_functional) and not is_sequential,
                           "it returns a functional keras.Model, not a keras.Sequential"),
        }  # fmt: skip
        conditions = [
            kinds[kind],
            (shapes == expected, f"its weights (kernel, bias of each Dense layer) have shapes "
                                 f"{[inputs[name].shape for name in names]}"),
            (scores.shape == reference.shape and scores.dtype == np.float32,
             "it returns float32 scores of shape (N, num_classes)"),
            (not probabilities, "the outputs are logits, not probabilities"),
            (_close(scores, reference, rtol=1e-4, atol=1e-4),
             "the forward pass equals relu(relu(x W1 + b1) W2 + b2) W3 + b3"),
        ]  # fmt: skip
        large = [outputs[f"large{i}"] for i in range(6)]
        kernels = [w for w in large if w.ndim == 2]
        classes = int(inputs["large_classes"])
        conditions.append(
            (len(kernels) == 3 and classes in [kernel.shape[1] for kernel in kernels],
             f"{classes} classes give three Dense kernels, one with {classes} outputs")
        )  # fmt: skip
        for index, kernel in enumerate(kernels, start=1):
            conditions.append(
                (_close(kernel.std(), np.sqrt(2 / kernel.shape[0]), rtol=kaiming_rtol, atol=0),
                 f"kernel {index} ({kernel.shape}) starts with std sqrt(2 / fan_in) (Kaiming; "
                 "the output layer too)")
            )  # fmt: skip
        biases = [w for w in large if w.ndim == 1]
        conditions.append((not any(np.any(b) for b in biases), "the biases start at zero"))
        return _first_failure(conditions)

    return judge


# ----------------------------------------------------------------- 03: train_step
def _labels_half_right(w: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Labels that the scores x w + b get right for the first two examples only."""
    predicted = (x @ w + b).argmax(axis=1)
    return np.where(np.arange(len(x)) < 2, predicted, (predicted + 1) % w.shape[1])


def _sgd_step(w, b, x, y, rate):
    """Softmax cross-entropy of x w + b and one SGD step: (w, b, loss, correct), float64."""
    scores = x @ w + b
    probs = np.exp(scores - scores.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = -np.mean(np.log(probs[rows, y]))
    d_scores = probs.copy()
    d_scores[rows, y] -= 1
    d_scores /= len(y)
    correct = scores.argmax(axis=1) == y
    return w - rate * x.T @ d_scores, b - rate * d_scores.sum(axis=0), loss, correct


def _draw_train_step(rng: np.random.Generator) -> Inputs:
    features, classes, n = (int(v) for v in rng.integers([3, 3, 5], [7, 6, 9]))
    w = rng.normal(size=(features, classes)).astype(np.float32)
    b = rng.normal(size=classes).astype(np.float32)
    inputs = {"w": w, "b": b, "learning_rate": np.array(float(rng.uniform(0.1, 1.0)))}
    w, b = w.astype(np.float64), b.astype(np.float64)
    for call in (1, 2):
        x = rng.normal(size=(n, features)).astype(np.float32)
        y = _labels_half_right(w, b, x.astype(np.float64))
        inputs |= {f"x{call}": x, f"y{call}": y.astype(np.int32)}
        w, b, _, _ = _sgd_step(w, b, x.astype(np.float64), y, float(inputs["learning_rate"]))
    return inputs


_TRAIN_STEP_BODY = """
import keras
import tensorflow as tf

flags = []


class Linear(keras.Model):  # the grader's model: scores = x W + b, noting `training`
    def __init__(self, classes):
        super().__init__()
        self.dense = keras.layers.Dense(classes)

    def call(self, x, training=False):
        flags.append(training)
        return self.dense(x)


model = Linear(inputs["w"].shape[1])
model(numpy.zeros((1, inputs["w"].shape[0]), numpy.float32))
model.set_weights([inputs["w"], inputs["b"]])
flags.clear()
optimizer = keras.optimizers.SGD(learning_rate=float(inputs["learning_rate"]))
loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
train_loss = keras.metrics.Mean()
train_accuracy = keras.metrics.SparseCategoricalAccuracy()
outputs = {}
for call in (1, 2):
    x, y = tf.constant(inputs[f"x{call}"]), tf.constant(inputs[f"y{call}"])
    loss = train_step(model, optimizer, loss_fn, x, y, train_loss, train_accuracy)
    outputs[f"loss{call}"] = numpy.asarray(keras.ops.convert_to_numpy(loss))
    outputs[f"flags{call}"] = numpy.array([flag is True for flag in flags] or [False])
    flags.clear()
    outputs[f"w{call}"], outputs[f"b{call}"] = model.get_weights()
outputs["mean_loss"] = keras.ops.convert_to_numpy(train_loss.result())
outputs["accuracy"] = keras.ops.convert_to_numpy(train_accuracy.result())
"""


def _judge_train_step(inputs: Inputs, outputs: Inputs) -> str:
    w, b = inputs["w"].astype(np.float64), inputs["b"].astype(np.float64)
    rate, conditions, losses, corrects = float(inputs["learning_rate"]), [], [], []
    for call in (1, 2):
        x, y = inputs[f"x{call}"].astype(np.float64), inputs[f"y{call}"]
        w, b, loss, correct = _sgd_step(w, b, x, y, rate)
        losses.append(loss)
        corrects.append(correct)
        conditions += [
            (outputs[f"loss{call}"].size == 1
             and _close(outputs[f"loss{call}"].reshape(()), loss, rtol=1e-4, atol=1e-5),
             f"call {call}: train_step returns the softmax cross-entropy before the update"),
            (bool(np.all(outputs[f"flags{call}"])),
             f"call {call}: the forward pass runs with training=True"),
            (_close(np.concatenate([outputs[f"w{call}"].ravel(), outputs[f"b{call}"]]),
                    np.concatenate([w.ravel(), b]), rtol=1e-4, atol=1e-5),
             f"call {call}: the weights moved by one SGD step, w - learning_rate * dL/dw"),
        ]  # fmt: skip
    conditions += [
        (_close(outputs["mean_loss"], np.mean(losses), rtol=1e-4, atol=1e-5),
         "train_loss holds the mean of the two returned losses"),
        (_close(outputs["accuracy"], np.mean(np.concatenate(corrects)), atol=1e-6),
         "train_accuracy holds the accuracy of the two batches' logits"),
    ]  # fmt: skip
    return _first_failure(conditions)


# ------------------------------------------------------------ 04: make_pipeline
def _draw_pipeline(rng: np.random.Generator) -> Inputs:
    size = int(rng.integers(4, 17))
    n = int(rng.integers(100, 201))  # >= 100: a whole-set shuffle shows (see the judge)
    n += 0 if n % size else int(rng.integers(1, size))  # a partial last batch to leave out
    ids = rng.choice(1 << 20, size=n, replace=False)
    labels = rng.choice(1 << 20, size=n, replace=False)
    return {
        "X": np.broadcast_to(ids.astype(np.float32)[:, None, None], (n, 2, 3)).copy(),
        "y": labels.astype(np.int64),
        "batch_size": np.array(size),
        "seeds": rng.choice(1 << 31, size=2, replace=False).astype(np.int64),
    }


_PIPELINE_BODY = """
import itertools
import json

import tensorflow as tf

X, y, size = inputs["X"], inputs["y"], int(inputs["batch_size"])
first_seed, other_seed = (int(seed) for seed in inputs["seeds"])
limit = len(X) + 2  # more batches than examples is wrong; never loop for ever


def epoch(pipeline, key):
    xs, ys, sizes, whole = [], [], [], []
    for x_batch, y_batch in itertools.islice(iter(pipeline), limit):
        x_batch, y_batch = numpy.asarray(x_batch), numpy.asarray(y_batch)
        xs.append(x_batch.reshape(len(x_batch), -1)[:, 0])
        ys.append(y_batch.reshape(-1))
        sizes.append(len(x_batch))
        whole.append(x_batch.shape[1:] == X.shape[1:] and y_batch.shape == (len(x_batch),))
    outputs[key + "_x"] = numpy.concatenate(xs) if xs else numpy.zeros(0)
    outputs[key + "_y"] = numpy.concatenate(ys) if ys else numpy.zeros(0)
    outputs[key + "_sizes"] = numpy.asarray(sizes, dtype=numpy.int64)
    outputs[key + "_whole"] = numpy.asarray(whole, dtype=bool)


pipeline = make_pipeline(X, y, batch_size=size, seed=first_seed)
stages, node = [], pipeline
while node is not None and len(stages) < 100:  # the chain of transformations, last first
    stages.append(type(node).__name__)
    node = getattr(node, "_input_dataset", None)
outputs = {
    "dataset": numpy.array(isinstance(pipeline, tf.data.Dataset)),
    "stages": numpy.frombuffer(json.dumps(stages).encode(), numpy.uint8),
}
epoch(pipeline, "first")
epoch(pipeline, "second")
epoch(make_pipeline(X, y, batch_size=size, seed=first_seed), "again")
epoch(make_pipeline(X, y, batch_size=size, seed=other_seed), "other")
"""


def _judge_pipeline(inputs: Inputs, outputs: Inputs) -> str:
    ids = {float(v): i for i, v in enumerate(inputs["X"][:, 0, 0])}
    labels = {int(v): i for i, v in enumerate(inputs["y"])}
    n, size = len(ids), int(inputs["batch_size"])
    if not bool(outputs["dataset"]):
        return "make_pipeline returns a tf.data.Dataset"
    epochs = {}
    for key in ("first", "second", "again", "other"):
        x = [ids.get(float(v), -1) for v in outputs[f"{key}_x"]]
        y = [labels.get(int(v), -1) for v in outputs[f"{key}_y"]]
        epochs[key] = x, y, [int(s) for s in outputs[f"{key}_sizes"]]
    conditions = []
    for key in ("first", "second"):
        x, y, sizes = epochs[key]
        conditions += [
            (sizes == [size] * (n // size) and bool(np.all(outputs[f"{key}_whole"])),
             f"one epoch of {n} examples in batches of {size} is {n // size} whole batches of "
             f"shape ({size}, 2, 3): the last {n % size} examples are left out"),
            (-1 not in x and len(set(x)) == len(x) and x == y,
             "each example appears at most once per epoch, with its own label"),
        ]  # fmt: skip
    first = epochs["first"][0]
    batches = [sorted(first[start : start + size]) for start in range(0, len(first), size)]
    consecutive = all(b == list(range(b[0], b[0] + len(b))) for b in batches if b)
    # A shuffle buffer of B examples moves an example at most B - 1 places earlier; a
    # uniform shuffle of n >= 100 moves one at least n // 2 places earlier but with
    # probability below 1e-8 (k! k^(n-k) / n! with k = n // 2).
    forward = max((index - place for place, index in enumerate(first)), default=0)
    stages = json.loads(outputs["stages"].tobytes().decode("utf-8"))
    conditions += [
        (not consecutive, "the examples are shuffled, not only the order of the batches"),
        (forward >= n // 2,
         f"the shuffle draws from the whole data set: in an epoch of {n} examples some "
         f"example comes at least {n // 2} places earlier than it is stored (at most "
         f"{forward} here: the shuffle buffer is smaller than the data set)"),
        (epochs["second"][0] != first, "every epoch visits the examples in a new order"),
        (epochs["again"][0] == first and epochs["other"][0] != first,
         "the seed decides the order: the same seed again gives the same epoch, another "
         "seed another"),
        (bool(stages) and "Prefetch" in str(stages[0]),
         f"the last transformation prefetches (the chain, last first: {stages[:6]})"),
    ]  # fmt: skip
    return _first_failure(conditions)


# ------------------------------------------------------- 04: training_callbacks
def _draw_callbacks(rng: np.random.Generator) -> Inputs:
    """Two fits, each with its own patience and scripted validation numbers.

    Returns:
        ``patience`` (2,) int64, two different values in 1..4, so that a fixed patience
        fails one fit; per fit ``r``: ``accuracy{r}`` (E,) float64, the validation
        accuracy of each epoch: rising to a best epoch (2nd to 4th), ``patience`` epochs
        below it, then a better one (which only a longer patience reaches) and a few
        more; ``loss{r}`` (E,) float64, a validation loss that falls every epoch (so
        early stopping on it never stops); ``x`` (16, 4) float32 and ``y`` (16,) int64,
        the tiny model's data.
    """
    patiences = rng.choice(np.arange(1, 5), size=2, replace=False)
    drawn: Inputs = {"patience": patiences.astype(np.int64)}
    for run, patience in enumerate(patiences.tolist()):
        best = int(rng.integers(1, 4))
        rising = np.sort(rng.choice(np.arange(10, 60), size=best + 1, replace=False)) / 100
        below = rising[-1] - rng.integers(1, 10, size=patience) / 100
        better = rising[-1] + rng.integers(1, 20, size=1) / 100
        tail = rng.integers(10, 90, size=int(rng.integers(1, 4))) / 100
        accuracy = np.concatenate([rising, below, better, tail])
        drawn[f"accuracy{run}"] = accuracy
        drawn[f"loss{run}"] = np.sort(rng.uniform(0.5, 2.5, size=len(accuracy)))[::-1].copy()
    drawn["x"] = rng.normal(size=(16, 4)).astype(np.float32)
    drawn["y"] = rng.integers(0, 3, size=16).astype(np.int64)
    return drawn


_CALLBACKS_BODY = """
import os

import keras


class Scripted(keras.callbacks.Callback):  # the grader's, called first: epoch e's numbers
    def __init__(self, accuracy, loss):
        super().__init__()
        self.accuracy, self.loss = accuracy, loss

    def on_epoch_end(self, epoch, logs=None):  # the weights of epoch e are e + 1 everywhere
        weights = self.model.get_weights()
        self.model.set_weights([numpy.full(w.shape, epoch + 1.0) for w in weights])
        logs["val_accuracy"] = float(self.accuracy[epoch])
        logs["val_loss"] = float(self.loss[epoch])


def flat(model):
    return numpy.concatenate([numpy.ravel(w) for w in model.get_weights()])


outputs = {}
for run, patience in enumerate(inputs["patience"].tolist()):
    path = os.path.join(folder, f"best{run}.keras")
    callbacks = training_callbacks(path, patience=int(patience))
    form = isinstance(callbacks, (list, tuple)) and len(callbacks) == 2 and all(
        isinstance(callback, keras.callbacks.Callback) for callback in callbacks
    )
    outputs[f"form{run}"] = numpy.array(form)
    if not form:
        continue
    model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(3)])
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    accuracy, loss = inputs[f"accuracy{run}"], inputs[f"loss{run}"]
    fitted = model.fit(
        inputs["x"], inputs["y"], epochs=len(accuracy), batch_size=16, verbose=0,
        validation_data=(inputs["x"], inputs["y"]),
        callbacks=[Scripted(accuracy, loss), *callbacks],
    )
    outputs[f"epochs{run}"] = numpy.array(len(fitted.history["loss"]))
    outputs[f"final{run}"] = flat(model)
    saved = numpy.zeros(0)
    if os.path.isfile(path):
        saved = flat(keras.models.load_model(path, compile=False))
    outputs[f"saved{run}"] = saved
"""


def _early_stopping(accuracy: np.ndarray, patience: int) -> tuple[int, int]:
    """Epochs run and best epoch (1-based) of early stopping on a higher-is-better metric.

    Args:
        accuracy: float array (E,), the metric after each epoch.
        patience: epochs without a strictly better value before training stops.

    Returns:
        (epochs run, best epoch), as Keras' ``EarlyStopping`` (``min_delta=0``) has them.
    """
    best, wait = 0, 0
    for epoch in range(1, len(accuracy)):
        if accuracy[epoch] > accuracy[best]:
            best, wait = epoch, 0
            continue
        wait += 1
        if wait >= patience:
            return epoch + 1, best + 1
    return len(accuracy), best + 1


def _judge_callbacks(inputs: Inputs, outputs: Inputs) -> str:
    conditions = []
    for run, patience in enumerate(inputs["patience"].tolist()):
        if not bool(outputs[f"form{run}"]):
            return "training_callbacks returns a list of two Keras callbacks"
        accuracy = inputs[f"accuracy{run}"]
        stop, best = _early_stopping(accuracy, patience)
        shown = ", ".join(f"{value:.2f}" for value in accuracy)
        final, saved = outputs[f"final{run}"], outputs[f"saved{run}"]
        conditions += [
            (int(outputs[f"epochs{run}"]) == stop,
             f"validation accuracies {shown} with patience {patience}: best at epoch {best}, "
             f"then {patience} epoch(s) without improvement, so training stops after epoch "
             f"{stop} (it ran {int(outputs[f'epochs{run}'])})"),
            (final.size > 0 and bool(np.all(final == best)),
             f"after fit, the model holds the weights of its best epoch ({best})"),
            (saved.size > 0, "a checkpoint was written to checkpoint_path"),
            (saved.size > 0 and bool(np.all(saved == best)),
             f"the checkpoint holds the best epoch's model (epoch {best}), not a later one"),
        ]  # fmt: skip
    return _first_failure(conditions)


# ---------------------------------------------------- 04: first_layer_templates
def _draw_templates(rng: np.random.Generator) -> Inputs:
    rows, columns = _distinct(rng, 2, 7, 2)  # not square: rows and columns swapped show
    channels = int(rng.integers(2, 5))
    return {
        "kernel": rng.normal(size=(PIXELS, int(rng.integers(2, 13)))).astype(np.float32),
        "small_kernel": rng.normal(
            size=(rows * columns * channels, int(rng.integers(2, 9)))
        ).astype(np.float32),
        "small_shape": np.array([rows, columns, channels]),
    }


_TEMPLATES_BODY = """
outputs = {
    "templates": first_layer_templates(inputs["kernel"].copy(), (32, 32, 3)),
    "small": first_layer_templates(
        inputs["small_kernel"].copy(), tuple(int(v) for v in inputs["small_shape"])
    ),
}
"""


def _judge_templates(inputs: Inputs, outputs: Inputs) -> str:
    conditions = []
    for name, kernel, shape in (
        ("templates", inputs["kernel"], (32, 32, 3)),
        ("small", inputs["small_kernel"], tuple(int(v) for v in inputs["small_shape"])),
    ):
        units, found = kernel.shape[1], outputs[name]
        expected = kernel.T.reshape(units, *shape)  # Flatten reads an example row-major
        conditions += [
            (found.shape == expected.shape,
             f"a kernel {kernel.shape} for images {shape} gives {units} templates of shape "
             f"{shape} (got {found.shape})"),
            (_close(found, expected),
             f"for images {shape}, template h puts unit h's weights on the pixel and channel "
             "each multiplies: (templates[h] * x).sum() equals (Flatten(x) @ kernel)[h]"),
        ]  # fmt: skip
    return _first_failure(conditions)


# ---------------------------------------------------------------- 05: build_network
FIRST_ACTIVATIONS = ("relu", "tanh")  # the first net's, with the grader's weights, no batch norm
# The grid: every activation build_network may be asked for (a test holds these against the
# notebook's check cell) with every batch-norm placement, as the notebook's check builds them.
GRID_ACTIVATIONS = ("relu", "leaky_relu", "elu", "selu", "gelu", "tanh", "prelu")
GRID_PLACES = ("none", "before", "after")
HE_RTOL = 0.15  # the check's tolerance on the standard deviation of a he_normal kernel


def _draw_build_network(rng: np.random.Generator) -> Inputs:
    depth = int(rng.integers(1, 4))
    hidden = [int(v) for v in rng.integers(4, 25, size=depth)]
    sizes = [PIXELS, *hidden, 10]
    weights = {}
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        weights[f"w{layer}"] = rng.normal(0, 1 / np.sqrt(fan_in), (fan_in, fan_out))
        weights[f"b{layer}"] = rng.normal(0, 0.5, fan_out)
    return {
        "hidden_sizes": np.array(hidden),
        "activation": np.array(int(rng.integers(len(FIRST_ACTIVATIONS)))),
        "x": rng.normal(size=(int(rng.integers(3, 8)), 32, 32, 3)).astype(np.float32),
        **{name: value.astype(np.float32) for name, value in weights.items()},
        "he_width": np.array(int(rng.integers(300, 501))),
        "dropout": np.array(float(rng.choice([0.1, 0.2, 0.25, 0.3, 0.5]))),
        "l2": np.array(float(rng.uniform(1e-4, 1e-2))),
        **_draw_network_grid(rng),
    }


def _draw_network_grid(rng: np.random.Generator) -> Inputs:
    """Every activation x every batch-norm placement, with the grader's weights for each.

    Returns:
        ``grid`` (C, 2) int64: activation index (:data:`GRID_ACTIVATIONS`), placement index
        (:data:`GRID_PLACES`); per config ``i``: ``g{i}_hidden`` (depth,) int64;
        ``g{i}_w{j}`` / ``g{i}_b{j}`` float32 Dense kernels and biases; ``g{i}_bn{j}``
        (4, size) float32 batch-norm moving mean, moving variance, gamma, beta (far from
        the identity, so they count); ``g{i}_alpha{j}`` (units,) float32 PReLU slopes (far
        from 0, so PReLU is not ReLU); a PReLU with one shared slope gets the first.
    """
    drawn: Inputs = {}
    rows = []
    for index, (activation, place) in enumerate(
        itertools.product(range(len(GRID_ACTIVATIONS)), range(len(GRID_PLACES)))
    ):
        rows.append((activation, place))
        hidden = [int(v) for v in rng.integers(4, 13, size=int(rng.integers(1, 3)))]
        drawn[f"g{index}_hidden"] = np.array(hidden, np.int64)
        shapes = zip((PIXELS, *hidden), (*hidden, 10), strict=True)
        for layer, (fan_in, fan_out) in enumerate(shapes):
            drawn[f"g{index}_w{layer}"] = rng.normal(0, 1 / np.sqrt(fan_in), (fan_in, fan_out))
            drawn[f"g{index}_b{layer}"] = rng.normal(0, 0.5, fan_out)
        sizes = [] if GRID_PLACES[place] == "none" else hidden
        for layer, size in enumerate(sizes):
            drawn[f"g{index}_bn{layer}"] = np.stack([
                rng.normal(0.0, 0.5, size), rng.uniform(0.5, 2.0, size),
                rng.uniform(-1.0, 1.5, size), rng.uniform(-1.0, 1.5, size),
            ])  # fmt: skip
        if GRID_ACTIVATIONS[activation] == "prelu":
            for layer, units in enumerate(hidden):
                drawn[f"g{index}_alpha{layer}"] = rng.uniform(0.1, 0.5, units)
    drawn = {n: v if n.endswith("_hidden") else v.astype(np.float32) for n, v in drawn.items()}
    return {"grid": np.array(rows, np.int64), **drawn}


# Every call names every argument, as the check's calls do: a network whose defaults differ
# from the exercise's is judged on what it is asked for.
_BUILD_NETWORK_BODY = """
import json

import keras

import cifar_lab

ASKED = {"activation": "relu", "initializer": "glorot_uniform", "batch_norm": "none",
         "dropout": 0.0, "l2": 0.0}


def layers_of(model, kind):
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += layers_of(layer, kind)
        elif isinstance(layer, kind):
            found.append(layer)
    return found


def built(hidden_sizes, **options):
    model = build_network(tuple(int(v) for v in hidden_sizes), **{**ASKED, **options})
    model(x, training=False)  # builds a subclassed model's weights too
    return model


def kernels(model):
    return [keras.ops.convert_to_numpy(d.kernel) for d in layers_of(model, keras.layers.Dense)]


x = inputs["x"]
activation = ("relu", "tanh")[int(inputs["activation"])]
model = built(inputs["hidden_sizes"], activation=activation)
dense = layers_of(model, keras.layers.Dense)
extra = layers_of(model, keras.layers.BatchNormalization) + layers_of(model, keras.layers.Dropout)
outputs = {
    "model": numpy.array([
        isinstance(model, keras.Model), len(cifar_lab.convolution_layers(model)), len(extra)
    ]),
}
for index, layer in enumerate(dense):
    outputs[f"kernel_shape{index}"] = numpy.array(layer.kernel.shape, dtype=numpy.int64)
    outputs[f"use_bias{index}"] = numpy.array(bool(layer.use_bias))
    if tuple(layer.kernel.shape) == inputs.get(f"w{index}", numpy.zeros(0)).shape:
        layer.kernel.assign(inputs[f"w{index}"])  # the grader's weights
        if layer.use_bias:
            layer.bias.assign(inputs[f"b{index}"])
outputs["logits"] = keras.ops.convert_to_numpy(model(x, training=False))
for index, kernel in enumerate(kernels(built((16, 8), initializer="zeros"))):
    outputs[f"zeros{index}"] = kernel
for index, kernel in enumerate(kernels(built((int(inputs["he_width"]),),
                                             initializer="he_normal"))):
    outputs[f"he{index}"] = kernel
rate = float(inputs["dropout"])
normed = built((16, 8), batch_norm="before", dropout=rate)
outputs["norms"] = numpy.array(len(layers_of(normed, keras.layers.BatchNormalization)))
outputs["rates"] = numpy.array([d.rate for d in layers_of(normed, keras.layers.Dropout)])
penalised = built((16,), l2=float(inputs["l2"]))
outputs["penalty"] = numpy.array(
    float(sum(numpy.sum(keras.ops.convert_to_numpy(loss)) for loss in penalised.losses))
)
for index, kernel in enumerate(kernels(penalised)):
    outputs[f"penalised{index}"] = kernel
# The grid: each config's layers (as JSON text) and its logits with the grader's weights,
# batch-norm statistics and PReLU slopes assigned where the shapes fit.
structures = []
for index, (activation, place) in enumerate(inputs["grid"].tolist()):
    model = built(inputs[f"g{index}_hidden"], activation={activations!r}[activation],
                  batch_norm={places!r}[place])
    dense = layers_of(model, keras.layers.Dense)
    norms = layers_of(model, keras.layers.BatchNormalization)
    prelus = layers_of(model, keras.layers.PReLU)
    for layer, weight in enumerate(dense):
        kernel = inputs.get(f"g{index}_w{layer}", numpy.zeros(0))
        if tuple(weight.kernel.shape) == kernel.shape:
            weight.kernel.assign(kernel)
            if weight.use_bias:
                weight.bias.assign(inputs[f"g{index}_b{layer}"])
    for layer, norm in enumerate(norms):
        stats = inputs.get(f"g{index}_bn{layer}", numpy.zeros((4, 0)))
        if tuple(norm.moving_mean.shape) == stats.shape[1:]:
            norm.moving_mean.assign(stats[0])
            norm.moving_variance.assign(stats[1])
            for weight, values in ((norm.gamma, stats[2]), (norm.beta, stats[3])):
                if weight is not None:
                    weight.assign(values)
    for layer, prelu in enumerate(prelus):
        alpha = inputs.get(f"g{index}_alpha{layer}", numpy.zeros(0))
        if tuple(prelu.alpha.shape) == alpha.shape:
            prelu.alpha.assign(alpha)
        elif tuple(prelu.alpha.shape) == (1,) and alpha.size:  # one slope shared by the layer
            prelu.alpha.assign(alpha[:1])
    outputs[f"grid{index}"] = keras.ops.convert_to_numpy(model(x, training=False))
    structures.append({
        "kernels": [[int(d) for d in weight.kernel.shape] for weight in dense],
        "use_bias": [bool(weight.use_bias) for weight in dense],
        "norms": [[int(n.moving_mean.shape[-1]), n.gamma is not None, n.beta is not None,
                   float(n.epsilon)] for n in norms],
        "prelus": [[int(d) for d in p.alpha.shape] for p in prelus],
        "slopes": [float(l.negative_slope) for l in layers_of(model, keras.layers.LeakyReLU)],
    })
outputs["grid_layers"] = numpy.frombuffer(json.dumps(structures).encode(), numpy.uint8)
""".replace("{activations!r}", repr(GRID_ACTIVATIONS)).replace("{places!r}", repr(GRID_PLACES))


def _numbered(outputs: Inputs, prefix: str) -> list[np.ndarray]:
    """``outputs[prefix + "0"]``, ``outputs[prefix + "1"]``, ... while they exist."""
    found = []
    while f"{prefix}{len(found)}" in outputs:
        found.append(outputs[f"{prefix}{len(found)}"])
    return found


def _grid_activation(h: np.ndarray, activation: str, slope, alpha, exact: bool) -> np.ndarray:
    """``activation`` on float64 pre-activations h (N, F)."""
    positive, negative = np.maximum(h, 0.0), np.minimum(h, 0.0)
    if activation == "relu":
        return positive
    if activation == "leaky_relu":
        return positive + slope * negative
    if activation == "prelu":
        return positive + alpha * negative
    if activation == "elu":
        return positive + np.expm1(negative)
    if activation == "selu":
        return 1.0507009873554805 * (positive + 1.6732632423543772 * np.expm1(negative))
    if activation == "gelu":  # Keras's default is exact; its tanh form is accepted too
        if exact:
            return 0.5 * h * (1.0 + np.vectorize(math.erf)(h / math.sqrt(2.0)))
        return 0.5 * h * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * h**3)))
    if activation == "tanh":
        return np.tanh(h)
    raise ValueError(f"no activation {activation!r}")


def _grid_logits(inputs: Inputs, index: int, layers: dict, exact: bool) -> np.ndarray:
    """The grader's float64 logits (N, 10) of grid config ``index``, with its own weights.

    Per hidden layer: Dense, [batch norm before], activation, [batch norm after]; then
    Dense(10). Biases, gamma and beta only where the student's layers have them.
    """
    activation, place = (int(v) for v in inputs["grid"][index])
    name, where = GRID_ACTIVATIONS[activation], GRID_PLACES[place]
    hidden = inputs[f"g{index}_hidden"]

    def affine(h, layer):
        h = h @ inputs[f"g{index}_w{layer}"].astype(np.float64)
        bias = inputs[f"g{index}_b{layer}"].astype(np.float64)
        return h + bias if layers["use_bias"][layer] else h

    def normalise(h, layer):
        mean, variance, gamma, beta = inputs[f"g{index}_bn{layer}"].astype(np.float64)
        _, has_gamma, has_beta, epsilon = layers["norms"][layer]
        h = (h - mean) / np.sqrt(variance + float(epsilon))
        h = h * gamma if has_gamma else h
        return h + beta if has_beta else h

    h = inputs["x"].reshape(len(inputs["x"]), -1).astype(np.float64)
    for layer in range(len(hidden)):
        h = affine(h, layer)
        h = normalise(h, layer) if where == "before" else h
        # Activation("leaky_relu") has Keras's slope 0.2; a LeakyReLU layer has its own
        slope = layers["slopes"][layer] if len(layers["slopes"]) > layer else 0.2
        alpha = inputs.get(f"g{index}_alpha{layer}")
        if name == "prelu" and layers["prelus"][layer] == [1]:  # shared: the kernel got alpha[:1]
            alpha = alpha[:1]
        h = _grid_activation(h, name, slope, alpha, exact)
        h = normalise(h, layer) if where == "after" else h
    return affine(h, len(hidden))


def _prelu_shapes_fit(shapes: list, hidden: list[int]) -> bool:
    """One PReLU per hidden layer, each with a slope per unit or one shared slope.

    The notebook's check accepts both (PReLU's channel-wise and channel-shared forms;
    ``keras.layers.PReLU(shared_axes=[1])`` after a Dense layer is the shared one), and so
    does the grader: a shared slope gets the first of the grader's drawn slopes.
    """
    return len(shapes) == len(hidden) and all(
        shape in ([units], [1]) for shape, units in zip(shapes, hidden, strict=True)
    )


def _grid_failures(inputs: Inputs, outputs: Inputs) -> list[str]:
    """What each grid config's network gets wrong: "activation with batch_norm=...: why"."""
    structures = json.loads(outputs["grid_layers"].astype(np.uint8).tobytes().decode("utf-8"))
    rows = inputs["grid"]
    if not isinstance(structures, list) or len(structures) != len(rows):
        return [f"{len(rows)} grid networks built"]
    failures = []
    for index, layers in enumerate(structures):
        activation, place = (int(v) for v in rows[index])
        name, where = GRID_ACTIVATIONS[activation], GRID_PLACES[place]
        hidden = [int(v) for v in inputs[f"g{index}_hidden"]]
        expected = [list(shape) for shape in zip((PIXELS, *hidden), (*hidden, 10), strict=True)]
        wanted = [] if where == "none" else hidden
        norms = [int(norm[0]) for norm in layers["norms"]]
        slopes = [float(slope) for slope in layers["slopes"]]
        logits = outputs[f"grid{index}"]
        problem = _first_failure([
            (layers["kernels"] == expected,
             f"Dense kernels {layers['kernels']}, expected {expected}"),
            (norms == wanted,
             f"BatchNormalization layers of sizes {norms}, expected {wanted} (one per hidden "
             f"layer, {where} the activation)"),
            (all(0 <= float(norm[3]) <= 0.1 for norm in layers["norms"]),
             "batch norm's epsilon is between 0 and 0.1"),
            (name != "prelu" or _prelu_shapes_fit(layers["prelus"], hidden),
             f"PReLU layers of slope shapes {layers['prelus']}, expected one PReLU per hidden "
             f"layer with a learned slope per unit {[[units] for units in hidden]} or one "
             "shared slope [1] (shared_axes=[1])"),
            (all(0 < slope < 1 for slope in slopes),
             f"leaky ReLU slopes {slopes}: a leaky ReLU's slope is between 0 and 1"),
            (logits.shape == (len(inputs["x"]), 10) and logits.dtype == np.float32,
             f"float32 logits of shape ({len(inputs['x'])}, 10), got {logits.dtype} "
             f"{logits.shape}"),
        ])  # fmt: skip
        if not problem:
            found = logits.astype(np.float64)
            error = min(
                float(np.abs(found - _grid_logits(inputs, index, layers, exact)).max())
                for exact in ((True, False) if name == "gelu" else (True,))
            )
            if not error <= 1e-4 + 1e-3 * float(np.abs(found).max()):
                problem = f"logits differ from the grader's forward pass by up to {error:.3g}"
        if problem:
            failures.append(f"{name} with batch_norm={where!r}: {problem}")
    return failures


def _he_failures(kernels: list[np.ndarray], width: int) -> list[tuple[bool, str]]:
    """initializer='he_normal' on every Dense layer of a (width,) net, the output layer's too."""
    shapes = [tuple(kernel.shape) for kernel in kernels]
    conditions = [
        (shapes == [(PIXELS, width), (width, 10)],
         f"hidden_sizes=({width},) gives Dense kernels {[(PIXELS, width), (width, 10)]}"),
    ]  # fmt: skip
    for index, kernel in enumerate(kernels if conditions[0][0] else []):
        fan_in = kernel.shape[0]
        conditions.append(
            (_close(kernel.astype(np.float64).std(), np.sqrt(2 / fan_in), rtol=HE_RTOL, atol=0),
             f"initializer='he_normal': Dense layer {index}'s kernel has std sqrt(2 / {fan_in})")
        )  # fmt: skip
    return conditions


def _judge_build_network(inputs: Inputs, outputs: Inputs) -> str:
    is_model, convolutions, extra = (int(v) for v in outputs["model"])
    hidden = [int(v) for v in inputs["hidden_sizes"]]
    activation = FIRST_ACTIVATIONS[int(inputs["activation"])]
    expected = list(itertools.pairwise([PIXELS, *hidden, 10]))
    shapes = [tuple(int(v) for v in shape) for shape in _numbered(outputs, "kernel_shape")]
    use_bias = [bool(flag) for flag in _numbered(outputs, "use_bias")]
    h = inputs["x"].reshape(len(inputs["x"]), -1).astype(np.float64)
    for index in range(len(expected)):
        h = h @ inputs[f"w{index}"].astype(np.float64)
        h = h + inputs[f"b{index}"] if index < len(use_bias) and use_bias[index] else h
        if index < len(expected) - 1:
            h = np.maximum(h, 0.0) if activation == "relu" else np.tanh(h)
    logits = outputs["logits"]
    rate = float(inputs["dropout"])
    penalised = _numbered(outputs, "penalised")
    penalty = float(inputs["l2"]) * sum(
        float(np.sum(w.astype(np.float64) ** 2)) for w in penalised
    )
    zeros = _numbered(outputs, "zeros")
    grid = _grid_failures(inputs, outputs)
    return _first_failure([
        (bool(is_model), "build_network returns a keras.Model"),
        (convolutions == 0, "the network has no convolution layers"),
        (shapes == expected, f"hidden_sizes={tuple(hidden)} gives Dense kernels {expected}"),
        (logits.shape == h.shape and logits.dtype == np.float32,
         f"{len(h)} images give float32 logits of shape ({len(h)}, 10)"),
        (_close(logits, h, rtol=1e-3, atol=1e-4),
         f"{activation} net {tuple(hidden)}: logits = x @ W + b with {activation} between layers"),
        (extra == 0, "batch_norm='none' and dropout=0 add no BatchNormalization or Dropout"),
        (len(zeros) == 3 and not any(np.any(w) for w in zeros),
         "initializer='zeros' makes every Dense kernel zero, the output layer's too"),
        *_he_failures(_numbered(outputs, "he"), int(inputs["he_width"])),
        (int(outputs["norms"]) == 2,
         "batch_norm='before' gives one BatchNormalization per hidden layer"),
        (_close(outputs["rates"], [rate, rate]),
         f"dropout={rate} gives Dropout({rate}) after each hidden layer"),
        (len(penalised) == 2 and _close(outputs["penalty"].reshape(()), penalty, rtol=1e-4),
         "l2 adds the penalty l2 * sum(W**2) over every Dense kernel to model.losses"),
        (not grid, f"the {len(GRID_ACTIVATIONS)} activations x batch_norm {GRID_PLACES}: logits "
                   "equal the grader's forward pass (random batch-norm statistics and PReLU "
                   f"slopes): {'; '.join(grid[:3])}"
                   + (f" (and {len(grid) - 3} more)" if len(grid) > 3 else "")),
    ])  # fmt: skip


# ---------------------------------------------------------------- 05: train_network
# The check's numbers: a (256,) network fits 100 images (batch 20, Adam at 1e-3) to 95%;
# every optimiser name at learning rate 0 moves no weight and compiles the Keras class named;
# augment=True trained twice under one seed (a (32,) network, 3 epochs of 10 batches of 15)
# gives the same weights, and other weights than augment=False. Re-execution compares every
# recorded number within 0.02, so training must repeat itself: the usual way it does not is
# Keras's random layers in a map with num_parallel_calls, whose batches race for the
# layers' random state (at these sizes 30 of 30 repeats differed from the first run; the
# right answer's, one batch at a time, 0 of 20). The grader draws the images (Gaussian
# noise, which a network memorises as readily as photographs), their labels, the number of
# epochs and the augmentation's seed.
TINY_IMAGES, TINY_VALIDATION, TINY_BATCH = 100, 50, 20
AUGMENT_EPOCHS, AUGMENT_BATCH = 3, 15  # on all TINY_IMAGES + TINY_VALIDATION images
FIT_FLOOR = 0.95
OPTIMIZER_CLASSES = {"sgd": "SGD", "momentum": "SGD", "rmsprop": "RMSprop", "adam": "Adam",
                     "adamw": "AdamW"}  # fmt: skip


def _draw_train_network(rng: np.random.Generator) -> Inputs:
    count = TINY_IMAGES + TINY_VALIDATION
    return {
        "x": rng.normal(size=(count, 32, 32, 3)).astype(np.float32),
        "y": rng.integers(0, 10, count).astype(np.int64),
        "epochs": np.array(int(rng.integers(36, 45))),
        "augment_seed": np.array(int(rng.integers(0, 1_000))),
    }


_TRAIN_NETWORK_BODY = f"""
import keras

x, y = inputs["x"], inputs["y"]
tiny_x, tiny_y = x[:{TINY_IMAGES}], y[:{TINY_IMAGES}]
epochs = int(inputs["epochs"])
keras.utils.set_random_seed(0)
small = build_network((256,))
history = train_network(small, tiny_x, tiny_y, learning_rate=1e-3, epochs=epochs,
                        optimizer="adam", batch_size={TINY_BATCH},
                        validation=(x[{TINY_IMAGES}:], y[{TINY_IMAGES}:]))
curves = getattr(history, "history", None)
curves = curves if isinstance(curves, dict) else {{}}
outputs = {{
    "history": numpy.array([
        isinstance(history, keras.callbacks.History), len(getattr(history, "epoch", ()) or ()),
        len(curves.get("accuracy", ())), len(curves.get("val_accuracy", ())),
    ], numpy.int64),
    "predicted": numpy.asarray(small.predict(tiny_x, verbose=0)).argmax(axis=1).astype(int),
}}
moved, used, momenta = [], [], []
for name in {tuple(OPTIMIZER_CLASSES)!r}:
    keras.utils.set_random_seed(0)
    frozen = build_network((32,))
    frozen(tiny_x[:1])
    before = [numpy.array(w) for w in frozen.get_weights()]
    train_network(frozen, tiny_x, tiny_y, learning_rate=0.0, epochs=1, optimizer=name,
                  batch_size=50)
    moved.append(max(float(numpy.abs(numpy.asarray(a) - b).max())
                     for a, b in zip(frozen.get_weights(), before, strict=True)))
    used.append(str(type(frozen.optimizer).__name__))
    momenta.append(float(getattr(frozen.optimizer, "momentum", 0.0) or 0.0))
outputs["moved"] = numpy.array(moved, numpy.float64)
outputs["optimizers"] = numpy.array(used, dtype=str)
outputs["momentum"] = numpy.array(momenta, numpy.float64)

def trained_weights(augment):
    keras.utils.set_random_seed(0)
    network = build_network((32,))
    train_network(network, x, y, learning_rate=1e-3, epochs={AUGMENT_EPOCHS},
                  batch_size={AUGMENT_BATCH}, augment=augment, seed=int(inputs["augment_seed"]))
    return [numpy.asarray(w) for w in network.get_weights()]

def largest_difference(first, second):
    return max(float(numpy.abs(a - b).max()) for a, b in zip(first, second, strict=True))

augmented = trained_weights(True)
outputs["augment"] = numpy.array([
    largest_difference(augmented, trained_weights(True)),
    largest_difference(augmented, trained_weights(False)),
], numpy.float64)
"""


def _judge_train_network(inputs: Inputs, outputs: Inputs) -> str:
    is_history, epochs, accuracies, validated = (int(v) for v in outputs["history"])
    wanted = int(inputs["epochs"])
    labels, predicted = inputs["y"][:TINY_IMAGES], outputs["predicted"]
    fits = predicted.shape == labels.shape and np.issubdtype(predicted.dtype, np.integer)
    fit = accuracy(labels, predicted) if fits else float("nan")
    moved, momenta = outputs["moved"], outputs["momentum"]
    used = outputs["optimizers"]
    names = list(OPTIMIZER_CLASSES)
    conditions = [
        (bool(is_history), "train_network returns the History that model.fit returned"),
        (epochs == wanted and accuracies == wanted,
         f"epochs={wanted} trains {wanted} epochs, with the training accuracy of each "
         f"(history['accuracy']): got {epochs} epochs, {accuracies} accuracies"),
        (validated == wanted,
         "validation=(X_val, y_val) is measured after every epoch (history['val_accuracy'])"),
        (fit >= FIT_FLOOR,
         f"a (256,) network trained {wanted} epochs on the grader's {TINY_IMAGES} images fits "
         f"them: training accuracy {fit:.3f}, below {FIT_FLOOR}"),
        (moved.shape == (len(names),) and used.shape == (len(names),) and used.dtype.kind == "U"
         and momenta.shape == (len(names),),
         f"one result per optimiser name {names}"),
    ]  # fmt: skip
    again, unaugmented = (float(v) for v in outputs["augment"].reshape(2))
    conditions += [
        (again == 0.0,
         "augment=True trained twice with the same seed gives the same weights (the grader "
         "re-runs the notebook and compares its numbers; a map with num_parallel_calls races "
         f"for the random layers' state): a weight differs by {again:.3g}"),
        (unaugmented > 0.0,
         "augment=True changes the training (other weights than augment=False)"),
    ]  # fmt: skip
    if not all(holds for holds, _ in conditions):
        return _first_failure(conditions)
    for name, shift, kind, momentum in zip(names, moved, used, momenta, strict=True):
        wanted_kind = OPTIMIZER_CLASSES[name]
        with_momentum = " with momentum" if name == "momentum" else ""
        right = (
            kind == wanted_kind
            and (name != "sgd" or momentum == 0)
            and (name != "momentum" or momentum > 0)
        )
        conditions += [
            (shift == 0.0, f"optimizer={name!r} with learning_rate=0 leaves every weight "
                           f"unchanged: a weight moved by {shift:.3g}"),
            (right, f"optimizer={name!r} compiles keras.optimizers.{wanted_kind}{with_momentum}"
                    + (" without momentum" if name == "sgd" else "")
                    + f": got {kind} (momentum {momentum:g})"),
        ]  # fmt: skip
    return _first_failure(conditions)


# ------------------------------------------------------------- 05: the five searches
# A search exercise runs an Optuna study and returns it. The kernel calls the search on
# inputs the grader drew (`tuned`, `top`, `best`: results of earlier searches it has never
# seen) with two stand-ins bound in the search's namespace while it runs:
#
# * ``train_network``: no training; a History of made-up accuracies (a hash of the model's
#   layers and the training arguments), handed to the callbacks (a pruner's) epoch by
#   epoch as fit does. The studies must hold the trials the check asks for, whatever the
#   accuracies; the notebook's own run trained them for real.
# * ``lab`` (and any other name for cifar_lab, or for its create_study): the same, except
#   that ``create_study`` writes its study into the probe's own folder (removed after), so
#   the student's studies in runs/ stay as they were.
#
# The kernel returns each trial's state and the values the check reads (its params and
# user attributes under the check's names) as JSON text, at most MAX_SEARCH_TRIALS trials;
# the grader rebuilds them and applies the check cell's rules (cifar_lab.tuning.studies).
MAX_SEARCH_TRIALS = 1000  # a study with more is refused (a search runs tens of trials)
MAX_SEARCH_BYTES = 8 * MEGABYTE  # the JSON text of the trials
MAX_STAND_IN_EPOCHS = 10_000  # the stand-in's epochs (callbacks only, no training)
SEARCH_KEYS = ("architecture", "learning_rate", "activation", "initializer", "batch_norm",
               "optimizer", "regulariser")  # fmt: skip
SEARCH_OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")  # the optimiser search's four
REGULARISERS = ("none", "l2", "dropout", "batch_norm", "augmentation")
# what the grader draws for `tuned`, `top` and `best` (zeros never wins a search)
WIDTHS = (16, 32, 48, 64, 96, 128, 192, 256)
INITIALIZERS = ("uniform", "normal", "lecun_uniform", "lecun_normal", "glorot_uniform",
                "glorot_normal", "he_uniform", "he_normal")  # fmt: skip

_SEARCH_BODY = """
import contextlib
import json
import types
import zlib

import keras
import optuna

from cifar_lab.tuning.studies import create_study as course_create_study

scratch = folder + "/runs"


def create_study(name, *args, **options):
    options["runs_dir"] = scratch  # not the student's runs/
    return course_create_study(name, *args, **options)


def scratch_lab(original):
    class ScratchLab(types.ModuleType):
        def __getattr__(self, attribute):
            return getattr(original, attribute)

    proxy = ScratchLab("cifar_lab")
    proxy.create_study = create_study
    return proxy


def train_network(model, X=None, y=None, *args, epochs=1, validation=None, callbacks=(),
                  **options):
    layers = []
    for layer in getattr(model, "layers", ()):
        try:
            config = dict(layer.get_config())
        except Exception:
            config = {}
        config.pop("name", None)
        layers.append((type(layer).__name__, repr(sorted(config.items(), key=str))))
    key = repr((layers, sorted((str(k), repr(v)) for k, v in options.items()), epochs))
    score = 0.15 + 0.3 * (zlib.crc32(key.encode()) % 1000) / 1000
    with contextlib.suppress(Exception):  # evaluate() works after it, as after a fit
        model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    if isinstance(callbacks, keras.callbacks.Callback):
        callbacks = [callbacks]
    history = keras.callbacks.History()
    listeners = [history, *list(callbacks or ())]
    epochs = max(0, min(int(epochs), {max_epochs}))
    for callback in listeners:
        callback.set_model(model)
        callback.set_params({"verbose": 0, "epochs": epochs, "steps": 1})
    model.stop_training = False
    for callback in listeners:
        callback.on_train_begin()
    for epoch in range(epochs):
        for callback in listeners:
            callback.on_epoch_begin(epoch)
        logs = {"loss": 2.0 - score, "accuracy": score + 0.1}
        if validation is not None:
            logs.update(val_loss=2.1 - score, val_accuracy=score + 0.01 * epoch)
        for callback in listeners:
            callback.on_epoch_end(epoch, dict(logs))
        if model.stop_training:
            break
    for callback in listeners:
        callback.on_train_end()
    return history


searched = {name}
namespace = getattr(searched, "__globals__", None)
namespace = namespace if isinstance(namespace, dict) else globals()
replaced = {"train_network": train_network}
for key, value in list(namespace.items()):
    if isinstance(value, types.ModuleType) and getattr(value, "__name__", "") == "cifar_lab":
        replaced[key] = scratch_lab(value)
    elif value is course_create_study:
        replaced[key] = create_study
kept = {key: namespace[key] for key in replaced if key in namespace}
namespace.update(replaced)
try:
    search = {call}
finally:
    for key in replaced:
        if key in kept:
            namespace[key] = kept[key]
        else:
            namespace.pop(key, None)


def plain(value, nested=False):
    if not isinstance(value, (str, list, tuple)) and callable(getattr(value, "item", None)):
        with contextlib.suppress(Exception):
            value = value.item()
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value[:200]
    if isinstance(value, (list, tuple)) and not nested:
        return [plain(item, True) for item in value[:16]]
    return str(value)[:200]


found = {"study": isinstance(search, optuna.Study), "count": 0, "trials": []}
if found["study"]:
    trials = search.get_trials(deepcopy=False)
    found["count"] = len(trials)
    for trial in trials[:{max_trials}]:
        found["trials"].append({
            "number": int(trial.number), "state": str(trial.state.name),
            "params": {k: plain(trial.params[k]) for k in {keys!r} if k in trial.params},
            "user_attrs": {k: plain(trial.user_attrs[k]) for k in {keys!r}
                           if k in trial.user_attrs},
        })
outputs = {"search": numpy.frombuffer(json.dumps(found).encode(), numpy.uint8)}
"""


def _search_body(name: str, call: str) -> str:
    """The kernel side of a search probe: ``search = <call>`` with the stand-ins bound."""
    replacements = {
        "{name}": name,
        "{call}": call,
        "{max_epochs}": str(MAX_STAND_IN_EPOCHS),
        "{max_trials}": str(MAX_SEARCH_TRIALS + 1),  # one more: the judge sees there are more
        "{keys!r}": repr(SEARCH_KEYS),
    }
    body = _SEARCH_BODY
    for placeholder, text in replacements.items():
        body = body.replace(placeholder, text)
    return body


@dataclass(frozen=True)
class _Trial:
    """A trial as the kernel described it: what cifar_lab.tuning.studies reads of one."""

    number: int
    state: str
    params: dict
    user_attrs: dict


_COMPARED = ("COMPLETE", "PRUNED")  # cifar_lab.tuning.studies.COMPARED_STATES, by name


def _search_trials(outputs: Inputs) -> list[_Trial] | str:
    """The trials of the study the search returned, or why there are none to judge."""
    raw = outputs["search"]
    if raw.dtype != np.uint8 or raw.ndim != 1 or raw.size > MAX_SEARCH_BYTES:
        return f"its study's trials, as text of at most {MAX_SEARCH_BYTES // MEGABYTE} MB"
    data = json.loads(raw.tobytes().decode("utf-8"))
    if not isinstance(data, dict) or data.get("study") is not True:
        return "it returns the optuna.Study its search ran in"
    trials, count = data.get("trials"), data.get("count")
    if (
        not isinstance(trials, list)
        or not isinstance(count, int)
        or len(trials) != min(count, MAX_SEARCH_TRIALS + 1)
    ):
        return "its study's trials, as the grader asked for them"
    if count > MAX_SEARCH_TRIALS:
        return f"its study holds at most {MAX_SEARCH_TRIALS:,} trials, not {count:,}"
    found = []
    for trial in trials:
        state, params, attrs = trial["state"], trial["params"], trial["user_attrs"]
        if not (isinstance(state, str) and isinstance(params, dict) and isinstance(attrs, dict)):
            return "its study's trials, as the grader asked for them"
        found.append(_Trial(int(trial["number"]), state, params, attrs))
    return found


def _value(trial: _Trial, key: str):
    """:func:`cifar_lab.tuning.studies.trial_value`, as a value a set can hold."""
    from cifar_lab.tuning.studies import trial_value

    value = trial_value(trial, key)
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def _search_judge(decide: Callable[[Inputs, list[_Trial]], list[tuple[bool, str]]]):
    """A judge that rebuilds the study's trials and applies ``decide``'s conditions."""

    def judge(inputs: Inputs, outputs: Inputs) -> str:
        trials = _search_trials(outputs)
        if isinstance(trials, str):
            return trials
        return _first_failure(decide(inputs, trials))

    return judge


def _numbers(trials: list[_Trial]) -> str:
    shown = [trial.number for trial in trials[:5]]
    return f"{shown}" + (f" and {len(trials) - 5} more" if len(trials) > 5 else "")


def _decide_architectures(inputs: Inputs, trials: list[_Trial]) -> list:
    from cifar_lab.tuning.studies import architecture_of, learning_rate_of

    complete = [trial for trial in trials if trial.state == "COMPLETE"]
    compared = [trial for trial in trials if trial.state in _COMPARED]
    unnamed, rates = [], {}
    for trial in compared:
        architecture, rate = architecture_of(trial), learning_rate_of(trial)
        if architecture is None or rate is None:
            unnamed.append(trial)
        else:
            rates.setdefault(architecture, set()).add(rate)
    parts = {architecture: architecture.split("-") for architecture in rates}
    malformed = sorted(
        a for a, p in parts.items() if not all(s.isascii() and s.isdigit() for s in p)
    )
    shapes = [[int(s) for s in p] for a, p in parts.items() if a not in malformed]
    one_layer = {sizes[0] for sizes in shapes if len(sizes) == 1}
    few = sorted(architecture for architecture, found in rates.items() if len(found) < 2)
    return [
        (len(complete) >= 10, f"at least 10 completed trials, got {len(complete)}"),
        (not unnamed, "every trial records its 'architecture' and 'learning_rate'; trials "
                      f"{_numbers(unnamed)} do not"),
        (len(rates) >= 5, f"at least five architectures, got {sorted(rates)}"),
        (not few, f"every architecture is tried with at least two learning rates; not {few}"),
        (not malformed, f"architectures are hidden sizes joined by '-', not {malformed}"),
        (len(one_layer) >= 2 and max(map(len, shapes), default=0) >= 2,
         f"one hidden layer at two widths or more, and two or more layers: got {sorted(rates)}"),
    ]  # fmt: skip


def _architecture(rng: np.random.Generator) -> str:
    widths = sorted(rng.choice(WIDTHS, size=int(rng.integers(1, 4))), reverse=True)
    return "-".join(str(int(width)) for width in widths)


def _architectures(rng: np.random.Generator, count: int) -> list[str]:
    found: list[str] = []
    while len(found) < count:
        architecture = _architecture(rng)
        found += [] if architecture in found else [architecture]
    return found


def _rate(rng: np.random.Generator) -> float:
    return float(f"{10 ** rng.uniform(-4, -1.5):.2g}")


def _draw_nothing(rng: np.random.Generator) -> Inputs:
    return {}


def _draw_tuned(rng: np.random.Generator) -> Inputs:
    """`tuned`, best first: 3 to 5 architectures and each one's rate."""
    architectures = _architectures(rng, int(rng.integers(3, 6)))
    rates = [_rate(rng) for _ in architectures]
    return {"architectures": np.array(architectures), "rates": np.array(rates)}


def _decide_activations(inputs: Inputs, trials: list[_Trial]) -> list:
    from cifar_lab.tuning.studies import architecture_of, learning_rate_of

    tuned = dict(zip((str(a) for a in inputs["architectures"]), inputs["rates"].tolist(),
                     strict=True))  # fmt: skip
    first = list(tuned)[:3]
    strangers, off_rate, seen = [], [], {}
    for trial in (trial for trial in trials if trial.state in _COMPARED):
        architecture, activation = architecture_of(trial), _value(trial, "activation")
        rate = learning_rate_of(trial)
        if architecture not in tuned or activation not in GRID_ACTIVATIONS:
            strangers.append(trial)
        elif rate is None or not math.isclose(rate, tuned[architecture]):
            off_rate.append(trial)
        else:
            seen.setdefault(architecture, set()).add(activation)
    few = {a: sorted(seen.get(a, ())) for a in first if len(seen.get(a, ())) < 5}
    return [
        (not strangers, f"every trial records an architecture of `tuned` {list(tuned)} and an "
                        f"activation of {list(GRID_ACTIVATIONS)}; trials {_numbers(strangers)} "
                        "do not"),
        (not off_rate, "every trial runs at its architecture's rate in `tuned` (recorded as "
                       f"'learning_rate'); trials {_numbers(off_rate)} do not"),
        (not few, f"at least five activations on each of the first three architectures of "
                  f"`tuned` {first}; too few: {few}"),
    ]  # fmt: skip


def _draw_top(rng: np.random.Generator) -> Inputs:
    """`top`: three settings (architecture, activation, rate), best first."""
    architectures = _architectures(rng, 3)
    return {
        "architectures": np.array(architectures),
        "activations": np.array([str(rng.choice(GRID_ACTIVATIONS)) for _ in architectures]),
        "rates": np.array([_rate(rng) for _ in architectures]),
    }


def _decide_initializers(inputs: Inputs, trials: list[_Trial]) -> list:
    from cifar_lab.tuning.studies import architecture_of, learning_rate_of

    wanted = [(str(a), str(b), float(r)) for a, b, r in zip(
        inputs["architectures"], inputs["activations"], inputs["rates"], strict=True)]  # fmt: skip
    found: dict[tuple, set] = {}
    for trial in (trial for trial in trials if trial.state in _COMPARED):
        setting = (architecture_of(trial), _value(trial, "activation"), learning_rate_of(trial))
        found.setdefault(setting, set()).add(_value(trial, "initializer"))

    def initializers(setting: tuple) -> set:  # the trials of `setting`, its rate as a float
        architecture, activation, rate = setting
        return set().union(*(inits for (a, b, r), inits in found.items()
                             if (a, b) == (architecture, activation) and r is not None
                             and math.isclose(r, rate)))  # fmt: skip

    missing = [setting for setting in wanted if not initializers(setting)]
    few = {s: sorted(map(str, initializers(s))) for s in wanted if s not in missing and (
        len(initializers(s)) < 6 or "zeros" not in initializers(s))}  # fmt: skip
    return [
        (not missing, "the three settings of `top`, each recorded as architecture, activation "
                      f"and learning_rate: {missing} not among {sorted(found, key=str)[:6]}"),
        (not few, f"at least six initialisers on each setting, 'zeros' among them; not so for "
                  f"{few}"),
    ]  # fmt: skip


def _best(rng: np.random.Generator) -> dict:
    return {
        "architecture": _architecture(rng),
        "activation": str(rng.choice(GRID_ACTIVATIONS)),
        "learning_rate": _rate(rng),
        "initializer": str(rng.choice(INITIALIZERS)),
    }


def _draw_best(rng: np.random.Generator) -> Inputs:
    """`best`, search 3's best setting."""
    return {name: np.array(value) for name, value in _best(rng).items()}


def _draw_best4(rng: np.random.Generator) -> Inputs:
    """`best`, search 4's best setting: search 3's with a batch norm and an optimiser."""
    best = {**_best(rng), "batch_norm": str(rng.choice(GRID_PLACES)),
            "optimizer": str(rng.choice(SEARCH_OPTIMIZERS))}  # fmt: skip
    best["learning_rate"] = _rate(rng)  # the optimiser's own
    return {name: np.array(value) for name, value in best.items()}


def _network(inputs: Inputs) -> tuple[str, str]:
    return str(inputs["architecture"]), str(inputs["activation"])


def _decide_optimizers(inputs: Inputs, trials: list[_Trial]) -> list:
    from cifar_lab.tuning.studies import architecture_of, learning_rate_of

    compared = [trial for trial in trials if trial.state in _COMPARED]
    network = _network(inputs)
    networks = {(architecture_of(t), _value(t, "activation")) for t in compared}
    cells: dict[tuple, set] = {}
    for trial in compared:
        key = (_value(trial, "batch_norm"), _value(trial, "optimizer"))
        cells.setdefault(key, set()).add(_value(trial, "initializer"))
    unrated = [trial for trial in compared if learning_rate_of(trial) is None]
    placements = {key[0] for key in cells}
    optimizers = {key[1] for key in cells}
    few = sorted((key for key, found in cells.items() if len(found) < 2), key=str)
    missing = [(b, o) for b in sorted(placements, key=str) for o in SEARCH_OPTIMIZERS
               if (b, o) not in cells]  # fmt: skip
    return [
        (networks == {network}, f"every trial uses `best`'s network {network}; found "
                                f"{sorted(networks, key=str)[:5]}"),
        (not unrated, f"every trial records its learning_rate; trials {_numbers(unrated)} do not"),
        ("none" in placements and bool(placements & {"before", "after"}),
         "trials with batch norm off ('none') and on ('before' or 'after'), found "
         f"{sorted(map(str, placements))}"),
        (set(SEARCH_OPTIMIZERS) <= optimizers, f"the optimisers {list(SEARCH_OPTIMIZERS)}, found "
                                               f"{sorted(map(str, optimizers))}"),
        (not few and not missing, "every optimiser with batch norm off and on, each with at "
                                  f"least two initialisers: too few {few}, missing {missing}"),
    ]  # fmt: skip


def _decide_regularisers(inputs: Inputs, trials: list[_Trial]) -> list:
    from cifar_lab.tuning.studies import architecture_of

    complete = [trial for trial in trials if trial.state == "COMPLETE"]
    kinds = {_value(trial, "regulariser") for trial in complete}
    network = _network(inputs)
    networks = {(architecture_of(t), _value(t, "activation")) for t in complete}
    return [
        (set(REGULARISERS) <= kinds, f"a finished trial for each regulariser "
                                     f"{list(REGULARISERS)}, found {sorted(map(str, kinds))}"),
        (networks == {network}, f"every trial uses `best`'s network {network}; found "
                                f"{sorted(networks, key=str)[:5]}"),
    ]  # fmt: skip


def _inputs_dict(*keys: str) -> str:
    """Kernel-side source of a dict of the named 0-d inputs, as plain Python values."""
    return "{" + ", ".join(f"{key!r}: inputs[{key!r}].item()" for key in keys) + "}"


_BEST = _inputs_dict("architecture", "activation", "learning_rate", "initializer")
_BEST4 = _inputs_dict(
    "architecture", "activation", "learning_rate", "initializer", "batch_norm", "optimizer"
)

SEARCH_PROBES: tuple[Probe, ...] = (
    Probe("architecture_search_check", N05, ("architecture_search",), _draw_nothing,
          _search_body("architecture_search", "architecture_search()"),
          _search_judge(_decide_architectures)),
    Probe("activation_search_check", N05, ("activation_search",), _draw_tuned,
          _search_body("activation_search", "activation_search({str(a): float(r) for a, r in "
                       'zip(inputs["architectures"], inputs["rates"])})'),
          _search_judge(_decide_activations)),
    Probe("initializer_search_check", N05, ("initializer_search",), _draw_top,
          _search_body("initializer_search", 'initializer_search([{"architecture": str(a), '
                       '"activation": str(b), "learning_rate": float(r)} for a, b, r in zip('
                       'inputs["architectures"], inputs["activations"], inputs["rates"])])'),
          _search_judge(_decide_initializers)),
    Probe("optimizer_search_check", N05, ("optimizer_search",), _draw_best,
          _search_body("optimizer_search", f"optimizer_search({_BEST})"),
          _search_judge(_decide_optimizers)),
    Probe("regularisation_search_check", N05, ("regularisation_search",), _draw_best4,
          _search_body("regularisation_search", f"regularisation_search({_BEST4})"),
          _search_judge(_decide_regularisers)),
)  # fmt: skip


PROBES: tuple[Probe, ...] = (
    Probe(
        "standardise_splits_check",
        N01,
        ("standardise_splits",),
        _draw_standardise,
        _STANDARDISE_BODY,
        _judge_standardise,
    ),
    Probe(
        "minibatches_check",
        N01,
        ("Minibatches",),
        _draw_minibatches,
        _MINIBATCHES_BODY,
        _judge_minibatches,
    ),
    Probe(
        "training_step_check",
        N02,
        ("training_step",),
        _draw_training_step,
        _TRAINING_STEP_BODY,
        _judge_training_step,
    ),
    Probe(
        "two_layer_fc_init_check",
        N02,
        ("two_layer_fc_init",),
        _draw_two_layer_init,
        _TWO_LAYER_INIT_BODY,
        _judge_two_layer_init,
    ),
    Probe(
        "three_layer_fc_check",
        N02,
        ("three_layer_fc",),
        _draw_three_layer_fc,
        _THREE_LAYER_FC_BODY,
        _judge_three_layer_fc,
    ),
    Probe(
        "three_layer_fc_init_check",
        N02,
        ("three_layer_fc_init",),
        _draw_three_layer_init,
        _THREE_LAYER_INIT_BODY,
        _judge_three_layer_init,
    ),
    Probe(
        "evaluate_loss_check",
        N02,
        ("evaluate_loss",),
        _draw_evaluate_loss,
        _EVALUATE_LOSS_BODY,
        _judge_evaluate_loss,
    ),
    Probe(
        "overfit_tiny_subset_check",
        N02,
        ("overfit_tiny_subset",),
        _draw_overfit_tiny_subset,
        _OVERFIT_TINY_SUBSET_BODY,
        _judge_overfit_tiny_subset,
    ),
    Probe(
        "momentum_update_check",
        N02,
        ("momentum_update",),
        _draw_momentum_update,
        _MOMENTUM_UPDATE_BODY,
        _judge_momentum_update,
    ),
    Probe(
        "train_step_check",
        N03,
        ("train_step",),
        _draw_train_step,
        _TRAIN_STEP_BODY,
        _judge_train_step,
    ),
    Probe(
        "three_layer_model_check",
        N03,
        ("ThreeLayerFC",),
        _draw_three_layer_model,
        _three_layer_model_body("ThreeLayerFC(hidden_sizes, num_classes)"),
        _judge_three_layer_model("subclassed", kaiming_rtol=0.05, in_order=False),
    ),
    Probe(
        "three_layer_sequential_check",
        N04,
        ("three_layer_sequential",),
        _draw_three_layer_model,
        _three_layer_model_body("three_layer_sequential(input_shape, hidden_sizes, num_classes)"),
        _judge_three_layer_model("sequential", kaiming_rtol=0.03, in_order=True),
    ),
    Probe(
        "three_layer_functional_check",
        N04,
        ("three_layer_functional",),
        _draw_three_layer_model,
        _three_layer_model_body("three_layer_functional(input_shape, hidden_sizes, num_classes)"),
        _judge_three_layer_model("functional", kaiming_rtol=0.03, in_order=True),
    ),
    Probe(
        "make_pipeline_check",
        N04,
        ("make_pipeline",),
        _draw_pipeline,
        _PIPELINE_BODY,
        _judge_pipeline,
    ),
    Probe(
        "training_callbacks_check",
        N04,
        ("training_callbacks",),
        _draw_callbacks,
        _CALLBACKS_BODY,
        _judge_callbacks,
    ),
    Probe(
        "first_layer_templates_check",
        N04,
        ("first_layer_templates",),
        _draw_templates,
        _TEMPLATES_BODY,
        _judge_templates,
    ),
    Probe(
        "build_network_check",
        N05,
        ("build_network",),
        _draw_build_network,
        _BUILD_NETWORK_BODY,
        _judge_build_network,
    ),
    Probe(
        "train_network_check",
        N05,
        ("build_network", "train_network"),
        _draw_train_network,
        _TRAIN_NETWORK_BODY,
        _judge_train_network,
    ),
    *SEARCH_PROBES,
)

# Checks without a probe keep the verdict of the re-run check cell (pristine checks): none.
UNPROBED: tuple[str, ...] = ()
PROBED: frozenset[str] = frozenset(
    [probe.grade_id for probe in PROBES]
    + [grade_id for grade_id, _, _ in ACCURACY_PROBES]
    + [spec.grade_id for spec in AFTER_CHECK_PROBES]
)


# --------------- the pristine checks: the re-run check cells, with the grader's check functions
# Names the proxy takes from the grader's copy of cifar_lab/results.py.
PRISTINE_NAMES = ("check_at_least", "check_that", "check_close", "record")
PRISTINE_TAG = "cifar-lab-grader-pristine"

_TEMPLATE = """\
def __cifar_lab_pristine(source, names):
    import importlib, sys, types
    checks = {"__name__": "cifar_lab.results"}
    exec(compile(source, "<grader copy of cifar_lab/results.py>", "exec"), checks)
    real = importlib.import_module("cifar_lab")

    class VerifiedLab(types.ModuleType):
        def __getattr__(self, name):
            return getattr(real, name)

        def __setattr__(self, name, value):
            raise AttributeError(f"lab.{name} is read-only while the grader re-runs the checks")

    proxy = VerifiedLab("cifar_lab")
    for name in names:
        types.ModuleType.__setattr__(proxy, name, checks[name])
    return proxy


lab = __cifar_lab_pristine({source!r}, {names!r})
del __cifar_lab_pristine
"""


def pristine_cell() -> str:
    """The source of the cell that rebinds ``lab`` to the grader's check functions.

    Returns:
        Python source embedding the text of ``cifar_lab/results.py`` as read now.
    """
    source = Path(results_module.__file__).read_text(encoding="utf-8")
    return _TEMPLATE.replace("{source!r}", repr(source)).replace("{names!r}", repr(PRISTINE_NAMES))


def with_pristine_checks(notebook):
    """Return a copy of ``notebook`` with :func:`pristine_cell` before every code cell.

    Args:
        notebook: an ``nbformat`` v4 notebook node (not modified).

    Returns:
        The new notebook; the inserted cells carry the metadata tag :data:`PRISTINE_TAG`.
    """
    import nbformat

    guard = pristine_cell()
    verified = copy.deepcopy(notebook)
    cells = []
    for cell in verified.cells:
        if cell.cell_type == "code":
            inserted = nbformat.v4.new_code_cell(guard)
            inserted.metadata["tags"] = [PRISTINE_TAG]
            cells.append(inserted)
        cells.append(cell)
    verified.cells = cells
    return verified


def is_check_cell(cell) -> bool:
    """True for a code cell that calls a check (``lab.check_...`` or a helper ``check_...``)."""
    return cell.get("cell_type") == "code" and "check_" in "".join(cell.get("source", ""))
