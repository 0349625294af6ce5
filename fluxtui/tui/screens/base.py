"""What every screen shares: the navigation bar on top, the footer below, and redraws on
the app's state changes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Button

from ..widgets.footer import FluxFooter
from ..widgets.navbar import NavBar

if TYPE_CHECKING:
    from ..app import FluxApp, WorkspaceState


def run_badge(state: WorkspaceState) -> Text:
    """The run in one line: shown on every screen, so a step counter is always in view."""
    text = Text()
    if state.busy:
        text.append(f"{state.busy}… ", style="bold yellow")
    run = state.active
    if run is None:
        last = state.runs[-1] if state.runs else None
        if last is None:
            text.append("no runs yet")
        else:
            text.append(f"last run {last.status}", style="red" if last.status in ("failed", "crashed") else "")
        return text
    text.append("● ", style="bold green")
    text.append(f"{run.status} ")
    if run.step is not None:
        total = f"/{run.total_steps}" if run.total_steps else ""
        text.append(f"step {run.step}{total}", style="bold")
    elif run.stage:
        text.append(run.stage)
    return text


class FluxScreen(Screen):
    MODE = ""

    @property
    def fapp(self) -> FluxApp:
        return self.app  # type: ignore[return-value]

    @property
    def state(self) -> WorkspaceState:
        return self.fapp.state

    def compose(self) -> ComposeResult:
        yield NavBar(self.MODE)
        yield from self.compose_body()
        yield FluxFooter()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def post_message(self, message) -> bool:
        # Textual restyles the whole screen (every widget: the config editor has hundreds) on
        # each resume. Styles change while hidden only with what the app's pseudo classes
        # depend on (theme, app focus, colour mode; a CSS change is refreshed by the switch
        # itself); class and focus changes restyle their widgets at once, hidden or not.
        if isinstance(message, events.ScreenSuspend):
            self._suspended_style = self._style_key()
        elif (
            isinstance(message, events.ScreenResume)
            and message.refresh_styles
            and getattr(self, "_suspended_style", None) == self._style_key()
        ):
            message.refresh_styles = False
            self.restyles_skipped += 1
        return super().post_message(message)

    def _style_key(self) -> object:
        app = self.app
        return (app.theme, frozenset(app.get_pseudo_classes()))

    restyles_skipped = 0  # for tests: resumes that did not restyle the screen

    def on_mount(self) -> None:
        self._stale = False  # a change came while hidden: redraw on resume
        self._actions_key: object = None
        self.redraws = 0  # for tests: how many state changes this screen drew
        self.fapp.state_changed.subscribe(self, self._on_state)
        self._on_state("all")

    def on_screen_resume(self) -> None:
        if not self._stale:
            self.catchups_skipped += 1  # nothing was announced while hidden: all still drawn
            return
        self._stale = False
        self._on_state("all")

    catchups_skipped = 0  # for tests: resumes with nothing to redraw

    def _on_state(self, topic: str) -> None:
        if not self.is_attached:
            return
        if not self.is_current and topic != "all":
            self._stale = True  # hidden screens do not draw; on_screen_resume catches up
            return
        self.redraws += 1
        if topic in ("all", "runs", "busy"):
            self.query_one(NavBar).show_run(run_badge(self.state))
        self.on_state(topic)
        self.refresh_actions()

    def actions_key(self) -> object:
        """What decides which of this screen's actions are possible; the footer is rebuilt
        only when it changes (a rebuild on every poll is what froze the TUI before)."""
        s = self.state
        return (s.active is not None, bool(s.busy))

    def refresh_actions(self) -> None:
        key = self.actions_key()
        if key != self._actions_key:
            self._actions_key = key
            self.refresh_bindings()

    def on_state(self, topic: str) -> None:
        """Redraw what `topic` (project, datasets, estimate, gpu, runs, busy, change, all) touches."""


class RunControls:
    """Start/Stop/Restart/Checkpoint/Validate for a screen that shows them: the `run(what)`
    action and buttons with ids `btn-<what>`. An action makes sense only in the right state:
    start without an active run, the others with one, nothing while a request is in flight."""

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "run" and parameters:
            active = self.state.active is not None
            if self.state.busy:
                return None
            if parameters[0] == "start":
                return None if active else True
            return True if active else None
        return True

    def action_run(self, what: str) -> None:
        self.fapp.request_run(what)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.fapp.request_run((event.button.id or "").removeprefix("btn-"))
