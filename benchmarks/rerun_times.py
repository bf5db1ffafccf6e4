"""Re-execute the five course notebooks as ``grade`` does, kernels started ahead or not.

Runs :func:`cifar_lab.instructor.rerun.rerun_notebooks` (the sandboxed runner, the
grader's checks and probes) on the checkout's notebooks, alternately with
``start_ahead`` on (each notebook's kernel started, and TensorFlow imported, while
the previous notebook runs) and off (each kernel started in its turn), and prints per
run the wall seconds, the CPU seconds of the runner's process tree (user + sys, from
``getrusage(RUSAGE_CHILDREN)``: bubblewrap's outer process does not wait for the cage's
init, so this process becomes a child subreaper and reaps what the cage leaves), the
re-run's peak memory (summed over its processes,
as its memory ceiling counts it) and each notebook's status; then the ratios::

    CIFAR10_SOURCE=/path/cifar10.tgz python benchmarks/rerun_times.py [--rounds 1]

Starting ahead saves wall time, not CPU: on a machine that other jobs load, only
the CPU column and the peak memory mean much; compare the wall columns on an idle one.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import resource
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
MEGABYTE = 1 << 20
PR_SET_CHILD_SUBREAPER = 36


def one_run(folder: Path, names: list[str], start_ahead: bool, source: str | None) -> tuple:
    """(wall s, CPU s, peak MB, {notebook: status}, problem) of one re-execution."""
    from cifar_lab.instructor.rerun import RerunSettings, rerun_notebooks

    settings = RerunSettings(profile="quick", source=source, start_ahead=start_ahead)
    budget = SimpleNamespace(child_peaks=[])  # rerun_notebooks adds the re-run's peak here
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    records, problem = rerun_notebooks(folder, names, settings, budget)
    wall = time.perf_counter() - started
    with contextlib.suppress(ChildProcessError):  # the orphans below bwrap, reaped here
        while True:
            os.waitpid(-1, 0)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    statuses = {name: records.get(name, {}).get("status", "missing") for name in names}
    return wall, cpu, max(budget.child_peaks, default=0) / MEGABYTE, statuses, problem


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1, help="pairs of runs (default 1)")
    parser.add_argument("--source", default=os.environ.get("CIFAR10_SOURCE"))
    parser.add_argument("prefixes", nargs="*", help="notebook name prefixes (default: all)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    with contextlib.suppress(OSError, AttributeError):  # Linux: orphans of the cage come here
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    from cifar_lab.instructor.notebooks import course_notebooks

    paths = course_notebooks(ROOT / "notebooks")
    if args.prefixes:
        paths = [p for p in paths if any(p.name.startswith(x) for x in args.prefixes)]
    names = [path.stem for path in paths]
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    runs: dict[bool, list[tuple]] = {True: [], False: []}
    for round_ in range(args.rounds):
        for ahead in (False, True) if round_ % 2 == 0 else (True, False):
            wall, cpu, peak, statuses, problem = one_run(
                ROOT / "notebooks", names, ahead, args.source
            )
            runs[ahead].append((wall, cpu, peak))
            label = "ahead" if ahead else "in turn"
            failed = [n[:2] for n, s in statuses.items() if s != "ok"]
            print(
                f"{label:<8} wall {wall:7.1f} s  cpu {cpu:7.1f} s  peak {peak:6.0f} MB  "
                f"failed {failed or '-'}  {problem or ''}",
                flush=True,
            )
    mean = {
        key: [sum(col) / len(col) for col in zip(*rows, strict=True)] for key, rows in runs.items()
    }
    (wall_a, cpu_a, peak_a), (wall_t, cpu_t, peak_t) = mean[True], mean[False]
    print(
        f"ahead / in turn: wall {wall_a / wall_t:.3f}, cpu {cpu_a / cpu_t:.3f}, "
        f"peak memory {peak_a / peak_t:.3f}"
    )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
