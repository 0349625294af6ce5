"""What keeps the TUI fast: one shared run snapshot, announced only when it changes; the
footer rebuilt only when the possible actions change; hidden screens neither draw nor read
the run's files. Run folders are written the way the trainer writes them (FakeTrainer)."""

from __future__ import annotations

import pytest
from test_tui_monitor import FakeTrainer, status_text
from tui_support import wait_for

from fluxtui.tui.app import make_app
from fluxtui.tui.screens.monitor import MonitorScreen
from fluxtui.tui.screens.overview import OverviewScreen
from fluxtui.tui.widgets.footer import FluxFooter

SIZE = (100, 30)


def nav_text(screen) -> str:
    return str(screen.query_one("#nav-run").render())


async def full_polls(pilot, app, n: int = 3) -> None:
    """Let the app poll the run registry `n` more times (at least n-1 finished)."""
    lister = app._run_lister
    target = lister.polls + n
    await wait_for(pilot, lambda: lister.polls >= target, what=f"{n} run polls")


def count_calls(obj, name: str) -> list[int]:
    calls = [0]
    original = getattr(obj, name)

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    setattr(obj, name, counted)
    return calls


@pytest.mark.asyncio
async def test_a_poll_with_nothing_new_reads_no_run_and_leaves_the_footer_alone(ws):
    run = FakeTrainer(ws, "20260101-000000")
    run.steps(5)
    app = make_app(ws.root, watch=False, gpu=False, runs_interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, OverviewScreen)
        await wait_for(pilot, lambda: app.state.active is not None and app.state.active.step == 5, what="the run")
        await full_polls(pilot, app, 2)
        bindings = count_calls(screen, "refresh_bindings")
        reads, redraws = app._run_lister.reads, screen.redraws

        await full_polls(pilot, app, 5)
        assert app._run_lister.reads == reads  # nothing changed on disk: nothing re-read
        assert screen.redraws == redraws  # and nothing announced
        assert bindings[0] == 0

        run.steps(3)  # new progress: redrawn, but Start/Stop stay what they were
        await wait_for(pilot, lambda: "step 8" in nav_text(screen), what="step 8 on the badge")
        assert app._run_lister.reads > reads
        assert bindings[0] == 0

        run.end()  # the run is over: Start becomes possible, the footer changes
        await wait_for(pilot, lambda: app.state.active is None, what="the run to end")
        await pilot.pause()
        assert bindings[0] >= 1
        assert screen.check_action("run", ("start",)) is True


@pytest.mark.asyncio
async def test_a_hidden_monitor_reads_no_file_and_catches_up_when_shown(ws):
    run = FakeTrainer(ws, "20260101-000000")
    run.steps(10)
    app = make_app(ws.root, watch=False, gpu=False, mode="monitor", runs_interval=0.1, tail_interval=0.05)
    async with app.run_test(size=SIZE) as pilot:
        monitor = app.screen
        assert isinstance(monitor, MonitorScreen)
        await wait_for(pilot, lambda: "step 10/50" in status_text(app), what="step 10 on the monitor")
        feed = monitor.feed
        assert feed is not None
        await app.switch_mode("overview")
        await wait_for(pilot, lambda: not monitor.is_current, what="the overview")
        await pilot.pause(0.3)  # a tail poll already under way may finish
        events_at, log_at = feed.events.offset, feed.log.offset
        draws = monitor.heavy_draws

        run.steps(10)
        overview = app.screen
        await wait_for(pilot, lambda: "step 20" in nav_text(overview), what="step 20 on the overview")
        await full_polls(pilot, app, 5)
        assert (feed.events.offset, feed.log.offset) == (events_at, log_at)  # not read while hidden
        assert monitor.heavy_draws == draws

        await app.switch_mode("monitor")
        await wait_for(pilot, lambda: "step 20/50" in status_text(app), what="step 20 after coming back")
        assert monitor.feed is feed  # the same offsets: only what was appended is read
        assert feed.events.offset > events_at and feed.log.offset > log_at


@pytest.mark.asyncio
async def test_the_shared_run_snapshot_reaches_every_screen(ws):
    run = FakeTrainer(ws, "20260101-000000")
    run.steps(2)
    app = make_app(ws.root, watch=False, gpu=False, runs_interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        for mode in ("overview", "config", "datasets", "monitor", "runs"):
            await app.switch_mode(mode)  # mount every screen
        await app.switch_mode("overview")
        run.steps(5)
        await wait_for(pilot, lambda: "step 7" in nav_text(app.screen), what="step 7 on the overview")
        for mode in ("config", "datasets", "monitor", "runs"):
            await app.switch_mode(mode)
            await wait_for(pilot, lambda: "step 7" in nav_text(app.screen), what=f"step 7 on {mode}")
        run.end()
        await wait_for(pilot, lambda: "last run completed" in nav_text(app.screen), what="the end on runs")
        await app.switch_mode("overview")
        await wait_for(pilot, lambda: "completed" in str(app.screen.query_one("#ov-run").render()), what="overview")


@pytest.mark.asyncio
async def test_without_a_gpu_the_gauge_shows_the_machines_ram(ws):
    from fluxtui.core.sysmem import machine_ram

    ram = machine_ram()
    assert ram is not None and ram.available_gib is not None
    run = FakeTrainer(ws, "20260101-000000")
    run.steps(3)
    app = make_app(ws.root, watch=False, gpu=False, mode="monitor", tail_interval=0.05)
    async with app.run_test(size=SIZE) as pilot:
        gauge = app.screen.query_one("#vram-text")
        await wait_for(pilot, lambda: "GiB used (machine)" in str(gauge.render()), what="the RAM gauge")
        text = str(gauge.render())
        assert text.startswith("RAM") and f"/{ram.total_gib:.0f} GiB" in text and "trainer RAM 500 MB" in text


def footer_keys(screen) -> list[str]:
    return [str(k.description) for k in screen.query("FooterKey")]


@pytest.mark.asyncio
async def test_switching_screens_rebuilds_a_footer_only_when_its_keys_changed(ws):
    app = make_app(ws.root, watch=False, gpu=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.loaded, what="the project")
        for key in "12345":  # visit every screen once: each footer drawn
            await pilot.press(key)
        await pilot.press("2")
        await wait_for(pilot, lambda: "Save" in footer_keys(app.screen), what="the config footer")
        footers = {s.MODE: s.query_one(FluxFooter) for s in app._mode_screens() if hasattr(s, "MODE")}
        assert len(footers) == 5
        before = {mode: f.rebuilds for mode, f in footers.items()}
        for _ in range(2):
            for key in "12345":
                await pilot.press(key)
        await pilot.press("2")
        await pilot.pause()
        assert {mode: f.rebuilds for mode, f in footers.items()} == before  # same keys: nothing remounted
        assert "Save" in footer_keys(app.screen)

        # Focusing a field changes the keys (esc leaves it): that footer is rebuilt, and shows it.
        app.screen.query_one("OptionField Input").focus()
        await wait_for(
            pilot, lambda: any("Leave field" in k for k in footer_keys(app.screen)), what="esc in the footer"
        )
        assert footers["config"].rebuilds == before["config"] + 1


@pytest.mark.asyncio
async def test_a_screen_shown_again_is_restyled_only_when_the_theme_changed_meanwhile(ws):
    from textual.color import Color

    app = make_app(ws.root, watch=False, gpu=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.loaded, what="the project")
        for key in "123451":
            await pilot.press(key)
        config = next(s for s in app._mode_screens() if getattr(s, "MODE", "") == "config")
        skipped = config.restyles_skipped
        await pilot.press("2", "1")
        assert config.restyles_skipped == skipped + 1  # nothing changed: not restyled

        dark_background = config.styles.background
        app.action_toggle_theme()  # while the config screen is hidden
        await pilot.pause()
        await pilot.press("2")
        await pilot.pause()
        assert config.restyles_skipped == skipped + 1  # restyled this time
        assert config.styles.background == Color.parse(app.current_theme.background)
        assert config.styles.background != dark_background


@pytest.mark.asyncio
async def test_a_screen_shown_again_redraws_only_what_changed_while_hidden(ws):
    run = FakeTrainer(ws, "20260101-000000")
    run.steps(5)
    app = make_app(ws.root, watch=False, gpu=False, runs_interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        overview = app.screen
        await wait_for(pilot, lambda: "step 5" in nav_text(overview), what="step 5 on the badge")
        # the project, its datasets and its estimate arrive on their own; all of them first
        await wait_for(pilot, lambda: app.state.scanned and app.state.estimate is not None, what="the estimate")
        await pilot.press("5")
        await full_polls(pilot, app, 2)  # nothing new while the overview is hidden
        redraws, skipped = overview.redraws, overview.catchups_skipped
        await pilot.press("1")
        await pilot.pause()
        assert overview.redraws == redraws  # no catch-up work
        assert overview.catchups_skipped == skipped + 1

        await pilot.press("5")
        run.steps(3)  # new progress while hidden: drawn when shown again
        await full_polls(pilot, app, 3)
        assert "step 8" not in nav_text(overview)
        await pilot.press("1")
        await wait_for(pilot, lambda: "step 8" in nav_text(overview), what="step 8 after the switch back")
        assert overview.catchups_skipped == skipped + 1
