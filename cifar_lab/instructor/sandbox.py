"""The cage ``grade --rerun`` runs student notebooks in: bubblewrap, else ``unshare``, else none.

:func:`sandbox_command` wraps a command line so that it, and every process it
starts, runs

* with **no network**: a network namespace of its own (loopback only);
* with a **read-only view** of the file system, except its working folder
  (which also holds its private home and temporary folder);
* in a **pid namespace** of its own: when the command's process ends or is
  killed, the kernel kills everything left in the namespace, detached
  children and double-forked daemons included;
* with **no capabilities** (it cannot remount anything writable again).

bubblewrap (Debian package ``bubblewrap``) also puts an empty ``/tmp`` and an
empty copy of the grader's home over the real ones, so a notebook cannot read
other submissions unpacked in the grader's temporary folder. ``unshare`` (util-linux) gets
the same namespaces; it remounts every mount read-only instead and leaves ``/tmp``
readable. Where neither works, :func:`isolation_warning` says so loudly: the
notebooks then run as the grader's user, with the network, and only a
clean environment and a process-tree sweep stand between them and the machine.

``CIFAR_LAB_SANDBOX`` (``bwrap``, ``unshare`` or ``none``) picks a backend
instead of the first one that works (``none`` is for debugging, never grading).
:func:`clean_environment` builds the environment from nothing: none of the
grader's variables reach student code.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SANDBOX_ENV = "CIFAR_LAB_SANDBOX"
BACKENDS = ("bwrap", "unshare")
_NAMESPACES = ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
# unshare: make the working folder its own mount, remount everything else read-only.
_READ_ONLY_SCRIPT = """set -e
work="$1"; shift
ip link set lo up  # the kernel talks to its runner over loopback
mount --make-rprivate /
mount --bind "$work" "$work"
for m in $(awk '{print $5}' /proc/self/mountinfo | sort -u); do
  [ "$m" = "$work" ] || mount -o remount,bind,ro "$m" 2>/dev/null || true
done
exec setpriv --no-new-privs --inh-caps=-all --bounding-set=-all "$@"
"""


def _bwrap_prefix(work_dir: Path, read_only: list[Path]) -> list[str]:
    prefix = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    prefix += ["--tmpfs", "/tmp", "--tmpfs", "/dev/shm"]
    home = Path.home()
    if home != Path("/") and not any(_inside(p, home) for p in [work_dir, *read_only]):
        prefix += ["--tmpfs", str(home)]  # the grader's home: empty, not readable
    for device in [*sorted(Path("/dev").glob("nvidia*")), Path("/dev/dri")]:
        prefix += ["--dev-bind-try", str(device), str(device)]  # a GPU, where there is one
    for path in read_only:  # after the tmpfs mounts, so that they stay visible
        prefix += ["--ro-bind-try", str(path), str(path)]
    prefix += ["--bind", str(work_dir), str(work_dir), "--chdir", str(work_dir)]
    return prefix + _NAMESPACES + ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]


def _unshare_prefix(work_dir: Path) -> list[str]:
    prefix = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc"]
    prefix += ["--ipc", "--uts"]
    if os.geteuid() != 0:
        prefix += ["--user", "--map-root-user"]
    return [*prefix, "sh", "-c", _READ_ONLY_SCRIPT, "sandbox", str(work_dir)]


def _inside(path: Path, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


def sandbox_command(
    command: list[str], *, backend: str | None, work_dir: Path, read_only: list[Path] = ()
) -> list[str]:
    """Wrap ``command`` so that it runs isolated by ``backend``.

    Args:
        command: the program and its arguments.
        backend: ``"bwrap"``, ``"unshare"`` or None (returns ``command`` unchanged).
        work_dir: the only writable folder; the command starts in it.
        read_only: folders it must see although they may lie under ``/tmp`` or
            the grader's home (the Python environment, the data, its cache).

    Returns:
        The command line to start.
    """
    if backend is None:
        return list(command)
    if backend == "bwrap":
        prefix = _bwrap_prefix(Path(work_dir), [Path(p) for p in read_only])
        return [*prefix, "--", *command]
    if backend == "unshare":
        return [*_unshare_prefix(Path(work_dir)), *command]
    raise ValueError(f"sandbox backend must be one of {BACKENDS} or None, got {backend!r}")


@functools.cache
def _works(backend: str) -> bool:
    if shutil.which(backend) is None or (backend == "unshare" and not shutil.which("setpriv")):
        return False
    with tempfile.TemporaryDirectory(prefix="cifar_lab_probe_") as probe:
        command = sandbox_command(["true"], backend=backend, work_dir=Path(probe))
        try:
            return subprocess.run(command, capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False


def choose_backend() -> str | None:
    """The backend to use: ``$CIFAR_LAB_SANDBOX`` if set, else the first that works here.

    Returns:
        ``"bwrap"``, ``"unshare"`` or None (no isolation available).

    Raises:
        ValueError: ``$CIFAR_LAB_SANDBOX`` names an unknown backend, or one that does not work.
    """
    wanted = os.environ.get(SANDBOX_ENV, "").strip()
    if wanted == "none":
        return None
    if wanted:
        if wanted not in BACKENDS:
            raise ValueError(f"{SANDBOX_ENV}={wanted!r}: use one of {BACKENDS} or 'none'")
        if not _works(wanted):
            raise ValueError(f"{SANDBOX_ENV}={wanted!r}, but {wanted} does not work here")
        return wanted
    return next((backend for backend in BACKENDS if _works(backend)), None)


def isolation_warning(backend: str | None) -> str | None:
    """A loud warning when student code would run without a sandbox, else None."""
    if backend is not None:
        return None
    return (
        "WARNING: --rerun found neither bubblewrap (Debian package `bubblewrap`) nor a working "
        "`unshare`: student notebooks will run as YOUR user, WITH network access and write "
        "access to everything you can write. Install bubblewrap, or run the grader in a "
        "throw-away container (see README, 'Grade')."
    )


def clean_environment(home: Path, tmp: Path, **values: str | None) -> dict[str, str]:
    """An environment built from nothing: no variable of the grader's passes through.

    Args:
        home: the private home (``HOME``, caches and configuration go below it).
        tmp: the private temporary folder (``TMPDIR``).
        **values: further variables; None values are left out.

    Returns:
        The environment for the sandboxed command.
    """
    python_bin = str(Path(sys.executable).parent)
    environment = {
        "PATH": os.pathsep.join([python_bin, "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "MPLCONFIGDIR": str(home / ".matplotlib"),
        "LANG": "C.UTF-8",
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    return environment | {key: value for key, value in values.items() if value is not None}


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, theirs, ...), read from ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        try:  # the command name may hold spaces and parentheses: split after the last ')'
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z":  # a zombie is dead already; its parent reaps it
                children.setdefault(int(fields[1]), []).append(int(entry.name))
        except (OSError, ValueError, IndexError):  # not a process, or it has just gone
            continue
    found, queue = [], list(children.get(pid, []))
    while queue:
        child = queue.pop()
        found.append(child)
        queue.extend(children.get(child, []))
    return found


def kill_descendants(pid: int) -> None:
    """SIGKILL every process below ``pid`` until none is left (a few sweeps at most).

    Called by ``pid`` itself (a child subreaper), it also reaps what it killed.
    """
    for _ in range(10):
        found = descendants(pid)
        if not found:
            return
        for child in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        time.sleep(0.05)
        with contextlib.suppress(ChildProcessError):
            while os.getpid() == pid and os.waitpid(-1, os.WNOHANG)[0]:
                pass
