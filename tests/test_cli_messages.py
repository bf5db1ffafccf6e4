"""Every mistake a command-line user makes gets one plain line naming it and the fix.

Each test runs the real CLI in a subprocess (``python -m cifar_lab ...``) and
checks the exit code and the one line on stderr: the wrong value, the fix in the
CLI's own spelling (``--source keras``, not ``source='keras'``), no traceback
and no terminal colour codes.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

import cifar_lab
from cifar_lab.__main__ import main, program_name
from cifar_lab.data.sources import CIFAR10NotFoundError
from cifar_lab.messages import cli_spelling, plain_line

# the course's nbgrader config, shipped in the package (cifar-lab nbgrader-config)
SHIPPED_CONFIG = REPO_ROOT / "cifar_lab" / "instructor" / "nbgrader_config.py"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m cifar_lab ARGS`` with this test's environment plus ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "cifar_lab", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def one_line_error(result: subprocess.CompletedProcess, code: int = 2) -> str:
    """The single ``error: ...`` line a failed command printed, after checking its form."""
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert "Traceback" not in output and "\x1b" not in output, output
    return lines[0]


def test_run_with_a_missing_source_fails_instead_of_loading_synthetic_data(tmp_path):
    missing = tmp_path / "nope" / "cifar.tgz"
    result = cli("run", "--profile", "quick", "--source", str(missing), "--out", str(tmp_path))
    line = one_line_error(result)
    assert f"--source {missing} does not exist" in line
    assert "--source keras" in line and "--source synthetic" in line
    assert "ok" not in result.stdout and not list(tmp_path.glob("*.ipynb"))  # no notebook ran


def test_a_missing_cifar10_source_is_named_as_the_variable(tmp_path):
    wrong = tmp_path / "wrong"
    line = one_line_error(cli("data", env={"CIFAR10_SOURCE": str(wrong)}))
    assert f"'{wrong}' from $CIFAR10_SOURCE does not exist" in line
    assert "export CIFAR10_SOURCE=" in line and "unset CIFAR10_SOURCE" in line


def test_a_file_that_is_not_cifar10_gives_one_line(tmp_path):
    notes = tmp_path / "file.txt"
    notes.write_text("not images\n" * 100)
    line = one_line_error(cli("data", "--source", str(notes)))
    assert f"{notes} is not a CIFAR-10 copy" in line
    assert "cifar-10-python.tar.gz" in line and "image-folder tree" in line


def test_fixes_are_spelled_as_options_for_the_cli(tmp_path):
    missing = tmp_path / "my data" / "cifar.tgz"  # a space: the flag's value is quoted
    line = one_line_error(cli("data", "--source", str(missing)))
    assert f"--source '{missing}'" in line and "--source keras" in line
    assert "source='" not in line
    # the library keeps Python's spelling of the same fix
    with pytest.raises(CIFAR10NotFoundError) as caught:
        cifar_lab.load_cifar10(source=missing, verbose=False)
    assert "source='keras'" in str(caught.value) and "--source" not in str(caught.value)


def test_another_os_error_is_one_line_with_exit_code_1(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    line = one_line_error(cli("notebooks", "--out", str(blocker / "course")), code=1)
    assert str(blocker / "course") in line


def test_version_prints_the_package_version():
    result = cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"cifar_lab {cifar_lab.__version__}"


def test_usage_shows_the_name_the_command_was_called_by(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["/opt/course/.venv/bin/cifar-lab", "grade", "--help"])
    with pytest.raises(SystemExit) as stopped:
        main(["grade", "--help"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.startswith("usage: cifar-lab grade ")
    result = cli("grade", "--help")  # python -m cifar_lab: its argv[0] is __main__.py
    assert result.stdout.startswith("usage: python -m cifar_lab grade "), result.stderr
    assert program_name("-c") == "python -m cifar_lab"


def test_colour_codes_never_reach_the_terminal(tmp_path):
    coloured = tmp_path / "\x1b[31mred\x1b[0m.txt"  # a file name a terminal would colour
    coloured.write_text("x")
    line = one_line_error(cli("data", "--source", str(coloured)))
    assert f"{tmp_path}/red.txt is not a CIFAR-10 copy" in line


def test_plain_line_and_cli_spelling():
    traceback = "\x1b[0;31mValueError\x1b[0m: bad\n  value\x1b[1A"
    assert plain_line(traceback) == "ValueError: bad value"
    flags = {"source": "--source", "force": "--force", "num_test": "--num-test"}
    text = "use source='keras', force=True, num_test=None, seed=3 or CIFAR10_SOURCE=/x"
    assert cli_spelling(text, flags) == (
        "use --source keras, --force, num_test=None, seed=3 or CIFAR10_SOURCE=/x"
    )
    assert cli_spelling('pass source="/a b/c.tgz"', flags) == "pass --source '/a b/c.tgz'"


def test_nbgrader_kernels_start_without_the_tcp_warning(tmp_path):
    """The shipped config gives kernels CurveZMQ keys, so ipykernel has nothing to warn about."""
    pytest.importorskip("nbgrader", reason="install the extra: pip install -e '.[nbgrader]'")
    zmq = pytest.importorskip("zmq")
    if not zmq.has("curve"):
        pytest.skip("this pyzmq has no CurveZMQ; the config leaves encryption off")
    code = (
        "import nbformat\n"
        "from nbgrader.preprocessors import Execute\n"
        "from traitlets.config.loader import PyFileConfigLoader\n"
        f"loader = PyFileConfigLoader('nbgrader_config.py', path={str(SHIPPED_CONFIG.parent)!r})\n"
        "config = loader.load_config()\n"
        "notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('print(6 * 7)')])\n"
        "Execute(config=config).preprocess(notebook, {})\n"
        "print('output:', notebook.cells[0].outputs[0]['text'].strip())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert "output: 42" in result.stdout, result.stdout + result.stderr
    assert "without encryption" not in result.stdout + result.stderr


def test_run_in_the_full_profile_with_a_missing_source_is_one_plain_line(tmp_path):
    missing = tmp_path / "nope"
    line = one_line_error(cli("run", "--source", str(missing), "--out", str(tmp_path)))
    assert f"--source {missing} does not exist" in line


def test_run_names_a_failed_cell_as_its_progress_lines_do_in_plain_text(tmp_path):
    import nbformat

    folder = tmp_path / "course"
    folder.mkdir()
    cells = ["print('one')", "raise ValueError('\\x1b[31mboom\\x1b[0m')", "print('three')"]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbformat.write(notebook, folder / "01_tiny.ipynb")
    result = cli("run", "--notebooks", str(folder), "--out", str(tmp_path / "out"))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "01_tiny cell 2/3" in result.stdout  # the progress line
    assert "FAILED: 01_tiny, cell 2/3: ValueError: boom" in result.stdout  # the same numbering
    assert "\x1b" not in output and "Traceback" not in output
    assert "without encryption" not in output  # kernels get CurveZMQ keys: no TCP warning


def test_grade_given_a_notebook_says_it_expects_a_folder(tmp_path):
    notebook = tmp_path / "hw3.ipynb"
    notebook.write_text("{}")
    line = one_line_error(cli("grade", str(notebook), "--out", str(tmp_path / "r.csv")))
    assert "grade expects a folder of <student>.zip files or <student>/ folders" in line
    assert f"got a notebook, {notebook}" in line and "does not exist" not in line
    assert not (tmp_path / "r.csv").exists()


def test_grade_on_a_folder_without_submissions_fails_and_says_what_it_looked_for(tmp_path):
    empty = tmp_path / "submissions"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    line = one_line_error(cli("grade", str(empty), "--out", str(tmp_path / "r.csv")))
    assert f"no submissions in {empty}" in line
    assert "<student>.zip files and <student>/ folders" in line and "notes.txt" in line
    assert not (tmp_path / "r.csv").exists()


def test_grade_names_another_courses_notebook_once(tmp_path):
    import json

    import nbformat

    from cifar_lab.instructor.notebooks import COURSE_NOTEBOOKS

    student = tmp_path / "submissions" / "alice"
    student.mkdir(parents=True)
    cells = [nbformat.v4.new_code_cell(f"x = {i}") for i in range(30)]  # ids of its own
    nbformat.write(nbformat.v4.new_notebook(cells=cells), student / f"{COURSE_NOTEBOOKS[0]}.ipynb")
    out = tmp_path / "report" / "report.csv"
    result = cli(
        "grade", str(student.parent), "--out", str(out), "--trust-outputs", "--no-feedback"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (row,) = json.loads((out.parent / "report.json").read_text())
    problems = [p for p in row["problems"] if p.startswith(COURSE_NOTEBOOKS[0][:2] + ":")]
    assert problems == [
        f"{COURSE_NOTEBOOKS[0][:2]}: {COURSE_NOTEBOOKS[0]}.ipynb is not a notebook of this "
        "course: none of its 30 cells is one of the release's (another course's notebook "
        "under this name?)"
    ], row["problems"]
    assert row["status"] == "damaged"


def test_submit_names_the_heading_above_a_cell_not_only_its_id(tmp_path):
    import nbformat

    from cifar_lab.instructor.notebooks import COURSE_NOTEBOOKS

    folder = tmp_path / "course"
    folder.mkdir()
    cells = [
        nbformat.v4.new_markdown_cell("# Part I\n## Exercise: `minibatches`"),
        nbformat.v4.new_code_cell("x = 1"),  # never run: no execution count
    ]
    notebook = nbformat.v4.new_notebook(cells=cells)
    nbformat.write(notebook, folder / f"{COURSE_NOTEBOOKS[0]}.ipynb")
    result = cli("submit", "--student", "alice", "--notebook-dir", str(folder))
    assert result.returncode == 1, result.stdout + result.stderr
    problem = next(line for line in result.stdout.splitlines() if "was never run" in line)
    assert problem.endswith(
        f"01: cell 1/1 (id {notebook.cells[1].id}) was never run, "
        "under the heading 'Exercise: `minibatches`'"
    ), result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert not list(folder.glob("*.zip"))
