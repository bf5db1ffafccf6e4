"""benchmarks/time_to_accuracy.py: recorded ladder runs merge with new ones, newest first."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "time_to_accuracy.py"
FIELDS = {"rung", "precision", "minutes", "val", "test", "test_other_tta", "images_per_second",
          "peak_rss_gb", "recipe", "date", "cpu"}  # fmt: skip


@pytest.fixture(scope="module")
def ladder():
    spec = importlib.util.spec_from_file_location("time_to_accuracy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BF16_CPU = "AMD EPYC; flags: avx2 avx512_bf16 avx512f"


def row(rung, precision="mixed_bfloat16", date="2026-11-29", minutes=1.0, test=0.5, cpu=BF16_CPU):
    return {"rung": rung, "precision": precision, "minutes": minutes, "val": test, "test": test,
            "test_other_tta": None, "images_per_second": None, "peak_rss_gb": 1.0,
            "recipe": "r", "date": date, "cpu": cpu}  # fmt: skip


def test_the_newest_row_of_each_rung_and_precision_is_shown_in_ladder_order(ladder):
    history = [row("long", date="2026-12-01", test=0.7), row("fast", test=0.6),
               row("long", date="2026-11-01", test=0.1), row("fast", "float32")]  # fmt: skip
    runs = [row("fast", date="2026-11-01", test=0.9)]  # a run under --out beats the file
    shown = ladder.newest_rows(history, runs)
    assert [(r["rung"], r["precision"]) for r in shown] == [
        ("fast", "float32"),
        ("fast", "mixed_bfloat16"),
        ("long", "mixed_bfloat16"),
    ]
    assert [r["test"] for r in shown] == [0.5, 0.9, 0.7]


def test_a_laptop_class_cpu_is_its_own_line(ladder, tmp_path):
    assert ladder.cpu_class(BF16_CPU) == "bf16"
    assert ladder.cpu_class("Intel Core i7; flags: avx2") == "avx2"
    assert ladder.cpu_class("Xeon; flags: amx_bf16 amx_tile avx2 avx512f") == "bf16"
    history = [row("fast", "float32", test=0.6), row("fast", "float32", "2026-12-05", 3.0, 0.62,
               cpu="AMD EPYC; flags: avx2")]  # fmt: skip
    shown = ladder.newest_rows(history, [])
    # the newer AVX2 run does not replace the bf16 machine's float32 row
    assert [(r["minutes"], ladder.cpu_class(r["cpu"])) for r in shown] == [
        (3.0, "avx2"),
        (1.0, "bf16"),
    ]
    ladder.plot(shown, tmp_path / "ladder.png")
    assert (tmp_path / "ladder.png").stat().st_size > 0


def test_record_appends_each_run_once(ladder, tmp_path, capsys):
    path = tmp_path / "runs.json"
    history = [row("fast")]
    ladder.record(path, history, [row("fast"), row("long", minutes=40.0)])
    saved = json.loads(path.read_text())
    assert saved == [row("fast"), row("long", minutes=40.0)]
    assert "recorded 1 run(s)" in capsys.readouterr().out


def test_a_run_folder_becomes_a_row(ladder, tmp_path):
    folder = tmp_path / "fast-mixed_bfloat16"
    folder.mkdir()
    config = {"epochs": 14, "dropout": 0.0, "translate": 2, "weight_decay": 1e-4,
              "augment_whitened": True, "precision": "mixed_bfloat16"}  # fmt: skip
    summary = {"config": config, "val_accuracy": 0.63, "test_accuracy": 0.62,
               "flip_tta_off": {"test_accuracy": 0.61}, "training_seconds": 80.0,
               "images_per_second": 9000.0, "peak_rss_mb": 2048}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(summary))
    (folder / "command.json").write_text(json.dumps({"wall_seconds": 96.0, "cpu": "EPYC"}))
    found = ladder.read_run(folder)
    assert set(found) == FIELDS
    assert found["minutes"] == pytest.approx(1.6) and found["test_other_tta"] == 0.61
    assert "14 epochs" in found["recipe"] and "augment_whitened" in found["recipe"]
    assert found["cpu"] == "EPYC" and found["peak_rss_gb"] == 2.0
    assert "networks" not in found["recipe"]
    summary["members"] = [{"seed": 0}, {"seed": 1}, {"seed": 2}]  # an ensemble rung
    (folder / "config.json").write_text(json.dumps(summary))
    assert ladder.read_run(folder)["recipe"].startswith("3 networks averaged, each 14 epochs")


def test_the_recorded_runs_are_well_formed(ladder):
    rows = json.loads(ladder.HISTORY.read_text())
    assert rows and all(set(r) == FIELDS for r in rows)
    assert all(r["rung"] in ladder.LADDER and r["precision"] in ladder.PRECISIONS for r in rows)
    assert all(0 < r["test"] < 1 and 0 < r["val"] < 1 and r["minutes"] > 0 for r in rows)
