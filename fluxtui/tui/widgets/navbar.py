"""The top line of every screen: where you are, where you can go, and what the trainer does."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.events import Click
from textual.widgets import Static

from ..modes import SCREENS
from .text_update import show_text


class NavBar(Horizontal):
    DEFAULT_CSS = """
    NavBar {
        height: 1;
        dock: top;
        background: $panel;
        #nav-tabs { width: auto; }
        #nav-run { width: 1fr; text-align: right; color: $text-muted; }
    }
    """

    def __init__(self, current: str):
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        yield Static(self._tabs(), id="nav-tabs")
        yield Static("", id="nav-run")

    def _tabs(self) -> Text:
        text = Text()
        for mode, key, label, *_where in SCREENS:
            style = "bold reverse" if mode == self.current else ""
            text.append(f" {key} ", style="bold " + style)
            text.append(f"{label} ", style=style)
        return text

    def show_run(self, text: str | Text) -> None:
        show_text(self.query_one("#nav-run", Static), text)

    def on_click(self, event: Click) -> None:
        # Clicking a tab label switches to it (mouse is optional; keys 1-5 do the same).
        offset = event.screen_x - self.query_one("#nav-tabs").region.x
        pos = 0
        for mode, key, label, *_where in SCREENS:
            width = len(f" {key} ") + len(f"{label} ")
            if pos <= offset < pos + width:
                self.app.switch_mode(mode)
                return
            pos += width
