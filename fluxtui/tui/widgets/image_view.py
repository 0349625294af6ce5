"""Images in the terminal through textual-image, with half cells over SSH and in tmux.

Graphics protocols (sixel, kitty) rarely survive tmux or a hop through SSH, and textual-image
can only ask the terminal what it supports before Textual starts; so in those places we use
coloured half cells, which every 256-colour terminal shows.
"""

from __future__ import annotations

import os
from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Container, HorizontalScroll, Vertical
from textual.widgets import Static


def use_halfcell() -> bool:
    choice = os.environ.get("FLUXTUI_IMAGES", "").lower()
    if choice in ("halfcell", "auto"):
        return choice == "halfcell"
    remote = os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_TTY")
    browser = "web_driver" in os.environ.get("TEXTUAL_DRIVER", "")  # fluxtui serve
    return bool(os.environ.get("TMUX") or remote or browser)


def _image_class():
    if use_halfcell():
        from textual_image.widget import HalfcellImage

        return HalfcellImage
    from textual_image.widget import Image

    return Image


class ImageView(Container):
    """An image file, or its name when colours are off (NO_COLOR: a picture of flat grey
    helps nobody, and textual-image's cells carry no style for Textual's monochrome filter)."""

    DEFAULT_CSS = """
    ImageView {
        width: 24;
        height: 12;
        & > * { width: 100%; height: 100%; }
        & > .image-name { color: $text-muted; }
    }
    """

    def __init__(self, path: Path | None = None, *, id: str | None = None, classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self.path = path

    def compose(self) -> ComposeResult:
        if self.app.no_color:
            yield Static(self.placeholder_text(), classes="image-name")
        else:
            yield _image_class()(str(self.path) if self.path else None)

    def placeholder_text(self) -> str:
        return f"[image: {self.path.name}]" if self.path else ""

    @property
    def settled(self) -> bool:
        """The image asked for is drawn at this widget's final size (snapshot tests wait on
        it: textual-image renders on the first paint after layout, not when told)."""
        if not self.children or not self.is_mounted:
            return False
        child = self.children[0]
        if isinstance(child, Static):
            return True
        if self.path is None:
            return child.image is None
        return getattr(child, "_renderable", None) is not None and child.size == self.content_size and bool(child.size)

    def show(self, path: Path | None) -> None:
        self.path = Path(path) if path else None
        if not self.children:
            return  # compose will draw it
        child = self.children[0]
        if isinstance(child, Static):
            child.update(self.placeholder_text())
        else:
            child.image = str(self.path) if self.path else None


class ImageCard(Vertical):
    DEFAULT_CSS = """
    ImageCard {
        width: 26;
        height: auto;
        margin: 0 1 0 0;
        & > .image { width: 24; height: 12; }
        & > .caption { width: 24; height: 2; color: $text-muted; }
    }
    """

    def __init__(self, path: Path, caption: str):
        super().__init__()
        self.path = path
        self.caption = caption

    def compose(self) -> ComposeResult:
        yield ImageView(self.path, classes="image")
        yield Static(self.caption, classes="caption")


class ValidationGallery(HorizontalScroll):
    """The latest image of each validation prompt and size."""

    DEFAULT_CSS = """
    ValidationGallery {
        height: 1fr;
        .gallery-empty { color: $text-muted; }
    }
    """

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.shown: list[tuple[str, int, str]] = []

    def compose(self) -> ComposeResult:
        yield Static("no validation images yet", classes="gallery-empty")

    def show(self, run_dir: Path, items: list[tuple[str, int, str]]) -> None:
        if items == self.shown:
            return
        self.shown = list(items)
        self.remove_children()
        if not items:
            self.mount(Static("no validation images yet", classes="gallery-empty"))
            return
        self.mount_all(ImageCard(run_dir / rel, f"{name}\nstep {step}") for name, step, rel in items)
