"""Problems in the project; enter on one asks the app to jump to its key."""

from __future__ import annotations

from rich.text import Text
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from fluxtui.core.problems import Problem


def problem_text(p: Problem) -> Text:
    text = Text()
    text.append("✗ " if p.is_error else "! ", style="bold red" if p.is_error else "bold yellow")
    where = p.key or p.path or p.file
    if p.line is not None:
        where = f"{where} (line {p.line})"
    text.append(where, style="bold")
    text.append(f": {p.message}")
    if p.fix:
        text.append(f"\n  fix: {p.fix}", style="dim")
    return text


class ProblemList(OptionList):
    DEFAULT_CSS = """
    ProblemList {
        height: auto;
        max-height: 12;
    }
    """

    class Jump(Message):
        def __init__(self, problem: Problem) -> None:
            super().__init__()
            self.problem = problem

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.problems: list[Problem] = []
        self._shown: list[Problem] | None = None

    def show(self, problems: list[Problem]) -> None:
        ordered = sorted(problems, key=lambda p: (not p.is_error, p.line or 0, p.key or ""))
        if ordered == self._shown:
            return
        self._shown = ordered
        self.problems = ordered
        highlighted = self.highlighted
        self.clear_options()
        if not ordered:
            self.add_option(Option(Text("✓ no problems", style="green"), disabled=True))
            return
        self.add_options(Option(problem_text(p), id=str(i)) for i, p in enumerate(ordered))
        # the first entry is highlighted from the start, so Enter jumps at once
        self.highlighted = highlighted if highlighted is not None and highlighted < len(ordered) else 0

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.post_message(self.Jump(self.problems[int(event.option.id)]))
