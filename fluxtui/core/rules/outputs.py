"""Where results go: the hub, and resuming from a checkpoint."""

from __future__ import annotations

from ..config import Project
from ..problems import Problem
from .base import (
    problem_at,
    rule,
)


@rule
def _hub(p: Project) -> list[Problem]:
    if p.hub.push_to_hub and not p.hub.hub_model_id:
        return [
            problem_at(
                p,
                "push_to_hub is on but hub_model_id is not set",
                "hub.hub_model_id",
                also=("hub.push_to_hub",),
                fix='set hub_model_id = "you/my-flux-lora", or push_to_hub = false',
            )
        ]
    return []


@rule
def _resume(p: Project) -> list[Problem]:
    value = p.training.resume_from_checkpoint
    if not value or value in ("latest", "none"):
        return []
    if not p.resolve(value).is_dir():
        return [
            problem_at(
                p,
                f"resume_from_checkpoint folder {value} does not exist",
                "training.resume_from_checkpoint",
                fix='use "latest", "none", or a checkpoint folder such as outputs/<run>/checkpoints/checkpoint-500',
            )
        ]
    return []
