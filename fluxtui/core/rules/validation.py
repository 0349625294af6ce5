"""Validation during training: prompts and resolutions."""

from __future__ import annotations

import math

from ..config import Project
from ..problems import Problem
from .base import (
    problem_at,
    rule,
)


@rule
def _validation(p: Project) -> list[Problem]:
    v = p.validation
    out = []
    bad = []
    for item in v.validation_resolution:
        w, h = (int(x) for x in item.split("x"))
        if w == 0 or h == 0 or w % 16 or h % 16:
            bad.append(item)
    if bad:
        fixed = ", ".join(f'"{_round16(item)}"' for item in bad)
        out.append(
            problem_at(
                p,
                f"validation_resolution {', '.join(bad)}: Flux needs sides that are multiples of 16",
                "validation.validation_resolution",
                fix=f"use {fixed}",
            )
        )
    steps = p.training.max_train_steps
    if v.validation_steps > 0 and 0 < steps < v.validation_steps:
        out.append(
            problem_at(
                p,
                f"validation_steps ({v.validation_steps}) > max_train_steps ({steps}): no validation images until the end",
                "validation.validation_steps",
                severity="warning",
                fix=f"set validation_steps = {max(1, steps // 4)} to watch progress",
            )
        )
    if v.validation_steps > 0 and not (v.validation_prompt or "").strip() and not v.prompts:
        out.append(
            problem_at(
                p,
                "validation is on but there is no validation_prompt and no [validation.prompts]",
                "validation.validation_prompt",
                severity="warning",
                fix='set validation_prompt = "..." or validation_steps = 0',
            )
        )
    return out


def _round16(item: str) -> str:
    w, h = (max(16, math.floor(int(x) / 16 + 0.5) * 16) for x in item.split("x"))
    return f"{w}x{h}"


@rule
def _prompt_library_and_cfg(p: Project) -> list[Problem]:
    from ..prompt_library import PromptLibraryError, load

    v = p.validation
    out = []
    if v.user_prompt_library:
        try:
            load(p.resolve(v.user_prompt_library))
        except PromptLibraryError as exc:
            out.append(
                problem_at(
                    p,
                    f"user_prompt_library {v.user_prompt_library} {exc}",
                    "validation.user_prompt_library",
                    fix='write {"name": "a prompt", ...} to that file (relative to the workspace), or remove the key',
                )
            )
    if v.validation_guidance_rescale > 0 and v.validation_guidance_real <= 1:
        out.append(
            problem_at(
                p,
                "validation_guidance_rescale rescales real CFG, which is off (validation_guidance_real <= 1)",
                "validation.validation_guidance_rescale",
                also=("validation.validation_guidance_real",),
                severity="warning",
                fix="set validation_guidance_real > 1 (e.g. 3.5), or validation_guidance_rescale = 0",
            )
        )
    return out
