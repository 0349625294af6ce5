"""Typed messages from workers (threads) to widgets. A worker never touches a widget.

Latest-value messages (GPU samples, the run list) may replace a pending one of the same kind;
metric batches and log lines never do: each carries data that exists nowhere else.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from fluxtui.core.problems import Problem


class _LatestValue(Message):
    """A message whose newer copy makes an older pending one pointless."""

    def can_replace(self, message: Message) -> bool:
        return type(message) is type(self)


class ProjectLoaded(Message):
    """project.toml was read and checked (config problems plus the cross-field rules)."""

    def __init__(self, project: Any, problems: list[Problem], text: str) -> None:
        super().__init__()
        self.project = project  # config.Project, or None when the file has errors
        self.problems = problems
        self.text = text


class DatasetsScanned(Message):
    def __init__(self, reports: list[Any], problems: list[Problem]) -> None:
        super().__init__()
        self.reports = reports  # datasets.DatasetReport
        self.problems = problems


class EstimateReady(Message):
    def __init__(self, estimate: Any, gpus: list[Any], suggestions: list[Any] = ()) -> None:
        super().__init__()
        self.estimate = estimate  # estimate.Estimate or None
        self.gpus = gpus
        self.suggestions = list(suggestions)  # estimate.Suggestion: changes that would make it fit


class GpuSampled(_LatestValue):
    def __init__(self, samples: list[Any]) -> None:
        super().__init__()
        self.samples = samples  # gpu.GpuSample


class RunsListed(_LatestValue):
    def __init__(self, runs: list[Any], active: Any) -> None:
        super().__init__()
        self.runs = runs  # runs.RunInfo, oldest first
        self.active = active  # the running one, or None


@dataclass
class StepColumns:
    """Step events of one batch as columns (8 bytes a number): cheap to append and to plot."""

    step: array = field(default_factory=lambda: array("d"))
    loss: array = field(default_factory=lambda: array("d"))
    smooth: array = field(default_factory=lambda: array("d"))
    t: array = field(default_factory=lambda: array("d"))
    last: dict | None = None  # the newest step event in full

    def __len__(self) -> int:
        return len(self.step)


class EventsBatch(Message):
    """New events of a run, in order. Never merged with or replaced by another batch.

    `applied` (when set) is called once the UI has taken the batch in: the tail waits for it
    before reading more, so a huge backlog never piles up in the message queue."""

    def __init__(
        self,
        run_id: str,
        steps: StepColumns,
        events: list[dict],
        backlog: bool,
        reset: bool = False,
        applied: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.run_id = run_id
        self.steps = steps
        self.events = events  # everything but step events, in file order
        self.backlog = backlog  # more is waiting in the file right now
        self.reset = reset  # the file was truncated or replaced: forget what came before
        self.applied = applied


class LogLines(Message):
    def __init__(self, run_id: str, lines: list[str], reset: bool) -> None:
        super().__init__()
        self.run_id = run_id
        self.lines = lines
        self.reset = reset  # the file was truncated or replaced: clear first


class RunCommandDone(Message):
    """start / stop / restart / checkpoint / validate finished (or failed with problems)."""

    def __init__(self, action: str, run: Any = None, error: str | None = None, problems=()) -> None:
        super().__init__()
        self.action = action
        self.run = run
        self.error = error
        self.problems = list(problems)


class ProjectFileChanged(Message):
    """The watcher saw project.toml or a dataset change on disk."""

    def __init__(self, change: Any) -> None:
        super().__init__()
        self.change = change  # watch.Change


class Saved(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class CaptionSaved(Message):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
