"""The app as a whole: overview, navigation by keys at 80x24, bindings (ids, footer,
palette), the remembered theme, and the import rule (no torch, no trainer)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from textual.binding import Binding
from textual.command import CommandList, CommandPalette
from textual.widgets import Footer
from tui_support import wait_for

from fluxtui.tui import settings, theming
from fluxtui.tui.app import FluxApp, make_app
from fluxtui.tui.screens.config import ConfigScreen
from fluxtui.tui.screens.datasets import DatasetsScreen
from fluxtui.tui.screens.dialogs import QuitGuard
from fluxtui.tui.screens.monitor import MonitorScreen
from fluxtui.tui.screens.overview import OverviewScreen
from fluxtui.tui.screens.runs import RunsScreen
from fluxtui.tui.widgets.log_view import LogView
from fluxtui.tui.widgets.problem_list import ProblemList

SCREENS = {"1": OverviewScreen, "2": ConfigScreen, "3": DatasetsScreen, "4": MonitorScreen, "5": RunsScreen}


@pytest.mark.asyncio
async def test_overview_summarises_the_project(ws):
    app = make_app(ws.root, watch=False, gpu=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.state.scanned and app.state.estimate is not None)
        await pilot.pause()
        project = str(app.screen.query_one("#ov-project").render())
        assert "demo-shapes" in project and "tiny-random" in project
        assert "learns shapes and colours" in project  # the UI says what tiny-random is
        assert "shapes: 24 images, 6 batches/epoch" in project
        memory = str(app.screen.query_one("#ov-memory").render())
        assert "estimate" in memory and "GiB" in memory
        assert "no runs yet" in str(app.screen.query_one("#ov-run").render())
        assert app.screen.query_one(ProblemList).problems == []


@pytest.mark.asyncio
async def test_every_screen_by_keys_at_80x24(ws):
    app = make_app(ws.root, watch=False, gpu=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.state.loaded)
        for key, cls in [*SCREENS.items(), ("1", OverviewScreen)]:
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, cls), key
            footer = app.screen.query_one(Footer)
            assert footer.region.bottom == 24 and footer.region.height == 1
        # focus moves with tab alone; nothing needs a mouse
        await pilot.press("2")
        await pilot.pause()
        seen = set()
        for _ in range(6):
            await pilot.press("tab")
            seen.add(type(app.focused).__name__)
        assert len(seen) >= 2
        await pilot.press("escape", "1")  # out of a field, then the number keys work again
        assert isinstance(app.screen, OverviewScreen)


def _all_bindings() -> list[tuple[str, Binding]]:
    from fluxtui.tui.widgets.log_view import LogView as LV

    out = []
    for cls in (FluxApp, OverviewScreen, ConfigScreen, DatasetsScreen, MonitorScreen, RunsScreen, QuitGuard, LV):
        out += [(cls.__name__, b) for b in cls.BINDINGS if isinstance(b, Binding)]
    return out


def test_every_binding_has_an_id_and_a_description():
    bindings = _all_bindings()
    assert len(bindings) > 25
    for owner, b in bindings:
        assert b.id, f"{owner}: {b.key} has no id"
        assert b.description, f"{owner}: {b.key} has no description"
    # an id names one action on one key; Start on two screens shares its id, so one keymap
    # entry remaps it everywhere
    meaning: dict[str, tuple[str, str]] = {}
    for _owner, b in bindings:
        assert meaning.setdefault(b.id, (b.action, b.key)) == (b.action, b.key), b.id


@pytest.mark.asyncio
async def test_palette_lists_the_screens_actions_with_their_keys(ws):
    app = make_app(ws.root, watch=False, gpu=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.state.loaded)
        commands = {c.title: c.help for c in app.get_system_commands(app.screen)}
        assert commands["Start"] == "key: s"
        assert commands["Monitor screen"] == "key: 4"
        assert "Dark/light" in commands
        footer_keys = {b.binding.key for b in app.screen.active_bindings.values() if b.binding.show}
        assert {"s", "x", "r", "q"} <= footer_keys
        # run one from the palette: the theme switch
        before = app.theme
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"dark/light")
        await wait_for(pilot, lambda: app.screen.query_one(CommandList).option_count > 0)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.theme != before)


@pytest.mark.asyncio
async def test_theme_is_selectable_and_remembered(ws, tmp_path):
    app = make_app(ws.root, watch=False, gpu=False)
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.theme == theming.DARK
        assert {theming.DARK, theming.LIGHT} <= set(app.available_themes)
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert app.theme == theming.LIGHT and not app.current_theme.dark
    saved = json.loads((tmp_path / "xdg" / "fluxtui" / settings.SETTINGS_FILE).read_text())
    assert saved["theme"] == theming.LIGHT
    again = make_app(ws.root, watch=False, gpu=False)
    async with again.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert again.theme == theming.LIGHT


@pytest.mark.asyncio
async def test_a_keymap_in_the_settings_remaps_bindings_by_id(ws):
    settings.save({"keymap": {"run.start": "f5", "nav.runs": "f6"}})
    app = make_app(ws.root, watch=False, gpu=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        keys = {b.binding.action: key for key, b in app.screen.active_bindings.items()}
        assert keys["run('start')"] == "f5"
        await pilot.press("f6")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)


def test_themes_come_from_the_tcss_palettes():
    themes = {t.name: t for t in theming.load_themes()}
    assert {theming.DARK, theming.LIGHT, theming.HIGH_CONTRAST} <= set(themes)
    assert themes[theming.DARK].dark and not themes[theming.LIGHT].dark
    assert themes[theming.LIGHT].variables["loss-smooth"].startswith("#")
    # the palettes are TCSS that Textual itself accepts
    from textual.css.stylesheet import Stylesheet

    for path in theming.palette_files():
        sheet = Stylesheet()
        sheet.add_source(path.read_text(), read_from=(str(path), ""))
        sheet.parse()


@pytest.mark.asyncio
async def test_a_failing_worker_becomes_a_visible_error(ws):
    app = make_app(ws.root, watch=False, gpu=False)

    def boom() -> None:
        raise RuntimeError("disk on fire")

    async with app.run_test(size=(100, 30)) as pilot:
        app.run_worker(boom, thread=True, group="scan", exit_on_error=False)
        await wait_for(pilot, lambda: app.errors)
        assert app.errors[-1] == "scan failed: RuntimeError: disk on fire"
        assert any("disk on fire" in str(n.message) for n in app._notifications)
        assert app.is_running  # the app stays up


@pytest.mark.asyncio
async def test_a_missing_project_file_is_a_problem_not_a_crash(ws):
    ws.project_file.unlink()
    app = make_app(ws.root, watch=False, gpu=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.state.loaded)
        await pilot.pause()
        problems = app.screen.query_one(ProblemList).problems
        assert "does not exist" in problems[0].message
        assert "errors" in str(app.screen.query_one("#ov-project").render())


@pytest.mark.asyncio
async def test_monitor_binding_opens_log_search_from_the_footer_keys(ws):
    app = make_app(ws.root, watch=False, gpu=False, mode="monitor")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("slash")
        await pilot.pause()
        assert app.focused is app.screen.query_one(LogView).query_one("#log-search")


def test_tui_imports_neither_torch_nor_the_trainer():
    code = (
        "import sys, fluxtui.tui.app, fluxtui.commands.tui, fluxtui.commands.serve\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers', 'transformers', 'peft')"
        " or m.startswith('fluxtui.trainer')]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_fluxtui_dir_means_the_tui_on_that_folder(demo_workspace, tmp_path):
    from conftest import run_cli

    from fluxtui.cli import _command_names, build_parser, tui_on_folder

    commands = _command_names(build_parser())
    assert {"run", "status", "tui"} <= commands
    (tmp_path / "run").mkdir()
    assert tui_on_folder([str(demo_workspace)], commands) == ["tui", str(demo_workspace)]
    assert tui_on_folder(["run"], commands) == ["run"]  # a command name wins over a folder
    assert tui_on_folder(["./run"], commands) == ["tui", "./run"]  # the way to open that folder
    assert tui_on_folder(["stauts"], commands) == ["stauts"]  # a typo stays a usage error
    # not a terminal: the TUI command itself answers, so the folder was taken as one
    out = run_cli(str(demo_workspace), cwd=tmp_path)
    assert "needs a terminal" in out.stderr and "invalid choice" not in out.stderr, out.stderr
    out = run_cli("stauts", cwd=tmp_path)
    assert out.returncode == 2 and "invalid choice" in out.stderr
