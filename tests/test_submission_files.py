"""A submission's files: duplicate zip members and symbolic links are findings, not graded ok.

The Part V model is left out of these submissions (its row is then
``incomplete``), so no test here needs TensorFlow; the rows are compared by
their problems.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import pytest
from instructor_fixtures import course_source, write_submission, zip_folder

from cifar_lab.instructor.grading import GradeSettings, grade_folder
from cifar_lab.instructor.submission import copy_folder, duplicate_member, extract_zip
from cifar_lab.tuning.part5 import MODEL_FILE, PART5_DIR

NB03 = "03_keras_model_subclassing.ipynb"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return course_source(tmp_path_factory.mktemp("course") / "source")


def _student(batch: Path, name: str, source: Path) -> Path:
    root = write_submission(batch / name, source, Path(os.devnull), test_accuracy=0.5)
    (root / PART5_DIR / MODEL_FILE).unlink()  # no model: no TensorFlow in these tests
    return root


def _grade(batch: Path) -> dict[str, dict]:
    settings = GradeSettings(source="synthetic", num_test=20, rerun=None)  # the static read
    rows = grade_folder(batch, settings, verbose=False)
    return {row["student"]: row for row in rows}


def test_duplicate_zip_members_make_the_submission_damaged(tmp_path, source):
    batch = tmp_path / "batch"
    work = _student(tmp_path / "work", "dave", source)
    batch.mkdir()
    archive = zip_folder(work, batch / "dave.zip")
    with warnings.catch_warnings(), zipfile.ZipFile(archive, "a") as out:
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns: "Duplicate name"
        out.writestr(NB03, "{}")  # a second 03, which extraction would let win
    row = _grade(batch)["dave"]
    assert row["status"] == "damaged"
    assert f"zip holds 2 members named '{NB03}'" in row["problems"][0]


def test_duplicate_member_names_only_real_repeats():
    infos = [zipfile.ZipInfo(n) for n in ("a.ipynb", "part5/x", "part5\\x")]
    assert "'part5/x'" in duplicate_member(infos)
    assert duplicate_member(infos[:2]) is None


def test_a_link_to_another_students_notebook_is_a_finding(tmp_path, source):
    batch = tmp_path / "batch"
    alice = _student(batch, "alice", source)
    bob = _student(batch, "bob", source)
    (bob / NB03).unlink()
    (bob / NB03).symlink_to(alice / NB03)  # bob hands in alice's work
    rows = _grade(batch)
    assert rows["alice"]["03_executed_in_order"] == "yes"
    assert rows["bob"]["status"] == "flagged"
    assert rows["bob"]["03_executed_in_order"] != "yes"  # alice's notebook was not graded
    problem = next(p for p in rows["bob"]["problems"] if "symbolic link" in p)
    assert problem.startswith("03: ") and str(alice / NB03) in problem
    assert "outside the submission; not followed" in problem


def test_a_link_inside_the_submission_is_read_as_its_target(tmp_path, source):
    batch = tmp_path / "batch"
    carol = _student(batch, "carol", source)
    (carol / "drafts").mkdir()
    (carol / NB03).rename(carol / "drafts" / NB03)
    (carol / NB03).symlink_to(Path("drafts") / NB03)  # relative, stays inside
    row = _grade(batch)["carol"]
    assert row["03_executed_in_order"] == "yes"
    assert not [p for p in row["problems"] if "symbolic link" in p or "03:" in p]


def test_copy_folder_skips_fifos_and_applies_the_size_limits(tmp_path, source):
    root = _student(tmp_path, "erin", source)
    (root / "01_preparation.ipynb").unlink()
    os.mkfifo(root / "01_preparation.ipynb")  # reading it would block the grader forever
    dest = tmp_path / "copy"
    settings = GradeSettings(max_file_bytes=10)
    (root / PART5_DIR / MODEL_FILE).write_bytes(b"x" * 11)
    refused = copy_folder(root, dest, settings, max_files=200)
    assert "not a regular file" in refused["01_preparation.ipynb"].message
    assert (
        "over the" in refused[MODEL_FILE].message and not (dest / PART5_DIR / MODEL_FILE).exists()
    )
    assert (dest / NB03).is_file()
    assert "more than 3" in copy_folder(root, tmp_path / "c2", settings, max_files=3)[""].message


def test_zip_and_folder_refuse_the_same_oversized_notebook_alike(tmp_path, source):
    root = _student(tmp_path, "fay", source)
    settings = GradeSettings(max_notebook_bytes=1000)
    from_zip = extract_zip(zip_folder(root, tmp_path / "fay.zip"), tmp_path / "z", settings)
    from_folder = copy_folder(root, tmp_path / "f", settings, max_files=200)
    assert str(from_zip[NB03]) == str(from_folder[NB03])
