"""Tests for run profiles."""

from __future__ import annotations

import pytest

from cifar_lab import profiles
from cifar_lab.data import sources


def test_profile_comes_from_environment_and_defaults_to_full(monkeypatch):
    monkeypatch.delenv("CIFAR_LAB_PROFILE", raising=False)
    assert profiles.get_profile().name == "full"
    monkeypatch.setenv("CIFAR_LAB_PROFILE", "quick")
    assert profiles.get_profile().name == "quick"
    monkeypatch.setenv("CIFAR_LAB_PROFILE", "fast")
    with pytest.raises(ValueError, match=r"'fast'.*\['full', 'quick'\]"):
        profiles.get_profile()


def test_full_profile_is_the_assignment():
    full = profiles.get_profile("full")
    assert (full.num_training, full.num_validation, full.num_epochs) == (49_000, 1_000, 1)
    assert (full.min_val_accuracy, full.min_fit_accuracy) == (0.40, 0.42)
    quick = profiles.get_profile("quick")
    assert quick.num_training < full.num_training
    assert quick.min_val_accuracy <= full.min_val_accuracy


def test_quick_profile_says_when_it_uses_synthetic_data(monkeypatch, capsys):
    monkeypatch.setattr(sources, "_is_online", lambda *a, **k: False)
    data = profiles.load_profile_data(profiles.get_profile("quick"))
    assert "synthetic" in data.source
    assert "SYNTHETIC" in capsys.readouterr().out


def test_full_profile_never_falls_back_to_synthetic(monkeypatch):
    monkeypatch.setattr(sources, "_is_online", lambda *a, **k: False)
    with pytest.raises(sources.CIFAR10NotFoundError):
        profiles.load_profile_data(profiles.get_profile("full"))


def test_quick_picked_by_nbgrader_never_grades_on_synthetic_data(monkeypatch, capsys):
    monkeypatch.setattr(sources, "_is_online", lambda *a, **k: False)
    monkeypatch.delenv("CIFAR_LAB_PROFILE", raising=False)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    quick = profiles.get_profile()
    assert quick.name == "quick"
    with pytest.raises(sources.CIFAR10NotFoundError, match="export CIFAR10_SOURCE"):
        profiles.load_profile_data(quick)
    with pytest.raises(sources.CIFAR10NotFoundError):  # no profile given: get_profile()'s
        profiles.load_profile_data()
    assert "SYNTHETIC" not in capsys.readouterr().out
    monkeypatch.setenv("CIFAR_LAB_PROFILE", "quick")  # asked for: the stand-in is allowed
    assert "synthetic" in profiles.load_profile_data(profiles.get_profile()).source


@pytest.mark.parametrize("given_by", ["argument", "CIFAR10_SOURCE"])
def test_quick_profile_never_replaces_a_given_source(monkeypatch, capsys, tmp_path, given_by):
    """A typo in a given path is an error naming it, not a run on stand-in data."""
    monkeypatch.setattr(sources, "_is_online", lambda *a, **k: False)
    missing = tmp_path / "nope" / "cifar.tgz"
    source = None
    if given_by == "argument":
        source = missing
    else:
        monkeypatch.setenv("CIFAR10_SOURCE", str(missing))
    with pytest.raises(sources.CIFAR10NotFoundError, match="does not exist") as caught:
        profiles.load_profile_data(profiles.get_profile("quick"), source=source)
    assert str(missing) in str(caught.value)
    assert ("$CIFAR10_SOURCE" in str(caught.value)) == (given_by == "CIFAR10_SOURCE")
    assert "SYNTHETIC" not in capsys.readouterr().out
