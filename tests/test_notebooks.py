"""Notebook policy and agreement between notebook cells and the library.

nbval executes the notebooks themselves (see the README's test command);
these tests check what is committed and that code a notebook re-implements
for teaching computes the same as the library version.
"""

from __future__ import annotations

import nbformat
import numpy as np
import pytest

from cifar_lab.instructor.nbtools import CHECK_TAG, course_notebooks, is_checked, strip_outputs

NOTEBOOKS = course_notebooks()
EXPECTED = [
    "01_preparation",
    "02_barebones_tensorflow",
    "03_keras_model_subclassing",
    "04_keras_sequential_functional",
    "05_tuning",
]


def _read(stem: str):
    return nbformat.read(next(p for p in NOTEBOOKS if p.stem == stem), as_version=4)


def test_all_five_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_only_checked_cells_carry_committed_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        if is_checked(cell):
            assert cell.outputs, f"{path.name} cell {index}: checked cell without committed output"
        else:
            assert not cell.outputs, f"{path.name} cell {index}: unchecked cell has outputs"
        for output in cell.outputs:
            assert output.output_type != "error", f"{path.name} cell {index}: committed error"
            assert output.get("name") != "stderr", f"{path.name} cell {index}: committed stderr"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_visible_nbval_comment_markers(path):
    # Checked cells are tagged; a comment marker would be one more line students must ignore.
    for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
        assert "NBVAL_" not in cell.source, f"{path.name} cell {index}: use a cell tag instead"


def test_strip_outputs_keeps_only_checked_cells():
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("print(1)", metadata={"tags": [CHECK_TAG]}),
            nbformat.v4.new_code_cell("print(2)"),
        ]
    )
    for cell in notebook.cells:
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="x\n")]
        cell.execution_count = 3
    cleaned = strip_outputs(notebook)
    assert [len(c.outputs) for c in cleaned.cells] == [1, 0]
    assert [c.execution_count for c in cleaned.cells] == [3, None]
    assert len(notebook.cells[1].outputs) == 1  # the original is untouched
    assert [len(c.outputs) for c in strip_outputs(notebook, keep_checked=False).cells] == [0, 0]


# --------------------------------------------------------------- notebook vs library
def _definitions(stem: str, *names: str) -> dict:
    """Execute the cells of a notebook that define the given functions or classes."""
    import keras
    import tensorflow as tf

    import cifar_lab as lab

    namespace = {"tf": tf, "np": np, "keras": keras, "lab": lab}
    wanted = {f"def {n}(" for n in names} | {f"class {n}(" for n in names}
    for cell in _read(stem).cells:
        if cell.cell_type == "code" and any(w in cell.source for w in wanted):
            exec(compile(cell.source, f"<{stem}>", "exec"), namespace)
    missing = [n for n in names if n not in namespace]
    assert not missing, f"{stem} no longer defines {missing}"
    return namespace


def test_barebones_cells_match_library():
    import tensorflow as tf

    import cifar_lab as lab

    cells = _definitions("02_barebones_tensorflow", "flatten", "two_layer_fc", "training_step")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 4, 4, 3)).astype(np.float32)
    y = rng.integers(0, 10, 5).astype(np.int32)
    w1, w2 = rng.normal(size=(48, 7)), rng.normal(size=(7, 10))
    np.testing.assert_array_equal(cells["flatten"](x).numpy(), lab.flatten(x).numpy())
    weights = [w1.astype(np.float32), w2.astype(np.float32)]
    np.testing.assert_allclose(
        cells["two_layer_fc"](x, weights).numpy(), lab.two_layer_fc(x, weights).numpy(), rtol=1e-6
    )
    mine = [tf.Variable(w) for w in weights]
    theirs = [tf.Variable(w) for w in weights]
    loss_mine = cells["training_step"](lab.two_layer_fc, x, y, mine, 0.1)
    loss_lib = lab.training_step(lab.two_layer_fc, x, y, theirs, 0.1)
    np.testing.assert_allclose(float(loss_mine), float(loss_lib), rtol=1e-6)
    for a, b in zip(mine, theirs, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def _copy_weights(source, target) -> None:
    target.set_weights(source.get_weights())


def test_keras_model_cells_match_library():
    import cifar_lab as lab

    subclass = _definitions("03_keras_model_subclassing", "TwoLayerFC")["TwoLayerFC"]
    cells = _definitions(
        "04_keras_sequential_functional", "two_layer_sequential", "two_layer_functional"
    )
    x = np.random.default_rng(1).normal(size=(6, 32, 32, 3)).astype(np.float32)
    reference = lab.two_layer_functional((32, 32, 3), 16, 10)
    expected = reference(x).numpy()
    for model in (
        subclass(16, 10),
        cells["two_layer_sequential"]((32, 32, 3), 16, 10),
        cells["two_layer_functional"]((32, 32, 3), 16, 10),
    ):
        model(x)  # build the weights
        _copy_weights(reference, model)
        np.testing.assert_allclose(model(x).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_notebook_custom_loop_matches_compiled_train_part34():
    """The eager loop in notebook 03 and lab.train_part34 take the same SGD steps."""
    import keras

    import cifar_lab as lab

    cells = _definitions("03_keras_model_subclassing", "TwoLayerFC", "train_custom_loop")
    data = lab.load_cifar10(256, 64, 64, source="synthetic", verbose=False)
    X_train, y_train, X_val, y_val, _, _ = data

    def datasets():
        return (
            lab.Dataset(X_train, y_train, batch_size=64, shuffle=True, seed=3),
            lab.Dataset(X_val, y_val, batch_size=64),
        )

    lab.set_seed(0)
    model = cells["TwoLayerFC"](32, 10)
    history = cells["train_custom_loop"](
        model, keras.optimizers.SGD(learning_rate=0.05), *datasets(), 1, 100
    )
    lab.set_seed(0)
    compiled, compiled_history = lab.train_part34(
        lambda: cells["TwoLayerFC"](32, 10),
        lambda: keras.optimizers.SGD(learning_rate=0.05),
        *datasets(),
        num_epochs=1,
        print_every=100,
        verbose=False,
    )
    for mine, theirs in zip(model.get_weights(), compiled.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-3, atol=1e-4)
    assert history[-1]["val_accuracy"] == pytest.approx(
        compiled_history[-1]["val_accuracy"], abs=1 / 64
    )
