"""What keeps the frames few: a text that did not change is not drawn again, a progress bar
repaints only when its cells change, a screen already mounted is switched to without
Textual's 50 ms pause, and screen modules are imported after the first frame."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Static
from tui_support import wait_for

from fluxtui.tui.app import make_app
from fluxtui.tui.widgets.progress_line import ProgressLine
from fluxtui.tui.widgets.text_update import show_text


class OneStatic(App):
    def compose(self) -> ComposeResult:
        yield Static("", id="text")
        yield ProgressLine(id="bar")


def record_refreshes(widget) -> list[bool]:
    """The `layout` flag of every refresh the widget asks for."""
    calls: list[bool] = []
    original = widget.refresh

    def refresh(*regions, repaint=True, layout=False, **kwargs):
        calls.append(layout)
        return original(*regions, repaint=repaint, layout=layout, **kwargs)

    widget.refresh = refresh
    return calls


@pytest.mark.asyncio
async def test_show_text_draws_a_changed_text_and_lays_out_only_for_a_new_height():
    app = OneStatic()
    async with app.run_test(size=(60, 10)) as pilot:
        static = app.query_one("#text", Static)
        show_text(static, "step 1 of 10")
        await pilot.pause()
        calls = record_refreshes(static)

        assert show_text(static, "step 1 of 10") is False
        assert calls == []  # the same text: nothing at all

        assert show_text(static, "step 2 of 10") is True
        assert calls and not any(calls)  # repainted, no layout pass
        await pilot.pause()
        assert "step 2 of 10" in str(static.render())

        calls.clear()
        assert show_text(static, "step 3 of 10\nloss 0.25") is True
        assert any(calls)  # one line more: the screen is laid out again
        await wait_for(pilot, lambda: static.size.height == 2, what="the taller text laid out")


@pytest.mark.asyncio
async def test_the_progress_line_repaints_only_when_its_cells_or_percent_change():
    app = OneStatic()
    async with app.run_test(size=(56, 10)) as pilot:
        bar = app.query_one(ProgressLine)
        bar.show(0, 100_000)
        await pilot.pause()
        start = bar.repaints
        for step in range(1, 500):
            bar.show(step, 100_000)
        assert bar.repaints == start  # 499 steps of 100,000: not one cell, not one percent

        bar.show(50_000, 100_000)
        assert bar.repaints == start + 1
        await pilot.pause()
        drawn = str(bar.render())
        assert drawn.endswith(" 50%")
        width = bar.size.width - 6
        assert drawn.count("━") + drawn.count("╸") == width  # filled and dim cells fill the bar

        bar.show(100_000, 100_000)
        assert str(bar.render()).endswith("100%")
        bar.show(None, None)  # no run: an empty bar, no animation
        assert str(bar.render()).endswith("--%")


@pytest.mark.asyncio
async def test_a_mounted_screen_is_switched_to_without_the_repaint_pause(ws, monkeypatch):
    delays: list[str] = []
    original = App.delay_update

    def delay_update(self, delay=0.05):
        delays.append(self.current_mode)
        return original(self, delay)

    monkeypatch.setattr(App, "delay_update", delay_update)
    app = make_app(ws.root, watch=False, gpu=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.state.loaded, what="the project")
        await pilot.press("4")  # first visit: composed and mounted behind the pause
        await wait_for(pilot, lambda: app.current_mode == "monitor", what="the monitor")
        first_visits = len(delays)
        assert first_visits >= 1
        for key, mode in [("1", "overview"), ("4", "monitor"), ("1", "overview")]:
            await pilot.press(key)
            await wait_for(pilot, lambda mode=mode: app.current_mode == mode, what=mode)
        assert len(delays) == first_visits  # already mounted: no pause


PRELOAD_SCRIPT = """
import asyncio, json, sys
import fluxtui.tui.app as tui

def screens():
    return sorted(m.rsplit(".", 1)[1] for m in sys.modules if m.startswith("fluxtui.tui.screens."))

at_import = screens()

async def main():
    app = tui.make_app(sys.argv[1], watch=False, gpu=False)
    first = []
    preload = app.preload_screens

    def after_first_frame(*args):
        first.extend(screens())
        preload(*args)

    app.preload_screens = after_first_frame
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(600):
            if {"config", "datasets", "monitor", "runs"} <= set(screens()):
                break
            await pilot.pause(0.1)
        print(json.dumps({"import": at_import, "first": first, "later": screens(), "mode": app.current_mode}))

asyncio.run(main())
"""


def test_screen_modules_are_imported_after_the_first_frame_not_before(ws):
    out = subprocess.run(
        [sys.executable, "-c", PRELOAD_SCRIPT, str(ws.root)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    later = {"config", "datasets", "monitor", "runs"}
    assert not later & set(seen["import"])  # importing the app imports no screen
    assert "overview" in seen["first"] and not later & set(seen["first"])
    assert later <= set(seen["later"])  # then the rest, in the background
    assert seen["mode"] == "overview"


@pytest.mark.asyncio
async def test_memory_samples_do_not_redraw_the_empty_chart_of_a_monitor_without_a_run(ws):
    from fluxtui.tui.widgets.loss_chart import LossChart

    app = make_app(ws.root, watch=False, gpu=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.state.loaded, what="the project")
        await pilot.press("4")
        await wait_for(pilot, lambda: app.current_mode == "monitor", what="the monitor")
        monitor = app.screen
        chart = monitor.query_one(LossChart)
        clears = []
        original = chart.clear
        chart.clear = lambda *a, **k: (clears.append(1), original(*a, **k))[1]
        for _ in range(3):  # what the memory sampler announces every 2 s
            draws = monitor.heavy_draws
            app.state_changed.publish("gpu")
            await wait_for(pilot, lambda draws=draws: monitor.heavy_draws > draws, what="the heavy draw")
        assert clears == []


@pytest.mark.asyncio
async def test_the_mounted_screens_are_frozen_out_of_the_cyclic_collector(ws):
    import gc

    from fluxtui.tui import modes

    app = make_app(ws.root, watch=False, gpu=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.state.loaded, what="the project")
        before = modes.frozen
        await pilot.press("2")
        await wait_for(pilot, lambda: modes.frozen > before, what="the new screen frozen")
        screen = app.screen
        assert gc.get_freeze_count() > 0
        assert not any(o is screen for o in gc.get_objects())  # out of every generation
