"""Tests for machine-readable results and checks."""

from __future__ import annotations

import nbformat
import numpy as np
import pytest

from cifar_lab import results


def test_record_prints_outside_ipython_and_validates(capsys):
    assert results.record("val_accuracy", 0.5) is None  # no stray echo in a notebook
    assert "val_accuracy = 0.5000" in capsys.readouterr().out
    results.record("num_training", np.int64(2000))  # a count, e.g. len(y_train)
    results.record("images", 3)
    results.record("epochs", 3.0)  # a float stays a float, even when whole
    printed = capsys.readouterr().out
    assert "num_training = 2000\n" in printed and "images = 3\n" in printed
    assert "epochs = 3.0000" in printed
    with pytest.raises(ValueError, match="finite"):
        results.record("x", float("nan"))
    with pytest.raises(ValueError, match="non-empty"):
        results.record("", 1.0)


@pytest.mark.parametrize("profile", ["quick", "full"])
def test_record_names_the_profile_the_notebook_runs_in(monkeypatch, profile):
    emitted = []
    monkeypatch.setattr(results, "_emit", lambda text, mime, payload: emitted.append(payload))
    monkeypatch.setenv("CIFAR_LAB_PROFILE", profile)
    results.record("val_accuracy", 0.5, key=True)
    assert emitted == [{"name": "val_accuracy", "value": 0.5, "key": True, "profile": profile}]


def test_check_at_least_passes_and_fails_with_hint(capsys):
    results.check_at_least(0.41, 0.40, what="val acc", hint="lower the lr")
    assert "check passed" in capsys.readouterr().out
    with pytest.raises(AssertionError, match=r"(?s)39\.0%.*40\.0%.*Hint: lower the lr"):
        results.check_at_least(0.39, 0.40, what="val acc", hint="lower the lr")


def test_check_that_passes_and_fails_with_detail_and_hint(capsys):
    results.check_that(True, what="w1 is a tf.Variable", hint="wrap it")
    assert "check passed: w1 is a tf.Variable" in capsys.readouterr().out
    with pytest.raises(
        AssertionError, match=r"(?s)w1 is a tf.Variable: not so \(a Tensor\).*Hint: wrap"
    ):
        results.check_that(0, what="w1 is a tf.Variable", hint="wrap it", detail="a Tensor")
    assert "check FAILED" in capsys.readouterr().out


def test_check_close_compares_shape_and_values():
    reference = np.array([[1.0, -2.0], [0.0, 3.0]])
    results.check_close(reference + 1e-8, reference, what="scores", hint="h")
    with pytest.raises(AssertionError, match=r"shape \(2,\), expected \(2, 2\)"):
        results.check_close(reference[0], reference, what="scores", hint="h")
    with pytest.raises(AssertionError, match=r"largest difference 0\.01"):
        results.check_close(reference + 0.01, reference, what="scores", hint="h")
    with pytest.raises(AssertionError, match="scores"):
        results.check_close(reference * np.nan, reference, what="scores", hint="h")
    results.check_close(0.5, 0.5000001, what="a number", hint="h", rtol=1e-3)


def test_read_outputs_finds_payloads_with_cell_index():
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={
                "text/plain": "result a = 1",
                results.RESULT_MIME: {"name": "a", "value": 1.0, "key": True},
            },
        ),
        nbformat.v4.new_output(
            "display_data",
            data={
                results.CHECK_MIME: {"what": "w", "value": 0.1, "minimum": 0.2, "passed": False}
            },
        ),
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("hi"), cell])
    found = results.read_outputs(notebook)
    assert found["results"] == [{"name": "a", "value": 1.0, "key": True, "cell": 1}]
    assert found["checks"][0]["passed"] is False and found["checks"][0]["cell"] == 1
