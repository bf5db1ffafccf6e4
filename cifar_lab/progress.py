"""A tiny progress display for training loops (no third-party dependency).

On a terminal or in a Jupyter notebook it keeps one self-updating line;
elsewhere (CI logs, captured output) it prints a plain line every
``log_interval`` seconds. Loops that end
within ``delay`` seconds print nothing, so short runs stay quiet.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Show iterations done, speed, time left and the latest loss.

    Args:
        total: iterations expected, or None when unknown.
        enabled: False turns every method into a no-op except :meth:`write`,
            which still prints (it carries the loop's own messages).
        description: label at the start of the line.
        stream: where to write; default ``sys.stdout`` at construction time.
        delay: seconds before the first display.
        log_interval: seconds between lines when the stream is not a terminal.

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
    ) -> None:
        self.total, self.enabled, self.description = total, bool(enabled), description
        self.stream = stream if stream is not None else sys.stdout
        self.count = 0
        self._start = time.perf_counter()
        self._delay = delay
        isatty = getattr(self.stream, "isatty", None)
        # Jupyter's output is no terminal, but it honours a carriage return.
        self._interactive = bool(isatty and isatty()) or _in_jupyter_kernel()
        self._interval = 0.25 if self._interactive else log_interval
        self._last_shown = self._start + delay - self._interval
        self._on_line = 0  # width of an unfinished '\r' line on screen

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def update(self, count: int = 1, *, loss: float | None = None) -> None:
        """Record ``count`` more iterations; redraw when enough time has passed."""
        self.count += count
        now = time.perf_counter()
        if not self.enabled or now - self._last_shown < self._interval:
            return
        self._last_shown = now
        self._show(self._line(now, loss))

    def write(self, message: str) -> None:
        """Print a message on its own line without garbling the progress line."""
        self._clear()
        print(message, file=self.stream, flush=True)

    def close(self) -> None:
        """End the progress line so later output starts on a fresh line."""
        if self._on_line:
            print(file=self.stream, flush=True)
            self._on_line = 0

    def _line(self, now: float, loss: float | None) -> str:
        elapsed = now - self._start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        done = f"{self.count}" if self.total is None else f"{self.count}/{self.total}"
        parts = [self.description, done, f"{rate:.1f} it/s", f"{elapsed:.0f} s"]
        if self.total and rate > 0:
            parts.append(f"~{max(self.total - self.count, 0) / rate:.0f} s left")
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        return "  ".join(part for part in parts if part)

    def _show(self, line: str) -> None:
        if self._interactive:  # pad with spaces to cover a longer previous line
            self.stream.write("\r" + line.ljust(self._on_line))
            self.stream.flush()
            self._on_line = len(line)
        else:
            print(line, file=self.stream, flush=True)

    def _clear(self) -> None:
        if self._on_line:
            self.stream.write("\r" + " " * self._on_line + "\r")
            self._on_line = 0


def _in_jupyter_kernel() -> bool:
    """Whether this code runs in a Jupyter kernel (not merely with IPython imported)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if hasattr(ipython, "get_ipython") else None
    return type(shell).__name__ == "ZMQInteractiveShell"
