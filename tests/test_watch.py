"""core/watch.py: diffing, what resume absorbs, and the real watchdog watcher on a workspace."""

from __future__ import annotations

import os
import queue
import re
import shutil
import time

import pytest

from fluxtui.core import config, workspace
from fluxtui.core.watch import Change, ProjectWatcher, diff_projects, resume_can_absorb


@pytest.fixture
def ws(demo_workspace) -> workspace.Workspace:
    return workspace.Workspace.at(demo_workspace)


def _load(ws):
    return config.load_or_raise(ws.project_file)


def test_diff_projects_names_changed_keys(ws):
    old = _load(ws)
    config.set_values(ws.project_file, {"training.learning_rate": 5e-4, "datasets[0].resolution": 128})
    new = _load(ws)
    assert diff_projects(old, new) == ["training.learning_rate", "datasets[0].resolution"]
    assert diff_projects(new, new) == []


def test_diff_ignores_layout_and_defaults(ws):
    old = _load(ws)
    text = ws.project_file.read_text()
    ws.project_file.write_text("# a new comment\n" + text.replace("seed = 42", "seed   =   42  # same"))
    assert diff_projects(old, _load(ws)) == []


def test_diff_datasets_added_and_prompts(ws):
    old = old_dict = _load(ws).to_dict()
    new = _load(ws).to_dict()
    new["datasets"].append(dict(new["datasets"][0], id="more"))
    new["validation"]["prompts"] = {"portrait": "a face"}
    keys = diff_projects(old_dict, new)
    assert "datasets[1]" in keys and "validation.prompts.portrait" in keys
    assert old is old_dict


def test_resume_can_absorb():
    assert resume_can_absorb(["training.learning_rate", "training.max_train_steps", "validation.validation_steps"])
    assert resume_can_absorb(["training.lr_scheduler", "training.checkpointing_steps"])
    assert resume_can_absorb(["validation.prompts.portrait"])
    assert resume_can_absorb([])
    for key in ["lora.lora_rank", "model.model_flavour", "datasets[0].resolution", "datasets[1]", "no.such"]:
        assert not resume_can_absorb([key]), key
    assert not resume_can_absorb(["training.learning_rate", "lora.lora_rank"])


class Collector:
    def __init__(self):
        self.q: queue.Queue[Change] = queue.Queue()

    def __call__(self, change: Change) -> None:
        self.q.put(change)

    def next(self, timeout: float = 10.0) -> Change:
        return self.q.get(timeout=timeout)

    def none_within(self, seconds: float) -> bool:
        try:
            change = self.q.get(timeout=seconds)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected change: {change}")


def _editor_save(path, text: str) -> None:
    """How vim/VS Code save: write a temp file next to it, rename it over the original."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_watcher_follows_saves_by_rename_and_classifies(ws):
    seen = Collector()
    with ProjectWatcher(ws, seen, debounce=0.2):
        text = ws.project_file.read_text()
        # 1: a resumable change, saved by rename, twice in a burst: one Change
        _editor_save(ws.project_file, text.replace("learning_rate = 0.001", "learning_rate = 0.0005"))
        _editor_save(ws.project_file, text.replace("learning_rate = 0.001", "learning_rate = 0.0002"))
        change = seen.next()
        assert change.kind == "config" and change.valid
        assert change.keys == ["training.learning_rate"] and change.resumable
        assert change.project.training.learning_rate == 0.0002
        seen.none_within(0.6)
        # 2: an invalid edit: problems with line numbers, no keys
        broken = ws.project_file.read_text().replace("train_batch_size = 4", "train_batch_size = -1")
        _editor_save(ws.project_file, broken)
        change = seen.next()
        assert not change.valid and not change.resumable and change.keys == []
        bad = [p for p in change.problems if p.is_error]
        assert bad[0].key == "training.train_batch_size"
        line = broken.splitlines().index("train_batch_size = -1") + 1
        assert bad[0].line == line
        # 3: a fix plus a rank change: compared with the last valid project
        fixed = broken.replace("train_batch_size = -1", "train_batch_size = 4")
        _editor_save(ws.project_file, re.sub(r"(?m)^lora_rank = \d+", "lora_rank = 8", fixed))
        change = seen.next()
        assert change.valid and change.keys == ["lora.lora_rank"] and not change.resumable
        assert change.blocking_keys == ["lora.lora_rank"]
        # 4: a comment-only save says nothing
        _editor_save(ws.project_file, "# hello\n" + ws.project_file.read_text())
        seen.none_within(0.8)


def test_watcher_sees_dataset_images_added_and_removed(ws):
    seen = Collector()
    folder = ws.datasets_dir / "shapes"
    with ProjectWatcher(ws, seen, debounce=0.2):
        first = sorted(folder.glob("*.png"))[0]
        for i in range(3):
            shutil.copy(first, folder / f"new-{i}.png")
            shutil.copy(first.with_suffix(".txt"), folder / f"new-{i}.txt")
        change = seen.next()
        assert change.kind == "dataset" and change.valid and change.resumable
        assert change.added == 6 and change.keys == []
        assert "6 added" in change.describe()
        # reading images (the dataset scan, the trainer's cache) must not trigger anything
        for p in folder.iterdir():
            p.read_bytes()
        seen.none_within(0.8)
        (folder / "new-0.png").unlink()
        (folder / "new-0.txt").unlink()
        change = seen.next()
        assert change.removed == 2 and change.kind == "dataset"


def test_watcher_reports_invalid_dataset_change(ws):
    """Emptying a dataset folder is an invalid change: problems, nothing to restart."""
    seen = Collector()
    folder = ws.datasets_dir / "shapes"
    with ProjectWatcher(ws, seen, debounce=0.3):
        for p in list(folder.iterdir()):
            p.unlink()
        deadline = time.monotonic() + 10
        change = seen.next()
        while change.valid and time.monotonic() < deadline:  # an early, partial burst
            change = seen.next()
        assert not change.valid and change.problems
