"""Checking claims by recomputing them, never by trusting the numbers handed in.

**Part V's saved model** (always, no student code runs): the model in
``part5/best_model.keras`` is loaded with Keras safe mode, which refuses to
deserialise code such as ``Lambda`` layers, after checking that the archive
does not unpack to more than the size limit. Its test accuracy is recomputed
on the real test set (loaded once per grading run, on first use) and compared
with the claims in notebook 05's output (``lab.record("test_accuracy")``) and
in ``part5/results.json``; a difference above the tolerance (default 0.005)
is flagged, as is any disagreement between the two claims.

**Re-executed results** (``grade --rerun``, see :mod:`cifar_lab.instructor.rerun`):
every recorded result is compared with the re-executed value; a difference
above the tolerance (default 0.02, since training on other hardware is not
bit-identical), a result no longer recorded, or a notebook that fails is flagged.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np

from cifar_lab.instructor.inspection import Finding, is_number
from cifar_lab.instructor.limits import LimitExceededError, SubmissionTimeoutError, score_model
from cifar_lab.instructor.test_splits import choose_split, unverifiable
from cifar_lab.metrics import accuracy
from cifar_lab.tuning.part5 import MODEL_FILE, PART5_DIR, RESULTS_FILE

DEFAULT_TOLERANCE = 0.005  # claim vs the saved model's recomputed accuracy
DEFAULT_RERUN_TOLERANCE = 0.02  # claim vs re-execution on other hardware
CONSISTENCY_TOLERANCE = 1e-4  # the same number written twice must agree
CLAIMS = {"val": ("best_val_accuracy", "val_accuracy"), "test": ("test_accuracy", "test_accuracy")}


class GradingSetupError(RuntimeError):
    """The grader itself cannot work (e.g. no test set); not a student's problem."""


class LazyTestSet:
    """The raw test images and labels, loaded on first use and then reused.

    It also remembers, for the batch it serves, the accuracy of each model file
    already scored (keyed by the SHA-256 of the file and of the images and labels),
    so byte-identical models handed in twice are scored once.
    """

    def __init__(self, source: str | None, num_test: int | None) -> None:
        self.source, self.num_test = source, num_test
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None
        self.scores: dict[str, float] = {}

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (uint8 images (N, 32, 32, 3), int labels (N,))."""
        if self._arrays is None:
            from cifar_lab.data.splits import load_cifar10

            try:  # raw pixels; one training image, as load_cifar10 needs one (any copy has it)
                splits = load_cifar10(1, 0, self.num_test, source=self.source, standardise=False)
            except Exception as error:
                raise GradingSetupError(f"cannot load the test set: {error}") from error
            self._arrays = (splits.X_test, splits.y_test)
        return self._arrays


def model_accuracy(path: Path, images: np.ndarray, labels: np.ndarray, max_bytes: int) -> float:
    """Test accuracy of a saved ``.keras`` model on raw images, loaded in Keras safe mode.

    Args:
        path: the ``.keras`` file (untrusted).
        images: raw pixels (N, 32, 32, 3), 0..255.
        labels: int labels (N,).
        max_bytes: largest accepted unpacked size of the archive.

    Returns:
        The fraction of images whose highest score is the label.
    """
    import keras

    from cifar_lab.instructor.model_loading import load_submitted_model

    # safe mode with the library's own layers (cifar_lab>Maxout ...) and nothing else
    model = load_submitted_model(path, max_bytes=max_bytes)
    scores = []
    for start in range(0, len(labels), 500):  # direct calls: no tf.function retracing per model
        batch = images[start : start + 500].astype(np.float32)
        scores.append(keras.ops.convert_to_numpy(model(batch, training=False)))
    scores = np.concatenate(scores) if scores else np.zeros((0, 10))
    if scores.shape != (len(labels), 10):
        raise ValueError(f"model returned shape {scores.shape}, expected ({len(labels)}, 10)")
    return accuracy(labels, scores)


def claims_of(notebook_results: dict[str, float], saved: dict | None) -> dict[str, dict]:
    """{"val"|"test": {source: value}} from notebook 05's outputs and results.json."""
    claims: dict[str, dict[str, float]] = {"val": {}, "test": {}}
    for kind, (recorded_name, saved_name) in CLAIMS.items():
        if recorded_name in notebook_results:
            claims[kind]["05 output"] = notebook_results[recorded_name]
        if is_number((saved or {}).get(saved_name)):
            claims[kind][f"{PART5_DIR}/{RESULTS_FILE}"] = float(saved[saved_name])
    return claims


def claim_findings(claims: dict[str, dict]) -> list[Finding]:
    """The same number written twice (notebook output, results.json) must agree."""
    findings = []
    for kind, sources in claims.items():
        values = list(sources.items())
        if len(values) == 2 and abs(values[0][1] - values[1][1]) > CONSISTENCY_TOLERANCE:
            (first, a), (second, b) = values
            message = f"{kind} accuracy: {first} says {a:.4f} but {second} says {b:.4f}"
            findings.append(Finding("flagged", "part5", message))
    if not claims["test"]:
        findings.append(Finding("incomplete", "part5", "no test accuracy is claimed"))
    return findings


def verify_claims(
    root: Path,
    claims: dict,
    test_set: LazyTestSet,
    *,
    tolerance: float,
    max_bytes: int,
    recorded_split: Any = None,
) -> tuple:
    """Recompute the saved model's test accuracy and compare it with the claims.

    ``recorded_split`` is results.json's ``test_split`` (None: absent): the model is
    re-scored on that split when the grader can rebuild it (:mod:`.test_splits`).

    Returns:
        (accuracy or None, "yes" | "no" | "not-checked", findings).
    """
    path = root / PART5_DIR / MODEL_FILE
    if not path.is_file():
        return None, "not-checked", []
    if path.stat().st_size > max_bytes:
        return None, "no", [Finding("damaged", "part5", f"{MODEL_FILE} is over the size limit")]
    split = choose_split(test_set, recorded_split)  # the split the claim was measured on
    images, labels = split.images, split.labels
    try:  # in a child process under memory and time ceilings (limits.py)
        accuracy = _score_once(test_set, path, images, labels, max_bytes)
    except SubmissionTimeoutError:
        raise
    except LimitExceededError as error:  # a model that balloons: flagged, and the batch goes on
        return None, "no", [Finding("flagged", "part5", f"{MODEL_FILE} was not scored: {error}")]
    except Exception as error:  # untrusted file: any failure is the student's problem
        kind = getattr(error, "kind", type(error).__name__)  # ChildFailedError: the child's error
        reason = f"{kind}: {str(error).split('. ')[0][:200]}"
        message = f"{MODEL_FILE} cannot be loaded in safe mode or evaluated ({reason})"
        return None, "no", [Finding("flagged", "part5", message)]
    if split.problem is not None:  # reported as such, not as a mismatch
        verified, findings = unverifiable(claims["test"], accuracy, split, tolerance)
        return accuracy, verified, findings
    findings = list(split.findings)
    for source, value in claims["test"].items():
        if abs(value - accuracy) > tolerance:
            message = f"{source} claims test accuracy {value:.4f}; the saved model scores"
            findings.append(Finding("flagged", "part5", f"{message} {accuracy:.4f}"))
    flagged = [finding for finding in findings if finding.severity != "warning"]
    verified = "no" if flagged else "yes" if claims["test"] else "not-checked"
    return accuracy, verified, findings


def _score_once(
    test_set: LazyTestSet, path: Path, images: np.ndarray, labels: np.ndarray, max_bytes: int
) -> float:
    """The model's accuracy on (images, labels), scored in a child unless these bytes were."""
    if path.stat().st_size > max_bytes:  # refused by score_model's loader; never read here
        return score_model(path=path, images=images, labels=labels, max_bytes=max_bytes)
    digest = hashlib.sha256()
    with path.open("rb") as handle:  # streamed: the file is not held in the grader's memory
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels).tobytes())
    key = digest.hexdigest()
    if key not in test_set.scores:  # only successes are kept: failures raise before this
        test_set.scores[key] = score_model(
            path=path, images=images, labels=labels, max_bytes=max_bytes
        )
    return test_set.scores[key]


def compare_claims(
    claimed: dict[str, dict[str, float]],
    records: dict[str, dict],
    problem: str | None,
    *,
    tolerance: float,
) -> tuple[str, list[Finding]]:
    """Compare claimed results with re-executed ones.

    Args:
        claimed: notebook stem -> {result name: claimed value}.
        records: the per-notebook records :func:`rerun_notebooks` returned.
        problem: its process-level problem, or None.
        tolerance: the largest accepted absolute difference.

    Returns:
        ("reproduced" | "not-reproduced" | "failed", flagged findings).
    """
    findings = [Finding("flagged", "rerun", problem)] if problem else []
    failed = problem is not None
    for name, results in claimed.items():
        record = records.get(name, {"status": "failed", "error": "did not run", "results": {}})
        if record["status"] != "ok":
            failed = True
            findings.append(Finding("flagged", name, f"rerun failed: {record['error']}"))
        for result, value in results.items():
            again = record["results"].get(result)
            if again is None or not math.isclose(value, again, abs_tol=tolerance):
                shown = "not recorded" if again is None else f"{again:.4f}"
                message = f"rerun: {result} claimed {value:.4f}, recomputed {shown}"
                findings.append(Finding("flagged", name, message))
    if not findings:
        return "reproduced", []
    return ("failed" if failed else "not-reproduced"), findings
