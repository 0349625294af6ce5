"""Watch a workspace for config and dataset changes: debounced, re-validated, classified.

Editors save by writing a temp file and renaming it over project.toml, so the watch is on
the workspace folder (not the file, which would go deaf after the first save) and on each
active dataset folder. Bursts of events (an editor's save, a copy of 500 images) become one
`Change` after `debounce` seconds of quiet. Opens and reads are ignored: scanning the
datasets and the trainer's caching read every image, and must not trigger themselves.

API (the runner's --watch and the TUI both use it):
    ProjectWatcher(workspace, callback, *, debounce=0.5, validate=None).start() / .stop()
        callback(change: Change) runs on the watcher's thread; hand it over to your own.
    diff_projects(old, new) -> list[str]       dotted keys whose values differ
    resume_can_absorb(keys) -> bool            whether resuming from a checkpoint can take them
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEventHandler

from . import schema
from .config import PROJECT_FILE, Project
from .problems import Problem, has_errors
from .workspace import Workspace

DATASET_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".avif", ".jxl", ".txt"}
_IGNORED_EVENTS = {"opened", "closed_no_write", "attrib"}


@dataclass
class Change:
    """One debounced change of the workspace.

    kind: "config" (project.toml) or "dataset" (image or caption files added, removed or
    changed; a change touching both is "config" with `paths` filled too).
    keys: dotted option keys whose values changed ("training.learning_rate",
    "datasets[0].resolution", "datasets[1]" for a dataset table added or removed).
    resumable: a running training can take the change by stopping with a checkpoint and
    resuming from it; False means it needs a new run.
    problems: everything validation found (errors make `valid` False; then keys is empty and
    the running trainer should be left alone).
    """

    kind: str
    keys: list[str] = field(default_factory=list)
    resumable: bool = True
    problems: list[Problem] = field(default_factory=list)
    project: Project | None = None
    paths: list[str] = field(default_factory=list)  # dataset files added/removed/changed
    added: int = 0
    removed: int = 0

    @property
    def valid(self) -> bool:
        return self.project is not None and not has_errors(self.problems)

    @property
    def blocking_keys(self) -> list[str]:
        """The keys that resume cannot absorb."""
        return [k for k in self.keys if not resume_can_absorb([k])]

    def describe(self) -> str:
        parts = []
        if self.keys:
            parts.append(", ".join(self.keys))
        if self.added or self.removed or self.paths:
            bits = []
            if self.added:
                bits.append(f"{self.added} added")
            if self.removed:
                bits.append(f"{self.removed} removed")
            changed = len(self.paths) - self.added - self.removed
            if changed > 0:
                bits.append(f"{changed} changed")
            parts.append("dataset files: " + ", ".join(bits))
        return "; ".join(parts) or "no effective change"


# -- diffing ------------------------------------------------------------------------------


def _diff(prefix: str, a: Any, b: Any, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(b) + [k for k in a if k not in b]:
            _diff(f"{prefix}.{key}" if prefix else key, a.get(key, _MISSING), b.get(key, _MISSING), out)
    elif a != b:
        out.append(prefix)


_MISSING = object()


def diff_projects(old: Project | dict, new: Project | dict) -> list[str]:
    """Dotted keys whose effective values differ (defaults count: removing a line that set
    the default is no change). Datasets compare by position: `datasets[0].resolution`; a
    dataset table added or removed is `datasets[i]`."""
    a = old.to_dict() if isinstance(old, Project) else old
    b = new.to_dict() if isinstance(new, Project) else new
    out: list[str] = []
    for section in list(b) + [s for s in a if s not in b]:
        if section == "datasets":
            continue
        _diff(section, a.get(section, {}), b.get(section, {}), out)
    old_sets, new_sets = a.get("datasets", []), b.get("datasets", [])
    for i in range(max(len(old_sets), len(new_sets))):
        if i >= len(old_sets) or i >= len(new_sets):
            out.append(f"datasets[{i}]")
        else:
            _diff(f"datasets[{i}]", old_sets[i], new_sets[i], out)
    return out


def _option_for(key: str) -> schema.Option | None:
    if key.startswith("datasets["):
        if "]." not in key:
            return None
        key = "datasets." + key.split("].", 1)[1]
    parts = key.split(".")
    for n in range(len(parts), 1, -1):  # validation.prompts.portrait -> validation.prompts
        opt = schema.BY_DOTTED.get(".".join(parts[:n]))
        if opt is not None:
            return opt
    return None


def resume_can_absorb(keys: list[str]) -> bool:
    """True when every key is an option that a resumed run takes as it is (schema's
    Option.absorbed_by_resume). Unknown keys and added/removed datasets say no."""
    for key in keys:
        opt = _option_for(key)
        if opt is None or not opt.absorbed_by_resume:
            return False
    return True


# -- dataset snapshots --------------------------------------------------------------------


def _dataset_dirs(project: Project | None) -> list[Path]:
    if project is None:
        return []
    out: list[Path] = []
    for d in project.active_datasets:
        for attr in ("instance_data_dir", "mask_data_dir"):
            value = getattr(d, attr, None)
            if value:
                path = project.resolve(value).resolve()
                if path not in out:
                    out.append(path)
    return out


def _snapshot(dirs: list[Path]) -> dict[str, tuple[int, int]]:
    files: dict[str, tuple[int, int]] = {}
    for root in dirs:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith(".") or Path(name).suffix.lower() not in DATASET_SUFFIXES:
                    continue
                path = os.path.join(dirpath, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                files[path] = (st.st_size, st.st_mtime_ns)
    return files


# -- the watcher --------------------------------------------------------------------------


def _default_validate(ws: Workspace) -> tuple[Project | None, list[Problem]]:
    from . import runs

    return runs.validate(ws)


class ProjectWatcher:
    """Watchdog on the workspace folder and the active dataset folders, debounced.

    `validate(workspace) -> (project or None, problems)` defaults to runs.validate (the
    file, the rules, the dataset scan). The first good project is read at start(); later
    changes are diffed against the last valid one, so an invalid edit followed by a fix
    reports what really changed. Use as a context manager or call start()/stop().
    """

    def __init__(
        self,
        workspace: Workspace | str | os.PathLike,
        callback: Callable[[Change], None],
        *,
        debounce: float = 0.5,
        validate: Callable[[Workspace], tuple[Project | None, list[Problem]]] | None = None,
        project: Project | None = None,
    ):
        self.ws = workspace if isinstance(workspace, Workspace) else Workspace.at(workspace)
        self.callback = callback
        self.debounce = debounce
        self._validate = validate or _default_validate
        self.project = project  # last valid project
        self._was_invalid = False
        self._files: dict[str, tuple[int, int]] = {}
        self._cond = threading.Condition()
        self._pending: set[str] = set()
        self._deadline: float | None = None
        self._stopped = False
        self._observer = None
        self._dataset_watches: dict[Path, Any] = {}
        self._thread: threading.Thread | None = None
        self.errors: list[BaseException] = []  # exceptions raised by the callback or validation

    # lifecycle
    def start(self) -> ProjectWatcher:
        from watchdog.observers import Observer

        if self.project is None:
            self.project, _problems = self._validate(self.ws)
            self._was_invalid = self.project is None
        self._files = _snapshot(_dataset_dirs(self.project))
        self._observer = Observer()
        self._observer.schedule(_Handler(self, "root"), str(self.ws.root), recursive=False)
        self._sync_dataset_watches(self.project)
        self._observer.start()
        self._thread = threading.Thread(target=self._loop, name="fluxtui-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __enter__(self) -> ProjectWatcher:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # events
    def _notify(self, kind: str) -> None:
        with self._cond:
            self._pending.add(kind)
            self._deadline = time.monotonic() + self.debounce
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (self._deadline is None or time.monotonic() < self._deadline):
                    timeout = None if self._deadline is None else self._deadline - time.monotonic()
                    self._cond.wait(timeout=timeout)
                if self._stopped:
                    return
                kinds, self._pending, self._deadline = self._pending, set(), None
            try:
                change = self._evaluate(kinds)
                if change is not None:
                    self.callback(change)
            except Exception as e:  # keep watching; the owner can look at .errors
                self.errors.append(e)

    def _evaluate(self, kinds: set[str]) -> Change | None:
        kind = "config" if "config" in kinds else "dataset"
        project, problems = self._validate(self.ws)
        if project is None or has_errors(problems):
            self._was_invalid = True
            return Change(kind, [], False, problems, None)
        keys = diff_projects(self.project, project) if self.project is not None else []
        files = _snapshot(_dataset_dirs(project))
        added = [p for p in files if p not in self._files]
        removed = [p for p in self._files if p not in files]
        changed = [p for p in files if p in self._files and files[p] != self._files[p]]
        was_invalid, self._was_invalid = self._was_invalid, False
        self.project, self._files = project, files
        self._sync_dataset_watches(project)
        paths = sorted(added + removed + changed)
        if not keys and not paths and not was_invalid:
            return None  # a save without a change, a comment edit, a touched file
        if not keys and paths:
            kind = "dataset"
        # new or removed images are new data for the same adapter: a resumed run takes them
        return Change(kind, keys, resume_can_absorb(keys), problems, project, paths, len(added), len(removed))

    def _sync_dataset_watches(self, project: Project | None) -> None:
        if self._observer is None:
            return
        wanted = [d for d in _dataset_dirs(project) if d.is_dir()]
        for path in list(self._dataset_watches):
            if path not in wanted:
                self._observer.unschedule(self._dataset_watches.pop(path))
        for path in wanted:
            if path not in self._dataset_watches:
                self._dataset_watches[path] = self._observer.schedule(
                    _Handler(self, "dataset"), str(path), recursive=True
                )


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: ProjectWatcher, role: str):
        self.watcher = watcher
        self.role = role

    def on_any_event(self, event) -> None:
        if event.event_type in _IGNORED_EVENTS:
            return
        paths = [event.src_path, getattr(event, "dest_path", "") or ""]
        names = [os.path.basename(os.fsdecode(p)) for p in paths if p]
        if self.role == "root":
            if PROJECT_FILE in names and not event.is_directory:
                self.watcher._notify("config")
            return
        if event.is_directory:
            if event.event_type != "modified":  # a folder of images added, removed, renamed
                self.watcher._notify("dataset")
            return
        if any(not n.startswith(".") and Path(n).suffix.lower() in DATASET_SUFFIXES for n in names):
            self.watcher._notify("dataset")
