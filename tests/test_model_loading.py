"""Honest submissions verify: the grader's one loader, and the test split results.json records.

Every Part V model option is saved (tiny widths, a few images, no training)
and loaded back the way ``grade`` and ``submit`` load it; a model with code,
or with a custom class the grader process happens to know, stays refused. A
quick-profile-like submission (its claim measured on a 20-image test split)
is graded through ``grade_folder`` on a small image-folder copy of CIFAR-10
built here, and verifies: its claims are measured on the quick profile's test
and validation splits, drawn with the course's seed, as notebook 05 measures them.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_image_dir
from instructor_fixtures import course_source, run_cli, write_submission

from cifar_lab.instructor.claims import model_accuracy
from cifar_lab.instructor.grading import GradeSettings, grade_folder
from cifar_lab.instructor.model_loading import (
    LAYER_MODULES,
    UnsafeModelError,
    library_objects,
    load_submitted_model,
    model_finding,
)
from cifar_lab.tuning.config import ACTIVATIONS, BATCH_NORM_PLACES, PRECISIONS, WHITENINGS
from cifar_lab.tuning.part5 import MODEL_FILE, PART5_DIR, RESULTS_FILE

PACKAGE = Path(__file__).resolve().parents[1] / "cifar_lab"


def _options() -> list[dict]:
    """Configs covering every activation, whitening, batch-norm place and precision."""
    count = max(len(ACTIVATIONS), len(WHITENINGS), len(BATCH_NORM_PLACES), len(PRECISIONS))
    return [
        {
            "activation": ACTIVATIONS[i % len(ACTIVATIONS)],
            "whitening": WHITENINGS[i % len(WHITENINGS)],
            "batch_norm": BATCH_NORM_PLACES[i % len(BATCH_NORM_PLACES)],
            "precision": PRECISIONS[i % len(PRECISIONS)],
            "flip_tta": i % 2 == 1,
        }
        for i in range(count)
    ]


def _whitening(method: str):
    """A stand-in fitted whitening (the saved model holds only its numbers; no eigh)."""
    from cifar_lab.tuning.whitening import WhiteningFit

    units = 8 if method == "pca" else 3072
    matrix = np.eye(3072, units, dtype=np.float32) / 60.0
    mean = np.full(3072, 0.1, np.float32)
    return WhiteningFit(method, mean, matrix, np.ones(3072), 0.1)


def _part5_model(option: dict):
    """The raw-pixel Part V model notebook 05 saves, built for ``option`` (untrained)."""
    from cifar_lab.tuning.config import MLPConfig
    from cifar_lab.tuning.layers import raw_pixel_model
    from cifar_lab.tuning.network import build_mlp

    fields = {k: v for k, v in option.items() if k != "flip_tta"}
    components = 8 if fields["whitening"] == "pca" else None  # zca keeps all 3072
    config = MLPConfig(hidden_sizes=(6, 4), whitening_components=components, seed=1, **fields)
    fit = None if config.whitening == "none" else _whitening(config.whitening)
    network = build_mlp(config, whitening=fit)
    raw = raw_pixel_model(network, [120.0] * 3, [60.0] * 3, flip_tta=option["flip_tta"])
    return config, raw


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 24)


@pytest.mark.parametrize("option", _options(), ids=lambda o: "-".join(map(str, o.values())))
def test_every_part5_option_loads_and_rescores_as_the_grader_does(option, images, tmp_path):
    X, y = images
    _, raw = _part5_model(option)
    expected = np.asarray(raw(X.astype(np.float32), training=False)).argmax(axis=1)
    raw.save(tmp_path / MODEL_FILE)
    reloaded = load_submitted_model(tmp_path / MODEL_FILE)
    again = np.asarray(reloaded(X.astype(np.float32), training=False)).argmax(axis=1)
    np.testing.assert_array_equal(again, expected)
    score = model_accuracy(tmp_path / MODEL_FILE, X, y, max_bytes=64 << 20)  # what grade runs
    assert score == pytest.approx(float(np.mean(expected == y)))
    assert model_finding(tmp_path / MODEL_FILE) is None  # and submit accepts it


def test_only_the_librarys_own_classes_are_registered_for_loading():
    objects = library_objects()
    assert "cifar_lab>Maxout" in objects
    assert all(name.startswith("cifar_lab>") for name in objects)
    registering = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {getattr(n, "attr", getattr(n, "id", "")) for n in ast.walk(tree)}
        if "register_keras_serializable" in names:
            registering.add(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
    assert registering == set(LAYER_MODULES)  # a new registered layer must be listed


def _dense(first_layer):
    import keras

    layers = [
        keras.Input((32, 32, 3)),
        first_layer,
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ]
    return keras.Sequential(layers)


def test_lambda_model_is_still_refused(tmp_path):
    import keras

    _dense(keras.layers.Lambda(lambda x: x / 255.0)).save(tmp_path / "lambda.keras")
    with pytest.raises(UnsafeModelError, match="a Python lambda"):
        load_submitted_model(tmp_path / "lambda.keras")
    finding = model_finding(tmp_path / "lambda.keras")
    assert finding.severity == "flagged" and "no Lambda" in finding.fix


def test_a_custom_class_the_grader_process_knows_is_still_refused(tmp_path):
    import keras

    @keras.saving.register_keras_serializable(package="student")
    class Scale(keras.layers.Layer):  # registered in this process, as an attacker might hope
        def call(self, inputs):
            return inputs / 255.0

    _dense(Scale()).save(tmp_path / "custom.keras")
    keras.models.load_model(tmp_path / "custom.keras", safe_mode=True)  # plain Keras would load it
    with pytest.raises(UnsafeModelError, match="'student>Scale'"):
        load_submitted_model(tmp_path / "custom.keras")


def test_submit_refuses_a_model_the_grader_cannot_load_and_names_the_fix(tmp_path, capsys):
    import keras

    _dense(keras.layers.Lambda(lambda x: x / 255.0)).save(tmp_path / "lambda.keras")
    source = course_source(tmp_path / "source")
    root = write_submission(tmp_path / "nb", source, tmp_path / "lambda.keras", 0.5)
    assert (
        run_cli(
            "submit",
            "--student",
            "alice",
            "--notebook-dir",
            str(root),
            "--out",
            str(tmp_path / "a.zip"),
        )
        == 1
    )
    out = capsys.readouterr().out
    assert "best_model.keras cannot be loaded the way the grader loads it" in out
    assert "fix: build the network from keras.layers" in out
    assert not (tmp_path / "a.zip").exists()


# ------------------------------------------------------------------ the recorded test split
@pytest.fixture(scope="module")
def honest(tmp_path_factory):
    """A small CIFAR-10 copy, and a maxout submission measured on the quick profile's splits.

    The copy holds more test images than quick's split (600 against 500), so the
    grader's own test set differs from the split the claim was measured on.
    """
    import cifar_lab as lab
    from cifar_lab.profiles import PROFILES
    from cifar_lab.tuning import part5

    quick = PROFILES["quick"]
    base = tmp_path_factory.mktemp("honest")
    cifar = base / "cifar10-png"
    per_class = quick.num_validation // 10 + 2
    write_image_dir(cifar, per_class=per_class, test_per_class=quick.num_test // 10 + 10)
    training = per_class * 10 - quick.num_validation
    data = lab.load_cifar10(  # as load_profile_data(quick) draws them, with seed 0
        training, quick.num_validation, quick.num_test, source=cifar, seed=0, verbose=False
    )
    test_split = part5.TestSplit(data)
    option = {"activation": "maxout", "whitening": "none", "batch_norm": "after",
              "precision": "float32", "flip_tta": False}  # fmt: skip
    config, raw = _part5_model(option)
    test = test_split.evaluate(raw)
    val_scores = np.asarray(raw(data.denormalise(data.X_val).astype(np.float32), training=False))
    val_accuracy = float(np.mean(val_scores.argmax(axis=1) == data.y_val))
    folder = base / "saved"
    part5.save_final_model(raw, config, val_accuracy, test.accuracy, folder=folder)
    saved = json.loads((folder / RESULTS_FILE).read_text())
    source = course_source(base / "source")
    root = write_submission(
        base / "work" / "alice", source, folder / MODEL_FILE, test.accuracy, val_accuracy
    )
    results = {**saved, "profile": "quick"}  # the profile the splits were drawn for
    (root / PART5_DIR / RESULTS_FILE).write_text(json.dumps(results))
    return {"cifar": cifar, "root": root, "accuracy": test.accuracy, "base": base,
            "val_accuracy": val_accuracy, "num_test": quick.num_test}  # fmt: skip


def _grade_one(honest, name: str, change=None) -> dict:
    import shutil

    batch = honest["base"] / f"batch-{name}"
    shutil.copytree(honest["root"], batch / name)
    if change is not None:
        path = batch / name / PART5_DIR / RESULTS_FILE
        path.write_text(json.dumps(change(json.loads(path.read_text()))))
    # the grader's own test set: all 600 images; the saved outputs read, not re-executed
    settings = GradeSettings(
        source=str(honest["cifar"]), rerun=None, accept_profiles=("full", "quick")
    )  # the honest part5/ ran in the quick profile; that is not what this test is about
    (row,) = grade_folder(batch, settings, verbose=False)
    return row


def test_results_json_records_the_profile_and_the_test_split(honest):
    saved = json.loads((honest["root"] / PART5_DIR / RESULTS_FILE).read_text())
    assert saved["profile"] in ("quick", "full")
    assert saved["test_split"]["images"] == honest["num_test"] and saved["test_split"]["seed"] == 0
    assert len(saved["test_split"]["sha256"]) == 64


def test_a_claim_on_the_recorded_split_verifies(honest):
    row = _grade_one(honest, "alice")
    assert row["status"] == "ok", row["problems"]
    assert row["part5_claim_verified"] == "yes"
    assert row["part5_model_test_accuracy"] == round(honest["accuracy"], 4)
    shown = f"re-scored on {honest['num_test']} test images"
    assert any(shown in p for p in row["problems"])  # a warning


def test_a_split_the_grader_cannot_rebuild_is_reported_as_such(honest):
    def elsewhere(saved: dict) -> dict:  # e.g. measured on another copy of CIFAR-10
        return {**saved, "test_split": {**saved["test_split"], "sha256": "0" * 64}}

    row = _grade_one(honest, "bob", elsewhere)
    problems = " ".join(row["problems"])
    assert "on a split the grader cannot rebuild" in problems
    assert "its images differ from the grader's copy of CIFAR-10" in problems
    assert "the saved model scores" not in problems  # not reported as a mismatch
    assert row["part5_claim_verified"] in ("not-checked", "no")


def test_a_far_off_claim_on_an_unrebuildable_split_is_flagged(honest):
    def inflated(saved: dict) -> dict:  # measured on another copy of CIFAR-10
        return {
            **saved,
            "test_accuracy": 0.99,
            "test_split": {**saved["test_split"], "sha256": "0" * 64},
        }

    row = _grade_one(honest, "carol", inflated)
    assert row["status"] == "flagged"
    assert any("cannot rebuild" in p and "beyond sampling error" in p for p in row["problems"])
