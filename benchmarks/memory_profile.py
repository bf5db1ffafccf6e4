"""Resident memory of a Part V grid sweep: RSS after every trial, peak, and growth.

Runs a grid of trials (5 architectures x 3 activations by default, each on a
5,000-image subset of 10,000 real training images, 1 epoch, Adam: notebook 05's
stage 1 in small) in one process through :func:`cifar_lab.tuning.sweeps.run_sweep` with an
in-memory Optuna storage, and prints the resident set size (``VmRSS``) after
each trial, the peak (``VmHWM``), and the growth from trial 3 to the last. Each
variant runs in its own child process, so each starts from a clean RSS::

    CIFAR10_SOURCE=/work/shared/data/cifar10-jpeg.tgz \\
        python benchmarks/memory_profile.py --variant baseline old
    python benchmarks/memory_profile.py --variant old arena2 trim jemalloc --diagnose

Measured (TF 2.21, Keras 3.15, shared 2-core CPU with avx512f avx512_bf16, no AMX;
MB; ``--variant ... --diagnose`` adds its gc scans to the times)::

    variant     RSS@3  RSS@15  growth 3->15  peak   live after trial 15
    baseline      935    1132           196  1230   0 graphs, 0 custom gradients, 0 batches
    old          1143    2933          1790  2944   366 graphs, 30 custom gradients,
                                                    15 batches holding 882 MB of images
    no_forget     974    2044          1071  2113   366 graphs (the data is released)
    no_release    931    1138           207  1236   0 graphs (clear_session frees the data)
    arena2       1158    2931          1772  2941   as old
    trim         1137    2918          1781  2939   as old
    jemalloc     1158    2932          1774  2967   as old

No allocator setting changes the growth: it is live memory, kept by the
``CustomGradient-<n>`` functions that TensorFlow registers while tracing each
train step (see :mod:`cifar_lab.graph_memory`). The remaining ~200 MB
from trial 3 to 15 is reached once the largest network has trained and stays.

Variants:

* ``baseline``: the library as it is;
* ``old``: the library with the issue #11 fix switched off (no
  :func:`~cifar_lab.graph_memory.forget_traced_gradients`, no
  ``AugmentedBatches.release``), i.e. the code before the fix;
* ``no_forget`` / ``no_release``: only one of the two halves of the fix switched off;
* ``arena2``, ``trim``, ``jemalloc``, ``tcmalloc``: the ``old`` code with
  ``MALLOC_ARENA_MAX=2``, with glibc's ``malloc_trim(0)`` after every trial, or with
  that allocator ``LD_PRELOAD``-ed (when libjemalloc2 / libtcmalloc-minimal4 is
  installed): allocator candidates for the growth.

``--diagnose`` adds, after every trial, counts of live objects that could hold
memory across trials: Keras models, ``TrainedMLP``, traced TensorFlow graphs
(``FuncGraph``), ``AugmentedBatches`` and the MB of images they hold, TensorFlow's
registered ``tf.custom_gradient`` functions and its live ``py_func`` callbacks
(one per ``tf.data.Dataset.from_generator`` function).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ARCHITECTURES = ("512", "1024", "1024-512", "2048-1024", "2048-1024-512")
ACTIVATIONS = ("relu", "gelu", "elu")
ALLOCATORS = {
    "jemalloc": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "tcmalloc": "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
}
VARIANTS = ("baseline", "old", "no_forget", "no_release", "arena2", "trim", "jemalloc", "tcmalloc")
_RESULT = "MEMORY_PROFILE_RESULT "


def status_mb(field: str, pid: int | str = "self") -> float:
    """A ``kB`` field of ``/proc/<pid>/status`` (e.g. ``VmRSS``, ``VmHWM``) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def cpu_flags() -> str:
    """The bfloat16/AMX-related CPU flags of the first processor, or ``none``."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])  # fmt: skip
    wanted = [flag for flag in flags if flag.startswith(("avx512_bf16", "amx", "avx512f"))]
    return " ".join(wanted) or "none"


def live_objects() -> dict[str, float]:
    """Counts of live objects that could keep a trial's memory (after a full gc)."""
    import keras
    from tensorflow.python.framework import func_graph
    from tensorflow.python.ops import script_ops

    from cifar_lab.graph_memory import traced_gradient_count
    from cifar_lab.tuning.augment import AugmentedBatches
    from cifar_lab.tuning.train import TrainedMLP

    gc.collect()
    counts = {"models": 0, "trained": 0, "graphs": 0, "batches": 0, "batch_mb": 0.0}
    for obj in gc.get_objects():
        if isinstance(obj, keras.Model):
            counts["models"] += 1
        elif isinstance(obj, TrainedMLP):
            counts["trained"] += 1
        elif isinstance(obj, func_graph.FuncGraph):
            counts["graphs"] += 1
        elif isinstance(obj, AugmentedBatches):
            counts["batches"] += 1
            counts["batch_mb"] += (obj.X.nbytes + obj.y.nbytes) / 2**20
    counts["custom_gradients"] = traced_gradient_count()
    counts["py_funcs"] = script_ops._py_funcs.size()
    return counts


def _switch_off_fix(variant: str) -> None:
    """Undo the issue #11 fix (or half of it) for the comparison variants."""
    import contextlib

    from cifar_lab.tuning import train
    from cifar_lab.tuning.augment import AugmentedBatches

    if variant in ("old", "no_forget", "arena2", "trim", *ALLOCATORS):
        train.forget_traced_gradients = contextlib.nullcontext
    if variant in ("old", "no_release", "arena2", "trim", *ALLOCATORS):
        AugmentedBatches.release = lambda self: None


def _load(train: int, source: str | None):
    import cifar_lab as lab

    data = lab.load_cifar10(train, 1_000, 0, source=source, verbose=False)
    return data.X_train, data.y_train, data.X_val, data.y_val


def child(args: argparse.Namespace) -> None:
    """Run the sweep in this process and print one line per trial and a JSON result."""
    import optuna

    from cifar_lab.tuning.config import MLPConfig
    from cifar_lab.tuning.sweeps import SweepSpec, run_sweep
    from cifar_lab.tuning.train import MLPObjective

    _switch_off_fix(args.variant)
    trim = ctypes.CDLL("libc.so.6").malloc_trim if args.variant == "trim" else None
    X_train, y_train, X_val, y_val = _load(args.pool, args.source)
    base = MLPConfig(optimizer="adam", epochs=args.epochs, batch_size=256, num_train=args.train)
    objective = MLPObjective(base, X_train, y_train, X_val, y_val)
    architectures = list(ARCHITECTURES[: args.architectures])
    spec = SweepSpec(
        "memory_profile",
        {"hidden_sizes": architectures, "activation": list(ACTIVATIONS)},
        sampler="grid",
        pruner="none",
    )
    rss, seconds, diagnostics = [], [], []
    start = time.perf_counter()

    def after_trial(study, trial) -> None:
        if trim is not None:
            gc.collect()
            trim(0)
        rss.append(status_mb("VmRSS"))
        seconds.append(trial.user_attrs.get("wall_time_s", 0.0))
        extra = ""
        if args.diagnose:
            diagnostics.append(live_objects())
            extra = "  " + " ".join(f"{k}={v:.0f}" for k, v in diagnostics[-1].items())
        print(
            f"[{args.variant}] trial {trial.number + 1:>2} {trial.params['hidden_sizes']:>13} "
            f"{trial.params['activation']:<5} {seconds[-1]:5.1f} s  RSS {rss[-1]:7.0f} MB{extra}",
            flush=True,
        )

    lab_sweeps = sys.modules["cifar_lab.tuning.sweeps"]
    original = lab_sweeps._trial_printer
    lab_sweeps._trial_printer = lambda spec: after_trial  # one line per trial, ours
    try:
        run_sweep(spec, objective, storage=optuna.storages.InMemoryStorage())
    finally:
        lab_sweeps._trial_printer = original
    result = {
        "variant": args.variant,
        "rss_mb": rss,
        "trial_s": seconds,
        "peak_mb": status_mb("VmHWM"),
        "wall_s": time.perf_counter() - start,
        "diagnostics": diagnostics,
    }
    print(_RESULT + json.dumps(result), flush=True)


def _growth(rss: list[float]) -> tuple[float, float]:
    """(RSS after the last trial - after trial 3, largest RSS after any trial k >= 3 - trial 3)."""
    if len(rss) < 3:
        return float("nan"), float("nan")
    return rss[-1] - rss[2], max(rss[2:]) - rss[2]


def parent(args: argparse.Namespace) -> None:
    print(f"CPU flags: {cpu_flags()}", flush=True)
    results = []
    for variant in args.variant:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        if variant == "arena2":
            env["MALLOC_ARENA_MAX"] = "2"
        if variant in ALLOCATORS:
            if not Path(ALLOCATORS[variant]).exists():
                print(f"[{variant}] skipped: {ALLOCATORS[variant]} is not installed", flush=True)
                continue
            env["LD_PRELOAD"] = ALLOCATORS[variant]
        command = [sys.executable, __file__, "--child", "--variant", variant, *_shared(args)]
        with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as child_:
            for line in child_.stdout:  # stream the per-trial lines as they come
                if line.startswith(_RESULT):
                    results.append(json.loads(line[len(_RESULT) :]))
                else:
                    print(line, end="", flush=True)
        if child_.returncode != 0:
            print(f"[{variant}] failed with exit code {child_.returncode}", flush=True)
    print(f"\nCPU flags: {cpu_flags()}")
    print(f"{'variant':<10}{'trials':>7}{'RSS@3':>9}{'RSS@last':>10}{'growth 3->last':>16}"
          f"{'max growth':>12}{'peak':>8}{'s/trial':>9}{'wall':>7}")  # fmt: skip
    for result in results:
        rss = result["rss_mb"]
        growth, worst = _growth(rss)
        per_trial = sum(result["trial_s"]) / max(len(result["trial_s"]), 1)
        print(
            f"{result['variant']:<10}{len(rss):>7}{rss[2] if len(rss) > 2 else 0:>7.0f}MB"
            f"{rss[-1]:>8.0f}MB{growth:>14.0f}MB{worst:>10.0f}MB{result['peak_mb']:>6.0f}MB"
            f"{per_trial:>8.1f}s{result['wall_s']:>6.0f}s"
        )


def _shared(args: argparse.Namespace) -> list[str]:
    shared = ["--train", str(args.train), "--pool", str(args.pool), "--epochs", str(args.epochs)]
    shared += ["--architectures", str(args.architectures)]
    if args.source:
        shared += ["--source", args.source]
    return shared + (["--diagnose"] if args.diagnose else [])


def main(argv: list[str] | None = None) -> None:
    """Parse the command line; the parent runs each variant as a child process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", nargs="+", choices=VARIANTS, default=["baseline"])
    parser.add_argument("--train", type=int, default=5_000, help="training images per trial")
    parser.add_argument(
        "--pool", type=int, default=10_000, help="images loaded; trials copy --train of them"
    )
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument(
        "--architectures",
        type=int,
        default=len(ARCHITECTURES),
        help="use the first N (x 3 trials)",
    )
    parser.add_argument("--source", default=os.environ.get("CIFAR10_SOURCE"))
    parser.add_argument("--diagnose", action="store_true", help="count live objects per trial")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.variant = args.variant[0]
        child(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
