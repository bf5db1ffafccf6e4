"""``grade --config grading.toml`` and ``grade --write-config``: grade's options in a file.

The file's values become the options' defaults, so the command line overrides
them; ``--write-config`` writes every option with its default (read from the
settings classes, through the parser) and its help as a comment. Errors in a
file are one line naming the key, through the real command.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cifar_lab.__main__ import build_parser
from cifar_lab.instructor.cli import (
    apply_grade_config,
    config_text,
    configurable_actions,
    grade_settings,
    settle_config,
)
from cifar_lab.instructor.grading import GradeSettings
from cifar_lab.instructor.rerun import RerunSettings

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same reader, as a package
    import tomli as tomllib


def parse(argv: list[str]):
    """Parse ``argv`` as ``main`` does: the file first, then the command line over it."""
    parser = build_parser()
    from_file = apply_grade_config(parser, argv)
    args = parser.parse_args(argv)
    settle_config(args, parser, from_file)
    return args


def write(tmp_path, text: str):
    path = tmp_path / "grading.toml"
    path.write_text(text)
    return str(path)


def cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cifar_lab", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def grade_parser():
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices["grade"]


def test_written_config_holds_every_option_and_reads_back_as_the_defaults(tmp_path):
    result = cli("grade", "--write-config", "grading.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "wrote grading.toml" in result.stdout
    text = (tmp_path / "grading.toml").read_text()
    table = tomllib.loads(text)
    keys = configurable_actions(grade_parser())
    assert {"cell-timeout", "rerun-memory-mb", "workers", "out", "submissions"} <= set(keys)
    lines = text.splitlines()
    for key in keys:  # each option once, active or (no default: a path to give) commented
        at = [i for i, line in enumerate(lines) if line.lstrip("# ").startswith(f"{key} = ")]
        assert len(at) == 1, key
        assert lines[at[0] - 1].startswith("# "), f"{key} has no comment above it"
    assert table["cell-timeout"] == RerunSettings().cell_timeout
    assert table["tolerance"] == GradeSettings().tolerance
    assert "source" not in table and "# source = " in text  # no default: commented out
    # the written defaults read back as the settings the package defaults to
    args = parse(["grade", "subs", "--out", "r.csv", "--config", str(tmp_path / "grading.toml")])
    assert grade_settings(args, None) == GradeSettings()
    # and it never overwrites a file
    again = cli("grade", "--write-config", "grading.toml", cwd=tmp_path)
    assert again.returncode == 2 and "grading.toml exists" in again.stderr
    assert (tmp_path / "grading.toml").read_text() == text


def test_config_values_are_used_and_the_command_line_overrides_them(tmp_path):
    config = write(
        tmp_path,
        'submissions = "round1"\nout = "round1/report.csv"\ncell-timeout = 600\n'
        'rerun-memory-mb = 2048\naccept-profile = ["quick"]\ntrust-outputs = true\n'
        "workers = 2\n",
    )
    args = parse(["grade", "--config", config])  # submissions and --out from the file
    assert (args.submissions, args.out) == ("round1", "round1/report.csv")
    assert args.cell_timeout == 600 and args.rerun_memory_mb == 2048.0
    assert args.accept_profile == ["quick"] and args.trust_outputs and args.workers == 2
    default = RerunSettings().cell_timeout
    args = parse(
        ["grade", "round2", "--cell-timeout", str(default), "--config", config,
         "--accept-profile", "full", "--scheduler", "tcp://h:8786"]
    )  # fmt: skip
    assert args.submissions == "round2" and args.out == "round1/report.csv"
    assert args.cell_timeout == default  # given on the command line, even as the default
    assert args.accept_profile == ["full"]  # the command line's list replaces the file's
    assert (args.scheduler, args.workers) == ("tcp://h:8786", None)  # they exclude each other


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cell-timout = 60\n", "unknown key cell-timout; did you mean cell-timeout?"),
        ("cell-timeout = -5\n", "cell-timeout = -5: must be > 0"),
        ('rerun-profile = "fast"\n', "choose one of full, quick"),
        ('trust-outputs = "yes"\n', "trust-outputs is a flag"),
        ("workers = 2\nscheduler = 'tcp://h:1'\n", "workers and scheduler exclude each other"),
        ("cell-timeout = [1, 2]\n", "cell-timeout takes one value"),
        ("cell-timeout = \n", "is not valid TOML"),
    ],
)
def test_a_wrong_config_is_one_line_naming_the_key(tmp_path, text, expected):
    result = cli("grade", "subs", "--out", "r.csv", "--config", write(tmp_path, text))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --config "), result.stderr
    assert expected in lines[0] and "Traceback" not in result.stderr


def test_a_missing_config_file_is_named(tmp_path):
    missing = tmp_path / "nope.toml"
    result = cli("grade", "subs", "--out", "r.csv", "--config", str(missing))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: --config {missing} does not exist; write one with --write-config {missing}"
    )


def test_config_text_comments_each_option_from_its_help():
    text = config_text(grade_parser())
    assert (
        "# --rerun-memory-mb: memory of one student's whole re-run (killed above), default:"
        in (text)
    )
    assert "\nrerun-memory-mb = 4096.0\n" in text and "\n# num-test = N\n" in text
    assert "# one of: full, quick" in text
