"""project.toml edited outside the app (vim over another SSH session): the app reloads it,
says what changed, and with restart-on-change does what `fluxtui run --watch` does."""

from __future__ import annotations

import pytest
from tui_support import wait_for

from fluxtui.core import config, runs, workspace
from fluxtui.tui.app import make_app
from fluxtui.tui.screens.config import ConfigScreen
from fluxtui.tui.widgets.option_field import OptionField, field_id

SIZE = (100, 30)


@pytest.fixture
def ws(demo_workspace):
    ws = workspace.Workspace.at(demo_workspace)
    yield ws
    if runs.active_run(ws) is not None:
        runs.stop_run(ws, timeout=20)


def save_like_an_editor(path, text: str) -> None:
    """vim and friends write a new file and rename it over the old one."""
    tmp = path.with_name(".project.toml.swp-new")
    tmp.write_text(text)
    tmp.replace(path)


@pytest.mark.asyncio
async def test_outside_edit_is_reloaded_and_described(ws):
    app = make_app(ws.root, gpu=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app._watcher is not None and app.state.project is not None, 30, "the watcher")
        await pilot.press("2")
        screen = app.screen
        assert isinstance(screen, ConfigScreen)
        screen.focus_key("training.learning_rate")
        await wait_for(pilot, lambda: screen.query(f"#{field_id('training.learning_rate')}"), 10, "the field")

        text = ws.project_file.read_text().replace("learning_rate = 0.001", "learning_rate = 0.0002")
        save_like_an_editor(ws.project_file, text)
        await wait_for(pilot, lambda: app.state.last_change and "learning_rate" in app.state.last_change, 20, "change")
        await wait_for(pilot, lambda: app.state.project.training.learning_rate == 0.0002, 10, "the reload")
        field = screen.query_one(f"#{field_id('training.learning_rate')}", OptionField)
        await wait_for(pilot, lambda: field.control.value == "0.0002", 10, "the form to follow")
        assert not field.modified

        # an invalid edit is reported and the form keeps the last good values
        save_like_an_editor(ws.project_file, text.replace("learning_rate = 0.0002", 'learning_rate = "x"'))
        await wait_for(pilot, lambda: "has errors" in (app.state.last_change or ""), 20, "the invalid change")


@pytest.mark.slow
@pytest.mark.asyncio
async def test_restart_on_change_resumes_a_run_started_elsewhere(ws):
    config.set_values(ws.project_file, {"training.max_train_steps": 20000, "training.checkpointing_steps": 20})
    first = runs.start_run(ws, detach=True)  # headless, as `fluxtui run --detach` does
    app = make_app(ws.root, runs_interval=0.3)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.active is not None, 30, "the app to see the run")
        assert app.state.active.run_id == first.run_id
        await wait_for(pilot, lambda: app._watcher is not None, 30, "the watcher")
        await wait_for(
            pilot, lambda: app.state.active and (app.state.active.step or 0) >= 25, 180, "a first checkpoint"
        )
        await pilot.press("a")  # restart on change: on
        assert app.state.auto_restart
        text = ws.project_file.read_text().replace("learning_rate = 0.001", "learning_rate = 0.0005")
        save_like_an_editor(ws.project_file, text)
        await wait_for(
            pilot,
            lambda: app.state.active is not None and app.state.active.run_id != first.run_id,
            180,
            "the restarted run",
        )
        second = app.state.active.run_id
        await wait_for(pilot, lambda: runs.get_run(ws, second).resumed_from is not None, 180, "the resume")
    assert runs.get_run(ws, first.run_id).status == "stopped"
    assert runs.get_run(ws, second).resumed_from >= 20
