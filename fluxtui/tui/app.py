"""The fluxtui app: five screens over one workspace, fed by workers that post messages.

`make_app(workspace)` is what `fluxtui tui` runs and what every Pilot and snapshot test
builds. The app holds what all screens share (the project, its problems, the runs, the GPU)
in `self.state` and announces changes on `self.state_changed` (a topic string); screens
subscribe and redraw what concerns them. Workers never touch widgets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.command import Hit, Hits, Provider
from textual.screen import Screen
from textual.signal import Signal
from textual.worker import Worker, WorkerState, get_current_worker

from fluxtui.core import config, runs
from fluxtui.core.problems import ConfigError, Problem
from fluxtui.core.schema import OPTIONS
from fluxtui.core.workspace import Workspace

from . import settings, theming
from .messages import (
    DatasetsScanned,
    EstimateReady,
    GpuSampled,
    ProjectFileChanged,
    ProjectLoaded,
    RunCommandDone,
    RunsListed,
)
from .modes import MODES, SCREENS, InstantSwitch, screen_class
from .screens.dialogs import QuitGuard, RunningQuitGuard

if TYPE_CHECKING:
    from .screens.config import ConfigScreen


@dataclass
class WorkspaceState:
    """What every screen may show. Replaced field by field from worker messages."""

    project: config.Project | None = None
    problems: list[Problem] = field(default_factory=list)  # project.toml + cross-field rules
    text: str = ""
    loaded: bool = False
    datasets: list[Any] = field(default_factory=list)  # datasets.DatasetReport
    dataset_problems: list[Problem] = field(default_factory=list)
    scanned: bool = False
    estimate: Any = None  # estimate.Estimate
    suggestions: list[Any] = field(default_factory=list)  # estimate.Suggestion, when it does not fit
    gpus: list[Any] = field(default_factory=list)  # gpu.GpuSample
    runs: list[runs.RunInfo] = field(default_factory=list)
    active: runs.RunInfo | None = None
    busy: str | None = None  # "starting", "stopping"... while a run command is in flight
    last_change: str | None = None  # what the watcher saw last, in words
    auto_restart: bool = False

    @property
    def all_problems(self) -> list[Problem]:
        seen, out = set(), []
        for p in [*self.problems, *self.dataset_problems]:
            if p not in seen:
                seen.add(p)
                out.append(p)
        return out


class OptionCommands(Provider):
    """Command palette: type part of an option name to jump to it in the editor."""

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        app = self.app
        assert isinstance(app, FluxApp)
        for opt in OPTIONS:
            name = opt.dotted if opt.section != "datasets" else f"datasets[0].{opt.key}"
            score = matcher.match(f"edit {name}")
            if score > 0:
                yield Hit(score, matcher.highlight(f"edit {name}"), partial(app.jump_to_key, name), help=opt.help)


class FluxApp(InstantSwitch, App[int]):
    TITLE = "fluxtui"
    CSS_PATH = [theming.RULES_FILE] if theming.RULES_FILE.exists() else []
    COMMANDS = App.COMMANDS | {OptionCommands}
    # at 160 columns and more the screens use the room: two columns of fields, a taller log
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (160, "-wide")]
    MODES: ClassVar[dict] = MODES
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "switch_mode('overview')", "Overview", id="nav.overview", show=False),
        Binding("2", "switch_mode('config')", "Config", id="nav.config", show=False),
        Binding("3", "switch_mode('datasets')", "Datasets", id="nav.datasets", show=False),
        Binding("4", "switch_mode('monitor')", "Monitor", id="nav.monitor", show=False),
        Binding("5", "switch_mode('runs')", "Runs", id="nav.runs", show=False),
        Binding("question_mark", "show_keys", "Keys", id="app.keys", show=False),
        Binding("ctrl+t", "toggle_theme", "Dark/light", id="app.theme", show=False),
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("ctrl+q", "quit", "Quit", id="app.quit_now", show=False, priority=True),
    ]

    def __init__(
        self,
        workspace: Workspace,
        *,
        mode: str = "overview",
        watch: bool = True,
        gpu: bool = True,
        runs_interval: float = 1.0,
        tail_interval: float = 1.0,
        settings_dir: Path | None = None,
    ):
        super().__init__()
        self.workspace = workspace
        self.start_mode = mode
        self.watch_files = watch
        self.sample_gpus = gpu
        self.runs_interval = runs_interval
        self.tail_interval = tail_interval
        self.settings_dir = settings_dir
        self.state = WorkspaceState()
        self.state_changed: Signal[str] = Signal(self, "state-changed")
        self.theme_problems: list[Problem] = []  # broken user themes, skipped
        self.errors: list[str] = []  # worker failures, newest last (also shown as notifications)
        self._watcher = None
        self._run_lister = runs.RunLister(workspace)

    # -- start and stop ---------------------------------------------------------------------

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(theming.VARIABLE_DEFAULTS)

    def on_mount(self) -> None:
        self.register_themes()
        saved = settings.load(self.settings_dir)
        keymap = saved.get("keymap")
        if isinstance(keymap, dict):  # binding id -> keys, e.g. {"run.start": "f5"}
            self.set_keymap({str(k): str(v) for k, v in keymap.items()})
        remembered = saved.get("theme")
        self.theme = remembered if remembered in self.available_themes else theming.DARK
        if self.theme not in self.available_themes:  # themes missing from a broken install
            self.theme = "textual-dark"
        self.switch_mode(self.start_mode)
        self.reload_project()
        self.refresh_runs()
        self.set_interval(self.runs_interval, self.refresh_runs)
        if self.sample_gpus:
            self.sample_gpu()
            self.set_interval(2.0, self.sample_gpu)
        if self.watch_files:
            self.start_watcher()

    def on_ready(self) -> None:
        self.preload_screens()  # the first frame is out: the other screens can load now

    def register_themes(self) -> None:
        """The built-in themes, then yours (config folder, workspace); a broken one is
        skipped and shown as a notification naming its file and line."""
        for theme in theming.load_themes():
            self.register_theme(theme)
        config_dir = self.settings_dir or settings.config_dir()
        loaded = theming.load_user_themes(theming.user_theme_dirs(self.workspace.root, config_dir))
        for theme in loaded.themes:
            self.register_theme(theme)
        self.theme_problems = loaded.problems
        for problem in loaded.problems:
            self.notify(str(problem), title="theme skipped", severity="warning", timeout=15)

    def on_unmount(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()

    def watch_theme(self, theme: str) -> None:
        if self.is_mounted:
            settings.save({"theme": theme}, self.settings_dir)

    def announce(self, topic: str) -> None:
        self.state_changed.publish(topic)

    # -- workers ----------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="project", exit_on_error=False)
    def reload_project(self) -> None:
        """Read and check project.toml, then scan the datasets and estimate memory."""
        from fluxtui.core import datasets, estimate, gpu, rules

        worker = get_current_worker()
        path = self.workspace.project_file
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            text = ""
        project, problems = config.load(path)
        if project is not None:
            problems = problems + rules.check(project)
        self.post_message(ProjectLoaded(project, problems, text))
        if project is None or worker.is_cancelled:
            return
        reports, scan_problems = datasets.scan_project(project)
        if worker.is_cancelled:
            return
        self.post_message(DatasetsScanned(reports, scan_problems))
        gpus = gpu.sample() if self.sample_gpus else []
        gb = gpus[0].total_mb / 1024 if gpus else None
        est = estimate.estimate(project, gpu_gb=gb)
        suggestions = est.suggestions(gb, limit=3) if gb is not None and not est.fits(gb) else []
        self.post_message(EstimateReady(est, gpus, suggestions))

    @work(thread=True, exclusive=True, group="runs", exit_on_error=False)
    def refresh_runs(self) -> None:
        """One poll of the run registry. Only a change is announced: an idle poll costs a
        few stats and redraws nothing."""
        all_runs, active, changed = self._run_lister.poll()
        if changed:
            self.post_message(RunsListed(all_runs, active))

    @work(thread=True, exclusive=True, group="gpu", exit_on_error=False)
    def sample_gpu(self) -> None:
        from fluxtui.core import gpu

        self.post_message(GpuSampled(gpu.sample()))

    @work(thread=True, group="run-control", exit_on_error=False)
    def run_command(self, action: str, run_id: str | None = None) -> None:
        """start / stop / restart the trainer, or ask it to checkpoint / validate."""
        ws = self.workspace
        try:
            if action == "start":
                info = runs.start_run(ws, detach=True)
            elif action == "stop":
                info = runs.stop_run(ws, run_id, timeout=60.0)
            elif action == "restart":
                runs.stop_run(ws, run_id, timeout=60.0)
                info = runs.start_run(ws, detach=True)  # resumes from the newest checkpoint
            elif action in ("checkpoint", "validate"):
                if run_id is None:
                    raise RuntimeError("no run is active")
                runs.request(ws, run_id, action)
                info = None
            else:
                raise ValueError(f"unknown run action {action}")
        except ConfigError as e:
            self.post_message(RunCommandDone(action, error="the project has problems", problems=e.problems))
            return
        except (runs.RunStartError, OSError, RuntimeError) as e:
            self.post_message(RunCommandDone(action, error=str(e)))
            return
        except Exception as e:  # LockHeld and friends: say it, do not crash the viewer
            self.post_message(RunCommandDone(action, error=f"{type(e).__name__}: {e}"))
            return
        self.post_message(RunCommandDone(action, run=info))

    def start_watcher(self) -> None:
        from fluxtui.core.watch import ProjectWatcher

        def on_change(change) -> None:  # watchdog's thread: hand over to ours
            self.post_message(ProjectFileChanged(change))

        self._start_watcher_thread(ProjectWatcher(self.workspace, on_change))

    @work(thread=True, group="watch", exit_on_error=False)
    def _start_watcher_thread(self, watcher) -> None:
        # start() validates the project and scans datasets once: not on the UI thread
        self._watcher = watcher.start()

    # -- messages from workers --------------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place where a failed worker becomes something a person sees."""
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        what = event.worker.group if event.worker.group != "default" else event.worker.name
        message = f"{what} failed: {type(error).__name__}: {error}"
        self.errors.append(message)
        del self.errors[:-20]
        self.notify(message, title="error", severity="error", timeout=12)
        self.announce("errors")

    def on_project_loaded(self, msg: ProjectLoaded) -> None:
        s = self.state
        s.project, s.problems, s.text, s.loaded = msg.project, msg.problems, msg.text, True
        if msg.project is None:
            s.datasets, s.dataset_problems, s.scanned, s.estimate = [], [], True, None
        self.announce("project")

    def on_datasets_scanned(self, msg: DatasetsScanned) -> None:
        self.state.datasets, self.state.dataset_problems, self.state.scanned = msg.reports, msg.problems, True
        self.announce("datasets")

    def on_estimate_ready(self, msg: EstimateReady) -> None:
        self.state.estimate, self.state.suggestions = msg.estimate, msg.suggestions
        if msg.gpus:
            self.state.gpus = msg.gpus
        self.announce("estimate")

    def on_gpu_sampled(self, msg: GpuSampled) -> None:
        self.state.gpus = msg.samples
        self.announce("gpu")

    def on_runs_listed(self, msg: RunsListed) -> None:
        self.state.runs, self.state.active = msg.runs, msg.active
        self.announce("runs")

    def on_run_command_done(self, msg: RunCommandDone) -> None:
        self.state.busy = None
        if msg.error:
            detail = "\n".join(str(p) for p in msg.problems[:5])
            self.notify(f"{msg.action}: {msg.error}" + (f"\n{detail}" if detail else ""), severity="error", timeout=12)
            if msg.problems:
                self.state.problems = msg.problems
                self.announce("project")
        elif msg.action in ("start", "restart") and msg.run is not None:
            self.notify(f"run {msg.run.run_id} started", timeout=4)
            for note in getattr(msg.run, "notes", []) or []:
                self.notify(note, severity="warning")
            self.announce("run-started")
        elif msg.action == "stop":
            status = msg.run.status if msg.run is not None else "no run was active"
            self.notify(f"stop: {status}", timeout=4)
        else:
            self.notify(f"{msg.action} requested; the trainer acts on it after the current step", timeout=4)
        self.refresh_runs()
        self.announce("busy")

    def on_project_file_changed(self, msg: ProjectFileChanged) -> None:
        change = msg.change
        s = self.state
        if not change.valid:
            s.last_change = "project.toml changed but has errors; the run was left alone"
            self.notify(s.last_change, severity="warning", timeout=8)
            self.reload_project()
            return
        s.last_change = f"changed: {change.describe()}"
        self.reload_project()
        active = s.active
        if active is not None and s.auto_restart and change.keys + change.paths:
            how = "resuming from a checkpoint" if change.resumable else "a fresh run (the change needs one)"
            self.notify(f"{s.last_change}\nrestarting the run: {how}", timeout=8)
            self.state.busy = "restarting"
            self.announce("busy")
            self.restart_for_change(active.run_id, change.resumable)
        elif active is not None:
            self.notify(f"{s.last_change}\nthe run goes on unchanged (a: restart on change)", timeout=6)
        else:
            self.notify(s.last_change, timeout=6)
        self.announce("change")

    @work(thread=True, group="run-control", exit_on_error=False)
    def restart_for_change(self, run_id: str, resumable: bool) -> None:
        """What `fluxtui run --watch` does: stop with a checkpoint, then resume or start fresh."""
        try:
            stopped = runs.stop_run(self.workspace, run_id, timeout=60.0)
            resume = stopped.last_checkpoint if resumable and stopped is not None else None
            info = runs.start_run(self.workspace, fresh=not resumable, resume=resume, detach=True)
        except ConfigError as e:
            self.post_message(RunCommandDone("restart", error="the project has problems", problems=e.problems))
            return
        except Exception as e:
            self.post_message(RunCommandDone("restart", error=f"{type(e).__name__}: {e}"))
            return
        self.post_message(RunCommandDone("restart", run=info))

    # -- actions ----------------------------------------------------------------------------

    def request_run(self, action: str) -> None:
        """Used by the screens' Start / Stop / Restart / Checkpoint / Validate bindings."""
        active = self.state.active
        if action == "start" and active is not None:
            self.notify(f"run {active.run_id} is already {active.status}", severity="warning")
            return
        if action in ("stop", "checkpoint", "validate") and active is None:
            self.notify("no run is active", severity="warning")
            return
        self.state.busy = {"start": "starting", "stop": "stopping", "restart": "restarting"}.get(action, action)
        self.announce("busy")
        self.run_command(action, active.run_id if active else None)

    def action_toggle_theme(self) -> None:
        self.theme = theming.LIGHT if self.current_theme.dark else theming.DARK

    def action_toggle_auto_restart(self) -> None:
        self.state.auto_restart = not self.state.auto_restart
        self.notify(f"restart on change: {'on' if self.state.auto_restart else 'off'}", timeout=3)
        self.announce("change")

    async def action_quit(self) -> None:
        editor = self._config_screen()
        if editor is not None and editor.dirty:
            self.push_screen(QuitGuard(), self._after_quit_guard)
            return
        self._quit_unless_running()

    def _quit_unless_running(self) -> None:
        active = self.state.active
        if active is None:
            self.exit(0)
            return
        folder = str(self.workspace.root)
        try:
            folder = str(self.workspace.root.relative_to(Path.cwd())) or "."
        except ValueError:
            pass
        self.push_screen(RunningQuitGuard(active.run_id, folder), self._after_running_guard)

    def _after_running_guard(self, choice: str | None) -> None:
        if choice == "quit":
            self.exit(0)

    async def _after_quit_guard(self, choice: str | None) -> None:
        if choice == "discard":
            self._quit_unless_running()
        elif choice == "save":
            editor = self._config_screen()
            if editor is not None and await editor.save_now():
                self._quit_unless_running()

    def action_show_keys(self) -> None:
        """`?`: the keys panel (every binding of the screen with its key), or close it."""
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    def _config_screen(self) -> ConfigScreen | None:
        # by its mode, not its class: asking for the class would import the editor at start-up
        for screen in self._mode_screens():
            if getattr(screen, "MODE", "") == "config":
                return screen  # type: ignore[return-value]
        return None

    def _mode_screens(self) -> Iterable[Screen]:
        for stack in self._screen_stacks.values():
            yield from (s for s in stack if isinstance(s, Screen))

    async def jump_to_key(self, dotted: str | None, line: int | None = None) -> None:
        """Show the option in the config editor (a problem's key, or a palette hit)."""
        await self.switch_mode("config")
        screen = self.screen
        if isinstance(screen, screen_class("config")):
            screen.focus_key(dotted, line)

    async def show_run(self, run_id: str) -> None:
        await self.switch_mode("monitor")
        screen = self.screen
        if isinstance(screen, screen_class("monitor")):
            screen.follow_run(run_id)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """fluxtui's commands, not Textual's generic ones: the screens, every binding of the
        screen the palette was opened on (start, stop, validate...) with its key, and (typed
        as "edit <option>") every option of project.toml."""
        for mode, key, label, *_where in SCREENS:
            yield SystemCommand(f"{label} screen", f"key: {key}", partial(self.switch_mode, mode))
        yield SystemCommand("Keys", "key: ? · every key of this screen", self.action_show_keys)
        yield SystemCommand("Dark/light", "key: ctrl+t · the dark or the light theme", self.action_toggle_theme)
        # of Textual's own, only the theme picker (it lists your themes too)
        yield from (c for c in super().get_system_commands(screen) if c.title == "Theme")
        yield SystemCommand("Quit", "key: q", self.action_quit)
        seen = {"quit", "command_palette", "show_keys", "toggle_theme"}
        seen |= {f"switch_mode('{mode}')" for mode, *_rest in SCREENS}
        for active in screen.active_bindings.values():
            binding = active.binding
            if not binding.description or binding.action in seen or binding.system:
                continue
            seen.add(binding.action)
            yield SystemCommand(
                binding.description,
                f"key: {self.get_key_display(binding)}" + (f" · {binding.tooltip}" if binding.tooltip else ""),
                partial(self.run_action, binding.action, active.node),
            )


def make_app(workspace: str | Path | Workspace, **options: Any) -> FluxApp:
    """The app for a workspace folder. Options: mode, watch, gpu, runs_interval,
    tail_interval, settings_dir (see FluxApp)."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace.at(workspace)
    return FluxApp(ws, **options)


__all__ = ["FluxApp", "WorkspaceState", "make_app"]
