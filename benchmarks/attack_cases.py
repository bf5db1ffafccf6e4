"""Grade issue 23's attacks through the real CLI and print the table of cases.

Each case is a submission (a zip, as a student hands it in) built from the
course's notebooks and the test fixtures; ``python -m cifar_lab grade`` grades
them in three batches, and the script prints one markdown row per case:
status, points, the submission's peak memory and its grading time::

    CIFAR10_SOURCE=/work/shared/data/cifar10-jpeg.tgz python benchmarks/attack_cases.py
    python benchmarks/attack_cases.py --batches claims        # Part V and names only: fast

The re-run and limits cases start from one honest run: the five course notebooks
executed as a student hands them in (:func:`honest_run`: quick profile, the same
source, ``part5/`` as 05 saved it), so their saved outputs hold real records that a
re-run reproduces and each row is flagged for its own attack only. That run takes
minutes; ``--executed <work>/executed`` reuses the one an earlier call made.

The batches:

* ``claims`` (``--trust-outputs``: no re-execution; Part V is verified either way):
  ``honest``; ``lookup model`` (a dense-only lookup of the grader's test images);
  ``1-image split`` and ``chosen seed`` (``results.json``'s test split: one image, or
  the profile's size drawn with seed 7); ``CNN`` (a Conv2D in the saved model);
  ``validation claim 0.95``; ``name collision`` (``dup name`` and ``dup_name``);
  ``formula name`` (a student named ``=1+2``);
* ``rerun`` (re-executed, the default): ``honest (re-run)``; ``hooked checks`` (every
  exercise left as in the student edition, an IPython ``ast_transformers`` hook in
  each notebook's first solution cell that makes every check pass); ``rewritten 05``
  (a cell of 01 rewrites ``05_tuning.ipynb`` into a fake that records 0.99, the test
  accuracy this student claims in 05's outputs and ``results.json``);
  ``feedback leak`` (a cell of 01 raises with the first line of the instructor's
  notebook, of a file in ``/tmp`` and of ``$HOME``);
* ``limits`` (re-executed; the attack is 01's first cell): ``5 GiB`` of memory,
  ``3 GiB`` on disk, ``300 processes``.

Measured under load (the first command above with ``--work /tmp/attack_table
--executed`` an honest run made just before, quick re-run profile, default
ceilings, real CIFAR-10 JPEG archive, one worker; a 2-core machine shared with
four other jobs, so the times are long; 81 of the 100 points are auto-graded, 19
by hand; building the cases took 98 s, the batches 77 s, 649 s and 62 s). The
honest run took 573 s under load (01 106 s, 02 59 s, 03 65 s, 04 138 s, 05 205 s).
``honest (re-run)``: ``ok``, every record reproduced, every probed check passed,
all 81 auto-graded points (its one note: Part V re-scored on the 500-image split
``results.json`` records). ``rewritten 05``: the real 05 ran, "test_accuracy
claimed 0.9900, recomputed 0.2660", and Part V's model scores 0.2660 too; its 81
points are the honest notebooks' own. ``hooked checks``: 0 points, each probed
check "passed in the notebook but failed the grader's test". ``feedback leak``:
every read failed (FileNotFoundError for the instructor's notebook and ``$HOME``,
``/tmp`` shows only the re-run's own folder), 01 stopped there so its 9 points are
lost, and no feedback page holds the student's text (the table says FEEDBACK
LEAKS where one does). ``=1+2`` is written to the CSV as ``'=1+2``; ``dup name``
and ``dup_name`` get two feedback files. Part V's rows name their finding
(memorised test images, a split the course does not define, Conv2D refused, the
validation claim recomputed)::

    | case | status | points | peak memory (MB) | time (s) |
    | --- | --- | --- | --- | --- |
    | honest | ok | 81/100 |  | 0.3 |
    | lookup model | flagged | 76/100 | 936 | 29.3 |
    | 1-image split | flagged | 76/100 | 696 | 24.2 |
    | chosen seed | flagged | 76/100 |  | 0.3 |
    | CNN | flagged | 76/100 | 641 | 12.4 |
    | validation claim 0.95 | flagged | 76/100 |  | 0.4 |
    | dup name | ok | 81/100 |  | 0.4 |
    | dup_name | ok | 81/100 |  | 0.3 |
    | =1+2 | ok | 81/100 |  | 0.6 |
    | honest (re-run) | ok | 81/100 | 2217 | 188.1 |
    | hooked checks | flagged | 0/100 | 2099 | 59.5 |
    | rewritten 05 | flagged | 81/100 | 2185 | 102.3 |
    | feedback leak | flagged | 72/100 | 2183 | 293.1 |
    | 5 GiB | flagged | 0/100 | 4099 | 30.9 |
    | 3 GiB disk | flagged | 0/100 | 1479 | 19.0 |
    | 300 processes | flagged | 0/100 | 1848 | 8.9 |
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the test fixtures build the submissions

PROFILE = "quick"
LEAK_MARK = "LEAKED:"
FAKE_ACCURACY = 0.99  # what the rewritten 05 records, and what that student claims

HOOK = """\
import ast


class Pass(ast.NodeTransformer):
    def visit_Call(self, node):
        self.generic_visit(node)
        name = getattr(node.func, "attr", getattr(node.func, "id", ""))
        return ast.Constant(None) if name.startswith("check_") else node

    def visit_Module(self, node):
        self.generic_visit(node)
        handler = ast.ExceptHandler(type=None, name=None, body=[ast.Pass()])
        node.body = [ast.Try(body=[s], handlers=[handler], orelse=[], finalbody=[])
                     for s in node.body]
        return ast.fix_missing_locations(node)


get_ipython().ast_transformers.append(Pass())
"""

REWRITE_05 = """\
import glob
import json
import os

code = "import cifar_lab as lab\\nlab.record('test_accuracy', FAKE)"
fake = {"cells": [{"cell_type": "code", "execution_count": None, "id": "fake", "metadata": {},
                   "outputs": [], "source": code}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "nbformat": 4, "nbformat_minor": 5}
targets = {"05_tuning.ipynb"}
for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
    try:
        arguments = open(cmdline).read().split("\\0")
        targets.update(a for a in arguments if a.endswith("05_tuning.ipynb"))
    except OSError:
        pass
for target in targets:
    try:
        os.chmod(target, 0o644)
    except OSError:
        pass
    try:
        open(target, "w").write(json.dumps(fake))
    except OSError:
        pass
""".replace("FAKE", repr(FAKE_ACCURACY))

CASES = {  # batch -> its cases, each the name of its student
    "claims": ["honest", "lookup model", "1-image split", "chosen seed", "CNN",
               "validation claim 0.95", "dup name", "dup_name", "=1+2"],
    "rerun": ["honest (re-run)", "hooked checks", "rewritten 05", "feedback leak"],
    "limits": ["5 GiB", "3 GiB disk", "300 processes"],
}  # fmt: skip

LIMITS = {
    "5 GiB": "import numpy as np\nblock = np.ones(5 << 30, dtype=np.uint8)",
    "3 GiB disk": "with open('big', 'wb') as out:\n    for _ in range(3 << 4):\n"
    "        out.write(bytes(64 << 20))",
    "300 processes": "import subprocess, time\n"
    "children = [subprocess.Popen(['sleep', '120']) for _ in range(300)]\ntime.sleep(120)",
}


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default=os.environ.get("CIFAR10_SOURCE", "synthetic"))
    parser.add_argument("--num-test", type=int, help="test images (default: all the source has)")
    parser.add_argument("--work", help="folder for the batches and reports (default: temporary)")
    parser.add_argument(
        "--batches", default="claims,rerun,limits", help="comma-separated: claims, rerun, limits"
    )
    parser.add_argument("--workers", type=int, default=1, help="grade --workers (default: 1)")
    parser.add_argument(
        "--executed",
        help="a folder of the course notebooks already executed by this script (its "
        "<work>/executed): reused as the honest student's run instead of running them again",
    )
    parser.add_argument(
        "--table-only", action="store_true", help="print the table of the reports in --work"
    )
    return parser.parse_args()


# ------------------------------------------------------------------ building the cases
def _notebook_edit(root: Path, stem: str, change) -> None:
    path = root / f"{stem}.ipynb"
    notebook = json.loads(path.read_text(encoding="utf-8"))
    change(notebook)
    path.write_text(json.dumps(notebook), encoding="utf-8")


def _first_solution_cell(notebook: dict) -> dict:
    return next(
        cell
        for cell in notebook["cells"]
        if cell["cell_type"] == "code"
        and cell.get("metadata", {}).get("nbgrader", {}).get("solution")
    )


def _prepend_to_first_solution(source: str):
    def change(notebook: dict) -> None:
        cell = _first_solution_cell(notebook)
        old = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        cell["source"] = source + "\n" + old

    return change


def _student_edition(release_dir: Path, root: Path) -> None:
    """Replace the submission's notebooks by the student edition's (exercises not done)."""
    for path in sorted(release_dir.glob("*.ipynb")):
        target = root / path.name
        if target.exists():
            notebook = json.loads(path.read_text(encoding="utf-8"))
            target.write_text(json.dumps(notebook), encoding="utf-8")


def honest_run(course: Path, folder: Path, source: str) -> Path:
    """Run the course's notebooks as a student hands them in: executed, in order, in one folder.

    The model answers (``course``), each in a fresh kernel started in ``folder`` in the
    quick profile on ``source`` (what the re-run uses), the written answer filled in;
    notebook 05 writes ``part5/``. Its saved outputs are the records the re-run compares.

    Returns:
        ``folder``, holding the five executed notebooks and ``part5/``.
    """
    import nbformat
    from instructor_fixtures import STUDENT_ANSWER, is_answer_cell

    from cifar_lab.instructor.notebooks import course_notebooks, notebook_client

    folder.mkdir(parents=True)
    env = {**os.environ, "CIFAR_LAB_PROFILE": PROFILE, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["CIFAR10_SOURCE"] = source
    env["CIFAR_LAB_CACHE"] = str(folder.parent / "executed_cache")  # away from the user's
    for path in course_notebooks(course):
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if is_answer_cell(cell):
                cell.source = STUDENT_ANSWER
        started = time.perf_counter()
        notebook_client(notebook, folder, cell_timeout=3600).execute(env=env)
        nbformat.write(notebook, folder / path.name)
        print(f"executed {path.name} in {time.perf_counter() - started:.0f} s", flush=True)
    return folder


def _executed_copy(executed: Path, root: Path) -> Path:
    """A student's submission folder: the executed notebooks and ``part5/``."""
    from cifar_lab.tuning.part5 import PART5_DIR

    root.mkdir(parents=True)
    for path in sorted(executed.glob("*.ipynb")):
        shutil.copyfile(path, root / path.name)
    shutil.copytree(executed / PART5_DIR, root / PART5_DIR)
    return root


def _results(root: Path, **fields) -> None:
    from cifar_lab.tuning.part5 import PART5_DIR, RESULTS_FILE

    path = root / PART5_DIR / RESULTS_FILE
    saved = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**saved, **fields}), encoding="utf-8")


def _leak_cell() -> str:
    from instructor_fixtures import course_notebooks

    answers = str(course_notebooks()[0])
    home = str(Path.home() / ".bashrc")
    return (
        "lines = []\n"
        f"for path in ({answers!r}, '/tmp', {home!r}):\n"
        "    try:\n"
        "        import os\n"
        "        if os.path.isdir(path):\n"
        "            lines.append(path + ': ' + ' '.join(sorted(os.listdir(path))[:5]))\n"
        "        else:\n"
        "            lines.append(path + ': ' + open(path).read(120))\n"
        "    except OSError as error:\n"
        "        lines.append(path + ': ' + type(error).__name__)\n"
        f"raise RuntimeError({LEAK_MARK!r} + ' | '.join(lines).replace(chr(10), ' '))"
    )


def build(
    work: Path, source: str, num_test: int | None, batches: list[str], executed: Path | None
) -> dict:
    """Write each batch's zips; return {batch: (folder, manifest path)}.

    The claims batch is built from the test fixtures (faked saved outputs: the grader
    reads them as they are); the re-run and limits batches from one honest run of the
    course notebooks (:func:`honest_run`, or ``executed`` when given), the attack added.
    """
    from instructor_fixtures import course_source, train_models, write_submission, zip_folder
    from test_part5_verification import _conv_model, lookup_model

    import cifar_lab as lab
    from cifar_lab.instructor.claims import (
        COURSE_SEED,
        LazyTestSet,
        course_validation,
        model_accuracy,
    )
    from cifar_lab.instructor.release import release
    from cifar_lab.tuning.part5 import MODEL_FILE, PART5_DIR
    from cifar_lab.tuning.split_record import PROFILE_KEY, SPLIT_KEY, describe_split

    course = course_source(work / "source")
    manifest = release(work / "release", source_dir=course)
    models = train_models(work / "models")
    test_images, test_labels = LazyTestSet(source, num_test).arrays()
    (val_images, val_labels), _ = course_validation(source, PROFILE)

    def claims_of(model: Path) -> tuple[float, float]:
        scored = [
            model_accuracy(model, images, labels, max_bytes=1 << 30)
            for images, labels in ((test_images, test_labels), (val_images, val_labels))
        ]
        return scored[0], scored[1]

    test, val = claims_of(models.good)
    saved = work / "models" / "saved"
    saved.mkdir()
    lookup = saved / "lookup.keras"
    lookup_model(test_images, test_labels).save(lookup)
    cnn = saved / "cnn.keras"
    _conv_model().save(cnn)
    one = describe_split(test_images[:1], test_labels[:1], COURSE_SEED)
    chosen = lab.load_cifar10(
        1, 0, lab.get_profile(PROFILE).num_test, source=source, seed=7, standardise=False,
        verbose=False,
    )  # fmt: skip
    seven = describe_split(chosen.X_test, chosen.y_test, 7)

    def submission(name: str, model: Path = models.good, claims=None) -> Path:
        test_claim, val_claim = claims or (test, val)
        root = write_submission(work / "roots" / name, course, model, test_claim, val_claim)
        _results(root, **{PROFILE_KEY: PROFILE})
        for path in sorted(root.glob("*.ipynb")):
            _notebook_edit(root, path.stem, _every_check_shown)
        return root

    ran = None
    if {"rerun", "limits"} & set(batches):
        ran = executed or honest_run(course, work / "executed", source)

    def handed_in(name: str) -> Path:
        """The honest run's notebooks and part5/ as the student ``name`` hands them in."""
        return _executed_copy(ran, work / "roots" / name)

    def with_model(name: str, model: Path) -> Path:
        root = submission(name, model, claims_of(model) if model != cnn else (0.5, 0.5))
        (root / PART5_DIR / MODEL_FILE).write_bytes(model.read_bytes())
        return root

    cases = {
        "claims": {
            "honest": lambda n: submission(n),
            "lookup model": lambda n: with_model(n, lookup),
            "1-image split": lambda n: _split(submission(n), one, 1.0, SPLIT_KEY),
            "chosen seed": lambda n: _split(submission(n), seven, test, SPLIT_KEY),
            "CNN": lambda n: with_model(n, cnn),
            "validation claim 0.95": lambda n: _val_claim(submission(n, claims=(test, 0.95))),
            "dup name": lambda n: submission(n),
            "dup_name": lambda n: submission(n),
            "=1+2": lambda n: submission(n),
        },
        "rerun": {
            "honest (re-run)": lambda n: handed_in(n),
            "hooked checks": lambda n: _hooked(handed_in(n), work / "release"),
            "rewritten 05": lambda n: _first_cell(_claims_099(handed_in(n)), REWRITE_05),
            "feedback leak": lambda n: _first_cell(handed_in(n), _leak_cell()),
        },
        "limits": {
            name: (lambda n, c=cell: _first_cell(handed_in(n), c)) for name, cell in LIMITS.items()
        },
    }
    built = {}
    for batch in batches:
        folder = work / "batches" / batch
        folder.mkdir(parents=True)
        for name, make in cases[batch].items():
            root = make(name)  # the case is the student's name
            zip_folder(root, folder / f"{root.name}.zip")
        built[batch] = (folder, manifest)
    assert {batch: list(made) for batch, made in cases.items()} == CASES
    return built


def _every_check_shown(notebook: dict) -> None:
    """A passed check payload for each check_that / check_close call, as a run shows them."""
    import re

    from instructor_fixtures import check_output

    for cell in notebook["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for _ in re.findall(r"check_(?:that|close)\(", source):
            cell.setdefault("outputs", []).append(check_output(what="property"))


def _split(root: Path, record: dict, claim: float, key: str) -> Path:
    _results(root, **{key: record, "test_accuracy": claim})
    return root


def _val_claim(root: Path) -> Path:
    from instructor_fixtures import set_claim

    _notebook_edit(root, "05_tuning", lambda nb: set_claim(nb, "best_val_accuracy", 0.95))
    return root


def _claims_099(root: Path) -> Path:
    """Claim the test accuracy the fake 05 records (0.99), in 05's outputs and results.json."""
    from instructor_fixtures import set_claim

    _notebook_edit(root, "05_tuning", lambda nb: set_claim(nb, "test_accuracy", FAKE_ACCURACY))
    _results(root, test_accuracy=FAKE_ACCURACY)
    return root


def _hooked(root: Path, release_dir: Path) -> Path:
    _student_edition(release_dir, root)
    for path in sorted(root.glob("*.ipynb")):
        _notebook_edit(root, path.stem, _prepend_to_first_solution(HOOK))
    return root


def _first_cell(root: Path, source: str) -> Path:
    _notebook_edit(root, "01_preparation", _prepend_to_first_solution(source))
    return root


# --------------------------------------------------------------------- grading them
def grade(batch: str, folder: Path, manifest: Path, out: Path, args) -> float:
    """Run the real CLI on one batch in a child process; return its wall seconds."""
    command = [sys.executable, "-m", "cifar_lab", "grade", str(folder), "--out", str(out)]
    command += ["--manifest", str(manifest), "--source", args.source]
    command += ["--rerun-profile", PROFILE, "--accept-profile", PROFILE]
    command += ["--workers", str(args.workers)]
    if args.num_test:
        command += ["--num-test", str(args.num_test)]
    if batch == "claims":
        command += ["--trust-outputs"]
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)
    seconds = time.perf_counter() - started
    if done.returncode != 0 and not out.with_suffix(".json").exists():
        sys.exit(f"grade exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds


def _cell(text: str, width: int = 160) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def _telling(problems: list[str]) -> list[str]:
    """The problems that say what happened: the grader's tests and limits first, then the rest.

    Left out: the list of hashes; the count of checks whose probe failed is given.
    """
    probed = [p for p in problems if "failed the grader's test" in p]
    first = [p for p in problems if "limit" in p or "quota" in p or "rerun failed" in p]
    rest = [p for p in problems if p not in probed + first and "re-executed as handed in" not in p]
    head = [f"{len(probed)} checks failed the grader's test, e.g. {probed[0]}"] if probed else []
    return (head + first + rest)[:2]


def table(rows: list[tuple[str, dict, Path]]) -> str:
    """The markdown table: case, status, points, peak memory, time, what the row says."""
    lines = [
        "| case | status | points | peak memory (MB) | time (s) | feedback file | the row says |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, row, feedback in rows:
        points = f"{row.get('total_points', '')}/{row.get('max_points', '')}"
        problems = "; ".join(_telling(row.get("problems", []))) or "-"
        page = feedback.read_text(encoding="utf-8") if feedback.is_file() else ""
        if LEAK_MARK in page:
            problems = "FEEDBACK LEAKS THE STUDENT'S TEXT; " + problems
        lines.append(
            f"| {case} | {row.get('status', '')} | {points} | {row.get('peak_memory_mb', '')} "
            f"| {row.get('grading_seconds', '')} | {feedback.name if feedback.is_file() else '-'} "
            f"| {_cell(problems)} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Build the batches, grade each through the CLI, print the table."""
    args = _parse()
    batches = [b.strip() for b in args.batches.split(",") if b.strip()]
    with tempfile.TemporaryDirectory(prefix="attack_cases_") as temporary:
        work = Path(args.work) if args.work else Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        executed = Path(args.executed) if args.executed else None
        built = (
            {} if args.table_only else build(work, args.source, args.num_test, batches, executed)
        )
        print(f"built the cases in {time.perf_counter() - started:.0f} s", flush=True)
        rows = []
        for batch in batches:
            cases = CASES[batch]
            out = work / "reports" / batch / "report.csv"
            if not args.table_only:
                folder, manifest = built[batch]
                out.parent.mkdir(parents=True)
                seconds = grade(batch, folder, manifest, out, args)
                print(f"graded {batch} in {seconds:.0f} s", flush=True)
            found = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
            by_student = {row["student"]: row for row in found}
            for case in cases:
                row = by_student.get(case, {"status": "NO ROW"})
                feedback = out.parent / "feedback" / f"{row.get('student_id', case)}.html"
                rows.append((case, row, feedback))
            csv_text = out.read_text(encoding="utf-8")
            if "\n=1+2" in csv_text or ",=1+2" in csv_text:
                print("WARNING: the CSV holds an unescaped formula cell", flush=True)
        print()
        print(table(rows))


if __name__ == "__main__":
    main()
