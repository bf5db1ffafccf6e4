"""Notebook policy and agreement between notebook cells and the library.

nbval executes the notebooks themselves (see the README's test command);
these tests check what is committed and that code a notebook re-implements
for teaching computes the same as the library version.
"""

from __future__ import annotations

import ast
import re

import nbformat
import numpy as np
import pytest

from cifar_lab.instructor.notebooks import CHECK_TAG, course_notebooks, is_checked, strip_outputs

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
    # training_step is an exercise, with no library copy: tests/test_barebones.py checks the
    # notebook's own against finite differences.
    import cifar_lab as lab

    cells = _definitions("02_barebones_tensorflow", "flatten", "two_layer_fc")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 4, 4, 3)).astype(np.float32)
    w1, w2 = rng.normal(size=(48, 7)), rng.normal(size=(7, 10))
    np.testing.assert_array_equal(cells["flatten"](x).numpy(), lab.flatten(x).numpy())
    weights = [w1.astype(np.float32), w2.astype(np.float32)]
    np.testing.assert_allclose(
        cells["two_layer_fc"](x, weights).numpy(), lab.two_layer_fc(x, weights).numpy(), rtol=1e-6
    )


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

    cells = _definitions(
        "03_keras_model_subclassing", "TwoLayerFC", "train_step", "train_custom_loop"
    )
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


# --------------------------------------------------------------- TensorFlow's C++ log
TENSORFLOW_ROOTS = {"tensorflow", "keras", "tf_keras"}
# TensorFlow's C++ log format ("I0000 00:00:1700000000.123456  1234 port.cc:153] ...") and
# messages known to reach notebooks when the log level is set too late.
TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} ", re.MULTILINE)
TF_MESSAGES = (
    "absl::InitializeLog",
    "oneDNN custom operations",
    "Could not find cuda drivers",
    "cuInit",
    "cuda_executor",
    "cpu_feature_guard",
)


def _imported_modules(source: str) -> list[str]:
    """The modules a cell imports, in the order of the source (magics skipped)."""
    code = "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
    )
    nodes = [
        node
        for node in ast.walk(ast.parse(code))
        if isinstance(node, (ast.Import, ast.ImportFrom))
    ]
    names = []
    for node in sorted(nodes, key=lambda n: (n.lineno, n.col_offset)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif node.module and not node.level:
            names.append(node.module)
    return names


def tensorflow_imported_before_cifar_lab(notebook) -> str | None:
    """The first import of TensorFlow or Keras that comes before ``import cifar_lab``."""
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        for module in _imported_modules(cell.source):
            root = module.split(".")[0]
            if root == "cifar_lab":
                return None
            if root in TENSORFLOW_ROOTS:
                return f"cell {index} imports {module} before cifar_lab"
    return None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_cifar_lab_is_imported_before_tensorflow(path):
    # cifar_lab sets TensorFlow's log level and filters what TensorFlow logs while it
    # loads; both only work when it comes first (use `# isort: split` after it).
    found = tensorflow_imported_before_cifar_lab(nbformat.read(path, as_version=4))
    assert found is None, f"{path.name}: {found}"


def test_import_order_reader():
    cells = [
        nbformat.v4.new_code_cell("%matplotlib inline\nimport numpy as np"),
        nbformat.v4.new_code_cell("from keras import layers\nimport cifar_lab as lab"),
    ]
    notebook = nbformat.v4.new_notebook(cells=cells)
    assert (
        tensorflow_imported_before_cifar_lab(notebook) == "cell 1 imports keras before cifar_lab"
    )
    cells[1].source = "import cifar_lab as lab  # first\n\n# isort: split\nimport tensorflow as tf"
    assert tensorflow_imported_before_cifar_lab(notebook) is None


def test_no_tensorflow_log_line_reaches_a_notebook(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)  # as a student's kernel starts
    monkeypatch.delenv("MPLBACKEND", raising=False)
    cells = [
        "import cifar_lab as lab\nimport tensorflow as tf\ntf.constant(1)",
        "import os\n\nimport keras\n\n"
        "print(keras.layers.Dense(2)(tf.ones((1, 3))).shape)\n"
        "print(os.environ['TF_CPP_MIN_LOG_LEVEL'])",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(
        notebook, timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    streams = [
        output.text
        for cell in notebook.cells
        for output in cell.outputs
        if output.output_type == "stream"
    ]
    text = "".join(streams)
    assert not TF_LOG_LINE.search(text), text
    assert not [message for message in TF_MESSAGES if message in text], text
    assert text == "(1, 2)\n3\n"  # cifar_lab set the level (the kernel had none)
