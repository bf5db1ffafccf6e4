"""The package's lazy public API: a small front door, written once, every name resolving."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import cifar_lab as lab

ROOT = Path(__file__).resolve().parents[1]


def _type_checking_imports() -> dict[str, str]:
    """{name: module} imported under ``if TYPE_CHECKING:`` in cifar_lab/__init__.py."""
    tree = ast.parse((ROOT / "cifar_lab" / "__init__.py").read_text())
    blocks = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name)
        if node.test.id == "TYPE_CHECKING"
    ]
    assert len(blocks) == 1
    imported = {}
    for node in blocks[0].body:
        assert isinstance(node, ast.ImportFrom), ast.dump(node)
        for alias in node.names:
            assert alias.asname is None and alias.name not in imported
            imported[alias.name] = node.module.removeprefix("cifar_lab.")
    return imported


@pytest.mark.parametrize("name", lab.__all__)
def test_every_exported_name_resolves_to_its_module(name):
    module = importlib.import_module(f"cifar_lab.{lab._EXPORTS[name]}")
    assert getattr(lab, name) is getattr(module, name)


def test_the_type_checking_block_imports_exactly_the_exports():
    assert _type_checking_imports() == lab._EXPORTS


def test_dir_lists_the_exports_only():
    lab.check_that  # noqa: B018  (a name already loaded is listed once)
    assert dir(lab) == lab.__all__ == sorted(lab._EXPORTS)
    for name in ("os", "re", "sys", "tempfile", "TYPE_CHECKING", "annotations", "import_module"):
        assert name not in dir(lab)
    assert not [name for name in dir(lab) if name.startswith("_")]


def test_every_exported_name_appears_in_a_notebook():
    # the front door is for the notebooks; library and instructor names stay in their modules
    text = "\n".join(path.read_text() for path in sorted((ROOT / "notebooks").glob("*.ipynb")))
    unused = [name for name in lab.__all__ if not re.search(rf"\b{name}\b", text)]
    assert not unused


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        lab.no_such_name  # noqa: B018
