"""Tests for the main job's notebook runner."""

from __future__ import annotations

import nbformat

from cifar_lab.instructor import runner


def _notebook(path, *sources):
    cells = [nbformat.v4.new_code_cell(source) for source in sources]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, path)
    return path


def test_run_all_reports_results_failures_and_writes_copies(tmp_path, capsys):
    good = _notebook(
        tmp_path / "01_good.ipynb",
        "import os, cifar_lab as lab\nprint(os.environ['CIFAR_LAB_PROFILE'])",
        "lab.record('val_accuracy', 0.5, key=True)",
    )
    bad = _notebook(tmp_path / "02_bad.ipynb", "x = 1", "raise RuntimeError('boom')", "y = 2")
    out = tmp_path / "out"
    runs = runner.run_all([good, bad], out, profile="quick", cell_timeout=120)
    assert [r.status for r in runs] == ["ok", "failed"]
    assert runs[0].key_result == ("val_accuracy", 0.5)
    assert runs[1].failed_cell == 1 and "boom" in runs[1].error
    executed = nbformat.read(out / "01_good.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"].strip() == "quick"
    assert (out / "02_bad.html").exists()
    summary = runner.format_summary(runs)
    assert "val_accuracy = 0.5000" in summary and "FAILED: 02_bad, cell 1" in summary
    assert "02_bad cell 2/3" in capsys.readouterr().out  # per-cell progress lines
