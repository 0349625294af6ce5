"""The runs screen: history with status, steps, final loss and duration; two runs' loss
curves overlaid; a run opened in the monitor."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable
from tui_support import wait_for

from fluxtui.core import estimate, workspace
from fluxtui.core.config import load
from fluxtui.core.events import EventWriter
from fluxtui.core.gpu import GpuSample
from fluxtui.tui.app import WorkspaceState, make_app
from fluxtui.tui.screens.monitor import MonitorScreen
from fluxtui.tui.screens.overview import memory_summary
from fluxtui.tui.screens.runs import RunsScreen
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
    import json

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
