"""The five screens: their keys and names, built when first shown, switched without a pause.

Importing all five screen modules (the loss chart brings numpy) at start-up cost about a
sixth of the time to the first frame, so only the first screen is imported then; the others
are imported a module at a time once the first frame is out (`preload_screens`), before a
person reaches for a key, so the first visit of a screen does not wait for an import either.

Textual's `switch_mode` holds every repaint back for 50 ms ("to mask a brief transition"):
that is the larger part of what a screen key took. A screen that is already mounted has
nothing to mask, so `InstantSwitch` switches to it at once; a screen's first visit, while it
is composed and mounted, keeps the pause.

Python's cyclic collector walks every tracked object in a full collection: after the five
screens are mounted that is ~150,000 objects, a pause of 100-600 ms (measured on this
machine) that lands on whatever key comes next. The modules and mounted screens live as long
as the app, so once they are there they are frozen out of the collector's view
(`gc.freeze`); what is created later is collected as before.
"""

from __future__ import annotations

import gc
import sys
from importlib import import_module

from textual.app import App
from textual.screen import Screen

# mode, key, label, module (under fluxtui.tui.screens), class
SCREENS = (
    ("overview", "1", "Overview", "overview", "OverviewScreen"),
    ("config", "2", "Config", "config", "ConfigScreen"),
    ("datasets", "3", "Datasets", "datasets", "DatasetsScreen"),
    ("monitor", "4", "Monitor", "monitor", "MonitorScreen"),
    ("runs", "5", "Runs", "runs", "RunsScreen"),
)


def screen_class(mode: str) -> type[Screen]:
    for name, _key, _label, module, cls in SCREENS:
        if name == mode:
            return getattr(import_module(f"fluxtui.tui.screens.{module}"), cls)
    raise KeyError(mode)


def _factory(mode: str):
    def build() -> Screen:
        return screen_class(mode)()

    build.__name__ = f"build_{mode}_screen"
    return build


MODES = {mode: _factory(mode) for mode, *_rest in SCREENS}


class InstantSwitch(App):
    """Switch to an already mounted screen without Textual's 50 ms repaint pause."""

    _switching_to_mounted = False

    def switch_mode(self, mode: str):
        mounted = bool(getattr(self, "_screen_stacks", {}).get(mode))
        self._switching_to_mounted = mounted
        if not mounted:
            self.call_after_refresh(freeze_long_lived)  # the new screen stays for good
        try:
            return super().switch_mode(mode)
        finally:
            self._switching_to_mounted = False

    def delay_update(self, delay: float = 0.05) -> None:
        if self._switching_to_mounted:
            return
        super().delay_update(delay)

    def preload_screens(self, delay: float = 0.2) -> None:
        """Import the screen modules not imported yet, one per timer tick (each holds the
        event loop for a few tens of milliseconds; a key pressed meanwhile waits that long)."""
        pending = [f"fluxtui.tui.screens.{module}" for *_rest, module, _cls in SCREENS]

        def next_one() -> None:
            while pending:
                name = pending.pop(0)
                if name not in sys.modules:
                    import_module(name)
                    break
            if pending:
                self.set_timer(0.05, next_one)
            else:
                freeze_long_lived()

        self.set_timer(delay, next_one)


frozen = 0  # for tests: how often the long-lived objects were frozen


def freeze_long_lived() -> None:
    """Move every object tracked now out of the cyclic collector's generations."""
    global frozen
    gc.freeze()
    frozen += 1
