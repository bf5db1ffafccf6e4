"""Tests for machine-readable results and checks."""

from __future__ import annotations

import nbformat
import pytest

from cifar_lab import results


def test_record_prints_outside_ipython_and_validates(capsys):
    assert results.record("val_accuracy", 0.5) == 0.5
    assert "val_accuracy = 0.5000" in capsys.readouterr().out
    with pytest.raises(ValueError, match="finite"):
        results.record("x", float("nan"))
    with pytest.raises(ValueError, match="non-empty"):
        results.record("", 1.0)


def test_check_at_least_passes_and_fails_with_hint(capsys):
    results.check_at_least(0.41, 0.40, what="val acc", hint="lower the lr")
    assert "check passed" in capsys.readouterr().out
    with pytest.raises(AssertionError, match=r"(?s)39\.0%.*40\.0%.*Hint: lower the lr"):
        results.check_at_least(0.39, 0.40, what="val acc", hint="lower the lr")


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
