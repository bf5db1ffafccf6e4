"""The command line: choices and defaults read from the library, `notebooks`, no TensorFlow."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

import cifar_lab.instructor.cli as instructor_cli
from cifar_lab.__main__ import _defaults, build_parser, main
from cifar_lab.data.splits import load_cifar10
from cifar_lab.instructor import notebooks as notebook_files
from cifar_lab.instructor.grading import GradeSettings
from cifar_lab.instructor.notebooks import run_all
from cifar_lab.instructor.rerun import RerunSettings
from cifar_lab.instructor.submission import check_submission
from cifar_lab.profiles import PROFILES
from cifar_lab.tuning import recipes
from cifar_lab.tuning.config import PRECISIONS


def _option(command: str, dest: str) -> argparse.Action:
    """The argparse action behind one option of one sub-command."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return next(a for a in commands.choices[command]._actions if a.dest == dest)


def test_help_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from cifar_lab.__main__ import main\n"
        "for argv in ([], ['--help'], ['grade', '--help'], ['train-best', '--help'],"
        " ['run', '--help'], ['notebooks', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('imported:', sorted({'tensorflow', 'keras'} & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "imported: []" in result.stdout, result.stdout + result.stderr
    assert "notebooks" in result.stdout and "--rerun-tolerance" in result.stdout


def test_grade_defaults_are_the_settings_defaults():
    args = build_parser().parse_args(["grade", "subs", "--out", "report.csv", "--rerun"])
    assert instructor_cli.rerun_settings(args) == RerunSettings()
    assert instructor_cli.grade_settings(args, None) == GradeSettings(rerun=RerunSettings())
    assert _option("grade", "rerun_profile").choices == sorted(PROFILES)
    no_rerun = build_parser().parse_args(["grade", "subs", "--out", "report.csv"])
    assert instructor_cli.grade_settings(no_rerun, None) == GradeSettings()
    practice = ["grade", "subs", "--out", "r.csv", "--accept-profile", "quick"]
    settings = instructor_cli.grade_settings(build_parser().parse_args(practice), None)
    assert settings.accept_profiles == (*GradeSettings().accept_profiles, "quick")
    assert _option("grade", "accept_profile").choices == sorted(PROFILES)


def test_submit_default_size_limit_is_check_submissions():
    args = build_parser().parse_args(["submit"])
    limit = _defaults(check_submission)["max_bytes"]
    assert int(args.max_notebook_mb * instructor_cli.MEGABYTE) == limit


def test_run_and_data_defaults_come_from_the_library():
    args = build_parser().parse_args(["run"])
    defaults = _defaults(run_all)
    assert (args.profile, args.cell_timeout) == (defaults["profile"], defaults["cell_timeout"])
    assert _option("run", "profile").choices == sorted(PROFILES)
    assert build_parser().parse_args(["data"]).seed == _defaults(load_cifar10)["seed"]


def test_train_best_choices_come_from_the_library():
    assert _option("train-best", "recipe").choices == sorted(recipes.RECIPES)
    assert _option("train-best", "recipe").default == _defaults(recipes.train_best)["recipe"]
    assert tuple(_option("train-best", "precision").choices) == PRECISIONS


def test_notebooks_copies_the_course_and_refuses_a_non_empty_folder(tmp_path, capsys):
    out = tmp_path / "my course"
    assert main(["notebooks", "--out", str(out)]) == 0
    course = notebook_files.course_notebooks()
    assert [p.name for p in sorted(out.iterdir())] == [p.name for p in course]
    assert all((out / p.name).read_bytes() == p.read_bytes() for p in course)
    assert f"jupyter lab '{out}'" in capsys.readouterr().out

    assert main(["notebooks", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "not empty" in error and "--force" in error
    (out / course[0].name).write_text("edited")
    assert main(["notebooks", "--out", str(out), "--force"]) == 0
    assert (out / course[0].name).read_bytes() == course[0].read_bytes()


def test_notebooks_refuses_a_file_as_out(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("x")
    assert main(["notebooks", "--out", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_notebook_dir_finds_the_checkouts_notebooks():
    assert notebook_files.notebook_dir() == REPO_ROOT / "notebooks"
    assert not notebook_files.notebooks_installed()
    stems = [p.stem[:2] for p in notebook_files.course_notebooks()]
    assert stems == ["01", "02", "03", "04", "05"]


def test_pyproject_ships_the_notebooks_inside_the_package():
    """What the slow wheel test checks by building; here from the configuration alone."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "cifar_lab.notebooks" in config["packages"]
    assert config["package-dir"]["cifar_lab.notebooks"] == "notebooks"
    assert "*.ipynb" in config["package-data"]["cifar_lab.notebooks"]
    on_disk = {
        ".".join(p.parent.relative_to(REPO_ROOT).parts)
        for p in (REPO_ROOT / "cifar_lab").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert on_disk <= set(config["packages"]), "list every cifar_lab sub-package in pyproject"


def test_run_unknown_prefix_names_the_notebooks(capsys):
    assert main(["run", "--only", "99"]) == 2
    error = capsys.readouterr().err
    assert "--only 99" in error and "01_preparation" in error


def test_installed_notebooks_run_from_copies_in_out(tmp_path, monkeypatch):
    import cifar_lab.__main__ as cli

    notebooks = notebook_files.course_notebooks()[:2]
    assert cli._working_copies(notebooks, tmp_path / "a") == notebooks  # a checkout: in place
    monkeypatch.setattr(notebook_files, "notebooks_installed", lambda: True)
    copies = cli._working_copies(notebooks, tmp_path / "b")
    assert copies == [tmp_path / "b" / p.name for p in notebooks]
    assert all(c.read_bytes() == p.read_bytes() for c, p in zip(copies, notebooks, strict=True))


def test_refresh_outputs_refuses_installed_notebooks(monkeypatch, capsys):
    monkeypatch.setattr(notebook_files, "notebooks_installed", lambda: True)
    assert main(["refresh-outputs"]) == 2
    assert "checkout" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("source", "expected"),
    [(["a = 1\n", "b = 2"], "a = 1\nb = 2"), ("a = 1", "a = 1"), (None, "")],
)
def test_cell_source_joins_lists_of_lines(source, expected):
    cell = {"cell_type": "code"} if source is None else {"cell_type": "code", "source": source}
    assert notebook_files.cell_source(cell) == expected
