"""A training progress bar that repaints only when what it shows changes.

Textual's ProgressBar repaints every second on a timer of its own (for an ETA), animates
at 15 frames a second while it has no total (the monitor before a run, or with a run
of unknown length), and re-renders its bar and percentage for every step: each of those
is a frame of the whole screen's compositor. This one draws a bar of cells and a percentage;
`show` repaints only when the filled cells or the percentage differ, so a 100,000-step run
costs a frame every thousand steps, not every step.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget


class ProgressLine(Widget):
    DEFAULT_CSS = """
    ProgressLine {
        height: 1;
        color: $primary;
        background: transparent;
    }
    """

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.step = 0
        self.total: int | None = None
        self._drawn: object = None
        self.repaints = 0  # for tests

    def _bar_width(self) -> int:
        return max(0, self.size.width - 6)

    def _key(self) -> object:
        if not self.total:
            return None
        fraction = min(max(self.step / self.total, 0.0), 1.0)
        return round(fraction * self._bar_width() * 2), int(fraction * 100)

    def show(self, step: int | None, total: int | None) -> None:
        self.step, self.total = step or 0, total or None
        key = self._key()
        if key != self._drawn:
            self._drawn = key
            self.repaints += 1
            self.refresh()

    def on_resize(self) -> None:
        self._drawn = self._key()

    def render(self) -> Text:
        width = self._bar_width()
        if not self.total:
            return Text("╺" + "━" * max(0, width - 1) + "   --%", style="dim")
        halves, percent = self._key()  # type: ignore[misc]
        full, half = divmod(halves, 2)
        text = Text()
        text.append("━" * full)
        if half:
            text.append("╸")
        text.append("━" * (width - full - half), style="dim")
        text.append(f" {percent:>3}%", style="bold")
        return text
