"""Checking claims by recomputing them, never by trusting the numbers handed in.

**Part V's saved model** (always, no student code runs): the model in
``part5/best_model.keras`` is loaded with Keras safe mode, which refuses to
deserialise code such as ``Lambda`` layers, after checking that the archive
does not unpack to more than the size limit. Its test accuracy is recomputed
on the real test set (loaded once per grading run, on first use) and compared
with the claims in notebook 05's output (``lab.record("test_accuracy")``) and
in ``part5/results.json``; a difference above the tolerance (default 0.005)
is flagged, as is any disagreement between the two claims.

**Re-execution** (``grade --rerun``): each submission runs in a separate
process (``python -m cifar_lab.instructor.rerun``) on copies of its notebooks in a
temporary folder, with the student's outputs cleared first so that nothing
claimed survives unless it is recomputed. Two limits apply: a per-cell
timeout (default 1 hour, enough for the full profile's training cells on a
CPU) and a total timeout per submission (default 4 hours); at the total
limit the process and its kernel are killed. Every recorded result is then
compared with the re-executed value; a difference above the tolerance
(default 0.02, since training on other hardware is not bit-identical), a
result no longer recorded, or a notebook that fails is flagged. Nothing is
downloaded on purpose: the kernels see ``CIFAR10_SOURCE`` (from ``--source``)
and ``CIFAR_LAB_PROFILE``; without a local CIFAR-10 copy the full profile
fails and says so. Re-running executes student code: do it in a container or
an account with nothing to lose.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifar_lab.instructor.inspection import Finding, is_number, megabytes, recorded_results
from cifar_lab.profiles import PROFILE_ENV, get_profile
from cifar_lab.tuning.part5 import MODEL_FILE, PART5_DIR, RESULTS_FILE

KERNEL_PID_KEY = "kernel_pid"
DEFAULT_TOLERANCE = 0.005
CONSISTENCY_TOLERANCE = 1e-4  # the same number written twice must agree
CLAIMS = {"val": ("best_val_accuracy", "val_accuracy"), "test": ("test_accuracy", "test_accuracy")}


class GradingSetupError(RuntimeError):
    """The grader itself cannot work (e.g. no test set); not a student's problem."""


class LazyTestSet:
    """The raw test images and labels, loaded on first use and then reused."""

    def __init__(self, source: str | None, num_test: int | None) -> None:
        self.source, self.num_test = source, num_test
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (uint8 images (N, 32, 32, 3), int labels (N,))."""
        if self._arrays is None:
            from cifar_lab.data.splits import load_cifar10

            try:  # 1,000 training images only fix the normalisation, undone below
                splits = load_cifar10(1000, 0, self.num_test, source=self.source)
            except Exception as error:
                raise GradingSetupError(f"cannot load the test set: {error}") from error
            self._arrays = (splits.denormalise(splits.X_test), splits.y_test)
        return self._arrays


def _check_keras_archive(path: Path, max_bytes: int) -> None:
    """A ``.keras`` file is a zip: refuse one that unpacks to more than ``max_bytes``."""
    with zipfile.ZipFile(path) as archive:
        unpacked = sum(member.file_size for member in archive.infolist())
    if unpacked > max_bytes:
        raise ValueError(f"it unpacks to {megabytes(unpacked)}, over {megabytes(max_bytes)}")


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

    _check_keras_archive(path, max_bytes)
    model = keras.models.load_model(path, safe_mode=True, compile=False)
    scores = []
    for start in range(0, len(labels), 500):  # direct calls: no tf.function retracing per model
        batch = images[start : start + 500].astype(np.float32)
        scores.append(keras.ops.convert_to_numpy(model(batch, training=False)))
    scores = np.concatenate(scores) if scores else np.zeros((0, 10))
    if scores.shape != (len(labels), 10):
        raise ValueError(f"model returned shape {scores.shape}, expected ({len(labels)}, 10)")
    return float(np.mean(scores.argmax(axis=1) == labels))


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
    root: Path, claims: dict, test_set: LazyTestSet, *, tolerance: float, max_bytes: int
) -> tuple:
    """Recompute the saved model's test accuracy and compare it with the claims.

    Returns:
        (accuracy or None, "yes" | "no" | "not-checked", findings).
    """
    path = root / PART5_DIR / MODEL_FILE
    if not path.is_file():
        return None, "not-checked", []
    if path.stat().st_size > max_bytes:
        return None, "no", [Finding("damaged", "part5", f"{MODEL_FILE} is over the size limit")]
    images, labels = test_set.arrays()
    try:
        accuracy = model_accuracy(path, images, labels, max_bytes)
    except Exception as error:  # untrusted file: any failure is the student's problem
        reason = f"{type(error).__name__}: {str(error).split('. ')[0][:200]}"
        message = f"{MODEL_FILE} cannot be loaded in safe mode or evaluated ({reason})"
        return None, "no", [Finding("flagged", "part5", message)]
    findings = []
    for source, value in claims["test"].items():
        if abs(value - accuracy) > tolerance:
            message = f"{source} claims test accuracy {value:.4f}; the saved model scores"
            findings.append(Finding("flagged", "part5", f"{message} {accuracy:.4f}"))
    verified = "no" if findings else "yes" if claims["test"] else "not-checked"
    return accuracy, verified, findings


@dataclass(frozen=True)
class RerunSettings:
    """Limits and comparison settings for re-execution.

    Attributes:
        cell_timeout: seconds any single cell may take.
        total_timeout: seconds the whole submission may take.
        profile: ``CIFAR_LAB_PROFILE`` for the kernels (``"full"`` or ``"quick"``).
        tolerance: largest accepted |claimed - recomputed| for a recorded result.
        source: CIFAR-10 copy for the kernels (``CIFAR10_SOURCE``), or None.
    """

    cell_timeout: int = 3600
    total_timeout: int = 4 * 3600
    profile: str = "full"
    tolerance: float = 0.02
    source: str | None = None

    def __post_init__(self) -> None:
        for name in ("cell_timeout", "total_timeout"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int of seconds, got {self!r}")
        if not 0 <= self.tolerance < 1:
            raise ValueError(f"rerun tolerance must be in [0, 1), got {self.tolerance}")
        get_profile(self.profile)  # a typo fails here, not hours later


def _child_environment(settings: RerunSettings) -> dict[str, str]:
    environment = {**os.environ, PROFILE_ENV: settings.profile}
    # The child and its kernels run in a temporary folder: let them import this cifar_lab.
    package_parent = str(Path(__file__).resolve().parents[2])
    environment["PYTHONPATH"] = os.pathsep.join(
        [package_parent, *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    if settings.source:
        environment["CIFAR10_SOURCE"] = settings.source
    return environment


def rerun_notebooks(
    folder: Path, names: list[str], settings: RerunSettings
) -> tuple[dict[str, dict], str | None]:
    """Execute copies of ``folder/<name>.ipynb`` in order, in a child process.

    Args:
        folder: the submission's notebook folder (not modified).
        names: notebook stems to run, in order.
        settings: limits and environment.

    Returns:
        (record per notebook that finished: ``{"status", "error", "results"}``,
        None or what went wrong with the process as a whole, e.g. the total limit).
    """
    with tempfile.TemporaryDirectory(prefix="cifar_lab_rerun_") as work:
        work_dir = Path(work)
        for name in names:
            shutil.copyfile(Path(folder) / f"{name}.ipynb", work_dir / f"{name}.ipynb")
        status, log_path = work_dir / "status.jsonl", work_dir / "rerun.log"
        command = [sys.executable, "-m", "cifar_lab.instructor.rerun", "--cell-timeout"]
        command += [str(settings.cell_timeout), "--status", str(status)]
        command += [str(work_dir / f"{name}.ipynb") for name in names]
        with open(log_path, "wb") as log:
            child = subprocess.Popen(
                command, cwd=work_dir, env=_child_environment(settings), stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            try:
                code, problem = child.wait(timeout=settings.total_timeout), None
            except subprocess.TimeoutExpired:
                _kill(child, status)
                code, problem = 0, f"stopped at the total limit of {settings.total_timeout} s"
        if code != 0:
            last = (log_path.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
            problem = f"the rerun process exited with code {code}: {last[:200]}"
        return _read_status(status), problem


def _kill(child: subprocess.Popen, status: Path) -> None:
    """Kill the child's process group, then the kernel it started (its own session)."""
    with contextlib.suppress(ProcessLookupError):  # it may have finished meanwhile
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    for line in status.read_text().splitlines() if status.exists() else []:
        record = json.loads(line)
        if KERNEL_PID_KEY in record:
            with contextlib.suppress(ProcessLookupError):  # it already shut down
                os.killpg(record[KERNEL_PID_KEY], signal.SIGKILL)


def _read_status(status: Path) -> dict[str, dict]:
    records = {}
    for line in status.read_text().splitlines() if status.exists() else []:
        record = json.loads(line)
        if "notebook" in record:
            records[record["notebook"]] = record
    return records


def compare_claims(
    claimed: dict[str, dict[str, float]],
    records: dict[str, dict],
    problem: str | None,
    settings: RerunSettings,
) -> tuple[str, list[Finding]]:
    """Compare claimed results with re-executed ones.

    Args:
        claimed: notebook stem -> {result name: claimed value}.
        records: the per-notebook records :func:`rerun_notebooks` returned.
        problem: its process-level problem, or None.
        settings: holds the tolerance.

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
            if again is None or not math.isclose(value, again, abs_tol=settings.tolerance):
                shown = "not recorded" if again is None else f"{again:.4f}"
                message = f"rerun: {result} claimed {value:.4f}, recomputed {shown}"
                findings.append(Finding("flagged", name, message))
    if not findings:
        return "reproduced", []
    return ("failed" if failed else "not-reproduced"), findings


def _execute(path: Path, cell_timeout: int, status: Path) -> dict[str, Any]:
    """Run one notebook with cleared outputs; return its status record."""
    import nbformat
    from nbclient import NotebookClient

    record: dict[str, Any] = {"notebook": path.stem, "status": "ok", "error": None}
    notebook = None
    try:
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":  # a claim must not survive unless recomputed
                cell.outputs, cell.execution_count = [], None
        client = NotebookClient(
            notebook,
            timeout=cell_timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
        )
        # The kernel runs in its own session; its pid lets the parent kill it on timeout.
        client.on_notebook_start = lambda **_: _append(
            status, {KERNEL_PID_KEY: client.km.provisioner.pid}
        )
        client.execute()
    except Exception as error:  # cell error, timeout, dead kernel: all mean "failed"
        lines = str(error).strip().splitlines() or [type(error).__name__]
        record.update(status="failed", error=f"{type(error).__name__}: {lines[-1][:300]}")
    record["results"] = recorded_results(notebook) if notebook is not None else {}
    return record


def _append(status: Path, record: dict[str, Any]) -> None:
    with open(status, "a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Child entry point: execute notebooks in order, one status line each."""
    parser = argparse.ArgumentParser(prog="python -m cifar_lab.instructor.rerun")
    parser.add_argument("--cell-timeout", type=int, required=True)
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("notebooks", type=Path, nargs="+")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        _append(args.status, _execute(path, args.cell_timeout, args.status))
    return 0


if __name__ == "__main__":
    sys.exit(main())
