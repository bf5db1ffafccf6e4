"""Every command and option the README and docs/ name exists.

The documentation shows commands as ``cifar-lab COMMAND --option ...`` or
``python -m cifar_lab COMMAND --option ...``, in code blocks and in inline code.
Each one is read out of the Markdown and checked against the ``--help`` text of
the command it names, as a reader would check it; a renamed or removed option
then fails here instead of in a reader's terminal. The site itself is built with
``make docs`` (``mkdocs build --strict``, in ``.ci/run``), which checks its links.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from cifar_lab.__main__ import build_parser

PAGES = sorted([REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")])
# the command line's two names; not cifar_lab.instructor.points and other modules
PROGRAM = re.compile(r"(?:\bcifar-lab|\bpython -m cifar_lab)(?![\w.])")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`([^`\n]+(?:\n[^`\n]+)?)`")  # a span may wrap onto a second line
SHELL_END = re.compile(r"\s(?:#|&&|\|\||[|;<>]|2>)")  # a comment or the next command
FLAG = re.compile(r"(?<![\w-])(--?[a-zA-Z][\w-]*)")


def commands_in(markdown: str) -> list[str]:
    """Each ``cifar-lab ...`` / ``python -m cifar_lab ...`` command line in a Markdown text.

    Args:
        markdown: a page's text.

    Returns:
        What follows the program name on each, up to a shell comment or operator, e.g.
        ``"grade submissions/ --out report.csv"``.
    """
    found = []
    blocks = [block.replace("\\\n", " ") for block in FENCE.findall(markdown)]
    lines = [line for block in blocks for line in block.splitlines()]
    prose = FENCE.sub("", markdown)
    lines += [" ".join(span.split()) for span in INLINE.findall(prose)]
    for line in lines:
        for match in PROGRAM.finditer(line):
            rest = line[match.end() :]
            end = SHELL_END.search(rest)
            found.append(" ".join(rest[: end.start() if end else None].split()))
    return found


def command_and_flags(command_line: str) -> tuple[str | None, list[str]]:
    """The sub-command a command line names (None: none) and the options it passes."""
    words = shlex.split(command_line.replace("[", " ").replace("]", " "))
    command = next((w for w in words if not w.startswith("-")), None)
    flags = [w.split("=", 1)[0] for w in words if FLAG.fullmatch(w.split("=", 1)[0])]
    return command, flags


def help_flags() -> dict[str | None, set[str]]:
    """Each sub-command's options as its ``--help`` lists them (None: the program's own)."""
    parser = build_parser("cifar-lab")
    subparsers = next(a for a in parser._actions if a.dest == "command")
    texts = {None: parser.format_help()}
    texts.update({name: sub.format_help() for name, sub in subparsers.choices.items()})
    # the usage block (up to the first blank line) lists every option but --help
    usage = {name: text.split("\n\n", 1)[0] for name, text in texts.items()}
    return {name: {"--help", *FLAG.findall(text)} for name, text in usage.items()}


def unknown_in(command_lines: list[str], known: dict[str | None, set[str]]) -> list[str]:
    """The command lines naming a command or option that ``--help`` does not list."""
    wrong = []
    for line in command_lines:
        command, flags = command_and_flags(line)
        if command is not None and (command.isupper() or command == "..."):  # COMMAND --help
            command, flags = None, [f for f in flags if f in known[None]]
        if command not in known:
            wrong.append(f"{line!r}: no command {command!r}")
            continue
        wrong += [f"{line!r}: {command or 'cifar-lab'} has no {f}" for f in flags
                  if f not in known[command]]  # fmt: skip
    return wrong


def test_every_documented_command_and_option_exists():
    known = help_flags()
    by_page = {page.relative_to(REPO_ROOT): commands_in(page.read_text()) for page in PAGES}
    wrong = [f"{page}: {w}" for page, lines in by_page.items() for w in unknown_in(lines, known)]
    assert not wrong, "documented but not in --help:\n" + "\n".join(wrong)
    # the reading above finds the docs' commands, not nothing
    documented = [command_and_flags(line) for lines in by_page.values() for line in lines]
    commands = {command for command, _ in documented}
    assert {"run", "grade", "submit", "release", "notebooks", "train-best"} <= commands
    flags = {flag for _, found in documented for flag in found}
    assert {"--config", "--write-config", "--workers", "--profile", "--only"} <= flags


def test_a_wrong_option_or_command_in_the_docs_is_found():
    page = (
        "Run `cifar-lab run --profile quick --only 01` first.\n"
        "```bash\n"
        "python -m cifar_lab grade submissions/ --out r.csv \\\n"
        "    --no-such-option 3   # a comment --not-an-option\n"
        ".venv/bin/python -m cifar_lab gradee x\n"
        "python -m cifar_lab.instructor.points --write   # another module\n"
        "```\n"
    )
    lines = commands_in(page)
    assert lines == [
        "grade submissions/ --out r.csv --no-such-option 3",
        "gradee x",
        "run --profile quick --only 01",
    ]
    wrong = unknown_in(lines, help_flags())
    assert len(wrong) == 2
    assert "grade has no --no-such-option" in wrong[0] and "no command 'gradee'" in wrong[1]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_docs_pages_link_to_pages_that_exist(page: Path):
    # mkdocs build --strict checks the site's links (CI); the README is not in the site
    for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", page.read_text()):
        assert (page.parent / target).is_file(), f"{page.name} links to missing {target}"


def test_readme_is_a_front_page():
    readme = (REPO_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150, "the README is the front page: move detail to docs/"
    for command in ("make run", "make test", "python -m cifar_lab run --profile quick --only 01"):
        assert command in readme, command
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert all(f"\n{target}:" in makefile for target in ("run", "test", "docs"))
    assert (
        "mkdocs build --strict" in makefile and "make docs" in (REPO_ROOT / ".ci/run").read_text()
    )
