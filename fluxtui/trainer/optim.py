"""Optimizers and learning-rate schedules, each optimizer from its own package.

| optimizer            | package        | class                                   |
|----------------------|----------------|-----------------------------------------|
| adamw_bf16           | torch-optimi   | optimi.AdamW, Kahan summation on        |
| optimi-lion          | torch-optimi   | optimi.Lion                             |
| optimi-stableadamw   | torch-optimi   | optimi.StableAdamW                      |
| bnb-adamw8bit        | bitsandbytes   | bnb.optim.AdamW8bit                     |
| bnb-lion8bit-paged   | bitsandbytes   | bnb.optim.PagedLion8bit                 |
| prodigy              | prodigyopt     | prodigyopt.Prodigy                      |
| torch-adamw          | torch          | torch.optim.AdamW                       |

Notes:
- adamw_bf16's Kahan summation only acts on bf16/fp16 parameters. fluxtui's LoRA weights are
  fp32 (see lora.py), where it is a plain AdamW; the name is kept for SimpleTuner users.
- prodigy estimates the step size itself: ``learning_rate`` is a multiplier on its estimate
  and should be 1.0 (a run with 1e-4 barely moves). Bias correction and safeguarded warmup are on,
  as recommended for diffusion models.
- Lion uses betas (0.9, 0.99) unless adam_beta1/adam_beta2 are written in project.toml.
- bitsandbytes keeps 32-bit state for tensors under 4096 elements (its own default).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable
from typing import Any

import torch

from fluxtui.core import schema

from .models import ModelLoadError

__all__ = [
    "PIP_NAMES",
    "OptimizerUnavailable",
    "apply_settings",
    "build_lr_scheduler",
    "build_optimizer",
    "optimizer_problem",
    "schedule_settings",
    "settings_of",
]

# importable package -> what to pip install
PIP_NAMES = {"optimi": "torch-optimi", "bitsandbytes": "bitsandbytes", "prodigyopt": "prodigyopt"}

LION_BETAS = (0.9, 0.99)


class OptimizerUnavailable(ModelLoadError):
    """The optimizer's package is not installed; ``message`` has the pip line."""


def optimizer_problem(name: str) -> str | None:
    """None when ``name`` can be built here, else the message to show (no torch import needed)."""
    if name not in schema.OPTIMIZERS:
        return f"unknown optimizer {name!r}; choose from {', '.join(schema.OPTIMIZERS)}"
    package = schema.OPTIMIZERS[name]
    if package is None or importlib.util.find_spec(package) is not None:
        return None
    pip = PIP_NAMES.get(package, package.replace("_", "-"))
    return (
        f"`training.optimizer` = {name!r} needs the {package} package, which is not installed. "
        f"Install it with `pip install {pip}`, or choose another optimizer (torch-adamw needs nothing)."
    )


def build_optimizer(
    params: Iterable[torch.nn.Parameter], project: Any, *, log: Callable[[str], None] | None = None
) -> torch.optim.Optimizer:
    t = project.training
    name = t.optimizer
    problem = optimizer_problem(name)
    if problem:
        raise OptimizerUnavailable(problem, "training.optimizer")
    params = list(params)
    lr = float(t.learning_rate)
    betas = (float(t.adam_beta1), float(t.adam_beta2))
    wd = float(t.adam_weight_decay)
    eps = float(t.adam_epsilon)
    explicit = getattr(project, "explicit", set())
    lion_betas = betas if {"training.adam_beta1", "training.adam_beta2"} & explicit else LION_BETAS

    if name == "adamw_bf16":
        import optimi

        return optimi.AdamW(params, lr=lr, betas=betas, weight_decay=wd, eps=eps, kahan_sum=True)
    if name == "optimi-lion":
        import optimi

        return optimi.Lion(params, lr=lr, betas=lion_betas, weight_decay=wd)
    if name == "optimi-stableadamw":
        import optimi

        return optimi.StableAdamW(params, lr=lr, betas=betas, weight_decay=wd, eps=eps)
    if name == "bnb-adamw8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=lr, betas=betas, weight_decay=wd, eps=eps)
    if name == "bnb-lion8bit-paged":
        import bitsandbytes as bnb

        return bnb.optim.PagedLion8bit(params, lr=lr, betas=lion_betas, weight_decay=wd)
    if name == "prodigy":
        import prodigyopt

        if lr < 0.1 and log:
            log(
                f"prodigy: learning_rate = {lr:g} multiplies prodigy's own step-size estimate; "
                "1.0 is the usual value (set training.learning_rate = 1.0)"
            )
        return prodigyopt.Prodigy(
            params,
            lr=lr,
            betas=betas,
            weight_decay=wd,
            eps=eps,
            use_bias_correction=True,
            safeguard_warmup=True,
        )
    if name == "torch-adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=wd, eps=eps)
    raise OptimizerUnavailable(f"optimizer {name!r} is declared but not built", "training.optimizer")


def build_lr_scheduler(optimizer: torch.optim.Optimizer, project: Any, total_steps: int, *, step: int = 0) -> Any:
    """diffusers' schedule named by ``lr_scheduler`` with ``lr_warmup_steps`` of linear warmup,
    standing at optimizer update ``step`` (0 for a fresh run, the checkpoint's on resume).

    ``total_steps`` counts optimizer updates (not micro-batches).
    """
    from diffusers.optimization import get_scheduler

    t = project.training
    if step > 0:  # LambdaLR resumes from each group's initial_lr; it then steps once to `step`
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
    return get_scheduler(
        t.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=int(t.lr_warmup_steps),
        num_training_steps=max(int(total_steps), 1),
        last_epoch=step - 1,
    )


# -- resuming with the current settings --------------------------------------------------------
# A checkpoint's optimizer state carries the hyperparameters it was made with; loading it
# would silently bring them back. A resumed run trains with the project as it is now: the
# moments come from the checkpoint, the settings from the config.

# param_group key -> the options it comes from (betas is a pair)
_GROUP_KEYS = {
    "lr": ("training.learning_rate",),
    "betas": ("training.adam_beta1", "training.adam_beta2"),
    "eps": ("training.adam_epsilon",),
    "weight_decay": ("training.adam_weight_decay",),
}


def settings_of(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """The config-driven hyperparameters of each param group (base lr, not the scheduled one)."""
    out = []
    for group in optimizer.param_groups:
        wanted = {k: group[k] for k in _GROUP_KEYS if k in group}
        if "initial_lr" in group:
            wanted["lr"] = group["initial_lr"]
        out.append(wanted)
    return out


def apply_settings(optimizer: torch.optim.Optimizer, wanted: list[dict[str, Any]]) -> list[tuple[str, Any, Any]]:
    """Put `wanted` (from settings_of on the freshly built optimizer) back after a checkpoint
    was loaded into it. Returns (option, checkpoint's value, now) for what differed."""
    changes: dict[str, tuple[Any, Any]] = {}
    for group, want in zip(optimizer.param_groups, wanted):
        for key, value in want.items():
            old = group.get("initial_lr", group.get(key)) if key == "lr" else group.get(key)
            for dotted, o, n in _expand(key, old, value):
                if o != n:
                    changes.setdefault(dotted, (o, n))
            group[key] = tuple(value) if key == "betas" else value
        if "lr" in want:
            group["initial_lr"] = want["lr"]
    return [(dotted, o, n) for dotted, (o, n) in changes.items()]


def _expand(key: str, old: Any, new: Any) -> list[tuple[str, Any, Any]]:
    names = _GROUP_KEYS[key]
    if key == "betas":
        old = tuple(old) if old is not None else (None, None)
        return [(names[0], old[0], new[0]), (names[1], old[1], new[1])]
    return [(names[0], old, new)]


def schedule_settings(project: Any, total_steps: int) -> dict[str, Any]:
    """What the lr schedule is built from; kept in checkpoints to tell what a resume changed."""
    t = project.training
    return {
        "training.lr_scheduler": t.lr_scheduler,
        "training.lr_warmup_steps": int(t.lr_warmup_steps),
        "total_steps": int(total_steps),
    }


def clip_gradients(
    params: list[torch.nn.Parameter], max_grad_norm: float, method: str, accelerator: Any = None
) -> float:
    """Clip before the optimizer step, as SimpleTuner does: "value" clamps every gradient
    element to +-max_grad_norm, "norm" scales all of them so their global L2 norm is at most
    max_grad_norm; 0 clips nothing. Returns the global norm before clipping (for the events).
    Through the accelerator when given, so mixed-precision scalers are undone first."""
    if method == "norm" and max_grad_norm > 0:
        norm = (accelerator.clip_grad_norm_ if accelerator else torch.nn.utils.clip_grad_norm_)(params, max_grad_norm)
        return float(norm) if norm is not None else 0.0
    if accelerator is not None:
        accelerator.unscale_gradients()
    grads = [p.grad for p in params if p.grad is not None]
    norm = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_value_(params, max_grad_norm)
    return norm
