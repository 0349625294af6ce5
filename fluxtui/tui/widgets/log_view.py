"""A following, searchable view of trainer.log."""

from __future__ import annotations

import re
from typing import ClassVar

from rich.highlighter import Highlighter
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Input, Log, Static

from .text_update import show_text

MAX_LINES = 20_000  # what the view holds; older lines stay in the file (`fluxtui logs`)


class _SearchHighlighter(Highlighter):
    """Marks the search term; errors and warnings get their colour whether searching or not."""

    def __init__(self) -> None:
        self.pattern: re.Pattern | None = None

    def highlight(self, text: Text) -> None:
        plain = text.plain
        if re.search(r"\b(error|Traceback|failed|Killed)\b", plain, re.I):
            text.stylize("bold red")
        elif re.search(r"\bwarn(ing)?\b", plain, re.I):
            text.stylize("yellow")
        if self.pattern is not None:
            for m in self.pattern.finditer(plain):
                text.stylize("reverse bold", m.start(), m.end())


class SearchLog(Log):
    def __init__(self, **kw):
        super().__init__(highlight=True, max_lines=MAX_LINES, **kw)
        self.highlighter = _SearchHighlighter()

    def set_pattern(self, pattern: re.Pattern | None) -> None:
        self.highlighter.pattern = pattern
        self._render_line_cache.clear()  # cached strips carry the old highlight
        self.refresh()


class LogView(Vertical):
    DEFAULT_CSS = """
    LogView {
        height: 1fr;
        SearchLog { height: 1fr; }
        #log-search { display: none; height: 3; }
        &.searching #log-search { display: block; }
        #log-status { height: 1; color: $text-muted; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "search", "Search log", id="log.search"),
        Binding("n", "next_match", "Next match", id="log.next", show=False),
        Binding("N", "previous_match", "Previous match", id="log.previous", show=False),
        Binding("F", "toggle_follow", "Follow", id="log.follow", show=False),
        Binding("escape", "close_search", "Close search", id="log.close_search", show=False),
    ]

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.matches: list[int] = []
        self.match_index = -1
        self.follow = True

    def compose(self) -> ComposeResult:
        yield SearchLog(id="log-lines")
        yield Input(placeholder="search the log (regex; enter: find, esc: close)", id="log-search")
        yield Static("following", id="log-status")

    @property
    def log_widget(self) -> SearchLog:
        return self.query_one(SearchLog)

    @property
    def all_lines(self) -> list[str]:
        return list(self.log_widget.lines)

    def reset_lines(self) -> None:
        self.log_widget.clear()
        self.matches, self.match_index = [], -1
        self._status()

    def append(self, lines: list[str]) -> None:
        if not lines:
            return
        self.log_widget.write_lines(lines, scroll_end=self.follow)
        if self.log_widget.highlighter.pattern is not None:
            self._find_matches(keep_position=True)
        else:
            self._status()

    def action_search(self) -> None:
        self.add_class("searching")
        self.query_one("#log-search", Input).focus()

    def action_close_search(self) -> None:
        self.remove_class("searching")
        self.log_widget.set_pattern(None)
        self.matches, self.match_index = [], -1
        self.log_widget.focus()
        self._status()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.search(event.value)
        self.log_widget.focus()

    def search(self, query: str) -> int:
        """Highlight every match and jump to the first; returns the number of matching lines."""
        if not query:
            self.action_close_search()
            return 0
        try:
            pattern = re.compile(query, re.I)
        except re.error:
            pattern = re.compile(re.escape(query), re.I)
        self.log_widget.set_pattern(pattern)
        self._find_matches(keep_position=False)
        if self.matches:
            self.follow = False
            self.match_index = 0
            self._show_match()
        self._status()
        return len(self.matches)

    def _find_matches(self, *, keep_position: bool) -> None:
        pattern = self.log_widget.highlighter.pattern
        self.matches = [i for i, line in enumerate(self.log_widget.lines) if pattern and pattern.search(line)]
        if not keep_position:
            self.match_index = 0 if self.matches else -1
        self._status()

    def _show_match(self) -> None:
        if 0 <= self.match_index < len(self.matches):
            line = self.matches[self.match_index]
            self.log_widget.scroll_to(y=max(0, line - 2), animate=False)
        self._status()

    def action_next_match(self) -> None:
        if self.matches:
            self.match_index = (self.match_index + 1) % len(self.matches)
            self._show_match()

    def action_previous_match(self) -> None:
        if self.matches:
            self.match_index = (self.match_index - 1) % len(self.matches)
            self._show_match()

    def action_toggle_follow(self) -> None:
        self.follow = not self.follow
        if self.follow:
            self.log_widget.scroll_end(animate=False)
        self._status()

    def _status(self) -> None:
        parts = ["following" if self.follow else "paused (F: follow)"]
        if self.log_widget.highlighter.pattern is not None:
            if self.matches:
                parts.append(f"match {self.match_index + 1}/{len(self.matches)} (n/N)")
            else:
                parts.append("no match")
        parts.append(f"{self.log_widget.line_count} lines")
        show_text(self.query_one("#log-status", Static), " · ".join(parts))
