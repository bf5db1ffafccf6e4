"""Crafted course submissions for the instructor-tool tests.

Executed notebooks are faked from the solution notebooks (execution counts
1..n, a stdout line per cell, a result payload per ``lab.record`` call and a
passed check payload per ``check_at_least`` call), so no test trains a
course model. Part V's model is a tiny Keras model on synthetic data whose
test accuracy is computed here independently of the grader.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifar_lab.instructor.notebooks import course_notebooks
from cifar_lab.results import CHECK_MIME, RESULT_MIME
from cifar_lab.tuning.part5 import MODEL_FILE, PART5_DIR, RESULTS_FILE

ANSWER_ID = "written-answer-1"
STUDENT_ANSWER = (
    "**Answer:** Batch normalisation keeps activations in range, so SGD tolerates a larger rate."
)
NUM_TEST = 200  # grade with --source synthetic --num-test 200
VAL_ACCURACY = 0.61  # a validation claim for files that are never graded
RECORD_CALL = re.compile(r"""lab\.record\(\s*["'](\w+)["']""")


def course_source(folder: Path) -> Path:
    """Copy the course notebooks to ``folder``; give 05 a written-answer cell with a solution."""
    folder.mkdir(parents=True)
    for path in course_notebooks():
        notebook = json.loads(path.read_text(encoding="utf-8"))
        if path.stem == "05_tuning":
            source = "**Answer:**\n### BEGIN SOLUTION\nIt normalises each batch.\n### END SOLUTION"
            cell = {"cell_type": "markdown", "id": ANSWER_ID, "metadata": {}, "source": source}
            notebook["cells"].append(cell)
        (folder / path.name).write_text(json.dumps(notebook, indent=1), encoding="utf-8")
    return folder


def payload(mime: str, data: dict, text: str) -> dict:
    """A display_data output carrying a cifar_lab JSON payload."""
    return {
        "output_type": "display_data",
        "metadata": {},
        "data": {"text/plain": text, mime: data},
    }


def result_output(name: str, value: float, key: bool = False) -> dict:
    data = {"name": name, "value": value, "key": key}
    return payload(RESULT_MIME, data, f"result {name} = {value:.4f}")


def check_output(passed: bool = True, what: str = "accuracy promise") -> dict:
    data = {"what": what, "value": 0.5, "minimum": 0.4, "passed": passed}
    return payload(CHECK_MIME, data, f"check {'passed' if passed else 'FAILED'}: {what}")


def executed(notebook: dict, extra_results: dict[str, float]) -> dict:
    """A copy that looks run top to bottom, with the payloads its calls would emit."""
    notebook = copy.deepcopy(notebook)
    code = [
        c for c in notebook["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()
    ]
    for count, cell in enumerate(code, start=1):
        source = "".join(cell["source"])
        cell["execution_count"] = count
        cell["outputs"] = [
            {"output_type": "stream", "name": "stdout", "text": f"cell {count} ran\n"}
        ]
        cell["outputs"] += [result_output(name, 0.5) for name in RECORD_CALL.findall(source)]
        cell["outputs"] += [check_output() for _ in range(source.count("check_at_least("))]
    code[-1]["outputs"] += [
        result_output(n, v, n == "test_accuracy") for n, v in extra_results.items()
    ]
    for cell in notebook["cells"]:
        if is_answer_cell(cell):
            cell["source"] = STUDENT_ANSWER
    return notebook


def is_answer_cell(cell: dict) -> bool:
    """A markdown written-answer cell (its source starts with **Answer:**)."""
    source = "".join(cell.get("source", ""))
    return cell.get("cell_type") == "markdown" and source.startswith("**Answer:**")


def count_answer_cells(folder: Path, stem: str = "05_tuning") -> int:
    """How many written-answer cells a notebook in ``folder`` has."""
    notebook = json.loads((folder / f"{stem}.ipynb").read_text(encoding="utf-8"))
    return sum(is_answer_cell(cell) for cell in notebook["cells"])


@dataclass(frozen=True)
class Models:
    """Saved Part V models and the good one's accuracy on the synthetic test set."""

    good: Path
    weak: Path
    unsafe: Path
    good_accuracy: float


def train_models(folder: Path) -> Models:
    """A briefly trained model, an untrained one, and one with a Lambda layer (code)."""
    import keras

    from cifar_lab.data.synthetic import synthetic_cifar10

    raw = synthetic_cifar10(300, NUM_TEST)  # the test pool does not depend on num_train

    def dense(first_layer) -> keras.Model:
        return keras.Sequential(
            [keras.Input((32, 32, 3)), first_layer, keras.layers.Flatten(), keras.layers.Dense(10)]
        )

    keras.utils.set_random_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    weak = dense(keras.layers.Rescaling(1 / 255))
    weak.save(folder / "weak.keras")
    good = dense(keras.layers.Rescaling(1 / 255))
    good.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    good.fit(raw.X_train, raw.y_train, epochs=2, batch_size=50, verbose=0)
    good.save(folder / "good.keras")
    accuracy = float(np.mean(good.predict(raw.X_test, verbose=0).argmax(axis=1) == raw.y_test))
    dense(keras.layers.Lambda(lambda x: x / 255.0)).save(folder / "unsafe.keras")
    return Models(folder / "good.keras", folder / "weak.keras", folder / "unsafe.keras", accuracy)


def distinct_model(model: Path, out: Path, tag: str) -> Path:
    """A byte-different copy of a ``.keras`` file (its metadata.json gains ``tag``): same weights.

    The grader scores each distinct model file once per process, so a class of
    copies of one file would be scored once; each student's own file is scored.
    """
    with zipfile.ZipFile(model) as source, zipfile.ZipFile(out, "w") as target:
        for member in source.infolist():
            data = source.read(member)
            if member.filename == "metadata.json":
                data = json.dumps({**json.loads(data), "tag": tag}).encode()
            target.writestr(member, data)
    return out


_VALIDATION_SCORES: dict[tuple, float] = {}


def synthetic_val_accuracy(model: Path, profile: str = "full") -> float:
    """``model``'s accuracy on the course's validation split of the synthetic source.

    That is the split ``grade --source synthetic`` recomputes a (full-profile)
    validation claim on; computed here with Keras, independently of the grader.
    """
    import keras

    from cifar_lab.instructor.claims import course_validation

    key = (str(model), model.stat().st_mtime_ns, model.stat().st_size, profile)
    if key not in _VALIDATION_SCORES:
        (images, labels), _ = course_validation("synthetic", profile)
        try:
            network = keras.models.load_model(model, safe_mode=True, compile=False)
        except Exception:  # a file no loader takes (code, a placeholder): never scored
            return VAL_ACCURACY
        scores = np.asarray(network(images.astype(np.float32), training=False))
        _VALIDATION_SCORES[key] = float(np.mean(scores.argmax(axis=1) == labels))
    return _VALIDATION_SCORES[key]


def write_submission(
    root: Path, source: Path, model: Path, test_accuracy: float, val_accuracy: float | None = None
) -> Path:
    """A complete, clean submission folder: five executed notebooks and ``part5/``.

    ``val_accuracy`` None claims the model's true validation accuracy for grading
    on the synthetic source (:func:`synthetic_val_accuracy`).
    """
    root.mkdir(parents=True)
    if val_accuracy is None:
        val_accuracy = synthetic_val_accuracy(model)
    claims = {"test_accuracy": test_accuracy, "best_val_accuracy": val_accuracy}
    for path in course_notebooks(source):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        extra = claims if path.stem == "05_tuning" else {}
        (root / path.name).write_text(json.dumps(executed(notebook, extra)), encoding="utf-8")
    (root / PART5_DIR).mkdir()
    saved = {
        "val_accuracy": val_accuracy,
        "test_accuracy": test_accuracy,
        "config": {"hidden": 10},
    }
    (root / PART5_DIR / RESULTS_FILE).write_text(json.dumps(saved), encoding="utf-8")
    shutil.copyfile(model, root / PART5_DIR / MODEL_FILE)
    return root


def edit_notebook(root: Path, stem: str, change) -> None:
    """Load ``root/<stem>.ipynb`` as JSON, apply ``change(notebook)``, save it back."""
    path = root / f"{stem}.ipynb"
    notebook = json.loads(path.read_text(encoding="utf-8"))
    change(notebook)
    path.write_text(json.dumps(notebook), encoding="utf-8")


def code_cells(notebook: dict) -> list[dict]:
    return [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


def set_claim(notebook: dict, name: str, value: float) -> None:
    """Edit a recorded result in place, as a student editing the .ipynb would."""
    for cell in code_cells(notebook):
        for output in cell["outputs"]:
            data = output.get("data", {}).get(RESULT_MIME)
            if data and data["name"] == name:
                data["value"] = value


def write_huge_output(root: Path, stem: str, size: int) -> None:
    """Give a notebook a stdout output of ``size`` bytes, streamed to disk."""
    marker = "@@HUGE@@"
    edit_notebook(root, stem, lambda nb: code_cells(nb)[0]["outputs"].append(
        {"output_type": "stream", "name": "stdout", "text": marker}
    ))  # fmt: skip
    head, tail = (root / f"{stem}.ipynb").read_text(encoding="utf-8").split(marker)
    chunk = "x" * (1 << 20)
    with open(root / f"{stem}.ipynb", "w", encoding="utf-8") as out:
        out.write(head)
        for _ in range(size // len(chunk)):
            out.write(chunk)
        out.write(tail)


def zip_folder(root: Path, archive: Path, prefix: str = "") -> Path:
    """Zip a submission folder, optionally under a top-level folder ``prefix``."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            out.write(path, arcname=prefix + path.relative_to(root).as_posix())
    return archive


def run_cli(*argv: str) -> int:
    """Run ``python -m cifar_lab <release|submit|grade> ...`` in-process; return the exit code."""
    import argparse

    from cifar_lab.instructor.cli import add_cli

    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)
