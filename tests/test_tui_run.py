"""A real tiny-random training started, watched and stopped from the TUI with keys."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable
from tui_support import wait_for

from fluxtui.core import config, runs, workspace
from fluxtui.tui.app import make_app
from fluxtui.tui.screens.monitor import MonitorScreen
from fluxtui.tui.widgets.image_view import ValidationGallery
from fluxtui.tui.widgets.log_view import LogView
from fluxtui.tui.widgets.loss_chart import LossChart

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]


@pytest.fixture
def ws(demo_workspace):
    ws = workspace.Workspace.at(demo_workspace)
    # long enough to still be running when we stop it; no periodic checkpoints or validation,
    # so every one that shows up was asked for from the TUI
    config.set_values(
        ws.project_file,
        {"training.max_train_steps": 20000, "training.checkpointing_steps": 0, "validation.validation_steps": 0},
    )
    yield ws
    if runs.active_run(ws) is not None:  # a failed assertion must not leave a trainer behind
        runs.stop_run(ws, timeout=20)


async def test_start_watch_and_stop_a_real_run(ws):
    app = make_app(ws.root, watch=False, runs_interval=0.3, tail_interval=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.state.loaded, 30, "the project")
        await pilot.press("s")  # Start, on the overview
        await wait_for(pilot, lambda: app.state.active is not None, 60, "the run to start")
        run_id = app.state.active.run_id
        await pilot.press("4")
        screen = app.screen
        assert isinstance(screen, MonitorScreen)
        await wait_for(pilot, lambda: screen.run_id == run_id, 10, "the monitor to attach")
        await wait_for(pilot, lambda: screen.current.step > 0, 180, "the first step")

        first_step = screen.current.step
        chart = screen.query_one(LossChart)
        log = screen.query_one(LogView)
        table = screen.query_one("#mon-checkpoints", DataTable)
        first_points, first_lines = chart.points_drawn, len(log.all_lines)
        await wait_for(pilot, lambda: screen.current.step >= first_step + 30, 120, "steps to advance")
        await wait_for(pilot, lambda: chart.points_drawn > first_points, 10, "the chart to move")
        await wait_for(pilot, lambda: len(log.all_lines) > first_lines, 10, "the log to move")
        assert table.row_count == 0
        await pilot.press("c")  # Checkpoint now
        await wait_for(pilot, lambda: table.row_count == 1, 60, "the requested checkpoint")
        await pilot.press("v")  # Validate now
        gallery = screen.query_one(ValidationGallery)
        await wait_for(pilot, lambda: len(gallery.shown) == 1, 60, "the requested validation image")
        await pilot.press("c")
        await wait_for(pilot, lambda: table.row_count == 2, 60, "a second checkpoint")
        status = str(screen.query_one("#mon-status").render())
        assert "/20000" in status and "s/step" in status and "ETA" in status and "loss" in status

        await pilot.press("x")  # Stop: checkpoint, then exit
        await wait_for(
            pilot,
            lambda: app.state.active is None and app.state.runs and app.state.runs[-1].status in runs.FINAL,
            120,
            "the run to stop",
        )
        assert app.state.runs[-1].status == "stopped"
        await wait_for(pilot, lambda: "stopped" in str(screen.query_one("#mon-status").render()), 10, "stopped shown")
    info = runs.get_run(ws, run_id)
    assert info.status == "stopped" and info.step >= first_step + 30
    assert info.last_checkpoint  # the stop saved one
