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
from cifar_lab.instructor.release import BEGIN_SOLUTION, MANIFEST_FILE
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
    args = build_parser().parse_args(["grade", "subs", "--out", "report.csv"])
    assert instructor_cli.rerun_settings(args) == RerunSettings()
    assert instructor_cli.grade_settings(args, None) == GradeSettings()
    assert GradeSettings().rerun == RerunSettings()  # re-execution is the default, both ways
    assert RerunSettings().profile == "quick" == args.rerun_profile
    assert _option("grade", "rerun_profile").choices == sorted(PROFILES)
    static = build_parser().parse_args(["grade", "subs", "--out", "report.csv", "--trust-outputs"])
    assert instructor_cli.rerun_settings(static) is None
    assert instructor_cli.grade_settings(static, None) == GradeSettings(rerun=None)


def test_the_former_rerun_flag_is_refused_naming_the_new_default(capsys):
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["grade", "subs", "--out", "report.csv", "--rerun"])
    assert stopped.value.code == 2
    message = capsys.readouterr().err
    assert "re-executes every submission by default" in message and "--trust-outputs" in message


def test_the_batch_summary_gives_the_time_per_student():
    rows = [{"grading_seconds": 10.0}, {"grading_seconds": 30.0}, {"grading_seconds": ""}]
    # a damaged report.json's time is left out, not averaged (the one finite-number check)
    rows += [{"grading_seconds": float("nan")}, {"grading_seconds": True}]
    line = instructor_cli.seconds_line(rows)
    assert line == "time per student: mean 20.0 s, max 30.0 s (2 timed)"
    assert "no submission was timed" in instructor_cli.seconds_line([])


def test_accept_profile_adds_to_the_accepted_profiles():
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


def test_notebooks_copies_the_student_edition_and_refuses_a_non_empty_folder(tmp_path, capsys):
    out = tmp_path / "my course"
    assert main(["notebooks", "--out", str(out)]) == 0
    edition = notebook_files.course_notebooks(notebook_files.STUDENT_EDITION)
    expected = sorted([p.name for p in edition] + [MANIFEST_FILE])
    assert sorted(p.name for p in out.iterdir()) == expected
    assert [p.stem for p in edition] == [p.stem for p in notebook_files.course_notebooks()]
    assert all((out / p.name).read_bytes() == p.read_bytes() for p in edition)
    assert not any(BEGIN_SOLUTION in (out / p.name).read_text() for p in edition)
    printed = capsys.readouterr().out
    assert "student edition" in printed and "no solutions" in printed
    assert f"jupyter lab '{out}'" in printed and f"run --notebooks '{out}'" in printed

    assert main(["notebooks", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "not empty" in error and "--force" in error
    (out / edition[0].name).write_text("edited")
    assert main(["notebooks", "--out", str(out), "--force"]) == 0
    assert (out / edition[0].name).read_bytes() == edition[0].read_bytes()


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


def test_pyproject_ships_the_student_edition_not_the_instructor_notebooks():
    """What the slow wheel test checks by building; here from the configuration alone."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "cifar_lab.student_edition" in config["packages"]
    assert "*.ipynb" in config["package-data"]["cifar_lab.student_edition"]
    assert MANIFEST_FILE in config["package-data"]["cifar_lab.student_edition"]
    # the instructor notebooks/ (with the solutions) are mapped into no package
    assert "notebooks" not in config.get("package-dir", {}).values()
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


def test_run_notebooks_selects_from_the_given_folder(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "01_mine.ipynb").write_text("{}")
    assert main(["run", "--notebooks", str(folder), "--only", "02"]) == 2
    error = capsys.readouterr().err
    assert str(folder) in error and "01_mine" in error and "01_preparation" not in error
    assert main(["run", "--notebooks", str(tmp_path / "absent")]) == 2
    assert "--notebooks" in capsys.readouterr().err
    assert main(["run", "--notebooks", str(tmp_path)]) == 2  # no NN_name.ipynb there
    assert "no NN_name.ipynb" in capsys.readouterr().err


def test_installed_run_asks_for_the_students_folder(monkeypatch, capsys):
    monkeypatch.setattr(notebook_files, "notebooks_installed", lambda: True)
    assert main(["run"]) == 2
    error = capsys.readouterr().err
    assert "student edition" in error and "--notebooks" in error and "notebooks --out" in error


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


def test_nbgrader_config_writes_the_shipped_config(tmp_path, capsys):
    shipped = REPO_ROOT / "cifar_lab" / "instructor" / "nbgrader_config.py"
    course = tmp_path / "course"
    assert main(["nbgrader-config", "--out", str(course)]) == 0
    assert (course / "nbgrader_config.py").read_bytes() == shipped.read_bytes()
    printed = capsys.readouterr().out
    assert "source notebooks" in printed and str(course / "source" / "cifar_lab") in printed
    assert "c.Execute.timeout" in shipped.read_text()  # the course's settings, not a stub

    (course / "nbgrader_config.py").write_text("# mine")
    assert main(["nbgrader-config", "--out", str(course)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (course / "nbgrader_config.py").read_text() == "# mine"
    assert main(["nbgrader-config", "--out", str(course), "--force"]) == 0
    assert (course / "nbgrader_config.py").read_bytes() == shipped.read_bytes()
    assert main(["nbgrader-config", "--out", str(shipped)]) == 2
    assert "is a file" in capsys.readouterr().err


@pytest.mark.slow
def test_run_checks_a_students_own_folder_and_stops_at_the_first_stub(tmp_path, capsys):
    """What a student does before submit: ``run --notebooks .`` on the student edition."""
    folder, out = tmp_path / "course", tmp_path / "out"
    assert main(["notebooks", "--out", str(folder)]) == 0
    capsys.readouterr()
    argv = ["run", "--notebooks", str(folder), "--only", "01", "--profile", "quick"]
    assert main([*argv, "--source", "synthetic", "--out", str(out)]) == 1
    printed = capsys.readouterr()
    text = printed.out + printed.err
    # the failing cell is named as run numbers it, with the stub's own message
    assert "01_preparation" in text and "NotImplementedError" in text, text[-2000:]
    assert "standardise_splits" in text, text[-2000:]
    assert (out / "01_preparation.ipynb").exists()  # the executed copy, up to the stub
