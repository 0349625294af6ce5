"""Datasets: images, captions, buckets and the size rule per dataset, the files that were left
out and why, and a preview of one image with its caption (editable for .txt captions)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from fluxtui.core.config import atomic_write_text

from ..messages import CaptionSaved
from ..widgets.image_view import ImageView
from ..widgets.problem_list import ProblemList
from ..widgets.vram_gauge import bar
from .base import FluxScreen


def dataset_summary(report, ds) -> Text:
    text = Text()
    n = len(report.images)
    text.append(f"{report.id}", style="bold")
    text.append(f"  {report.source or report.folder.name + '/'}\n", style="dim")
    text.append(f"{n} images · {report.captioned} captioned")
    if report.uncaptioned:
        text.append(f" · {len(report.uncaptioned)} use the file name", style="yellow")
    text.append(f"\n{report.batches_per_epoch} batches/epoch · {report.steps_per_epoch} steps/epoch")
    if ds is not None:
        text.append(
            f"\nrepeats {ds.repeats} · {ds.caption_strategy} captions · crop_aspect {ds.crop_aspect}", style="dim"
        )
    if report.skipped:
        text.append(f"\n{len(report.skipped)} files left out (see the problems below)", style="yellow")
    if report.buckets:
        text.append("\n\nbuckets (aspect: images, training size)\n", style="bold")
        most = max(len(v) for v in report.buckets.values())
        for (w, h), items in report.buckets.items():
            text.append(f"{w / h:>5.2f} {bar(len(items) / most, 12)} {len(items):>4}  {w}x{h}\n")
    text.rstrip()
    return text


class DatasetsScreen(FluxScreen):
    MODE = "datasets"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save_caption", "Save caption", id="datasets.save_caption", priority=True),
        Binding("ctrl+l", "rescan", "Rescan", id="datasets.rescan", priority=True),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.index = 0  # position in state.datasets
        self.image = None  # the ImageInfo shown
        self.shown_key: tuple | None = None

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="ds-body"):
            with VerticalScroll(id="ds-left"):
                yield OptionList(id="ds-list")
                yield Static("scanning…", id="ds-summary")
                yield ProblemList(id="ds-problems")
            with Vertical(id="ds-right"):
                yield DataTable(id="ds-images", cursor_type="row", zebra_stripes=True)
                with Horizontal(id="ds-preview"):
                    yield ImageView(None, id="ds-image")
                    with Vertical(id="ds-caption-box"):
                        yield Static("", id="ds-caption-label")
                        yield TextArea("", id="ds-caption", soft_wrap=True, tab_behavior="focus")

    def on_mount(self) -> None:
        super().on_mount()

    @property
    def preview_settled(self) -> bool:
        """The first image of the dataset (or the one picked) is drawn: nothing moves after."""
        if not self.state.scanned:
            return False
        report = self.report
        if report is None or not report.images:
            return True
        return self.image is not None and self.query_one("#ds-image", ImageView).settled

    @property
    def report(self):
        reports = self.state.datasets
        return reports[self.index] if 0 <= self.index < len(reports) else None

    def on_state(self, topic: str) -> None:
        if topic not in ("all", "datasets", "project"):
            return
        s = self.state
        key = (s.datasets, s.scanned)  # the list object itself: a rescan brings a new one
        if self.shown_key is not None and key[0] is self.shown_key[0] and key[1] == self.shown_key[1]:
            return
        self.shown_key = key
        lst = self.query_one("#ds-list", OptionList)
        lst.clear_options()
        if not s.scanned:
            self.query_one("#ds-summary", Static).update("scanning…" if s.project else "project.toml has errors")
            return
        if not s.datasets:
            self.query_one("#ds-summary", Static).update("no active datasets")
            self.query_one(ProblemList).show(s.dataset_problems)
            return
        lst.add_options(Option(f"{r.id} ({len(r.images)})", id=str(i)) for i, r in enumerate(s.datasets))
        self.index = min(self.index, len(s.datasets) - 1)
        lst.highlighted = self.index
        self._show_dataset()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        picked = event.option.id
        if event.option_list.id == "ds-list" and picked is not None and int(picked) != self.index:
            self.index = int(picked)
            self._show_dataset()

    def _show_dataset(self) -> None:
        report = self.report
        if report is None:
            return
        project = self.state.project
        ds = project.datasets[report.index] if project and report.index < len(project.datasets) else None
        self.query_one("#ds-summary", Static).update(dataset_summary(report, ds))
        self.query_one(ProblemList).show(report.problems)
        table = self.query_one("#ds-images", DataTable)
        # explicit widths: the columns' auto width kept the header labels' width (4 characters)
        names = [img.path.name for img in report.images]
        table.clear(columns=True)
        table.add_column("file", width=min(28, max([4, *map(len, names)])))
        table.add_column("size", width=max([4, *(len(f"{i.width}x{i.height}") for i in report.images)]))
        table.add_column("bucket", width=max([6, *(len(f"{i.target[0]}x{i.target[1]}") for i in report.images)]))
        # explicit like the others: an auto width raced the first paint (drawn at the label's width)
        shown = [(i.captions[0] if i.captions else "")[:60] for i in report.images]
        table.add_column("caption", width=max([7, *map(len, shown)]))
        for i, img in enumerate(report.images):
            caption = img.captions[0] if img.captions else ""
            table.add_row(
                img.path.name,
                f"{img.width}x{img.height}",
                f"{img.target[0]}x{img.target[1]}",
                caption[:60],
                key=str(i),
            )
        if report.images:
            self._show_image(0)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "ds-images" and event.row_key.value is not None:
            self._show_image(int(event.row_key.value))

    def _show_image(self, i: int) -> None:
        report = self.report
        if report is None or not (0 <= i < len(report.images)):
            return
        img = report.images[i]
        self.image = img
        # a Hugging Face row has no file of its own to show (its bytes live in the dataset)
        self.query_one("#ds-image", ImageView).show(img.path if img.row is None else None)
        editable = self._caption_file(img) is not None
        label = f"{img.path.name} · {img.width}x{img.height} → {img.target[0]}x{img.target[1]}"
        label += " · ctrl+s saves the caption" if editable else " · captions come from " + self._strategy()
        self.query_one("#ds-caption-label", Static).update(label)
        area = self.query_one("#ds-caption", TextArea)
        area.load_text("\n".join(img.captions))
        area.read_only = not editable

    def _strategy(self) -> str:
        project, report = self.state.project, self.report
        if project is None or report is None:
            return "?"
        return project.datasets[report.index].caption_strategy

    def _caption_file(self, img) -> Path | None:
        return img.path.with_suffix(".txt") if self._strategy() == "textfile" else None

    def action_save_caption(self) -> None:
        img = self.image
        path = self._caption_file(img) if img is not None else None
        if path is None:
            self.notify("captions of this dataset are not .txt files", severity="warning")
            return
        text = self.query_one("#ds-caption", TextArea).text.strip() + "\n"
        self._write_caption(path, text)

    @work(thread=True, group="caption", exit_on_error=False)
    def _write_caption(self, path: Path, text: str) -> None:
        atomic_write_text(path, text)
        self.post_message(CaptionSaved(str(path)))

    def on_caption_saved(self, msg: CaptionSaved) -> None:
        self.notify(f"saved {Path(msg.path).name}", timeout=3)
        self.fapp.reload_project()  # rescan: the caption counts and the cache follow

    def action_rescan(self) -> None:
        self.fapp.reload_project()
        self.notify("rescanning the datasets", timeout=2)

    async def on_problem_list_jump(self, msg: ProblemList.Jump) -> None:
        msg.stop()
        p = msg.problem
        report = self.report
        if p.path and report is not None:
            for i, img in enumerate(report.images):
                if str(img.path).endswith(str(p.path)):
                    self.query_one("#ds-images", DataTable).move_cursor(row=i)
                    return
        if p.key:
            await self.fapp.jump_to_key(p.key, p.line)
