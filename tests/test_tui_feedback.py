"""Every action answers: a refused Start says why, quitting with a live run says training
goes on and how to stop it, the problem list is ready for Enter, `?` shows the keys, the
palette lists fluxtui's commands, number keys switch screens except while typing."""

from __future__ import annotations

import re

import pytest
from test_tui_monitor import FakeTrainer
from textual.widgets import Input
from tui_support import toasts, wait_for

from fluxtui.tui.app import make_app
from fluxtui.tui.screens.config import ConfigScreen
from fluxtui.tui.screens.dialogs import RunningQuitGuard
from fluxtui.tui.screens.overview import OverviewScreen
from fluxtui.tui.widgets.problem_list import ProblemList

SIZE = (120, 36)


def break_batch_size(ws) -> None:
    text = ws.project_file.read_text()
    new, n = re.subn(r"(?m)^#?\s*train_batch_size\s*=.*$", "train_batch_size = 0", text, count=1)
    assert n == 1
    ws.project_file.write_text(new)


@pytest.mark.asyncio
async def test_a_refused_start_says_why(ws):
    break_batch_size(ws)
    app = make_app(ws.root, watch=False, gpu=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.loaded, what="the project")
        app.request_run("start")
        await wait_for(pilot, lambda: any("start:" in t for t in toasts(app)), timeout=60, what="the refusal")
        said = next(t for t in toasts(app) if "start:" in t)
        assert "problems" in said and "train_batch_size" in said


@pytest.mark.asyncio
async def test_start_with_a_run_active_says_which_run(ws):
    FakeTrainer(ws, "20260101-000000").steps(2)
    app = make_app(ws.root, watch=False, gpu=False, runs_interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.active is not None, what="the run")
        app.request_run("start")
        await wait_for(pilot, lambda: any("already" in t for t in toasts(app)), what="the toast")
        assert any("20260101-000000" in t for t in toasts(app))


@pytest.mark.asyncio
async def test_quitting_with_a_live_run_says_training_continues(ws):
    FakeTrainer(ws, "20260101-000000").steps(2)
    app = make_app(ws.root, watch=False, gpu=False, runs_interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.active is not None, what="the run")
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, RunningQuitGuard), what="the question")
        text = str(app.screen.query_one("#guard-text").render())
        assert "training continues" in text and "fluxtui stop" in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, OverviewScreen), what="back on the overview")
        assert app.is_running
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, RunningQuitGuard), what="the question again")
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, what="the app to quit")


@pytest.mark.asyncio
async def test_quitting_without_a_run_does_not_ask(ws):
    app = make_app(ws.root, watch=False, gpu=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.loaded, what="the project")
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, what="the app to quit")


@pytest.mark.asyncio
async def test_the_first_problem_is_highlighted_so_enter_jumps(ws):
    break_batch_size(ws)
    app = make_app(ws.root, watch=False, gpu=False)
    async with app.run_test(size=SIZE) as pilot:
        problems = app.screen.query_one(ProblemList)
        await wait_for(pilot, lambda: bool(problems.problems), what="the problems")
        assert problems.highlighted == 0 and app.focused is problems
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfigScreen), what="the editor")


@pytest.mark.asyncio
async def test_question_mark_opens_the_keys(ws):
    app = make_app(ws.root, watch=False, gpu=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: bool(app.screen.query("HelpPanel")), what="the keys panel")
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: not app.screen.query("HelpPanel"), what="the panel to close")


@pytest.mark.asyncio
async def test_the_palette_lists_fluxtuis_commands(ws):
    app = make_app(ws.root, watch=False, gpu=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.loaded, what="the project")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for wanted in ("Overview screen", "Config screen", "Monitor screen", "Runs screen", "Start", "Keys"):
            assert wanted in titles, titles
        assert "Screenshot" not in titles and "Maximize" not in titles  # Textual's generic ones


@pytest.mark.asyncio
async def test_number_keys_switch_screens_except_while_typing(ws):
    app = make_app(ws.root, watch=False, gpu=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfigScreen), what="the editor")
        screen = app.screen
        await wait_for(pilot, lambda: bool(screen.query(Input)), what="the fields")
        field = next(i for i in screen.query(Input) if not i.disabled)
        field.focus()
        await pilot.pause()
        await pilot.press("3")
        await pilot.pause()
        assert app.screen is screen and "3" in field.value  # typed, not a screen switch
        footer_keys = {b.binding.description for b in screen.active_bindings.values()}
        assert any("Leave field" in d for d in footer_keys)
        await pilot.press("escape", "1")
        await wait_for(pilot, lambda: isinstance(app.screen, OverviewScreen), what="the overview")


@pytest.mark.asyncio
@pytest.mark.parametrize("width,columns", [(120, 1), (160, 2)])
async def test_wide_terminals_get_two_columns_of_fields(ws, width, columns):
    from fluxtui.tui.widgets.option_field import OptionField

    app = make_app(ws.root, watch=False, gpu=False, mode="config")
    async with app.run_test(size=(width, 48)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: isinstance(screen, ConfigScreen) and screen.loaded, what="the editor")
        screen.query_one("#cfg-form").active = "tab-training"
        await wait_for(pilot, lambda: "training" in screen.built, what="the training fields")
        await pilot.pause()
        fields = [f for f in screen.query(OptionField) if f.region.width and f.region.y >= 0]
        assert len(fields) > 4
        assert len({f.region.x for f in fields}) == columns
