"""Cross-field checks on a loaded project: option conflicts, missing packages, risky values.

`check(project)` looks at the config alone (plus which packages and files exist); it never
opens an image. `check_all(project)` adds the dataset scan (core/datasets.py) and is what
`fluxtui validate`, the runner and the watcher call. Every problem names the key at fault,
its line in project.toml where the key is written (else the line of its table), and a fix.
"""

from __future__ import annotations

# Each topic module registers its rules (@rule) on import.
from . import (  # noqa: F401
    assistant,
    conditioning,
    datasets,
    hardware,
    lycoris,
    memory,
    model,
    outputs,
    services,
    training,
    validation,
)
from .base import (
    FLUX_BLOCKS,
    PIP_NAMES,
    RULES,
    STANDARD_LR,
    check,
    check_all,
    line_of,
    package_installed,
    problem_at,
    process_count,
    rule,
    visible_gpu_count,
)

__all__ = [
    "FLUX_BLOCKS",
    "PIP_NAMES",
    "RULES",
    "STANDARD_LR",
    "check",
    "check_all",
    "line_of",
    "package_installed",
    "problem_at",
    "process_count",
    "rule",
    "visible_gpu_count",
]
