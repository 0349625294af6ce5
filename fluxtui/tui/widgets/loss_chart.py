"""The loss chart: raw loss (dim) and its smoothed curve (bright), on textual-plot."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from textual.app import ComposeResult
from textual.containers import Grid
from textual.strip import Strip
from textual_hires_canvas import Canvas
from textual_plot import HiResMode, PlotWidget
from textual_plot.plot_widget import Legend

MAX_POINTS = 400  # textual-plot draws point by point in Python; more than a screen's width is waste


def downsample(x: Sequence[float], y: Sequence[float], max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Bucket means: keeps the shape of a million-point curve in a few hundred points."""
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    n = len(xs)
    if n <= max_points:
        return xs, ys
    size = -(-n // max_points)
    whole = (n // size) * size
    bx = xs[:whole].reshape(-1, size)[:, -1]
    by = ys[:whole].reshape(-1, size).mean(axis=1)
    if whole < n:  # the newest, partial bucket: its last point is the one people look at
        bx = np.append(bx, xs[-1])
        by = np.append(by, ys[whole:].mean())
    return bx, by


def padded_limits(lo: float, hi: float, min_span: float) -> tuple[float, float]:
    """Axis limits with a little air, never a zero-width range (textual-plot's tick maths
    divides by the span: one point, or a flat line, must still draw)."""
    span = hi - lo
    if span < min_span:
        mid = (hi + lo) / 2
        return mid - min_span / 2, mid + min_span / 2
    return lo - span * 0.05, hi + span * 0.05


class _Canvas(Canvas):
    """textual-hires-canvas leaves blank cells without a style, which Textual's monochrome
    filter (NO_COLOR) cannot handle; give every cell the canvas's own style."""

    def render_line(self, y: int) -> Strip:
        return super().render_line(y).apply_style(self.rich_style)


class LossChart(PlotWidget, can_focus=False):
    DEFAULT_CSS = """
    LossChart {
        height: 1fr;
        min-height: 8;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None):
        super().__init__(id=id, classes=classes, allow_pan_and_zoom=False)
        self.points_drawn = 0  # for tests: how many points the last draw had

    def compose(self) -> ComposeResult:  # PlotWidget's layout, with the canvas above
        with Grid():
            yield _Canvas(1, 1, id="margin-top")
            yield _Canvas(1, 1, id="margin-left")
            yield _Canvas(1, 1, id="plot")
            yield _Canvas(1, 1, id="margin-bottom")
        yield Legend(id="legend")

    def on_mount(self) -> None:
        self.margin_top = 1
        self.margin_bottom = 2
        self.margin_left = 8
        self.set_xlabel("step")

    def _colour(self, name: str) -> str:
        return self.app.theme_variables.get(name, "white")

    def show_run(self, steps: Sequence[float], raw: Sequence[float], smooth: Sequence[float]) -> None:
        self.clear()
        if len(steps) == 0:
            self.points_drawn = 0
            return
        x, y = downsample(steps, raw)
        _x, ys = downsample(steps, smooth)
        self._set_limits(x, np.concatenate([y, ys]))
        self.plot(x, y, line_style=self._colour("loss-raw"), hires_mode=HiResMode.BRAILLE, label="loss")
        self.plot(x, ys, line_style=self._colour("loss-smooth"), hires_mode=HiResMode.BRAILLE, label="smoothed")
        self.points_drawn = len(steps)
        self._draw_now()

    def _draw_now(self) -> None:
        """Draw the curves onto the canvases now, not in PlotWidget.render: there, the canvases
        change during a frame and repaint in one more whole-screen frame after it (a chart
        update cost two frames). A pending canvas resize is left to render, which does it."""
        if getattr(self, "_needs_rerender", False) and not getattr(self, "_needs_canvas_resize", True):
            self._render_plot()
            self._needs_rerender = False

    def _set_limits(self, xs: np.ndarray, ys: np.ndarray) -> None:
        ys = ys[np.isfinite(ys)]
        if len(xs) == 0 or len(ys) == 0:
            return
        x0, x1 = float(np.min(xs)), float(np.max(xs))
        self.set_xlimits(*(padded_limits(x0, x1, 2.0) if x1 - x0 < 2 else (x0, x1)))
        y0, y1 = float(np.min(ys)), float(np.max(ys))
        self.set_ylimits(*padded_limits(y0, y1, 1e-2 * max(1.0, abs(y1))))

    def show_curves(self, curves: list[tuple[str, Sequence[float], Sequence[float]]]) -> None:
        """Several runs' smoothed curves overlaid, each with its own colour and a legend."""
        self.clear()
        colours = [self._colour("loss-smooth"), self._colour("loss-other"), "green", "magenta"]
        drawn = [(label, *downsample(steps, values)) for label, steps, values in curves if len(steps)]
        if drawn:
            self._set_limits(np.concatenate([d[1] for d in drawn]), np.concatenate([d[2] for d in drawn]))
        for i, (label, x, y) in enumerate(drawn):
            self.plot(x, y, line_style=colours[i % len(colours)], hires_mode=HiResMode.BRAILLE, label=label)
        self.show_legend(is_visible=bool(curves))
        self.points_drawn = sum(len(steps) for _label, steps, _values in curves)
        self._draw_now()
