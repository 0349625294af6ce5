"""The datasets screen: counts, buckets, the size rule with its fix, the files left out,
and editing a .txt caption from the preview."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, TextArea
from tui_support import wait_for, wait_for_workers

from fluxtui.core import config
from fluxtui.tui.app import make_app
from fluxtui.tui.screens.config import ConfigScreen
from fluxtui.tui.screens.datasets import DatasetsScreen
from fluxtui.tui.widgets.problem_list import ProblemList

pytestmark = pytest.mark.asyncio


async def open_datasets(app, pilot) -> DatasetsScreen:
    await wait_for(pilot, lambda: app.state.scanned)
    await pilot.press("3")
    await pilot.pause()
    assert isinstance(app.screen, DatasetsScreen)
    return app.screen


async def test_counts_buckets_and_caption_editing(ws):
    app = make_app(ws.root, watch=False, gpu=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_datasets(app, pilot)
        summary = str(screen.query_one("#ds-summary").render())
        assert "24 images · 24 captioned" in summary
        assert "6 batches/epoch" in summary
        assert "1.00" in summary and "64x64" in summary  # the bucket histogram
        table = screen.query_one("#ds-images", DataTable)
        assert table.row_count == 24
        table.focus()
        await pilot.press("down", "down")
        await pilot.pause()
        image = screen.image
        assert image.path.name.startswith("002-")
        area = screen.query_one("#ds-caption", TextArea)
        assert area.text == image.captions[0] and not area.read_only
        area.focus()
        area.load_text("a hand-written caption")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: image.path.with_suffix(".txt").read_text() == "a hand-written caption\n")
        # the rescan picks the new caption up
        await wait_for(
            pilot,
            lambda: any(i.captions == ("a hand-written caption",) for i in app.state.datasets[0].images),
        )


async def test_size_rule_and_skipped_files_are_listed_with_fixes(ws):
    config.set_values(ws.project_file, {"training.train_batch_size": 32})
    (ws.datasets_dir / "shapes" / "broken.png").write_bytes(b"")
    app = make_app(ws.root, watch=False, gpu=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_datasets(app, pilot)
        problems = screen.query_one(ProblemList).problems
        size_rule = next(p for p in problems if p.key == "datasets[0].repeats")
        assert "24 images x (repeats 0 + 1) = 24 < 32" in size_rule.message
        assert size_rule.fix.startswith("set repeats = 1")
        assert any("broken.png" in (p.message + str(p.path or "")) for p in problems)
        assert "files left out" in str(screen.query_one("#ds-summary").render())
        # enter on the size rule goes to the key in the editor
        plist = screen.query_one(ProblemList)
        plist.focus()
        plist.highlighted = problems.index(size_rule)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfigScreen))
        await wait_for_workers(app)
        await pilot.pause()
        assert app.focused is app.screen.query_one("#f-datasets-0-repeats-control")


async def test_filename_captions_are_read_only(ws):
    config.set_values(ws.project_file, {"datasets[0].caption_strategy": "filename"})
    app = make_app(ws.root, watch=False, gpu=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_datasets(app, pilot)
        await wait_for(pilot, lambda: screen.image is not None)
        assert screen.query_one("#ds-caption", TextArea).read_only
        assert "captions come from filename" in str(screen.query_one("#ds-caption-label").render())
