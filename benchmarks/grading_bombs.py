"""Grade issue 14's bomb batch through the real CLI: per-case outcome, peak memory, wall time.

Builds one honest submission and one submission per hostile file (each a zip of
the five executed course notebooks plus ``part5/``, faked as in the tests), then
runs ``python -m cifar_lab grade`` on them in a child process and prints, per
student, the status, the scoring child's peak memory and the reason; then the
grader's own peak resident memory, the largest child's, and the wall time::

    CIFAR10_SOURCE=/work/shared/data/cifar10-jpeg.tgz python benchmarks/grading_bombs.py
    python benchmarks/grading_bombs.py --source synthetic --num-test 200 --model-memory-mb 1536

The cases:

* ``conv400``: a 1.7 MB ``.keras`` of 400 built-in Conv2D layers (4 filters each);
* ``balloon``: a 30 KB ``.keras`` of six UpSampling2D layers (32x32 -> 2048x2048);
* ``config_bomb``: the honest model with 400 MB of spaces in its ``config.json``;
* ``many_cells``: notebook 01 with 300,000 empty markdown cells appended (under 20 MB);
* ``deep_json``: notebook 02 replaced by JSON nested 200,000 deep;
* ``huge_int_results`` / ``huge_int_record``: a 5,000-digit integer in
  ``part5/results.json`` / in a ``lab.record`` payload of notebook 03;
* ``bad_encoding``: notebook 01 saved as Latin-1;
* ``honest``: a clean submission whose claims hold.

The honest model is a small dense network trained briefly on synthetic data; its
claimed accuracy is measured here on the grader's own test set, so it verifies.

Measured (the first command above, default ceilings 4096 MB / 120 s / 300 s; real
CIFAR-10 JPEG archive; shared 2-core AMD EPYC with avx2 avx512f avx512_bf16, no
AMX; TF 2.21; other jobs running on the machine)::

    student          status  child MB  reason
    bad_encoding     damaged      672  01: 01_preparation.ipynb is not UTF-8 text (byte 0xe9
                                       at position 211); save it again as UTF-8
    balloon          flagged     4160  part5: best_model.keras was not scored: scoring it
                                       used 4160 MB, over the 4096 MB memory limit
                                       (--model-memory-mb)
    config_bomb      flagged      622  part5: best_model.keras cannot be loaded in safe mode
                                       or evaluated (ValueError: its config.json is 400.0 MB,
                                       over 16.0 MB)
    conv400          flagged     4099  part5: best_model.keras was not scored: scoring it
                                       used 4099 MB, over the 4096 MB memory limit
                                       (--model-memory-mb)
    deep_json        damaged      672  02: 02_barebones_tensorflow.ipynb nests lists or
                                       objects too deeply to read (over ~1000 levels)
    honest           ok           660  -
    huge_int_record  damaged      672  03: 03_keras_model_subclassing.ipynb holds an integer
                                       with more than 4300 digits
    huge_int_results damaged      660  part5: results.json holds an integer with more than
                                       4300 digits
    many_cells       ok           666  -

    grader peak RSS 241 MB; largest child peak RSS 4160 MB; wall 81 s

Before issue 14 the grader loaded models itself: the Conv2D stack grew it to
22.9 GB until the OOM killer ended it, with no row written, and the 300k-cell
notebook was still being checked after 240 s. The grader's peak is its
``VmHWM`` (``ru_maxrss`` would report the peak of this script, which forks it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the test fixtures build the submissions

PEAK_LINE = re.compile(r"peak memory: grader (\d+) MB, largest child process (\d+) MB")
GRADED_LINE = re.compile(r"graded (\S+): (\w+)(?: \(scoring peak (\d+) MB\))?")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default=os.environ.get("CIFAR10_SOURCE", "synthetic"))
    parser.add_argument("--num-test", type=int, help="test images (default: all the source has)")
    parser.add_argument("--work", help="folder for the batch and report (default: a temp folder)")
    parser.add_argument("--model-memory-mb", type=float, help="passed to grade (default: its own)")
    parser.add_argument("--model-seconds", type=float, help="passed to grade")
    parser.add_argument("--submission-seconds", type=float, help="passed to grade")
    return parser.parse_args()


def _honest_claim(model: Path, source: str, num_test: int | None) -> float:
    """The honest model's accuracy on the test set the grader will use."""
    from cifar_lab.instructor.claims import LazyTestSet, model_accuracy

    images, labels = LazyTestSet(source, num_test).arrays()
    return model_accuracy(model, images, labels, max_bytes=1 << 30)


def build_batch(work: Path, source: str, num_test: int | None) -> tuple[Path, Path]:
    """Write the submissions into ``work/batch``; return (batch folder, release manifest)."""
    import bomb_fixtures as bombs
    from instructor_fixtures import course_source, train_models, write_submission, zip_folder

    from cifar_lab.instructor.release import release

    course = course_source(work / "source")
    manifest = release(work / "release", source_dir=course)
    models = train_models(work / "models")
    claim = _honest_claim(models.good, source, num_test)
    bomb_models = {
        "conv400": bombs.conv_stack_model(work / "models" / "conv400.keras"),
        "balloon": bombs.balloon_model(work / "models" / "balloon.keras"),
        "config_bomb": bombs.config_bomb_model(work / "models" / "cfg.keras", models.good),
    }

    def many_cells(root: Path) -> None:
        path = root / "01_preparation.ipynb"
        bombs.write_compact(path, bombs.many_cells(json.loads(path.read_text())))

    def results_int(root: Path) -> None:
        text = '{"val_accuracy": 0.6, "test_accuracy": ' + bombs.huge_int() + ', "config": {}}'
        (root / "part5" / "results.json").write_text(text)

    damage = {
        "many_cells": many_cells,
        "deep_json": lambda r: (r / "02_barebones_tensorflow.ipynb").write_bytes(
            bombs.deep_json()
        ),
        "huge_int_results": results_int,
        "huge_int_record": lambda r: bombs.add_raw_record(
            r / "03_keras_model_subclassing.ipynb", "x", bombs.huge_int()
        ),
        "bad_encoding": lambda r: bombs.latin1_notebook(r / "01_preparation.ipynb"),
        **{
            name: lambda r, m=path: bombs.replace_model(r, m) for name, path in bomb_models.items()
        },
        "honest": lambda r: None,
    }
    batch = work / "batch"
    batch.mkdir()
    for student, change in damage.items():
        root = write_submission(work / "roots" / student, course, models.good, claim)
        change(root)
        zip_folder(root, batch / f"{student}.zip")
    return batch, manifest


def grade(batch: Path, manifest: Path, out: Path, args: argparse.Namespace) -> tuple:
    """Run the real CLI in a child process; return (its stdout, wall seconds)."""
    command = [sys.executable, "-m", "cifar_lab", "grade", str(batch), "--out", str(out)]
    command += ["--manifest", str(manifest), "--source", args.source]
    command += ["--trust-outputs"]  # the bombs are files to read and models to score
    for flag in ("num_test", "model_memory_mb", "model_seconds", "submission_seconds"):
        if getattr(args, flag) is not None:
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"grade exited {done.returncode}:\n{done.stdout}\n{done.stderr[-3000:]}")
    return done.stdout, seconds


def print_table(stdout: str, report: Path, seconds: float) -> None:
    """The per-case outcome table, then the peaks and the wall time."""
    peaks = {m[1]: m[3] or "-" for m in GRADED_LINE.finditer(stdout)}
    rows = json.loads(report.read_text())
    print(f"\n{'student':<17} {'status':<10} {'child MB':>8}  reason")
    for row in rows:
        reason = "; ".join(row["problems"][:2])
        reason = reason if len(reason) < 150 else reason[:147] + "..."
        child = peaks.get(row["student"], "-")
        print(f"{row['student']:<17} {row['status']:<10} {child:>8}  {reason or '-'}")
    grader, child = PEAK_LINE.search(stdout).groups()
    print(
        f"\ngrader peak RSS {grader} MB; largest child peak RSS {child} MB; wall {seconds:.0f} s"
    )


def main() -> None:
    """Build the batch, grade it, print the table."""
    args = _parse()
    with tempfile.TemporaryDirectory(prefix="grading_bombs_") as temporary:
        work = Path(args.work) if args.work else Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        batch, manifest = build_batch(work, args.source, args.num_test)
        built = time.perf_counter() - started
        print(f"built {len(list(batch.iterdir()))} submissions in {built:.0f} s")
        out = work / "report" / "report.csv"
        stdout, seconds = grade(batch, manifest, out, args)
        print_table(stdout, out.with_suffix(".json"), seconds)


if __name__ == "__main__":
    main()
