"""A tiny progress display for training loops (no third-party dependency).

One loop, one display:

* In a Jupyter kernel (JupyterLab, VS Code, nbclient, nbval) the progress is
  one output that updates in place: an IPython display handle, redrawn with
  ``handle.update(...)`` at most a few times a second. Executed notebooks
  keep a single output for it, showing the final state.
* Anywhere else (a terminal, a CI log, captured output) it prints a plain
  line every ``log_interval`` seconds, and one last line at the end; no
  carriage returns, no padding.

Loops that end within ``delay`` seconds show nothing, so short runs stay quiet.
The loop's own messages go through :meth:`Progress.write`, one line each,
below the display.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

JUPYTER_INTERVAL = 0.5  # seconds between redraws of the display


class Progress:
    """Show iterations done, speed, time left and the latest loss.

    Args:
        total: iterations expected, or None when unknown.
        enabled: False turns every method into a no-op except :meth:`write`,
            which still prints (it carries the loop's own messages).
        description: label at the start of the line; may be changed later
            (e.g. ``bar.description = "epoch 2/5"``).
        stream: where lines go; default ``sys.stdout`` at construction time.
        delay: seconds before the first display.
        log_interval: seconds between plain lines (outside Jupyter).
        jupyter: use a display handle; None (default) when running in a Jupyter
            kernel and writing to the default stream.

    Example::

        with Progress(len(train_dset), description="train") as bar:
            for x, y in train_dset:
                bar.update(loss=float(step(x, y)))
    """

    def __init__(
        self,
        total: int | None,
        *,
        enabled: bool = True,
        description: str = "",
        stream: TextIO | None = None,
        delay: float = 2.0,
        log_interval: float = 15.0,
        jupyter: bool | None = None,
    ) -> None:
        self.total, self.enabled, self.description = total, bool(enabled), description
        self.stream = stream if stream is not None else sys.stdout
        if jupyter is None:
            jupyter = stream is None and _in_jupyter_kernel()
        self.jupyter = bool(jupyter)
        self.count = 0
        self.shown = 0  # how many times the progress was drawn
        self._start = time.perf_counter()
        self._interval = JUPYTER_INTERVAL if self.jupyter else log_interval
        self._last_shown = self._start + delay - self._interval
        self._loss: float | None = None
        self._handle = None  # the IPython display handle, once shown
        self._closed = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def update(self, count: int = 1, *, loss: float | None = None) -> None:
        """Record ``count`` more iterations; redraw when enough time has passed."""
        self.count += count
        if loss is not None:
            self._loss = loss
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last_shown < self._interval:
            return
        self._last_shown = now
        self._show(self._line(now))

    def write(self, message: str) -> None:
        """Print a message on its own line (below the display, in Jupyter)."""
        print(message, file=self.stream, flush=True)

    def close(self) -> None:
        """Show the final state once, if anything was shown; later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        if self.enabled and self.shown:
            self._show(self._line(time.perf_counter()))

    def _line(self, now: float) -> str:
        elapsed = now - self._start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        if self.total:
            done = f"{self.count}/{self.total} ({100 * self.count / self.total:.0f}%)"
        else:
            done = f"{self.count}"
        parts = [self.description, done, f"{rate:.1f} it/s", f"{elapsed:.0f} s"]
        if self.total and rate > 0 and self.count < self.total:
            parts.append(f"~{(self.total - self.count) / rate:.0f} s left")
        if self._loss is not None:
            parts.append(f"loss {self._loss:.4f}")
        return "  ".join(part for part in parts if part)

    def _show(self, line: str) -> None:
        self.shown += 1
        if not self.jupyter:
            print(line, file=self.stream, flush=True)
            return
        from IPython.display import display

        content = {"text/plain": line}
        if self._handle is None:
            self._handle = display(content, raw=True, display_id=True)
        else:
            self._handle.update(content, raw=True)


def _in_jupyter_kernel() -> bool:
    """Whether this code runs in a Jupyter kernel (not merely with IPython imported)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if hasattr(ipython, "get_ipython") else None
    return type(shell).__name__ == "ZMQInteractiveShell"
