"""The run monitor: progress, loss chart, memory, log, checkpoints and validation images.

It follows the active run (or the newest one), or a run picked on the Runs screen. A worker
tails the run's events.jsonl and trainer.log by offset, only while the screen is shown (the
offsets are kept, so coming back reads just what was appended meanwhile); each batch arrives
as a message and is appended to a RunState. The status line is redrawn at once; the heavier
widgets (chart, gauge, tables, images) only when their data changed, coalesced into one
draw per HEAVY_DELAY, so a burst of a million backlog events costs a few draws and an idle
run costs none.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.timer import Timer
from textual.widgets import Button, DataTable, Static, TabbedContent, TabPane
from textual.worker import get_current_worker

from ..messages import EventsBatch, LogLines
from ..runstate import RunState, format_bytes, format_duration
from ..tail import RunFeed
from ..widgets.image_view import ValidationGallery
from ..widgets.log_view import LogView
from ..widgets.loss_chart import LossChart
from ..widgets.progress_line import ProgressLine
from ..widgets.text_update import show_text
from ..widgets.vram_gauge import VramGauge
from .base import FluxScreen, RunControls

HEAVY_DELAY = 1.0  # seconds: a backlog being read waits this long for the gauge, tables, images
CHART_EVERY = 2.0  # seconds between loss chart draws while steps stream in (the costly one)
CHART_SLACK = 0.3  # a chart due this soon is drawn with the batch at hand (one frame, not two)
IN_FLIGHT_BATCHES = 2  # batches posted but not yet applied, at most


def _machine_ram() -> tuple[float, float] | None:
    from fluxtui.core.sysmem import machine_ram

    ram = machine_ram()
    if ram is None or ram.available_gib is None:
        return None
    return ram.total_gib - ram.available_gib, ram.total_gib


class MonitorScreen(RunControls, FluxScreen):
    MODE = "monitor"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "run('start')", "Start", id="run.start"),
        Binding("x", "run('stop')", "Stop", id="run.stop"),
        Binding("c", "run('checkpoint')", "Checkpoint", id="run.checkpoint"),
        Binding("v", "run('validate')", "Validate", id="run.validate"),
        Binding("l", "show_tab('tab-log')", "Log", id="monitor.log", show=False),
        Binding("k", "show_tab('tab-checkpoints')", "Checkpoints", id="monitor.checkpoints", show=False),
        Binding("g", "show_tab('tab-gallery')", "Gallery", id="monitor.gallery", show=False),
        Binding("f", "follow_latest", "Follow latest run", id="monitor.follow_latest", show=False),
        Binding("slash", "search_log", "Search", id="monitor.search_log"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.pinned: str | None = None  # a run picked on the Runs screen; None: follow the newest
        self.run_id: str | None = None
        self.current: RunState | None = None
        self._dirty: set[str] = set()  # heavy parts with new data: chart, gauge, notes, checkpoints, gallery
        self._heavy_timer: Timer | None = None
        self.feed: RunFeed | None = None  # the followed run's offsets, kept while hidden
        self._feed_lock = threading.Lock()
        self.heavy_draws = 0  # for tests and the bench
        self._chart_at = 0.0  # monotonic time of the last chart draw
        # monotonic times, for bench/tail.py: first events on screen, whole backlog read
        self.timings: dict[str, float] = {}

    def compose_body(self) -> ComposeResult:
        yield Static("no run yet: press s to start training", id="mon-status")
        yield ProgressLine(id="mon-progress")
        yield Static("", id="mon-crash")
        with Horizontal(id="mon-middle"):
            yield LossChart(id="mon-chart")
            with Vertical(id="mon-side"):
                yield VramGauge(id="mon-vram")
                with Horizontal(id="mon-buttons"):
                    yield Button("Ckpt", id="btn-checkpoint", compact=True, tooltip="save a checkpoint now (c)")
                    yield Button("Validate", id="btn-validate", compact=True, tooltip="make validation images now (v)")
                    yield Button("Stop", id="btn-stop", variant="error", compact=True)
                yield Static("", id="mon-notes")
        with TabbedContent(id="mon-tabs"):
            with TabPane("Log", id="tab-log"):
                yield LogView(id="mon-log")
            with TabPane("Checkpoints", id="tab-checkpoints"):
                yield DataTable(id="mon-checkpoints", cursor_type="row", zebra_stripes=True)
            with TabPane("Validation", id="tab-gallery"):
                yield ValidationGallery(id="mon-gallery")

    def on_mount(self) -> None:
        table = self.query_one("#mon-checkpoints", DataTable)
        table.add_columns("step", "saved", "took", "size", "folder")
        super().on_mount()

    def on_screen_suspend(self) -> None:
        self.workers.cancel_group(self, "tail")  # hidden: stop reading the run's files

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        self._start_tail()

    def _start_tail(self) -> None:
        if self.run_id is not None and self.feed is not None and self.is_current:
            self.tail_run(self.run_id, self.feed, self.fapp.tail_interval)

    def _mark(self, *parts: str, delay: float = HEAVY_DELAY) -> None:
        self._dirty.update(parts)
        if self._heavy_timer is None:
            self._heavy_timer = self.set_timer(delay, self._redraw_heavy)

    # -- which run --------------------------------------------------------------------------

    def follow_run(self, run_id: str | None) -> None:
        self.pinned = run_id
        self._pick_run()

    def action_follow_latest(self) -> None:
        self.follow_run(None)
        self.notify("following the newest run", timeout=2)

    def _pick_run(self) -> None:
        s = self.state
        wanted = self.pinned
        if wanted is None:
            run = s.active or (s.runs[-1] if s.runs else None)
            wanted = run.run_id if run else None
        if wanted != self.run_id:
            self._open_run(wanted)

    def _open_run(self, run_id: str | None) -> None:
        self.run_id = run_id
        self.current = RunState(run_id) if run_id else None
        self.timings = {}
        self.query_one(LogView).reset_lines()
        self.query_one("#mon-checkpoints", DataTable).clear()
        self._dirty = {"chart", "gauge", "notes", "checkpoints", "gallery"}
        self.workers.cancel_group(self, "tail")
        self.feed = RunFeed(self.fapp.workspace.run_dir(run_id)) if run_id else None
        if run_id is None:
            self._redraw_heavy()
            return
        self._start_tail()
        self._draw_status()

    @work(thread=True, exclusive=True, group="tail", exit_on_error=False)
    def tail_run(self, run_id: str, feed: RunFeed, interval: float) -> None:
        """Follow one run's files until cancelled (another run picked, the screen hidden, or
        the app closing)."""
        worker = get_current_worker()
        with self._feed_lock:  # a cancelled predecessor may still be finishing its poll
            self._tail(worker, run_id, feed, interval)

    def _tail(self, worker, run_id: str, feed: RunFeed, interval: float) -> None:
        in_flight = threading.Semaphore(IN_FLIGHT_BATCHES)
        first = True
        while not worker.is_cancelled:
            steps, events, backlog, reset = feed.poll_events()
            if first or len(steps) or events or reset:
                while not in_flight.acquire(timeout=0.1):  # the UI is behind: wait, do not pile up
                    if worker.is_cancelled:
                        return
                self.post_message(EventsBatch(run_id, steps, events, backlog, reset, applied=in_flight.release))
                first = False
            lines, log_reset = feed.poll_log()
            if lines or log_reset:
                self.post_message(LogLines(run_id, lines, log_reset))
            if not backlog and feed.log.at_end:
                time.sleep(interval)

    # -- batches from the worker ------------------------------------------------------------

    def on_events_batch(self, msg: EventsBatch) -> None:
        try:
            self._apply_batch(msg)
        finally:
            if msg.applied is not None:
                msg.applied()

    def _apply_batch(self, msg: EventsBatch) -> None:
        if self.current is None or msg.run_id != self.run_id:
            return  # a late batch from the run we just left
        self.current.apply(msg)
        if len(msg.steps) or msg.reset:
            self._mark("chart", "gauge")
        if msg.events or msg.reset:
            self._mark("notes", "checkpoints", "gallery")
        self._draw_status()
        if "first_batch" not in self.timings:
            self._redraw_heavy()  # the first screenful at once, not a timer tick later
            self.timings["first_batch"] = time.monotonic()
        if not msg.backlog:
            # A live run's batch comes about once a tail interval: everything it changed is
            # drawn now, in the frame that draws the status line and the log.
            self._redraw_heavy()
            self.timings.setdefault("history", time.monotonic())

    def on_log_lines(self, msg: LogLines) -> None:
        if msg.run_id != self.run_id:
            return
        view = self.query_one(LogView)
        if msg.reset:
            view.reset_lines()
        view.append(msg.lines)

    def on_state(self, topic: str) -> None:
        if topic in ("all", "runs", "run-started", "busy"):
            self._pick_run()
            self._draw_status()
            live = self.state.active is not None and self.state.active.run_id == self.run_id
            for button in self.query("#mon-buttons Button"):
                button.disabled = not live or bool(self.state.busy)
        if topic == "gpu":
            self._mark("gauge")

    # -- drawing ----------------------------------------------------------------------------

    def _info(self):
        return next((r for r in self.state.runs if r.run_id == self.run_id), None)

    def _draw_status(self) -> None:
        status = self.query_one("#mon-status", Static)
        crash = self.query_one("#mon-crash", Static)
        run, info = self.current, self._info()
        if run is None:
            show_text(status, "no run yet: press s to start training")
            crash.display = False
            return
        total = (info.total_steps if info else None) or None
        stage = run.stage or {}
        text = Text()
        state_name = info.status if info else ("ended" if run.end else "…")
        colour = {"running": "green", "starting": "green", "completed": "bold", "stopped": "yellow"}.get(
            state_name, "red"
        )
        text.append(f"{run.run_id} ", style="dim")
        text.append(state_name, style=f"bold {colour}")
        if self.pinned:
            text.append(" (pinned; f: follow newest)", style="dim")
        step = run.step
        if run.loading and info is not None and (info.step or 0) > step:
            # a long history is still being read: the run list already knows the newest step
            step = info.step
            text.append(f"  step {step}" + (f"/{total}" if total else ""), style="bold")
            if info.last_loss is not None:
                text.append(f"  loss {info.last_loss:.4f}")
        else:
            self._append_progress(text, run, info, total)
        if stage.get("name") and stage.get("name") != "train" and (info is None or info.active):
            text.append(f"  [{stage['name']} {stage.get('done', '')}/{stage.get('total', '')}]", style="yellow")
        if run.loading:
            text.append(f"  reading history… {run.events_seen:,} events", style="dim")
        show_text(status, text)
        self.query_one(ProgressLine).show(step, total)
        self._draw_crash(crash, run, info)

    def _append_progress(self, text: Text, run: RunState, info, total: int | None) -> None:
        text.append(f"  step {run.step}" + (f"/{total}" if total else ""), style="bold")
        sps = run.seconds_per_step
        if sps is not None:
            text.append(f"  {sps:.2f} s/step" if sps < 10 else f"  {sps:.0f} s/step")
        eta = run.eta_seconds(total) if info is None or info.active else None
        if eta is not None:
            text.append(f"  ETA {format_duration(eta)}")
        last = run.last or {}
        if "loss" in last:
            text.append(f"  loss {last['loss']:.4f}")
            if len(run.smooth):
                text.append(f" (smoothed {run.smooth[-1]:.4f})", style="dim")
        if last.get("lr") is not None:
            text.append(f"  lr {last['lr']:.2e}")

    def _draw_crash(self, crash: Static, run: RunState, info) -> None:
        failed = (info is not None and info.status in ("failed", "crashed")) or (
            run.end is not None and run.end.get("status") == "failed"
        )
        crash.display = failed
        if not failed:
            return
        end = run.end or {}
        error = (info.error if info else None) or end.get("error") or "the trainer stopped without a word"
        detail = info.exit_detail if info else None
        tail = (info.traceback_tail if info else None) or end.get("traceback_tail") or ""
        text = Text()
        text.append(f"{info.status if info else 'failed'}: ", style="bold red")
        text.append(str(error))
        if detail:
            text.append(f"\n{detail}", style="red")
        if tail:
            lines = str(tail).strip().splitlines()[-6:]
            text.append("\n" + "\n".join(lines), style="dim")
        show_text(crash, text)

    def _redraw_heavy(self) -> None:
        if self._heavy_timer is not None:
            self._heavy_timer.stop()
            self._heavy_timer = None
        if not self._dirty or not self.is_attached:
            return
        if not self.is_current:
            return  # kept dirty: drawn on resume
        dirty, self._dirty = self._dirty, set()
        self.heavy_draws += 1
        run = self.current
        chart = self.query_one(LossChart)
        if run is None:
            if chart.points_drawn:  # an empty chart cleared again is a frame for nothing
                chart.show_run([], [], [])
            return
        if "chart" in dirty:
            wait = self._chart_at + CHART_EVERY - time.monotonic()
            if wait > CHART_SLACK and not run.loading and "first_batch" in self.timings:
                # drawn a moment ago: the batch that comes when it is due draws it; the timer
                # is for a run that went quiet meanwhile
                self._mark("chart", delay=wait + HEAVY_DELAY)
            else:
                chart.show_run(run.steps, run.loss, run.smooth)
                self._chart_at = time.monotonic()
        if "gauge" in dirty:
            self._draw_gauge(run)
        if "notes" in dirty:
            notes = Text()
            for w in run.warnings[-3:]:
                notes.append(f"! {w.get('message')}\n", style="yellow")
            show_text(self.query_one("#mon-notes", Static), notes)
        if "checkpoints" in dirty:
            self._draw_checkpoints(run)
        if "gallery" in dirty and self.run_id:
            self.query_one(ValidationGallery).show(self.fapp.workspace.run_dir(self.run_id), run.latest_images())

    def _draw_gauge(self, run: RunState) -> None:
        last = run.last or {}
        gpus = self.state.gpus
        g = gpus[0] if gpus else None
        self.query_one(VramGauge).show(
            alloc_mb=last.get("vram_alloc_mb"),
            peak_mb=last.get("vram_peak_mb"),
            total_mb=g.total_mb if g else None,
            rss_mb=last.get("rss_mb"),
            history=list(run.memory_mb),
            gpu_name=g.name if g else None,
            util_pct=g.util_pct if g else None,
            ram=None if g else _machine_ram(),
        )

    def _draw_checkpoints(self, run: RunState) -> None:
        table = self.query_one("#mon-checkpoints", DataTable)
        rows = run.checkpoint_rows()
        if table.row_count == len(rows) and (not rows or table.is_valid_row_index(len(rows) - 1)):
            keys = [str(r.get("path")) for r in rows]
            if keys == [str(k.value) for k in table.rows]:
                return
        table.clear()
        for ev in rows:
            saved = time.strftime("%H:%M:%S", time.localtime(ev.get("t", 0)))
            took = f"{ev.get('seconds', 0):.1f} s" if isinstance(ev.get("seconds"), (int, float)) else "–"
            table.add_row(
                str(ev.get("step")),
                saved,
                took,
                format_bytes(ev.get("size_bytes")),
                Path(str(ev.get("path"))).name,
                key=str(ev.get("path")),
            )

    # -- actions ----------------------------------------------------------------------------

    def action_search_log(self) -> None:
        self.action_show_tab("tab-log")
        self.query_one(LogView).action_search()

    def action_show_tab(self, tab: str) -> None:
        self.query_one("#mon-tabs", TabbedContent).active = tab
