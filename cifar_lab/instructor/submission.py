"""Submission check (student side): every notebook inspected, Part V outputs present.

A submission is the folder of executed notebooks plus Part V's outputs, which
notebook 05 saves next to the notebooks:

* ``part5/results.json``: a JSON object with at least ``"val_accuracy"`` and
  ``"test_accuracy"`` (floats) and ``"config"`` (an object);
* ``part5/best_model.keras``: a self-contained Keras model that takes RAW
  images (N, 32, 32, 3) with values 0-255 (float or uint8) and returns class
  scores or logits (N, 10).

Notebook 05 also records ``lab.record("test_accuracy", x, key=True)`` and
``lab.record("best_val_accuracy", y)``.

Notebooks are inspected with :mod:`cifar_lab.instructor.inspection` (read as JSON, never
executed); each problem is a :class:`~cifar_lab.instructor.findings.Finding`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from cifar_lab.instructor.claims import read_part5_results
from cifar_lab.instructor.findings import Finding
from cifar_lab.instructor.inspection import (
    DEFAULT_MAX_NOTEBOOK_BYTES,
    NotebookInspection,
    inspect_file,
)
from cifar_lab.instructor.model_loading import model_finding
from cifar_lab.instructor.notebooks import COURSE_NOTEBOOKS
from cifar_lab.instructor.release import ANSWER_PLACEHOLDER, ANSWER_PREFIX
from cifar_lab.tuning.part5 import MODEL_FILE, PART5_DIR, RESULTS_FILE


def check_submission(
    folder: Path, *, manifest: dict | None = None, max_bytes: int = DEFAULT_MAX_NOTEBOOK_BYTES
) -> tuple[list[NotebookInspection], list[Finding]]:
    """Check a folder of executed notebooks as ``submit`` does.

    Args:
        folder: the notebook folder (with ``part5/`` inside).
        manifest: the release manifest (None: no structure checks).
        max_bytes: refuse notebook files larger than this.

    Returns:
        (one inspection per course notebook, every finding).
    """
    names = tuple((manifest or {}).get("notebooks", {})) or COURSE_NOTEBOOKS
    expected = (manifest or {}).get("notebooks", {})
    inspections = [
        inspect_file(Path(folder) / f"{name}.ipynb", expected.get(name), max_bytes)
        for name in names
    ]
    findings = [finding for inspection in inspections for finding in inspection.findings]
    _, part5 = read_part5_results(Path(folder))
    if not (Path(folder) / PART5_DIR / MODEL_FILE).is_file():
        fix = "run 05_tuning to the end; it saves the best model there"
        part5.append(Finding("incomplete", "part5", f"{PART5_DIR}/{MODEL_FILE} is missing", fix))
    elif loaded := model_finding(Path(folder) / PART5_DIR / MODEL_FILE):  # as grade loads it
        part5.append(loaded)
    for inspection in inspections:
        done, total = inspection.answers
        if done < total:
            message = f"{total - done} of {total} written answers are empty"
            fix = f"replace {ANSWER_PLACEHOLDER} in the {ANSWER_PREFIX} cells"
            findings.append(Finding("warning", inspection.name, message, fix))
    return inspections, findings + part5


def unexpected_problem(error: Exception) -> Finding:
    """A problem for an error that checking a submission did not foresee (never a traceback)."""
    message = f"could not be checked ({type(error).__name__}: {str(error)[:300]})"
    fix = "save each notebook again from Jupyter; if it persists, send this line to the instructor"
    return Finding("damaged", "submission", message, fix)


def write_submission_zip(folder: Path, out: Path, names: tuple[str, ...]) -> list[str]:
    """Zip the notebooks and Part V's outputs; returns the archive member names."""
    members = [f"{name}.ipynb" for name in names]
    members += [f"{PART5_DIR}/{RESULTS_FILE}", f"{PART5_DIR}/{MODEL_FILE}"]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member in members:
            archive.write(Path(folder) / member, arcname=member)
    return members
