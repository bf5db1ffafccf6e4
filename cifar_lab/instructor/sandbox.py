"""Where student files run: the ``--rerun`` cage, and the ceiling-watched child scoring a model.

**The cage** ``grade --rerun`` runs student notebooks in: bubblewrap, else ``unshare``, else none.

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

**The ceiling-watched child** (model scoring): a function run in a child process whose whole
session is killed past a memory or time ceiling.

:func:`run_limited` starts ``python -m cifar_lab.instructor.sandbox`` in a new
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
import functools
import importlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifar_lab.checks import check_int
from cifar_lab.instructor.findings import MEGABYTE

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


THREAD_VARIABLES = (  # TensorFlow's two pools, and OpenMP/BLAS (numpy, oneDNN)
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
)


def thread_variables(threads: int | None) -> dict[str, str]:
    """The variables that hold TensorFlow and BLAS to ``threads`` threads each.

    Args:
        threads: threads per pool (None: no variable, the libraries' own defaults).

    Returns:
        ``{name: str(threads)}`` for each of :data:`THREAD_VARIABLES`, or ``{}``.
    """
    if threads is None:
        return {}
    check_int("threads", threads, minimum=1)
    return dict.fromkeys(THREAD_VARIABLES, str(threads))


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


# ------------------------------------------------------- the ceiling-watched child
POLL_SECONDS = 0.05
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


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


def peak_resident_bytes(pid: int | str) -> int | None:
    """The one reader of peak memory: a process's peak resident bytes (``VmHWM``).

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
                limit = f"{memory_bytes / MEGABYTE:.0f} MB"
                used = f"{peak / MEGABYTE:.0f} MB"
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
        command = [sys.executable, "-m", "cifar_lab.instructor.sandbox", str(folder)]
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
