"""The loss chart: raw loss (dim) and its smoothed curve (bright), on textual-plot."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from textual_plot import HiResMode, PlotWidget

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
        self.plot(x, y, line_style=self._colour("loss-raw"), hires_mode=HiResMode.BRAILLE, label="loss")
        x, y = downsample(steps, smooth)
        self.plot(x, y, line_style=self._colour("loss-smooth"), hires_mode=HiResMode.BRAILLE, label="smoothed")
        self.points_drawn = len(steps)

    def show_curves(self, curves: list[tuple[str, Sequence[float], Sequence[float]]]) -> None:
        """Several runs' smoothed curves overlaid, each with its own colour and a legend."""
        self.clear()
        colours = [self._colour("loss-smooth"), self._colour("loss-other"), "green", "magenta"]
        total = 0
        for i, (label, steps, values) in enumerate(curves):
            if len(steps) == 0:
                continue
            x, y = downsample(steps, values)
            self.plot(x, y, line_style=colours[i % len(colours)], hires_mode=HiResMode.BRAILLE, label=label)
            total += len(steps)
        self.show_legend(is_visible=bool(curves))
        self.points_drawn = total
