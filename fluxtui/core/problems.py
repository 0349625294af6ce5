"""Problems found in a workspace: collected, never raised one at a time."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    message: str
    key: str | None = None  # dotted: "training.learning_rate", "datasets[0].resolution"
    severity: Severity = "error"
    file: str = "project.toml"
    line: int | None = None  # only when the parser or locator knows it for sure
    fix: str | None = None
    path: str | None = None  # a dataset file the problem is about

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        text = f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"
        if self.fix:
            text += f" (fix: {self.fix})"
        return text

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def has_errors(problems: list[Problem]) -> bool:
    return any(p.is_error for p in problems)


class ConfigError(Exception):
    """A workspace that cannot be used; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
