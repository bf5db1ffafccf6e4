"""Part V verified against what the student cannot see (issue 23, section 2).

Each case is a saved model and a claim, checked by ``verify_claims`` on a small
image-folder copy of CIFAR-10 written here (random pixels, 600 test images, so
the quick profile's 500-image split and 500 validation images exist). The
scoring child is replaced by the same scoring function called in this process
(``model_accuracies``: the grader's loader and ``evaluate_model``), which keeps
each case to a second; the child itself is exercised by ``test_model_loading``
and the CLI tests. Lookup model, a 1-image split, a student-chosen seed, a
convolution, an inflated validation claim: each is flagged; the honest model
is not. The slow test repeats lookup and honest model on real CIFAR-10.
"""

from __future__ import annotations

import inspect
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import REAL_SOURCE, requires_real_data, write_image_dir
from PIL import Image

from cifar_lab.data.formats import CLASS_NAMES
from cifar_lab.instructor import claims
from cifar_lab.instructor.claims import (
    COURSE_SEED,
    LazyTestSet,
    probe_images,
    read_private_test,
    verify_claims,
)
from cifar_lab.instructor.model_loading import (
    ForbiddenLayerError,
    check_dense_network,
    load_submitted_model,
    model_finding,
    refused_layers,
)
from cifar_lab.profiles import PROFILES, load_profile_data
from cifar_lab.tuning.part5 import MODEL_FILE, PART5_DIR
from cifar_lab.tuning.split_record import describe_split, split_fingerprint

QUICK = PROFILES["quick"]
TOLERANCE = 0.005
MAX_BYTES = 256 << 20


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> dict:
    """An image-folder copy with quick's splits; the test set and validation split as arrays."""
    import cifar_lab as lab

    folder = tmp_path_factory.mktemp("cifar") / "cifar10-png"
    write_image_dir(folder, per_class=QUICK.num_validation // 10 + 2, test_per_class=60)
    full = lab.load_cifar10(1, 0, None, source=folder, standardise=False, verbose=False)
    val = lab.load_cifar10(
        1, QUICK.num_validation, 10, source=folder, seed=COURSE_SEED, standardise=False,
        verbose=False,
    )  # fmt: skip
    return {"folder": folder, "test": (full.X_test, full.y_test), "val": (val.X_val, val.y_val)}


@pytest.fixture
def in_process(monkeypatch):
    """Score in this process with the child's own function (one TensorFlow start, not one each)."""

    def score(*, path, sets, max_bytes, budget):
        images = np.concatenate([images for images, _ in sets.values()])
        labels = np.concatenate([labels for _, labels in sets.values()])
        groups = np.repeat(np.arange(len(sets)), [len(labels) for _, labels in sets.values()])
        values = claims.model_accuracies(path, images, labels, groups, max_bytes)
        return dict(zip(sets, values, strict=True))

    monkeypatch.setattr(claims, "score_model_sets", score)


def _dense_model(units: int = 16):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Dense(units, activation="relu")(keras.layers.Flatten()(x))
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def lookup_model(images: np.ndarray, labels: np.ndarray):
    """A dense-only lookup of ``images``: the nearest stored image's label, as class scores.

    ``Dense`` scores each stored image t by 2 x.t - |t|^2 (the squared distance up to
    |x|^2, which is the same for every t); a sharp softmax picks the nearest, and a
    second ``Dense`` holding the one-hot labels turns it into class scores.
    """
    import keras

    keys = images.reshape(len(images), -1).astype(np.float64) / 255.0
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    match = keras.layers.Dense(len(keys), name="stored_images")
    nearest = keras.layers.Softmax()(match(x))
    vote = keras.layers.Dense(10, use_bias=False, name="their_labels")
    model = keras.Model(inputs, vote(nearest))
    sharp = 50.0
    match.set_weights([(2 * sharp * keys.T).astype(np.float32),
                       (-sharp * (keys**2).sum(axis=1)).astype(np.float32)])  # fmt: skip
    vote.set_weights([np.eye(10, dtype=np.float32)[labels]])
    return model


def _accuracy(model, images: np.ndarray, labels: np.ndarray) -> float:
    """Computed here with Keras' own predict, independently of the grader's evaluate_model."""
    scores = model.predict(images.astype(np.float32), verbose=0, batch_size=256)
    return float(np.mean(scores.argmax(axis=1) == labels))


def _submission(tmp_path: Path, model) -> Path:
    root = tmp_path / "student"
    (root / PART5_DIR).mkdir(parents=True)
    model.save(root / PART5_DIR / MODEL_FILE)
    return root


def _verify(root: Path, cifar: dict, test: float, val: float | None = None, **options):
    claimed = {"test": {"results.json": test}, "val": {} if val is None else {"results.json": val}}
    test_set = LazyTestSet(
        str(cifar["folder"]), None, probe_seed=1, private_test=options.pop("private", None)
    )
    options.setdefault("profile", "quick")
    return verify_claims(
        root, claimed, test_set, tolerance=TOLERANCE, max_bytes=MAX_BYTES, **options
    )


def _problems(findings) -> str:
    return " | ".join(str(f) for f in findings if f.severity != "warning")


# ------------------------------------------------------------------ the honest model
def test_an_honest_model_on_the_course_splits_verifies(cifar, tmp_path, in_process):
    model = _dense_model()
    images, labels = cifar["test"]
    test = _accuracy(model, images, labels)
    val = _accuracy(model, *cifar["val"])
    record = describe_split(images, labels, COURSE_SEED)  # the full test set
    accuracy, verified, findings = _verify(
        _submission(tmp_path, model), cifar, test, val, recorded_split=record
    )
    assert verified == "yes", _problems(findings)
    assert accuracy == pytest.approx(test)
    assert not [f for f in findings if f.severity != "warning"]


# ---------------------------------------------------------- memorised test images
def test_a_lookup_of_the_test_images_is_flagged_by_the_probe(cifar, tmp_path, in_process):
    images, labels = cifar["test"]
    model = lookup_model(images, labels)
    assert _accuracy(model, images, labels) == 1.0  # it knows every public test image
    record = describe_split(images, labels, COURSE_SEED)
    root = _submission(tmp_path, model)
    accuracy, verified, findings = _verify(root, cifar, 1.0, recorded_split=record)
    assert accuracy == 1.0 and verified == "no"
    assert "memorised test images?" in _problems(findings)
    assert "but 0." in _problems(findings)  # it falls to chance on the perturbed copy


def test_a_lookup_is_flagged_against_private_images(cifar, tmp_path, in_process):
    images, labels = cifar["test"]
    private = tmp_path / "private"
    rng = np.random.default_rng(7)
    for index in range(60):
        folder = private / CLASS_NAMES[index % 10]
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    root = _submission(tmp_path, lookup_model(images, labels))
    record = describe_split(images, labels, COURSE_SEED)
    _, verified, findings = _verify(root, cifar, 1.0, recorded_split=record, private=private)
    assert verified == "no"
    assert "on 60 private ones the student never saw" in _problems(findings)


def test_the_probe_moves_an_honest_model_little_and_is_seeded(cifar):
    images, _ = cifar["test"]
    probed = probe_images(images[:50], 3)
    np.testing.assert_array_equal(probed, probe_images(images[:50], 3))
    assert not np.array_equal(probed, probe_images(images[:50], 4))
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (32, 1, 3))
    again = probe_images(smooth[None], 5)[0].astype(int)  # mirrored, shifted, noisy
    assert np.abs(again - smooth[:, ::-1]).mean() < 12
    assert np.abs(again - smooth).mean() > 60


# ------------------------------------------------------------- the test split
def _split_record(cifar: dict, indices: np.ndarray, seed: int) -> dict:
    images, labels = cifar["test"]
    return describe_split(images[indices], labels[indices], seed)


def test_a_one_image_split_is_flagged_and_not_honoured(cifar, tmp_path, in_process):
    model = _dense_model()
    images, labels = cifar["test"]
    right = np.flatnonzero(model.predict(images, verbose=0).argmax(axis=1) == labels)[:1]
    record = _split_record(cifar, right, COURSE_SEED)  # one image the model gets right
    accuracy, verified, findings = _verify(
        _submission(tmp_path, model), cifar, 1.0, recorded_split=record
    )
    assert verified == "no"
    assert "not one the course defines (it records 1 images" in _problems(findings)
    assert accuracy == pytest.approx(_accuracy(model, images, labels))  # all 600, not the one


def test_a_student_chosen_seed_is_flagged_and_not_honoured(cifar, tmp_path, in_process):
    import cifar_lab as lab

    model = _dense_model()
    chosen = lab.load_cifar10(
        1, 0, QUICK.num_test, source=cifar["folder"], seed=7, standardise=False, verbose=False
    )
    record = describe_split(chosen.X_test, chosen.y_test, 7)
    claim = _accuracy(model, chosen.X_test, chosen.y_test)
    accuracy, verified, findings = _verify(
        _submission(tmp_path, model), cifar, claim, recorded_split=record
    )
    assert verified == "no"
    assert f"{QUICK.num_test} images drawn with seed 7" in _problems(findings)
    assert accuracy == pytest.approx(_accuracy(model, *cifar["test"]))


def test_the_quick_split_with_the_course_seed_is_honoured(cifar, tmp_path, in_process):
    import cifar_lab as lab

    model = _dense_model()
    course = lab.load_cifar10(
        1, 0, QUICK.num_test, source=cifar["folder"], seed=COURSE_SEED, standardise=False,
        verbose=False,
    )  # fmt: skip
    claim = _accuracy(model, course.X_test, course.y_test)
    record = describe_split(course.X_test, course.y_test, COURSE_SEED)
    val = _accuracy(model, *cifar["val"])
    accuracy, verified, findings = _verify(
        _submission(tmp_path, model), cifar, claim, val, recorded_split=record
    )
    assert verified == "yes", _problems(findings)
    assert accuracy == pytest.approx(claim)


def test_the_course_seed_is_load_profile_datas_default():
    assert inspect.signature(load_profile_data).parameters["seed"].default == COURSE_SEED


# ----------------------------------------------------------- the validation claim
def test_an_inflated_validation_claim_is_flagged(cifar, tmp_path, in_process):
    model = _dense_model()
    test = _accuracy(model, *cifar["test"])
    val = _accuracy(model, *cifar["val"])
    record = describe_split(*cifar["test"], COURSE_SEED)
    _, verified, findings = _verify(
        _submission(tmp_path, model), cifar, test, 0.95, recorded_split=record
    )
    assert verified == "no"
    expected = f"claims validation accuracy 0.9500; on the course's {QUICK.num_validation} "
    assert expected in _problems(findings)
    assert f"the saved model scores {val:.4f}" in _problems(findings)


# ------------------------------------------------------------ dense networks only
def _conv_model():
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, name="features")(keras.layers.Rescaling(1 / 255)(inputs))
    inner = keras.Model(inputs, x, name="inner")  # nested: the grader looks inside
    outer_in = keras.Input((32, 32, 3))
    x = keras.layers.Flatten()(inner(outer_in))
    return keras.Model(outer_in, keras.layers.Dense(10)(x))


def test_a_cnn_is_refused_naming_conv2d(cifar, tmp_path, in_process):
    root = _submission(tmp_path, _conv_model())
    accuracy, verified, findings = _verify(root, cifar, 0.5)
    assert accuracy is None and verified == "no"
    assert "is refused: the model uses Conv2D (layer 'features')" in _problems(findings)
    finding = model_finding(root / PART5_DIR / MODEL_FILE)  # and submit says so, with the fix
    assert "Conv2D" in finding.message and "fully connected" in finding.fix


@pytest.mark.parametrize("name", ["MultiHeadAttention", "LSTM", "DepthwiseConv1D"])
def test_attention_recurrent_and_other_convolutions_are_refused(name, tmp_path):
    import keras

    inputs = keras.Input((16, 8))
    made = {
        "MultiHeadAttention": lambda: keras.layers.MultiHeadAttention(2, 4)(inputs, inputs),
        "LSTM": lambda: keras.layers.LSTM(4)(inputs),
        "DepthwiseConv1D": lambda: keras.layers.DepthwiseConv1D(3)(inputs),
    }
    keras.Model(inputs, made[name]()).save(tmp_path / "m.keras")
    with pytest.raises(ForbiddenLayerError, match=name):
        load_submitted_model(tmp_path / "m.keras")


def test_a_convolution_cannot_hide_behind_another_module(tmp_path):
    _dense_model().save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as archive:
        config = json.loads(archive.read("config.json"))
    layers = config["config"]["layers"]
    disguised = {**layers[-1], "class_name": "Conv2D", "module": "keras.initializers"}
    config["config"]["layers"] = [*layers[:-1], disguised]
    assert refused_layers(config) == [f"Conv2D (layer {layers[-1]['config']['name']!r})"]
    unknown = {**layers[-1], "class_name": "Mystery", "module": "keras.src.layers.mystery"}
    config["config"]["layers"] = [*layers[:-1], unknown]
    with pytest.raises(ForbiddenLayerError, match="Mystery"):
        check_dense_network(config)


# ---------------------------------------------------------------- private images
def test_private_images_must_be_32x32_in_class_folders(tmp_path):
    good = tmp_path / "good" / "cat"
    good.mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(good / "a.png")
    images, labels = read_private_test(tmp_path / "good")
    assert images.shape == (1, 32, 32, 3) and labels.tolist() == [CLASS_NAMES.index("cat")]
    (tmp_path / "bad" / "cat").mkdir(parents=True)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "bad" / "cat" / "a.png")
    with pytest.raises(ValueError, match="32x32"):
        read_private_test(tmp_path / "bad")
    (tmp_path / "odd" / "unicorn").mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "odd" / "unicorn" / "a.png")
    with pytest.raises(ValueError, match="class one of airplane"):
        read_private_test(tmp_path / "odd")


# ------------------------------------------------------------------ real CIFAR-10
@pytest.mark.slow
@requires_real_data
def test_on_real_cifar10_an_honest_network_passes_the_probe_and_a_lookup_does_not(
    tmp_path, in_process
):
    import keras

    import cifar_lab as lab

    data = lab.load_cifar10(
        5_000, QUICK.num_validation, QUICK.num_test, source=REAL_SOURCE, seed=COURSE_SEED,
        standardise=False, verbose=False,
    )  # fmt: skip
    real = {"folder": REAL_SOURCE, "test": (data.X_test, data.y_test),
            "val": (data.X_val, data.y_val)}  # fmt: skip
    record = describe_split(data.X_test, data.y_test, COURSE_SEED)
    assert record["sha256"] == split_fingerprint(data.X_test, data.y_test)
    honest = _dense_model(128)
    honest.compile(
        keras.optimizers.Adam(3e-4),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    honest.fit(data.X_train.astype(np.float32), data.y_train, epochs=6, verbose=0)
    test, val = _accuracy(honest, *real["test"]), _accuracy(honest, *real["val"])
    assert test > 0.25  # it learned something (chance is 0.1)
    _, verified, findings = _verify(
        _submission(tmp_path / "honest", honest), real, test, val, recorded_split=record
    )
    assert verified == "yes", _problems(findings)
    lookup = lookup_model(data.X_test, data.y_test)
    _, verified, findings = _verify(
        _submission(tmp_path / "lookup", lookup), real, 1.0, recorded_split=record
    )
    assert verified == "no" and "memorised test images?" in _problems(findings)


def test_grade_takes_private_test_images_from_the_command_line(tmp_path):
    from cifar_lab.__main__ import build_parser
    from cifar_lab.instructor import cli

    argv = ["grade", "subs", "--out", "report.csv", "--private-test", str(tmp_path)]
    settings = cli.grade_settings(build_parser().parse_args(argv), None)
    assert settings.private_test == tmp_path
    default = build_parser().parse_args(["grade", "subs", "--out", "report.csv"])
    assert cli.grade_settings(default, None).private_test is None
