"""Static tamper detection and recomputed check verdicts, without running any notebook."""

from __future__ import annotations

import json

import pytest

from cifar_lab.instructor.cli import grade_outputs
from cifar_lab.instructor.inspection import TRUSTED_MINIMUM, check_verdict, find_patches
from cifar_lab.instructor.notebooks import cell_source, course_notebooks
from cifar_lab.instructor.report import GradeOutputs, gradebook_rows

GIVEN = "import numpy as np\nimport cifar_lab as lab\nfrom tensorflow import keras"

PATCHES = {
    "assign": ("lab.check_at_least = lambda *a, **k: None", "writes lab.check_at_least"),
    "setattr": ("setattr(lab, 'check_that', print)", "calls setattr on lab"),
    "submodule": ("import cifar_lab.results as r\nr.CHECK_MIME = 'x'", "writes r.CHECK_MIME"),
    "from_import": ("from cifar_lab import results\nresults._emit = 1", "writes results._emit"),
    "monkeypatch": ("monkeypatch.setattr(lab, 'record', print)", "uses monkeypatch"),
    "sys_modules": ("import sys\nsys.modules['cifar_lab'] = object()", "writes sys.modules[...]"),
    "builtins": ("import builtins\nbuiltins.print = None", "imports builtins"),
    "rebind": ("class Fake:\n    pass\nlab = Fake()", "rebinds lab"),
    "code_object": ("f = lab.check_that\nf.__code__ = print.__code__", "writes f.__code__"),
    "globals": ("globals()['lab'] = None", "writes globals(...)[...]"),
    "namespace": ("get_ipython().push({'lab': None})", "runs code through IPython's push"),
    "vars": ("vars(lab).update(check_that=print)", "changes vars(...) with .update()"),
    "numpy": ("np.allclose = lambda *a, **k: True", "writes np.allclose"),
    "exec": ("exec('lab.check_' + 'that = print')", "runs dynamic code with exec()"),
    "mock": ("from unittest import mock", "imports unittest.mock"),
    "star": ("from fakes import *", "imports * from fakes"),
    "shell": ("!sed -i s/x/y/ cifar_lab/results.py", "a magic or shell line mentions cifar_lab"),
    "run": ("%run fake_lab.py", "runs another file with %run"),
    "unparsable": ("lab.check_that = (\n", "code that does not parse mentions check_that"),
    "cell_magic": ("%%bash\necho > cifar_lab/results.py", "%%bash cell mentions cifar_lab"),
    "forged_output": ("display({'application/vnd.cifar-lab.check+json': {}}, raw=True)",
                      "names the library's files or check outputs"),
    "hidden_in_solution": ("def f(x):\n    lab.record = print\n    return x", "writes lab.record"),
}  # fmt: skip

HONEST = [
    "import numpy as np\nx = np.zeros(3)\nx[0] = 1\nnp.random.seed(0)",
    "class Model(keras.Model):\n    def __init__(self):\n        super().__init__()\n"
    "        setattr(self, 'dense', keras.layers.Dense(3))\n        self.record = []",
    "import matplotlib.pyplot as plt\nplt.rcParams['figure.figsize'] = (4, 3)",
    "lab.check_that?",
    "%matplotlib inline\nhistory = lab.train_part34(None)\nresult = {}\nresult.update(b=2)",
    "labels = [lab for lab in range(3)]",
    "%%time\nmodel = keras.Sequential()",
]


@pytest.mark.parametrize("case", sorted(PATCHES))
def test_patches_are_flagged_with_their_line(case):
    source, expected = PATCHES[case]
    found = find_patches([(GIVEN, False), (source, True)])
    assert list(found) == [1], found
    assert any(expected in text for _, text in found[1]), found[1]


@pytest.mark.parametrize("source", HONEST)
def test_honest_student_code_is_not_flagged(source):
    assert find_patches([(GIVEN, False), (source, True)]) == {}


def test_the_course_notebooks_themselves_are_not_flagged():
    # every code cell scanned, as if a student had written all of it
    for path in course_notebooks():
        cells = json.loads(path.read_text())["cells"]
        code = [(cell_source(c), True) for c in cells if c["cell_type"] == "code"]
        assert find_patches(code) == {}, path.name


def test_unedited_given_cells_are_trusted_but_teach_aliases():
    given = "import cifar_lab as course\ncourse.check_that = print"  # not scanned: release code
    found = find_patches([(given, False), ("course.record = print", True)])
    assert found == {1: [(1, "writes course.record")]}


def test_huge_and_deep_cells_are_read_in_one_pass():
    chain = "lab" + ".a" * 2_000 + " = 1"  # a long target (5,000 does not even compile)
    many = "\n".join(f"x{i} = lab.load_cifar10" for i in range(20_000)) + "\nx3.y = 1"
    deep = "lab.check_that = " + "(" * 5_000 + "1" + ")" * 5_000  # too deep to parse
    found = find_patches([(chain, True), (many, True), (deep, True)])
    assert found[0][0][1].startswith("writes ...") and found[0][0][1].endswith(".a.a")
    assert found[1] == [(20_001, "writes x3.y")]
    assert "does not parse mentions check_that" in found[2][0][1]


@pytest.mark.parametrize(
    ("payload", "verdict"),
    [
        ({"what": "w", "passed": True}, "passed"),
        ({"what": "w", "passed": False}, "failed"),
        ({"what": "w", "passed": "true"}, "failed"),
        ({"what": "a", "value": 0.5, "minimum": 0.4, "passed": True}, "passed"),
        ({"what": "a", "value": 0.3, "minimum": 0.4, "passed": False}, "failed"),
        ({"what": "a", "value": 0.3, "minimum": 0.4, "passed": True}, "forged"),
        ({"what": "a", "value": 0.05, "minimum": 0.01, "passed": True}, "forged"),
        ({"what": "a", "value": 0.5, "minimum": 0.4, "passed": False}, "forged"),
        ({"what": "a", "value": 10**400, "minimum": 0.4, "passed": True}, "forged"),
        ({"what": "a", "value": "0.9", "minimum": 0.4, "passed": True}, "forged"),
        ([1, 2], "forged"),
    ],
)
def test_check_verdicts_are_recomputed(payload, verdict):
    assert check_verdict(payload)[0] == verdict
    assert pytest.approx(0.14) == TRUSTED_MINIMUM


def test_grade_output_defaults_come_from_the_dataclass():
    from cifar_lab.__main__ import build_parser

    args = build_parser().parse_args(["grade", "subs", "--out", "report.csv"])
    assert grade_outputs(args) == GradeOutputs()
    args = build_parser().parse_args(["grade", "s", "--out", "r.csv", "--no-feedback"])
    assert grade_outputs(args).feedback_dir is None


def test_gradebook_rows_fill_unscored_submissions():
    rows = gradebook_rows(
        [
            {"student": "a", "total_points": "84", "max_points": "100", "status": "ok"},
            {"student": "b", "total_points": "", "max_points": "", "status": "damaged"},
        ]
    )
    assert rows[0] == {"student": "a", "total": 84, "max": 100, "status": "ok"}
    assert rows[1] == {"student": "b", "total": 0, "max": 100, "status": "damaged"}
