"""Keeps TensorFlow's C++ start-up log out of notebooks, scripts and CI logs.

Why: TensorFlow prints lines such as "oneDNN custom operations are on" and, on a
machine without a GPU driver, "failed call to cuInit" (ERROR) while it loads; students
read them as failures. :func:`install` (run by ``import cifar_lab``) sets
``TF_CPP_MIN_LOG_LEVEL`` to 3 (FATAL only) unless it is set, and runs the first
``import tensorflow`` with file descriptor 2 passed through a filter that drops the
absl lines below that level, which absl writes before it reads the level. Real
failures still raise Python exceptions.

It also drops one Python log line of TensorFlow's, "N out of the last M calls to
<function ...> triggered tf.function retracing": every trial of a search builds a
new model, whose ``fit`` traces its own step function, so the warning fires in
every search while nothing is wrong (see :class:`RetracingFilter`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator

from cifar_lab.first_import import on_first_import

# An absl log line ("I0000 00:00:1795939068.873586   11634 port.cc:153] ..."; severity
# I=0, W=1, E=2, F=3) or the banner absl prints before it is initialised.
_TF_LOG_LINE = re.compile(
    r"^(?:(?P<severity>[IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called)"
)


@contextlib.contextmanager
def tensorflow_log_filter() -> Iterator[None]:
    """Drop the absl lines below ``TF_CPP_MIN_LOG_LEVEL`` written to fd 2 inside the block."""
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")
    level = int(level) if level.isdigit() else 0
    with tempfile.TemporaryFile() as capture:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(capture.fileno(), 2)
        except (OSError, ValueError, AttributeError):  # no file descriptor 2: nothing to filter
            yield
            return
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = []
            for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True):
                match = _TF_LOG_LINE.match(line)
                severity = match and ("IWEF".index(match["severity"]) if match["severity"] else 0)
                if match is None or severity >= level:
                    kept.append(line)
            if kept:
                os.write(2, "".join(kept).encode("utf-8"))


class RetracingFilter(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning; keeps every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def quiet_retracing_warning() -> None:
    """Add :class:`RetracingFilter` to the ``tensorflow`` logger (once)."""
    logger = logging.getLogger("tensorflow")
    if not any(isinstance(found, RetracingFilter) for found in logger.filters):
        logger.addFilter(RetracingFilter())


def install() -> None:
    """Default ``TF_CPP_MIN_LOG_LEVEL`` to 3 and filter the first ``import tensorflow``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    on_first_import("tensorflow", around=tensorflow_log_filter, after=quiet_retracing_warning)
