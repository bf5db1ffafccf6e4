"""Grade K honest submissions in one process and on Dask workers: seconds per student.

Builds K honest submissions (the five course notebooks, executed outputs faked as in
the tests, and each student's own ``part5/best_model.keras``: the same small model
saved as a byte-different file, so that each is scored as a class's would be), then
runs the real CLI, ``python -m cifar_lab grade``, once per entry of ``--workers``
(``1``: one process, as without the ``cluster`` extra; ``N`` > 1: ``grade --workers
N``), and prints per run the wall time, the seconds per student, the students per
hour, and the hours a class of 300 takes on this machine; then the CPU::

    python benchmarks/grading_scale.py --students 8 --source synthetic --num-test 500
    python benchmarks/grading_scale.py --students 4 --rerun --rerun-profile quick

``--rerun`` re-executes every submission (the cost that matters for a class);
``--trust-outputs`` reads the saved outputs only. The benchmark passes whichever flag
this ``grade`` understands (a ``grade`` that re-executes by default gets
``--trust-outputs`` for the static read). The wall time includes starting the grader
and the Dask cluster, so a batch of K students measures what an instructor waits.
The notebooks re-executed under ``--rerun`` are the course's solutions; their saved
outputs are the tests' placeholders, which a re-run does not reproduce, so expect
``flagged`` rows there: the time is what this measures.

Measured on the project's shared 2-core AMD EPYC (avx2, TF 2.21) at a load average
of about 10, real CIFAR-10 (docs/cluster.md, "Cost", has both)::

    4 honest submissions, static               wall s  s/student  students/h
    one process                                 143.3       35.8         100
    --workers 2                                 105.0       26.2         137
    1 honest submission, --rerun (quick)       1528.9     1528.9           2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the test fixtures build the submissions
CLASS_SIZE = 300
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=6, help="K, default: %(default)s")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="1: one process; N: --workers N"
    )
    parser.add_argument("--source", default=os.environ.get("CIFAR10_SOURCE", "synthetic"))
    parser.add_argument("--num-test", type=int, help="test images (default: all the source has)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--rerun", action="store_true", help="re-execute every submission")
    mode.add_argument("--trust-outputs", action="store_true", help="static read only")
    parser.add_argument("--rerun-profile", default="quick", help="with --rerun: %(default)s")
    parser.add_argument("--work", help="folder for the batch and reports (default: a temp one)")
    return parser.parse_args()


def grade_flags(rerun: bool) -> list[str]:
    """The ``grade`` flags that ask for re-execution (``rerun``) or the static read."""
    from cifar_lab.__main__ import build_parser, command_flags

    flags = set(command_flags(build_parser(), "grade").values())
    if "--trust-outputs" in flags:  # re-execution is grade's default
        return [] if rerun else ["--trust-outputs"]
    return ["--rerun"] if rerun else []


def build_batch(work: Path, students: int, source: str, num_test: int | None) -> tuple:
    """Write K honest zips into ``work/batch``; return (batch folder, release manifest)."""
    from instructor_fixtures import (
        course_source,
        distinct_model,
        train_models,
        write_submission,
        zip_folder,
    )

    from cifar_lab.instructor.claims import LazyTestSet, model_accuracy
    from cifar_lab.instructor.release import release

    course = course_source(work / "source")
    manifest = release(work / "release", source_dir=course)
    models = train_models(work / "models")
    images, labels = LazyTestSet(source, num_test).arrays()
    claim = model_accuracy(models.good, images, labels, max_bytes=1 << 30)  # so it verifies
    batch = work / "batch"
    batch.mkdir()
    for number in range(students):
        student = f"student{number:03d}"
        model = distinct_model(models.good, work / "models" / f"{student}.keras", student)
        root = write_submission(work / "roots" / student, course, model, claim)
        zip_folder(root, batch / f"{student}.zip")
    return batch, manifest


def grade(batch: Path, manifest: Path, out: Path, workers: int, args) -> float:
    """Run the real CLI in a child process; return the wall seconds."""
    command = [sys.executable, "-m", "cifar_lab", "grade", str(batch), "--out", str(out)]
    command += ["--manifest", str(manifest), "--source", args.source, "--no-feedback"]
    command += grade_flags(args.rerun)
    if args.rerun:
        command += ["--rerun-profile", args.rerun_profile]
    if args.num_test is not None:
        command += ["--num-test", str(args.num_test)]
    if workers > 1:
        command += ["--workers", str(workers)]
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"grade exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds


def cpu_line() -> str:
    """The CPU model, cores, the flags that matter to TensorFlow, and the load."""
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    have = " ".join(flag for flag in CPU_FLAGS if flag in flags) or "none of " + "/".join(
        CPU_FLAGS
    )
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"CPU: {model}, {os.cpu_count()} cores, flags {have}; load average now {load}"


def main() -> None:
    """Build the batch, grade it with each worker count, print the table."""
    args = _parse()
    with tempfile.TemporaryDirectory(prefix="grading_scale_") as temporary:
        work = Path(args.work) if args.work else Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        batch, manifest = build_batch(work, args.students, args.source, args.num_test)
        results = []
        for workers in args.workers:
            out = work / f"report_{workers}" / "report.csv"
            seconds = grade(batch, manifest, out, workers, args)
            rows = json.loads(out.with_suffix(".json").read_text())
            statuses = sorted({row["status"] for row in rows})
            task = sum(float(row["grading_seconds"] or 0) for row in rows) / len(rows)
            results.append((workers, seconds, task, statuses))
    mode = "re-executed (--rerun, profile " + args.rerun_profile + ")" if args.rerun else "static"
    print(f"\n{args.students} honest submissions, {mode}, source {args.source}")
    header = f"{'grader':<14} {'wall s':>7} {'s/student':>9} {'students/h':>10} "
    print(header + f"{'task s':>7} {f'{CLASS_SIZE} students':>13}  statuses")
    for workers, seconds, task, statuses in results:
        per_student = seconds / args.students
        name = "one process" if workers == 1 else f"--workers {workers}"
        hours = CLASS_SIZE * per_student / 3600
        print(
            f"{name:<14} {seconds:>7.1f} {per_student:>9.1f} {3600 / per_student:>10.0f} "
            f"{task:>7.1f} {hours:>11.1f} h  {','.join(statuses)}"
        )
    print("(task s: mean grading_seconds of a row, measured inside the grader or worker)")
    print(cpu_line())


if __name__ == "__main__":
    main()
