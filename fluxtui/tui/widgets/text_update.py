"""Redraw a Static only when what it shows changed, and lay the screen out again only when
its height did.

`Static.update` asks for a layout of the whole screen by default: at 160x48 that pass, and
the scrollbar repaint it sets off in the next frame, cost more than drawing the text. The
monitor's status line, the navigation bar's run badge and the memory text change about
once a second while a run trains, so they go through here: an unchanged text costs
nothing, a changed one of the same height repaints just that widget.
"""

from __future__ import annotations

from textual.widgets import Static

_UNSET = object()


def show_text(widget: Static, content) -> bool:
    """Show `content` in `widget`; False when it already showed exactly that."""
    if getattr(widget, "_shown_content", _UNSET) == content:
        return False
    widget._shown_content = content  # type: ignore[attr-defined]
    width = widget.content_size.width
    styles_width = widget.styles.width
    if not width or (styles_width is not None and styles_width.is_auto):
        widget.update(content)  # not laid out yet, or sized by its text: Textual decides
        return True
    before = widget.visual.get_height(widget.styles, width)
    widget.update(content, layout=False)
    if widget.visual.get_height(widget.styles, width) != before:
        widget.refresh(layout=True)
    return True
