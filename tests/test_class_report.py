"""The class report of a real graded batch: every section, damaged submissions, escaping.

A small batch is graded through the real CLI (fixtures as in
``test_grading_points.py``): a clean submission, one whose check fails with
a message holding HTML, one whose student name and code hold HTML, and an
unreadable zip. ``grade`` writes the class report from its own rows (their
``checks``, ``part5_split`` and ``part5_parameters`` included).

The synthetic class of 40 (``tests/similarity_fixtures.py``, planted pairs) gets
its class report too, from generated rows, and both reports are opened in
headless Chromium.
"""

from __future__ import annotations

import base64
import csv
import importlib.util
import json
import os
import random
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
from similarity_fixtures import planted_class

from cifar_lab.instructor.class_report import (
    CSV_COLUMNS,
    render_class_report,
    write_class_report,
)
from cifar_lab.instructor.notebooks import course_notebooks
from cifar_lab.instructor.release import release
from cifar_lab.instructor.report import student_id
from cifar_lab.instructor.similarity import collect_sources, course_references, find_similar
from cifar_lab.results import CHECK_MIME
from cifar_lab.tuning.part5 import PARAMETERS_KEY, PART5_DIR, RESULTS_FILE

ALICE_PARAMETERS = 30_730  # the fixtures' model: 32 * 32 * 3 inputs -> 10 logits
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
    saved = submissions / "alice" / PART5_DIR / RESULTS_FILE  # as save_part5 records it
    results = json.loads(saved.read_text(encoding="utf-8"))
    saved.write_text(json.dumps({**results, PARAMETERS_KEY: ALICE_PARAMETERS}), encoding="utf-8")
    (submissions / "carol.zip").write_bytes(b"this is not a zip")
    out = base / "report" / "report.csv"
    argv = [str(submissions), "--out", str(out), "--manifest", str(manifest_path)]
    argv += ["--trust-outputs"]  # the static read: this test is about the class view
    assert run_cli("grade", *argv, "--source", "synthetic", "--num-test", str(NUM_TEST)) == 0
    # grade itself writes the class view beside the report, damaged zip included
    html_path, csv_path = out.parent / "class_report.html", out.parent / "class_report.csv"
    rows = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
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
    assert failing["notebook"] == "01_preparation"
    # the check's own message, as bob's notebook showed it, for the spreadsheet too
    assert failing["failure_messages"].startswith("1 x ")
    assert f"X_train has mean 0: not so {EVIL}" in failing["failure_messages"]
    assert all(row["failure_messages"] == "" for row in batch["csv"] if row["failed"] == "0")
    assert float(batch["csv"][0]["pass_rate"]) <= float(batch["csv"][-1]["pass_rate"])
    assert "not so" in batch["html"].split('<section id="checks">')[1]


def test_grade_rows_carry_checks_split_and_parameters(batch):
    rows = {row["student"]: row for row in batch["rows"]}
    bob = {c["grade_id"]: c for c in rows["bob"]["checks"]}
    assert bob["standardise_splits_check"]["status"] != "passed"
    assert "not so" in bob["standardise_splits_check"]["message"]
    assert {c["kind"] for c in rows["alice"]["checks"]} <= {"check", "written"}
    assert rows["alice"]["part5_parameters"] == ALICE_PARAMETERS
    assert rows["bob"]["part5_parameters"] == ""  # bob's results.json records none
    # one model, one split: the grader's test images, named by count and fingerprint
    splits = {rows[s]["part5_split"] for s in ("alice", "bob", HOSTILE_STUDENT)}
    assert len(splits) == 1 and splits.pop().startswith(f"{NUM_TEST} test images ")
    assert rows["carol"]["checks"] == [] and rows["carol"]["part5_split"] == ""


def test_leaderboard_and_timing(batch):
    leaderboard = batch["html"].split('<section id="leaderboard">')[1].split("</section>")[0]
    split = next(row["part5_split"] for row in batch["rows"] if row["student"] == "alice")
    assert f"<h3>Scored on {split}</h3>" in leaderboard
    # the three scored the same model: ranked 1-3 (ties by name), carol's zip is not there
    ranked = re.findall(r"<tr><td>(\d)</td><td>([^<]+)</td>", leaderboard)
    assert ranked == [("1", "alice"), ("2", "bob"), ("3", html_escaped(HOSTILE_STUDENT))]
    assert "carol" not in leaderboard
    assert f"<td>{ALICE_PARAMETERS:,}</td>" in leaderboard and "not recorded" in leaderboard
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


def _class_of_40_rows(students: list[str], seed: int = 0) -> list[dict]:
    """Report rows for the synthetic class: points, checks, Part V on two splits, problems."""
    rng = random.Random(seed)
    checks = [("01_preparation", f"check_{n}") for n in range(4)]
    checks += [("05_tuning", "architecture_search_check")]
    messages = ["AssertionError: X_train has mean 0: not so. Hint: axis=(0, 1, 2)", "Timeout"]
    rows = []
    for number, student in enumerate(sorted(students)):
        if number == 0:  # a zip the grader could not read: a row with its reason only
            rows.append({"student": student, "status": "damaged", "grading_seconds": 0.1,
                         "problems": ["submission: not a readable zip"]})  # fmt: skip
            continue
        row: dict = {"student": student, "status": "ok", "max_points": 100, "profile": "full"}
        row["checks"] = []
        for notebook, grade_id in checks:
            passed = rng.random() < (0.3 if grade_id == "check_0" else 0.85)
            reason = "" if passed else "check failed"
            message = "" if passed else rng.choice(messages)
            row["checks"].append({"notebook": notebook, "grade_id": grade_id, "kind": "check",
                                  "points": int(passed), "max_points": 1,
                                  "status": "passed" if passed else "failed",
                                  "reason": reason, "message": message})  # fmt: skip
        row["01_points"], row["01_max_points"] = rng.randint(10, 40), 40
        row["05_points"], row["05_max_points"] = rng.randint(20, 60), 60
        row["total_points"] = row["01_points"] + row["05_points"]
        accuracy = round(rng.uniform(0.45, 0.6), 4)
        row["part5_model_test_accuracy"] = accuracy
        row["part5_claimed_test_accuracy"] = round(accuracy + rng.choice([0, 0, 0.05]), 4)
        row["part5_claim_verified"] = (
            "yes" if row["part5_claimed_test_accuracy"] == accuracy else "no"
        )
        row["part5_split"] = (
            "500 test images 3f2a" if number % 8 == 1 else "10,000 test images 9c1e"
        )
        row["part5_parameters"] = rng.choice([394_634, 1_707_274, 3_182_602])
        row["grading_seconds"] = round(rng.uniform(60, 200), 1)
        if row["part5_claim_verified"] == "no":
            row["status"] = "flagged"
            row["problems"] = ["part5: results.json claims more than the saved model scores"]
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def class_of_40(tmp_path_factory):
    """The class report of the synthetic class of 40 (planted similar pairs)."""
    references = course_references()
    sources, planted = planted_class(references)
    similarity = find_similar(sources, references)
    out = tmp_path_factory.mktemp("class_of_40")
    html_path, csv_path = write_class_report(_class_of_40_rows(list(sources)), similarity, out)
    return {"html_path": html_path, "html": html_path.read_text(encoding="utf-8"),
            "planted": planted, "csv": _read_csv(csv_path)}  # fmt: skip


def test_class_of_40_report_lists_every_planted_pair(class_of_40):
    text = class_of_40["html"]
    for section in SECTIONS:
        assert f'<section id="{section}">' in text, section
    similar = text.split('<section id="similar">')[1]
    listed = set(re.findall(r"<tr><td>([\w]+)</td><td>([\w]+)</td><td>([\w]+)</td>", similar))
    assert {(g, a, b) for a, b, g in class_of_40["planted"]} <= listed
    assert f"<h3>Similar pairs ({len(class_of_40['planted'])})</h3>" in similar
    assert "copied" not in text.lower()
    leaderboard = text.split('<section id="leaderboard">')[1].split("</section>")[0]
    assert leaderboard.count("<h3>Scored on ") == 2  # two splits, each ranked on its own
    assert class_of_40["csv"][0]["check"] == "check_0"  # the most-failed check first


def _open_in_chromium(browser, html_path: Path, screenshot: Path) -> dict:
    """Load a report from disk; its images, visible sections and a full-page screenshot."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(html_path.as_uri())
    page.wait_for_load_state("load")
    images = page.evaluate(
        "() => [...document.images].map(i => ({w: i.naturalWidth, ok: i.complete}))"
    )
    visible = {s: page.locator(f"section#{s}").is_visible() for s in SECTIONS}
    page.screenshot(path=str(screenshot), full_page=True)
    page.close()
    print(f"\nscreenshot: {screenshot}")
    if stable := os.environ.get("CIFAR_LAB_SCREENSHOT_DIR"):
        Path(stable).mkdir(parents=True, exist_ok=True)
        print(f"screenshot copied to: {shutil.copy2(screenshot, Path(stable) / screenshot.name)}")
    return {"images": images, "visible": visible}


@pytest.mark.slow
def test_class_reports_render_in_chromium(batch, class_of_40, tmp_path):
    """Open both reports in headless Chromium: every section shows, no image is missing."""
    if missing := _browser_missing():
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    reports = {"class_report.png": batch, "class_report_40_students.png": class_of_40}
    seen = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            for name, report in reports.items():
                seen[name] = _open_in_chromium(browser, report["html_path"], tmp_path / name)
        finally:
            browser.close()
    for name, report in reports.items():
        images, visible = seen[name]["images"], seen[name]["visible"]
        expected = len(re.findall(r"<img ", report["html"]))
        assert expected >= 3 and len(images) == expected, (name, images)
        assert all(image["ok"] and image["w"] > 0 for image in images), (name, images)
        assert all(visible.values()), (name, visible)
