"""The package's lazy public API: every exported name resolves from its module."""

from __future__ import annotations

import importlib

import pytest

import cifar_lab as lab


@pytest.mark.parametrize("name", lab.__all__)
def test_every_exported_name_resolves_to_its_module(name):
    module = importlib.import_module(f"cifar_lab.{lab._EXPORTS[name]}")
    assert getattr(lab, name) is getattr(module, name)


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        lab.no_such_name  # noqa: B018
