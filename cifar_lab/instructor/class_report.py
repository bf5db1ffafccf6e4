"""The class at a glance: ``class_report.html`` and ``class_report.csv`` for one graded batch.

Written from the grader's report rows (``report.json``) and a similarity pass
(:mod:`~cifar_lab.instructor.similarity`). The HTML is one self-contained
file: plots are matplotlib PNGs embedded as ``data:`` URIs, there is no script
and nothing is fetched, so it opens in any browser, offline. Its sections:

* **Points**: the distribution of total points, and points per notebook;
* **Checks**: the pass rate of every graded check, lowest first, with the
  count of each distinct failure message of the most-failed ones;
* **Part V leaderboard**: claimed and re-scored test accuracy, profile and
  parameters where recorded, whether the claim holds; ranked only among
  models scored on the same split;
* **Flagged and damaged submissions**, each with its reasons and a link to
  its feedback page;
* **Grading time** per student, and totals;
* **Similar solutions**: pairs of students whose code for one exercise is
  similar, with the matching lines side by side; code that matches the model
  answer; identical random outputs; identical model files.

Everything a student wrote (names, messages, code) is HTML-escaped.
``class_report.csv`` holds the per-check table for spreadsheets.

Row fields read (``report.json``'s columns, see
:class:`~cifar_lab.instructor.report.ReportRow`; all optional but ``student``):
``status``, ``problems``, ``total_points``, ``max_points``, ``NN_points``,
``NN_max_points``, ``checks`` (:func:`~cifar_lab.instructor.report.checks_field`),
``profile``, ``part5_claimed_test_accuracy``, ``part5_model_test_accuracy``,
``part5_claim_verified``, ``part5_split``, ``part5_parameters`` and
``grading_seconds``. A missing field shows as "not recorded"; the report never
fails on a damaged row (rows of an older report lack some fields).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import re
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from cifar_lab.instructor.inspection import finite_number
from cifar_lab.instructor.report import feedback_path, spreadsheet_cell
from cifar_lab.instructor.similarity import (
    Similarity,
    SimilaritySettings,
    collect_sources,
    course_references,
    find_similar,
)

HTML_FILE = "class_report.html"
CSV_FILE = "class_report.csv"
CSV_COLUMNS = (
    "notebook",
    "check",
    "passed",
    "failed",
    "pass_rate",
    "points",
    "most_common_failure",
    "most_common_failure_count",
    "failure_messages",
)
CSV_MESSAGES_CHARS = 5000  # per cell: the distinct messages of a check, most common first


def render_class_report(
    rows: list[dict[str, Any]],
    similarity: Similarity | None,
    *,
    feedback_dir: str | None = "feedback",
    shown_pairs: int = 200,
) -> str:
    """The class report as one self-contained HTML document.

    Args:
        rows: the grader's report rows (``report.json``).
        similarity: the class's similarity pass (None: not run).
        feedback_dir: where the feedback pages are, relative to the report (None: none).
        shown_pairs: most similar pairs listed.

    Returns:
        The HTML text.
    """
    rows = [row for row in rows if isinstance(row, dict)]
    statuses = Counter(str(row.get("status", "")) for row in rows)
    summary = ", ".join(f"{count} {escape(status)}" for status, count in sorted(statuses.items()))
    parts = [
        "<h1>cifar_lab class report</h1>",
        f"<p>{len(rows)} submissions: {summary or 'none'}.</p>",
        '<nav><a href="#points">Points</a> &middot; <a href="#checks">Checks</a> &middot; '
        '<a href="#leaderboard">Part V leaderboard</a> &middot; <a href="#problems">Flagged '
        'and damaged</a> &middot; <a href="#timing">Grading time</a> &middot; '
        '<a href="#similar">Similar solutions</a></nav>',
        points_section(rows),
        checks_section(check_table(rows), rows),
        leaderboard_section(rows),
        problems_section(rows, feedback_dir),
        timing_section(rows),
        similar_section(similarity, shown_pairs),
    ]
    head = f'<meta charset="utf-8"><title>cifar_lab class report</title><style>{STYLE}</style>'
    body = "\n".join(parts)
    return f"<!DOCTYPE html>\n<html><head>{head}</head>\n<body>\n{body}\n</body></html>\n"


def write_class_report(
    rows: list[dict[str, Any]],
    similarity: Similarity | None,
    out_dir: Path,
    *,
    feedback_dir: str | None = "feedback",
) -> tuple[Path, Path]:
    """Write ``class_report.html`` and ``class_report.csv`` into ``out_dir``.

    Args:
        rows: the grader's report rows (``report.json``), damaged ones included.
        similarity: from :func:`.similarity.find_similar` (None: not run).
        out_dir: the report's folder.
        feedback_dir: the feedback pages' folder, relative to ``out_dir`` (None: none).

    Returns:
        (html path, csv path).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, csv_path = out_dir / HTML_FILE, out_dir / CSV_FILE
    html_path.write_text(
        render_class_report(rows, similarity, feedback_dir=feedback_dir), encoding="utf-8"
    )
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for entry in check_table([row for row in rows if isinstance(row, dict)]):
            writer.writerow({key: spreadsheet_cell(entry.get(key, "")) for key in CSV_COLUMNS})
    return html_path, csv_path


def write_batch_report(
    rows: list[dict[str, Any]],
    submissions: Path,
    out_dir: Path,
    *,
    source_dir: Path | None = None,
    feedback_dir: str | None = "feedback",
    settings: SimilaritySettings | None = None,
) -> tuple[Path, Path]:
    """Run the similarity pass over a submissions folder, then write the class report.

    Args:
        rows: the grader's report rows, every student of the batch.
        submissions: the folder ``grade`` read (``<student>.zip`` files and folders).
        out_dir: the report's folder.
        source_dir: the solution notebooks, for stubs and model answers (None: the course's).
        feedback_dir: the feedback pages' folder, relative to ``out_dir`` (None: none).
        settings: similarity thresholds (None: the defaults).

    Returns:
        (html path, csv path).
    """
    found = collect_sources(Path(submissions))
    similarity = find_similar(
        found.sources,
        course_references(source_dir),
        outputs=found.outputs,
        model_digests=found.model_digests,
        settings=settings,
    )
    return write_class_report(rows, similarity, out_dir, feedback_dir=feedback_dir)


def number(value: Any) -> float | None:
    """A row value as a float, or None when blank, text or not finite."""
    if isinstance(value, bool) or value in (None, ""):
        return None
    try:
        converted = float(value)
    except (TypeError, ValueError):
        return None
    return converted if finite_number(converted) else None


def check_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pass rate of every graded check over the rows that carry ``checks``.

    Returns:
        One dict per check (keys of :data:`CSV_COLUMNS` plus ``failures``, a
        Counter of (reason, message)), lowest pass rate first. ``failure_messages``
        lists each distinct failure, most common first: ``"<count> x <reason>: <message>"``
        one per line, cut to :data:`CSV_MESSAGES_CHARS`.
    """
    table: dict[str, dict[str, Any]] = {}
    for row in rows:
        checks = row.get("checks")
        if not isinstance(checks, list):
            continue
        for check in checks:
            if not isinstance(check, dict) or check.get("kind") != "check":
                continue
            name = str(check.get("grade_id", ""))
            entry = table.setdefault(
                name, {"check": name, "passed": 0, "failed": 0, "failures": Counter()}
            )
            entry["notebook"] = str(check.get("notebook", ""))
            entry["points"] = check.get("max_points", "")
            if check.get("status") == "passed":
                entry["passed"] += 1
            else:
                entry["failed"] += 1
                reason = str(check.get("reason", "") or check.get("status", ""))
                entry["failures"][(reason, str(check.get("message", "")))] += 1
    for entry in table.values():
        entry["pass_rate"] = round(entry["passed"] / (entry["passed"] + entry["failed"]), 4)
        common = entry["failures"].most_common(1)
        entry["most_common_failure"] = common[0][0][0] if common else ""
        entry["most_common_failure_count"] = common[0][1] if common else 0
        lines = [
            f"{count} x {reason}: {message}" if message else f"{count} x {reason}"
            for (reason, message), count in entry["failures"].most_common()
        ]
        entry["failure_messages"] = "\n".join(lines)[:CSV_MESSAGES_CHARS]
    return sorted(table.values(), key=lambda e: (e["pass_rate"], -e["failed"], e["check"]))


def png(figure) -> str:
    """A matplotlib figure as a ``data:image/png;base64`` URI."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def new_figure(width: float = 6.0, height: float = 3.0):
    from matplotlib.figure import Figure  # no pyplot: no global state, no display

    return Figure(figsize=(width, height))


def points_plot(totals: list[float], most: float | None) -> str:
    """Histogram of the students' total points, as a PNG data URI."""
    """A fresh matplotlib Figure (no pyplot: no global state, no display)."""
    figure = new_figure()
    axes = figure.subplots()
    axes.hist(totals, bins=min(20, max(5, len(set(totals)))), color="#4477aa", edgecolor="white")
    axes.set_xlabel(f"total points (of {most:g})" if most else "total points")
    axes.set_ylabel("students")
    axes.set_title("Total points")
    return png(figure)


def notebook_plot(per_notebook: dict[str, list[float]], most: dict[str, float]) -> str:
    """Box plot of the points per notebook (notebook key "01" ...), as a PNG data URI."""
    figure = new_figure(6.0, 3.2)
    axes = figure.subplots()
    names = sorted(per_notebook)
    axes.boxplot([per_notebook[n] for n in names], showmeans=True)
    axes.set_xticks(range(1, len(names) + 1), [f"{n} (of {most.get(n, 0):g})" for n in names])
    axes.set_ylabel("points")
    axes.set_title("Points per notebook")
    return png(figure)


def check_plot(table: list[dict[str, Any]]) -> str:
    """Horizontal bars of each check's pass rate (lowest on top), as a PNG data URI."""
    figure = new_figure(6.0, max(2.0, 0.25 * len(table) + 0.8))
    axes = figure.subplots()
    names = [entry["check"] for entry in table][::-1]
    rates = [100 * entry["pass_rate"] for entry in table][::-1]
    axes.barh(names, rates, color=["#aa3333" if r < 50 else "#4477aa" for r in rates])
    axes.set_xlim(0, 100)
    axes.set_xlabel("students who passed (%)")
    axes.set_title("Pass rate per check")
    axes.tick_params(axis="y", labelsize=7)
    return png(figure)


STYLE = (
    "body{font-family:sans-serif;max-width:75em;margin:2em auto;line-height:1.4;padding:0 1em}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;"
    "padding:.25em .5em;text-align:left;vertical-align:top}th{background:#f3f3f3}"
    "pre{white-space:pre-wrap;margin:0;font-size:.85em}.side{display:flex;gap:1em}"
    ".side>div{flex:1;min-width:0;background:#fafafa;border:1px solid #ddd;padding:.3em}"
    ".low{color:#a00}.ok{color:#060}img{max-width:100%}.note{color:#555}"
)


def escape(value: Any) -> str:
    """Escape anything for HTML text and attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def table(header: list[str], body: list[list[str]]) -> str:
    """A table from already escaped cells."""
    head = "".join(f"<th>{cell}</th>" for cell in header)
    rows = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><tr>{head}</tr>{rows}</table>"


def img(uri: str, alt: str) -> str:
    """An ``<img>`` of a data URI, with escaped alt text."""
    return f'<img src="{uri}" alt="{escape(alt)}">'


MOST_FAILED = 5  # checks whose failure messages are listed
MESSAGES_PER_CHECK = 5
_NOTEBOOK_POINTS = re.compile(r"^(\d\d)_points$")


def points_section(rows: list[dict[str, Any]]) -> str:
    """The distribution of total points and the points per notebook."""
    totals = [t for row in rows if (t := number(row.get("total_points"))) is not None]
    parts = ['<section id="points"><h2>Points</h2>']
    if not totals:
        parts.append("<p>No submission was scored.</p></section>")
        return "".join(parts)
    most = max(
        (m for row in rows if (m := number(row.get("max_points"))) is not None), default=None
    )
    mean = sum(totals) / len(totals)
    parts.append(
        f"<p>{len(totals)} scored of {len(rows)} submissions; mean {mean:.1f}, "
        f"median {statistics.median(totals):g}, lowest {min(totals):g}, "
        f"highest {max(totals):g}.</p>"
    )
    parts.append(img(points_plot(totals, most), "distribution of total points"))
    per_notebook: dict[str, list[float]] = {}
    most_of: dict[str, float] = {}
    for row in rows:
        for key, value in row.items():
            match = _NOTEBOOK_POINTS.match(str(key))
            if match and (points := number(value)) is not None:
                per_notebook.setdefault(match.group(1), []).append(points)
                if (top := number(row.get(f"{match.group(1)}_max_points"))) is not None:
                    most_of[match.group(1)] = top
    if per_notebook:
        parts.append(img(notebook_plot(per_notebook, most_of), "points per notebook"))
        body = [
            [
                escape(name),
                f"{sum(values) / len(values):.1f}",
                f"{most_of.get(name, 0):g}",
                str(len(values)),
            ]
            for name, values in sorted(per_notebook.items())
        ]
        parts.append(table(["notebook", "mean points", "of", "scored"], body))
    parts.append("</section>")
    return "".join(parts)


def checks_section(checks: list[dict[str, Any]], rows: list[dict[str, Any]]) -> str:
    """Pass rate per check and the failure messages of the most-failed ones (rows: fallback)."""
    parts = ['<section id="checks"><h2>Checks</h2>']
    if not checks:
        parts.append(
            '<p class="note">No row carries per-check results (row field <code>checks</code>); '
            "per notebook, checks passed and failed:</p>"
        )
        body = []
        for row in rows:
            cells = [escape(row.get("student"))]
            keys = sorted(k for k in row if re.match(r"^\d\d_checks_(passed|failed)$", str(k)))
            cells += [f"{escape(k[:2])}: {escape(row[k])} {escape(k[10:])}" for k in keys]
            body.append([cells[0], "; ".join(cells[1:])])
        parts.append(table(["student", "checks"], body) + "</section>")
        return "".join(parts)
    parts.append(img(check_plot(checks), "pass rate per check"))
    body = [
        [
            escape(e["check"]),
            f'<span class="{"low" if e["pass_rate"] < 0.5 else "ok"}">'
            f"{100 * e['pass_rate']:.0f}%</span>",
            str(e["passed"]),
            str(e["failed"]),
            escape(e.get("points", "")),
        ]
        for e in checks
    ]
    parts.append(table(["check", "pass rate", "passed", "failed", "points"], body))
    failing = [e for e in checks if e["failed"]][:MOST_FAILED]
    if failing:
        parts.append("<h3>Why the most-failed checks failed</h3>")
    for entry in failing:
        items = "".join(
            f"<li><b>{count}</b> &times; {escape(reason)}"
            + (f"<pre>{escape(message)}</pre>" if message else "")
            + "</li>"
            for (reason, message), count in entry["failures"].most_common(MESSAGES_PER_CHECK)
        )
        others = len(entry["failures"]) - MESSAGES_PER_CHECK
        more = f"<li>... and {others} other messages</li>" if others > 0 else ""
        parts.append(f"<h4>{escape(entry['check'])}</h4><ul>{items}{more}</ul>")
    parts.append("</section>")
    return "".join(parts)


def leaderboard_section(rows: list[dict[str, Any]]) -> str:
    """Part V models by re-scored test accuracy; ranked only within one recorded split."""
    parts = ['<section id="leaderboard"><h2>Part V leaderboard</h2>']
    scored = [r for r in rows if number(r.get("part5_model_test_accuracy")) is not None]
    if not scored:
        parts.append("<p>No saved Part V model was re-scored.</p></section>")
        return "".join(parts)
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in scored:
        split = row.get("part5_split")
        groups.setdefault("" if split in (None, "") else str(split), []).append(row)
    for split, members in sorted(groups.items()):
        members.sort(key=lambda r: (-number(r["part5_model_test_accuracy"]), str(r["student"])))
        if split:
            parts.append(f"<h3>Scored on {escape(split)}</h3>")
        else:
            parts.append(
                '<p class="note">The rows do not record which test split each model was scored '
                "on (row field <code>part5_split</code>), so no ranks are given.</p>"
            )
        body = []
        for rank, row in enumerate(members, start=1):
            holds = row.get("part5_claim_verified", "")
            body.append(
                [
                    str(rank) if split else "&ndash;",
                    escape(row.get("student")),
                    escape(row.get("part5_claimed_test_accuracy", "")),
                    escape(row.get("part5_model_test_accuracy")),
                    escape(row.get("profile") or "not recorded"),
                    escape(_parameters(row.get("part5_parameters"))),
                    f'<span class="{"ok" if holds == "yes" else "low"}">{escape(holds)}</span>',
                ]
            )
        header = ["rank", "student", "claimed test accuracy", "re-scored test accuracy"]
        header += ["profile", "parameters", "claim holds"]
        parts.append(table(header, body))
    parts.append("</section>")
    return "".join(parts)


def _parameters(value: Any) -> str:
    """A parameter count with thousands separators, or "not recorded"."""
    count = number(value)
    return f"{count:,.0f}" if count is not None and count >= 0 else "not recorded"


def problems_section(rows: list[dict[str, Any]], feedback_dir: str | None) -> str:
    """Flagged and damaged submissions with their reasons and feedback links."""
    parts = ['<section id="problems"><h2>Flagged and damaged submissions</h2>']
    bad = [r for r in rows if r.get("status") in ("damaged", "flagged")]
    if not bad:
        parts.append("<p>None.</p></section>")
        return "".join(parts)
    body = []
    for row in sorted(bad, key=lambda r: (str(r.get("status")), str(r.get("student")))):
        student = str(row.get("student", ""))
        problems = row.get("problems")
        problems = problems if isinstance(problems, list) else [problems] if problems else []
        reasons = "<br>".join(escape(p) for p in problems) or "no reason recorded"
        link = "no feedback page"
        if feedback_dir is not None:
            target = feedback_path(Path(feedback_dir), student).as_posix()
            link = f'<a href="{escape(target)}">feedback</a>'
        body.append([escape(student), escape(row.get("status")), reasons, link])
    parts.append(table(["student", "status", "reasons", "feedback"], body) + "</section>")
    return "".join(parts)


def timing_section(rows: list[dict[str, Any]]) -> str:
    """Grading time per student (row field ``grading_seconds``) and the total."""
    parts = ['<section id="timing"><h2>Grading time</h2>']
    timed = [
        (str(r.get("student")), t)
        for r in rows
        if (t := number(r.get("grading_seconds"))) is not None  # 0.0 s is a time too
    ]
    if not timed:
        parts.append(
            '<p class="note">Grading time was not recorded (row field '
            "<code>grading_seconds</code>).</p></section>"
        )
        return "".join(parts)
    total = sum(seconds for _, seconds in timed)
    slowest = max(timed, key=lambda item: item[1])
    parts.append(
        f"<p>Total {total:.1f} s for {len(timed)} submissions; mean {total / len(timed):.1f} s; "
        f"slowest {escape(slowest[0])} ({slowest[1]:.1f} s).</p>"
    )
    body = [[escape(s), f"{t:.1f}"] for s, t in sorted(timed, key=lambda i: -i[1])]
    parts.append(table(["student", "seconds"], body) + "</section>")
    return "".join(parts)


MAX_LINES = 40  # per side of a matching block
OPEN_PAIRS = 3  # the most similar pairs show their lines unfolded


def _lines(source: str, first: int, last: int) -> str:
    lines = source.splitlines()[first - 1 : last][:MAX_LINES]
    numbered = "\n".join(f"{first + i:4d}  {line}" for i, line in enumerate(lines))
    return f"<pre>{escape(numbered)}</pre>"


def similar_section(similarity: Similarity | None, shown: int) -> str:
    """The similar-solutions section (``shown`` pairs at most); says so when no pass ran."""
    parts = ['<section id="similar"><h2>Similar solutions</h2>']
    if similarity is None:
        parts.append("<p>No similarity pass was run.</p></section>")
        return "".join(parts)
    parts.append(
        '<p class="note">Similar code, outputs or files are a reason to look, not a verdict: '
        "deciding is the instructor's job. Code is compared after removing comments, "
        "docstrings, names and formatting; the released stub and code everyone shares are left "
        "out.</p>"
    )
    pairs = similarity.pairs
    parts.append(f"<h3>Similar pairs ({len(pairs)})</h3>")
    if pairs:
        body = [
            [
                escape(p.grade_id),
                escape(p.student_a),
                escape(p.student_b),
                f"{100 * p.similarity:.0f}%",
                "both match the model answer" if p.model_answer else "",
            ]
            for p in pairs[:shown]
        ]
        parts.append(table(["exercise", "student", "student", "similar", "note"], body))
        if len(pairs) > shown:
            parts.append(f"<p>... and {len(pairs) - shown} more pairs.</p>")
    for number, pair in enumerate([p for p in pairs[:shown] if p.blocks]):
        source_a = similarity.sources.get(pair.student_a, {}).get(pair.grade_id, "")
        source_b = similarity.sources.get(pair.student_b, {}).get(pair.grade_id, "")
        title = (
            f"{escape(pair.grade_id)}: {escape(pair.student_a)} and {escape(pair.student_b)}, "
            f"{100 * pair.similarity:.0f}% similar"
        )
        blocks = "".join(
            f'<div class="side"><div>{_lines(source_a, a0, a1)}</div>'
            f"<div>{_lines(source_b, b0, b1)}</div></div>"
            for a0, a1, b0, b1 in pair.blocks
        )
        opened = " open" if number < OPEN_PAIRS else ""
        parts.append(f"<details{opened}><summary>{title}</summary>{blocks}</details>")
    skipped = sum(len(students) for students in similarity.skipped.values())
    if skipped:
        parts.append(
            f'<p class="note">{skipped} exercise cells were not compared: the stub as '
            "released, too short to say anything, or too long.</p>"
        )
    parts.append("<h3>Matches the model answer</h3>")
    if similarity.model_answer:
        body = [
            [escape(g), ", ".join(escape(s) for s in students)]
            for g, students in sorted(similarity.model_answer.items())
        ]
        parts.append(table(["exercise", "students"], body))
    else:
        parts.append("<p>None.</p>")
    for title, groups in (
        ("Identical outputs of a random process", similarity.same_outputs),
        ("Byte-identical model files", similarity.same_models),
    ):
        parts.append(f"<h3>{title}</h3>")
        if groups:
            body = [
                [escape(g.where), escape(g.digest[:12]), ", ".join(escape(s) for s in g.students)]
                for g in groups
            ]
            parts.append(table(["where", "sha256", "students"], body))
        else:
            parts.append("<p>None.</p>")
    parts.append("</section>")
    return "".join(parts)
