"""The runs screen: history with status, steps, final loss and duration; two runs' loss
curves overlaid; a run opened in the monitor."""

from __future__ import annotations

import json

import pytest
from textual.widgets import DataTable
from tui_support import wait_for

from fluxtui.core import estimate, workspace
from fluxtui.core import events as events_module
from fluxtui.core.config import load
from fluxtui.core.events import EventWriter
from fluxtui.core.gpu import GpuSample
from fluxtui.tui.app import WorkspaceState, make_app
from fluxtui.tui.screens.monitor import MonitorScreen
from fluxtui.tui.screens.overview import memory_summary
from fluxtui.tui.screens.runs import CurveReader, RunsScreen
from fluxtui.tui.widgets.loss_chart import LossChart


def finished_run(ws, run_id: str, steps: int, scale: float, t0: float) -> None:
    folder = ws.run_dir(run_id)
    folder.mkdir(parents=True)
    events = EventWriter(folder / "events.jsonl", run_id)
    events.emit("run.start", pid=1, world_size=1, config_hash="x", resumed_from=None, fluxtui_version="t")
    events.emit("stage", name="train", done=0, total=steps)
    for step in range(1, steps + 1):
        events.emit(
            "step",
            step=step,
            epoch=1,
            loss=scale / step,
            lr=1e-3,
            grad_norm=0.1,
            samples_per_s=1.0,
            vram_alloc_mb=0.0,
            vram_peak_mb=0.0,
            rss_mb=1.0,
        )
    events.emit("run.end", status="completed", step=steps, error=None, traceback_tail=None)
    events.close()
    # fixed times, so the durations do not depend on the clock
    lines = (folder / "events.jsonl").read_text().splitlines()
    fixed = []
    for i, line in enumerate(lines):
        e = json.loads(line)
        e["t"] = t0 + i
        fixed.append(json.dumps(e))
    (folder / "events.jsonl").write_text("\n".join(fixed) + "\n")


@pytest.mark.asyncio
async def test_history_and_two_curves_overlaid(ws):
    finished_run(ws, "20260101-000000", 40, 1.0, 1_700_000_000)
    finished_run(ws, "20260102-000000", 60, 2.0, 1_700_100_000)
    app = make_app(ws.root, watch=False, gpu=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: len(app.state.runs) == 2)
        await pilot.press("5")
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        table = screen.query_one("#runs-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        newest = table.get_row_at(0)
        assert newest[1:6] == ["20260102-000000", "completed", "60/60", f"{2.0 / 60:.4f}", "1:02"]
        await pilot.press("space", "down", "space")
        await wait_for(pilot, lambda: sorted(screen.shown_curves) == ["20260101-000000", "20260102-000000"])
        assert screen.query_one(LossChart).points_drawn == 100
        assert table.get_row_at(0)[0] == "●" and table.get_row_at(1)[0] == "●"
        await pilot.press("o")  # the highlighted (older) run, in the monitor
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen))
        monitor = app.screen
        assert monitor.pinned == "20260101-000000"
        await wait_for(pilot, lambda: monitor.current is not None and monitor.current.step == 40)
        await pilot.press("f")  # back to following the newest
        await wait_for(pilot, lambda: monitor.run_id == "20260102-000000")


def append_steps(ws, run_id: str, first: int, count: int) -> None:
    with open(ws.run_dir(run_id) / "events.jsonl", "a") as f:
        for step in range(first, first + count):
            f.write(
                json.dumps({"t": 1_700_000_000 + step, "type": "step", "run": run_id, "step": step, "loss": 1 / step})
            )
            f.write("\n")


@pytest.mark.asyncio
async def test_a_growing_run_is_read_once_not_again_on_every_poll(ws, monkeypatch):
    # The Runs screen asks for the highlighted run's curve on every run poll; a live run's
    # events.jsonl grows by megabytes an hour, and reading it whole each time is what made
    # a TUI left open slow down with the run's length.
    parsed = []
    poll = events_module.EventReader.poll

    def counting_poll(self):
        batch = poll(self)
        parsed.extend(e.get("step") for e in batch if e.get("type") == "step")
        return batch

    monkeypatch.setattr(events_module.EventReader, "poll", counting_poll)
    finished_run(ws, "20260101-000000", 300, 1.0, 1_700_000_000)
    app = make_app(ws.root, watch=False, gpu=False, runs_interval=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("5")
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        await wait_for(pilot, lambda: screen.shown_points == 300, what="the run's curve")
        table = screen.query_one("#runs-table", DataTable)
        rebuilds = []
        clear = table.clear
        monkeypatch.setattr(table, "clear", lambda *a, **k: rebuilds.append(1) or clear(*a, **k))
        for first in (301, 351, 401):  # past the chart's 400 points: downsampled from here
            append_steps(ws, "20260101-000000", first, 50)
            last = first + 49
            await wait_for(pilot, lambda n=last: screen.shown_points == n, what=f"the curve to reach step {last}")
        assert screen.query_one(LossChart).points_drawn <= 400
        await wait_for(pilot, lambda: table.get_row_at(0)[4] == f"{1 / 450:.4f}", what="the newest loss in the table")
        assert not rebuilds  # the same run: its cells were updated, the table not rebuilt
    assert sorted(parsed) == list(range(1, 451))  # every step read once, none again


def test_curve_reader_starts_over_when_the_file_is_replaced(ws):
    finished_run(ws, "20260101-000000", 30, 1.0, 1_700_000_000)
    reader = CurveReader(ws.run_dir("20260101-000000"))
    assert reader.read() and len(reader.steps) == 30
    assert not reader.read()  # nothing new
    append_steps(ws, "20260101-000000", 31, 5)
    assert reader.read() and list(reader.steps)[-5:] == [31, 32, 33, 34, 35]
    path = ws.run_dir("20260101-000000") / "events.jsonl"
    path.unlink()
    append_steps(ws, "20260101-000000", 1, 3)  # a new, shorter file (a fresh run in the folder)
    assert reader.read() and list(reader.steps) == [1, 2, 3]


def test_memory_panel_says_when_it_does_not_fit_and_what_would(tmp_path):
    # a full-size project as `fluxtui init` writes it (krea, int8): ~25 GiB, more than 12
    project, _ = load(workspace.init(tmp_path / "full").project_file)
    card = GpuSample(index=0, name="Small GPU", used_mb=300, total_mb=12 * 1024, util_pct=0)
    est = estimate.estimate(project, gpu_gb=12)
    state = WorkspaceState(project=project, estimate=est, gpus=[card], suggestions=est.suggestions(12, limit=3))
    text = str(memory_summary(state))
    assert "GPU 0 Small GPU · 12 GiB" in text
    assert "does not fit" in text
    assert "try " in text and "GiB" in text.split("try ", 1)[1]
