"""Modal questions."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class QuitGuard(ModalScreen[str | None]):
    """Quitting with unsaved edits in the config editor: save, discard, or stay."""

    DEFAULT_CSS = """
    QuitGuard {
        align: center middle;
        #guard { width: 60; height: auto; border: thick $warning; background: $surface; padding: 1 2; }
        #guard-buttons { height: auto; margin-top: 1; }
        Button { margin-right: 1; }
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "choose('save')", "Save and quit", id="guard.save"),
        Binding("d", "choose('discard')", "Discard and quit", id="guard.discard"),
        Binding("escape,c", "choose('cancel')", "Cancel", id="guard.cancel"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="guard"):
            yield Static("[b]project.toml has unsaved changes.[/b]\nSave them before quitting?")
            with Horizontal(id="guard-buttons"):
                yield Button("Save (s)", id="save", variant="primary")
                yield Button("Discard (d)", id="discard", variant="error")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#save", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_choose(event.button.id or "cancel")

    def action_choose(self, choice: str) -> None:
        self.dismiss(None if choice == "cancel" else choice)


class RunningQuitGuard(ModalScreen[str | None]):
    """Quitting while a run is active: the trainer is detached and keeps going, so say so
    and say how to stop it."""

    DEFAULT_CSS = """
    RunningQuitGuard {
        align: center middle;
        #guard { width: 66; height: auto; border: thick $warning; background: $surface; padding: 1 2; }
        #guard-buttons { height: auto; margin-top: 1; }
        Button { margin-right: 1; }
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q,enter", "choose('quit')", "Quit, training continues", id="guard.quit"),
        Binding("escape,c", "choose('cancel')", "Cancel", id="guard.cancel"),
    ]

    def __init__(self, run_id: str, folder: str):
        super().__init__()
        self.run_id = run_id
        self.folder = folder

    def compose(self) -> ComposeResult:
        with Vertical(id="guard"):
            yield Static(
                f"[b]Run {self.run_id} is still training.[/b]\n"
                "Quitting closes this window only: training continues in the background.\n"
                f"Stop it now with x, or later with [b]fluxtui stop {self.folder}[/b];\n"
                f"come back with [b]fluxtui {self.folder}[/b].",
                id="guard-text",
            )
            with Horizontal(id="guard-buttons"):
                yield Button("Quit (q)", id="quit", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#quit", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_choose(event.button.id or "cancel")

    def action_choose(self, choice: str) -> None:
        self.dismiss(None if choice == "cancel" else choice)
