"""GPU memory per stage of a run, in the order the trainer goes through them, and how the VAE
works so that no stage needs more than the training step.

- `cache_text`: CLIP and T5 alone on the GPU (only when an embedding is missing), each
  quantised as it arrives (block by block on the accelerator), encoding T5_ENCODE_BATCH
  captions at a time; freed afterwards.
- `cache_latents`: the VAE alone (only when a latent is missing), encoding `vae_batch_size`
  images at once; one at a time, then in tiles, when that would exceed the training step
  (`vae_encode_plan`); freed afterwards.
- `load_models`: the transformer alone, quantised block by block on the accelerator (the
  moment holds what is quantised so far plus one block in full precision); with
  `quantize_via = "cpu"` it arrives quantised. Random weights are built on the CPU and placed
  the same way.
- `train`: transformer weights, LoRA weights, gradients and optimizer state, activations
  (tokens = (H/16)*(W/16) + T5 tokens, batch, checkpointing, TREAD), runtime overhead.
- `validate`: sampling at `validation_resolution` and decoding with the VAE (in tiles when a
  whole image would exceed the training step: `vae_decode_plan`).

Each function returns the stage's parts in bytes; core/estimate.py turns them into GiB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .estimate_model import (
    DOUBLE_BLOCK_SAVED,
    IO_SAVED,
    SINGLE_BLOCK_SAVED,
    VAE_DECODE_BYTES_PER_PIXEL,
    VAE_ENCODE_BYTES_PER_PIXEL,
    VAE_SMALL_TILE_PX,
    VAE_TILE_PIXELS,
    _activations,
    _component_bytes,
    _count,
    _ctx,
    _format,
    _lora_parts,
    _overhead,
    _params_text,
    _Plan,
    _plan,
    _resident_transformer,
    _side,
    _t5_activations,
    _text_encoders,
    _transformer_bytes,
    _vae_width_scale,
    _validation_pixels,
)
from .flux_arch import T5_ENCODE_BATCH

__all__ = ["VaePlan", "stages", "vae_decode_plan", "vae_encode_plan"]


# =========================================================================================
# How the VAE works
# =========================================================================================


@dataclass(frozen=True)
class VaePlan:
    """How the VAE encodes (or decodes): a whole batch, one image at a time, in tiles."""

    slicing: bool = False  # one image at a time
    tile_px: int | None = None  # tiles of this side (None: whole images, or the user's tiling)

    def describe(self) -> str:
        if self.tile_px:
            return f"one image at a time, in {self.tile_px}x{self.tile_px} px tiles"
        return "one image at a time" if self.slicing else "whole batches"


def _tile_pixels(tile_px: int) -> float:
    overlap = 1.25  # diffusers' tiles overlap by a quarter
    return (tile_px * overlap) ** 2


def _encode_bytes(plan: _Plan, vp: VaePlan) -> float:
    p = plan.project
    per_image = plan.pixels
    if vp.tile_px:
        per_image = min(per_image, _tile_pixels(vp.tile_px))
    elif p.memory.vae_enable_tiling:
        per_image = min(per_image, VAE_TILE_PIXELS)
    images = 1 if vp.slicing else int(p.training.vae_batch_size)
    return VAE_ENCODE_BYTES_PER_PIXEL * _vae_width_scale(plan) * per_image * images * plan.base_bytes / 2


def _decode_bytes(plan: _Plan, vp: VaePlan, pixels: float) -> float:
    if vp.tile_px:
        pixels = min(pixels, _tile_pixels(vp.tile_px))
    elif plan.project.memory.vae_enable_tiling:
        pixels = min(pixels, VAE_TILE_PIXELS)
    return VAE_DECODE_BYTES_PER_PIXEL * _vae_width_scale(plan) * pixels * plan.act_bytes / 2


_PLANS = (VaePlan(), VaePlan(slicing=True), VaePlan(slicing=True, tile_px=VAE_SMALL_TILE_PX))


def _encode_plan(plan: _Plan, budget: float) -> VaePlan:
    for vp in _PLANS:
        if sum(_stage_cache_latents(plan, vp).values()) <= budget:
            return vp
    return _PLANS[-1]


def _decode_plan(plan: _Plan, budget: float) -> VaePlan:
    for vp in (_PLANS[0], _PLANS[2]):
        stage = _stage_validate(plan, vp)
        if stage is None or sum(stage.values()) <= budget:
            return vp
    return _PLANS[2]


def vae_encode_plan(project: Any) -> VaePlan:
    """How the trainer's VAE encodes the latent cache: the first of whole batches, one image
    at a time, tiles, that keeps the stage within the training step."""
    plan = _plan(project)
    return _encode_plan(plan, sum(_stage_train(plan)[0].values()))


def vae_decode_plan(project: Any) -> VaePlan:
    """How validation decodes: whole images, or tiles when a whole image would need more than
    the training step."""
    plan = _plan(project)
    return _decode_plan(plan, sum(_stage_train(plan)[0].values()))


# =========================================================================================
# Stages
# =========================================================================================


def stages(plan: _Plan) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Every stage's parts in bytes (in the trainer's order), and what the train parts count."""
    train, details = _stage_train(plan)
    budget = sum(train.values())
    out = {
        "cache_text": _stage_cache_text(plan),
        "cache_latents": _stage_cache_latents(plan, _encode_plan(plan, budget)),
        "load_models": _stage_load(plan),
        "train": train,
    }
    validate = _stage_validate(plan, _decode_plan(plan, budget))
    if validate is not None:
        out["validate"] = validate
    return out, details


def _on_accelerator(plan: _Plan, precision: str) -> bool:
    """Quantised as it arrives, block by block on the accelerator (else it arrives quantised)."""
    return plan.project.model.quantize_via == "accelerator" and precision != "no_change"


def _stage_cache_text(plan: _Plan) -> dict[str, float]:
    """CLIP arrives, then T5 (one full-precision block at a time when quantised on the GPU),
    then both encode."""
    p, m, b = plan.project, plan.project.model, plan.base_bytes
    clip_q, t5_q = _text_encoders(plan)
    arriving = plan.pipe.t5.largest_unit * b if _on_accelerator(plan, m.text_encoder_2_precision) else 0.0
    captions = min(int(p.text_embeds.write_batch_size), T5_ENCODE_BATCH)
    transient = max(arriving, _t5_activations(plan, captions))
    label = (
        f"T5 encoding ({captions} captions at once)" if transient > arriving else "T5 block arriving in full precision"
    )
    return {"text encoders": clip_q + t5_q, label: transient, "CUDA context": _ctx()}


def _stage_cache_latents(plan: _Plan, vp: VaePlan) -> dict[str, float]:
    p = plan.project
    vae = _component_bytes(plan.pipe.vae, "no_change", plan.base_bytes)
    images = 1 if vp.slicing else int(p.training.vae_batch_size)
    what = f"VAE encoding ({images} image{'s' if images > 1 else ''}" + (
        f", {vp.tile_px} px tiles)" if vp.tile_px else ")"
    )
    return {"VAE": vae, what: _encode_bytes(plan, vp), "CUDA context": _ctx()}


def _stage_load(plan: _Plan) -> dict[str, float]:
    """The transformer alone, quantised block by block as it arrives: the worst moment holds
    what is quantised so far plus one block in full precision."""
    b = plan.base_bytes
    t_q, _, per_part = _transformer_bytes(plan.cfg, plan.precision, b)
    _, _, full_parts = _transformer_bytes(plan.cfg, "no_change", b)
    out = {"transformer weights": t_q}
    if _on_accelerator(plan, plan.precision):
        out["one block in full precision"] = max(full_parts[k] - per_part[k] for k in full_parts)
    out["CUDA context"] = _ctx()
    return out


def _stage_train(plan: _Plan) -> tuple[dict[str, float], dict[str, str]]:
    resident, bf16_equiv, how = _resident_transformer(plan)
    weights, grads, opt, opt_what = _lora_parts(plan)
    act, act_how = _activations(plan)
    backend = _format(plan.precision, plan.base_bytes).backend
    parts = {
        "transformer weights": resident,
        "LoRA weights": weights,
        "LoRA gradients": grads,
        "optimizer state": opt,
        "activations": act,
        "runtime overhead": _overhead(backend, bf16_equiv),
        "CUDA context": _ctx(),
    }
    lora_type = "LoKr" if plan.project.lora.lora_type == "lycoris" else "LoRA"
    details = {
        "transformer weights": f"{_params_text(plan.cfg)} params, {how}",
        "LoRA weights": f"{lora_type} {_count(plan.lora_params)} params on {plan.lora_layers} layers, fp32",
        "LoRA gradients": "fp32",
        "optimizer state": f"{plan.project.training.optimizer}: {opt_what}",
        "activations": act_how,
        "runtime overhead": f"allocator pools, dequantisation buffers ({backend}; fitted to SPEC figures)",
        "CUDA context": "context and library workspaces (outside torch's counters)",
    }
    return parts, details


def _stage_validate(plan: _Plan, vp: VaePlan) -> dict[str, float] | None:
    v = plan.project.validation
    pixels = _validation_pixels(plan.project)
    if v.validation_steps == 0 or pixels == 0:
        return None
    resident, bf16_equiv, _ = _resident_transformer(plan)
    weights, _grads, opt, _ = _lora_parts(plan)
    cfg = plan.cfg
    cfg_batch = 2 if v.validation_guidance_real > 1 else 1
    tokens = plan.text_tokens + max(1, round(pixels / 256))
    unit = cfg.hidden * plan.act_bytes
    sampling = (max(DOUBLE_BLOCK_SAVED, SINGLE_BLOCK_SAVED) + IO_SAVED) * tokens * unit * cfg_batch
    decode = _decode_bytes(plan, vp, pixels)
    backend = _format(plan.precision, plan.base_bytes).backend
    side = _side(pixels)
    tiles = f", {vp.tile_px} px tiles" if vp.tile_px else ""
    return {
        "transformer weights": resident,
        "LoRA weights": weights,
        "optimizer state": opt,
        "VAE": _component_bytes(plan.pipe.vae, "no_change", plan.base_bytes),
        f"sampling and VAE decoding (~{side}x{side} px{tiles})": max(sampling, decode),
        "runtime overhead": _overhead(backend, bf16_equiv),
        "CUDA context": _ctx(),
    }
