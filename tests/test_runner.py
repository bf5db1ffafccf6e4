"""Tests for the main job's notebook runner."""

from __future__ import annotations

import os
import subprocess
import sys

import nbformat
import pytest

from cifar_lab.instructor import notebooks as runner  # the notebook runner
from cifar_lab.instructor.findings import MEGABYTE
from cifar_lab.peak_memory import peak_memory_mb, peak_resident_bytes


def _notebook(path, *sources):
    cells = [nbformat.v4.new_code_cell(source) for source in sources]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, path)
    return path


def test_run_all_reports_results_failures_and_writes_copies(tmp_path, capfd):
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
    # one numbering: the failure names the cell as the progress lines do, in plain text
    assert runs[1].failed_cell == "2/3" and "boom" in runs[1].error
    assert "\x1b[" not in runs[1].error and "\n" not in runs[1].error
    executed = nbformat.read(out / "01_good.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"].strip() == "quick"
    assert (out / "02_bad.html").exists()
    summary = runner.format_summary(runs)
    assert "val_accuracy = 0.5000" in summary and "FAILED: 02_bad, cell 2/3" in summary
    captured = capfd.readouterr()  # file descriptors: the kernels write there
    assert "02_bad cell 2/3" in captured.out  # per-cell progress lines
    assert "without encryption" not in captured.err  # kernels get CurveZMQ keys
    if sys.platform.startswith("linux"):  # the kernel's VmHWM, read from /proc
        # a kernel that imported cifar_lab holds tens of MB, far below a GB
        assert all(10 < run.peak_memory_mb < 4096 for run in runs), runs
        header, first = summary.splitlines()[:2]
        assert "peak memory" in header and f"{runs[0].peak_memory_mb / 1024:.1f} GB" in first


def test_summary_shows_peak_memory_per_notebook():
    runs = [
        runner.NotebookRun("05_tuning", "ok", 1200.0, ("test_accuracy", 0.55), None, None, 2150),
        runner.NotebookRun("06_other", "ok", 3.0),  # peak unknown (no /proc)
    ]
    header, tuning, other = runner.format_summary(runs).splitlines()
    assert header.index("peak memory") < header.index("key result")
    assert "2.1 GB" in tuning and "test_accuracy = 0.5500" in tuning
    assert other.split()[-2:] == ["-", "-"]  # no peak, no key result


def test_peak_memory_reads_vmhwm_of_a_live_process():
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/<pid>/status")
    own = peak_resident_bytes(os.getpid())
    assert own is not None and own > 10 * MEGABYTE  # this pytest process
    assert peak_resident_bytes("self") >= own  # the same process, read a moment later
    assert peak_resident_bytes(2**22 + 12345) is None  # above pid_max: no such process


def test_peak_memory_mb_of_this_process_and_of_a_child():
    own = peak_memory_mb()
    assert own > 10  # this pytest process, in MB
    if sys.platform.startswith("linux"):
        assert own == pytest.approx(peak_resident_bytes("self") / MEGABYTE, rel=0.2)
    touch = "b = bytearray(96 << 20); b[::4096] = b'x' * len(b[::4096])"
    subprocess.run([sys.executable, "-c", touch], check=True)  # waited for: RUSAGE_CHILDREN
    assert peak_memory_mb(children=True) >= 90  # the child touched 96 MB
