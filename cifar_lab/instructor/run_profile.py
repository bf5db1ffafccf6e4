"""The profile a submission's saved work ran in, and whether the assignment accepts it.

Every ``lab.record`` payload names the profile its notebook ran in
(:func:`cifar_lab.results.record`), and ``part5/results.json`` names the profile
the saved model was trained in (:func:`cifar_lab.tuning.part5.save_final_model`).
``grade`` reads both, writes the submission's profile in the report's ``profile``
column and, unless told to accept it (``grade --accept-profile quick``, for
practice rounds), flags work done in a profile the assignment does not ask for:
quick-profile work trains on a tenth of the data and would otherwise earn every
autograded point.

A name is what the student's files say, so anything but a known profile name
counts as not recorded. Work saved before profiles were recorded names none:
its profile is ``"unknown"`` and it is not flagged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cifar_lab.instructor.findings import Finding
from cifar_lab.profiles import PROFILES
from cifar_lab.results import read_outputs
from cifar_lab.tuning.split_record import PROFILE_KEY

UNKNOWN = "unknown"  # the column's value when no saved result names a profile
MIXED = "mixed"  # ... and when they name more than one
FIX = "run every notebook again in the full profile (unset CIFAR_LAB_PROFILE), then submit"


def profile_name(value: Any) -> str | None:
    """A recorded profile name if it is one of :data:`cifar_lab.profiles.PROFILES`, else None."""
    return value if isinstance(value, str) and value in PROFILES else None


def notebook_profiles(notebook: dict) -> frozenset[str]:
    """The profiles named by a notebook's ``lab.record`` payloads (empty: none named one).

    Args:
        notebook: a parsed notebook (JSON dict or nbformat node), untrusted.

    Returns:
        The known profile names found, e.g. ``frozenset({"quick"})``.
    """
    found = (profile_name(result.get(PROFILE_KEY)) for result in read_outputs(notebook)["results"])
    return frozenset(name for name in found if name is not None)


def part5_profiles(saved: Mapping[str, Any] | None) -> frozenset[str]:
    """The profile ``part5/results.json`` names (empty: none, or not a known name).

    Args:
        saved: the parsed results.json (``read_part5_results``), or None when unreadable.
    """
    name = profile_name(saved.get(PROFILE_KEY)) if isinstance(saved, Mapping) else None
    return frozenset() if name is None else frozenset({name})


def profile_label(profiles: Iterable[str]) -> str:
    """The report's value for a set of profile names: the one name, "mixed" or "unknown"."""
    names = set(profiles)
    if not names:
        return UNKNOWN
    return names.pop() if len(names) == 1 else MIXED


def profile_findings(
    by_place: Mapping[str, frozenset[str]], accepted: Iterable[str]
) -> list[Finding]:
    """One ``flagged`` finding per profile the work ran in that the assignment does not accept.

    Args:
        by_place: profiles per place: a notebook stem or ``"part5"``.
        accepted: the accepted profile names (``GradeSettings.accept_profiles``).

    Returns:
        E.g. "ran in the quick profile; this assignment asks for full (01, 05, part5)".
    """
    accepted = tuple(accepted)
    asked = " or ".join(accepted)
    findings = []
    for name in sorted(set().union(*by_place.values()) - set(accepted)):
        places = ", ".join(
            place[:2] if place[:2].isdigit() else place
            for place, profiles in by_place.items()
            if name in profiles
        )
        message = f"ran in the {name} profile; this assignment asks for {asked} ({places})"
        findings.append(Finding("flagged", "submission", message, FIX))
    return findings


def submission_profile(
    inspections: Iterable[Any], saved_part5: Mapping[str, Any] | None, accepted: Iterable[str]
) -> tuple[str, list[Finding]]:
    """The ``profile`` column of a submission and the findings about it.

    Args:
        inspections: its notebooks' ``NotebookInspection`` objects (``name``, ``profiles``).
        saved_part5: its parsed ``part5/results.json``, or None.
        accepted: the profile names the assignment accepts.

    Returns:
        (``"full"``, ``"quick"``, ``"mixed"`` or ``"unknown"``; :func:`profile_findings`).
    """
    by_place = {inspection.name: inspection.profiles for inspection in inspections}
    by_place["part5"] = part5_profiles(saved_part5)
    return profile_label(set().union(*by_place.values())), profile_findings(by_place, accepted)
