"""`fluxtui serve` in a real browser: Debian's chromium, headless, driven by Playwright with
the system browser as its executable (nothing downloaded at test time).

The page's text is read through the DOM: the served page turns on xterm's screen-reader mode,
which keeps the terminal's rows as text in `.xterm-accessibility-tree`. Screenshots go to the
test's temp folder (`--basetemp` to keep them where you want to look).
"""

from __future__ import annotations

import os
import re
import tempfile
from urllib.parse import urlsplit

import pytest
from test_tui_serve import start_serve, stop_serve

from fluxtui.core import runs
from fluxtui.core.workspace import Workspace

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREEN_TEXT = (
    "Array.from(document.querySelectorAll('.xterm-accessibility-tree > div')).map(d => d.textContent).join('\\n')"
)
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
WAIT_MS = 120_000  # a busy 2-core machine: the app and the trainer both start from cold


def wait_for_text(page, *patterns: str) -> str:
    """Wait until the terminal's text matches every one of `patterns` (JS regular expressions)
    at once; return that very text. Reading the screen again afterwards would race the app's
    next redraw (xterm rebuilds its accessibility rows while it paints)."""
    tests = " && ".join(f"new RegExp({p!r}).test(t)" for p in patterns)
    handle = page.wait_for_function(
        f"(() => {{ const t = {SCREEN_TEXT}; return ({tests}) ? t : false; }})()", timeout=WAIT_MS
    )
    return handle.json_value()


@pytest.mark.slow
def test_the_tui_in_a_real_browser(demo_workspace, tmp_path, monkeypatch):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no browser at {CHROMIUM}: `apt-get install chromium` (.ci/run does) to run this test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright comes with the test extra")
    monkeypatch.delenv("NO_COLOR", raising=False)  # the screenshots show the real colours
    proc, _port, url = start_serve(demo_workspace)
    requests: list[str] = []
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                tempfile.mkdtemp(dir=tmp_path, prefix="profile-"),
                executable_path=CHROMIUM,
                args=FLAGS,
                headless=True,
                viewport={"width": 1280, "height": 800},
            )
            page = browser.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url)
            text = wait_for_text(page, "Problems:", "demo-shapes", "tiny-random")  # the Overview, drawn
            assert "Overview" in text
            page.screenshot(path=tmp_path / "1-overview.png")

            page.focus(".xterm-helper-textarea")  # where xterm takes its keys
            page.keyboard.press("3")
            text = wait_for_text(page, "images · \\d+ captioned", "000-yellow-circle\\.png")
            assert "000-yellow-circle.png" in text
            page.screenshot(path=tmp_path / "2-datasets.png")

            page.keyboard.press("1")
            wait_for_text(page, "press s to start")
            page.keyboard.press("s")  # start a run of the tiny-random model
            text = wait_for_text(page, "run \\d{8}-\\d{6} started")
            page.keyboard.press("4")
            text = wait_for_text(
                page, "step [1-9]\\d*/100|completed", "\\d{8}-\\d{6} (running|completed)", "Log", "Checkpoints"
            )
            assert re.search(r"\d{8}-\d{6} (running|completed)", text)
            assert "Log" in text and "Checkpoints" in text
            page.screenshot(path=tmp_path / "3-monitor.png")
            browser.close()
    finally:
        stop_serve(proc)
        ws = Workspace.at(demo_workspace)
        for run in runs.list_runs(ws):
            if run.active:
                runs.stop_run(ws, run.run_id, timeout=60.0)
    assert requests, "the browser recorded no requests"
    outside = [
        u for u in requests if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).hostname not in LOCAL_HOSTS
    ]
    assert outside == [], f"fetched from outside the machine: {outside}"
    assert {p.name for p in tmp_path.glob("*.png")} == {"1-overview.png", "2-datasets.png", "3-monitor.png"}
