"""Error text for people: one plain line, in the words of the interface they used.

The library spells every fix as a Python keyword argument (``source='keras'``).
The command line passes each error it reports through :func:`cli_spelling` with
the options of the command that ran, so its user reads ``--source keras``
instead; a keyword that the command has no option for stays as written.
:func:`plain_line` removes terminal colour codes (IPython colours its
tracebacks) and joins the lines, so what is printed or saved is one plain line.
Every command's help ends an option's text with :data:`DEFAULT`, so each option
shows its default the same way.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

DEFAULT = "default: %(default)s"  # argparse fills in the option's default

# CSI sequences (colours, cursor moves): ESC [ parameters intermediates final-byte
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
# name=value with a Python literal value: 'text', "text", a number, True/None ...;
# not preceded by a letter, digit, '-' or '.' (so CIFAR10_SOURCE=... never matches)
_KEYWORD = re.compile(
    r"(?<![\w.-])(?P<name>[a-z_][a-z0-9_]*)=(?P<value>'[^']*'|\"[^\"]*\"|[\w./+-]+)"
)


def plain_line(text: str) -> str:
    """Return ``text`` without ANSI escape codes, its lines joined by single spaces."""
    return " ".join(_ANSI.sub("", text).split())


def cli_spelling(text: str, flags: Mapping[str, str]) -> str:
    """Rewrite the Python keyword arguments in ``text`` as command-line options.

    Args:
        text: a message whose fixes are spelled ``name='value'``.
        flags: the options of the command that ran, keyword (argparse ``dest``)
            to flag, e.g. ``{"source": "--source"}``.

    Returns:
        ``text`` with ``source='/a b'`` written as ``--source '/a b'`` and
        ``force=True`` as ``--force``; keywords without an option, and values
        an option cannot take (``None``, ``False``), are left as they were.
    """

    def replace(match: re.Match) -> str:
        flag, value = flags.get(match["name"]), match["value"]
        if flag is None or value in ("None", "False"):
            return match[0]
        if value == "True":
            return flag
        if value[0] in "'\"":
            value = value[1:-1]
        return f"{flag} {shlex.quote(value)}"

    return _KEYWORD.sub(replace, text)
