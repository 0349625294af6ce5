"""The run monitor on run folders written the way the trainer writes them (EventWriter,
trainer.log), so each test controls exactly what appears and when; the real trainer is
driven from the TUI in test_tui_run.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PIL import Image
from textual.widgets import DataTable
from tui_support import wait_for

from fluxtui.core.events import EventWriter
from fluxtui.tui.app import make_app
from fluxtui.tui.messages import EventsBatch, GpuSampled, RunsListed, StepColumns
from fluxtui.tui.screens.monitor import MonitorScreen
from fluxtui.tui.tail import LogTail, RunFeed
from fluxtui.tui.widgets.image_view import ImageCard, ValidationGallery
from fluxtui.tui.widgets.log_view import LogView
from fluxtui.tui.widgets.loss_chart import LossChart, downsample

SIZE = (100, 30)


class FakeTrainer:
    """Writes a run folder exactly as the trainer does: events through EventWriter, a log."""

    def __init__(self, ws, run_id: str, *, pid: int | None = None, total: int = 50):
        self.dir = ws.run_dir(run_id)
        self.dir.mkdir(parents=True)
        self.events = EventWriter(self.dir / "events.jsonl", run_id)
        self.log = open(self.dir / "trainer.log", "a", encoding="utf-8")  # noqa: SIM115
        self.step = 0
        self.events.emit(
            "run.start", pid=pid or os.getpid(), world_size=1, config_hash="abc", resumed_from=None, fluxtui_version="t"
        )
        self.events.emit("stage", name="train", done=0, total=total)
        self.say(f"run {run_id} started")

    def say(self, line: str) -> None:
        self.log.write(line + "\n")
        self.log.flush()

    def steps(self, n: int) -> None:
        for _ in range(n):
            self.step += 1
            loss = 1.0 / (1 + 0.05 * self.step)
            self.events.emit(
                "step",
                step=self.step,
                epoch=1,
                loss=loss,
                lr=1e-3,
                grad_norm=0.1,
                samples_per_s=10.0,
                vram_alloc_mb=0.0,
                vram_peak_mb=0.0,
                rss_mb=500.0,
            )
            self.say(f"step {self.step} loss {loss:.4f}")

    def checkpoint(self) -> None:
        rel = f"checkpoints/checkpoint-{self.step}"
        (self.dir / rel).mkdir(parents=True)
        (self.dir / rel / "adapter.safetensors").write_bytes(b"x" * 4096)
        self.events.emit("checkpoint", step=self.step, path=rel, seconds=0.5, removed=[])
        self.say(f"checkpoint saved: {rel}")

    def validate(self, name: str = "cat") -> None:
        rel = f"validation/step-{self.step}/{name}-64x64.png"
        (self.dir / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), (200, 40, 40)).save(self.dir / rel)
        self.events.emit("validation", step=self.step, images=[rel], seconds=0.2)

    def end(self, status: str = "completed", error: str | None = None, tb: str | None = None) -> None:
        self.events.emit("run.end", status=status, step=self.step, error=error, traceback_tail=tb)
        self.say(f"run ended: {status}")


async def settle(app, pilot, seconds: float = 0.0) -> None:
    await pilot.pause(seconds)
    await pilot.pause()


def status_text(app) -> str:
    return str(app.screen.query_one("#mon-status").render())


@pytest.mark.asyncio
async def test_monitor_follows_a_live_run(ws):
    run = FakeTrainer(ws, "20260101-000000")
    run.steps(10)
    app = make_app(ws.root, watch=False, gpu=False, mode="monitor", runs_interval=0.2, tail_interval=0.05)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, MonitorScreen)
        await wait_for(pilot, lambda: "step 10/50" in status_text(app))
        assert "running" in status_text(app)
        chart = screen.query_one(LossChart)
        await wait_for(pilot, lambda: chart.points_drawn == 10)
        log = screen.query_one(LogView)
        await wait_for(pilot, lambda: log.all_lines and "step 10 loss" in log.all_lines[-1])

        run.steps(10)
        run.checkpoint()
        run.validate()
        await wait_for(pilot, lambda: "step 20/50" in status_text(app))
        await wait_for(pilot, lambda: chart.points_drawn == 20)
        table = screen.query_one("#mon-checkpoints", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        row = table.get_row_at(0)
        assert row[0] == "20" and row[3] == "4.0 KB" and row[4] == "checkpoint-20"
        gallery = screen.query_one(ValidationGallery)
        await wait_for(pilot, lambda: len(gallery.query(ImageCard)) == 1)
        assert gallery.shown == [("cat-64x64", 20, "validation/step-20/cat-64x64.png")]
        await wait_for(pilot, lambda: "checkpoint saved" in log.all_lines[-1])
        assert screen.current.seconds_per_step is not None

        run.end()
        await wait_for(pilot, lambda: "completed" in status_text(app))
        assert not screen.query_one("#mon-crash").display


@pytest.mark.asyncio
async def test_log_search(ws):
    run = FakeTrainer(ws, "20260101-000000")
    run.steps(30)
    run.checkpoint()
    run.steps(5)
    run.end()
    app = make_app(ws.root, watch=False, gpu=False, mode="monitor")
    async with app.run_test(size=SIZE) as pilot:
        log = app.screen.query_one(LogView)
        await wait_for(pilot, lambda: len(log.all_lines) == 38)
        await pilot.press("slash")
        await pilot.press(*"step 2.")
        await pilot.press("enter")
        await settle(app, pilot)
        assert len(log.matches) == 11  # step 2, 20..29
        first = log.match_index
        await pilot.press("n")
        assert log.match_index == first + 1
        assert not log.follow  # searching stops following
        assert "match 2/11" in str(log.query_one("#log-status").render())
        await pilot.press("escape")
        await settle(app, pilot)
        assert log.log_widget.highlighter.pattern is None


@pytest.mark.asyncio
async def test_failed_run_shows_error_and_traceback(ws):
    run = FakeTrainer(ws, "20260101-000000")
    run.steps(3)
    run.end("failed", error="CUDA out of memory", tb='File "loop.py", line 3\nRuntimeError: CUDA out of memory')
    app = make_app(ws.root, watch=False, gpu=False, mode="monitor")
    async with app.run_test(size=SIZE) as pilot:
        crash = app.screen.query_one("#mon-crash")
        await wait_for(pilot, lambda: crash.display)
        text = str(crash.render())
        assert "failed: CUDA out of memory" in text
        assert "RuntimeError: CUDA out of memory" in text


@pytest.mark.asyncio
async def test_run_whose_trainer_vanished_is_shown_crashed(ws):
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(proc.stdout)
    run = FakeTrainer(ws, "20260101-000000", pid=dead_pid)
    run.steps(3)
    app = make_app(ws.root, watch=False, gpu=False, mode="monitor")
    async with app.run_test(size=SIZE) as pilot:
        crash = app.screen.query_one("#mon-crash")
        await wait_for(pilot, lambda: crash.display)
        assert "crashed" in str(crash.render())
        assert "crashed" in status_text(app)


@pytest.mark.asyncio
async def test_monitor_at_80x24(ws):
    run = FakeTrainer(ws, "20260101-000000")
    run.steps(12)
    run.end()
    app = make_app(ws.root, watch=False, gpu=False, mode="monitor")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: "step 12/50" in status_text(app))
        screen = app.screen
        for widget in ("#mon-status", "#mon-chart", "#mon-tabs"):
            region = screen.query_one(widget).region
            assert region.height > 0 and region.right <= 80 and region.bottom <= 24, widget
        await pilot.press("k")
        assert screen.query_one("#mon-tabs").active == "tab-checkpoints"
        await pilot.press("g")
        assert screen.query_one("#mon-tabs").active == "tab-gallery"


@pytest.mark.asyncio
async def test_chart_draws_a_single_point_and_a_flat_line(ws):
    run = FakeTrainer(ws, "20260101-000000")
    run.steps(1)
    app = make_app(ws.root, watch=False, gpu=False, mode="monitor", tail_interval=0.05)
    async with app.run_test(size=SIZE) as pilot:
        chart = app.screen.query_one(LossChart)
        await wait_for(pilot, lambda: chart.points_drawn == 1)
        await pilot.pause(0.3)  # a draw with a zero-width range used to raise in textual-plot
        chart.show_curves([("flat", [1.0, 2.0, 3.0], [0.5, 0.5, 0.5])])
        await pilot.pause(0.3)
        assert chart.points_drawn == 3
        assert app.is_running


# -- the tail, without a screen ------------------------------------------------------------


def test_log_tail_keeps_partial_lines_and_starts_over_on_truncation(tmp_path):
    path = tmp_path / "trainer.log"
    tail = LogTail(path)
    assert tail.poll() == ([], False)
    path.write_bytes(b"one\ntw")
    assert tail.poll() == (["one"], False)
    with open(path, "ab") as f:
        f.write(b"o\nthree\n")
    assert tail.poll() == (["two", "three"], False)
    path.write_bytes(b"new\n")  # truncated and rewritten
    assert tail.poll() == (["new"], True)
    replacement = tmp_path / "other.log"
    replacement.write_bytes(b"a\nb\n")
    os.replace(replacement, path)  # a new inode
    assert tail.poll() == (["a", "b"], True)


def test_log_tail_opens_a_big_log_near_its_end(tmp_path):
    path = tmp_path / "trainer.log"
    path.write_text("".join(f"line {i}\n" for i in range(100_000)))
    lines, _ = LogTail(path, start_tail_bytes=1000).poll()
    assert lines[-1] == "line 99999"
    assert 50 < len(lines) < 200 and lines[0].startswith("line ")  # no half line at the top


def test_run_feed_columns_smoothing_and_checkpoint_sizes(ws):
    run = FakeTrainer(ws, "r1")
    run.steps(5)
    run.checkpoint()
    feed = RunFeed(run.dir, max_bytes=300)  # tiny batches: the backlog comes in pieces
    steps, seen, others = [], [], []
    while True:
        cols, evs, backlog, reset = feed.poll_events()
        steps += cols.step
        seen += cols.smooth
        others += evs
        assert not reset
        if not backlog:
            break
    assert steps == [1, 2, 3, 4, 5]
    assert seen[0] == pytest.approx(1 / 1.05)  # debiased: the first point is the first loss
    assert [e["type"] for e in others] == ["run.start", "stage", "checkpoint"]
    assert others[-1]["size_bytes"] == 4096


def test_run_feed_starts_over_when_events_are_replaced(ws):
    run = FakeTrainer(ws, "r1")
    run.steps(3)
    feed = RunFeed(run.dir)
    assert len(feed.poll_events()[0]) == 3
    fresh = run.dir / "events.new"
    fresh.write_text('{"t":1,"type":"step","run":"r1","step":1,"loss":0.5}\n')
    os.replace(fresh, run.dir / "events.jsonl")
    cols, _evs, _backlog, reset = feed.poll_events()
    assert reset and list(cols.step) == [1.0]


def test_latest_values_may_replace_each_other_metric_batches_never():
    assert GpuSampled([]).can_replace(GpuSampled([]))
    assert RunsListed([], None).can_replace(RunsListed([], None))
    batch = EventsBatch("r", StepColumns(), [], False)
    assert not batch.can_replace(EventsBatch("r", StepColumns(), [], False))


def test_downsample_keeps_the_newest_point():
    x = list(range(1_000_003))
    y = [float(i % 7) for i in x]
    bx, by = downsample(x, y, 400)
    assert len(by) == len(bx)
    assert len(bx) <= 401 and bx[-1] == 1_000_002
