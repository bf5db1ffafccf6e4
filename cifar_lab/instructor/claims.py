"""Claims: Part V's claimed accuracies, checked by recomputing them, never by trusting them.

**Part V's saved model** (always, no student code runs): the model in
``part5/best_model.keras`` is loaded with Keras safe mode, which refuses to
deserialise code such as ``Lambda`` layers, after checking that the archive
does not unpack to more than the size limit. Its test accuracy is recomputed
on the real test set (loaded once per grading run, on first use) and compared
with the claims in notebook 05's output (``lab.record("test_accuracy")``) and
in ``part5/results.json``; a difference above the tolerance (default 0.005)
is flagged, as is any disagreement between the two claims.

**Re-executed results** (``grade``'s default re-execution, see :mod:`cifar_lab.instructor.rerun`):
every recorded result is compared with the re-executed value; a difference
above the tolerance (default 0.02, since training on other hardware is not
bit-identical), a result no longer recorded, or a notebook that fails is flagged.

**The test split** the claim was measured on: ``part5/results.json`` records it
(``test_split``: its size, the seed that drew it and a SHA-256 of its images and
labels; see :mod:`cifar_lab.tuning.split_record`). Only the splits the course
defines are honoured: the whole test set, or a profile's split (``num_test`` of a
profile, e.g. quick's 500) drawn with the course's seed :data:`COURSE_SEED`. The
grader rebuilds such a split from its own CIFAR-10 copy and uses it only when the
hash matches, so a quick-profile submission is re-scored on its own 500 images
and verifies. Any other split (another size, another seed, chosen indices, a
malformed record) is flagged and never honoured: the model is scored on the
grader's own test set instead, and the row says so, with both numbers. A course
split the grader cannot rebuild (another copy of CIFAR-10, synthetic data) is
reported as such, never as a mismatch: the claim is flagged only when it differs
from the grader's score by more than sampling error allows (three standard
errors of the two splits, plus the tolerance). Submissions without a record are
scored on the grader's test set.

**The validation claim** is recomputed too, on the course's validation split for
the profile results.json names (the profile's ``num_validation`` images drawn with
:data:`COURSE_SEED`: exactly the images notebook 05 measured on), and compared
with the claim by the same rule as the test claim.

**What the model may be**: Part V is fully connected networks only; a layer
outside :data:`~cifar_lab.instructor.model_loading.DENSE_NETWORK_LAYERS` (a
convolution, attention, ...) is refused before the model is built, and the row
names it. **Memorised test images** are caught by a perturbation probe and, with
``--private-test``, by the instructor's private images (below). All sets are scored
in one child.

Model and claim are scored by the same function,
:func:`cifar_lab.metrics.evaluate_model` (same batches), so they cannot drift apart.

**Memorised test images** (the last part of this module). The CIFAR-10 test images
are public, so a Part V model can memorise them: a dense-only lookup whose ``Dense``
kernel holds the flattened test images (a nearest-neighbour search written as one
matrix product) scores 100% on them and chance on anything else. Recomputing the
accuracy on the public images cannot tell it from a network that learned; two
things the student cannot see can:

* **The probe** (every grading run on CIFAR-10; not on the synthetic stand-in,
  whose classes are not mirror-symmetric): the grader re-scores the model on a
  perturbed copy of the very split it scores, each image mirrored, shifted by up to
  ``PROBE_SHIFT`` pixels (edges repeated), given Gaussian noise of
  ``PROBE_NOISE`` grey levels and re-encoded as JPEG at ``PROBE_JPEG_QUALITY``.
  The perturbation is drawn from a seed chosen at grading time. CIFAR-10's
  classes look alike mirrored, so a network that learned them barely moves
  (it need not have seen a mirrored image); a lookup keyed on the test images'
  pixels finds the wrong key, even a nearest-neighbour lookup that shrugs off
  shifts, noise and JPEG, and loses half its accuracy or more. Measured
  numbers and the threshold arithmetic are at :data:`HONEST_PROBE_DROP`. The
  probe is public code: a student who stores mirrored copies of the test images
  as well, or wraps the lookup in flip test-time augmentation, can pass it
  (nearest-neighbour search shrugs off the small shift, noise and JPEG); that is
  why the private images exist.
* **Private images** (``grade --private-test DIR``): labelled 32x32 images the
  instructor never published (``DIR/<class>/<image>``, CIFAR-10's class names).
  A model whose public-test accuracy exceeds its private accuracy by more
  than sampling error has learned the public images, not the classes. This
  is the stronger defence (a determined student could memorise perturbed
  copies of the public images too, but never images they do not have), so
  it is offered whenever the instructor holds such images.

Both are judged here, from accuracies the scoring child returns; nothing the
student's files claim enters the decision.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cifar_lab.checks import check_int
from cifar_lab.data.formats import CLASS_NAMES, IMAGE_SUFFIXES
from cifar_lab.data.limits import open_image_header
from cifar_lab.instructor.findings import MEGABYTE, Finding, GradingSetupError
from cifar_lab.instructor.inspection import finite_number, parse_json
from cifar_lab.instructor.sandbox import (
    Budget,
    LimitExceededError,
    SubmissionTimeoutError,
    score_model_sets,
)
from cifar_lab.metrics import evaluate_model
from cifar_lab.profiles import PROFILES
from cifar_lab.tuning.part5 import MODEL_FILE, PART5_DIR, RESULTS_FILE
from cifar_lab.tuning.split_record import split_fingerprint

DEFAULT_TOLERANCE = 0.005  # claim vs the saved model's recomputed accuracy
DEFAULT_RERUN_TOLERANCE = 0.02  # claim vs re-execution on other hardware
CONSISTENCY_TOLERANCE = 1e-4  # the same number written twice must agree
CLAIMS = {"val": ("best_val_accuracy", "val_accuracy"), "test": ("test_accuracy", "test_accuracy")}
COURSE_SEED = 0  # the seed load_profile_data draws every course split with (its default)
DEFAULT_PROFILE = "full"  # what save_final_model records when CIFAR_LAB_PROFILE is unset


class LazyTestSet:
    """The grader's images for one batch: test set, validation splits, probe, private images.

    Each is loaded (or made) on first use and then reused. It also remembers the
    accuracies of each model file already scored (keyed by the SHA-256 of the file
    and of every image set), so byte-identical models handed in twice are scored once.

    Args:
        source: the grader's CIFAR-10 copy (``load_cifar10``'s ``source``).
        num_test: the grader's test images (None: all the copy holds).
        private_test: a folder of the instructor's private labelled images
            (``<class>/<image>``), or None.
        probe_seed: the perturbation probe's seed; None draws one now, so that no
            student can know it.
    """

    def __init__(
        self,
        source: str | None,
        num_test: int | None,
        *,
        private_test: str | Path | None = None,
        probe_seed: int | None = None,
    ) -> None:
        self.source, self.num_test, self.private_test = source, num_test, private_test
        self.probe_seed = secrets.randbelow(2**32) if probe_seed is None else probe_seed
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None
        self._all: tuple[np.ndarray, np.ndarray] | None = None
        self._private: tuple[np.ndarray, np.ndarray] | None = None
        self._validation: dict[str, tuple] = {}
        self._probes: dict[str, np.ndarray] = {}
        self.scores: dict[str, dict[str, float]] = {}

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

    def all_test(self) -> tuple[np.ndarray, np.ndarray]:
        """Every test image the grader's copy holds: (uint8 (N, 32, 32, 3), int labels (N,))."""
        if self.num_test is None:
            return self.arrays()
        if self._all is None:
            from cifar_lab.data.splits import load_cifar10

            try:
                splits = load_cifar10(1, 0, None, source=self.source, standardise=False)
            except Exception as error:
                raise GradingSetupError(f"cannot load the test set: {error}") from error
            self._all = (splits.X_test, splits.y_test)
        return self._all

    def validation(self, profile: Any) -> tuple[tuple[np.ndarray, np.ndarray] | None, str | None]:
        """The course's validation split of ``profile``, rebuilt from the grader's copy.

        Args:
            profile: results.json's (untrusted) profile; anything but a profile's
                name means the default profile.

        Returns:
            ((uint8 images (N, 32, 32, 3), int labels (N,)), None), or (None, why not).
        """
        profile = profile if isinstance(profile, str) and profile in PROFILES else DEFAULT_PROFILE
        if profile not in self._validation:
            self._validation[profile] = course_validation(self.source, profile)
        return self._validation[profile]

    def probe(self, images: np.ndarray) -> np.ndarray:
        """The perturbed copy of ``images`` (uint8 (N, 32, 32, 3)) under this batch's seed."""
        key = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()
        if key not in self._probes:
            self._probes = {key: probe_images(images, self.probe_seed)}  # one split at a time
        return self._probes[key]

    def private(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The instructor's private labelled images, or None without ``private_test``."""
        if self.private_test is None:
            return None
        if self._private is None:
            try:
                self._private = read_private_test(self.private_test)
            except ValueError as error:
                raise GradingSetupError(str(error)) from error
        return self._private


def course_validation(
    source: Any, profile: str
) -> tuple[tuple[np.ndarray, np.ndarray] | None, str | None]:
    """The validation split notebook 05 measured on in ``profile``, from the copy ``source``.

    ``load_cifar10`` draws the validation images from a permutation of the whole
    training pool, so they depend on the seed and their number only, not on the
    number of training images: one training image is asked for here.

    Args:
        source: the grader's CIFAR-10 copy.
        profile: a name in :data:`~cifar_lab.profiles.PROFILES` (``"quick"``, ``"full"``).

    Returns:
        ((uint8 images (N, 32, 32, 3), int labels (N,)), None), or (None, why not).
    """
    from cifar_lab.data.splits import load_cifar10

    chosen = PROFILES[profile]
    try:
        splits = load_cifar10(
            1, chosen.num_validation, 10, source=source, seed=COURSE_SEED,
            standardise=False, verbose=False,
        )  # fmt: skip
    except ValueError as error:
        return None, str(error).split(";")[0]
    except Exception as error:
        raise GradingSetupError(f"cannot load the validation split: {error}") from error
    return (splits.X_val, splits.y_val), None


def model_accuracy(path: Path, images: np.ndarray, labels: np.ndarray, max_bytes: int) -> float:
    """Test accuracy of a saved ``.keras`` model on raw images: :func:`model_accuracies`, one set.

    Args:
        path: the ``.keras`` file (untrusted).
        images: raw pixels (N, 32, 32, 3), 0..255.
        labels: int labels (N,).
        max_bytes: largest accepted unpacked size of the archive.

    Returns:
        The fraction of images whose highest score is the label.
    """
    groups = np.zeros(len(labels), np.int64)
    return model_accuracies(path, images, labels, groups, max_bytes)[0]


def model_accuracies(
    path: Path, images: np.ndarray, labels: np.ndarray, groups: np.ndarray, max_bytes: int
) -> list[float]:
    """Accuracies of a saved ``.keras`` model on several image sets, loaded once in safe mode.

    Args:
        path: the ``.keras`` file (untrusted).
        images: raw pixels (N, 32, 32, 3), 0..255, every set one after another.
        labels: int labels (N,).
        groups: int set index (N,), 0..K-1, each set non-empty.
        max_bytes: largest accepted unpacked size of the archive.

    Returns:
        K accuracies, set 0 first.
    """
    from cifar_lab.instructor.model_loading import load_submitted_model

    # safe mode with the library's own layers (cifar_lab>Maxout ...), dense layers only
    model = load_submitted_model(path, max_bytes=max_bytes)
    _, predictions = evaluate_model(model, images, labels)  # as part5's TestSplit.evaluate
    labels, groups = np.asarray(labels), np.asarray(groups)
    correct = predictions == labels
    return [float(correct[groups == index].mean()) for index in range(int(groups.max()) + 1)]


def claims_of(notebook_results: dict[str, float], saved: dict | None) -> dict[str, dict]:
    """{"val"|"test": {source: value}} from notebook 05's outputs and results.json."""
    claims: dict[str, dict[str, float]] = {"val": {}, "test": {}}
    for kind, (recorded_name, saved_name) in CLAIMS.items():
        if recorded_name in notebook_results:
            claims[kind]["05 output"] = notebook_results[recorded_name]
        if finite_number((saved or {}).get(saved_name)):
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
    budget: Budget | None = None,
    profile: Any = None,
) -> tuple:
    """Recompute the saved model's accuracies and compare them with the claims.

    One child process, under ``budget``'s limits (None: default limits, no
    deadline; see :func:`~cifar_lab.instructor.sandbox.score_model_sets`), scores
    the model on the test split, on its perturbed copy (the probe), on the
    course's validation split and on the private images when there are some.

    Args:
        root: the submission's folder.
        claims: :func:`claims_of`'s {"val"|"test": {where: value}}.
        test_set: the batch's :class:`LazyTestSet`.
        tolerance: largest accepted difference between a claim and its recomputation.
        max_bytes: largest accepted unpacked size of the model archive.
        recorded_split: results.json's ``test_split`` (None: absent); honoured only
            when it is a split the course defines (see the module's docstring).
        budget: the submission's budget.
        profile: results.json's ``profile`` (anything but "quick"/"full": "full").

    Returns:
        (test accuracy or None, "yes" | "no" | "not-checked", findings).
    """
    path = root / PART5_DIR / MODEL_FILE
    if not path.is_file():
        return None, "not-checked", []
    if path.stat().st_size > max_bytes:
        return None, "no", [Finding("damaged", "part5", f"{MODEL_FILE} is over the size limit")]
    split = choose_split(test_set, recorded_split)  # the split the claim was measured on
    sets = {"test": (split.images, split.labels)}
    if test_set.source != "synthetic":  # its stand-in classes do not look alike mirrored
        sets["probe"] = (test_set.probe(split.images), split.labels)
    validation, no_validation = test_set.validation(profile)
    if validation is not None:
        sets["val"] = validation
    private = test_set.private()
    if private is not None:
        sets["private"] = private
    try:  # in a child process under memory and time ceilings (sandbox.py)
        scores = _score_once(test_set, path, sets, max_bytes, budget)
    except SubmissionTimeoutError:
        raise
    except LimitExceededError as error:  # a model that balloons: flagged, and the batch goes on
        return None, "no", [Finding("flagged", "part5", f"{MODEL_FILE} was not scored: {error}")]
    except Exception as error:  # untrusted file: any failure is the student's problem
        kind = getattr(error, "kind", type(error).__name__)  # ChildFailedError: the child's error
        if kind == "ForbiddenLayerError":  # names the layer: the whole message
            message = f"{MODEL_FILE} is refused: {str(error)[:400]}"
            return None, "no", [Finding("flagged", "part5", message)]
        reason = f"{kind}: {str(error).split('. ')[0][:200]}"
        message = f"{MODEL_FILE} cannot be loaded in safe mode or evaluated ({reason})"
        return None, "no", [Finding("flagged", "part5", message)]
    accuracy = scores["test"]
    if split.problem is not None:  # reported as such, not as a mismatch
        verified, findings = unverifiable(claims["test"], accuracy, split, tolerance)
    else:
        findings = list(split.findings)
        for source, value in claims["test"].items():
            if abs(value - accuracy) > tolerance:
                message = f"{source} claims test accuracy {value:.4f}; the saved model scores"
                findings.append(Finding("flagged", "part5", f"{message} {accuracy:.4f}"))
    if validation is None:
        message = f"the validation claim is not recomputed: the course's split ({no_validation})"
        findings.append(Finding("warning", "part5", message))
    else:
        strict = split.problem is None  # the grader's copy is the student's (or unknown)
        findings += validation_findings(
            claims["val"], scores["val"], len(validation[1]), tolerance, strict=strict
        )
    if "probe" in scores:
        probed = probe_finding(accuracy, scores["probe"], len(split.labels))
        findings += [probed] if probed is not None else []
    if private is not None:
        n_private = len(private[1])
        memorised = private_finding(accuracy, len(split.labels), scores["private"], n_private)
        findings += [memorised] if memorised is not None else []
    flagged = [finding for finding in findings if finding.severity != "warning"]
    if flagged:
        return accuracy, "no", findings
    checked = claims["test"] and split.problem is None
    return accuracy, "yes" if checked else "not-checked", findings


def validation_findings(
    claims: dict[str, float], accuracy: float, images: int, tolerance: float, *, strict: bool
) -> list[Finding]:
    """Compare validation claims with the accuracy recomputed on the course's validation split.

    Args:
        claims: {where: claimed validation accuracy}.
        accuracy: the saved model's accuracy on the course's validation split.
        images: that split's size.
        tolerance: the grader's tolerance.
        strict: the claim was measured on these very images (the student's copy of
            CIFAR-10 is the grader's), so only ``tolerance`` is allowed; otherwise
            sampling error is allowed too, as for a test split on another copy.

    Returns:
        A ``flagged`` finding per claim beyond the allowance.
    """
    spread = 0.0 if strict else 3 * math.sqrt(max(accuracy * (1 - accuracy), 0.01) * 2 / images)
    findings = []
    for where, value in claims.items():
        if abs(value - accuracy) > tolerance + spread:
            message = (
                f"{where} claims validation accuracy {value:.4f}; on the course's "
                f"{images:,} validation images the saved model scores {accuracy:.4f}"
            )
            findings.append(Finding("flagged", "part5", message))
    return findings


def _score_once(
    test_set: LazyTestSet,
    path: Path,
    sets: dict[str, tuple[np.ndarray, np.ndarray]],
    max_bytes: int,
    budget: Budget | None = None,
) -> dict[str, float]:
    """The model's accuracy on each set, scored in a child unless these bytes were."""
    if path.stat().st_size > max_bytes:  # refused by the child's loader; never read here
        return score_model_sets(path=path, sets=sets, max_bytes=max_bytes, budget=budget)
    digest = hashlib.sha256()
    with path.open("rb") as handle:  # streamed: the file is not held in the grader's memory
        for chunk in iter(lambda: handle.read(MEGABYTE), b""):
            digest.update(chunk)
    for name, (images, labels) in sets.items():
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(images).tobytes())
        digest.update(np.ascontiguousarray(labels).tobytes())
    key = digest.hexdigest()
    if key not in test_set.scores:  # only successes are kept: failures raise before this
        test_set.scores[key] = score_model_sets(
            path=path, sets=sets, max_bytes=max_bytes, budget=budget
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
            kind = record.get("error_kind") or "did not run"  # the grader's words; the
            message = f"rerun failed: {kind}"  # error's text is the student's: detail only
            detail = "" if record["error"] in (None, kind) else record["error"]
            findings.append(Finding("flagged", name, message, detail=detail))
        for result, value in results.items():
            again = record["results"].get(result)
            if again is None or not math.isclose(value, again, abs_tol=tolerance):
                shown = "not recorded" if again is None else f"{again:.4f}"
                message = f"rerun: {result} claimed {value:.4f}, recomputed {shown}"
                findings.append(Finding("flagged", name, message))
    if not findings:
        return "reproduced", []
    return ("failed" if failed else "not-reproduced"), findings


# ------------------------------------------------------------ what part5/ claims
RESULTS_KEYS = ("val_accuracy", "test_accuracy")


def read_part5_results(folder: Path) -> tuple[dict[str, Any] | None, list[Finding]]:
    """Read ``part5/results.json`` under ``folder``; check its keys and values.

    Returns:
        (the parsed object or None, findings).
    """
    path = folder / PART5_DIR / RESULTS_FILE

    def problem(severity: str, message: str) -> Finding:
        return Finding(severity, "part5", message, "run 05_tuning to the end; it saves part5/")

    if not path.is_file():
        return None, [problem("incomplete", f"{PART5_DIR}/{RESULTS_FILE} is missing")]
    if path.stat().st_size > MEGABYTE:
        return None, [problem("damaged", f"{RESULTS_FILE} is over 1 MB")]
    results, unreadable = parse_json(path.read_bytes(), RESULTS_FILE)
    if unreadable is not None:
        return None, [problem("damaged", unreadable)]
    if not isinstance(results, dict):
        return None, [problem("damaged", f"{RESULTS_FILE} is not a JSON object")]
    findings = [
        problem("incomplete", f"{RESULTS_FILE}: {key!r} is not a number in 0..1")
        for key in RESULTS_KEYS
        if not _is_accuracy(results.get(key))
    ]
    if not isinstance(results.get("config"), dict):
        findings.append(problem("incomplete", f"{RESULTS_FILE}: 'config' is not an object"))
    return results, findings


def _is_accuracy(value: Any) -> bool:
    return finite_number(value) and 0 <= value <= 1


# ------------------------------------------- the test split the claim was measured on
MAX_SPLIT_IMAGES = 100_000
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class SplitChoice:
    """The test images a model is scored on, and what the row should say about them.

    Attributes:
        images, labels: uint8 raw pixels (N, 32, 32, 3) and int labels (N,).
        problem: why the recorded split cannot be rebuilt (None: rebuilt, or none recorded).
        findings: notes for the row (a smaller split than the grader's own; the flag
            of a split the course does not define).
    """

    images: np.ndarray
    labels: np.ndarray
    problem: str | None = None
    findings: list[Finding] = field(default_factory=list)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def record_problem(record: Any) -> str | None:
    """Why an (untrusted) ``test_split`` record cannot name a split, or None."""
    if not isinstance(record, dict):
        return "its test_split record is not an object"
    size, seed, digest = record.get("images"), record.get("seed"), record.get("sha256")
    if not _is_int(size) or not 1 <= size <= MAX_SPLIT_IMAGES:
        return f"its test_split size {str(size)[:20]!r} is not a count of images"
    if seed is None:
        return "the split was drawn with an unrecorded seed (a Generator)"
    if not _is_int(seed) or not 0 <= seed < 2**32:
        return f"its test_split seed {str(seed)[:20]!r} is not a seed"
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        return "its test_split hash is not a SHA-256"
    return None


def rebuild(source: Any, record: dict) -> tuple[tuple[np.ndarray, np.ndarray] | None, str | None]:
    """Rebuild a recorded split from the grader's CIFAR-10 copy.

    Args:
        source: the grader's ``load_cifar10`` source.
        record: a valid ``test_split`` record.

    Returns:
        ((images, labels), None) when the rebuilt images hash as recorded, else (None, why not).
    """
    from cifar_lab.data.splits import load_cifar10

    size, seed = record["images"], record["seed"]
    for num_test in (size, None):  # None: all, when the copy's classes are unbalanced
        try:
            splits = load_cifar10(
                1, 0, num_test, source=source, seed=seed, standardise=False, verbose=False
            )
        except ValueError as error:
            reason = str(error).split(";")[0]
            continue
        images, labels = splits.X_test, splits.y_test
        if len(labels) == size and split_fingerprint(images, labels) == record["sha256"]:
            return (images, labels), None
        reason = (
            "its images differ from the grader's copy of CIFAR-10 (another copy, or synthetic)"
        )
    return None, f"{size:,} images drawn with seed {seed}: {reason}"


def course_test_sizes() -> set[int]:
    """Sizes of the profiles' test splits (drawn with :data:`COURSE_SEED`); the full set aside."""
    return {profile.num_test for profile in PROFILES.values() if profile.num_test is not None}


def choose_split(test_set: Any, record: Any) -> SplitChoice:
    """The split to score on: the recorded one when the course defines it and it can be rebuilt.

    Args:
        test_set: the grader's ``LazyTestSet`` (``arrays()``, ``all_test()``, ``source``).
        record: ``results.json``'s ``test_split`` value, or None when absent.

    Returns:
        A :class:`SplitChoice`: the recorded split, or the grader's own test set
        with ``problem`` (a course split the copy cannot rebuild) or ``findings``
        (a flag: a split the course does not define, never honoured).
    """
    images, labels = test_set.arrays()
    if record is None:
        return SplitChoice(images, labels)
    problem = record_problem(record)
    if problem is None and not _is_course_split(record, test_set):
        problem = f"it records {record['images']:,} images drawn with seed {record['seed']}"
    if problem is not None:
        return SplitChoice(images, labels, findings=[_not_a_course_split(problem, len(labels))])
    key = (record["images"], record["seed"], record["sha256"])
    cache = test_set.__dict__.setdefault("rebuilt", {})
    if key not in cache:
        cache[key] = rebuild(test_set.source, record)
    rebuilt, problem = cache[key]
    if rebuilt is None:
        return SplitChoice(images, labels, problem)
    notes = []
    if len(rebuilt[1]) < len(labels):
        message = (
            f"test accuracy measured and re-scored on {len(rebuilt[1]):,} test images "
            f"(the split results.json records), not the grader's {len(labels):,}"
        )
        notes.append(Finding("warning", "part5", message))
    return SplitChoice(*rebuilt, None, notes)


def _is_course_split(record: dict, test_set: Any) -> bool:
    """Whether a valid record names a split the course defines (its hash is checked later)."""
    if record["seed"] == COURSE_SEED and record["images"] in course_test_sizes():
        return True
    return record["images"] == len(test_set.all_test()[1])  # the full set: any seed draws it


def _not_a_course_split(why: str, images: int) -> Finding:
    """The flag for a recorded test split the course does not define."""
    sizes = " or ".join(f"{size:,}" for size in sorted(course_test_sizes()))
    message = (
        f"results.json's test split is not one the course defines ({why}; the course "
        f"uses all test images, or {sizes} drawn with seed {COURSE_SEED}): not honoured, "
        f"the model is scored on the grader's {images:,} test images instead"
    )
    return Finding(
        "flagged", "part5", message, "run 05_tuning as handed out: lab.TestSplit(data) of "
        "lab.load_profile_data(profile), evaluated with test_split.evaluate(raw_model)",
    )  # fmt: skip


def unverifiable(
    claims: dict[str, float], accuracy: float, choice: SplitChoice, tolerance: float
) -> tuple[str, list[Finding]]:
    """Findings for claims measured on a split the grader cannot rebuild.

    Args:
        claims: {where: claimed test accuracy}.
        accuracy: the model's accuracy on the grader's own test set.
        choice: the split choice (its ``problem`` is set).
        tolerance: the grader's tolerance.

    Returns:
        ("not-checked" or "no", findings): a warning when every claim lies within
        sampling error of ``accuracy``, a flag otherwise.
    """
    n = len(choice.labels)
    spread = math.sqrt(max(accuracy * (1 - accuracy), 0.01) * 2 / n)  # both splits ~n images
    findings = []
    for where, value in claims.items():
        close = abs(value - accuracy) <= tolerance + 3 * spread
        head = f"{where} claims test accuracy {value:.4f} on a split the grader cannot rebuild"
        tail = f"on the grader's {n:,} test images the model scores {accuracy:.4f}"
        verdict = "within sampling error; not verified" if close else "beyond sampling error"
        severity = "warning" if close else "flagged"
        findings.append(
            Finding(severity, "part5", f"{head} ({choice.problem}); {tail}, {verdict}")
        )
    verified = "no" if any(f.severity == "flagged" for f in findings) else "not-checked"
    return verified, findings


# ----------------------------- memorised test images: the perturbation probe and --private-test
PROBE_SHIFT = 1  # pixels, in each direction
PROBE_NOISE = 2.0  # standard deviation, grey levels
PROBE_JPEG_QUALITY = 90
# The largest fall an honest network may show under the probe. Measured on real
# CIFAR-10 (5,000 test images of the shared copy, probe seeds 1 and 2): dense
# networks 3072-512-10 and 3072-1024-512-10 trained on 20,000 images, without flip
# augmentation, fell from 0.4702 to 0.4632 and from 0.4916 to 0.4840 under seed 1
# (0.7 and 0.8 points) and by -0.3 and 0.3 points under seed 2; the FAST rung's
# network (ZCA whitening, flips, +-2 px shifts; 1024-512, 5 epochs on 20,000 images)
# fell from 0.4566 by 0.7 / 0.8 points, and by 1.0 / 0.6 with flip TTA (0.4772).
# A nearest-neighbour lookup of the test images (the most robust lookup: shifts,
# noise and JPEG alone leave it at 96-100%) fell from 1.0 to 0.486 / 0.460 keyed on
# 500 images and to 0.391 / 0.392 keyed on 5,000. The limit is this bound plus
# three standard errors: 0.05 + 0.021 = 0.071 for 10,000 images at 56%,
# 0.05 + 0.094 = 0.144 for quick's 500, far below a lookup's fall of 0.5 or more.
HONEST_PROBE_DROP = 0.05
MAX_PRIVATE_IMAGES = 100_000
MAX_PRIVATE_FILE_BYTES = MEGABYTE


def probe_images(images: np.ndarray, seed: int) -> np.ndarray:
    """The probe's perturbed copy of ``images``: mirrored, shifted, noisy, re-encoded as JPEG.

    Args:
        images: uint8 raw pixels (N, 32, 32, 3).
        seed: the grading run's probe seed (any int >= 0).

    Returns:
        uint8 (N, 32, 32, 3); image i is ``images[i]`` mirrored left to right,
        shifted by (dy, dx) in ``-PROBE_SHIFT..PROBE_SHIFT`` with its edge pixels
        repeated, plus rounded Gaussian noise, then JPEG-encoded and decoded.
    """
    from PIL import Image

    seed = check_int("seed", seed, minimum=0)
    images = np.asarray(images, dtype=np.uint8)[:, :, ::-1]  # CIFAR-10 looks alike mirrored
    rng = np.random.default_rng(seed)
    pad = PROBE_SHIFT
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    shifts = rng.integers(-pad, pad + 1, size=(len(images), 2))
    height, width = images.shape[1:3]
    out = np.empty_like(images)
    for index, (dy, dx) in enumerate(shifts):
        window = padded[index, pad + dy : pad + dy + height, pad + dx : pad + dx + width]
        noisy = np.rint(window + rng.normal(0.0, PROBE_NOISE, window.shape))
        buffer = io.BytesIO()
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(
            buffer, format="JPEG", quality=PROBE_JPEG_QUALITY
        )
        out[index] = np.asarray(Image.open(buffer).convert("RGB"))
    return out


def _spread(first: float, n_first: int, second: float, n_second: int) -> float:
    """Standard error of the difference of two accuracies (as if independent: conservative)."""
    return math.sqrt(first * (1 - first) / n_first + second * (1 - second) / n_second)


def probe_finding(public: float, probed: float, images: int) -> Finding | None:
    """Flag a model whose accuracy falls under the probe by more than an honest network's.

    Args:
        public: accuracy on the scored split.
        probed: accuracy on its perturbed copy.
        images: images in the split (N).

    Returns:
        A ``flagged`` finding, or None. The limit is ``HONEST_PROBE_DROP`` plus
        three standard errors of the difference (the same images twice, treated
        as independent, which overstates the error and so favours the student).
    """
    limit = HONEST_PROBE_DROP + 3 * _spread(public, images, probed, images)
    if public - probed <= limit:
        return None
    message = (
        f"memorised test images? the saved model scores {public:.4f} on the test images but "
        f"{probed:.4f} on the same images shifted by up to {PROBE_SHIFT} pixels, with noise "
        f"and JPEG re-encoding: a fall of {public - probed:.4f}, over the {limit:.4f} an "
        "honest network stays within"
    )
    return Finding("flagged", "part5", message)


def private_finding(
    public: float, n_public: int, private: float, n_private: int
) -> Finding | None:
    """Flag a model that scores better on the public test images than on the private ones.

    Only a public advantage is flagged: no model can memorise images it never
    saw, and private images that happen to be easier say nothing against it.

    Args:
        public, n_public: accuracy on the scored public split, and its size.
        private, n_private: accuracy on the instructor's private images, and their number.

    Returns:
        A ``flagged`` finding when ``public - private`` exceeds three standard
        errors of the difference, else None.
    """
    limit = 3 * _spread(public, n_public, private, n_private)
    if public - private <= limit:
        return None
    message = (
        f"memorised test images? the saved model scores {public:.4f} on the public test "
        f"images but {private:.4f} on {n_private:,} private ones the student never saw: "
        f"{public - private:.4f} apart, beyond the {limit:.4f} sampling error allows"
    )
    return Finding("flagged", "part5", message)


def read_private_test(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the instructor's private labelled images: ``folder/<class>/<image>``.

    Args:
        folder: a folder with one sub-folder per CIFAR-10 class name (``airplane`` ...
            ``truck``) holding 32x32 RGB images (PNG, JPEG, ...); not every class
            needs images.

    Returns:
        (uint8 images (N, 32, 32, 3), int64 labels (N,)), in sorted path order.

    Raises:
        ValueError: the folder is missing or empty, a class folder is unknown, or
            an image is not 32x32, cannot be decoded, or is over 1 MB.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--private-test {folder} is not a folder")
    paths = sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)
    )
    if not paths:
        raise ValueError(f"--private-test {folder} holds no <class>/<image> files")
    if len(paths) > MAX_PRIVATE_IMAGES:
        raise ValueError(f"--private-test {folder} holds over {MAX_PRIVATE_IMAGES:,} images")
    images = np.empty((len(paths), 32, 32, 3), np.uint8)
    labels = np.empty(len(paths), np.int64)
    for index, path in enumerate(paths):
        label = path.parent.name
        if path.parent.parent != folder or label not in CLASS_NAMES:
            raise ValueError(f"{path}: put each image in {folder}/<class>/, class one of "
                             f"{', '.join(CLASS_NAMES)}")  # fmt: skip
        if path.stat().st_size > MAX_PRIVATE_FILE_BYTES:
            raise ValueError(f"{path}: over 1 MB; private test images are 32x32")
        try:  # the header's 32x32 is checked before any pixel is decoded
            with open_image_header(path.read_bytes(), str(path)) as image:
                pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
        except Exception as error:
            raise ValueError(f"{path}: cannot decode the image ({error})") from error
        images[index], labels[index] = pixels, CLASS_NAMES.index(label)
    return images, labels
