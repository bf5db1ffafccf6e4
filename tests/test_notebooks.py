"""The notebooks run top to bottom and show their committed outputs; notebook policy.

Each notebook executes once per session (``executed_notebooks``, see
tests/executed_notebooks.py). Here every code cell must have run without an
error, and each cell tagged ``nbval-check-output`` must show its committed
output, compared as nbval compares it (``--nbval-lax``, with the sanitisers of
notebooks/nbval_sanitize.cfg) by nbval's own functions. The other tests check
what is committed and that code a notebook re-implements for teaching computes
the same as the library version.
"""

from __future__ import annotations

import ast
import copy
import difflib
import re
from types import SimpleNamespace

import nbformat
import numpy as np
import pytest
from conftest import REPO_ROOT
from nbval.plugin import (
    IPyNbCell,
    coalesce_streams,
    get_sanitize_patterns,
    nocolors,
    transform_streams_for_comparison,
)

from cifar_lab.instructor.notebooks import CHECK_TAG, course_notebooks, is_checked, strip_outputs

NOTEBOOKS = course_notebooks()
SANITIZE_FILE = REPO_ROOT / "notebooks" / "nbval_sanitize.cfg"
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


# --------------------------------------------------------------- executed notebooks
# nbval's IPyNbFile.skip_compare without --nbdime: keys and MIME types never compared
SKIP_COMPARE = (
    "metadata", "traceback", "prompt_number", "output_type", "name", "execution_count",
    "application/vnd.jupyter.widget-view+json", "image/png", "image/jpeg",
)  # fmt: skip


class NbvalComparison:
    """nbval's comparison of a cell's outputs (``IPyNbCell.compare_outputs``) on given outputs.

    nbval's methods run unchanged on this stand-in for its pytest item; only pytest's
    assertion rewriting is left out, so a mismatch is shown as nbval's plain
    reference-versus-test listing.
    """

    compare_outputs = IPyNbCell.compare_outputs
    format_output_compare = IPyNbCell.format_output_compare
    sanitize = IPyNbCell.sanitize
    colors = nocolors

    def __init__(self, patterns: list[tuple[str, str]]) -> None:
        self.parent = SimpleNamespace(skip_compare=SKIP_COMPARE, sanitize_patterns=dict(patterns))
        self.ihook = SimpleNamespace(pytest_assertrepr_compare=lambda **_: [])
        self.config = None
        self.comparison_traceback: list[str] = []


def output_difference(executed: list, committed: list, patterns) -> str | None:
    """None when nbval would accept ``executed`` for ``committed``; else what differs.

    Args:
        executed: the outputs of the cell in this session's run.
        committed: the outputs in the repository's notebook.
        patterns: (regex, replacement) pairs applied to both before comparing.
    """
    executed, committed = (
        coalesce_streams(copy.deepcopy(executed)),
        coalesce_streams(copy.deepcopy(committed)),
    )
    comparison = NbvalComparison(patterns)
    if comparison.compare_outputs(executed, committed):
        return None

    def text(outputs) -> list[str]:
        shown = [str(v) for o in transform_streams_for_comparison(outputs) for v in o.values()]
        return comparison.sanitize("\n".join(shown)).splitlines()

    diff = difflib.unified_diff(
        text(committed), text(executed), "committed", "executed", lineterm=""
    )
    return "\n".join([*comparison.comparison_traceback, "", *diff])


def _checked_cells() -> list[tuple]:
    return [
        pytest.param(path, index, id=f"{path.stem}-cell{index}-{cell.id}")
        for path in NOTEBOOKS
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells)
        if is_checked(cell)
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_without_an_error(path, executed_notebooks):
    run = executed_notebooks[path.stem]
    assert run.problem is None, run.problem
    code = [c for c in run.notebook.cells if c.cell_type == "code" and c.source.strip()]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors


@pytest.mark.parametrize(("path", "index"), _checked_cells())
def test_checked_cell_shows_its_committed_output(path, index, executed_notebooks):
    run = executed_notebooks[path.stem]
    assert run.problem is None, run.problem
    committed = nbformat.read(path, as_version=4).cells[index]
    # nbval compares only cells whose committed copy ran (and fails an unrun one with outputs)
    assert committed.execution_count is not None, f"{path.name} cell {index}: never run"
    patterns = get_sanitize_patterns(SANITIZE_FILE.read_text(encoding="utf-8"))
    difference = output_difference(run.notebook.cells[index].outputs, committed.outputs, patterns)
    assert difference is None, (
        f"{path.name} cell {index} ({committed.id}): outputs differ\n"
        f"{committed.source}\n{difference}"
    )


def test_output_comparison_is_nbvals():
    patterns = get_sanitize_patterns(SANITIZE_FILE.read_text(encoding="utf-8"))
    stream = nbformat.v4.new_output
    committed = [stream("stream", name="stdout", text="(64, 10)\nat 0x1f\n")]
    split = [stream("stream", name="stdout", text=t) for t in ("(64, ", "10)\nat 0xabc\n")]
    assert output_difference(split, committed, patterns) is None  # coalesced, sanitised
    log = "E0000 00:00:1795 2318 cuda_platform.cc:52] no GPU\n"
    logged = [stream("stream", name="stdout", text=log + "(64, 10)\nat 0x1\n")]
    relogged = [
        stream("stream", name="stdout", text=log.replace("2318", "7") + "(64, 10)\nat 0x1\n")
    ]
    assert output_difference(relogged, logged, patterns) is None
    wrong = [stream("stream", name="stdout", text="(64, 11)\nat 0x1\n")]
    difference = output_difference(wrong, committed, patterns)
    assert "mismatch 'stdout'" in difference and "+(64, 11)" in difference
    extra = [*committed, stream("stream", name="stderr", text="warning\n")]
    assert "Unexpected output fields" in output_difference(extra, committed, patterns)
    picture = {"image/png": "iVBOR", "text/plain": "<Figure>"}
    shown = nbformat.v4.new_output("display_data", data=picture)
    other = nbformat.v4.new_output("display_data", data={**picture, "image/png": "AAAA"})
    assert output_difference([shown], [other], patterns) is None  # images are not compared


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
