"""EMA of the trained adapter weights (SimpleTuner's use_ema, ema_decay, ema_update_interval,
ema_device, ema_validation).

The math is two small pure functions that tests feed fixed tensors; ``EMA`` holds the shadow
copy, updates it every ``ema_update_interval`` optimizer steps, swaps it into the adapter for
saving and validation (``applied``), and rides along in checkpoints (``state_dict``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch

__all__ = ["EMA", "ema_decay_at", "ema_update"]


def ema_decay_at(step: int, decay: float, min_decay: float = 0.0) -> float:
    """Decay used at optimizer step ``step`` (1-based): 0 at the first update, then
    min(decay, (1 + n) / (10 + n)) with n = step - 1, and never below min_decay (SimpleTuner's
    EMAModel without warmup: a young average follows the weights closely)."""
    n = step - 1
    if n <= 0:
        return 0.0
    return max(min_decay, min(decay, (1 + n) / (10 + n)))


@torch.no_grad()
def ema_update(shadow: Sequence[torch.Tensor], params: Sequence[torch.Tensor], decay: float) -> None:
    """In place: shadow <- shadow - (1 - decay) * (shadow - param)  (= decay*shadow + (1-decay)*param)."""
    for s, p in zip(shadow, params):
        s.sub_((s - p.detach().to(s.device, s.dtype)) * (1.0 - decay))


class EMA:
    """The shadow weights of ``params`` (fp32, on ``device``)."""

    def __init__(self, params: Sequence[torch.nn.Parameter], *, decay: float, update_interval: int | None, device: Any):
        self.params = list(params)
        self.decay = float(decay)
        self.update_interval = int(update_interval or 1)
        self.device = torch.device(device)
        self.shadow = [p.detach().to(self.device, torch.float32).clone() for p in self.params]
        self.last_decay = 0.0

    @classmethod
    def from_project(cls, project: Any, params: Sequence[torch.nn.Parameter], device: Any) -> EMA | None:
        """The run's EMA, or None when use_ema is off."""
        t = project.training
        if not t.use_ema:
            return None
        where = "cpu" if t.ema_device == "cpu" else device
        return cls(params, decay=t.ema_decay, update_interval=t.ema_update_interval, device=where)

    def step(self, global_step: int) -> bool:
        """After optimizer step ``global_step``: update when the interval says so."""
        if global_step % self.update_interval:
            return False
        self.last_decay = ema_decay_at(global_step, self.decay)
        ema_update(self.shadow, self.params, self.last_decay)
        return True

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The adapter holds the EMA weights inside the block, its trained weights again after."""
        kept = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for p, s in zip(self.params, self.shadow):
                p.copy_(s.to(p.device, p.dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for p, k in zip(self.params, kept):
                    p.copy_(k)

    def resume(self, state: dict[str, torch.Tensor] | None, tel: Any) -> None:
        """Continue the checkpoint's average; one saved without use_ema starts it from here."""
        if state is None:
            tel.warning("the checkpoint has no EMA weights: the average starts from its LoRA", "training.use_ema")
            return
        self.load_state_dict(state)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"shadow.{i}": s.detach().cpu().contiguous() for i, s in enumerate(self.shadow)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if len(state) != len(self.shadow):
            raise ValueError(f"the checkpoint's EMA has {len(state)} tensors, this adapter {len(self.shadow)}")
        for i, s in enumerate(self.shadow):
            s.copy_(state[f"shadow.{i}"].to(s.device, s.dtype))


def validation_passes(ema: EMA | None, mode: str) -> list[tuple[str, Any]]:
    """(file-name suffix, weights context) for each validation pass under ema_validation."""
    plain = contextlib.nullcontext
    if ema is None or mode == "none":
        return [("", plain())]
    if mode == "ema_only":
        return [("", ema.applied())]
    return [("", plain()), ("-ema", ema.applied())]


def saved_weights(ema: EMA | None) -> Any:
    """The weights that go into the final LoRA: the EMA's when there is one."""
    return ema.applied() if ema is not None else contextlib.nullcontext()
