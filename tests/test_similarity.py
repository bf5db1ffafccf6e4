"""Similar solutions: planted pairs in a synthetic class of 40 are found, distinct ones are not."""

from __future__ import annotations

import json
import zipfile

import pytest
from similarity_fixtures import (
    CLASS_SIZE,
    DISTINCT,
    MODEL_PASTE,
    RENAMED,
    SWAPS,
    fill_stub,
    model_body,
    planted_class,
    rename_and_recomment,
    swap_lines,
)

from cifar_lab.instructor.similarity import (
    Reference,
    SimilaritySettings,
    collect_sources,
    course_references,
    find_similar,
    normalised_text,
)
from cifar_lab.instructor.submission import MAX_ZIP_MEMBERS
from cifar_lab.tuning.part5 import MODEL_FILE


@pytest.fixture(scope="module")
def references():
    return course_references()


@pytest.fixture(scope="module")
def planted(references):
    """40 students; who shares what with whom is known: {(a, b, grade_id)}."""
    return planted_class(references)


def test_class_size(planted):
    sources, _ = planted
    assert len(sources) == CLASS_SIZE


def test_every_planted_pair_is_found_and_nothing_else(planted, references):
    sources, expected = planted
    result = find_similar(sources, references)
    found = {(p.student_a, p.student_b, p.grade_id) for p in result.pairs}
    assert expected <= found, sorted(expected - found)
    assert found == expected, sorted(found - expected)  # distinct solutions and noise: no pair
    for pair in result.pairs:
        assert pair.similarity >= SimilaritySettings().threshold
        assert pair.blocks, pair
    by_exercise = {(p.student_a, p.grade_id): p for p in result.pairs}
    assert by_exercise[("model_a", MODEL_PASTE)].model_answer
    assert not by_exercise[("rename_a", RENAMED[0])].model_answer


def test_model_answer_matches_are_flagged_apart(planted, references):
    sources, _ = planted
    result = find_similar(sources, references)
    assert result.model_answer == {MODEL_PASTE: ("model_a", "model_b")}


def test_distinct_solutions_are_correct_python_and_different(references):
    for grade_id, bodies in DISTINCT.items():
        texts = {normalised_text(fill_stub(references[grade_id].stub, b)) for b in bodies}
        texts.add(normalised_text(references[grade_id].model_answer))
        assert len(texts) == len(bodies) + 1
        for body in bodies:
            compile(fill_stub(references[grade_id].stub, body), grade_id, "exec")


def test_renaming_comments_and_spacing_do_not_change_the_normalised_code(references):
    code = fill_stub(references["three_layer_fc"].stub, model_body(
        references["three_layer_fc"].model_answer
    ))  # fmt: skip
    rewritten = rename_and_recomment(code)
    assert rewritten != code
    assert normalised_text(rewritten) == normalised_text(code)
    swapped = swap_lines(model_body(references["two_layer_fc_init"].model_answer), *SWAPS[
        "two_layer_fc_init"
    ])  # fmt: skip
    original = model_body(references["two_layer_fc_init"].model_answer)
    assert swapped != original
    assert normalised_text(swapped) == normalised_text(original)


def test_dependent_lines_keep_their_order():
    first = "a = load()\nb = a + 1\nprint(b)\n"
    second = "b = 1\na = load()\nprint(b)\n"
    assert normalised_text(first) != normalised_text(second)


def test_the_stub_is_excluded(references):
    """Two students who kept the stub's raise line and added different code are not similar."""
    grade_id = "minibatches"  # its stub holds given code: __init__
    stub = references[grade_id].stub
    kept = stub.replace("# YOUR CODE HERE", "# YOUR CODE HERE\n        n = len(self.X) // 2")
    sources = {
        "kept_a": {grade_id: kept},
        "kept_b": {grade_id: kept.replace("n = len(self.X) // 2", "yield (self.X, self.y)")},
        "untouched_a": {grade_id: stub},
        "untouched_b": {grade_id: stub},
    }
    settings = SimilaritySettings(min_fingerprints=1)
    result = find_similar(sources, {grade_id: references[grade_id]}, settings=settings)
    assert result.pairs == ()
    assert set(result.skipped[grade_id]) >= {"untouched_a", "untouched_b"}
    # the control: without the stub to exclude, the shared stub alone makes them similar
    bare = find_similar(sources, {grade_id: Reference(stub="")}, settings=settings)
    assert ("kept_a", "kept_b") in {(p.student_a, p.student_b) for p in bare.pairs}


def test_short_code_is_below_the_floor():
    code = "def f(x):\n    return x\n"
    result = find_similar({"a": {"e": code}, "b": {"e": code}}, {"e": Reference(stub="")})
    assert result.pairs == () and result.skipped == {"e": ("a", "b")}
    low = find_similar(
        {"a": {"e": code}, "b": {"e": code}},
        {"e": Reference(stub="")},
        settings=SimilaritySettings(min_fingerprints=1, k=3, window=1),
    )
    assert len(low.pairs) == 1


def test_hostile_cells_are_skipped_or_compared_without_crashing():
    deep = "x = " + "(" * 5000 + "1" + ")" * 5000 + "\n"
    huge = "y = 1\n" * 20_000
    sources = {"a": {"e": deep}, "b": {"e": deep}, "c": {"e": huge}, "d": {"e": huge}}
    result = find_similar(sources, {"e": Reference(stub="")})
    assert {"c", "d"} <= set(result.skipped["e"])  # over max_chars: not compared
    assert [(p.student_a, p.student_b) for p in result.pairs] == [("a", "b")]


def test_code_that_does_not_parse_is_compared_by_tokens():
    broken = "def f(x):\n    y = np.mean(x, axis=0) +\n    return y * 3 + x ** 2 - np.std(x)\n"
    other = broken.replace("+\n", "+  # my comment\n")
    unrelated = "def f(x):\n    z = [q for q in x if q > 7] (\n    return sorted(z)[::-1] + [0]\n"
    sources = {"a": {"e": broken}, "b": {"e": other}, "c": {"e": unrelated}}
    settings = SimilaritySettings(min_fingerprints=1)
    result = find_similar(sources, {"e": Reference(stub="")}, settings=settings)
    assert [(p.student_a, p.student_b) for p in result.pairs] == [("a", "b")]


def test_identical_random_outputs_and_models_are_reported():
    curve = "epoch 1 loss 2.302585 val 0.100400\nepoch 2 loss 1.987431 val 0.281200\n"
    other = curve.replace("1.987431", "1.987430")
    outputs = {
        "a": {"02:train": curve, "01:intro": "hello"},
        "b": {"02:train": curve, "01:intro": "hello"},
        "c": {"02:train": other},
    }
    models = {"a": "1" * 64, "b": "2" * 64, "c": "2" * 64}
    result = find_similar({}, {}, outputs=outputs, model_digests=models)
    assert [(g.where, g.students) for g in result.same_outputs] == [("02:train", ("a", "b"))]
    assert [g.students for g in result.same_models] == [("b", "c")]


def test_collect_sources_reads_folders_and_zips(tmp_path, references):
    grade_id = "two_layer_fc_init"
    code = fill_stub(references[grade_id].stub, model_body(references[grade_id].model_answer))
    cell = {
        "cell_type": "code",
        "id": "c1",
        "metadata": {"nbgrader": {"grade_id": grade_id, "solution": True}},
        "source": code.splitlines(keepends=True),
        "outputs": [{"output_type": "stream", "name": "stdout", "text": "loss 0.123456\n"}],
        "execution_count": 1,
    }
    notebook = json.dumps({"cells": [cell, {"cell_type": "markdown", "source": "x"}]})
    (tmp_path / "sub" / "alice" / "part5").mkdir(parents=True)
    (tmp_path / "sub" / "alice" / "02_barebones_tensorflow.ipynb").write_text(notebook)
    (tmp_path / "sub" / "alice" / "part5" / MODEL_FILE).write_bytes(b"weights")
    with zipfile.ZipFile(tmp_path / "sub" / "bob.zip", "w") as archive:
        archive.writestr("bob/02_barebones_tensorflow.ipynb", notebook)
        archive.writestr(f"bob/part5/{MODEL_FILE}", b"weights")
    (tmp_path / "sub" / "carol.zip").write_bytes(b"not a zip")
    (tmp_path / "sub" / "notes.txt").write_text("ignored")
    found = collect_sources(tmp_path / "sub")
    assert set(found.sources) == {"alice", "bob", "carol"}
    assert found.sources["alice"] == found.sources["bob"] == {grade_id: code}
    assert found.model_digests["alice"] == found.model_digests["bob"]
    assert found.outputs["bob"] == {"02_barebones_tensorflow:c1": "loss 0.123456\n"}
    assert list(found.problems) == ["carol"]
    small = collect_sources(tmp_path / "sub", max_bytes=10)
    assert small.sources["alice"] == {} and "over the size limit" in small.problems["alice"][0]


def test_collect_sources_stops_at_the_graders_file_count(tmp_path):
    """A zip or folder of more files than the grader accepts is not read at all."""
    (tmp_path / "sub" / "dave").mkdir(parents=True)
    for number in range(MAX_ZIP_MEMBERS + 1):
        (tmp_path / "sub" / "dave" / f"f{number}.txt").write_text("x")
    with zipfile.ZipFile(tmp_path / "sub" / "erin.zip", "w") as archive:
        for number in range(MAX_ZIP_MEMBERS + 1):
            archive.writestr(f"f{number}.txt", "x")
    found = collect_sources(tmp_path / "sub")
    for student in ("dave", "erin"):
        assert found.sources[student] == {}
        assert f"more than {MAX_ZIP_MEMBERS} files" in found.problems[student][0]
