"""Progress: one display updated in place in Jupyter; plain periodic lines elsewhere."""

from __future__ import annotations

import io
import time

import pytest
from kernel_messages import MessageKernel

from cifar_lab.history import TrainingLog
from cifar_lab.progress import Progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_quiet_when_disabled_or_short():
    quiet = io.StringIO()
    with Progress(10, enabled=False, stream=quiet, delay=0, log_interval=0) as bar:
        for _ in range(10):
            bar.update(loss=1.0)
    with Progress(10, stream=quiet) as bar:  # finishes well within the 2 s delay
        bar.update()
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("stream", [io.StringIO, FakeTerminal], ids=["log", "terminal"])
def test_outside_jupyter_progress_prints_plain_periodic_lines(stream):
    out = stream()
    with Progress(200, description="train", stream=out, delay=0, log_interval=0.05) as bar:
        for step in range(200):
            bar.update(loss=1.0 / (step + 1))
            if step == 100:
                bar.write("Iteration 100, Val Accuracy: 40.00")
            time.sleep(0.002)
    text = out.getvalue()
    assert "\r" not in text and "  \n" not in text  # no carriage returns, no padding
    lines = text.splitlines()
    # about 0.4 s of work at one line per 0.05 s, plus the message and the final line
    assert 3 <= len(lines) <= 20, lines
    assert lines[0].startswith("train  1/200 (0%)")
    assert "Iteration 100, Val Accuracy: 40.00" in lines
    assert lines[-1].startswith("train  200/200 (100%)") and "loss 0.0050" in lines[-1]
    assert "left" not in lines[-1]


def test_the_training_log_reports_through_one_progress(capsys):
    log = TrainingLog(range(5), num_epochs=2, print_every=100, verbose=True)
    log.bar = Progress(10, description="train", delay=0, log_interval=0)
    with log:
        for _ in log.epochs(lambda: {"val_accuracy": 0.5}):
            for _ in range(5):
                log.step(1.0, 8)
    lines = capsys.readouterr().out.splitlines()
    validations = [line for line in lines if line.startswith("Iteration")]
    assert [line.split(",")[0] for line in validations] == [
        "Iteration 0",
        "Iteration 4",
        "Iteration 9",
    ]
    assert lines[-1].startswith("train  10/10 (100%)")
    assert "\r" not in "".join(lines)


PROGRESS_IN_A_CELL = """
import time
from cifar_lab.progress import Progress

with Progress(120, description="train", delay=0) as bar:
    for step in range(120):
        bar.update(loss=1.0)
        if step in (30, 90):
            bar.write(f"Iteration {step}, Val Accuracy: 40.00")
        time.sleep(0.02)
"""


def test_in_jupyter_progress_is_one_display_updated_in_place(tmp_path):
    kernel = MessageKernel(tmp_path)
    try:
        cell = kernel.execute(PROGRESS_IN_A_CELL)
    finally:
        kernel.close()
    shown = cell.of_type("display_data")
    updates = cell.of_type("update_display_data")
    assert len(shown) == 1, cell.counts()  # one display for the whole loop
    display_id = shown[0]["content"]["transient"]["display_id"]
    assert shown[0]["content"]["data"]["text/plain"].startswith("train  1/120")
    # about 2.4 s at one redraw per 0.5 s, and the final state
    assert 3 <= len(updates) <= 10, cell.counts()
    assert {m["content"]["transient"]["display_id"] for m in updates} == {display_id}
    assert updates[-1]["content"]["data"]["text/plain"].startswith("train  120/120 (100%)")
    # the loop's own lines are plain stream output, without carriage returns
    assert cell.text() == "Iteration 30, Val Accuracy: 40.00\nIteration 90, Val Accuracy: 40.00\n"
    assert not cell.of_type("execute_result", "error") and not cell.text("stderr")
