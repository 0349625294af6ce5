"""The config editor: forms from the schema, saving through tomlkit, errors as you type,
the raw TOML view, jumping to a problem's key, and the guard against losing edits."""

from __future__ import annotations

import difflib

import pytest
from textual.widgets import Input, Select, TextArea
from tui_support import send_batch, toasts, wait_for, wait_for_workers

from fluxtui.core import config
from fluxtui.tui.app import make_app
from fluxtui.tui.screens.config import ConfigScreen
from fluxtui.tui.screens.dialogs import QuitGuard
from fluxtui.tui.widgets.option_field import OptionField, field_id
from fluxtui.tui.widgets.problem_list import ProblemList

SIZE = (100, 30)
pytestmark = pytest.mark.asyncio


def app_for(ws, **kw):
    return make_app(ws.root, watch=False, gpu=False, **kw)


async def settle(app, pilot):
    await wait_for_workers(app)
    await pilot.pause()
    await wait_for_workers(app)
    await pilot.pause()


async def open_field(app, pilot, dotted: str) -> OptionField:
    if not isinstance(app.screen, ConfigScreen):
        await pilot.press("2")
        await settle(app, pilot)
    screen = app.screen
    assert isinstance(screen, ConfigScreen)
    screen.focus_key(dotted)
    await settle(app, pilot)
    return screen.query_one(f"#{field_id(dotted)}", OptionField)


async def type_into(pilot, text: str) -> None:
    await pilot.press("end", "ctrl+u", *list(text))


def changed_lines(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


async def test_edit_save_keeps_comments(ws):
    before = ws.project_file.read_text()
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        field = await open_field(app, pilot, "training.learning_rate")
        assert app.focused is field.control  # the jump focused the input
        await type_into(pilot, "0.0005")
        await pilot.pause()
        assert field.modified and field.error is None
        assert app.screen.dirty
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert not app.screen.dirty
    after = ws.project_file.read_text()
    assert changed_lines(before, after) == ["-learning_rate = 0.001", "+learning_rate = 0.0005"]
    assert "# Peak learning rate. Standard LoRA: 1e-5 .. 1e-3." in after


async def test_select_and_switch_fields_save(ws):
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        sched = await open_field(app, pilot, "training.lr_scheduler")
        assert isinstance(sched.control, Select)
        sched.control.value = "cosine"
        ckpt = app.screen.query_one(f"#{field_id('training.gradient_checkpointing')}", OptionField)
        ckpt.control.focus()
        await pilot.press("enter")  # a Switch toggles with enter/space
        await pilot.pause()
        assert ckpt.value is False
        await pilot.press("ctrl+s")
        await settle(app, pilot)
    text = ws.project_file.read_text()
    assert 'lr_scheduler = "cosine"' in text
    assert "gradient_checkpointing = false" in text
    assert "# Recompute activations in the backward pass" in text


async def test_invalid_values_show_errors_and_block_saving(ws):
    before = ws.project_file.read_text()
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        field = await open_field(app, pilot, "training.learning_rate")
        await type_into(pilot, "fast")
        await pilot.pause()
        assert field.has_class("-invalid")
        assert "must be a number" in field.error
        await type_into(pilot, "2")
        await pilot.pause()
        assert "above the maximum 1" in field.error  # the schema's range, checked as you type
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert app.focused is field.control  # sent back to the broken field
        status = str(app.screen.query_one("#cfg-status").render())
        assert "1 invalid" in status
    assert ws.project_file.read_text() == before


async def test_dataset_fields_and_lists(ws):
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        repeats = await open_field(app, pilot, "datasets[0].repeats")
        await type_into(pilot, "3")
        sizes = await open_field(app, pilot, "validation.validation_resolution")
        assert sizes.control.value == '["64x64"]'
        await type_into(pilot, '["64x64", "96x64"]')
        await pilot.pause()
        assert sizes.error is None and sizes.value == ["64x64", "96x64"]
        assert repeats.value == 3
        await pilot.press("ctrl+s")
        await settle(app, pilot)
    text = ws.project_file.read_text()
    assert "repeats = 3" in text
    assert 'validation_resolution = ["64x64", "96x64"]' in text


async def test_raw_view_reports_parse_errors_with_line_numbers(ws):
    before = ws.project_file.read_text()
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(app, pilot)
        await pilot.press("ctrl+r")
        await pilot.pause()
        screen = app.screen
        assert screen.showing_raw
        area = screen.query_one("#raw-text", TextArea)
        assert area.text == before
        area.insert("oops = = 1\n", (4, 0))  # line 5
        await pilot.pause(0.5)
        assert screen.syntax_error is not None and screen.syntax_error.line == 5
        assert "line 5" in str(screen.query_one("#cfg-status").render())
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert ws.project_file.read_text() == before  # refused
        # a valid raw edit saves as typed, comments and all
        await pilot.press("ctrl+l")
        await pilot.pause()
        area.insert("# my own note\n", (0, 0))
        await pilot.pause(0.5)
        assert screen.syntax_error is None
        await pilot.press("ctrl+s")
        await settle(app, pilot)
    assert ws.project_file.read_text() == "# my own note\n" + before


async def test_problem_list_jumps_to_the_key(ws):
    text = ws.project_file.read_text().replace("learning_rate = 0.001", 'learning_rate = "fast"')
    ws.project_file.write_text(text)
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        problems = app.screen.query_one(ProblemList)
        keys = [p.key for p in problems.problems]
        assert "training.learning_rate" in keys
        problems.focus()
        problems.highlighted = keys.index("training.learning_rate")
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, ConfigScreen)
        field = app.screen.query_one(f"#{field_id('training.learning_rate')}", OptionField)
        assert app.focused is field.control
        assert field.error and "must be a number" in field.error  # the file's own bad value
        assert not field.modified


async def test_problem_without_a_field_opens_the_raw_view_at_its_line(ws):
    text = ws.project_file.read_text().replace("[training]\n", "[training]\nlearnin_rate = 1\n", 1)
    ws.project_file.write_text(text)
    line = text.splitlines().index("learnin_rate = 1") + 1
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        problems = app.screen.query_one(ProblemList)
        index = next(i for i, p in enumerate(problems.problems) if p.key == "training.learnin_rate")
        problems.focus()
        problems.highlighted = index
        await pilot.press("enter")
        await settle(app, pilot)
        screen = app.screen
        assert screen.showing_raw
        assert screen.query_one("#raw-text", TextArea).cursor_location[0] == line - 1


async def test_quit_guard_on_unsaved_changes(ws):
    before = ws.project_file.read_text()
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        await open_field(app, pilot, "training.seed")
        await type_into(pilot, "7")
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, QuitGuard)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ConfigScreen)  # still here, edits intact
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.press("s")  # save and quit
        await settle(app, pilot)
    assert app.return_value == 0
    assert "seed = 7" in ws.project_file.read_text()
    assert before != ws.project_file.read_text()


async def test_outside_edit_refreshes_a_clean_form(ws):
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        field = await open_field(app, pilot, "training.seed")
        from fluxtui.core import config

        config.set_values(ws.project_file, {"training.seed": 1234})
        app.reload_project()  # what the watcher does on a change
        await settle(app, pilot)
        assert field.control.value == "1234" and not field.modified
        assert isinstance(field.control, Input)


async def test_keys_sent_in_one_batch_edit_in_order(ws):
    """`End BSpace 8` arriving in one read (SSH) sets 8; Textual alone saves an empty field
    and removes the key (upstream #6605)."""
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        field = await open_field(app, pilot, "training.train_batch_size")
        assert app.focused is field.control and field.control.value == "4"
        send_batch(app, "end", "backspace", "8")
        await wait_for(pilot, lambda: field.control.value != "4", what="the keys to arrive")
        await settle(app, pilot)
        assert field.control.value == "8" and field.value == 8
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "train_batch_size = 8" in ws.project_file.read_text(), what="the save")
    assert "train_batch_size = 8" in ws.project_file.read_text()


async def test_an_empty_field_keeps_the_files_value(ws):
    before = ws.project_file.read_text()
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        field = await open_field(app, pilot, "training.seed")
        await pilot.press("end", "ctrl+u")
        await pilot.pause()
        assert field.control.value == "" and field.value == 42 and not field.modified
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert "nothing to save" in toasts(app)
    assert ws.project_file.read_text() == before


async def test_reset_to_default_is_the_explicit_way_to_remove_a_key(ws):
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        field = await open_field(app, pilot, "training.seed")
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert field.modified and field.value is None
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: any(t.startswith("saved") for t in toasts(app)), what="the save toast")
        saved = next(t for t in toasts(app) if t.startswith("saved"))
        assert "removed training.seed (was 42" in saved
    assert "\nseed = " not in ws.project_file.read_text()


async def test_save_toast_lists_every_changed_added_and_removed_key(ws):
    config.set_values(ws.project_file, {"training.seed": None})  # so that typing one adds it
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        await open_field(app, pilot, "training.learning_rate")
        await type_into(pilot, "0.0005")
        norm = await open_field(app, pilot, "training.max_grad_norm")
        await pilot.press("ctrl+o")
        seed = await open_field(app, pilot, "training.seed")
        assert not seed.explicit
        await type_into(pilot, "7")
        await pilot.pause()
        assert norm.modified and seed.modified
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: any(t.startswith("saved") for t in toasts(app)), what="the save toast")
        saved = next(t for t in toasts(app) if t.startswith("saved"))
    assert "changed training.learning_rate: 0.001 → 0.0005" in saved
    assert "removed training.max_grad_norm (was 2.0" in saved  # the template writes the default
    assert "added training.seed = 7" in saved
    text = ws.project_file.read_text()
    assert "seed = 7" in text and "\nmax_grad_norm" not in text


async def test_choice_fields_show_the_files_value(ws):
    config.set_values(ws.project_file, {"training.lr_scheduler": "cosine"})
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        flavour = await open_field(app, pilot, "model.model_flavour")
        precision = app.screen.query_one(f"#{field_id('model.base_model_precision')}", OptionField)
        for field, value in ((flavour, "tiny-random"), (precision, "no_change")):
            assert field.control.value == value
            shown = field.control.query_one("SelectCurrent").query_one("#label").render()
            assert str(shown) == value and "(not set)" not in str(shown)
            assert not field.modified
        sched = await open_field(app, pilot, "training.lr_scheduler")
        assert sched.control.value == "cosine" and not sched.modified
