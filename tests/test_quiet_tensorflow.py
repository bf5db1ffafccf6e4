"""TensorFlow's C++ log lines stay out of scripts and CI logs once cifar_lab is imported.

(tests/test_notebooks.py runs the same in a Jupyter kernel and checks the
notebooks import cifar_lab first.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} ", re.MULTILINE)
ABSL_BANNER = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
)

# What absl writes to file descriptor 2 while TensorFlow loads, one line per severity.
FAKE_TENSORFLOW_LOG = """
import os

from cifar_lab.quiet_tensorflow import tensorflow_log_filter

with tensorflow_log_filter():
    os.write(2, b"%s\\n" % BANNER)
    for severity in "IWEF":
        os.write(2, b"%s0000 00:00:1795939068.873586   11634 port.cc:153] %s line\\n" % (
            severity.encode(), severity.encode()))
    os.write(2, b"a line of someone else\\n")
"""


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )


def test_the_filter_drops_the_lines_below_the_log_level():
    code = FAKE_TENSORFLOW_LOG.replace("BANNER", repr(ABSL_BANNER.encode()))
    kept = {
        level: run_python(code, **({"TF_CPP_MIN_LOG_LEVEL": level} if level else {})).stderr
        for level in ("", "0", "2")
    }
    # cifar_lab's default, 3: only FATAL (and other programs' lines) pass
    assert kept[""].splitlines() == [
        "F0000 00:00:1795939068.873586   11634 port.cc:153] F line",
        "a line of someone else",
    ]
    assert len(kept["0"].splitlines()) == 6  # asked for everything: nothing dropped
    assert [line[0] for line in kept["2"].splitlines()] == ["E", "F", "a"]


def test_a_script_that_imports_cifar_lab_first_shows_no_tensorflow_log_line():
    done = run_python(
        "import cifar_lab\nimport keras\nimport tensorflow as tf\n"
        "print(float(tf.reduce_sum(keras.layers.Dense(2)(tf.ones((1, 3))) * 0)))"
    )
    assert done.stdout == "0.0\n"
    assert not TF_LOG_LINE.search(done.stderr), done.stderr
    assert "absl::InitializeLog" not in done.stderr and "oneDNN" not in done.stderr, done.stderr
