"""Student release: solutions removed, stubs that fail with a hint, checks and ids kept."""

from __future__ import annotations

import ast
import json

import nbformat
import pytest
from instructor_fixtures import ANSWER_ID, course_source

from cifar_lab.instructor.notebooks import EXECUTION_METADATA, course_notebooks
from cifar_lab.instructor.release import (
    ANSWER_PLACEHOLDER,
    BEGIN_SOLUTION,
    END_SOLUTION,
    MANIFEST_FILE,
    enclosing_name,
    release,
    release_notebook,
    stub_answer,
    stub_code,
)


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """Release a copy of the course notebooks (plus a written answer in 05)."""
    base = tmp_path_factory.mktemp("release")
    source = course_source(base / "source")
    manifest_path = release(base / "student", source_dir=source)
    read = {p.stem: nbformat.read(p, as_version=4) for p in course_notebooks(source)}
    out = {p.stem: nbformat.read(p, as_version=4) for p in course_notebooks(base / "student")}
    return read, out, json.loads(manifest_path.read_text()), base


def _solution_lines(source: str) -> tuple[set[str], set[str]]:
    inside, outside, in_block = set(), set(), False
    for line in source.splitlines():
        marker = line.strip()
        if marker in (BEGIN_SOLUTION, END_SOLUTION):
            in_block = marker == BEGIN_SOLUTION
        elif marker:
            (inside if in_block else outside).add(marker)
    return inside, outside


def test_no_solution_line_survives(released):
    solutions, students, _, _ = released
    blocks = 0
    for stem, notebook in solutions.items():
        for before, after in zip(notebook.cells, students[stem].cells, strict=True):
            inside, outside = _solution_lines(before.source)
            blocks += before.source.count(BEGIN_SOLUTION)
            leaked = (inside - outside) & {line.strip() for line in after.source.splitlines()}
            assert not leaked, f"{stem} cell {after.id}: {leaked}"
            assert BEGIN_SOLUTION not in after.source and END_SOLUTION not in after.source
    assert blocks >= 7  # the course's marked solutions, so the test checks something


def test_stubs_are_valid_python_and_name_what_to_write(released):
    _, students, _, _ = released
    for stem, notebook in students.items():
        for cell in notebook.cells:
            if cell.cell_type == "code":
                ast.parse(cell.source, filename=f"{stem}:{cell.id}")
    sources = {stem: "\n".join(c.source for c in nb.cells) for stem, nb in students.items()}
    assert (
        'NotImplementedError("Part II: implement `two_layer_fc_init`'
        in sources["02_barebones_tensorflow"]
    )
    assert "implement `ThreeLayerFC.__init__`" in sources["03_keras_model_subclassing"]
    assert "implement `ThreeLayerFC.call`" in sources["03_keras_model_subclassing"]
    assert (
        "Part IV: implement `three_layer_sequential`" in sources["04_keras_sequential_functional"]
    )


def test_checks_ids_kept_and_outputs_cleared(released):
    solutions, students, manifest, _ = released
    for stem, notebook in students.items():
        before = solutions[stem]
        assert [c.id for c in notebook.cells] == [c.id for c in before.cells]
        count = "check_at_least("
        assert sum(c.source.count(count) for c in notebook.cells) == sum(
            c.source.count(count) for c in before.cells
        )
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None
        entries = manifest["notebooks"][stem]["cells"]
        assert [entry["id"] for entry in entries] == [c.id for c in notebook.cells]
    kinds = {e["id"]: e["kind"] for e in manifest["notebooks"]["02_barebones_tensorflow"]["cells"]}
    # ids change whenever the notebooks are rebuilt, so find the cells by content
    barebones = solutions["02_barebones_tensorflow"].cells
    solution_id = next(c.id for c in barebones if "### BEGIN SOLUTION" in c.source)
    given_id = next(c.id for c in barebones if c.source.startswith("def two_layer_fc("))
    assert kinds[solution_id] == "solution" and kinds[given_id] == "given"
    answer = next(c for c in students["05_tuning"].cells if c.id == ANSWER_ID)
    assert answer.source == f"**Answer:**\n{ANSWER_PLACEHOLDER}"


def test_released_notebooks_carry_no_execution_timestamps(released, tmp_path):
    _, students, _, _ = released
    for stem, notebook in students.items():
        for cell in notebook.cells:
            assert not set(cell.metadata) & set(EXECUTION_METADATA), f"{stem} {cell.id}"
    # an executed notebook, as nbclient, JupyterLab and the ExecuteTime extension leave it
    timing = {"iopub.execute_input": "2025-01-01T10:00:00.000000Z"}
    cells = [
        nbformat.v4.new_code_cell(
            "x = 1",
            metadata={"execution": timing, "ExecuteTime": {"end_time": "2025-01-01"}, "tags": []},
        ),
        nbformat.v4.new_markdown_cell("text", metadata={"execution": timing}),
    ]
    executed = nbformat.v4.new_notebook(cells=cells, metadata={"papermill": {"duration": 1.0}})
    out = release_notebook(executed, part="Part I", name="executed.ipynb")
    assert [dict(cell.metadata) for cell in out.cells] == [{"tags": []}, {}]
    assert "papermill" not in out.metadata
    assert "execution" in executed.cells[0].metadata  # the original is untouched
    path = tmp_path / "executed.ipynb"
    nbformat.write(out, path)
    assert "2025-01-01" not in path.read_text(encoding="utf-8")


def test_release_refuses_a_non_empty_folder_without_force(released):
    _, _, _, base = released
    with pytest.raises(ValueError, match="--force"):
        release(base / "student", source_dir=base / "source")
    assert release(base / "student", source_dir=base / "source", force=True).name == MANIFEST_FILE


def test_stub_hint_line_and_unbalanced_markers():
    source = "\n".join(
        [
            "def f(x):",
            "    y = 1",
            "    ### BEGIN SOLUTION",
            "    ### HINT: square it",
            "    return x * x",
            "    ### END SOLUTION",
        ]
    )
    stubbed = stub_code(source, part="Part V")
    assert "x * x" not in stubbed and "HINT" not in stubbed
    assert (
        "    raise NotImplementedError("
        '"Part V: implement `f` (see the instructions above); hint: square it")' in stubbed
    )
    assert "    y = 1" in stubbed
    with pytest.raises(ValueError, match="has no ### END SOLUTION"):
        stub_code("### BEGIN SOLUTION\nx = 1", part="Part V")
    top_level = stub_code("### BEGIN SOLUTION\nmodel = 1\n### END SOLUTION", part="Part V")
    assert "Part V: complete this cell" in top_level
    lines = ["class A:", "    def call(self):", "        with x:", "            pass"]
    assert enclosing_name(lines, 3) == "A.call"


@pytest.mark.parametrize(
    "source",
    ["x = 1\ny = 2\n", "x = 1\r\ny = 2", "x = 1\n\n", "", "# only a comment"],
    ids=["trailing-newline", "crlf", "blank-last-line", "empty", "comment"],
)
def test_a_cell_without_a_solution_is_released_byte_for_byte(source):
    # the grader compares each given cell's sha256 with the source's: one dropped newline
    # flagged every honest student (CI, 2026-12-06)
    assert stub_code(source, part="Part V") == source
    assert stub_answer(source) == source


def test_a_stubbed_cell_keeps_its_final_newline():
    source = "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n"
    assert stub_code(source, part="Part V").endswith(
        "raise NotImplementedError("
        + json.dumps("Part V: implement `f` (see the instructions above)")
        + ")\n"
    )
    answer = "**Answer:**\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION\n"
    assert stub_answer(answer) == f"**Answer:**\n{ANSWER_PLACEHOLDER}\n"


def test_every_given_cell_of_the_course_is_released_unchanged(released):
    solutions, students, manifest, _ = released
    given = 0
    for stem, notebook in solutions.items():
        kinds = {entry["id"]: entry["kind"] for entry in manifest["notebooks"][stem]["cells"]}
        for before, after in zip(notebook.cells, students[stem].cells, strict=True):
            if kinds[before.id] == "given":
                given += 1
                assert after.source == before.source, f"{stem} cell {before.id}"
    assert given >= 50  # the course's given cells, so the test checks something


def test_released_notebook_runs_until_the_first_stub(released, monkeypatch):
    """Executes released 02 in the quick profile (synthetic data): one kernel, ~15 s."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    _, students, _, base = released
    notebook = students["02_barebones_tensorflow"]
    monkeypatch.setenv("CIFAR_LAB_PROFILE", "quick")
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(base)}})  # fmt: skip
    with pytest.raises(CellExecutionError, match="NotImplementedError"):
        client.execute()
    failed = next(i for i, c in enumerate(notebook.cells) if any(
        o.output_type == "error" for o in c.get("outputs", [])
    ))  # fmt: skip
    error = next(o for o in notebook.cells[failed].outputs if o.output_type == "error")
    assert error.ename == "NotImplementedError"
    assert "Part II: implement `training_step`" in error.evalue  # the first exercise
    assert "training_step(two_layer_fc," in notebook.cells[failed].source  # its check calls it
    before = [c for c in notebook.cells[:failed] if c.cell_type == "code"]
    assert before and all(c.execution_count is not None for c in before)
