"""Wall and CPU seconds of executing the five course notebooks in one profile.

Each notebook runs top to bottom in its own child process (nbclient and one
kernel, as ``grade --rerun`` runs a submission), in a fresh folder, with the
decoded-data cache warmed once beforehand (the grader re-executes with a warm
cache). For each notebook it prints the wall time and the CPU time (user + sys
of the child and the kernel it started, from ``getrusage(RUSAGE_CHILDREN)``),
then the totals: on a machine that other jobs load, CPU time is the steady
number, and an idle machine with C cores needs at least CPU / C seconds.
Usage::

    CIFAR10_SOURCE=/path/cifar10.tgz python benchmarks/notebook_times.py \\
        [--profile quick] [--cells 5] [--keep DIR] [01 04 ...]

``--cells K`` also lists each notebook's K slowest cells (nbclient's timings).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CELL_TIMEOUT = 3600
# the CPU features that decide how fast TensorFlow's matrix products run
FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def cpu_description() -> str:
    """Model name, core count and the vector flags TensorFlow can use, from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{os.cpu_count()} cores (no /proc/cpuinfo)"
    model = next(
        (ln.split(":", 1)[1].strip() for ln in text.splitlines() if "model name" in ln), "?"
    )
    flags = next(
        (ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []
    )
    present = [flag for flag in FLAGS if flag in flags]
    return (
        f"{model}; {os.cpu_count()} cores; flags: {' '.join(present) or 'none of ' + str(FLAGS)}"
    )


def execute_one(path: Path, folder: Path) -> None:
    """Execute ``path`` in ``folder`` (this process is the timed child); save the copy."""
    import nbformat

    from cifar_lab.instructor.notebooks import notebook_client

    notebook = nbformat.read(path, as_version=4)
    notebook_client(notebook, folder, CELL_TIMEOUT).execute()
    nbformat.write(notebook, folder / path.name)


def slowest_cells(path: Path, count: int) -> list[tuple[float, int, str]]:
    """(seconds, index, first line) of the ``count`` slowest code cells of an executed copy."""
    import nbformat

    found = []
    for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
        timing = cell.get("metadata", {}).get("execution", {})
        begin, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if cell.cell_type == "code" and begin and end:
            seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(begin)).total_seconds()
            found.append((seconds, index, cell.source.strip().splitlines()[0][:70]))
    return sorted(found, reverse=True)[:count]


def timed_child(arguments: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Run ``python notebook_times.py ARGUMENTS``; return (wall s, CPU s, exit status)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    status = subprocess.run([sys.executable, __file__, *arguments], env=env).returncode
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefixes", nargs="*", help="notebook name prefixes (default: all five)")
    parser.add_argument("--profile", default="quick", help="CIFAR_LAB_PROFILE (default quick)")
    parser.add_argument("--cells", type=int, default=0, help="list the K slowest cells")
    parser.add_argument("--keep", type=Path, help="folder for the runs (default: a temporary one)")
    parser.add_argument(
        "--execute", nargs=2, metavar=("NOTEBOOK", "FOLDER"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.execute:
        execute_one(Path(args.execute[0]), Path(args.execute[1]))
        return 0

    paths = sorted(NOTEBOOKS.glob("0*.ipynb"))
    if args.prefixes:
        paths = [p for p in paths if any(p.name.startswith(x) for x in args.prefixes)]
    base = args.keep or Path(tempfile.mkdtemp(prefix="notebook_times-"))
    env = {
        **os.environ,
        "CIFAR_LAB_PROFILE": args.profile,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "CIFAR_LAB_CACHE": str(base / "cache"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    print(f"CPU: {cpu_description()}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"profile {args.profile}; CIFAR10_SOURCE={env.get('CIFAR10_SOURCE', '(not set)')}")
    warm = "import cifar_lab as lab; lab.load_profile_data(lab.get_profile())"
    subprocess.run([sys.executable, "-c", warm], env=env, check=True, capture_output=True)

    rows, failed = [], False
    for path in paths:
        folder = base / path.stem
        folder.mkdir(parents=True, exist_ok=True)
        wall, cpu, status = timed_child(["--execute", str(path), str(folder)], env)
        failed |= status != 0
        rows.append((path.stem, wall, cpu, status))
        verdict = "FAILED" if status else "ok"
        print(f"{path.stem:<36} wall {wall:7.1f} s  cpu {cpu:7.1f} s  {verdict}", flush=True)
        if args.cells and not status:
            for seconds, index, line in slowest_cells(folder / path.name, args.cells):
                print(f"    cell {index:>3} {seconds:6.1f} s  {line}")
    wall, cpu = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{'total':<36} wall {wall:7.1f} s  cpu {cpu:7.1f} s")
    print(
        f"2 idle cores need at least {cpu / 2:.0f} s (CPU / 2); load average after: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        json.dumps(
            {
                "profile": args.profile,
                "notebooks": {
                    r[0]: {"wall_s": round(r[1], 1), "cpu_s": round(r[2], 1), "ok": not r[3]}
                    for r in rows
                },
            }
        )
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
