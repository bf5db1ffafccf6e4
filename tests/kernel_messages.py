"""Run code in a real Jupyter kernel and keep every output message it sends.

The plot and progress tests count what a notebook cell would show: the
``display_data``, ``update_display_data``, ``execute_result`` and ``stream``
messages of one execution, as JupyterLab and nbclient receive them.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

OUTPUT_TYPES = ("display_data", "update_display_data", "execute_result", "stream", "error")


@dataclass
class CellOutput:
    """The output messages of one execution, in order."""

    messages: list[dict] = field(default_factory=list)
    status: str = ""

    def of_type(self, *types: str) -> list[dict]:
        return [m for m in self.messages if m["msg_type"] in types]

    def counts(self) -> Counter:
        return Counter(m["msg_type"] for m in self.messages)

    def images(self) -> int:
        """PNG images shown: displayed or the cell's result (updates excluded)."""
        shown = self.of_type("display_data", "execute_result")
        return sum("image/png" in m["content"]["data"] for m in shown)

    def text(self, stream: str = "stdout") -> str:
        return "".join(
            m["content"]["text"] for m in self.of_type("stream") if m["content"]["name"] == stream
        )


class MessageKernel:
    """A kernel (inline matplotlib backend, as Jupyter starts it) that records outputs."""

    def __init__(self, cwd: Path, *, unset: tuple[str, ...] = (), timeout: float = 120) -> None:
        from jupyter_client import KernelManager

        # MPLBACKEND from a test run (e.g. Agg) would override the kernel's inline backend
        env = {k: v for k, v in os.environ.items() if k not in {"MPLBACKEND", *unset}}
        self.timeout = timeout
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(cwd=str(cwd), env=env)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=120)

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)

    def execute(self, code: str) -> CellOutput:
        cell = CellOutput()

        def keep(message: dict) -> None:
            if message["msg_type"] in OUTPUT_TYPES:
                cell.messages.append(message)

        reply = self.client.execute_interactive(code, timeout=self.timeout, output_hook=keep)
        cell.status = reply["content"]["status"]
        if cell.status != "ok":
            raise AssertionError(
                f"{code!r} failed: {reply['content'].get('ename')}: "
                f"{reply['content'].get('evalue')}\n{cell.text('stderr')}"
            )
        return cell
