"""One option of project.toml as a form field: label, control, help text, error.

The control follows the option's kind: a Select for choices, a Switch for booleans, an Input
for the rest (lists and tables are typed as TOML). Every change is checked right away with
the same `check_value` that `fluxtui validate` uses.

No edit is ever lost: an empty field (or a blank choice) means "keep the file's value", so a
field that is empty for a moment while someone retypes it never deletes the key. Removing a
key from the file is an explicit action (`reset_to_default`, ctrl+o in the editor).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import tomllib
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static, Switch

from fluxtui.core.config import check_value
from fluxtui.core.schema import Option

_MISSING = object()


def field_id(dotted: str) -> str:
    return "f-" + re.sub(r"[^A-Za-z0-9_-]+", "-", dotted).strip("-")


def toml_literal(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(
            f"{json.dumps(k) if not re.fullmatch(r'[A-Za-z0-9_-]+', k) else k} = {toml_literal(v)}"
            for k, v in value.items()
        )
        return "{ " + inner + " }" if inner else "{}"
    return str(value)


def display_text(opt: Option, value: Any) -> str:
    """What the Input shows for a value (the reverse of `parse_text`)."""
    if value is None:
        return ""
    if opt.kind in ("str", "path") and isinstance(value, str):
        return value
    if opt.kind in ("int", "auto_int") and isinstance(value, (int, str)) and not isinstance(value, bool):
        return str(value)
    if opt.kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(float(value)) if isinstance(value, float) else str(value)
    return toml_literal(value)


def parse_text(opt: Option, text: str) -> tuple[Any, str | None]:
    """Text typed into an Input -> (value, error). An empty field means: not set (the default)."""
    text = text.strip() if opt.kind not in ("str", "path") else text
    if opt.kind in ("str", "path"):
        return (None if text == "" and opt.default is None else text), None
    if text == "":
        return None, None
    if opt.kind == "int" or (opt.kind == "auto_int" and text != "auto"):
        try:
            return int(text.replace("_", "")), None
        except ValueError:
            return text, "must be an integer" + (' or "auto"' if opt.kind == "auto_int" else "")
    if opt.kind == "auto_int":
        return "auto", None
    if opt.kind == "float":
        try:
            return float(text.replace("_", "")), None
        except ValueError:
            return text, "must be a number, e.g. 0.0001 or 1e-4"
    try:  # lists and tables are typed as TOML values
        return tomllib.loads(f"v = {text}")["v"], None
    except tomllib.TOMLDecodeError:
        example = toml_literal(opt.example if opt.example is not None else opt.default)
        return text, f"not a TOML value; e.g. {example}"


class FieldInput(Input):
    """An Input whose editing keys take effect in the order they arrived.

    Textual 8.2.8 runs an Input's own bindings (End, Backspace, Left...) only after the key
    event has bubbled up to the app, while a printable key is inserted as soon as the Input
    sees it. Keys that arrive in one read (what SSH and tmux deliver when someone types fast)
    are therefore reordered: `End BSpace 8` types the 8 first and then deletes it (upstream
    issue #6605). Running the Input's own binding here, in the Input's queue, keeps the order.
    """

    async def _on_key(self, event: events.Key) -> None:
        if not event.is_printable:
            for binding in self._bindings.key_to_bindings.get(event.key, ()):
                if binding.priority:
                    continue
                event.stop()
                event.prevent_default()
                self._restart_blink()
                await self.run_action(binding.action)
                return
        await super()._on_key(event)


class OptionField(Vertical):
    """A form field bound to one dotted key."""

    DEFAULT_CSS = """
    OptionField {
        height: auto;
        margin: 0 0 1 0;
        & > .field-label { color: $text; text-style: bold; }
        & > .field-help { color: $text-muted; }
        & > .field-error { color: $error; display: none; }
        &.-invalid > .field-error { display: block; }
        &.-modified > .field-label { color: $accent; }
        & > Input, & > Select { width: 1fr; max-width: 72; }
    }
    """

    class Edited(Message):
        def __init__(self, field: OptionField) -> None:
            super().__init__()
            self.field = field

    def __init__(
        self, opt: Option, dotted: str, value: Any = _MISSING, *, explicit: bool = False, dataset_type: str = "local"
    ):
        super().__init__(id=field_id(dotted))
        self.opt = opt
        self.dotted = dotted
        self.dataset_type = dataset_type  # a [[datasets]] field: its table's type decides what is required
        self.explicit = explicit
        self.original = opt.default if value is _MISSING else value
        self.value: Any = self.original
        self.error: str | None = None

    # -- building ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Label(self._label_text(), classes="field-label")
        yield self._make_control()
        yield Static(self.opt.help, classes="field-help")
        yield Static("", classes="field-error")

    def _label_text(self) -> str:
        mark = " *" if self.modified else ""
        where = "" if self.explicit else "  (default)"
        return f"{self.opt.key}{mark}{where}"

    def _make_control(self) -> Widget:
        opt, value = self.opt, self.original
        cid = f"{self.id}-control"
        if opt.kind == "bool":
            return Switch(value=bool(value), id=cid)
        if opt.choices:
            options = [(c, c) for c in opt.choices]
            allow_blank = opt.default is None or value not in opt.choices
            # the value goes in the constructor: assigned before mount, Select drops it
            initial = value if value in opt.choices else Select.NULL
            return Select(options, allow_blank=allow_blank, value=initial, id=cid, prompt="(not set)")
        return FieldInput(display_text(opt, value), id=cid, placeholder=self._placeholder(), compact=False)

    def _placeholder(self) -> str:
        if self.explicit and self.original is not None:
            return f"empty keeps {display_text(self.opt, self.original)} · ctrl+o: default"
        if self.opt.default is not None:
            return f"default: {display_text(self.opt, self.opt.default)}"
        if self.opt.example is not None:
            return f"not set, e.g. {display_text(self.opt, self.opt.example)}"
        return "not set"

    def on_mount(self) -> None:
        # A value already wrong in the file shows its error at once.
        if self.original is not None:
            _value, err = check_value(self.opt, self.original)
            if err:
                self._show_error(f"{err[0]} (fix: {err[1]})")

    # -- state ------------------------------------------------------------------------------

    @property
    def control(self) -> Widget:
        return self.query_one(f"#{self.id}-control")

    @property
    def modified(self) -> bool:
        return self.value != self.original

    def reset(self, value: Any, *, explicit: bool) -> None:
        """Take a new value from disk (after a save or an outside edit)."""
        self.original = self.value = value
        self.explicit = explicit
        controls = self.query(f"#{self.id}-control")
        if not controls:
            return  # not composed yet: compose builds the control from self.original
        control = controls.first()
        if isinstance(control, Switch):
            control.value = bool(value)
        elif isinstance(control, Select):
            control.value = value if value in (self.opt.choices or ()) else Select.NULL
        elif isinstance(control, Input):
            control.value = display_text(self.opt, value)
        self._show_error(None)
        self._refresh_label()

    def set_text(self, text: str) -> None:
        """Type into the field (Inputs only); used by tests and the command palette."""
        control = self.control
        assert isinstance(control, Input), f"{self.dotted} is not a text field"
        control.value = text

    # -- editing ----------------------------------------------------------------------------

    def reset_to_default(self) -> None:
        """The explicit way to drop the key from the file (the option's default applies)."""
        control = self.control
        with control.prevent(Input.Changed, Select.Changed, Switch.Changed):
            if isinstance(control, Switch):
                control.value = bool(self.opt.default)
            elif isinstance(control, Select):
                if self.opt.default in (self.opt.choices or ()):
                    control.value = self.opt.default
                elif control._allow_blank:
                    control.value = Select.NULL
            elif isinstance(control, Input):
                control.value = display_text(self.opt, self.opt.default)
        # a key the file does not set is at its default already: nothing to remove
        self._edited(None if self.explicit else self.original, None)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if event.value == display_text(self.opt, self.original):
            self._edited(self.original, None)  # unchanged text: the file's value, right or wrong
            return
        value, err = parse_text(self.opt, event.value)
        if value is None and err is None:
            value = self.original  # empty: keep the file's value (never delete a key by typing)
        self._edited(value, err)

    def on_switch_changed(self, event: Switch.Changed) -> None:
        event.stop()
        self._edited(event.value, None)

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        value = self.original if event.value is Select.NULL else event.value  # blank: keep the file's
        self._edited(value, None)

    def _edited(self, value: Any, err: str | None) -> None:
        if err is None and value is not None:
            checked, problem = check_value(self.opt, value)
            if problem:
                err = f"{problem[0]} (fix: {problem[1]})"
            else:
                value = checked
        if err is None and value is None and self.opt.required_for(self.dataset_type):
            err = f"{self.opt.key} is required"
        self.value = value
        self._show_error(err)
        self._refresh_label()
        self.post_message(self.Edited(self))

    def _show_error(self, err: str | None) -> None:
        self.error = err
        self.set_class(err is not None, "-invalid")
        self.query_one(".field-error", Static).update(err or "")

    def _refresh_label(self) -> None:
        self.set_class(self.modified, "-modified")
        self.query_one(".field-label", Label).update(self._label_text())
