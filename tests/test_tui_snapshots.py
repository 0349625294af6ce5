"""Snapshot tests (pytest-textual-snapshot, pinned with textual). The Pilot tests are the
main guard; these catch layout regressions. Everything shown is fixed: no clock, no GPU, no
blinking cursor, fixed event times, UTC.

Update after an intended change: pytest tests/test_tui_snapshots.py --snapshot-update
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from pytest_textual_snapshot import SVGImageExtension
from textual._doc import take_svg_screenshot
from textual.widgets import Input

from fluxtui.core.events import EventWriter
from fluxtui.tui import theming
from fluxtui.tui.app import make_app
from fluxtui.tui.screens.config import ConfigScreen
from fluxtui.tui.screens.datasets import DatasetsScreen


class Snapshots(SVGImageExtension):
    """SVG snapshots under tests/snapshots/<test module>/."""

    @classmethod
    def dirname(cls, *, test_location) -> str:
        return str(Path(test_location.filepath).parent / "snapshots" / Path(test_location.filepath).stem)


@pytest.fixture(autouse=True)
def _fixed_world(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)  # snapshots show the real colours
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.delenv("TMUX", raising=False)
    # the gauge shows the machine's RAM when there is no GPU: the same numbers everywhere
    monkeypatch.setattr("fluxtui.tui.screens.monitor._machine_ram", lambda: (3.0, 16.0))
    time.tzset()
    yield
    time.tzset()


@pytest.fixture
def compare(snapshot):
    def check(app, *, size=(100, 30), press=(), ready=None) -> bool:
        async def run_before(pilot) -> None:
            deadline = time.monotonic() + 90  # generous: the suite also runs under load
            while not (app.state.scanned and (ready is None or ready(app))):
                assert time.monotonic() < deadline, "the app never settled"
                await pilot.pause(0.05)
            for field in app.screen.query(Input):
                field.cursor_blink = False
            await pilot.pause(0.3)  # the redraw timer of the heavier widgets
            await pilot.pause()

        shot = take_svg_screenshot(app=app, press=press, terminal_size=size, run_before=run_before)
        return snapshot.use_extension(Snapshots) == shot

    return check


def app_for(ws, **kw):
    return make_app(ws.root, watch=False, gpu=False, **kw)


def finished_run(ws, run_id: str = "20260101-000000") -> None:
    folder = ws.run_dir(run_id)
    (folder / "checkpoints" / "checkpoint-30").mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint-30" / "adapter.safetensors").write_bytes(b"x" * 2048)
    events = EventWriter(folder / "events.jsonl", run_id)
    events.emit("run.start", pid=1, world_size=1, config_hash="x", resumed_from=None, fluxtui_version="t")
    events.emit("stage", name="train", done=0, total=40)
    log = []
    for step in range(1, 41):
        loss = 1.2 / (1 + 0.04 * step) + (0.05 if step % 3 == 0 else 0.0)
        events.emit(
            "step",
            step=step,
            epoch=1 + step // 6,
            loss=loss,
            lr=1e-3,
            grad_norm=0.1,
            samples_per_s=90.0,
            vram_alloc_mb=0.0,
            vram_peak_mb=0.0,
            rss_mb=512.0,
        )
        if step % 10 == 0:
            log.append(f"00:00:{step:02d} step {step}/40 loss {loss:.4f}")
        if step == 30:
            events.emit("checkpoint", step=30, path="checkpoints/checkpoint-30", seconds=0.04, removed=[])
            log.append("00:00:30 checkpoint saved: checkpoints/checkpoint-30")
    events.emit("run.end", status="completed", step=40, error=None, traceback_tail=None)
    events.close()
    lines = (folder / "events.jsonl").read_text().splitlines()
    fixed = []
    for i, line in enumerate(lines):  # a step every half second, from a fixed start
        event = json.loads(line)
        event["t"] = 1_767_225_600 + i * 0.5
        fixed.append(json.dumps(event))
    (folder / "events.jsonl").write_text("\n".join(fixed) + "\n")
    (folder / "trainer.log").write_text("\n".join(log) + "\n")


def test_overview(ws, compare):
    app = app_for(ws)
    assert compare(app, ready=lambda a: a.state.estimate is not None)


def test_overview_light_at_80x24(ws, compare, tmp_path):
    from fluxtui.tui import settings

    settings.save({"theme": theming.LIGHT})
    app = app_for(ws)
    assert compare(app, size=(80, 24), ready=lambda a: a.state.estimate is not None)


def test_config_editor_training_tab_at_80x24(ws, compare):
    app = app_for(ws, mode="config")

    def on_training_tab(a) -> bool:
        screen = a.screen
        if isinstance(screen, ConfigScreen) and screen.loaded and "training" not in screen.built:
            screen.query_one("#cfg-form").active = "tab-training"
        return isinstance(screen, ConfigScreen) and "training" in screen.built

    assert compare(app, size=(80, 24), ready=on_training_tab)


def test_monitor_of_a_finished_run(ws, compare):
    finished_run(ws)
    app = app_for(ws, mode="monitor")

    def drawn(a) -> bool:
        screen = a.screen
        return bool(a.state.runs) and screen.current is not None and screen.current.step == 40 and not screen._dirty

    assert compare(app, ready=drawn)


def _settled(mode: str):
    def ready(a) -> bool:
        screen = a.screen
        if a.state.estimate is None or not a.state.runs:
            return False
        if mode == "monitor":
            return screen.current is not None and screen.current.step == 40 and not screen._dirty
        if mode == "config":
            return isinstance(screen, ConfigScreen) and screen.loaded
        if mode == "datasets":
            return isinstance(screen, DatasetsScreen) and screen.preview_settled
        return True

    return ready


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
@pytest.mark.parametrize("mode", ["overview", "config", "datasets", "monitor", "runs"])
def test_every_screen_at_small_and_large_terminals(ws, compare, mode, size):
    """At 80x24 nothing essential may be clipped (footer Quit, monitor header, runs columns);
    at 160x48 the screens should use the room. Review the SVGs when they change."""
    finished_run(ws)
    app = app_for(ws, mode=mode)
    assert compare(app, size=size, ready=_settled(mode))
