"""Peak resident memory: the one reader, for the command line, ``train_best`` and ``grade``.

Where ``/proc`` exists (Linux) a process's peak is its ``VmHWM``: unlike
``ru_maxrss``, it does not carry over across ``exec`` the peak of a large process
that forked this one (Linux keeps that in ``ru_maxrss``). Elsewhere ``getrusage``
answers, in its platform's unit (bytes on macOS, KiB on Linux). ``resource`` is
imported on use: Windows has none, and nothing else here needs it.
"""

from __future__ import annotations

import sys

from cifar_lab.data.limits import MEGABYTE


def peak_resident_bytes(pid: int | str) -> int | None:
    """A process's peak resident bytes (``VmHWM``).

    Args:
        pid: a process id, or ``"self"``.

    Returns:
        The bytes, or None where ``/proc`` is missing (not Linux) or the process has gone.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            line = next(row for row in status if row.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def peak_memory_mb(*, children: bool = False) -> float:
    """Peak resident memory of this process, or of its largest child, in MB (2**20 bytes).

    Args:
        children: False: this process (``VmHWM``, else ``ru_maxrss``); True: the largest
            child process this one has waited for (``RUSAGE_CHILDREN``'s ``ru_maxrss``).

    Returns:
        The peak, in MB.
    """
    if not children:
        own = peak_resident_bytes("self")
        if own is not None:
            return own / MEGABYTE
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss * scale / MEGABYTE
