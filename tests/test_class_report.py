"""The class report of a real graded batch: every section, damaged submissions, escaping.

A small batch is graded through the real CLI (fixtures as in
``test_grading_points.py``): a clean submission, one whose check fails with
a message holding HTML, one whose student name and code hold HTML, and an
unreadable zip. The per-check ``checks`` field is added to the rows from the
notebooks' scores, as the grader is to add it (:func:`checks_field`).
"""

from __future__ import annotations

import base64
import csv
import importlib.util
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from instructor_fixtures import (
    NUM_TEST,
    course_source,
    edit_notebook,
    payload,
    run_cli,
    train_models,
    write_submission,
)

from cifar_lab.instructor.class_view.report import (
    CSV_COLUMNS,
    checks_field,
    render_class_report,
    write_batch_report,
    write_class_report,
)
from cifar_lab.instructor.class_view.similarity import find_similar
from cifar_lab.instructor.class_view.sources import collect_sources, course_references
from cifar_lab.instructor.notebooks import course_notebooks
from cifar_lab.instructor.release import load_manifest, release
from cifar_lab.instructor.report import student_id
from cifar_lab.instructor.scoring import score_notebook
from cifar_lab.results import CHECK_MIME

SECTIONS = ("points", "checks", "leaderboard", "problems", "timing", "similar")
EVIL = "<script>alert('x')</script>"
HOSTILE_STUDENT = "mallory<b>"
CHROMIUM = Path("/usr/bin/chromium")
CHECK_CALLS = re.compile(r"check_(?:that|close)\(")


def _cell(notebook: dict, grade_id: str) -> dict:
    return next(
        c
        for c in notebook["cells"]
        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id
    )


def _all_checks_pass(notebook: dict) -> None:
    """Give every check_that/check_close call the passing payload it prints when run."""
    for cell in notebook["cells"]:
        for _ in CHECK_CALLS.findall("".join(cell.get("source", ""))):
            data = {"what": "property", "passed": True}
            cell["outputs"].append(payload(CHECK_MIME, data, "check passed: property"))


def _fail_check(notebook: dict) -> None:
    """standardise_splits_check fails, its message holding HTML."""
    cell = _cell(notebook, "standardise_splits_check")
    failed = {"what": "X_train has mean 0", "passed": False}
    evalue = f"X_train has mean 0: not so {EVIL}"
    error = {"output_type": "error", "ename": "AssertionError", "evalue": evalue, "traceback": []}
    cell["outputs"] = [payload(CHECK_MIME, failed, "check FAILED"), error]


def _html_in_code(notebook: dict) -> None:
    cell = _cell(notebook, "standardise_splits")
    source = "".join(cell["source"]).replace(
        "    mean = X_train.mean(", f"    # {EVIL}\n    mean = X_train.mean("
    )
    cell["source"] = source


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    base = tmp_path_factory.mktemp("class_report")
    source = course_source(base / "source")
    manifest_path = release(base / "release", source_dir=source)
    models = train_models(base / "models")
    submissions = base / "submissions"
    for student in ("alice", "bob", HOSTILE_STUDENT):
        root = write_submission(submissions / student, source, models.good, models.good_accuracy)
        for path in course_notebooks(root):
            edit_notebook(root, path.stem, _all_checks_pass)
    edit_notebook(submissions / "bob", "01_preparation", _fail_check)
    edit_notebook(submissions / HOSTILE_STUDENT, "01_preparation", _html_in_code)
    (submissions / "carol.zip").write_bytes(b"this is not a zip")
    out = base / "report" / "report.csv"
    argv = [str(submissions), "--out", str(out), "--manifest", str(manifest_path)]
    argv += ["--trust-outputs"]  # the static read: this test is about the class view
    assert run_cli("grade", *argv, "--source", "synthetic", "--num-test", str(NUM_TEST)) == 0
    # grade itself writes the class view beside the report, damaged zip included
    written = (out.parent / "class_report.html").read_text(encoding="utf-8")
    assert "carol" in written and (out.parent / "class_report.csv").stat().st_size > 0
    carol = student_id("carol")
    assert f'href="feedback/{carol}.html"' in written  # the damaged zip, linked to its page
    rows = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    manifest = load_manifest(manifest_path)
    for row in rows:  # the checks field, from the scores, as the grader is to add it
        folder = submissions / row["student"]
        if folder.is_dir():
            scores = [
                score_notebook(
                    path.stem,
                    json.loads(path.read_text(encoding="utf-8")),
                    manifest["notebooks"][path.stem],
                    part5_verified=row["part5_claim_verified"],
                )
                for path in course_notebooks(folder)
            ]
            row["checks"] = checks_field(scores)
    html_path, csv_path = write_batch_report(rows, submissions, out.parent, source_dir=source)
    found = collect_sources(submissions)
    similarity = find_similar(
        found.sources,
        course_references(source),
        outputs=found.outputs,
        model_digests=found.model_digests,
    )
    return {
        "rows": rows,
        "html": html_path.read_text(encoding="utf-8"),
        "html_path": html_path,
        "csv": _read_csv(csv_path),
        "similarity": similarity,
        "out": out.parent,
    }


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_every_section_is_present(batch):
    for section in SECTIONS:
        assert f'<section id="{section}">' in batch["html"], section
    assert "<script" not in batch["html"]  # no JavaScript, and nothing a student wrote runs
    assert "http://" not in batch["html"] and "https://" not in batch["html"]  # no network


def test_images_are_embedded_pngs(batch):
    sources = re.findall(r'<img src="([^"]+)"', batch["html"])
    assert len(sources) >= 3  # totals, per notebook, pass rates
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_student_text_is_escaped(batch):
    text = batch["html"]
    assert EVIL not in text and HOSTILE_STUDENT not in text
    assert html_escaped(EVIL) in text  # the failing message and the code, escaped
    assert html_escaped(HOSTILE_STUDENT) in text


def html_escaped(value: str) -> str:
    import html

    return html.escape(value, quote=True)


def test_damaged_submission_is_listed_with_its_feedback_link(batch):
    problems = batch["html"].split('<section id="problems">')[1].split("</section>")[0]
    assert "carol" in problems and "not a readable zip" in problems
    carol = student_id("carol")
    assert f'href="feedback/{carol}.html"' in problems
    assert (batch["out"] / "feedback" / f"{carol}.html").is_file()


def test_check_table_counts_the_failure(batch):
    by_check = {row["check"]: row for row in batch["csv"]}
    assert tuple(batch["csv"][0]) == CSV_COLUMNS
    failing = by_check["standardise_splits_check"]
    assert (failing["passed"], failing["failed"]) == ("2", "1")
    assert failing["most_common_failure_count"] == "1"
    assert float(batch["csv"][0]["pass_rate"]) <= float(batch["csv"][-1]["pass_rate"])
    assert "not so" in batch["html"].split('<section id="checks">')[1]


def test_leaderboard_and_timing(batch):
    leaderboard = batch["html"].split('<section id="leaderboard">')[1].split("</section>")[0]
    for student in ("alice", "bob"):
        assert f"<td>{student}</td>" in leaderboard
    assert "no ranks are given" in leaderboard  # the rows do not say which split
    timing = batch["html"].split('<section id="timing">')[1].split("</section>")[0]
    # grade times every submission, the damaged zip included
    seconds = [row["grading_seconds"] for row in batch["rows"]]
    assert len(seconds) == 4 and all(isinstance(s, float) and s >= 0 for s in seconds)
    assert f"Total {sum(seconds):.1f} s for 4 submissions" in timing


def test_similar_pairs_show_their_lines(batch):
    similarity = batch["similarity"]
    # all three wrote the model answer (the fixtures hand in the instructor notebooks)
    assert similarity.pairs and all(pair.model_answer for pair in similarity.pairs)
    assert set(similarity.model_answer["standardise_splits"]) >= {"alice", "bob"}
    assert [g.students for g in similarity.same_models] == [("alice", "bob", HOSTILE_STUDENT)]
    similar = batch["html"].split('<section id="similar">')[1]
    assert "<details open>" in similar and 'class="side"' in similar
    assert "copied" not in batch["html"].lower()


def test_ranks_only_within_a_split():
    rows = [
        {"student": "a", "part5_model_test_accuracy": 0.5, "part5_split": "grader test set"},
        {"student": "b", "part5_model_test_accuracy": 0.7, "part5_split": "grader test set"},
        {"student": "c", "part5_model_test_accuracy": 0.9, "part5_split": "recorded split 7"},
    ]
    text = render_class_report(rows, None)
    first, second = text.split("<h3>Scored on ")[1:]
    assert first.startswith("grader test set")
    assert re.search(r"<td>1</td><td>b</td>.*<td>2</td><td>a</td>", first)
    assert re.search(r"<td>1</td><td>c</td>", second)


def test_hostile_rows_do_not_break_the_report(tmp_path):
    rows = [
        {"student": "x", "status": "damaged", "problems": None, "total_points": "NaN"},
        {"student": "y", "checks": "garbage", "total_points": float("inf"), "01_points": "?"},
        {"student": "z", "checks": [None, {"kind": "check"}], "grading_seconds": "soon"},
        "not a row",
    ]
    html_path, csv_path = write_class_report(rows, None, tmp_path)
    text = html_path.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f'<section id="{section}">' in text
    assert "No submission was scored" in text
    with open(csv_path, encoding="utf-8") as handle:
        assert len(list(csv.reader(handle))) == 2  # the header and the one check


def _browser_missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found (Debian: apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed"
    return None


@pytest.mark.slow
def test_class_report_renders_in_chromium(batch, tmp_path):
    """Open the report in headless Chromium: every section shows, no image is broken."""
    if missing := _browser_missing():
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(batch["html_path"].as_uri())
            page.wait_for_load_state("load")
            images = page.evaluate(
                "() => [...document.images].map(i => ({w: i.naturalWidth, ok: i.complete}))"
            )
            visible = {s: page.locator(f"section#{s}").is_visible() for s in SECTIONS}
            path = tmp_path / "class_report.png"
            page.screenshot(path=str(path), full_page=True)
        finally:
            browser.close()
    print(f"\nscreenshot: {path}")
    if stable := os.environ.get("CIFAR_LAB_SCREENSHOT_DIR"):
        Path(stable).mkdir(parents=True, exist_ok=True)
        print(f"screenshot copied to: {shutil.copy2(path, Path(stable) / path.name)}")
    assert len(images) >= 3 and all(image["ok"] and image["w"] > 0 for image in images), images
    assert all(visible.values()), visible
