"""The profile is part of the grade: the notebooks record it, the report shows it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from instructor_fixtures import (
    NUM_TEST,
    code_cells,
    course_source,
    edit_notebook,
    run_cli,
    synthetic_val_accuracy,
    train_models,
    write_submission,
    zip_folder,
)

from cifar_lab.instructor.grading import GradeSettings
from cifar_lab.instructor.inspection import (
    notebook_profiles,
    part5_profiles,
    profile_findings,
    profile_label,
    submission_profile,
)
from cifar_lab.instructor.release import release
from cifar_lab.results import RESULT_MIME
from cifar_lab.tuning.part5 import PART5_DIR, RESULTS_FILE

QUICK_FLAG = "ran in the quick profile; this assignment asks for full"


def _results_notebook(*profiles) -> dict:
    """A notebook with one recorded result per entry; an entry is the payload's profile value."""
    outputs = []
    for index, profile in enumerate(profiles):
        data = {"name": f"r{index}", "value": 0.5, "key": False}
        if profile is not None:
            data["profile"] = profile
        outputs.append(
            {"output_type": "display_data", "metadata": {}, "data": {RESULT_MIME: data}}
        )
    return {"cells": [{"cell_type": "code", "source": "", "outputs": outputs}]}


def test_a_notebook_names_the_profiles_its_results_ran_in():
    assert notebook_profiles(_results_notebook("quick", "quick")) == {"quick"}
    assert notebook_profiles(_results_notebook("full", "quick")) == {"full", "quick"}
    # saved before profiles were recorded, or forged into something that is no profile
    assert notebook_profiles(_results_notebook(None)) == frozenset()
    assert notebook_profiles(_results_notebook("turbo", ["quick"], 3, {"a": 1})) == frozenset()
    assert part5_profiles({"profile": "quick"}) == {"quick"}
    assert part5_profiles({"profile": ["full"]}) == part5_profiles(None) == frozenset()


def test_the_column_names_one_profile_mixed_or_unknown():
    assert profile_label({"full"}) == "full"
    assert profile_label({"quick", "full"}) == "mixed"
    assert profile_label(set()) == "unknown"


def test_only_profiles_not_accepted_are_flagged_with_their_places():
    by_place = {
        "01_preparation": frozenset({"full"}),
        "05_tuning": frozenset({"quick", "full"}),
        "part5": frozenset({"quick"}),
    }
    (finding,) = profile_findings(by_place, ("full",))
    assert finding.severity == "flagged"
    assert str(finding) == f"submission: {QUICK_FLAG} (05, part5)"
    assert profile_findings(by_place, ("full", "quick")) == []
    (everything,) = profile_findings(by_place, ("quick",))
    assert "ran in the full profile; this assignment asks for quick (01, 05)" in str(everything)


def test_accepted_profiles_are_validated():
    assert GradeSettings().accept_profiles == ("full",)
    with pytest.raises(ValueError, match="unknown accept_profiles 'fast'"):
        GradeSettings(accept_profiles=("full", "fast"))
    with pytest.raises(ValueError, match="at least one"):
        GradeSettings(accept_profiles=())
    with pytest.raises(TypeError, match="must be a tuple"):
        GradeSettings(accept_profiles="quick")


def _set_profile(root: Path, notebooks: str | None, part5: str | None) -> None:
    """Write ``notebooks`` into every recorded result and ``part5`` into results.json."""

    def change(notebook: dict) -> None:
        for cell in code_cells(notebook):
            for output in cell["outputs"]:
                data = output.get("data", {}).get(RESULT_MIME)
                if data is not None and notebooks is not None:
                    data["profile"] = notebooks

    for path in sorted(root.glob("*.ipynb")):
        edit_notebook(root, path.stem, change)
    saved = json.loads((root / PART5_DIR / RESULTS_FILE).read_text())
    if part5 is not None:
        saved["profile"] = part5
    (root / PART5_DIR / RESULTS_FILE).write_text(json.dumps(saved))


# student -> (profile of the notebooks' results, of part5/results.json)
PROFILES_RUN = {
    "full": ("full", "full"),
    "quick": ("quick", "quick"),
    "quick_model": ("full", "quick"),
    "old": (None, None),
}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Clean submissions that differ only in the profiles their files name."""
    base = tmp_path_factory.mktemp("profiles")
    source = course_source(base / "source")
    manifest = release(base / "release", source_dir=source)
    models = train_models(base / "models")
    submissions = base / "submissions"
    submissions.mkdir()
    for student, (notebooks, part5) in PROFILES_RUN.items():
        # the validation claim is recomputed on the split of the profile part5/ names
        claim = synthetic_val_accuracy(models.good, part5 or "full")
        root = write_submission(
            base / "work" / student, source, models.good, models.good_accuracy, claim
        )
        _set_profile(root, notebooks, part5)
        zip_folder(root, submissions / f"{student}.zip")
    return submissions, manifest


def _grade(batch, out: Path, *options: str) -> dict[str, dict]:
    submissions, manifest = batch
    argv = [str(submissions), "--out", str(out), "--manifest", str(manifest)]
    argv += ["--source", "synthetic", "--num-test", str(NUM_TEST), "--no-feedback", *options]
    argv += ["--trust-outputs"]  # the profile of the saved work: no re-execution needed
    assert run_cli("grade", *argv) == 0
    return {row["student"]: row for row in json.loads(out.with_suffix(".json").read_text())}


def test_quick_work_is_flagged_by_default_and_accepted_when_asked(batch, tmp_path):
    rows = _grade(batch, tmp_path / "default" / "report.csv")
    assert {s: r["profile"] for s, r in rows.items()} == {
        "full": "full",
        "quick": "quick",
        "quick_model": "mixed",
        "old": "unknown",
    }
    for student in ("full", "old"):
        assert rows[student]["status"] == "ok", rows[student]["problems"]
        assert not any("profile" in p for p in rows[student]["problems"])
    assert rows["quick"]["status"] == "flagged"
    assert f"submission: {QUICK_FLAG} (01, 02, 03, 04, 05, part5)" in rows["quick"]["problems"]
    assert rows["quick_model"]["status"] == "flagged"
    assert f"submission: {QUICK_FLAG} (part5)" in rows["quick_model"]["problems"]

    accepted = _grade(batch, tmp_path / "practice" / "report.csv", "--accept-profile", "quick")
    for student, row in accepted.items():
        assert row["status"] == "ok", (student, row["problems"])
        assert row["profile"] == rows[student]["profile"]
    with open(tmp_path / "practice" / "report.csv") as handle:
        assert "profile" in handle.readline().strip().split(",")


def test_the_executed_notebooks_record_the_profile_they_ran_in(executed_notebooks):
    """The course notebooks, executed once in the quick profile, say so, and part5/ too."""
    stems = sorted(
        path.stem for path in (Path(__file__).parents[1] / "notebooks").glob("0*.ipynb")
    )

    class Inspection:
        def __init__(self, name: str) -> None:
            run = executed_notebooks[name]
            assert run.problem is None, run.problem
            self.name, self.profiles = name, notebook_profiles(run.notebook)
            self.folder = run.folder

    inspections = [Inspection(stem) for stem in stems]
    assert all(inspection.profiles == {"quick"} for inspection in inspections)
    saved = json.loads((inspections[-1].folder / PART5_DIR / RESULTS_FILE).read_text())
    profile, findings = submission_profile(inspections, saved, ("full",))
    assert profile == "quick"
    assert [str(f) for f in findings] == [f"submission: {QUICK_FLAG} (01, 02, 03, 04, 05, part5)"]
    assert submission_profile(inspections, saved, ("full", "quick")) == ("quick", [])
