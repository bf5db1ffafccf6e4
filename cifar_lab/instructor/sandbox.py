"""Grading's limits: the re-execution's cage, the ceiling-watched child, the per-submission budget.

In the order a reader meets them: where student files run (the cage), a function run
in a child under memory and time ceilings, and the budget and model scoring built on that.

**The cage** ``grade`` re-executes student notebooks in: bubblewrap, else ``unshare``, else none.

:func:`sandbox_command` wraps a command line so that it, and every process it
starts, runs

* with **no network**: a network namespace of its own (loopback only);
* in a **pid namespace** of its own: when the command's process ends or is
  killed, the kernel kills everything left in the namespace, detached
  children and double-forked daemons included;
* with **no capabilities** (it cannot remount anything writable again).

**What it can read** (bubblewrap, Debian package ``bubblewrap``): nothing but what it
is given. The cage's root is empty; into it go, read-only, the OS's programs and
libraries (:data:`SYSTEM_READ_ONLY`: ``/usr``, the loader's cache; ``/bin``,
``/lib`` ... as the links they are on merged-``/usr`` systems), a fresh ``/dev``
and ``/proc``, and the paths the caller names: the Python install and the
environment (:func:`python_install`, each also at its real path), the course
package folder alone (not the checkout around it, whose ``notebooks/`` hold the
answers), and the data (the CIFAR-10 copy and the decoded cache). Where one of
those lies in the grader's home, that path is bound, not the home. So ``/``,
``$HOME``, the grader's ``/tmp`` (other submissions unpacked there, earlier
reports), the instructor's checkout and ``/etc`` stay out of sight; ``/tmp`` is
an empty, read-only folder.

**What it can write**: only its work folder, a tmpfs of ``disk_bytes`` (``--size``,
bubblewrap 0.8 and later) mounted over the grader's folder, in which the
grader's files show read-only; plus ``/dev/shm``, a separate :data:`SHM_BYTES`
tmpfs. The empty root, ``/tmp`` and ``/dev`` are remounted read-only once set up.

``unshare`` (util-linux) gets the same namespaces but no new root. It covers
``/tmp``, ``$HOME`` and the folder around each path shown (the checkout around
the package, the project around the venv, the data's folder) with an empty
tmpfs and binds back only the paths shown that lie in them
(:func:`_hidden_folders`), then remounts every mount read-only. So other
submissions and earlier reports in ``/tmp``, the grader's home and the
instructor's checkout are out of sight; the rest of ``/`` stays readable
(``/etc``, a second checkout elsewhere), which :func:`isolation_warning` says.
Writes go to the grader's folder itself (no tmpfs; see below for its quota).
Building a whole root by hand (a tmpfs, binds, ``pivot_root``) is what
bubblewrap does; use it. Where neither works,
:func:`isolation_warning` says so loudly: the notebooks then run as the grader's
user, with the network, and only a clean environment, the ceilings and a
process-tree sweep stand between them and the machine.

**Ceilings** (:func:`watch_tree`, the grader's side, any backend): every 0.2 s the
grader reads the cage's process tree from ``/proc`` (every process below the one
it started, however detached) and stops the run at the first ceiling passed:
resident memory summed over the tree (the same measure as :func:`run_limited`)
plus the memory files (``memfd_create``) it holds open, the number of processes,
the disk quota, the wall time. The message names the ceiling. Why these mechanisms:

* *processes*: a count of the tree, not ``RLIMIT_NPROC``, which counts every process of the
  user on the machine, and which does not bind a sandbox running as root (the grader's
  user here); a fork bomb overshoots by what it forks in 0.2 s before it is killed.
* *disk*: under bubblewrap a tmpfs of exactly ``disk_bytes``, a hard limit (a write past it
  fails with ``ENOSPC``); the grader reads its fill through a member's
  ``/proc/<pid>/root`` and stops the run when it is full, or holds more than
  :data:`MAX_FILES` files (inodes cost kernel memory the tmpfs size does not count).
  Without a tmpfs (``unshare``, none) the folder is walked once a second, and the
  runner sets ``RLIMIT_FSIZE`` to the quota, so no single file can pass it between
  two walks (many files can, by what the disk writes in a second).
* tmpfs pages are memory, but not resident memory of a process: the machine gives a
  re-run at most its memory ceiling plus its disk quota plus :data:`SHM_BYTES`.
* not counted: System V shared memory segments that no process has attached (in the
  cage's own IPC namespace, which the grader cannot list), and GPU memory. A cgroup
  would count everything, but needs privileges a grading laptop may not give.

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

**Scoring a saved model** (:func:`score_model_sets`) runs ``claims.model_accuracies``
in a child process through :func:`run_limited`: the watchdog kills the child's whole
session once it passes ``model_memory_bytes`` (default 4 GB) or ``model_seconds``
(default 120 s). The grader never loads a model itself, so a model that balloons takes
only its child down, and the row says which limit it passed.

**Per-submission budget** (:func:`submission_budget`): reading, checking and
scoring one submission must end within ``submission_seconds`` (default 300 s).
In the main thread a ``SIGALRM`` timer raises :class:`SubmissionTimeoutError`
wherever the grader is; the scoring child gets at most the time that is left.
The re-execution runs outside the budget (:func:`suspended_budget`): it has its own
``--total-timeout``. The budget is passed down as an argument, never kept in a global.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import pickle
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cifar_lab.checks import check_int, check_number
from cifar_lab.instructor.findings import MEGABYTE

SANDBOX_ENV = "CIFAR_LAB_SANDBOX"
BACKENDS = ("bwrap", "unshare")
_NAMESPACES = ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
# unshare: hide folders (:func:`_hiding_commands`), make the working folder its own
# mount, remount everything else read-only.
_READ_ONLY_SCRIPT = """set -e
work="$1"; shift
ip link set lo up  # the kernel talks to its runner over loopback
mount --make-rprivate /
{hide}mount --bind "$work" "$work"
for m in $(awk '{{print $5}}' /proc/self/mountinfo | sort -u); do
  [ "$m" = "$work" ] || mount -o remount,bind,ro "$m" 2>/dev/null || true
done
cd "$work"
exec setpriv --no-new-privs --inh-caps=-all --bounding-set=-all "$@"
"""
# Never covered by unshare's hiding: the OS itself (the kernel needs its programs).
_NEVER_HIDDEN = ("/", "/usr", "/etc", "/proc", "/dev", "/sys", "/run", "/var", "/bin", "/lib")


# What every program needs besides Python: the OS's programs and libraries, the loader's
# cache. Merged-/usr systems have /bin, /lib ... as links into /usr; they are re-created as links.
SYSTEM_READ_ONLY = ("/usr", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d")
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SHM_BYTES = 64 * MEGABYTE  # /dev/shm (POSIX shared memory, semaphores): its own small quota


def _bwrap_prefix(work_dir: Path, read_only: list[Path], disk_bytes: int | None) -> list[str]:
    """bwrap's options: an empty root, then only what the command must see (see the module doc)."""
    prefix = ["bwrap", *_NAMESPACES, "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    for path in SYSTEM_LINKS:
        if os.path.islink(path):
            prefix += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            prefix += ["--ro-bind", path, path]
    for path in SYSTEM_READ_ONLY:
        prefix += ["--ro-bind-try", path, path]
    prefix += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    prefix += ["--size", str(SHM_BYTES), "--tmpfs", "/dev/shm"]
    for device in [*sorted(Path("/dev").glob("nvidia*")), Path("/dev/dri")]:
        prefix += ["--dev-bind-try", str(device), str(device)]  # a GPU, where there is one
    for path in _with_real_paths(read_only):
        prefix += ["--ro-bind-try", str(path), str(path)]
    if disk_bytes is None:  # the folder itself, writable
        prefix += ["--bind", str(work_dir), str(work_dir)]
    else:  # a size-limited tmpfs; what the grader put there shows through read-only
        prefix += ["--size", str(disk_bytes), "--tmpfs", str(work_dir)]
        prefix += _grader_files(work_dir)
    # the empty root, /tmp and /dev were made writable by bwrap for its own set-up: not after it
    prefix += ["--remount-ro", "/tmp", "--remount-ro", "/dev", "--remount-ro", "/"]
    return [*prefix, "--chdir", str(work_dir)]


def _with_real_paths(paths: list[Path]) -> list[Path]:
    """``paths`` and, where a link leads elsewhere, where it leads (both are used to reach it)."""
    found: list[Path] = []
    for path in paths:
        for each in (Path(os.path.abspath(path)), Path(path).resolve()):
            if each not in found and each != Path("/"):
                found.append(each)
    return found


def _grader_files(work_dir: Path) -> list[str]:
    """Re-create ``work_dir``'s tree in the cage: folders empty and writable, files read-only."""
    options = []
    for folder, subfolders, files in os.walk(work_dir):
        for name in sorted(subfolders):
            options += ["--dir", os.path.join(folder, name)]
        for name in sorted(files):
            options += ["--ro-bind", os.path.join(folder, name), os.path.join(folder, name)]
    return options


def _unshare_prefix(work_dir: Path, read_only: list[Path] = ()) -> list[str]:
    prefix = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc"]
    prefix += ["--ipc", "--uts"]
    if os.geteuid() != 0:
        prefix += ["--user", "--map-root-user"]
    script = _READ_ONLY_SCRIPT.format(hide=_hiding_commands(work_dir, read_only))
    return [*prefix, "sh", "-c", script, "sandbox", str(work_dir)]


def _hidden_folders(work_dir: Path, read_only: list[Path]) -> dict[Path, list[Path]]:
    """What ``unshare`` covers with an empty tmpfs, and what of each it shows again.

    Covered: ``/tmp``, ``$HOME`` and the folder around each path shown (the
    checkout around the package, the venv's project, the data's folder), except
    the OS's own folders and a folder inside a path shown; an outermost folder
    only. Shown again, inside each: the paths shown that lie in it.

    Returns:
        covered folder -> the paths under it to bind back (outermost only), in order.
    """
    shown = [Path(os.path.realpath(p)) for p in [work_dir, *read_only] if os.path.exists(p)]
    shown = list(dict.fromkeys(shown))

    def inside(path: Path, folder: Path) -> bool:
        return path == folder or folder in path.parents

    def system(path: Path) -> bool:
        return any(inside(path, Path(f)) if f != "/" else path == Path(f) for f in _NEVER_HIDDEN)

    candidates = [Path("/tmp"), Path.home(), *(path.parent for path in shown)]
    folders = sorted(
        {Path(os.path.realpath(c)) for c in candidates if os.path.isdir(c)},
        key=lambda path: len(path.parts),
    )
    covered: dict[Path, list[Path]] = {}
    for folder in folders:
        if system(folder) or any(inside(folder, path) for path in shown):
            continue
        if any(inside(folder, outer) for outer in covered):
            continue  # hidden already, with what it shows
        kept = sorted((p for p in shown if inside(p, folder) and p != folder),
                      key=lambda path: len(path.parts))  # fmt: skip
        covered[folder] = [
            p for i, p in enumerate(kept) if not any(inside(p, q) for q in kept[:i])
        ]
    return covered


def _hiding_commands(work_dir: Path, read_only: list[Path]) -> str:
    """Shell lines that cover :func:`_hidden_folders` and bind back what must show.

    The trick: ``cd`` into a folder before mounting over it keeps its old contents
    reachable through relative paths (``mount -c``: not made absolute), so each
    path to show is bound from there into the new, empty tmpfs.
    """
    lines = []
    for folder, kept in _hidden_folders(work_dir, read_only).items():
        quoted = shlex.quote(str(folder))
        lines += [f"cd -- {quoted}", f"mount -t tmpfs -o mode=0755,size=1m hidden {quoted}"]
        for path in kept:
            target, source = shlex.quote(str(path)), shlex.quote(f"./{path.relative_to(folder)}")
            if path.is_dir():
                lines.append(f"mkdir -p -- {target}")
            else:
                lines += [f"mkdir -p -- {shlex.quote(str(path.parent))}", f": > {target}"]
            lines.append(f"mount -c --rbind {source} {target}")
    lines.append("cd /")
    return "".join(f"{line}\n" for line in lines)


def python_install() -> list[Path]:
    """The folders this Python runs from: its install and its environment (a venv).

    Returns:
        ``sys.prefix``, ``sys.base_prefix`` (and the exec prefixes where they differ) and
        the folder above the real interpreter, each once; never ``/``.
    """
    folders = [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix]
    folders.append(str(Path(sys.executable).resolve().parents[1]))
    return [Path(f) for f in dict.fromkeys(folders) if Path(f) != Path("/")]


def sandbox_command(
    command: list[str],
    *,
    backend: str | None,
    work_dir: Path,
    read_only: list[Path] = (),
    disk_bytes: int | None = None,
) -> list[str]:
    """Wrap ``command`` so that it runs isolated by ``backend``.

    Args:
        command: the program and its arguments.
        backend: ``"bwrap"``, ``"unshare"`` or None (returns ``command`` unchanged).
        work_dir: the only writable folder; the command starts in it.
        read_only: files and folders it may read (the Python install and environment,
            the course package, the data); with bubblewrap it sees nothing else but
            :data:`SYSTEM_READ_ONLY`; with ``unshare``, the folders around them,
            ``/tmp`` and ``$HOME`` are hidden but for these.
        disk_bytes: with bubblewrap, the command writes to a tmpfs of this size mounted
            on ``work_dir``, in which the files already in ``work_dir`` show read-only
            and its folders empty (None: ``work_dir`` itself, writable, no quota; and
            always so with ``unshare``).

    Returns:
        The command line to start.
    """
    if backend is None:
        return list(command)
    if backend == "bwrap":
        prefix = _bwrap_prefix(Path(work_dir), [Path(p) for p in read_only], disk_bytes)
        return [*prefix, "--", *command]
    if backend == "unshare":
        return [*_unshare_prefix(Path(work_dir), [Path(p) for p in read_only]), *command]
    raise ValueError(f"sandbox backend must be one of {BACKENDS} or None, got {backend!r}")


@functools.cache
def _works(backend: str) -> bool:
    if shutil.which(backend) is None or (backend == "unshare" and not shutil.which("setpriv")):
        return False
    with tempfile.TemporaryDirectory(prefix="cifar_lab_probe_") as probe:
        # as the re-run uses it: a bwrap without --size (before 0.8) does not count as working
        command = sandbox_command(
            ["true"], backend=backend, work_dir=Path(probe), disk_bytes=MEGABYTE
        )
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
    """A loud warning when student code would run uncaged, or caged but able to read it all."""
    if backend == "unshare":
        return (
            "WARNING: the re-execution found no working bubblewrap (0.8 or later), only "
            "`unshare`: student notebooks cannot write outside their folder or reach the "
            "network, and /tmp, your home and the folders around the course package, "
            "Python and the data are hidden, but they CAN READ every other file you can "
            "(/etc, any other checkout or folder of submissions elsewhere). Install "
            "bubblewrap (Debian package `bubblewrap`)."
        )
    if backend is not None:
        return None
    return (
        "WARNING: the re-execution found neither bubblewrap (Debian package `bubblewrap`) "
        "nor a working `unshare`: student notebooks will run as YOUR user, WITH network "
        "access and write access to everything you can write. Install bubblewrap, or run "
        "the grader in a throw-away container (see docs/grading.md, 'The sandbox')."
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
    for name in os.listdir("/proc"):  # plain os calls: the watchdog reads this 5 times a second
        if not name.isdigit():
            continue
        try:  # the command name may hold spaces and parentheses: split after the last ')'
            with open(f"/proc/{name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            if fields[0] != b"Z":  # a zombie is dead already; its parent reaps it
                children.setdefault(int(fields[1]), []).append(int(name))
        except (OSError, ValueError, IndexError):  # it has just gone
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


# ------------------------------------------------------------- the cage's ceilings
TREE_POLL_SECONDS = 0.2  # a scan of /proc costs ~4 ms of CPU: 2 % of a core at this rate
FOLDER_POLL_SECONDS = 1.0  # walking a folder costs more than reading /proc
MAX_FILES = 100_000  # files and folders in the work folder (each costs kernel memory)


@dataclass(frozen=True)
class Ceilings:
    """What one caged command and everything it starts may use, together.

    Attributes:
        memory_bytes: resident memory of all its processes, summed.
        disk_bytes: bytes in its work folder (a tmpfs of this size under bubblewrap).
        processes: live processes, the sandbox's own included.
        seconds: wall time.
    """

    memory_bytes: int
    disk_bytes: int
    processes: int
    seconds: float


def _tmpfs_usage(pids: list[int], work_dir: Path, disk_bytes: int) -> tuple[int, int] | None:
    """(bytes, files) of the cage's tmpfs on ``work_dir``, seen through a member's root.

    Only a file system exactly ``disk_bytes`` large counts: before the cage is set up, a
    member's root is the grader's and ``work_dir`` is the grader's folder.
    """
    for pid in reversed(pids):  # the deepest members are inside the cage
        try:
            stats = os.statvfs(f"/proc/{pid}/root{work_dir}")
        except OSError:
            continue
        if stats.f_blocks * stats.f_frsize == disk_bytes:
            used = (stats.f_blocks - stats.f_bfree) * stats.f_frsize
            return used, stats.f_files - stats.f_ffree
    return None


def _folder_usage(work_dir: Path) -> tuple[int, int]:
    """(bytes allocated, files) below ``work_dir``; the walk stops past :data:`MAX_FILES`."""
    used = files = 0
    stack = [str(work_dir)]
    while stack and files <= MAX_FILES:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            files += 1
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                used += entry.stat(follow_symlinks=False).st_blocks * 512
    return used, files


def _memfd_bytes(pids: list[int]) -> int:
    """Bytes in the memory files (``memfd_create``) the processes hold open, each counted once.

    Written with ``write()`` and never mapped, their pages are in no process's resident
    memory, yet they are memory all the same.
    """
    sizes: dict[tuple[int, int], int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for entry in os.scandir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(entry.path).startswith("/memfd:"):
                        stats = os.stat(entry.path)
                        sizes[(stats.st_dev, stats.st_ino)] = stats.st_blocks * 512
    return sum(sizes.values())


def watch_tree(
    child: subprocess.Popen, ceilings: Ceilings, work_dir: Path, *, what: str, tmpfs: bool
) -> tuple[int, str | None]:
    """Wait for ``child``, sampling it and every process below it; stop at the first ceiling.

    The tree is read from ``/proc`` (:func:`descendants`), so a process that left the
    session or double-forked is still counted. Memory is the summed resident memory, as
    :func:`run_limited` measures it; a tmpfs is read through a member's ``/proc/<pid>/root``.
    The caller kills the tree (this function only reports).

    Args:
        child: the started command (the sandbox's outermost process).
        ceilings: the limits.
        work_dir: its work folder.
        what: what runs, for messages (e.g. ``"the re-run"``).
        tmpfs: True when ``work_dir`` is the cage's size-limited tmpfs (bubblewrap),
            False when it is the grader's folder (walked once a second).

    Returns:
        (peak resident bytes of the tree, None or the message naming the ceiling passed).
    """
    started, peak, next_walk = time.monotonic(), 0, 0.0
    limit = ceilings.disk_bytes / MEGABYTE
    while child.poll() is None:
        members = [child.pid, *descendants(child.pid)]
        peak = max(peak, _resident_bytes(members) + _memfd_bytes(members))
        now = time.monotonic()
        usage = None
        if tmpfs:
            usage = _tmpfs_usage(members, work_dir, ceilings.disk_bytes)
        elif now >= next_walk:
            usage, next_walk = _folder_usage(work_dir), now + FOLDER_POLL_SECONDS
        if peak > ceilings.memory_bytes:
            used, most = peak / MEGABYTE, ceilings.memory_bytes / MEGABYTE
            return peak, f"{what} used {used:.0f} MB, over its {most:.0f} MB memory limit"
        if len(members) > ceilings.processes:
            count, most = len(members), ceilings.processes
            return peak, f"{what} ran {count} processes, over its limit of {most}"
        if usage is not None and usage[0] >= ceilings.disk_bytes:
            return peak, f"{what} filled its {limit:.0f} MB disk quota"
        if usage is not None and usage[1] > MAX_FILES:
            return peak, f"{what} made over {MAX_FILES} files, the disk quota's limit"
        if now - started > ceilings.seconds:
            return peak, f"stopped at the total limit of {ceilings.seconds:g} s"
        time.sleep(TREE_POLL_SECONDS)
    return peak, None


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


# ------------------- grading's limits: the per-submission budget, a model scored under ceilings
MODEL_ACCURACIES = "cifar_lab.instructor.claims:model_accuracies"


@dataclass(frozen=True)
class Limits:
    """Ceilings for grading one submission.

    Attributes:
        model_memory_bytes: resident memory of the model-scoring child (all its processes).
        model_seconds: wall time of the model-scoring child.
        submission_seconds: wall time for reading, checking and scoring one
            submission (the re-execution has its own ``--total-timeout``).
    """

    model_memory_bytes: int = 4096 * MEGABYTE
    model_seconds: float = 120.0
    submission_seconds: float = 300.0

    def __post_init__(self) -> None:
        check_int("model_memory_bytes", self.model_memory_bytes, minimum=MEGABYTE)
        for name in ("model_seconds", "submission_seconds"):
            check_number(name, getattr(self, name), minimum=0, minimum_inclusive=False)


class SubmissionTimeoutError(LimitExceededError):
    """One submission used up its ``submission_seconds``."""


@dataclass
class Budget:
    """The limits and deadline of the submission being graded; peaks of its children (bytes)."""

    limits: Limits
    deadline: float
    child_peaks: list[int] = field(default_factory=list)

    def seconds_left(self) -> float:
        """Seconds until the deadline (negative once it has passed)."""
        return self.deadline - time.monotonic()

    @classmethod
    def unlimited(cls) -> Budget:
        """Default limits and no deadline: for work done outside a batch."""
        return cls(Limits(), float("inf"))


def _can_alarm() -> bool:
    main = threading.current_thread() is threading.main_thread()
    return main and hasattr(signal, "SIGALRM")


@contextlib.contextmanager
def submission_budget(limits: Limits) -> Iterator[Budget]:
    """Grade one submission within ``limits.submission_seconds``.

    Args:
        limits: the ceilings of this submission.

    Yields:
        Its :class:`Budget` (read ``child_peaks`` afterwards).

    Raises:
        SubmissionTimeoutError: inside the block, when the time is up (main thread
            only; elsewhere the scoring child still gets only the time left).
    """
    budget = Budget(limits, time.monotonic() + limits.submission_seconds)

    def on_alarm(signum: int, frame: Any) -> None:
        limit = f"{limits.submission_seconds:g} s"
        raise SubmissionTimeoutError(f"grading took longer than the {limit} per-submission limit")

    armed = _can_alarm()
    previous = signal.signal(signal.SIGALRM, on_alarm) if armed else None
    try:
        if armed:
            signal.setitimer(signal.ITIMER_REAL, limits.submission_seconds)
        yield budget
    finally:
        if armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def suspended_budget(budget: Budget | None) -> Iterator[None]:
    """Stop the per-submission clock inside the block (the re-execution has its own timeouts).

    Args:
        budget: the submission's budget (None: no clock runs, nothing to stop).
    """
    if budget is None:
        yield
        return
    armed = _can_alarm()
    if armed:
        signal.setitimer(signal.ITIMER_REAL, 0)
    started = time.monotonic()
    try:
        yield
    finally:
        budget.deadline += time.monotonic() - started
        if armed:
            signal.setitimer(signal.ITIMER_REAL, max(budget.seconds_left(), 0.001))


def score_model_sets(
    path: Path,
    sets: dict[str, tuple[np.ndarray, np.ndarray]],
    max_bytes: int,
    budget: Budget | None = None,
) -> dict[str, float]:
    """The model's accuracy on several labelled image sets, in one limited child.

    One child loads the model once and scores every set (TensorFlow's start-up
    is paid once), under the current submission's limits.

    Args:
        path: the submitted ``.keras`` file (untrusted).
        sets: {name: (raw pixels uint8 (N, 32, 32, 3), int labels (N,))}, each N >= 1.
        max_bytes: largest accepted unpacked size of the archive.
        budget: the submission's budget, whose limits apply and whose time is left
            (None: default limits, no deadline); the child's peak memory is added to it.

    Returns:
        {name: accuracy in [0, 1]}.

    Raises:
        LimitExceededError: the memory or time ceiling was passed (the message names the flag).
        SubmissionTimeoutError: the per-submission time ran out first.
        ChildFailedError: the model could not be loaded or evaluated.
    """
    names = list(sets)
    images = np.concatenate([sets[name][0] for name in names])
    labels = np.concatenate([np.asarray(sets[name][1]) for name in names])
    groups = np.repeat(np.arange(len(names)), [len(sets[name][1]) for name in names])
    kwargs = {"path": path, "images": images, "labels": labels, "groups": groups,
              "max_bytes": max_bytes}  # fmt: skip
    budget = budget if budget is not None else Budget.unlimited()
    limits, left = budget.limits, budget.seconds_left()
    if left <= 0:
        raise SubmissionTimeoutError("no time was left in the per-submission limit to score it")
    seconds = min(limits.model_seconds, left)
    memory = limits.model_memory_bytes
    try:
        result = run_limited(
            MODEL_ACCURACIES, kwargs, memory_bytes=memory, seconds=seconds, what="scoring it"
        )
    except SubmissionTimeoutError:
        raise
    except ChildFailedError as error:
        budget.child_peaks.append(error.peak_bytes)
        raise
    except LimitExceededError as error:
        budget.child_peaks.append(error.peak_bytes)
        if "memory" in str(error):
            raise LimitExceededError(f"{error} (--model-memory-mb)") from None
        if seconds < limits.model_seconds:
            limit = f"{limits.submission_seconds:g} s per-submission limit"
            raise SubmissionTimeoutError(f"scoring it used up the {limit}") from None
        raise LimitExceededError(f"{error} (--model-seconds)") from None
    budget.child_peaks.append(result.peak_bytes)
    return {name: float(value) for name, value in zip(names, result.value, strict=True)}


if __name__ == "__main__":
    _child_main(Path(sys.argv[1]))
