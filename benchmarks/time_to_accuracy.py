"""Time to accuracy without convolutions: the recipe ladder in one table and one picture.

Runs each rung of the ladder (``fast``, ``medium``, ``best``, ``long``; ``xl``,
three averaged two-hour networks' worth, only when named in ``--rungs``) through the real command,
``python -m cifar_lab train-best --recipe NAME --precision P --out DIR``, in both
precisions, timing the whole command; or, with ``--read``, reads runs already
saved (each DIR holds train-best's ``config.json`` and this script's
``command.json``). Prints one table (rung, precision, minutes, validation and test
accuracy, the test accuracy without flip TTA, images/s, peak RSS) and writes
``time_to_accuracy.png``: test accuracy against minutes, one line per precision
and CPU class (with or without AVX-512 BF16: a laptop's AVX2-only CPU is the
other machine), with the anchors drawn as horizontal references::

    CIFAR10_SOURCE=... python benchmarks/time_to_accuracy.py --out outputs/ladder
    python benchmarks/time_to_accuracy.py --read --out outputs/ladder

Runs measured earlier are kept in ``benchmarks/ladder_runs.json`` (one row per
whole command: rung, precision, minutes, accuracies, the recipe, date and CPU):
``--record`` adds the finished runs under ``--out`` to it, and the table and the
picture show the newest row of each rung, precision and CPU class from both, so a session
that re-measures one rung keeps the others' measured points.

Record the CPU flags (printed first) next to any number taken from it.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

LADDER = ("fast", "medium", "best", "long", "xl")
HISTORY = Path(__file__).with_name("ladder_runs.json")
PRECISIONS = ("mixed_bfloat16", "float32")
ANCHORS = {  # test accuracy of published or earlier dense networks on CIFAR-10
    "seed student notebook, 56%": 0.56,
    "Lin et al. 2015, 69.6%": 0.696,
    "Lin et al. 2015 + deformations, 78.6%": 0.786,
}


def cpu_flags() -> str:
    """The CPU model and its matrix-unit flags, for the record."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    model = re.search(r"model name\s*:\s*(.*)", text)
    flags = sorted(set(re.findall(r"\b(avx512f|avx512_bf16|amx_bf16|amx_tile|avx2)\b", text)))
    return f"{model.group(1) if model else 'unknown CPU'}; flags: {' '.join(flags)}"


def cpu_class(cpu: str) -> str:
    """``"bf16"`` for a recorded CPU with AVX-512 BF16 or AMX, else ``"avx2"``.

    The two classes are different machines for the ladder: bfloat16 runs about
    twice as fast as float32 on the first and several times slower on the second
    (most laptops), so their rows are shown as separate lines.
    """
    return "bf16" if re.search(r"avx512_bf16|amx_bf16", cpu) else "avx2"


def run_rung(name: str, precision: str, out: Path) -> None:
    """Train one rung through the real command and save its wall time as command.json."""
    command = [sys.executable, "-m", "cifar_lab", "train-best", "--recipe", name]
    command += ["--precision", precision, "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - start
    record = {"command": " ".join(command[1:]), "wall_seconds": wall, "cpu": cpu_flags()}
    (out / "command.json").write_text(json.dumps(record, indent=2))


def read_run(folder: Path) -> dict | None:
    """One table row from a run folder, or None when it holds no finished run."""
    if not (folder / "config.json").is_file():
        return None
    summary = json.loads((folder / "config.json").read_text())
    command = folder / "command.json"
    wall = json.loads(command.read_text())["wall_seconds"] if command.is_file() else None
    other = summary.get("flip_tta_off") or summary.get("flip_tta_on") or {}
    config = summary["config"]
    members = len(summary.get("members", [])) or 1
    recipe = (
        (f"{members} networks averaged, each " if members > 1 else "")
        + f"{config['epochs']} epochs, dropout {config['dropout']}, +-{config['translate']} px, "
        f"weight decay {config['weight_decay']}"
        + (", augment_whitened" if config.get("augment_whitened") else "")
    )
    when = (
        command.stat().st_mtime if command.is_file() else (folder / "config.json").stat().st_mtime
    )
    return {
        "rung": folder.name.split("-")[0],
        "precision": summary["config"]["precision"],
        "minutes": (wall if wall is not None else summary["training_seconds"]) / 60,
        "val": summary["val_accuracy"],
        "test": summary["test_accuracy"],
        "test_other_tta": other.get("test_accuracy"),
        "images_per_second": summary.get("images_per_second"),
        "peak_rss_gb": (summary.get("peak_rss_mb") or 0) / 1024,
        "recipe": recipe,
        "date": time.strftime("%Y-%m-%d", time.gmtime(when)),
        "cpu": json.loads(command.read_text())["cpu"] if command.is_file() else cpu_flags(),
    }


def newest_rows(history: list[dict], runs: list[dict]) -> list[dict]:
    """The newest row of each rung, precision and CPU class; a run under --out beats the file.

    Args:
        history: rows recorded earlier (``ladder_runs.json``), oldest first.
        runs: rows read from the run folders now.

    Returns:
        One row per (rung, precision, :func:`cpu_class`), in ladder order, then
        precision, then CPU class.
    """
    newest: dict[tuple[str, str, str], dict] = {}
    for row in sorted(history, key=lambda r: r["date"]) + runs:
        newest[(row["rung"], row["precision"], cpu_class(row["cpu"]))] = row
    order = {name: i for i, name in enumerate(LADDER)}
    return sorted(
        newest.values(),
        key=lambda r: (order.get(r["rung"], len(LADDER)), r["precision"], cpu_class(r["cpu"])),
    )


def record(history_path: Path, history: list[dict], runs: list[dict]) -> None:
    """Append the runs not yet recorded (same rung, precision, CPU, date and minutes)."""

    def key(row: dict) -> tuple:
        return row["rung"], row["precision"], row["cpu"], row["date"], round(row["minutes"], 2)

    seen = {key(r) for r in history}
    new = [r for r in runs if key(r) not in seen]
    history_path.write_text(json.dumps(history + new, indent=1) + "\n")
    print(f"recorded {len(new)} run(s) in {history_path}")


def print_table(rows: list[dict]) -> None:
    """The ladder as a plain-text table."""
    print(f"{'rung':8} {'precision':15} {'cpu':5} {'min':>6} {'val':>6} {'test':>6} {'no-TTA':>7} "
          f"{'img/s':>7} {'RSS GB':>7}  date        recipe")  # fmt: skip
    for row in rows:
        other = row["test_other_tta"]
        print(
            f"{row['rung']:8} {row['precision']:15} {cpu_class(row['cpu']):5} "
            f"{row['minutes']:6.1f} {row['val']:6.3f} "
            f"{row['test']:6.3f} {other if other is None else f'{other:7.3f}':>7} "
            f"{row['images_per_second'] or 0:7.0f} {row['peak_rss_gb']:7.2f}  {row['date']}  "
            f"{row['recipe']}"
        )


def plot(rows: list[dict], path: Path) -> None:
    """Test accuracy against minutes: a line per precision and CPU class, and the anchors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    # bfloat16 labels above-left of their points, float32 below-right: the lines run close
    offsets = {"mixed_bfloat16": (-12, 8), "float32": (4, -12)}
    names = {"bf16": "CPU with AVX-512 BF16", "avx2": "AVX2-only CPU, as most laptops"}
    for machine in ("bf16", "avx2"):
        for precision in PRECISIONS:
            points = sorted(
                (r["minutes"], r["test"], r["rung"])
                for r in rows
                if r["precision"] == precision and cpu_class(r["cpu"]) == machine
            )
            if not points:
                continue
            style = "o-" if machine == "bf16" else "s--"
            label = f"{precision}, {names[machine]}"
            axes.plot([p[0] for p in points], [p[1] for p in points], style, label=label)
            for minutes, test, rung in points:
                axes.annotate(
                    rung, (minutes, test), textcoords="offset points", xytext=offsets[precision]
                )
    for label, value in ANCHORS.items():
        axes.axhline(value, linestyle=":", color="grey")
        axes.annotate(
            label,
            (0.01, value),
            xycoords=("axes fraction", "data"),
            xytext=(0, 2),
            textcoords="offset points",
            fontsize=8,
            color="grey",
        )
    axes.set(
        xscale="log",
        xlabel="wall minutes (log scale)",
        ylabel="test accuracy",
        title="Dense networks on CIFAR-10: time to accuracy",
    )
    ticks = [
        t for t in (1, 2, 3, 5, 10, 20, 45, 60, 120) if t <= max(r["minutes"] for r in rows) * 1.5
    ]
    axes.set_xticks(ticks, [str(t) for t in ticks])
    axes.minorticks_off()
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"wrote {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/ladder"), help="run folders")
    parser.add_argument("--read", action="store_true", help="only read saved runs")
    parser.add_argument(
        "--rungs",
        nargs="+",
        default=[rung for rung in LADDER if rung != "xl"],
        choices=LADDER,
        help="rungs to run (default: all but xl, which takes two hours on a bf16 CPU)",
    )
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--history", type=Path, default=HISTORY, help="runs measured earlier")
    parser.add_argument("--record", action="store_true", help="add the runs to --history")
    args = parser.parse_args()
    print(cpu_flags())
    if not args.read:
        from cifar_lab.tuning.recipes import RECIPES

        for name in [n for n in args.rungs if n in RECIPES]:
            for precision in args.precisions:
                run_rung(name, precision, args.out / f"{name}-{precision}")
    folders = sorted(p for p in args.out.glob("*-*") if p.is_dir()) if args.out.is_dir() else []
    runs = [row for row in map(read_run, folders) if row is not None]
    history = json.loads(args.history.read_text()) if args.history.is_file() else []
    if args.record:
        record(args.history, history, runs)
    rows = newest_rows(history, runs)
    if not rows:
        print(f"no finished runs under {args.out} and none in {args.history}")
        return 1
    print_table(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(rows, args.out / "time_to_accuracy.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
