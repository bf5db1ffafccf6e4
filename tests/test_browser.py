"""A student's first hour, end to end, in a real browser (slow).

What a student does after ``pip install``: copy the student edition with
``python -m cifar_lab notebooks --out course/``, start JupyterLab on it, open
``01_preparation.ipynb`` and choose Run > Run All Cells. Here JupyterLab runs on a
random free port of 127.0.0.1 with a token, the kernel gets
``CIFAR_LAB_PROFILE=quick`` and the real CIFAR-10 archive, and headless Chromium
(Debian's ``/usr/bin/chromium``) is driven by Playwright.

The student's path, step by step (screenshots of steps 2-4):

2. Run All stops at the first exercise, its ``NotImplementedError`` hint visible.
3. A wrong solution, typed into the exercise cell through the keyboard, runs with
   its check: the check's hint appears.
4. The right solutions, typed the same way, pass their checks ("check passed"), and
   Run All goes to the end: every code cell ran, the class-sample grid is drawn, no
   cell shows a Python traceback (TensorFlow's log lines on stderr are fine), and
   the notebook saved from the browser holds no ``error`` output.
5. ``cifar-lab submit`` in the folder refuses, naming the unfinished notebooks.

Screenshots are written to the test's tmp folder (their paths are printed) and
copied to ``$CIFAR_LAB_SCREENSHOT_DIR`` when set.

Skips, with the reason, where the real archive, ``/usr/bin/chromium``,
Playwright or JupyterLab is missing; ``.ci/run`` installs them and reports
such a skip loudly.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from conftest import REAL_SOURCE, requires_real_data

from cifar_lab.instructor.release import CODE_PLACEHOLDER

CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = "01_preparation.ipynb"
# The closed network makes Chromium stall without the background-networking flags.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_S = 180
RUN_ALL_S = 300  # Run All takes ~15 s here (quick profile, two CPU cores)

# Read at import: conftest's autouse fixture hides CIFAR10_SOURCE inside each test.
# CIFAR_LAB_CACHE is passed on so the kernel reuses CI's unpacked copy of the archive.
SOURCE = REAL_SOURCE
CACHE_DIR = os.environ.get("CIFAR_LAB_CACHE")

pytestmark = [pytest.mark.slow, requires_real_data]

# A Python exception as IPython renders it; TensorFlow's "E0000 ... CUDA error" log lines
# and warnings on stderr do not match.
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s*\w*(Error|Exception)\b:", re.M)


def _missing_requirement() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found (Debian: apt-get install chromium)"
    for module, extra in (("playwright", "playwright"), ("jupyterlab", "jupyterlab")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not importable (pip install -e '.[browser]' installs {extra})"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _copy_course(out: Path) -> None:
    """``python -m cifar_lab notebooks --out DIR``, as a student runs it."""
    cmd = [sys.executable, "-m", "cifar_lab", "notebooks", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    assert (out / NOTEBOOK).is_file(), f"{NOTEBOOK} missing from {sorted(out.iterdir())}"


def _write_lab_settings(settings_dir: Path) -> None:
    """User settings: every cell in the DOM (no windowing), no news or update checks."""
    settings = {
        "@jupyterlab/notebook-extension/tracker": {
            "windowingMode": "none",
            # typed code as a student types it: no closing bracket added for them
            "codeCellConfig": {"autoClosingBrackets": False},
        },
        "@jupyterlab/apputils-extension/notification": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }
    for plugin, values in settings.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    log: Path

    def api(self, path: str, method: str = "GET") -> bytes:
        request = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@pytest.fixture
def lab_server(tmp_path: Path) -> Iterator[Lab]:
    """JupyterLab on the student's course folder; stopped, kernels included, on teardown."""
    missing = _missing_requirement()
    if missing:
        pytest.skip(missing)

    course = tmp_path / "course"
    _copy_course(course)
    jupyter = tmp_path / "jupyter"  # config, runtime, settings and workspaces: all private
    _write_lab_settings(jupyter / "lab-settings")

    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    env.update(
        CIFAR_LAB_PROFILE="quick",
        CIFAR10_SOURCE=str(SOURCE),
        TF_CPP_MIN_LOG_LEVEL=env.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        JUPYTER_CONFIG_DIR=str(jupyter / "config"),
        JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(jupyter / "lab-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(jupyter / "workspaces"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    if CACHE_DIR:
        env["CIFAR_LAB_CACHE"] = CACHE_DIR
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={course}",
        "--ServerApp.allow_root=True",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    log = tmp_path / "jupyterlab.log"
    lab = Lab(f"http://127.0.0.1:{port}", token, course, log)
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            cmd,
            cwd=course,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{lab.log_tail()}")
            try:
                lab.api("/api/status")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab not up after {SERVER_START_S} s:\n{lab.log_tail()}")
                time.sleep(0.5)
        yield lab
    finally:
        _stop_server(lab, proc)


def _stop_server(lab: Lab, proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:  # a clean shutdown also shuts the kernels down
            for kernel in json.loads(lab.api("/api/kernels")):
                lab.api(f"/api/kernels/{kernel['id']}", method="DELETE")
            lab.api("/api/shutdown", method="POST")
            proc.wait(timeout=30)
        except Exception:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


@pytest.fixture
def browser_page(lab_server: Lab):
    """A page in headless Chromium; browser and Playwright closed on teardown."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - _missing_requirement checks first
        pytest.skip(f"playwright is not importable: {exc}")

    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=60_000
            )
        except Exception as exc:
            pytest.skip(f"Chromium at {CHROMIUM} could not be started by Playwright: {exc}")
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


# The state of the notebook after Run All, read in the page.
NOTEBOOK_STATE_JS = """
() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  if (!nb) return null;
  const prompts = [...nb.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
    .map(p => p.textContent.trim());
  const indicator = document.querySelector(
    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
  const images = [...nb.querySelectorAll('.jp-OutputArea-output img')];
  const stderr = [...nb.querySelectorAll(
    '.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]')]
    .map(e => e.textContent);
  return {
    prompts,
    kernel: indicator ? indicator.getAttribute('data-status') : null,
    outputs: nb.querySelectorAll('.jp-OutputArea-output').length,
    images: images.map(i => ({w: i.naturalWidth, h: i.naturalHeight, complete: i.complete})),
    stderr,
  };
}
"""


def _wait_for_kernel_connection(lab: Lab, timeout_s: float) -> None:
    """The server's view: one kernel, idle, with the page's websocket attached."""
    deadline = time.monotonic() + timeout_s
    while True:
        kernels = json.loads(lab.api("/api/kernels"))
        if any(k["execution_state"] == "idle" and k["connections"] >= 1 for k in kernels):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"no connected idle kernel after {timeout_s:.0f} s: {kernels}")
        time.sleep(0.5)


def _wait_for_run_all(page, initial_prompts: list[str], timeout_s: float) -> dict:
    """Wait until Run All has started, then until no cell is queued or running."""
    started_by = time.monotonic() + 60
    deadline = time.monotonic() + timeout_s
    started = False
    state: dict | None = None
    while time.monotonic() < deadline:
        state = page.evaluate(NOTEBOOK_STATE_JS)
        prompts = state["prompts"] if state else []
        running = any("*" in p for p in prompts)
        started = started or running or (bool(prompts) and prompts != initial_prompts)
        if not started and time.monotonic() > started_by:
            pytest.fail(f"Run All Cells did not start any cell within 60 s; state: {state}")
        if started and not running and state["kernel"] == "idle":
            numbered = all(re.search(r"\[\d+\]", p) for p in prompts)
            failed = any(TRACEBACK.search(text) for text in state["stderr"])
            if numbered or failed:
                return state
        time.sleep(1)
    pytest.fail(f"Run All did not finish within {timeout_s:.0f} s; last state: {state}")


SCROLLER_JS = (
    "document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer')"
)


def _screenshot(page, tmp_path: Path, name: str) -> Path:
    """Full-page PNG: the viewport grown until the whole notebook shows, scrolled to the top."""
    height = page.evaluate(f"() => {SCROLLER_JS}?.scrollHeight ?? 0")
    page.set_viewport_size({"width": 1280, "height": max(900, min(int(height) + 150, 12_000))})
    page.evaluate(f"() => {{ const s = {SCROLLER_JS}; if (s) s.scrollTop = 0; }}")
    page.wait_for_timeout(1000)  # let JupyterLab lay out again
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    print(f"\nscreenshot: {path}")
    stable = os.environ.get("CIFAR_LAB_SCREENSHOT_DIR")
    if stable:
        Path(stable).mkdir(parents=True, exist_ok=True)
        copy = Path(shutil.copy2(path, Path(stable) / path.name))
        print(f"screenshot copied to: {copy}")
    return path


# Typed into notebook 01's exercise cells: a wrong first solution (per-pixel statistics,
# shape (32, 32, 3), where the check wants one value per channel), then the right ones.
WRONG_STANDARDISE = """def standardise_splits(X_train, X_val, X_test):
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    return X_train, X_val, X_test, mean, std"""
WRONG_HINT = "Hint: reduce over axes (0, 1, 2)"
RIGHT_STANDARDISE = """def standardise_splits(X_train, X_val, X_test):
    mean = X_train.mean(axis=(0, 1, 2), dtype=np.float64).astype(np.float32)
    std = X_train.std(axis=(0, 1, 2), dtype=np.float64).astype(np.float32)
    out = [(X.astype(np.float32) - mean) / std for X in (X_train, X_val, X_test)]
    return out[0], out[1], out[2], mean, std"""
RIGHT_MINIBATCHES = """class Minibatches:
    def __init__(self, X, y, batch_size, shuffle=False, seed=None):
        self.X, self.y = X, y
        self.batch_size, self.shuffle = batch_size, shuffle
        self.rng = np.random.default_rng(seed)

    def __iter__(self):
        N = len(self.X)
        order = self.rng.permutation(N) if self.shuffle else np.arange(N)
        for start in range(0, N, self.batch_size):
            batch = order[start : start + self.batch_size]
            yield self.X[batch], self.y[batch]"""
CELLS = "document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell')"
OUTPUT_HAS_JS = f"([i, text]) => ({CELLS}[i]?.querySelector('.jp-OutputArea')?.textContent ?? '')"
OUTPUT_HAS_JS += ".includes(text)"


def _exercise_cells(notebook: Path) -> dict[str, int]:
    """Index of each exercise cell (a stub ``release`` wrote) by the name it defines."""
    cells = nbformat.read(notebook, as_version=4).cells
    found = {}
    for index, cell in enumerate(cells):
        if cell.cell_type == "code" and CODE_PLACEHOLDER in cell.source:
            match = re.search(r"^(?:def|class) (\w+)", cell.source, re.M)
            found[match.group(1)] = index
    return found


def _type_into_cell(page, index: int, code: str) -> None:
    """Replace a cell's code by typing ``code`` on the keyboard, line by line.

    The editor indents each new line itself; the typed line replaces that
    indentation (selected with Shift+Home), so the code keeps its own.
    """
    cell = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").nth(index)
    cell.locator(".cm-content").click()
    page.keyboard.press("Control+a")
    for number, line in enumerate(code.splitlines()):
        if number:
            page.keyboard.press("Enter")
            page.keyboard.press("Shift+Home")
        if line:
            page.keyboard.type(line)
    typed = cell.locator(".cm-content").inner_text()
    lines = [line.rstrip() for line in typed.replace("\u00a0", " ").splitlines()]
    expected = code.splitlines()
    assert [ln for ln in lines if ln] == [ln for ln in expected if ln], (
        f"the editor holds:\n{typed}"
    )


def _run_cell_and_check(page, index: int, expect: str, timeout_s: float = 120) -> str:
    """Shift+Enter twice from the exercise cell: it runs, then its check; wait for ``expect``."""
    page.keyboard.press("Shift+Enter")
    page.keyboard.press("Shift+Enter")
    page.wait_for_function(OUTPUT_HAS_JS, arg=[index + 1, expect], timeout=timeout_s * 1000)
    return page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").nth(index + 1).inner_text()


def _run_all(page) -> dict:
    """Run > Run All Cells, as a student clicks it, and wait until nothing runs."""
    initial_prompts = page.evaluate(NOTEBOOK_STATE_JS)["prompts"]
    page.locator("#jp-MainMenu").get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    return _wait_for_run_all(page, initial_prompts, RUN_ALL_S)


def _open_notebook(page, lab: Lab) -> None:
    """Open the notebook and wait until every cell is shown and the kernel is idle."""
    started = time.monotonic()
    page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}")

    # The notebook is open, every cell is in the DOM and the kernel is connected and idle.
    # (The toolbar's indicator says "idle" before any kernel exists; the status bar does not.)
    cells = len(nbformat.read(lab.root / NOTEBOOK, as_version=4).cells)
    page.wait_for_function(
        "n => document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-Cell').length === n",
        arg=cells,
        timeout=120_000,
    )
    page.locator("#jp-main-statusbar .jp-StatusBar-TextItem", has_text="| Idle").wait_for(
        timeout=120_000
    )
    _wait_for_kernel_connection(lab, timeout_s=60)
    print(f"\nnotebook open, kernel idle after {time.monotonic() - started:.0f} s")


def _save(page) -> None:
    """Ctrl+S; the tab loses its unsaved-changes mark once the file is written."""
    page.keyboard.press("Escape")  # command mode: Ctrl+S saves the notebook
    page.keyboard.press("Control+s")
    page.wait_for_function(
        "() => !document.querySelector('.lm-TabBar-tab.jp-mod-current.jp-mod-dirty')",
        timeout=30_000,
    )


def _first_hour(page, lab: Lab, tmp_path: Path) -> tuple[dict, list[Path]]:
    """Steps 2-4 of the module docstring; returns the last Run All's state and screenshots."""
    exercises = _exercise_cells(lab.root / NOTEBOOK)
    assert list(exercises) == ["standardise_splits", "Minibatches"], exercises
    first = exercises["standardise_splits"]
    _open_notebook(page, lab)

    # 2. Run All stops at the first exercise with its hint: the exercise's check (the cell
    # after it) shows the stub's NotImplementedError, and no code cell after it ran
    state = _run_all(page)
    check = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").nth(first + 1)
    stopped = check.locator(".jp-OutputArea").inner_text()
    assert "NotImplementedError" in stopped and "implement `standardise_splits`" in stopped
    assert "hint: reduce X_train over axes (0, 1, 2)" in stopped, stopped
    cells = nbformat.read(lab.root / NOTEBOOK, as_version=4).cells
    ran = sum(cell.cell_type == "code" for cell in cells[: first + 2])
    numbered = [bool(re.search(r"\[\d+\]", p)) for p in state["prompts"]]
    assert numbered == [True] * ran + [False] * (len(numbered) - ran), state["prompts"]
    shots = [_screenshot(page, tmp_path, "01_step2_stopped_at_the_exercise.png")]

    # 3. a wrong solution, typed; its check's hint appears
    _type_into_cell(page, first, WRONG_STANDARDISE)
    text = _run_cell_and_check(page, first, WRONG_HINT)
    assert "check FAILED" in text and "check passed" not in text.split("check FAILED")[-1]
    shots.append(_screenshot(page, tmp_path, "01_step3_hint_for_a_wrong_solution.png"))

    # 4. the right solutions, typed; checks pass and Run All goes to the end
    _type_into_cell(page, first, RIGHT_STANDARDISE)
    # "on N real training images": N is the profile's training-set size, at most 5,000
    text = _run_cell_and_check(page, first, "real training images, mean and std equal exact")
    assert "check passed: on " in text, text
    assert "FAILED" not in text and "Hint:" not in text, text
    _type_into_cell(page, exercises["Minibatches"], RIGHT_MINIBATCHES)
    state = _run_all(page)
    _save(page)
    shots.append(_screenshot(page, tmp_path, "01_step4_checks_passed.png"))
    return state, shots


def _submit_refuses(course: Path) -> str:
    """Step 5: ``cifar-lab submit`` in the course folder, as the student runs it."""
    cmd = [sys.executable, "-m", "cifar_lab", "submit", "--student", "student1"]
    env = {**os.environ, "CIFAR_LAB_PROFILE": "quick"}
    done = subprocess.run(cmd, cwd=course, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, f"submit exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


def test_student_types_solutions_into_notebook_01(lab_server: Lab, browser_page, tmp_path):
    page = browser_page
    try:
        state, shots = _first_hour(page, lab_server, tmp_path)
    except BaseException:
        print(f"\nJupyterLab log (tail):\n{lab_server.log_tail()}")
        try:
            _screenshot(page, tmp_path, "01_preparation_failure.png")
        except Exception as exc:
            print(f"no screenshot at failure: {exc}")
        raise
    screenshot = shots[-1]

    tracebacks = [text for text in state["stderr"] if TRACEBACK.search(text)]
    assert not tracebacks, f"a cell raised (screenshot {screenshot}):\n" + "\n".join(tracebacks)
    assert all(re.search(r"\[\d+\]", p) for p in state["prompts"]), (
        f"not every code cell ran: {state['prompts']} (screenshot {screenshot})"
    )
    assert state["outputs"] >= 8, f"too few outputs rendered: {state} (screenshot {screenshot})"
    drawn = [i for i in state["images"] if i["complete"] and i["w"] > 100 and i["h"] > 100]
    assert drawn, f"no sample-grid image rendered: {state['images']} (screenshot {screenshot})"
    body = page.locator(".jp-NotebookPanel .jp-Notebook").inner_text()
    for expected in ("TensorFlow", "classes: airplane", "num_training", "check passed"):
        assert expected in body, f"{expected!r} not shown (screenshot {screenshot})"
    assert "check FAILED" not in body, f"a check failed (screenshot {screenshot})"

    # The notebook as the browser saved it: the typed solutions, every code cell ran, none
    # has an error output, and the sample-grid cell holds a PNG.
    saved = nbformat.read(lab_server.root / NOTEBOOK, as_version=4)
    code = [cell for cell in saved.cells if cell.cell_type == "code"]
    typed = [[line.rstrip() for line in cell.source.splitlines()] for cell in code]
    assert RIGHT_MINIBATCHES.splitlines() in typed, "the typed code was not saved"
    assert all(cell.execution_count for cell in code), "saved notebook: a cell did not run"
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert not errors, f"saved notebook has error outputs: {[e.get('ename') for e in errors]}"
    grid = next(cell for cell in code if "show_class_samples" in cell.source)
    assert any("image/png" in o.get("data", {}) for o in grid.outputs), grid.outputs

    # 5. submit refuses while the other notebooks are unfinished, and names them
    printed = _submit_refuses(lab_server.root)
    for stem in ("02", "03", "04", "05"):
        assert re.search(rf"\[problem\] {stem}:", printed), f"{stem} not named:\n{printed}"
    assert not re.search(r"\[problem\] 01:.*(error|NotImplementedError)", printed), printed
