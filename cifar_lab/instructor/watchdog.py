"""A function run in a child process whose whole session is killed past a memory or time ceiling.

:func:`run_limited` starts ``python -m cifar_lab.instructor.watchdog`` in a new
session, hands it a pickled call written by the grader, and samples the
resident memory of every process in that session every 50 ms
(``/proc/<pid>/statm``). Past the memory ceiling or the wall-time ceiling it
kills the process group and every other member of the session, detached
grandchildren included, and raises :class:`LimitExceededError`. The answer
comes back as JSON, so nothing the child writes is unpickled by the grader.

**Why an RSS watchdog and not** ``RLIMIT_AS``: TensorFlow reserves address
space far beyond what it touches. Measured on this project's 2-core CPU
machine (TF 2.21): importing TensorFlow and calling a small Conv2D model peaks
at 1.9 GB of virtual memory for 0.66 GB resident. Under ``RLIMIT_AS`` of
1.5 GB the import segfaults (exit 139, no Python error); at 1.8 GB it raises
``MemoryError`` for a 6 MB array while using 0.6 GB. The reservation grows with
the core count (thread stacks, malloc arenas) and, with CUDA, by many GB, so an
address-space limit would refuse honest models on one machine, allow more on
another, and fail without a message. Resident memory is what runs a machine out
of memory, so that is what the watchdog measures. A cgroup would be exact, but
needs privileges and cgroup v2 delegation that a grading laptop may not have.
Between two samples a child can overshoot by what it writes in 50 ms (well
under 1 GB). Without ``/proc`` (macOS) only the time ceiling applies.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POLL_SECONDS = 0.05
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MB = 1024 * 1024


class LimitExceededError(RuntimeError):
    """A child went past a ceiling and was killed; the message names the limit.

    Attributes:
        peak_bytes: the child's peak resident memory as sampled (0: not measured).
    """

    def __init__(self, message: str, peak_bytes: int = 0) -> None:
        super().__init__(message)
        self.peak_bytes = peak_bytes


class ChildFailedError(RuntimeError):
    """The child's function raised (``kind``: the exception's class name), or the child died."""

    def __init__(self, kind: str, message: str, peak_bytes: int = 0) -> None:
        super().__init__(message)
        self.kind, self.peak_bytes = kind, peak_bytes


@dataclass(frozen=True)
class ChildResult:
    """What :func:`run_limited` returns: the function's value, the peak memory, the seconds."""

    value: Any
    peak_bytes: int
    seconds: float


def _session_members(session: int) -> list[int]:
    """Pids of live processes in ``session`` (Linux ``/proc``); [] elsewhere."""
    members = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as handle:
                    fields = handle.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session and fields[0] != b"Z":
                members.append(int(entry.name))
    return members


def _resident_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as handle:
                total += int(handle.read().split()[1]) * PAGE_BYTES
        except (OSError, IndexError, ValueError):
            continue
    return total


def kill_session(leader: int) -> None:
    """SIGKILL the process group ``leader`` leads and every other process of its session."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader, signal.SIGKILL)
    for pid in _session_members(leader):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _watch(child: subprocess.Popen, memory_bytes: int, seconds: float, what: str) -> int:
    """Wait for ``child``; kill its session past a ceiling. Returns the peak resident bytes."""
    started, peak = time.monotonic(), 0
    while child.poll() is None:
        peak = max(peak, _resident_bytes(_session_members(child.pid) or [child.pid]))
        elapsed = time.monotonic() - started
        if peak > memory_bytes or elapsed > seconds:
            kill_session(child.pid)
            child.wait()
            if peak > memory_bytes:
                limit = f"{memory_bytes / MB:.0f} MB"
                used = f"{peak / MB:.0f} MB"
                message = f"{what} used {used}, over the {limit} memory limit"
                raise LimitExceededError(message, peak)
            raise LimitExceededError(f"{what} ran longer than the {seconds:g} s time limit", peak)
        time.sleep(POLL_SECONDS)
    return peak


def run_limited(
    target: str, kwargs: dict[str, Any], *, memory_bytes: int, seconds: float, what: str
) -> ChildResult:
    """Call ``module:function`` with ``kwargs`` in a child process under ceilings.

    Args:
        target: ``"package.module:function"``; it must return a JSON value.
        kwargs: picklable keyword arguments.
        memory_bytes: kill the child's session when its resident memory passes this.
        seconds: kill it after this many seconds.
        what: what runs, for messages (e.g. ``"scoring best_model.keras"``).

    Returns:
        A :class:`ChildResult`.

    Raises:
        LimitExceededError: a ceiling was passed; the child's session is dead.
        ChildFailedError: the function raised, or the child died without an answer.
    """
    with tempfile.TemporaryDirectory(prefix="cifar_lab_child_") as temporary:
        folder = Path(temporary)
        (folder / "call.pkl").write_bytes(pickle.dumps((target, kwargs), protocol=5))
        command = [sys.executable, "-m", "cifar_lab.instructor.watchdog", str(folder)]
        started = time.monotonic()
        with open(folder / "stderr.txt", "wb") as stderr:
            child = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                start_new_session=True,
            )  # fmt: skip
        try:
            peak = _watch(child, memory_bytes, seconds, what)
        finally:
            if child.poll() is None:  # e.g. the submission's time ran out meanwhile
                kill_session(child.pid)
                child.wait()
        try:
            value = _answer(folder, child.returncode)
        except ChildFailedError as error:
            error.peak_bytes = peak
            raise
        return ChildResult(value, peak, time.monotonic() - started)


def _answer(folder: Path, returncode: int) -> Any:
    try:
        answer = json.loads((folder / "answer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        tail = (folder / "stderr.txt").read_bytes()[-300:].decode("utf-8", "replace").strip()
        how = f"signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
        last = tail.splitlines()[-1] if tail else "no message"
        raise ChildFailedError("ChildDied", f"the child process died ({how}: {last})") from None
    if not answer["ok"]:
        raise ChildFailedError(answer["kind"], answer["message"])
    return answer["value"]


def _child_main(folder: Path) -> None:
    """Run the pickled call in ``folder`` (written by the grader) and write ``answer.json``."""
    target, kwargs = pickle.loads((folder / "call.pkl").read_bytes())
    module, name = target.split(":")
    try:
        value = getattr(importlib.import_module(module), name)(**kwargs)
        answer = {"ok": True, "value": value}
    except BaseException as error:  # every failure goes back as data
        answer = {"ok": False, "kind": type(error).__name__, "message": str(error)[:2000]}
    partial = folder / "answer.json.part"
    partial.write_text(json.dumps(answer), encoding="utf-8")
    partial.replace(folder / "answer.json")


if __name__ == "__main__":
    _child_main(Path(sys.argv[1]))
