"""The training step: schedule shift, learning rate, TREAD routes."""

from __future__ import annotations

from ..config import Project
from ..problems import Problem
from .base import (
    FLUX_BLOCKS,
    STANDARD_LR,
    problem_at,
    rule,
)


@rule
def _schedule(p: Project) -> list[Problem]:
    t = p.training
    out = []
    if t.flow_schedule_auto_shift and "training.flow_schedule_shift" in p.explicit:
        out.append(
            problem_at(
                p,
                "flow_schedule_auto_shift and a fixed flow_schedule_shift exclude each other",
                "training.flow_schedule_shift",
                also=("training.flow_schedule_auto_shift",),
                fix="remove flow_schedule_shift, or set flow_schedule_auto_shift = false",
            )
        )
    if t.flux_guidance_mode == "random-range" and t.flux_guidance_min > t.flux_guidance_max:
        out.append(
            problem_at(
                p,
                f"flux_guidance_min ({t.flux_guidance_min:g}) is above flux_guidance_max ({t.flux_guidance_max:g})",
                "training.flux_guidance_min",
                also=("training.flux_guidance_max",),
                fix="swap them: guidance is drawn from flux_guidance_min .. flux_guidance_max",
            )
        )
    if t.max_train_steps == 0 and t.num_train_epochs == 0:
        out.append(
            problem_at(
                p,
                "max_train_steps and num_train_epochs are both 0: training would never run",
                "training.max_train_steps",
                also=("training.num_train_epochs",),
                fix="set max_train_steps (e.g. 1000) or num_train_epochs",
            )
        )
    if 0 < t.max_train_steps <= t.lr_warmup_steps and t.lr_scheduler in ("constant_with_warmup", "cosine", "linear"):
        out.append(
            problem_at(
                p,
                f"lr_warmup_steps ({t.lr_warmup_steps}) >= max_train_steps ({t.max_train_steps}): "
                "the learning rate never reaches its peak",
                "training.lr_warmup_steps",
                severity="warning",
                fix=f"use lr_warmup_steps <= {max(0, t.max_train_steps // 10)} (about a tenth of the run)",
            )
        )
    if not t.gradient_checkpointing:
        out.append(
            problem_at(
                p,
                "gradient_checkpointing is off: activations of every block stay in VRAM",
                "training.gradient_checkpointing",
                severity="warning",
                fix="set gradient_checkpointing = true unless the VRAM is there (it costs ~20% speed)",
            )
        )
    if t.mixed_precision == "fp16":
        out.append(
            problem_at(
                p,
                "Flux's activations overflow in fp16 (NaN losses)",
                "training.mixed_precision",
                severity="warning",
                fix='set mixed_precision = "bf16"',
            )
        )
    return out


@rule
def _learning_rate(p: Project) -> list[Problem]:
    lr, opt = p.training.learning_rate, p.training.optimizer
    if opt == "prodigy":
        if lr < 0.1:
            return [
                problem_at(
                    p,
                    f"prodigy finds the step size itself and expects learning_rate ~1.0, got {lr:g}",
                    "training.learning_rate",
                    severity="warning",
                    fix="set learning_rate = 1.0",
                )
            ]
        return []
    lo, hi = STANDARD_LR
    if p.lora.lora_type == "standard" and not lo <= lr <= hi:
        return [
            problem_at(
                p,
                f"learning_rate {lr:g} is outside the usual range for a standard LoRA ({lo:g} .. {hi:g})",
                "training.learning_rate",
                severity="warning",
                fix="start with learning_rate = 1e-4" if lr > hi else "raise it to at least 1e-5",
            )
        ]
    return []


@rule
def _tread(p: Project) -> list[Problem]:
    cfg = p.training.tread_config
    if not cfg or p.model.model_flavour == "tiny-random":  # the toy model has its own block count
        return []
    for i, route in enumerate(cfg["routes"]):
        start, end = route["start_layer_idx"], route["end_layer_idx"]
        bad = [v for v in (start, end) if not -FLUX_BLOCKS <= v < FLUX_BLOCKS]
        if bad:
            message = f"route {i}: layer index {bad[0]} is outside Flux's {FLUX_BLOCKS} blocks"
        elif start % FLUX_BLOCKS > end % FLUX_BLOCKS:
            message = f"route {i}: start_layer_idx {start} comes after end_layer_idx {end}"
        else:
            continue
        return [
            problem_at(
                p,
                message,
                "training.tread_config",
                fix=f"use indices from 0 to {FLUX_BLOCKS - 1} (or -1 to -{FLUX_BLOCKS} from the end), start before end",
            )
        ]
    return []
