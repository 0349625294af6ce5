"""Runs: the history of a workspace, and two runs' loss curves overlaid."""

from __future__ import annotations

import time
from array import array
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable, Static

from ..runstate import format_duration
from ..tail import RunFeed
from ..widgets.loss_chart import LossChart
from .base import FluxScreen


class CurvesLoaded(Message):
    def __init__(self, curves: list[tuple[str, array, array]]) -> None:
        super().__init__()
        self.curves = curves  # (run id, steps, smoothed loss)


def read_curve(run_dir) -> tuple[array, array]:
    """A run's smoothed loss, read in the caller's (worker) thread."""
    feed = RunFeed(run_dir)
    steps, smooth = array("d"), array("d")
    while True:
        cols, _events, backlog, _reset = feed.poll_events()
        steps.extend(cols.step)
        smooth.extend(cols.smooth)
        if not backlog:
            return steps, smooth


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
        self._cache: dict[str, tuple[int, array, array]] = {}  # run id -> (events size, steps, smooth)
        self.shown_curves: list[str] = []

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

    def _fill_table(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        runs = list(reversed(self.state.runs))  # newest first
        cursor = table.cursor_row
        current = table.coordinate_to_cell_key((cursor, 0)).row_key.value if table.row_count else None
        table.clear()
        for r in runs:
            steps = "–" if r.step is None else f"{r.step}" + (f"/{r.total_steps}" if r.total_steps else "")
            loss = "–" if r.last_loss is None else f"{r.last_loss:.4f}"
            end = r.ended or (time.time() if r.active else None)
            duration = format_duration(end - r.started) if r.started and end else "–"
            started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started else "–"
            table.add_row(
                "●" if r.run_id in self.marked else "", r.run_id, r.status, steps, loss, duration, started, key=r.run_id
            )
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
        wanted = list(self.marked) or ([self._selected()] if self._selected() else [])
        if not wanted:
            self.query_one(LossChart).show_curves([])
            return
        self._read_curves(wanted)

    @work(thread=True, exclusive=True, group="curves", exit_on_error=False)
    def _read_curves(self, run_ids: list[str]) -> None:
        curves = []
        for run_id in run_ids:
            run_dir = self.fapp.workspace.run_dir(run_id)
            try:
                size = (run_dir / "events.jsonl").stat().st_size
            except OSError:
                size = -1
            cached = self._cache.get(run_id)
            if cached is None or cached[0] != size:
                steps, smooth = read_curve(run_dir)
                cached = (size, steps, smooth)
                self._cache[run_id] = cached
            curves.append((run_id, cached[1], cached[2]))
        self.post_message(CurvesLoaded(curves))

    def on_curves_loaded(self, msg: CurvesLoaded) -> None:
        self.shown_curves = [c[0] for c in msg.curves]
        self.query_one(LossChart).show_curves(msg.curves)
