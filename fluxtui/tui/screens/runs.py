"""Runs: the history of a workspace, and two runs' loss curves overlaid."""

from __future__ import annotations

import threading
import time
from array import array
from collections import OrderedDict
from typing import ClassVar

import numpy as np
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable, Static
from textual.worker import get_current_worker

from ..runstate import format_duration
from ..tail import RunFeed
from ..widgets.loss_chart import LossChart, downsample
from .base import FluxScreen

KEEP_CURVES = 8  # runs whose curve stays in memory, read up to date, while browsing the table


class CurvesLoaded(Message):
    def __init__(self, curves: list[tuple[str, np.ndarray, np.ndarray]], points: int) -> None:
        super().__init__()
        self.curves = curves  # (run id, steps, smoothed loss), downsampled for the chart
        self.points = points  # how many steps they hold before downsampling


class CurveReader:
    """One run's smoothed loss, kept up to date by reading only what events.jsonl gained
    since the last read: a live run's file grows by megabytes an hour, and the Runs screen
    asks for its curve on every run poll."""

    def __init__(self, run_dir) -> None:
        self.feed = RunFeed(run_dir)
        self.steps, self.smooth = array("d"), array("d")

    def read(self) -> bool:
        """Catch up with the file (in the caller's worker thread); True when the curve changed."""
        changed = False
        while True:
            cols, _events, backlog, reset = self.feed.poll_events()
            if reset:  # replaced or truncated: start over
                self.steps, self.smooth = array("d"), array("d")
                changed = True
            if len(cols):
                self.steps.extend(cols.step)
                self.smooth.extend(cols.smooth)
                changed = True
            if not backlog:
                return changed


class RunsScreen(FluxScreen):
    MODE = "runs"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "mark", "Mark to compare", id="runs.mark"),
        Binding("o", "open", "Open in monitor", id="runs.open"),
        Binding("u", "unmark", "Clear marks", id="runs.unmark", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.marked: list[str] = []
        self._readers: OrderedDict[str, CurveReader] = OrderedDict()  # newest used last
        self._readers_lock = threading.Lock()  # a cancelled read may still be finishing
        self._posted: list[str] | None = None  # run ids of the curves last sent to the chart
        self.shown_curves: list[str] = []
        self.shown_points = 0  # steps in the curves on the chart, before downsampling

    def compose_body(self) -> ComposeResult:
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static("space marks up to two runs to compare · enter or o opens a run in the monitor", id="runs-help")
        yield LossChart(id="runs-chart")

    def on_mount(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        # fixed widths: auto width raced the first paint (headers drawn at the label width)
        table.add_column(" ", key="mark", width=1)
        table.add_column("run", key="run", width=15)
        table.add_column("status", key="status", width=9)
        table.add_column("steps", key="steps", width=9)
        table.add_column("loss", key="loss", width=6)
        table.add_column("duration", key="duration", width=8)
        table.add_column("started", key="started", width=16)
        super().on_mount()
        table.focus()

    def on_state(self, topic: str) -> None:
        if topic in ("all", "runs"):
            self._fill_table()

    def _row(self, r) -> tuple[str, ...]:
        steps = "–" if r.step is None else f"{r.step}" + (f"/{r.total_steps}" if r.total_steps else "")
        loss = "–" if r.last_loss is None else f"{r.last_loss:.4f}"
        end = r.ended or (time.time() if r.active else None)
        duration = format_duration(end - r.started) if r.started and end else "–"
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started else "–"
        return ("●" if r.run_id in self.marked else "", r.run_id, r.status, steps, loss, duration, started)

    def _fill_table(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        runs = list(reversed(self.state.runs))  # newest first
        rows = [self._row(r) for r in runs]
        if [str(k.value) for k in table.rows] == [r.run_id for r in runs]:
            # the same runs (a live run's poll): only the cells that changed, the cursor stays
            for r, row in zip(runs, rows, strict=True):
                for column, value in zip(table.columns, row, strict=True):
                    if table.get_cell(r.run_id, column) != value:
                        table.update_cell(r.run_id, column, value)
            self._load_curves()
            return
        cursor = table.cursor_row
        current = table.coordinate_to_cell_key((cursor, 0)).row_key.value if table.row_count else None
        table.clear()
        for r, row in zip(runs, rows, strict=True):
            table.add_row(*row, key=r.run_id)
        if current is not None and current in {r.run_id for r in runs}:
            table.move_cursor(row=table.get_row_index(current))
        self._load_curves()

    def _selected(self) -> str | None:
        table = self.query_one("#runs-table", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._load_curves()

    async def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            await self.fapp.show_run(event.row_key.value)

    def action_mark(self) -> None:
        run_id = self._selected()
        if run_id is None:
            return
        if run_id in self.marked:
            self.marked.remove(run_id)
        else:
            self.marked = [*self.marked, run_id][-2:]
        self._fill_table()

    def action_unmark(self) -> None:
        self.marked = []
        self._fill_table()

    async def action_open(self) -> None:
        run_id = self._selected()
        if run_id is not None:
            await self.fapp.show_run(run_id)

    def _load_curves(self) -> None:
        self._read_curves(list(self.marked) or ([self._selected()] if self._selected() else []))

    @work(thread=True, exclusive=True, group="curves", exit_on_error=False)
    def _read_curves(self, run_ids: list[str]) -> None:
        # one read at a time, in order: the last one to post is the one asked for last
        with self._readers_lock:
            changed = run_ids != self._posted
            for run_id in run_ids:
                reader = self._readers.pop(run_id, None) or CurveReader(self.fapp.workspace.run_dir(run_id))
                self._readers[run_id] = reader
                changed = reader.read() or changed
            while len(self._readers) > KEEP_CURVES:
                self._readers.popitem(last=False)
            if not changed:
                return  # nothing new: no message, no redraw
            if get_current_worker().is_cancelled:
                self._posted = None  # read but never shown: the read asked for next posts it
                return
            curves = []
            for run_id in run_ids:
                reader = self._readers[run_id]
                # downsampled here, off the UI thread: the chart draws a few hundred points.
                # Copies: a numpy view would pin the array, and the next read could not grow it.
                x, y = downsample(reader.steps, reader.smooth)
                curves.append((run_id, np.array(x), np.array(y)))
            self._posted = run_ids
            self.post_message(CurvesLoaded(curves, sum(len(self._readers[r].steps) for r in run_ids)))

    def on_curves_loaded(self, msg: CurvesLoaded) -> None:
        self.shown_curves = [c[0] for c in msg.curves]
        self.shown_points = msg.points
        self.query_one(LossChart).show_curves(msg.curves)
