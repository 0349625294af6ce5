"""The config editor: a form per section generated from the schema, and the raw TOML.

Saving the form writes only the changed keys through tomlkit (`config.set_values`), so
comments and layout survive; saving the raw view writes the text as typed, once it parses.
Either way the write is atomic, and the watcher (and a running `fluxtui run --watch`) sees
one clean change.
"""

from __future__ import annotations

from typing import Any, ClassVar

import tomllib
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.widgets import ContentSwitcher, Input, Select, Static, TabbedContent, TabPane, TextArea

from fluxtui.core import config
from fluxtui.core.config import KeyLocator
from fluxtui.core.schema import SECTIONS, options_in, table_sections

from ..messages import Saved
from ..widgets.option_field import OptionField, display_text, field_id
from ..widgets.problem_list import ProblemList
from .base import FluxScreen

FORM_SECTIONS = [*table_sections(), "datasets"]
_MISSING = object()


def _lookup(doc: dict, dotted: str) -> Any:
    """The raw value written in the file for a dotted key, or _MISSING."""
    node: Any = doc
    if dotted.startswith("datasets["):
        index, key = dotted[len("datasets[") :].split("].", 1)
        sets = doc.get("datasets")
        if not isinstance(sets, list) or int(index) >= len(sets) or not isinstance(sets[int(index)], dict):
            return _MISSING
        return sets[int(index)].get(key, _MISSING)
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _dataset_count(doc: dict) -> int:
    sets = doc.get("datasets")
    return len(sets) if isinstance(sets, list) else 0


def _section_of(dotted: str | None) -> str | None:
    if not dotted:
        return None
    if dotted.startswith("datasets["):
        return "datasets"
    section = dotted.split(".", 1)[0]
    return section if section in FORM_SECTIONS else None


def save_summary(fields: list[OptionField]) -> str:
    """The save toast: every changed, added and removed key, with old and new values."""
    lines = []
    for f in fields:
        old, new = display_text(f.opt, f.original), display_text(f.opt, f.value)
        if f.value is None:
            lines.append(f"removed {f.dotted} (was {old}; the default applies)")
        elif f.explicit:
            lines.append(f"changed {f.dotted}: {old} → {new}")
        else:
            lines.append(f"added {f.dotted} = {new}")
    return "saved project.toml\n" + "\n".join(lines)


def raw_save_summary(before: str, after: str) -> str:
    """The same for the raw view: the dotted keys whose values differ between the texts."""
    try:
        old, new = _flatten(tomllib.loads(before)), _flatten(tomllib.loads(after))
    except tomllib.TOMLDecodeError:
        return "saved project.toml"
    lines = [f"changed {k}" for k in new if k in old and old[k] != new[k]]
    lines += [f"added {k}" for k in new if k not in old]
    lines += [f"removed {k}" for k in old if k not in new]
    return "\n".join(["saved project.toml", *lines[:12]] + ([f"… {len(lines) - 12} more"] if len(lines) > 12 else []))


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(node, dict):
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else k))
    elif isinstance(node, list) and node and all(isinstance(v, dict) for v in node):
        for i, v in enumerate(node):
            out.update(_flatten(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = node
    return out


def _toml_syntax_problem(problems: list) -> Any:
    return next((p for p in problems if p.message.startswith("invalid TOML")), None)


class ConfigScreen(FluxScreen):
    MODE = "config"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save", id="config.save", priority=True),
        Binding("ctrl+r", "toggle_raw", "Raw TOML/form", id="config.raw", priority=True),
        Binding("ctrl+l", "revert", "Reload from disk", id="config.revert", priority=True),
        # shown in the focused field's hint instead: at 80 columns the footer has no room for it and Quit
        Binding("ctrl+o", "reset_field", "Reset to default", id="config.reset_field", priority=True, show=False),
        Binding("escape", "leave_field", "Leave field (then 1-5)", id="config.leave_field"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.doc: dict = {}
        self.disk_text = ""
        self.datasets_shown = -1
        self.loaded = False  # the file's text is in the views
        self.syntax_error = None
        self._raw_check_timer = None
        self.built: dict[str, list[OptionField]] = {}  # section -> its fields, once shown
        self._status_queued = False
        self._save_summary = "saved project.toml"

    # -- building ---------------------------------------------------------------------------

    def compose_body(self) -> ComposeResult:
        # Fields are built when their tab is first shown: the whole schema at once is a few
        # hundred widgets, and nobody opens every tab.
        with ContentSwitcher(initial="cfg-form", id="cfg-switcher"):
            with TabbedContent(id="cfg-form"):
                for section in FORM_SECTIONS:
                    with (
                        TabPane(section, id=f"tab-{section}"),
                        VerticalScroll(id=f"scroll-{section}", classes="form-scroll"),
                    ):
                        yield Static(SECTIONS[section], classes="section-help")
            with Vertical(id="cfg-raw"):
                yield self._make_raw_editor()
                yield Static("", id="raw-status")
                yield ProblemList(id="raw-problems")
        yield Static("", id="cfg-status")

    def _make_raw_editor(self) -> TextArea:
        try:
            return TextArea.code_editor("", language="toml", theme="css", tab_behavior="focus", id="raw-text")
        except Exception:  # no tree-sitter TOML grammar installed: plain text still works
            return TextArea.code_editor("", theme="css", tab_behavior="focus", id="raw-text")

    @property
    def fields(self) -> list[OptionField]:
        return [f for fields in self.built.values() for f in fields]

    @property
    def raw(self) -> TextArea:
        return self.query_one("#raw-text", TextArea)

    @property
    def showing_raw(self) -> bool:
        return self.query_one(ContentSwitcher).current == "cfg-raw"

    @property
    def form_dirty(self) -> bool:
        return any(f.modified for f in self.fields)

    @property
    def raw_dirty(self) -> bool:
        return self.loaded and self.raw.text != self.disk_text

    @property
    def dirty(self) -> bool:
        return self.form_dirty or self.raw_dirty

    # -- following the file -----------------------------------------------------------------

    def on_state(self, topic: str) -> None:
        if topic not in ("all", "project"):
            return
        if not self.state.loaded:
            return
        text = self.state.text
        if self.loaded and text == self.disk_text:
            return
        if self.dirty:
            self.notify(
                "project.toml changed on disk; your unsaved edits are kept (ctrl+l reloads the file)",
                severity="warning",
                timeout=8,
            )
            self.disk_text = text
            self._update_status()
            return
        self.load_text(text)

    def load_text(self, text: str) -> None:
        """Show the file's contents in both views (nothing unsaved is lost: callers check)."""
        self.disk_text = text
        try:
            self.doc = tomllib.loads(text)
            self.syntax_error = None
        except tomllib.TOMLDecodeError:
            self.doc = {}
            _project, problems = config.parse(text, self.fapp.workspace.project_file)
            self.syntax_error = _toml_syntax_problem(problems)
        if "datasets" in self.built and _dataset_count(self.doc) != self.datasets_shown:
            self.run_worker(self.build_section("datasets", rebuild=True), group="build-form")
        for f in self.fields:
            value = _lookup(self.doc, f.dotted)
            f.reset(f.opt.default if value is _MISSING else value, explicit=value is not _MISSING)
        self.raw.load_text(text)
        self.loaded = True
        self._check_raw()
        if self.syntax_error is not None and not self.showing_raw:
            self.query_one(ContentSwitcher).current = "cfg-raw"
        if not self.built:
            self.run_worker(self.build_section(self._active_section()), group="build-form")
        self._queue_status()

    def _active_section(self) -> str:
        active = self.query_one(TabbedContent).active or "tab-project"
        return active.removeprefix("tab-")

    def _field_for(self, opt, dotted: str, dataset_type: str = "local") -> OptionField:
        value = _lookup(self.doc, dotted)
        default = opt.default
        if opt.dotted == "datasets.caption_strategy" and dataset_type == "huggingface":
            default = "huggingface"  # what config.load reads for such a dataset
        return OptionField(
            opt,
            dotted,
            default if value is _MISSING else value,
            explicit=value is not _MISSING,
            dataset_type=dataset_type,
        )

    async def build_section(self, section: str, *, rebuild: bool = False) -> None:
        """Mount the fields of one tab (again, for datasets, when their number changed)."""
        if section not in FORM_SECTIONS or (section in self.built and not rebuild):
            return
        scroll = self.query_one(f"#scroll-{section}", VerticalScroll)
        if rebuild:
            await scroll.remove_children(list(scroll.children)[1:])
        widgets: list = []
        fields: list[OptionField] = []
        if section == "datasets":
            count = _dataset_count(self.doc)
            for i in range(count):
                table = self.doc["datasets"][i]
                name = table.get("id", "?") if isinstance(table, dict) else "?"
                kind = table.get("type", "local") if isinstance(table, dict) else "local"
                widgets.append(Static(f"datasets[{i}]  {name}", classes="dataset-header", id=f"ds-header-{i}"))
                for opt in options_in("datasets"):
                    fields.append(self._field_for(opt, f"datasets[{i}].{opt.key}", str(kind)))
                    widgets.append(fields[-1])
            if not count:
                widgets.append(
                    Static("no [[datasets]] tables: add one in the raw view (ctrl+r)", classes="section-help")
                )
            self.datasets_shown = count
        else:
            fields = [self._field_for(opt, opt.dotted) for opt in options_in(section)]
            widgets = list(fields)
        self.built[section] = fields
        await scroll.mount_all(widgets)

    async def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane_id = event.pane.id or ""
        if pane_id.startswith("tab-") and self.loaded:
            await self.build_section(pane_id.removeprefix("tab-"))

    # -- editing ----------------------------------------------------------------------------

    def on_option_field_edited(self, _msg: OptionField.Edited) -> None:
        self._queue_status()

    def _queue_status(self) -> None:
        # A reload edits every field at once; one status redraw after them is enough.
        if not self._status_queued:
            self._status_queued = True
            self.call_after_refresh(self._update_status)

    def _update_status(self) -> None:
        self._status_queued = False
        status = self.query_one("#cfg-status", Static)
        if self.showing_raw:
            if self.syntax_error is not None:
                status.update(f"[b red]line {self.syntax_error.line}: {self.syntax_error.message}[/]")
            elif self.raw_dirty:
                status.update("raw TOML edited · ctrl+s save · ctrl+l reload · ctrl+r back to the form")
            else:
                status.update("raw TOML · ctrl+r back to the form")
            return
        invalid = [f for f in self.fields if f.error]
        changed = [f for f in self.fields if f.modified]
        if invalid:
            status.update(f"[b red]{len(invalid)} invalid: {', '.join(f.dotted for f in invalid[:3])}[/]")
        elif changed:
            status.update(f"[b]{len(changed)} unsaved[/]: {', '.join(f.dotted for f in changed[:4])} · ctrl+s save")
        else:
            status.update("saved · ctrl+r raw TOML · comments in the file are kept on save")

    def on_text_area_changed(self, _event: TextArea.Changed) -> None:
        if self._raw_check_timer is not None:
            self._raw_check_timer.stop()
        self._raw_check_timer = self.set_timer(0.3, self._check_raw)

    def _check_raw(self) -> None:
        text = self.raw.text
        _project, problems = config.parse(text, self.fapp.workspace.project_file)
        self.syntax_error = _toml_syntax_problem(problems)
        self.query_one("#raw-problems", ProblemList).show(problems)
        errors = sum(p.is_error for p in problems)
        self.query_one("#raw-status", Static).update(
            "parses cleanly" if not problems else f"{errors} errors, {len(problems) - errors} warnings"
        )
        self._update_status()

    # -- actions ----------------------------------------------------------------------------

    def action_toggle_raw(self) -> None:
        switcher = self.query_one(ContentSwitcher)
        if self.showing_raw:
            if self.raw_dirty:
                self.notify("save (ctrl+s) or reload (ctrl+l) the raw edits first", severity="warning")
                return
            if self.syntax_error is not None:
                self.notify("the file does not parse; fix it here first", severity="warning")
                return
            switcher.current = "cfg-form"
        else:
            if self.form_dirty:
                self.notify("save (ctrl+s) or reload (ctrl+l) the form's changes first", severity="warning")
                return
            switcher.current = "cfg-raw"
            self.raw.focus()
        self._update_status()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        # the footer shows "esc Leave field" only while a field has the keys (then 1-5 are text)
        if action == "leave_field":
            return isinstance(self.focused, (Input, TextArea, Select))
        return True

    def action_leave_field(self) -> None:
        """Out of a text field, so the number keys switch screens again."""
        if self.showing_raw:
            self.set_focus(None)
        else:
            self.query_one(TabbedContent).query_one("Tabs").focus()

    def action_reset_field(self) -> None:
        """Drop the focused field's key from the file on the next save: the default applies."""
        field = next(
            (a for a in (self.focused.ancestors_with_self if self.focused else ()) if isinstance(a, OptionField)), None
        )
        if field is None or self.showing_raw:
            self.notify("focus a field first; ctrl+o resets it to its default", severity="warning", timeout=3)
            return
        field.reset_to_default()
        if field.modified:
            self.notify(f"{field.dotted}: back to its default when you save (ctrl+s)", timeout=3)

    def action_revert(self) -> None:
        self.load_text(self.state.text if self.state.loaded else self.disk_text)
        self.notify("reloaded project.toml from disk", timeout=3)

    async def action_save(self) -> None:
        await self.save_now()

    async def save_now(self) -> bool:
        """Save the form's changes or the raw text; True when the file was written."""
        if self.showing_raw:
            return await self._save_raw()
        invalid = [f for f in self.fields if f.error]
        if invalid:
            self.notify(f"{len(invalid)} field(s) have errors; nothing was saved", severity="error")
            self.focus_key(invalid[0].dotted)
            return False
        modified = [f for f in self.fields if f.modified]
        changes = {f.dotted: f.value for f in modified}
        if not changes:
            self.notify("nothing to save", timeout=2)
            return True
        self._save_summary = save_summary(modified)
        worker = self._write_changes(changes)
        await worker.wait()
        return worker.result is not None

    async def _save_raw(self) -> bool:
        self._check_raw()
        if self.syntax_error is not None:
            self.notify(f"not saved: line {self.syntax_error.line}: {self.syntax_error.message}", severity="error")
            return False
        self._save_summary = raw_save_summary(self.disk_text, self.raw.text)
        worker = self._write_text(self.raw.text)
        await worker.wait()
        return worker.result is not None

    @work(thread=True, group="save", exit_on_error=False)
    def _write_changes(self, changes: dict) -> str:
        text = config.set_values(self.fapp.workspace.project_file, changes)
        self.post_message(Saved(text))
        return text

    @work(thread=True, group="save", exit_on_error=False)
    def _write_text(self, text: str) -> str:
        config.atomic_write_text(self.fapp.workspace.project_file, text)
        self.post_message(Saved(text))
        return text

    def on_saved(self, msg: Saved) -> None:
        self.state.text = msg.text  # the reload below confirms it; no flicker meanwhile
        self.load_text(msg.text)
        self.notify(self._save_summary, timeout=6)
        self.fapp.reload_project()

    # -- jumping to a key -------------------------------------------------------------------

    def focus_key(self, dotted: str | None, line: int | None = None) -> None:
        """Show an option: its field in the form, or the raw view at its line."""
        self.run_worker(self._focus_key(dotted, line), group="focus-key", exclusive=True)

    async def _focus_key(self, dotted: str | None, line: int | None) -> None:
        field = None
        section = _section_of(dotted)
        if section and not self.raw_dirty and self.syntax_error is None and self.loaded:
            await self.build_section(section)
            if dotted and dotted.startswith("datasets[") and "." not in dotted:
                matches = self.query(f"#ds-header-{dotted[len('datasets[') : -1]}")
            else:
                matches = self.query(f"#{field_id(dotted or '')}")
            field = matches.first() if matches else None
        if field is not None:
            self.query_one(ContentSwitcher).current = "cfg-form"
            pane = next(a for a in field.ancestors if isinstance(a, TabPane))
            self.query_one(TabbedContent).active = pane.id or ""
            target = field.control if isinstance(field, OptionField) else field

            def show() -> None:
                field.scroll_visible(animate=False, top=True)
                if target.focusable:
                    target.focus()

            self.call_after_refresh(show)
            self._queue_status()
            return
        # No form field for it (an unknown key, a broken file): the raw view at its line.
        if line is None and dotted:
            line = KeyLocator(self.raw.text).line_of(dotted)
        self.query_one(ContentSwitcher).current = "cfg-raw"
        self.raw.focus()
        if line:
            self.raw.move_cursor((line - 1, 0), center=True)
        self._queue_status()

    def on_problem_list_jump(self, msg: ProblemList.Jump) -> None:
        msg.stop()
        if msg.problem.line:
            self.raw.focus()
            self.raw.move_cursor((msg.problem.line - 1, 0), center=True)
