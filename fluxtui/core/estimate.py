"""Memory estimate (and a rough time per step) from project.toml alone: no torch, nothing loaded.

GPU memory per stage of a run comes from the Flux architecture's layer shapes, in the order the
trainer goes through the stages (core/estimate_stages.py: text cache, latent cache, loading the
transformer, training, validation), system RAM per stage from the same plan
(core/estimate_ram.py), and the calibration it all rests on lives in core/estimate_model.py.

The trainer keeps one stage's models on the GPU at a time, so the `train` stage is the peak;
it is what SPEC.md's figures describe (steady-state training peaks). The GPU total is the
largest stage; the RAM figure is compared with this machine's RAM (core/sysmem.py).

`Estimate.suggestions()` re-estimates the project with concrete changes applied (precision,
resolution, optimizer, offload...) and returns the ones that fit, with their new totals.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .estimate_model import (
    FORMATS,
    GIB,
    MEANINGFUL_SAVING_GIB,
    MEANINGFUL_SAVING_SHARE,
    OPTIMIZER_STATE,
    PRECISION_ORDER,
    STAGES,
    _dataset_pixels,
    _plan,
    _seconds_per_step,
    _side,
    _validation_pixels,
    lora_param_count,
)
from .estimate_ram import ram_stages
from .estimate_stages import VaePlan, stages, vae_decode_plan, vae_encode_plan
from .sysmem import MachineRam, machine_ram

__all__ = [
    "STAGES",
    "Estimate",
    "Suggestion",
    "VaePlan",
    "estimate",
    "lora_param_count",
    "vae_decode_plan",
    "vae_encode_plan",
    "with_changes",
]


# =========================================================================================
# The result
# =========================================================================================


@dataclass(frozen=True)
class Suggestion:
    """Changes (dotted keys for `config.set_values`) and the estimate with them applied."""

    changes: dict[str, Any]
    total_gib: float
    fits: bool
    combined: bool = False  # several changes found together because no single one was enough

    def describe(self) -> str:
        return "; ".join(f"{key} = {_literal(value)}" for key, value in self.changes.items())

    def to_json(self) -> dict[str, Any]:
        return {
            "changes": self.changes,
            "total_gib": round(self.total_gib, 2),
            "fits": self.fits,
            "combined": self.combined,
        }


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, list)):
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass
class Estimate:
    """Per-stage memory in GiB; `breakdown` is the training stage's parts."""

    stages: dict[str, dict[str, float]]  # stage -> ordered part -> GiB
    details: dict[str, str]  # a training part -> what it counts
    transformer_params: int
    lora_params: int
    lora_layers: int
    image_tokens: int
    text_tokens: int
    resolution_px: int  # side of a square with the largest dataset's pixel count
    seconds_per_step: float | None  # rough; None for tiny-random
    notes: list[str] = field(default_factory=list)
    gpu_gb: float | None = None
    ram_stages: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> part -> GiB of RAM
    machine: MachineRam | None = None  # this machine's RAM (None where it cannot be read)
    _project: Any = field(default=None, repr=False)

    @property
    def breakdown(self) -> dict[str, float]:
        return self.stages["train"]

    @property
    def stage_peaks(self) -> dict[str, float]:
        return {name: sum(parts.values()) for name, parts in self.stages.items()}

    @property
    def total_gib(self) -> float:
        return max(self.stage_peaks.values())

    @property
    def peak_stage(self) -> str:
        peaks = self.stage_peaks
        return max(peaks, key=lambda s: peaks[s])

    @property
    def ram_peaks(self) -> dict[str, float]:
        return {name: sum(parts.values()) for name, parts in self.ram_stages.items()}

    @property
    def ram_gib(self) -> float:
        return max(self.ram_peaks.values(), default=0.0)

    @property
    def ram_peak_stage(self) -> str | None:
        peaks = self.ram_peaks
        return max(peaks, key=lambda s: peaks[s]) if peaks else None

    def ram_fits(self) -> bool | None:
        """Whether the RAM peak fits this machine's RAM (None when it is unknown)."""
        return None if self.machine is None else self.ram_gib <= self.machine.total_gib

    def torch_gib(self, stage: str = "train") -> float:
        """What torch.cuda.max_memory_reserved() should show for `stage`: the stage without the
        CUDA context, which torch's counters leave out (for `fluxtui probe`'s comparison)."""
        parts = self.stages[stage]
        return sum(v for k, v in parts.items() if k != "CUDA context")

    def fits(self, gpu_gb: float | None = None) -> bool:
        """Whether the largest stage fits a GPU of `gpu_gb` (its nominal size, e.g. 24)."""
        gpu = gpu_gb if gpu_gb is not None else self.gpu_gb
        if gpu is None:
            raise ValueError("fits() needs gpu_gb")
        return self.total_gib <= gpu

    def suggestions(self, gpu_gb: float | None = None, *, limit: int = 6) -> list[Suggestion]:
        """Concrete changes that make the project fit `gpu_gb`, each re-estimated.

        Single changes first, in the order that costs the least quality or speed; when no
        single change is enough, one combination built greedily (it may still not fit: its
        `fits` says so). Empty when the project already fits.
        """
        gpu = gpu_gb if gpu_gb is not None else self.gpu_gb
        if gpu is None:
            raise ValueError("suggestions() needs gpu_gb")
        if self._project is None or self.fits(gpu):
            return []
        singles: list[Suggestion] = []
        best = self.total_gib
        for changes in _candidates(self._project):
            est = estimate(with_changes(self._project, changes))
            # a harsher change is only worth listing when it saves more than the milder ones
            if est.total_gib < best - 0.05 and est.fits(gpu):
                singles.append(Suggestion(changes, est.total_gib, True))
                best = est.total_gib
        if singles:
            return singles[:limit]
        combo = _greedy(self._project, gpu)
        return [combo] if combo else []

    def to_json(self, gpu_gb: float | None = None) -> dict[str, Any]:
        gpu = gpu_gb if gpu_gb is not None else self.gpu_gb
        out: dict[str, Any] = {
            "total_gib": round(self.total_gib, 2),
            "peak_stage": self.peak_stage,
            "breakdown": {k: round(v, 3) for k, v in self.breakdown.items()},
            "stage_peaks": {k: round(v, 2) for k, v in self.stage_peaks.items()},
            "stages": {s: {k: round(v, 3) for k, v in parts.items()} for s, parts in self.stages.items()},
            "transformer_params": self.transformer_params,
            "lora_params": self.lora_params,
            "lora_layers": self.lora_layers,
            "image_tokens": self.image_tokens,
            "text_tokens": self.text_tokens,
            "resolution_px": self.resolution_px,
            "seconds_per_step_rough": None if self.seconds_per_step is None else round(self.seconds_per_step, 2),
            "notes": self.notes,
            "ram": {
                "total_gib": round(self.ram_gib, 2),
                "peak_stage": self.ram_peak_stage,
                "stage_peaks": {k: round(v, 2) for k, v in self.ram_peaks.items()},
                "stages": {s: {k: round(v, 3) for k, v in parts.items()} for s, parts in self.ram_stages.items()},
                "machine": None if self.machine is None else self.machine.to_json(),
                "fits": self.ram_fits(),
            },
        }
        if gpu is not None:
            out["gpu_gb"] = gpu
            out["fits"] = self.fits(gpu)
            out["suggestions"] = [s.to_json() for s in self.suggestions(gpu)]
        return out


def estimate(project: Any, *, gpu_gb: float | None = None) -> Estimate:
    """Estimate the GPU memory and system RAM of training `project` (a checked `config.Project`)."""
    from .flux_arch import transformer_param_count

    plan = _plan(project)
    by_stage, details = stages(plan)

    def gib(parts: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        return {s: {k: v / GIB for k, v in p.items() if v > 0 or k == "CUDA context"} for s, p in parts.items()}

    return Estimate(
        stages=gib(by_stage),
        details=details,
        transformer_params=transformer_param_count(plan.cfg),
        lora_params=plan.lora_params,
        lora_layers=plan.lora_layers,
        image_tokens=plan.image_tokens,
        text_tokens=plan.text_tokens,
        resolution_px=_side(plan.pixels),
        seconds_per_step=_seconds_per_step(plan),
        notes=plan.notes,
        gpu_gb=gpu_gb,
        ram_stages=gib(ram_stages(plan)),
        machine=machine_ram(),
        _project=project,
    )


# =========================================================================================
# Suggestions
# =========================================================================================


def with_changes(project: Any, changes: dict[str, Any]) -> Any:
    """A copy of `project` with dotted keys ("model.base_model_precision",
    "datasets[0].resolution") set; the original is untouched."""
    sections = {name: type(sec)(**dict(vars(sec))) for name, sec in project.sections.items()}
    datasets = [type(d)(**dict(vars(d))) for d in project.datasets]
    for dotted, value in changes.items():
        m = re.fullmatch(r"datasets\[(\d+)\]\.(\w+)", dotted)
        if m:
            setattr(datasets[int(m[1])], m[2], value)
        else:
            section, key = dotted.rsplit(".", 1)
            setattr(sections[section], key, value)
    return dataclasses.replace(project, sections=sections, datasets=datasets)


def _candidates(project: Any) -> list[dict[str, Any]]:
    """Single changes worth trying, mildest first."""
    m, t, mem = project.model, project.training, project.memory
    out: list[dict[str, Any]] = []
    quantised = {m.base_model_precision, m.text_encoder_1_precision, m.text_encoder_2_precision} - {"no_change"}
    if m.quantize_via == "accelerator" and quantised:
        out.append({"model.quantize_via": "cpu"})
    if int(t.vae_batch_size) > 1:
        out.append({"training.vae_batch_size": 1})
    if m.text_encoder_2_precision in ("no_change", "int8-quanto", "fp8-quanto"):
        out.append(
            {
                "model.text_encoder_2_precision": "nf4-bnb"
                if m.text_encoder_2_precision != "no_change"
                else "int8-quanto"
            }
        )
    if m.base_model_default_dtype == "fp32":
        out.append({"model.base_model_default_dtype": "bf16"})
    if not t.gradient_checkpointing:
        out.append({"training.gradient_checkpointing": True, "training.gradient_checkpointing_interval": 1})
    elif int(t.gradient_checkpointing_interval) > 1:
        out.append({"training.gradient_checkpointing_interval": 1})
    train_px = max((_dataset_pixels(d) for d in project.active_datasets), default=1024 * 1024)
    if _validation_pixels(project) > train_px:
        side = _side(train_px)
        out.append({"validation.validation_resolution": [f"{side}x{side}"]})
    for opt in ("bnb-adamw8bit", "bnb-lion8bit-paged"):
        if OPTIMIZER_STATE[opt][0] < OPTIMIZER_STATE[t.optimizer][0]:
            out.append({"training.optimizer": opt})
    if int(t.train_batch_size) > 1:
        accum = int(t.train_batch_size) * int(t.gradient_accumulation_steps)
        out.append({"training.train_batch_size": 1, "training.gradient_accumulation_steps": accum})
    if project.lora.flux_lora_target == "all+ffs":
        out.append({"lora.flux_lora_target": "all"})
    precisions = _precision_candidates(project)
    out += precisions[:-1]  # the harshest precision (int2) comes after offload and resolution
    if not mem.enable_group_offload:
        change: dict[str, Any] = {"memory.enable_group_offload": True}
        if mem.enable_model_cpu_offload:
            change["memory.enable_model_cpu_offload"] = False  # the two cannot be combined
        out.append(change)
    for side in (768, 512):
        change = {}
        for i, d in enumerate(project.datasets):
            if not d.disabled and _dataset_pixels(d) > side * side * 1.01:
                change[f"datasets[{i}].resolution"] = (
                    round(side * side / 1e6, 4) if d.resolution_type == "area" else side
                )
        if change:
            out.append(change)
    out += precisions[-1:]
    if not mem.enable_model_cpu_offload and not mem.enable_group_offload:
        out.append({"memory.enable_model_cpu_offload": True})
    return out


def _precision_candidates(project: Any) -> list[dict[str, Any]]:
    m, t = project.model, project.training
    harsher = PRECISION_ORDER[PRECISION_ORDER.index(m.base_model_precision) + 1 :]
    out = []
    for precision in harsher:
        if FORMATS[precision].bytes_per_weight <= FORMATS[m.base_model_precision].bytes_per_weight:
            change: dict[str, Any] = {"model.base_model_precision": precision}
            if precision == "nf4-bnb" and t.torch_compile:
                change["training.torch_compile"] = False  # nf4 cannot be compiled
            if FORMATS[precision].backend == "quanto" and project.lora.lora_init_type == "loftq":
                change["lora.lora_init_type"] = "default"  # LoftQ cannot sit on a quanto base
            out.append(change)
    return out


def _greedy(project: Any, gpu: float) -> Suggestion | None:
    """Take the mildest change that still saves something worth having, again and again,
    until the project fits (or nothing helps any more)."""
    applied: dict[str, Any] = {}
    current = estimate(project)
    for _ in range(12):
        base = with_changes(project, applied)
        worth = max(MEANINGFUL_SAVING_GIB, MEANINGFUL_SAVING_SHARE * current.total_gib)
        for changes in _candidates(base):
            trial = estimate(with_changes(base, changes))
            if trial.total_gib <= current.total_gib - worth:
                applied.update(changes)
                current = trial
                break
        else:
            break
        if current.fits(gpu):
            break
    if not applied:
        return None
    return Suggestion(applied, current.total_gib, current.fits(gpu), combined=True)
