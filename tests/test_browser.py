"""A student's first hour, end to end, in a real browser (slow).

What a student does after ``pip install``: copy the course with
``python -m cifar_lab notebooks --out course/``, start JupyterLab on it, open
``01_preparation.ipynb``, choose Run > Run All Cells and look at the outputs.
Here JupyterLab runs on a random free port of 127.0.0.1 with a token, the
kernel gets ``CIFAR_LAB_PROFILE=quick`` and the real CIFAR-10 archive, and
headless Chromium (Debian's ``/usr/bin/chromium``) is driven by Playwright.

The test checks that every code cell ran, that the class-sample grid rendered
as an image, that no cell shows a Python traceback (TensorFlow's log lines on
stderr are fine), and that the notebook saved from the browser holds no
``error`` output. A full-page screenshot is written to the test's tmp folder
(its path is printed) and copied to ``$CIFAR_LAB_SCREENSHOT_DIR`` when set.

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
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
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


def _screenshot(page, tmp_path: Path, name: str = "01_preparation_run_all.png") -> Path:
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


def _open_and_run_all(page, lab: Lab) -> dict:
    """Open the notebook, wait for its kernel, Run > Run All Cells, wait, save (Ctrl+S)."""
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
    initial_prompts = page.evaluate(NOTEBOOK_STATE_JS)["prompts"]
    print(f"\nnotebook open, kernel idle after {time.monotonic() - started:.0f} s")

    # Run > Run All Cells, as a student clicks it.
    page.locator("#jp-MainMenu").get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    state = _wait_for_run_all(page, initial_prompts, RUN_ALL_S)
    print(f"Run All finished after {time.monotonic() - started:.0f} s")

    # Save from the browser; the tab loses its unsaved-changes mark once the file is written.
    page.locator(".jp-NotebookPanel .jp-Notebook").click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    page.wait_for_function(
        "() => !document.querySelector('.lm-TabBar-tab.jp-mod-current.jp-mod-dirty')",
        timeout=30_000,
    )
    return state


def test_student_runs_notebook_01_in_jupyterlab(lab_server: Lab, browser_page, tmp_path):
    page = browser_page
    try:
        state = _open_and_run_all(page, lab_server)
    except BaseException:
        print(f"\nJupyterLab log (tail):\n{lab_server.log_tail()}")
        try:
            _screenshot(page, tmp_path, "01_preparation_failure.png")
        except Exception as exc:
            print(f"no screenshot at failure: {exc}")
        raise
    screenshot = _screenshot(page, tmp_path)

    tracebacks = [text for text in state["stderr"] if TRACEBACK.search(text)]
    assert not tracebacks, f"a cell raised (screenshot {screenshot}):\n" + "\n".join(tracebacks)
    assert all(re.search(r"\[\d+\]", p) for p in state["prompts"]), (
        f"not every code cell ran: {state['prompts']} (screenshot {screenshot})"
    )
    assert state["outputs"] >= 8, f"too few outputs rendered: {state} (screenshot {screenshot})"
    drawn = [i for i in state["images"] if i["complete"] and i["w"] > 100 and i["h"] > 100]
    assert drawn, f"no sample-grid image rendered: {state['images']} (screenshot {screenshot})"
    body = page.locator(".jp-NotebookPanel .jp-Notebook").inner_text()
    for expected in ("TensorFlow", "classes: airplane", "num_training"):
        assert expected in body, f"{expected!r} not shown (screenshot {screenshot})"

    # The notebook as the browser saved it: every code cell ran, none has an error output,
    # and the sample-grid cell holds a PNG.
    saved = nbformat.read(lab_server.root / NOTEBOOK, as_version=4)
    code = [cell for cell in saved.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), "saved notebook: a cell did not run"
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert not errors, f"saved notebook has error outputs: {[e.get('ename') for e in errors]}"
    grid = next(cell for cell in code if "show_class_samples" in cell.source)
    assert any("image/png" in o.get("data", {}) for o in grid.outputs), grid.outputs
