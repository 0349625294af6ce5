"""Textual's footer, rebuilt only when what it shows changed.

Textual's Footer recomposes (unmounts and mounts every key) whenever its screen publishes
"bindings updated", which a screen does on every focus change and on every suspend and
resume: two full footer rebuilds per screen switch, a large part of a switch's latency.
This one remembers what it drew (the shown keys, their labels and enabled states) and
rebuilds only when that differs, and never while its screen is hidden.
"""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer


class FluxFooter(Footer):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._drawn: object = None
        self.rebuilds = 0  # for tests: how often the keys were remounted

    def _shown(self) -> object:
        app = self.app
        keys = tuple(
            (binding.key, app.get_key_display(binding), binding.description, binding.action, enabled, tooltip)
            for (_node, binding, enabled, tooltip) in self.screen.active_bindings.values()
            if binding.show or binding.key == app.COMMAND_PALETTE_BINDING
        )
        return (keys, self.show_command_palette, app.ENABLE_COMMAND_PALETTE)

    def bindings_changed(self, screen: Screen) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen:
            self.call_after_refresh(self._rebuild_if_changed)

    async def _rebuild_if_changed(self) -> None:
        if not self.is_attached or self.screen is not self.app.screen:
            return  # hidden: the resume publishes again and this runs then
        shown = self._shown()
        if shown == self._drawn:
            return
        self._drawn = shown
        self.rebuilds += 1
        await self.recompose()
